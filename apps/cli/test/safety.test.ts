import type { SignerConfiguration } from '@cosigner/policy/lockout';
import { Keypair } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { DisjointQuorumsError, frostGroupParty, LockoutError, type Out, requireSafe } from '../src/commands/account.ts';
import { cliErrors } from '../src/errors.ts';

/**
 * requireSafe, the check every lifecycle command (account setup, thresholds set, node add|remove) runs on the
 * configuration a change would leave: lock-out first, then quorum intersection over the same parties.
 */

class Capture implements Out {
  errs: string[] = [];
  out(): void {}
  err(l: string): void {
    this.errs.push(l);
  }
}

const account = Keypair.random().publicKey();
const nodeKeys = Array.from({ length: 5 }, () => Keypair.random().publicKey());

function config(weights: number[], t: [number, number, number], nodes = true): SignerConfiguration {
  return {
    account,
    masterWeight: 0,
    thresholds: { low: t[0], med: t[1], high: t[2] },
    signers: weights.map((weight, i) => ({ key: nodeKeys[i]!, weight, ...(nodes ? { node: `node-${i}` } : {}) })),
  };
}

function thrown(f: () => void): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('requireSafe: quorum intersection', () => {
  it('2-of-3 and 3-of-4 pass: any two sets reaching a threshold share a node', () => {
    expect(() => requireSafe(config([1, 1, 1], [2, 2, 2]), 'this setup')).not.toThrow();
    expect(() => requireSafe(config([1, 1, 1, 1], [3, 3, 3]), 'this setup')).not.toThrow();
  });

  it('refuses 2-of-4, naming each level, two disjoint sets of nodes and the flag', () => {
    const e = thrown(() => requireSafe(config([1, 1, 1, 1], [2, 2, 3]), 'this account setup'));
    expect(e).toBeInstanceOf(DisjointQuorumsError);
    const err = e as DisjointQuorumsError;
    expect(err.code).toBe('LIFECYCLE_DISJOINT_QUORUMS');
    expect(err.status).toBe(cliErrors.specs.LIFECYCLE_DISJOINT_QUORUMS.status);
    expect(err.message).toMatch(/^refusing this account setup: LIFECYCLE_DISJOINT_QUORUMS thresholds\.low 2: /);
    expect(err.message).toMatch(/thresholds\.med 2: \{node node-\d, node node-\d\} and \{node node-\d, node node-\d\}/);
    expect(err.message).not.toMatch(/thresholds\.high/);
    expect(err.message).toContain('--allow-disjoint-quorums');
    const details = (
      err as unknown as { details: { disjoint: { field: string; first: string[]; second: string[] }[] } }
    ).details;
    expect(details.disjoint.map((d) => d.field)).toEqual(['thresholds.low', 'thresholds.med']);
    for (const d of details.disjoint) expect(d.first.filter((x) => d.second.includes(x))).toEqual([]);
  });

  it('counts a node once, whatever number of keys it holds (a rotation in progress)', () => {
    // node-0 holds two keys of weight 1: three nodes, weights 2, 1, 1, threshold 2: {node-0} is one party alone,
    // refused by the lock-out check first.
    const c = config([1, 1, 1], [2, 2, 2]);
    const rotating = { ...c, signers: [...c.signers, { key: nodeKeys[4]!, weight: 1, node: 'node-0' }] };
    expect(thrown(() => requireSafe(rotating, 'x'))).toBeInstanceOf(LockoutError);
    // Keys without a node are parties of their own: 2-of-4 unlabelled keys are disjoint quorums too.
    expect(thrown(() => requireSafe(config([1, 1, 1, 1], [2, 2, 2], false), 'x'))).toBeInstanceOf(DisjointQuorumsError);
  });

  it('lock-out problems are reported before intersection', () => {
    expect(thrown(() => requireSafe(config([1, 1, 1, 1], [2, 2, 5]), 'x'))).toBeInstanceOf(LockoutError);
  });

  it('--allow-disjoint-quorums accepts it with a warning on stderr naming the sets', () => {
    const io = new Capture();
    expect(() =>
      requireSafe(config([1, 1, 1, 1], [2, 2, 2]), 'thresholds on G...', { allowDisjointQuorums: true, io }),
    ).not.toThrow();
    expect(io.errs).toHaveLength(1);
    expect(io.errs[0]).toMatch(/^warning: thresholds on G\.\.\. accepted with --allow-disjoint-quorums:\n/);
    expect(io.errs[0]).toMatch(/LIFECYCLE_DISJOINT_QUORUMS thresholds\.high 2: /);
    // Without a place to write, the flag still accepts (rotation's removal step).
    expect(() => requireSafe(config([1, 1, 1, 1], [2, 2, 2]), 'x', { allowDisjointQuorums: true })).not.toThrow();
  });
});

describe('requireSafe: a FROST group key among the signers', () => {
  const group = Keypair.random().publicKey();
  const withGroup = (groupWeight: number, t: [number, number, number], others: number[] = []): SignerConfiguration => ({
    account,
    masterWeight: 0,
    thresholds: { low: t[0], med: t[1], high: t[2] },
    signers: [
      { key: group, weight: groupWeight, node: frostGroupParty(group) },
      ...others.map((weight, i) => ({ key: nodeKeys[i]!, weight, node: `node-${i}` })),
    ],
  });

  it('accepts the group reaching every threshold alone, as the only signer or beside a recovery key', () => {
    expect(() => requireSafe(withGroup(2, [2, 2, 2]), 'this setup', { groups: [group] })).not.toThrow();
    // The group at 2 beside a recovery key at 1, thresholds 2: the recovery key alone reaches none.
    expect(() => requireSafe(withGroup(2, [2, 2, 2], [1]), 'this setup', { groups: [group] })).not.toThrow();
  });

  it('without --frost-group the same key is one party reaching a threshold alone, and is refused', () => {
    const e = thrown(() => requireSafe(withGroup(2, [2, 2, 2]), 'this setup'));
    expect(e).toBeInstanceOf(LockoutError);
    expect((e as LockoutError).message).toContain(`node ${frostGroupParty(group)} alone`);
  });

  it('still refuses any other single party, and a recovery key that forms a disjoint quorum with the group', () => {
    const alone = thrown(() => requireSafe(withGroup(2, [2, 2, 2], [2]), 'this setup', { groups: [group] }));
    expect(alone).toBeInstanceOf(LockoutError);
    expect((alone as LockoutError).message).toContain('node node-0 alone');
    expect((alone as LockoutError).message).not.toContain('frost group');
    // Group 2 and two node keys 1+1 with thresholds 2: {group} and {node-0, node-1} share no party.
    const disjoint = thrown(() => requireSafe(withGroup(2, [2, 2, 2], [1, 1]), 'this setup', { groups: [group] }));
    expect(disjoint).toBeInstanceOf(DisjointQuorumsError);
    const io = new Capture();
    requireSafe(withGroup(2, [2, 2, 2], [1, 1]), 'this setup', { groups: [group], allowDisjointQuorums: true, io });
    expect(io.errs.join('\n')).toContain('--allow-disjoint-quorums');
  });
});

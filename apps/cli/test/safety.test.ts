import type { SignerConfiguration } from '@cosigner/policy/lockout';
import { Keypair } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { DisjointQuorumsError, LockoutError, type Out, requireSafe } from '../src/commands/account.ts';
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

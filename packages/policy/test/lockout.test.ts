import { Keypair } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../src/evaluate.ts';
import { applyChanges, checkLockout, formatLockout, partyWeights, type SignerConfiguration } from '../src/lockout.ts';
import { parsePolicy } from '../src/schema.ts';
import { NOW, op, TESTNET, tx } from './builders.ts';

const ACCOUNT = Keypair.random().publicKey();
const [A, B, C, D] = [0, 1, 2, 3].map(() => Keypair.random().publicKey()) as [string, string, string, string];

function cfg(over: Partial<SignerConfiguration> = {}): SignerConfiguration {
  return {
    account: ACCOUNT,
    masterWeight: 0,
    thresholds: { low: 2, med: 2, high: 2 },
    signers: [
      { key: A, weight: 1, node: 'node-0' },
      { key: B, weight: 1, node: 'node-1' },
      { key: C, weight: 1, node: 'node-2' },
    ],
    ...over,
  };
}

describe('checkLockout', () => {
  it('accepts a 2-of-3 with master weight 0', () => {
    const r = checkLockout(cfg());
    expect(r).toMatchObject({ ok: true, problems: [], totalWeight: 3, heaviest: { weight: 1 } });
    expect(formatLockout(r)).toBe('');
  });

  it('refuses thresholds the remaining signers cannot reach, naming each field and HIGH as the lock', () => {
    const r = checkLockout(cfg({ thresholds: { low: 2, med: 4, high: 5 } }));
    expect(r.ok).toBe(false);
    expect(r.problems.map((p) => [p.code, p.field])).toEqual([
      ['LOCKOUT_UNREACHABLE', 'thresholds.med'],
      ['LOCKOUT_UNREACHABLE', 'thresholds.high'],
    ]);
    expect(r.problems[1]!.message).toMatch(/signer and threshold changes need HIGH/);
    expect(formatLockout(r)).toMatch(/^LOCKOUT_UNREACHABLE thresholds.med: /);
  });

  it('refuses a configuration a single node reaches, counting its keys together', () => {
    const one = checkLockout(cfg({ thresholds: { low: 1, med: 2, high: 2 } }));
    expect(one.problems).toEqual([
      expect.objectContaining({ code: 'LOCKOUT_SINGLE_PARTY', field: 'thresholds.low' }),
      expect.objectContaining({ code: 'LOCKOUT_SINGLE_PARTY', field: 'thresholds.low' }),
      expect.objectContaining({ code: 'LOCKOUT_SINGLE_PARTY', field: 'thresholds.low' }),
    ]);
    // node-0 holding two keys (a rotation in progress) weighs 2 and reaches the thresholds alone.
    const two = checkLockout(cfg({ signers: [...cfg().signers, { key: D, weight: 1, node: 'node-0' }] }));
    expect(two.problems).toEqual([
      expect.objectContaining({
        code: 'LOCKOUT_SINGLE_PARTY',
        field: 'thresholds.low',
        message: expect.stringMatching(/node node-0 alone \(weight 2\)/),
      }),
    ]);
    expect(two.heaviest).toEqual({ party: 'node node-0', weight: 2 });
  });

  it('a threshold of 0 still needs one signature: any single signer reaches it', () => {
    const r = checkLockout(cfg({ thresholds: { low: 0, med: 2, high: 2 } }));
    expect(r.problems.every((p) => p.field === 'thresholds.low' && p.code === 'LOCKOUT_SINGLE_PARTY')).toBe(true);
    const none = checkLockout(cfg({ signers: [], thresholds: { low: 0, med: 0, high: 0 } }));
    expect(none.problems.map((p) => p.code)).toEqual([
      'LOCKOUT_UNREACHABLE',
      'LOCKOUT_UNREACHABLE',
      'LOCKOUT_UNREACHABLE',
    ]);
  });

  it('names masterWeight when the master key keeps control', () => {
    const r = checkLockout(cfg({ masterWeight: 2 }));
    expect(r.problems).toEqual([expect.objectContaining({ code: 'LOCKOUT_SINGLE_PARTY', field: 'masterWeight' })]);
    expect(r.problems[0]!.message).toMatch(/set masterWeight to 0/);
  });

  it('refuses out-of-range values, duplicates, the master key as a signer and more than 20 signers', () => {
    const bad = checkLockout(
      cfg({
        masterWeight: 256,
        thresholds: { low: -1, med: 1.5, high: 2 },
        signers: [
          { key: A, weight: 300 },
          { key: A, weight: 1 },
          { key: ACCOUNT, weight: 1 },
        ],
      }),
    );
    expect(bad.ok).toBe(false);
    expect(bad.problems.map((p) => p.field)).toEqual([
      'masterWeight',
      'thresholds.low',
      'thresholds.med',
      'signers[0].weight',
      'signers[1].key',
      'signers[2].key',
    ]);
    const many = Array.from({ length: 21 }, (_, i) => ({
      key: Keypair.random().publicKey(),
      weight: 1,
      node: `n${i}`,
    }));
    expect(checkLockout(cfg({ signers: many, thresholds: { low: 11, med: 11, high: 11 } })).problems).toEqual([
      expect.objectContaining({ code: 'LOCKOUT_INVALID', field: 'signers' }),
    ]);
  });

  it('applyChanges adds, reweighs and removes signers and merges thresholds', () => {
    const after = applyChanges(cfg(), {
      signers: [
        { key: D, weight: 1, node: 'node-3' },
        { key: C, weight: 0 },
        { key: A, weight: 2 },
      ],
      thresholds: { high: 3 },
      masterWeight: 0,
    });
    expect(after.signers).toEqual([
      { key: A, weight: 2, node: 'node-0' },
      { key: B, weight: 1, node: 'node-1' },
      { key: D, weight: 1, node: 'node-3' },
    ]);
    expect(after.thresholds).toEqual({ low: 2, med: 2, high: 3 });
    expect(applyChanges(cfg(), {})).toEqual(cfg());
    expect([...partyWeights(cfg({ masterWeight: 1, signers: [{ key: A, weight: 1 }] })).keys()]).toEqual([
      `master key ${ACCOUNT}`,
      `key ${A}`,
    ]);
  });
});

describe('checkLockout properties', () => {
  const arbConfig = fc.record({
    masterWeight: fc.integer({ min: 0, max: 255 }),
    thresholds: fc.record({
      low: fc.integer({ min: 0, max: 255 }),
      med: fc.integer({ min: 0, max: 255 }),
      high: fc.integer({ min: 0, max: 255 }),
    }),
    signers: fc.array(fc.record({ weight: fc.integer({ min: 0, max: 255 }), node: fc.integer({ min: 0, max: 5 }) }), {
      maxLength: 20,
    }),
  });
  const keys = Array.from({ length: 20 }, () => Keypair.random().publicKey());
  const build = (x: typeof arbConfig extends fc.Arbitrary<infer T> ? T : never): SignerConfiguration => ({
    account: ACCOUNT,
    masterWeight: x.masterWeight,
    thresholds: x.thresholds,
    signers: x.signers.map((s, i) => ({ key: keys[i]!, weight: s.weight, node: `node-${s.node}` })),
  });

  it('accepted configurations: every level reachable by all, by no single party', () => {
    fc.assert(
      fc.property(arbConfig, (x) => {
        const c = build(x);
        const r = checkLockout(c);
        const parties = [...partyWeights(c).values()];
        const total = parties.reduce((a, b) => a + b, 0);
        const levels = [c.thresholds.low, c.thresholds.med, c.thresholds.high].map((t) => Math.max(t, 1));
        const expectOk = levels.every((t) => total >= t && parties.every((w) => w < t));
        expect(r.ok).toBe(expectOk);
        if (!r.ok) expect(r.problems.length).toBeGreaterThan(0);
        for (const p of r.problems) expect(p.field).toMatch(/^(thresholds\.(low|med|high)|masterWeight)$/);
      }),
      { numRuns: 500 },
    );
  });

  it('removing a signer never turns a refused configuration into an accepted one by reachability', () => {
    fc.assert(
      fc.property(arbConfig, fc.nat(19), (x, drop) => {
        const c = build(x);
        const r = checkLockout(c);
        const target = c.signers[drop % Math.max(c.signers.length, 1)];
        if (!target) return;
        const after = checkLockout(applyChanges(c, { signers: [{ key: target.key, weight: 0 }] }));
        if (r.problems.some((p) => p.code === 'LOCKOUT_UNREACHABLE')) {
          expect(after.problems.some((p) => p.code === 'LOCKOUT_UNREACHABLE')).toBe(true);
        }
        expect(after.totalWeight).toBeLessThanOrEqual(r.totalWeight);
      }),
      { numRuns: 300 },
    );
  });
});

describe('signerChanges.clusterMembers', () => {
  const base = {
    network: TESTNET,
    accounts: [ACCOUNT],
    operations: ['setOptions'],
    validity: { maxWindowSeconds: 300 },
  };
  const addD = tx({
    source: ACCOUNT,
    ops: [op({ type: 'setOptions', setOptions: { signer: { key: D, weight: 1 } } } as never)],
  });

  it('allows adding and removing a roster key only when the policy opts in, and only roster keys', () => {
    const opted = parsePolicy({ ...base, signerChanges: { accounts: [ACCOUNT], clusterMembers: true } });
    const closed = parsePolicy({ ...base, signerChanges: { accounts: [ACCOUNT] } });
    const spent = () => 0n;
    expect(evaluate(opted, { summary: addD, now: NOW, spent, members: new Set([D]) }).outcome).toBe('approve');
    const stranger = evaluate(opted, { summary: addD, now: NOW, spent, members: new Set([A]) });
    expect(stranger.reasons.map((r) => r.code)).toEqual(['SIGNER_KEY_NOT_ALLOWED']);
    expect(evaluate(opted, { summary: addD, now: NOW, spent }).outcome).toBe('reject');
    const refused = evaluate(closed, { summary: addD, now: NOW, spent, members: new Set([D]) });
    expect(refused.reasons.map((r) => r.code)).toEqual(['SIGNER_KEY_NOT_ALLOWED']);
  });
});

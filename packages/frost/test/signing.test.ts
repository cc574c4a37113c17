import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteNonceStore } from '../src/nonce-store.ts';
import { aggregate, type Commitment, checkCommitments, commitNonces, signShare, verifyShare } from '../src/rounds.ts';
import { FrostSigner } from '../src/signer.ts';
import { checkGroup, type KeyShare } from '../src/suite.ts';
import { groupOf, groupSignsPayments } from './scenario.ts';

const code = (c: string, details?: Record<string, unknown>) =>
  expect.objectContaining(details ? { code: c, details: expect.objectContaining(details) } : { code: c });

let dir: string;
beforeAll(async () => {
  dir = await tempDir('frost-signing-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FROST signing over a Stellar transaction hash', () => {
  // 17-of-25 is in large-group.test.ts: its key generation alone takes minutes on a loaded machine.
  for (const [n, t] of [[3, 2]] as const) {
    it(`${t}-of-${n}: the group signs as one Ed25519 key that Keypair.verify and the auth check accept`, async () => {
      groupSignsPayments(n, t, dir);
    }, 120_000);
  }

  it('fewer than t shares make no signature; a bad share is verified and its sender named', () => {
    const outputs = groupOf(3, 2, 'bad-share');
    const { group } = outputs[0]!;
    const message = randomBytes(32);
    const commits = outputs.map((o) => commitNonces(o.share));
    const commitments = commits.map((c) => c.commitment);
    const shares = Object.fromEntries(
      outputs.map((o, i) => [
        String(o.share.index),
        signShare(group, o.share, commits[i]!.nonces, commitments, message),
      ]),
    );
    expect(() => checkCommitments(group, commitments.slice(0, 1))).toThrow(code('FROST_OUT_OF_RANGE'));
    expect(aggregate(group, commitments, message, shares)).toHaveLength(64);
    const bad = { ...shares, '2': randomBytes(32) };
    expect(verifyShare(group, commitments, message, 2, bad['2']!)).toBe(false);
    expect(verifyShare(group, commitments, message, 1, shares['1']!)).toBe(true);
    expect(() => aggregate(group, commitments, message, bad)).toThrow(
      code('FROST_BAD_SIGNATURE_SHARE', { culprits: [2] }),
    );
    // Swapped shares sum to the same signature (aggregation only adds them), so it is valid; a share sent
    // twice under two names is not, and the one under the wrong name is named.
    expect(aggregate(group, commitments, message, { ...shares, '1': shares['3']!, '3': shares['1']! })).toHaveLength(
      64,
    );
    expect(() => aggregate(group, commitments, message, { ...shares, '1': shares['3']! })).toThrow(
      code('FROST_BAD_SIGNATURE_SHARE', { culprits: [1] }),
    );
    expect(() => aggregate(group, commitments, message, { ...shares, '2': new Uint8Array(5) })).toThrow(
      code('FROST_BAD_SIGNATURE_SHARE', { culprits: [2], reason: 'malformed' }),
    );
    expect(() => aggregate(group, commitments, message, { '1': shares['1']!, '2': shares['2']! })).toThrow(
      code('FROST_OUT_OF_RANGE'),
    );
    expect(() => aggregate(group, commitments.slice(0, 2), message, shares)).toThrow(code('FROST_OUT_OF_RANGE'));
    // A share made for another message is a bad share for this one.
    expect(verifyShare(group, commitments, randomBytes(32), 1, shares['1']!)).toBe(false);
    expect(verifyShare(group, commitments, message, 1, new Uint8Array(3))).toBe(false);
  });

  it('a participant refuses a list that changes its commitment or omits it, and nonces that were used', () => {
    const outputs = groupOf(3, 2, 'refusals');
    const { group } = outputs[0]!;
    const [a, b] = outputs;
    const message = randomBytes(32);
    const ca = commitNonces(a!.share);
    const cb = commitNonces(b!.share);
    const other = commitNonces(a!.share);
    const list = [ca.commitment, cb.commitment];
    expect(() => signShare(group, a!.share, ca.nonces, [other.commitment, cb.commitment], message)).toThrow(
      code('FROST_COMMITMENT_MISMATCH', { reason: 'different' }),
    );
    expect(() =>
      signShare(group, a!.share, ca.nonces, [cb.commitment, commitNonces(outputs[2]!.share).commitment], message),
    ).toThrow(code('FROST_COMMITMENT_MISMATCH', { reason: 'absent' }));
    signShare(group, a!.share, ca.nonces, list, message);
    // signShare zeroed the nonces: a second share from the same object is refused.
    expect(() => signShare(group, a!.share, ca.nonces, list, randomBytes(32))).toThrow(code('FROST_NONCE_REUSED'));
  });

  it('checks group, share, commitments and message at the boundary', () => {
    const outputs = groupOf(3, 2, 'inputs');
    const { group, share } = outputs[0]!;
    const g = (over: Record<string, unknown>) => ({ ...group, ...over });
    const cases: [unknown, string][] = [
      [null, 'FROST_BAD_INPUT'],
      [g({ participants: [1] }), 'FROST_OUT_OF_RANGE'],
      [g({ participants: [2, 1, 3] }), 'FROST_OUT_OF_RANGE'],
      [g({ participants: [1, 2, 300] }), 'FROST_OUT_OF_RANGE'],
      [g({ threshold: 4 }), 'FROST_OUT_OF_RANGE'],
      [g({ groupPublicKey: 'AB' }), 'FROST_OUT_OF_RANGE'],
      [g({ groupPublicKey: 7 }), 'FROST_BAD_INPUT'],
      [g({ verifyingShares: { ...group.verifyingShares, 2: `01${'00'.repeat(31)}` } }), 'FROST_OUT_OF_RANGE'],
      [g({ commitments: [group.commitments[0], 'ff'.repeat(32)] }), 'FROST_OUT_OF_RANGE'],
      [g({ commitments: group.commitments.slice(0, 1) }), 'FROST_OUT_OF_RANGE'],
      [g({ commitments: [...group.commitments].reverse() }), 'FROST_OUT_OF_RANGE'],
      [g({ verifyingShares: { 1: group.verifyingShares['1'], 2: group.verifyingShares['2'] } }), 'FROST_OUT_OF_RANGE'],
      [g({ verifyingShares: { ...group.verifyingShares, 4: group.verifyingShares['1'] } }), 'FROST_OUT_OF_RANGE'],
    ];
    for (const [value, c] of cases)
      expect(() => checkGroup(value), JSON.stringify(value)?.slice(0, 60)).toThrow(code(c));
    const store = SqliteNonceStore.open(join(dir, 'inputs.sqlite'));
    const make = (s: unknown) => new FrostSigner({ group, share: s as KeyShare, store });
    expect(() => make({ index: 4, signingShare: share.signingShare })).toThrow(code('FROST_OUT_OF_RANGE'));
    expect(() => make({ index: 1, signingShare: 'x' })).toThrow(code('FROST_BAD_INPUT'));
    expect(() => make({ index: 1, signingShare: new Uint8Array(31) })).toThrow(code('FROST_OUT_OF_RANGE'));
    expect(() => make({ index: 2, signingShare: share.signingShare })).toThrow(code('FROST_OUT_OF_RANGE'));
    const signer = make(share);
    const c: Commitment = signer.commit('r1');
    const list = (x: unknown) => [c, x] as Commitment[];
    const other = commitNonces(outputs[1]!.share).commitment;
    for (const [commitments, msg, c2] of [
      [list({ ...other, index: 9 }), randomBytes(32), 'FROST_OUT_OF_RANGE'],
      [list({ ...other, index: 1 }), randomBytes(32), 'FROST_OUT_OF_RANGE'],
      [list({ ...other, hiding: 'zz' }), randomBytes(32), 'FROST_OUT_OF_RANGE'],
      [list({ ...other, hiding: '00'.repeat(32) }), randomBytes(32), 'FROST_OUT_OF_RANGE'],
      // The identity (01 00..00) and a point of order 8 (c7176a...05): valid encodings, refused elements.
      [list({ ...other, binding: `01${'00'.repeat(31)}` }), randomBytes(32), 'FROST_OUT_OF_RANGE'],
      [
        list({ ...other, binding: 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a' }),
        randomBytes(32),
        'FROST_OUT_OF_RANGE',
      ],
      [list('x'), randomBytes(32), 'FROST_BAD_INPUT'],
      [list(other), new Uint8Array(0), 'FROST_OUT_OF_RANGE'],
      [list(other), new Uint8Array(1025), 'FROST_OUT_OF_RANGE'],
      [list(other), 'hash', 'FROST_BAD_INPUT'],
    ] as const) {
      expect(() => signer.sign('r1', commitments as Commitment[], msg as Uint8Array)).toThrow(code(c2));
    }
    expect(() => signer.commit('bad id')).toThrow(code('FROST_OUT_OF_RANGE'));
    // The checks ran before the nonce was touched: the round can still sign, once.
    expect(store.state('r1')).toBe('issued');
    expect(signer.sign('r1', [c, other], randomBytes(32))).toHaveLength(32);
    expect(signer.pending).toBe(0);
    signer.close();
    store.close();
  });
});

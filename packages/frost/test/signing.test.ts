import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { ed25519 } from '@noble/curves/ed25519.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteNonceStore } from '../src/nonce-store.ts';
import {
  aggregate,
  type Commitment,
  checkCommitment,
  checkCommitments,
  commitNonces,
  signShare,
  verifyShare,
} from '../src/rounds.ts';
import { FrostSigner } from '../src/signer.ts';
import { checkGroup, frost, type GroupPublic, identifierOf, type KeyShare } from '../src/suite.ts';
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
  it('refuses a commitment with a small-order component, wherever the round is checked, and signs after', () => {
    const outputs = groupOf(3, 2, 'torsion');
    const { group } = outputs[0]!;
    const [a, b] = outputs;
    const store = SqliteNonceStore.open(join(dir, 'torsion.sqlite'));
    const signer = new FrostSigner({ group, share: a!.share, store });
    const message = randomBytes(32);
    const mine = signer.commit('t1');
    const cb = commitNonces(b!.share);
    // A valid point plus a point of order 8: on the curve, not the identity, outside the prime-order subgroup
    // (RFC 9591 section 6.1: DeserializeElement refuses it).
    const order8 = ed25519.Point.fromHex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a');
    const dirty = ed25519.Point.fromHex(cb.commitment.binding).add(order8).toHex();
    const bad = [mine, { ...cb.commitment, binding: dirty }];
    const refused = code('FROST_OUT_OF_RANGE', { field: 'commitments[1].binding' });
    expect(() => signer.sign('t1', bad, message)).toThrow(refused);
    expect(() => signShare(group, b!.share, cb.nonces, bad, message)).toThrow(refused);
    expect(() => aggregate(group, bad, message, { '1': randomBytes(32), '2': randomBytes(32) })).toThrow(refused);
    expect(() => verifyShare(group, bad, message, 1, randomBytes(32))).toThrow(refused);
    // Its own commitment changed under its own index is refused too (a dirty point, then a different one).
    const ownDirty = ed25519.Point.fromHex(mine.hiding).add(order8).toHex();
    expect(() => signer.sign('t1', [{ ...mine, hiding: ownDirty }, cb.commitment], message)).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'commitments[0].hiding' }),
    );
    const other = commitNonces(a!.share).commitment;
    expect(() => signer.sign('t1', [other, cb.commitment], message)).toThrow(code('FROST_COMMITMENT_MISMATCH'));
    // Nothing above cost the round: the checks run before the nonce is marked used.
    expect(store.state('t1')).toBe('issued');
    const list = [mine, cb.commitment];
    const shares = { '1': signer.sign('t1', list, message), '2': signShare(group, b!.share, cb.nonces, list, message) };
    expect(aggregate(group, list, message, shares)).toHaveLength(64);
    signer.close();
    store.close();
  });

  it('aggregates commitments checked once on arrival (checkCommitment) to the same signature, never a look-alike', () => {
    const outputs = groupOf(3, 2, 'checked');
    const { group } = outputs[0]!;
    const message = randomBytes(32);
    const commits = outputs.slice(0, 2).map((o) => commitNonces(o.share));
    const list = commits.map((c) => c.commitment);
    const shares = Object.fromEntries(
      outputs
        .slice(0, 2)
        .map((o, i) => [String(o.share.index), signShare(group, o.share, commits[i]!.nonces, list, message)]),
    );
    const checked = [...list].reverse().map((c) => checkCommitment(group, c));
    expect(Object.isFrozen(checked[0])).toBe(true);
    expect(Object.isFrozen(checked[0]!.commitment)).toBe(true);
    expect(Buffer.from(aggregate(group, checked, message, shares))).toEqual(
      Buffer.from(aggregate(group, list, message, shares)),
    );
    // Mixed with plain entries, and a bad share still named from the checked points.
    expect(aggregate(group, [checked[0]!, list[0]!], message, shares)).toHaveLength(64);
    expect(() => aggregate(group, checked, message, { ...shares, '2': randomBytes(32) })).toThrow(
      code('FROST_BAD_SIGNATURE_SHARE', { culprits: [2] }),
    );
    // Refused on arrival, naming the field: an index outside the group, a point outside the prime-order subgroup.
    expect(() => checkCommitment(group, { ...list[0]!, index: 9 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'commitment.index' }),
    );
    const order8 = ed25519.Point.fromHex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a');
    const dirty = ed25519.Point.fromHex(list[1]!.binding).add(order8).toHex();
    expect(() => checkCommitment(group, { ...list[1]!, binding: dirty })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'commitment.binding' }),
    );
    // An object shaped like a checked commitment but not made by checkCommitment is not taken as checked: here it
    // carries a dirty point and is refused (it is read as a plain commitment, which it is not).
    const lookAlike = { ...checked[0]!, binding: ed25519.Point.fromHex(dirty) };
    expect(() => aggregate(group, [lookAlike as never, checked[1]!], message, shares)).toThrow(code('FROST_BAD_INPUT'));
    // A checked commitment is re-checked against the group it is aggregated in: another group's index is refused.
    const small: typeof group = { ...group, participants: [1, 3] };
    const two = checkCommitment(group, list[1]!);
    expect(() => aggregate(small, [checked[1]!, two], message, shares)).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'commitments[1].index' }),
    );
  });

  it('names a share that is not a canonical scalar, and fails without a culprit when the group is inconsistent', () => {
    const dealt = (seed: number) => {
      const ids = [1, 2, 3].map(identifierOf);
      const d = frost.trustedDealer({ min: 2, max: 3 }, ids, new Uint8Array(32).fill(seed));
      const hx = (b: Uint8Array) => Buffer.from(b).toString('hex');
      const group: GroupPublic = checkGroup({
        threshold: 2,
        participants: [1, 2, 3],
        groupPublicKey: hx(d.public.commitments[0]!),
        commitments: d.public.commitments.map(hx),
        verifyingShares: Object.fromEntries(ids.map((id, i) => [String(i + 1), hx(d.public.verifyingShares[id]!)])),
      });
      return { group, shares: ids.map((id, i) => ({ index: i + 1, signingShare: d.secretShares[id]!.signingShare })) };
    };
    const one = dealt(1);
    const two = dealt(2);
    const message = randomBytes(32);
    const sign = (group: GroupPublic, shares: KeyShare[]) => {
      const commits = shares.slice(0, 2).map((s) => commitNonces(s));
      const list = commits.map((c) => c.commitment);
      const z = Object.fromEntries(
        shares.slice(0, 2).map((s, i) => [String(s.index), signShare(group, s, commits[i]!.nonces, list, message)]),
      );
      return { list, z };
    };
    const ok = sign(one.group, one.shares);
    // L itself (little-endian): 32 bytes, but not below the group order.
    const L = Buffer.from(frost.utils.Fn.ORDER.toString(16).padStart(64, '0'), 'hex').reverse();
    expect(() => aggregate(one.group, ok.list, message, { ...ok.z, '2': Uint8Array.from(L) })).toThrow(
      code('FROST_BAD_SIGNATURE_SHARE', { culprits: [2], reason: 'malformed' }),
    );
    expect(verifyShare(one.group, ok.list, message, 2, Uint8Array.from(L))).toBe(false);
    expect(verifyShare(one.group, ok.list, message, 3, ok.z['2']!)).toBe(false);
    // A group whose verifying shares are another key's: each share verifies, the sum does not verify under
    // the group key, and no participant is to blame.
    const mixed: GroupPublic = { ...one.group, verifyingShares: two.group.verifyingShares };
    const bad = sign(mixed, two.shares);
    for (const i of [1, 2]) expect(verifyShare(mixed, bad.list, message, i, bad.z[String(i)]!)).toBe(true);
    expect(() => aggregate(mixed, bad.list, message, bad.z)).toThrow(code('FROST_AGGREGATE_FAILED'));
  });
});

import { randomBytes } from 'node:crypto';
import { CosignerError } from '@cosigner/errors/errors';
import { Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { decodeEnvelope } from '../src/decode.ts';
import { checkAuth, extraSignerKeys } from '../src/quorum.ts';
import { assembleEnvelope, type CandidateSignature, selectMinimalSignatures } from '../src/sigset.ts';
import type { AccountAuth } from '../src/types.ts';
import { account, accountsMap, buildTx, decode, feeBump, newKeys, PASSPHRASE, pay } from './helpers.ts';

function cand(kp: Keypair, hash: Uint8Array): CandidateSignature {
  return { publicKey: kp.publicKey(), signature: Buffer.from(kp.sign(Buffer.from(hash))) };
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof CosignerError ? e.code : 'untyped';
  }
  return undefined;
}

const hints = (sigs: { hint: Buffer }[] | null) => sigs?.map((s) => s.hint.toString('hex')) ?? null;
const hintOf = (kp: Keypair) => Buffer.from(kp.signatureHint()).toString('hex');

describe('selectMinimalSignatures', () => {
  const [x, a, b, c, dest] = newKeys(5) as [Keypair, Keypair, Keypair, Keypair, Keypair];
  const weighted = account(x, {
    masterWeight: 0,
    thresholds: { low: 0, medium: 2, high: 3 },
    signers: [
      { key: a.publicKey(), weight: 1 },
      { key: b.publicKey(), weight: 2 },
    ],
  });
  const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] }));

  it('A=1, B=2, medium 2: from [B, A] (which core refuses) it keeps only B', () => {
    const sel = selectMinimalSignatures(d, accountsMap(weighted), [cand(b, d.hash), cand(a, d.hash)]);
    expect(hints(sel)).toEqual([hintOf(b)]);
    expect(checkAuth(d, accountsMap(weighted), sel!)).toEqual({ ok: true });
  });

  it('prefers fewest signatures: B alone over A + B, whatever the candidate order', () => {
    expect(hints(selectMinimalSignatures(d, accountsMap(weighted), [cand(a, d.hash), cand(b, d.hash)]))).toEqual([
      hintOf(b),
    ]);
  });

  it('2-of-3 with three candidates keeps two, in candidate order', () => {
    const acct = account(x, {
      masterWeight: 0,
      thresholds: { low: 1, medium: 2, high: 2 },
      signers: [a, b, c].map((k) => ({ key: k.publicKey(), weight: 1 })),
    });
    const sel = selectMinimalSignatures(d, accountsMap(acct), [cand(c, d.hash), cand(a, d.hash), cand(b, d.hash)]);
    expect(hints(sel)).toEqual([hintOf(c), hintOf(a)]);
  });

  it('drops signatures that do not verify, keys that are not signers and repeated keys', () => {
    const bad = { publicKey: b.publicKey(), signature: Buffer.from(b.sign(Buffer.from('not the hash'))) };
    const candidates = [bad, cand(dest, d.hash), cand(a, d.hash), cand(a, d.hash), cand(b, d.hash)];
    const before = JSON.stringify(candidates);
    const sel = selectMinimalSignatures(d, accountsMap(weighted), candidates);
    expect(hints(sel)).toEqual([hintOf(b)]);
    expect(JSON.stringify(candidates)).toBe(before);
  });

  it('returns null when the weight cannot be reached', () => {
    expect(selectMinimalSignatures(d, accountsMap(weighted), [cand(a, d.hash)])).toBeNull();
    expect(selectMinimalSignatures(d, accountsMap(weighted), [])).toBeNull();
  });

  it('master weight 0: the master key cannot help', () => {
    expect(selectMinimalSignatures(d, accountsMap(weighted), [cand(x, d.hash)])).toBeNull();
  });

  it('covers several accounts at different levels', () => {
    const [y] = newKeys(1) as [Keypair];
    const Y = account(y, { masterWeight: 1, thresholds: { low: 0, medium: 0, high: 1 } });
    const dd = decode(
      buildTx({
        source: x.publicKey(),
        ops: [
          pay(dest.publicKey()),
          Operation.setOptions({ homeDomain: 'y.example', masterWeight: 1, source: y.publicKey() }),
        ],
      }),
    );
    const sel = selectMinimalSignatures(dd, accountsMap(weighted, Y), [
      cand(y, dd.hash),
      cand(a, dd.hash),
      cand(b, dd.hash),
    ]);
    expect(hints(sel)).toEqual([hintOf(y), hintOf(b)]);
  });

  it('non-ordered thresholds: low 3 above medium 1 needs weight 3 for a payment (core checks the source at LOW)', () => {
    const acct = account(x, {
      masterWeight: 0,
      thresholds: { low: 3, medium: 1, high: 1 },
      signers: [a, b, c].map((k) => ({ key: k.publicKey(), weight: 1 })),
    });
    const sel = selectMinimalSignatures(d, accountsMap(acct), [cand(a, d.hash), cand(b, d.hash), cand(c, d.hash)]);
    expect(sel).toHaveLength(3);
    expect(checkAuth(d, accountsMap(acct), sel!.slice(0, 2))).toMatchObject({ code: 'txBAD_AUTH' });
  });

  it('extra signers must be among the signatures, even with no weight on the account', () => {
    const dx = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())], extraSigners: [c.publicKey()] }));
    const sel = selectMinimalSignatures(dx, accountsMap(weighted), [cand(b, dx.hash), cand(c, dx.hash)]);
    expect(hints(sel)).toEqual([hintOf(b), hintOf(c)]);
    expect(selectMinimalSignatures(dx, accountsMap(weighted), [cand(b, dx.hash)])).toBeNull();
  });

  it('repeated extra signers (malformed under CAP-21) -> null', () => {
    const dx = decode(
      buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())], extraSigners: [c.publicKey(), c.publicKey()] }),
    );
    expect(extraSignerKeys(dx)).toEqual([c.publicKey(), c.publicKey()]);
    expect(selectMinimalSignatures(dx, accountsMap(weighted), [cand(b, dx.hash), cand(c, dx.hash)])).toBeNull();
  });

  it('an extra signer that is a signed payload or hashX cannot be met by hash signatures; a pre-auth of the hash can', () => {
    const payload = randomBytes(8);
    const p = StrKey.encodeSignedPayload(
      Buffer.concat([Buffer.from(c.rawPublicKey()), Buffer.from([0, 0, 0, 8]), payload]),
    );
    const dp = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())], extraSigners: [p] }));
    expect(selectMinimalSignatures(dp, accountsMap(weighted), [cand(b, dp.hash), cand(c, dp.hash)])).toBeNull();
    const dh = decode(
      buildTx({
        source: x.publicKey(),
        ops: [pay(dest.publicKey())],
        extraSigners: [StrKey.encodeSha256Hash(randomBytes(32))],
      }),
    );
    expect(selectMinimalSignatures(dh, accountsMap(weighted), [cand(b, dh.hash)])).toBeNull();
  });

  it('a pre-auth signer equal to the hash needs no signature at all', () => {
    const tx = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    const acct = account(x, { masterWeight: 1, signers: [{ key: StrKey.encodePreAuthTx(tx.hash()), weight: 1 }] });
    const dd = decode(tx);
    expect(selectMinimalSignatures(dd, accountsMap(acct), [cand(x, dd.hash)])).toEqual([]);
  });

  it('fee bump: selects outer signatures for the fee source', () => {
    const inner = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    inner.sign(b);
    const fd = decode(feeBump(inner, c));
    const accts = accountsMap(weighted, account(c));
    expect(hints(selectMinimalSignatures(fd, accts, [cand(a, fd.hash), cand(c, fd.hash)]))).toEqual([hintOf(c)]);
    expect(selectMinimalSignatures(fd, accts, [cand(c, fd.inner!.hash)])).toBeNull();
  });

  it('more than 20 signatures needed -> null', () => {
    const keys = newKeys(21);
    const acct = account(x, {
      masterWeight: 0,
      thresholds: { low: 21, medium: 21, high: 21 },
      signers: keys.slice(0, 20).map((k) => ({ key: k.publicKey(), weight: 1 })),
    });
    // 20 signers of weight 1 cannot reach 21: null, and no attempt to exceed 20.
    expect(
      selectMinimalSignatures(
        d,
        accountsMap(acct),
        keys.map((k) => cand(k, d.hash)),
      ),
    ).toBeNull();
  });

  it('many candidates (beyond the exact search) still give a minimal accepted set', () => {
    const keys = newKeys(26);
    const acct: AccountAuth = account(x, {
      masterWeight: 0,
      thresholds: { low: 1, medium: 5, high: 5 },
      signers: keys.slice(0, 20).map((k, i) => ({ key: k.publicKey(), weight: 1 + (i % 3) })),
    });
    const y = account(keys[20]!, {
      masterWeight: 1,
      signers: keys.slice(21).map((k) => ({ key: k.publicKey(), weight: 1 })),
    });
    const dd = decode(
      buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey()), pay(dest.publicKey(), keys[20]!.publicKey())] }),
    );
    const sel = selectMinimalSignatures(
      dd,
      accountsMap(acct, y),
      keys.map((k) => cand(k, dd.hash)),
    );
    expect(sel).not.toBeNull();
    expect(checkAuth(dd, accountsMap(acct, y), sel!)).toEqual({ ok: true });
    for (let i = 0; i < sel!.length; i++) {
      expect(
        checkAuth(
          dd,
          accountsMap(acct, y),
          sel!.filter((_, j) => j !== i),
        ).ok,
      ).toBe(false);
    }
    const unreachable = account(x, { ...acct, thresholds: { low: 255, medium: 255, high: 255 } });
    expect(
      selectMinimalSignatures(
        dd,
        accountsMap(unreachable, y),
        keys.map((k) => cand(k, dd.hash)),
      ),
    ).toBeNull();
  });

  it.each([
    ['candidates not an array', 'x'],
    ['candidate without signature', [{ publicKey: Keypair.random().publicKey() }]],
    ['null candidate', [null]],
  ])('%s -> STELLAR_BAD_INPUT', (_n, candidates) => {
    expect(codeOf(() => selectMinimalSignatures(d, accountsMap(weighted), candidates as never))).toBe(
      'STELLAR_BAD_INPUT',
    );
  });
  it('a candidate key that is not a G strkey -> STELLAR_BAD_STRKEY', () => {
    expect(
      codeOf(() =>
        selectMinimalSignatures(d, accountsMap(weighted), [{ publicKey: 'GNOPE', signature: Buffer.alloc(64) }]),
      ),
    ).toBe('STELLAR_BAD_STRKEY');
  });
  it('an unknown account -> STELLAR_ACCOUNT_UNKNOWN', () => {
    expect(codeOf(() => selectMinimalSignatures(d, accountsMap(), [cand(a, d.hash)]))).toBe('STELLAR_ACCOUNT_UNKNOWN');
  });
});

describe('assembleEnvelope', () => {
  const [x, a, b, dest] = newKeys(4) as [Keypair, Keypair, Keypair, Keypair];
  const acct = account(x, {
    masterWeight: 0,
    thresholds: { low: 1, medium: 2, high: 2 },
    signers: [a, b].map((k) => ({ key: k.publicKey(), weight: 1 })),
  });

  it('writes exactly the selected signatures; the result decodes, hashes the same and passes checkAuth', () => {
    const tx = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    tx.sign(x); // an unwanted signature already in the envelope is replaced
    const d = decode(tx);
    const sel = selectMinimalSignatures(d, accountsMap(acct), [cand(a, d.hash), cand(b, d.hash)])!;
    const out = assembleEnvelope(d, sel);
    const back = decodeEnvelope(out, PASSPHRASE);
    expect(back.hash.equals(d.hash)).toBe(true);
    expect(back.signatures).toEqual(sel);
    expect(checkAuth(back, accountsMap(acct))).toEqual({ ok: true });
    // The SDK reads it too, and its own verification accepts each signature.
    const sdk = TransactionBuilder.fromXDR(out, PASSPHRASE);
    expect(sdk.signatures).toHaveLength(2);
    expect(a.verify(Buffer.from(sdk.hash()), Buffer.from(sdk.signatures[0]!.signature.value))).toBe(true);
  });

  it('fee bump: replaces the outer signatures and keeps the inner ones', () => {
    const inner = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    inner.sign(a, b);
    const d = decode(feeBump(inner, dest));
    const out = assembleEnvelope(d, [
      { hint: Buffer.from(dest.signatureHint()), signature: Buffer.from(dest.sign(d.hash)) },
    ]);
    const back = decodeEnvelope(out, PASSPHRASE);
    expect(back.kind).toBe('feeBump');
    expect(back.signatures).toHaveLength(1);
    expect(back.inner!.signatures).toHaveLength(2);
    expect(checkAuth(back, accountsMap(account(dest)))).toEqual({ ok: true });
    expect(checkAuth(back.inner!, accountsMap(acct))).toEqual({ ok: true });
  });

  it('an empty set gives an unsigned envelope', () => {
    const tx = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    tx.sign(a);
    expect(decodeEnvelope(assembleEnvelope(decode(tx), []), PASSPHRASE).signatures).toEqual([]);
  });

  it.each([
    [
      '21 signatures',
      Array.from({ length: 21 }, () => ({ hint: Buffer.alloc(4), signature: Buffer.alloc(64) })),
      'STELLAR_TOO_MANY_SIGNATURES',
    ],
    ['hint of 5 bytes', [{ hint: Buffer.alloc(5), signature: Buffer.alloc(64) }], 'STELLAR_BAD_INPUT'],
    ['signature of 65 bytes', [{ hint: Buffer.alloc(4), signature: Buffer.alloc(65) }], 'STELLAR_BAD_INPUT'],
    ['null', [null], 'STELLAR_BAD_INPUT'],
    ['not an array', 'x', 'STELLAR_BAD_INPUT'],
  ])('%s -> %s', (_n, sigs, code) => {
    const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] }));
    expect(codeOf(() => assembleEnvelope(d, sigs as never))).toBe(code);
  });
});

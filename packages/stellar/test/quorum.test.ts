import { createHash, randomBytes } from 'node:crypto';
import { CosignerError } from '@cosigner/errors/errors';
import { Account, Keypair, MuxedAccount, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import {
  checkAuth,
  checkAuthDetailed,
  computeRequirements,
  extraSignerKeys,
  neededLevels,
  parseAccount,
  parseSignerKey,
  signedPayloadHint,
} from '../src/quorum.ts';
import type { AccountAuth } from '../src/types.ts';
import { account, accountsMap, buildTx, decode, feeBump, newKeys, PASSPHRASE, pay, sigOf } from './helpers.ts';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof CosignerError ? e.code : 'untyped';
  }
  return undefined;
}

describe('checkAuth: the greedy, order-dependent checker (stellar-core SignatureChecker examples)', () => {
  // Account X: master weight 0, A = 1, B = 2, medium threshold 2.
  const [x, a, b, dest] = newKeys(4) as [Keypair, Keypair, Keypair, Keypair];
  const X = account(x, {
    masterWeight: 0,
    thresholds: { low: 0, medium: 2, high: 3 },
    signers: [
      { key: a.publicKey(), weight: 1 },
      { key: b.publicKey(), weight: 2 },
    ],
  });
  const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] }));
  const accounts = accountsMap(X);

  it('[A, B] passes', () => {
    expect(checkAuth(d, accounts, [sigOf(a, d.hash), sigOf(b, d.hash)])).toEqual({ ok: true });
  });
  it('[B, A] fails with txBAD_AUTH_EXTRA: B alone met both checks, A is unused', () => {
    const r = checkAuth(d, accounts, [sigOf(b, d.hash), sigOf(a, d.hash)]);
    expect(r).toMatchObject({ ok: false, code: 'txBAD_AUTH_EXTRA', unusedSignatures: [1] });
  });
  it('[B] alone passes', () => {
    expect(checkAuth(d, accounts, [sigOf(b, d.hash)])).toEqual({ ok: true });
  });
  it('[A] alone: low passes, the payment (medium 2) fails with opBAD_AUTH at op 0', () => {
    expect(checkAuth(d, accounts, [sigOf(a, d.hash)])).toMatchObject({
      ok: false,
      code: 'txFAILED',
      opIndex: 0,
      opCode: 'opBAD_AUTH',
      accountId: x.publicKey(),
    });
  });
  it('master weight 0: the master key cannot sign (txBAD_AUTH, not even LOW)', () => {
    const r = checkAuth(d, accounts, [sigOf(x, d.hash)]);
    expect(r).toMatchObject({ ok: false, code: 'txBAD_AUTH', accountId: x.publicKey() });
  });
  it('no signature at all: threshold 0 still needs one (txBAD_AUTH)', () => {
    expect(checkAuth(d, accounts, [])).toMatchObject({ ok: false, code: 'txBAD_AUTH' });
  });
  it("defaults to the envelope's own signatures", () => {
    const tx = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    tx.sign(a, b);
    expect(checkAuth(decode(tx), accounts)).toEqual({ ok: true });
    const tx2 = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    tx2.sign(b, a);
    expect(checkAuth(decode(tx2), accounts)).toMatchObject({ code: 'txBAD_AUTH_EXTRA' });
  });
  it('a signature with the right hint that does not verify is skipped', () => {
    const bad = { hint: Buffer.from(b.signatureHint()), signature: Buffer.from(b.sign(Buffer.from('other'))) };
    expect(checkAuth(d, accounts, [sigOf(a, d.hash), bad])).toMatchObject({ code: 'txFAILED' });
  });
  it('a signature whose hint matches nobody is extra', () => {
    expect(checkAuth(d, accounts, [sigOf(a, d.hash), sigOf(b, d.hash), sigOf(dest, d.hash)])).toMatchObject({
      code: 'txBAD_AUTH_EXTRA',
      unusedSignatures: [2],
    });
  });
  it('the same signer twice counts once', () => {
    expect(checkAuth(d, accounts, [sigOf(a, d.hash), sigOf(a, d.hash)])).toMatchObject({ code: 'txFAILED' });
  });
  it('reports which signatures were used', () => {
    const r = checkAuthDetailed(d, accounts, [sigOf(b, d.hash), sigOf(a, d.hash)]);
    expect(r.used).toEqual([true, false]);
  });
});

describe('checkAuth: 2-of-3 accounts', () => {
  const [x, a, b, c, dest] = newKeys(5) as [Keypair, Keypair, Keypair, Keypair, Keypair];
  const X = account(x, {
    masterWeight: 0,
    thresholds: { low: 1, medium: 2, high: 2 },
    signers: [a, b, c].map((k) => ({ key: k.publicKey(), weight: 1 })),
  });
  const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] }));
  it('any 2 of 3 pass', () => {
    for (const pair of [
      [a, b],
      [b, c],
      [c, a],
    ] as const) {
      expect(
        checkAuth(
          d,
          accountsMap(X),
          pair.map((k) => sigOf(k, d.hash)),
        ),
      ).toEqual({ ok: true });
    }
  });
  it('3 of 3 fail with txBAD_AUTH_EXTRA', () => {
    expect(
      checkAuth(
        d,
        accountsMap(X),
        [a, b, c].map((k) => sigOf(k, d.hash)),
      ),
    ).toMatchObject({
      code: 'txBAD_AUTH_EXTRA',
    });
  });
});

describe('checkAuth: levels per operation', () => {
  const [x, a, b, c] = newKeys(4) as [Keypair, Keypair, Keypair, Keypair];
  const X = account(x, {
    masterWeight: 0,
    thresholds: { low: 1, medium: 2, high: 3 },
    signers: [a, b, c].map((k) => ({ key: k.publicKey(), weight: 1 })),
  });
  it('setOptions adding a signer needs HIGH: 2 of 3 fail at op 0, 3 of 3 pass', () => {
    const d = decode(
      buildTx({
        source: x.publicKey(),
        ops: [Operation.setOptions({ signer: { ed25519PublicKey: Keypair.random().publicKey(), weight: 1 } })],
      }),
    );
    expect(checkAuth(d, accountsMap(X), [sigOf(a, d.hash), sigOf(b, d.hash)])).toMatchObject({
      code: 'txFAILED',
      opIndex: 0,
    });
    expect(
      checkAuth(
        d,
        accountsMap(X),
        [a, b, c].map((k) => sigOf(k, d.hash)),
      ),
    ).toEqual({ ok: true });
  });
  it('setOptions with masterWeight: 0 needs HIGH', () => {
    const d = decode(buildTx({ source: x.publicKey(), ops: [Operation.setOptions({ masterWeight: 0 })] }));
    expect(computeRequirements(d, accountsMap(X))).toEqual([{ accountId: x.publicKey(), level: 'high', weight: 3 }]);
  });
  it('thresholds need not be ordered: low 3 above medium 1 makes a payment need weight 3 (checked at LOW first)', () => {
    const odd = account(x, {
      masterWeight: 0,
      thresholds: { low: 3, medium: 1, high: 1 },
      signers: [a, b, c].map((k) => ({ key: k.publicKey(), weight: 1 })),
    });
    const d = decode(buildTx({ source: x.publicKey(), ops: [pay(a.publicKey())] }));
    expect(computeRequirements(d, accountsMap(odd))).toEqual([
      { accountId: x.publicKey(), level: 'medium', weight: 3 },
    ]);
    expect(checkAuth(d, accountsMap(odd), [sigOf(a, d.hash)])).toMatchObject({ code: 'txBAD_AUTH' });
    expect(
      checkAuth(
        d,
        accountsMap(odd),
        [a, b, c].map((k) => sigOf(k, d.hash)),
      ),
    ).toEqual({ ok: true });
  });
  it('bumpSequence needs only LOW: one signature', () => {
    const d = decode(buildTx({ source: x.publicKey(), ops: [Operation.bumpSequence({ bumpTo: '1000' })] }));
    expect(checkAuth(d, accountsMap(X), [sigOf(a, d.hash)])).toEqual({ ok: true });
  });
  it('accountMerge needs HIGH', () => {
    const d = decode(buildTx({ source: x.publicKey(), ops: [Operation.accountMerge({ destination: a.publicKey() })] }));
    expect(checkAuth(d, accountsMap(X), [sigOf(a, d.hash), sigOf(b, d.hash)])).toMatchObject({ code: 'txFAILED' });
  });
});

describe('checkAuth: several source accounts', () => {
  const [x, y, dest] = newKeys(3) as [Keypair, Keypair, Keypair];
  const X = account(x);
  const Y = account(y, { thresholds: { low: 0, medium: 1, high: 1 } });
  const d = decode(
    buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey()), pay(dest.publicKey(), y.publicKey())] }),
  );

  it('needs each operation source', () => {
    expect(checkAuth(d, accountsMap(X, Y), [sigOf(x, d.hash), sigOf(y, d.hash)])).toEqual({ ok: true });
    // Order does not matter here: each signature belongs to one account only.
    expect(checkAuth(d, accountsMap(X, Y), [sigOf(y, d.hash), sigOf(x, d.hash)])).toEqual({ ok: true });
  });
  it('a missing op source signature fails at that op', () => {
    expect(checkAuth(d, accountsMap(X, Y), [sigOf(x, d.hash)])).toMatchObject({
      code: 'txFAILED',
      opIndex: 1,
      accountId: y.publicKey(),
    });
  });
  it('neededLevels and computeRequirements list the source first, then op sources', () => {
    expect([...neededLevels(d)]).toEqual([
      [x.publicKey(), 'medium'],
      [y.publicKey(), 'medium'],
    ]);
    expect(computeRequirements(d, accountsMap(X, Y))).toEqual([
      { accountId: x.publicKey(), level: 'medium', weight: 1 },
      { accountId: y.publicKey(), level: 'medium', weight: 1 },
    ]);
  });
  it('an unknown account is STELLAR_ACCOUNT_UNKNOWN', () => {
    expect(codeOf(() => computeRequirements(d, accountsMap(X)))).toBe('STELLAR_ACCOUNT_UNKNOWN');
    expect(codeOf(() => checkAuth(d, accountsMap(X), []))).toBe('STELLAR_ACCOUNT_UNKNOWN');
  });
  it('an account map keyed under the wrong id is refused', () => {
    const m = new Map<string, AccountAuth>([
      [x.publicKey(), X],
      [y.publicKey(), X],
    ]);
    expect(codeOf(() => computeRequirements(d, m))).toBe('STELLAR_BAD_ACCOUNT_AUTH');
  });
});

describe('checkAuth: muxed sources reduce to their G account', () => {
  it('M... transaction and operation sources', () => {
    const [x, dest] = newKeys(2) as [Keypair, Keypair];
    const muxed = new MuxedAccount(new Account(x.publicKey(), '5'), '42');
    const tx = new TransactionBuilder(muxed, { fee: '100', networkPassphrase: PASSPHRASE })
      .addOperation(pay(dest.publicKey(), muxed.accountId()))
      .setTimeout(60)
      .build();
    const d = decode(tx);
    expect(tx.source.startsWith('M')).toBe(true);
    expect([...neededLevels(d)]).toEqual([[x.publicKey(), 'medium']]);
    expect(checkAuth(d, accountsMap(account(x)), [sigOf(x, d.hash)])).toEqual({ ok: true });
  });
});

describe('checkAuth: fee bumps', () => {
  const [src, payer, dest] = newKeys(3) as [Keypair, Keypair, Keypair];
  const inner = buildTx({ source: src.publicKey(), ops: [pay(dest.publicKey())] });
  inner.sign(src);
  const accounts = accountsMap(account(src), account(payer));

  it('checks the outer signatures against the fee source at LOW; the inner separately', () => {
    const fb = feeBump(inner, payer);
    fb.sign(payer);
    const d = decode(fb);
    expect([...neededLevels(d)]).toEqual([[payer.publicKey(), 'low']]);
    expect(computeRequirements(d, accounts)).toEqual([{ accountId: payer.publicKey(), level: 'low', weight: 1 }]);
    expect(extraSignerKeys(d)).toEqual([]);
    expect(checkAuth(d, accounts)).toEqual({ ok: true });
    expect(checkAuth(d.inner!, accounts)).toEqual({ ok: true });
  });
  it('an unsigned outer envelope is txBAD_AUTH; an extra outer signature is txBAD_AUTH_EXTRA', () => {
    const d = decode(feeBump(inner, payer));
    expect(checkAuth(d, accounts)).toMatchObject({ code: 'txBAD_AUTH', accountId: payer.publicKey() });
    expect(checkAuth(d, accounts, [sigOf(payer, d.hash), sigOf(src, d.hash)])).toMatchObject({
      code: 'txBAD_AUTH_EXTRA',
    });
    // The inner hash signed by the payer is not a valid outer signature.
    expect(checkAuth(d, accounts, [sigOf(payer, d.inner!.hash)])).toMatchObject({ code: 'txBAD_AUTH' });
  });
});

describe('checkAuth: extra signers (CAP-21) and other signer types', () => {
  const [x, e, dest] = newKeys(3) as [Keypair, Keypair, Keypair];
  const X = account(x);

  it('every extra signer needs a signature, else txBAD_AUTH', () => {
    const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())], extraSigners: [e.publicKey()] }));
    expect(extraSignerKeys(d)).toEqual([e.publicKey()]);
    expect(checkAuth(d, accountsMap(X), [sigOf(x, d.hash)])).toMatchObject({ code: 'txBAD_AUTH' });
    expect(checkAuth(d, accountsMap(X), [sigOf(x, d.hash), sigOf(e, d.hash)])).toEqual({ ok: true });
  });

  it('an ed25519 signed-payload extra signer is met by a signature over the payload', () => {
    const payload = randomBytes(32);
    const p = StrKey.encodeSignedPayload(
      Buffer.concat([Buffer.from(e.rawPublicKey()), Buffer.from([0, 0, 0, 32]), payload]),
    );
    const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())], extraSigners: [p] }));
    const sp = { hint: signedPayloadHint(e.rawPublicKey(), payload), signature: Buffer.from(e.sign(payload)) };
    expect(sp.hint.equals(Buffer.from(e.signPayloadDecorated(payload).hint.value))).toBe(true);
    expect(checkAuth(d, accountsMap(X), [sigOf(x, d.hash), sp])).toEqual({ ok: true });
    // A signature over the tx hash by the same key does not satisfy a signed-payload signer.
    expect(checkAuth(d, accountsMap(X), [sigOf(x, d.hash), sigOf(e, d.hash)])).toMatchObject({ code: 'txBAD_AUTH' });
  });

  it('short signed payloads pad the hint with zeros (as the SDK and core do)', () => {
    const payload = Buffer.from([9, 8]);
    expect(
      signedPayloadHint(e.rawPublicKey(), payload).equals(Buffer.from(e.signPayloadDecorated(payload).hint.value)),
    ).toBe(true);
  });

  it('a hashX signer is met by the preimage', () => {
    const preimage = randomBytes(40);
    const hashX = createHash('sha256').update(preimage).digest();
    const XX = account(x, { masterWeight: 0, signers: [{ key: StrKey.encodeSha256Hash(hashX), weight: 1 }] });
    const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] }));
    const hint = hashX.subarray(28);
    expect(checkAuth(d, accountsMap(XX), [{ hint, signature: preimage }])).toEqual({ ok: true });
    expect(checkAuth(d, accountsMap(XX), [{ hint, signature: randomBytes(40) }])).toMatchObject({ code: 'txBAD_AUTH' });
  });

  it('a pre-auth tx signer equal to the hash needs no signature; any signature is then extra', () => {
    const tx = buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] });
    const T = StrKey.encodePreAuthTx(tx.hash());
    const XX = account(x, { masterWeight: 1, signers: [{ key: T, weight: 1 }] });
    const d = decode(tx);
    expect(checkAuth(d, accountsMap(XX), [])).toEqual({ ok: true });
    expect(checkAuth(d, accountsMap(XX), [sigOf(x, d.hash)])).toMatchObject({ code: 'txBAD_AUTH_EXTRA' });
    const other = account(x, {
      masterWeight: 0,
      signers: [{ key: StrKey.encodePreAuthTx(randomBytes(32)), weight: 1 }],
    });
    expect(checkAuth(d, accountsMap(other), [])).toMatchObject({ code: 'txBAD_AUTH' });
  });
});

describe('checkAuth: limits and bad input', () => {
  const [x, dest] = newKeys(2) as [Keypair, Keypair];
  const d = decode(buildTx({ source: x.publicKey(), ops: [pay(dest.publicKey())] }));
  it('more than 20 signatures is txBAD_AUTH', () => {
    const sigs = Array.from({ length: 21 }, () => sigOf(x, d.hash));
    expect(checkAuth(d, accountsMap(account(x)), sigs)).toMatchObject({ code: 'txBAD_AUTH' });
  });
  it.each([
    ['not an array', 'x'],
    ['hint of 3 bytes', [{ hint: Buffer.alloc(3), signature: Buffer.alloc(64) }]],
    ['signature of 65 bytes', [{ hint: Buffer.alloc(4), signature: Buffer.alloc(65) }]],
    ['null entry', [null]],
  ])('signatures %s -> STELLAR_BAD_INPUT', (_n, sigs) => {
    expect(codeOf(() => checkAuth(d, accountsMap(account(x)), sigs as never))).toBe('STELLAR_BAD_INPUT');
  });
  it.each([
    ['masterWeight 256', { masterWeight: 256 }],
    ['negative threshold', { thresholds: { low: -1, medium: 0, high: 0 } }],
    ['fractional threshold', { thresholds: { low: 0.5, medium: 0, high: 0 } }],
    ['thresholds missing', { thresholds: null as never }],
    ['signers not an array', { signers: 'x' as never }],
    ['21 signers', { signers: Array.from({ length: 21 }, () => ({ key: Keypair.random().publicKey(), weight: 1 })) }],
    ['signer weight negative', { signers: [{ key: Keypair.random().publicKey(), weight: -1 }] }],
    ['signer null', { signers: [null as never] }],
  ])('account %s -> STELLAR_BAD_ACCOUNT_AUTH', (_n, opts) => {
    expect(codeOf(() => parseAccount({ ...account(x), ...(opts as object) } as AccountAuth))).toBe(
      'STELLAR_BAD_ACCOUNT_AUTH',
    );
  });
  it('an account id that is not a G key is refused', () => {
    expect(codeOf(() => parseAccount({ ...account(x), accountId: 'nope' }))).toBe('STELLAR_BAD_ACCOUNT_AUTH');
    expect(codeOf(() => parseAccount(null as never))).toBe('STELLAR_BAD_ACCOUNT_AUTH');
  });
  it('a malformed signer key is STELLAR_BAD_STRKEY', () => {
    expect(codeOf(() => parseAccount(account(x, { signers: [{ key: 'GABC', weight: 1 }] })))).toBe(
      'STELLAR_BAD_STRKEY',
    );
  });
  it('weights above 255 count as 255; weight-0 signers are absent; master first', () => {
    const k = Keypair.random();
    const p = parseAccount(
      account(x, {
        masterWeight: 3,
        signers: [
          { key: k.publicKey(), weight: 1000 },
          { key: Keypair.random().publicKey(), weight: 0 },
        ],
      }),
    );
    expect(p.signers.map((s) => [s.id, s.weight])).toEqual([
      [x.publicKey(), 3],
      [k.publicKey(), 255],
    ]);
    expect(parseSignerKey(k.publicKey(), 70000).weight).toBe(255);
  });
});

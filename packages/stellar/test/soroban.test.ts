import { createHash, randomBytes } from 'node:crypto';
import { CosignerError } from '@cosigner/errors/errors';
import { Address, authorizeEntry, Keypair, Operation, SorobanDataBuilder, StrKey, xdr } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { networkId } from '../src/decode.ts';
import {
  attachAuthSignatures,
  authCredentials,
  authEntryPayload,
  buildMultisigSignatureVector,
  checkAccountAuthSignatures,
  decodeAuthEntry,
  describeAuthEntry,
  parseMultisigSignatureVector,
  SOROBAN_OPERATION_TYPES,
  sorobanShape,
} from '../src/soroban.ts';
import { account, addressAuthEntry, buildTx, fastSign, invocationNode, newKeys, PASSPHRASE, pay } from './helpers.ts';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof CosignerError ? e.code : 'untyped';
  }
  return undefined;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const i64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};
const itemsOf = (v: xdr.ScVal): xdr.ScVal[] => (v.type === 'scvVec' && v.vec !== null ? v.vec : []);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();

const [x, a, b, c] = newKeys(4) as [Keypair, Keypair, Keypair, Keypair];
const contract = StrKey.encodeContract(randomBytes(32));
const root = invocationNode(contract, 'release', [xdr.ScVal.scvU32(7)], [invocationNode(contract, 'transfer')]);
const entry = addressAuthEntry(x.publicKey(), root, 99n, 5000);
const entryV2 = addressAuthEntry(x.publicKey(), root, 99n, 5000, true);
const multisig = account(x, {
  masterWeight: 0,
  thresholds: { low: 1, medium: 2, high: 3 },
  signers: [a, b, c].map((k) => ({ key: k.publicKey(), weight: 1 })),
});
const pair = (kp: Keypair, payload: Uint8Array) => ({
  publicKey: Buffer.from(kp.rawPublicKey()),
  signature: fastSign(kp, payload),
});

describe('authEntryPayload', () => {
  it('ADDRESS: sha256(int32 9 || networkId || int64 nonce || uint32 expiration || XDR(invocation)), by hand', () => {
    const byHand = sha256(Buffer.concat([u32(9), networkId(PASSPHRASE), i64(99n), u32(5000), root.toXdr()]));
    expect(authEntryPayload(entry, PASSPHRASE).equals(byHand)).toBe(true);
  });
  it('ADDRESS_V2: type 10 also binds the address (CAP-71)', () => {
    const address = Address.fromString(x.publicKey()).toScAddress().toXdr();
    const byHand = sha256(Buffer.concat([u32(10), networkId(PASSPHRASE), i64(99n), u32(5000), address, root.toXdr()]));
    expect(authEntryPayload(entryV2, PASSPHRASE).equals(byHand)).toBe(true);
    expect(authEntryPayload(entryV2, PASSPHRASE).equals(authEntryPayload(entry, PASSPHRASE))).toBe(false);
  });
  it('an explicit expiration ledger overrides the entry and changes the payload', () => {
    const byHand = sha256(Buffer.concat([u32(9), networkId(PASSPHRASE), i64(99n), u32(6000), root.toXdr()]));
    expect(authEntryPayload(entry, PASSPHRASE, { signatureExpirationLedger: 6000 }).equals(byHand)).toBe(true);
  });
  it("equals the payload the SDK's authorizeEntry signs, and our one-key vector equals the SDK's", async () => {
    const signed = await authorizeEntry(entry, a, 5000, PASSPHRASE);
    if (signed.credentials.type !== 'sorobanCredentialsAddress') throw new Error('unexpected');
    const sdkVector = signed.credentials.address.signature;
    const [only] = parseMultisigSignatureVector(sdkVector);
    expect(only!.publicKey.equals(Buffer.from(a.rawPublicKey()))).toBe(true);
    const payload = authEntryPayload(entry, PASSPHRASE);
    expect(a.verify(payload, only!.signature)).toBe(true);
    expect(buildMultisigSignatureVector([only!]).toXdr('base64')).toBe(sdkVector.toXdr('base64'));
  });
  it.each([
    [
      'source-account credentials',
      () =>
        authEntryPayload(
          new xdr.SorobanAuthorizationEntry({
            credentials: xdr.SorobanCredentials.sorobanCredentialsSourceAccount(),
            rootInvocation: root,
          }),
          PASSPHRASE,
        ),
      'STELLAR_BAD_AUTH_ENTRY',
    ],
    ['empty passphrase', () => authEntryPayload(entry, ''), 'STELLAR_BAD_NETWORK'],
    [
      'negative expiration',
      () => authEntryPayload(entry, PASSPHRASE, { signatureExpirationLedger: -1 }),
      'STELLAR_BAD_INPUT',
    ],
    ['not an entry', () => authEntryPayload({} as never, PASSPHRASE), 'STELLAR_BAD_INPUT'],
  ])('%s -> %s', (_n, f, code) => {
    expect(codeOf(f)).toBe(code);
  });
});

describe('buildMultisigSignatureVector', () => {
  const payload = authEntryPayload(entry, PASSPHRASE);
  it('sorts strictly ascending by raw public key and leaves the input alone', () => {
    const input = [pair(c, payload), pair(a, payload), pair(b, payload)];
    const before = input.map((s) => s.publicKey.toString('hex'));
    const parsed = parseMultisigSignatureVector(buildMultisigSignatureVector(input));
    const keys = parsed.map((s) => s.publicKey.toString('hex'));
    expect(keys).toEqual([...before].sort());
    expect(input.map((s) => s.publicKey.toString('hex'))).toEqual(before);
  });
  it.each([
    ['empty', []],
    ['21 entries', Array.from({ length: 21 }, () => ({ publicKey: randomBytes(32), signature: randomBytes(64) }))],
    ['31-byte key', [{ publicKey: randomBytes(31), signature: randomBytes(64) }]],
    ['63-byte signature', [{ publicKey: randomBytes(32), signature: randomBytes(63) }]],
    ['null', [null]],
    ['not an array', 'x'],
  ])('%s -> STELLAR_BAD_INPUT', (_n, sigs) => {
    expect(codeOf(() => buildMultisigSignatureVector(sigs as never))).toBe('STELLAR_BAD_INPUT');
  });
  it('the same key twice -> STELLAR_BAD_INPUT', () => {
    expect(codeOf(() => buildMultisigSignatureVector([pair(a, payload), pair(a, payload)]))).toBe('STELLAR_BAD_INPUT');
  });
});

describe('checkAccountAuthSignatures (account_contract.rs check_account_authentication)', () => {
  const payload = authEntryPayload(entry, PASSPHRASE);
  const vec = (...kps: Keypair[]) => buildMultisigSignatureVector(kps.map((k) => pair(k, payload)));
  /** A vector in exactly the given order (bypassing the sort), to test the host's order rule. */
  const rawVec = (...kps: Keypair[]) =>
    xdr.ScVal.scvVec(kps.map((k) => itemsOf(buildMultisigSignatureVector([pair(k, payload)]))[0]!));

  it('2 of 3 at MEDIUM 2 passes; extra signatures are not an error', () => {
    expect(checkAccountAuthSignatures(multisig, payload, vec(a, b))).toEqual({ ok: true, weight: 2 });
    expect(checkAccountAuthSignatures(multisig, payload, vec(a, b, c))).toEqual({ ok: true, weight: 3 });
  });
  it('keys out of ascending order fail', () => {
    const [lo, hi] = [a, b].sort((p, q) =>
      Buffer.compare(Buffer.from(p.rawPublicKey()), Buffer.from(q.rawPublicKey())),
    );
    expect(checkAccountAuthSignatures(multisig, payload, rawVec(lo!, hi!)).ok).toBe(true);
    expect(checkAccountAuthSignatures(multisig, payload, rawVec(hi!, lo!))).toEqual({
      ok: false,
      reason: 'public keys are not ordered',
    });
    expect(checkAccountAuthSignatures(multisig, payload, rawVec(lo!, lo!))).toMatchObject({ ok: false });
  });
  it('one signature is below the threshold', () => {
    expect(checkAccountAuthSignatures(multisig, payload, vec(a))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/lower than the medium threshold/),
    });
  });
  it('a key that is not a signer fails the whole entry, even with enough weight otherwise', () => {
    const outsider = Keypair.random();
    expect(checkAccountAuthSignatures(multisig, payload, vec(a, b, outsider))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/does not belong/),
    });
    // Master weight 0: the account's own key does not belong either.
    expect(checkAccountAuthSignatures(multisig, payload, vec(a, b, x))).toMatchObject({ ok: false });
  });
  it('a signature over another payload (e.g. another expiration) fails', () => {
    const other = authEntryPayload(entry, PASSPHRASE, { signatureExpirationLedger: 5001 });
    const v = buildMultisigSignatureVector([pair(a, payload), pair(b, other)]);
    expect(checkAccountAuthSignatures(multisig, payload, v)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/invalid signature/),
    });
  });
  it('the master key counts with thresholds[0]; a zero MEDIUM threshold accepts an empty vector, as the host does', () => {
    const single = account(x, { masterWeight: 2, thresholds: { low: 0, medium: 2, high: 2 } });
    expect(checkAccountAuthSignatures(single, payload, vec(x))).toEqual({ ok: true, weight: 2 });
    expect(checkAccountAuthSignatures(account(x), payload, xdr.ScVal.scvVec([]))).toEqual({ ok: true, weight: 0 });
  });
  it('more than 20 entries and malformed vectors fail', () => {
    const many = xdr.ScVal.scvVec(Array.from({ length: 21 }, () => itemsOf(vec(a))[0]!));
    expect(checkAccountAuthSignatures(multisig, payload, many)).toEqual({
      ok: false,
      reason: 'too many account signers',
    });
    for (const bad of [
      xdr.ScVal.scvVoid(),
      xdr.ScVal.scvVec([xdr.ScVal.scvU32(1)]),
      xdr.ScVal.scvVec([
        xdr.ScVal.scvMap([
          new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol('public_key'), val: xdr.ScVal.scvBytes(randomBytes(32)) }),
        ]),
      ]),
      xdr.ScVal.scvVec([
        xdr.ScVal.scvMap([
          new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol('signature'), val: xdr.ScVal.scvBytes(randomBytes(64)) }),
          new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol('public_key'), val: xdr.ScVal.scvBytes(randomBytes(32)) }),
        ]),
      ]),
      xdr.ScVal.scvVec([
        xdr.ScVal.scvMap([
          new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol('public_key'), val: xdr.ScVal.scvBytes(randomBytes(31)) }),
          new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol('signature'), val: xdr.ScVal.scvBytes(randomBytes(64)) }),
        ]),
      ]),
    ]) {
      expect(checkAccountAuthSignatures(multisig, payload, bad).ok).toBe(false);
    }
  });
});

describe('attachAuthSignatures', () => {
  const payload = authEntryPayload(entry, PASSPHRASE);
  const v = buildMultisigSignatureVector([pair(a, payload), pair(b, payload)]);
  it('ADDRESS: writes the vector, keeps nonce, address and invocation', () => {
    const signed = attachAuthSignatures(entry, v);
    if (signed.credentials.type !== 'sorobanCredentialsAddress') throw new Error('type changed');
    expect(signed.credentials.address.signature.toXdr('base64')).toBe(v.toXdr('base64'));
    expect(signed.credentials.address.nonce).toBe(99n);
    expect(signed.rootInvocation.toXdr('base64')).toBe(root.toXdr('base64'));
    // The payload does not depend on the signature, so it is unchanged and the signatures still check.
    expect(authEntryPayload(signed, PASSPHRASE).equals(payload)).toBe(true);
    expect(checkAccountAuthSignatures(multisig, payload, signed.credentials.address.signature).ok).toBe(true);
    // The input entry is untouched.
    expect(entry.credentials.type === 'sorobanCredentialsAddress' && entry.credentials.address.signature.type).toBe(
      'scvVoid',
    );
  });
  it('ADDRESS_V2 and WITH_DELEGATES keep their form; an expiration override is written', () => {
    const s2 = attachAuthSignatures(entryV2, v, { signatureExpirationLedger: 7000 });
    expect(s2.credentials.type).toBe('sorobanCredentialsAddressV2');
    expect(describeAuthEntry(s2).signatureExpirationLedger).toBe(7000);
    const creds = (entryV2.credentials as xdr.SorobanCredentialsAddressV2).addressV2;
    const delegated = new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsAddressWithDelegates(
        new xdr.SorobanAddressCredentialsWithDelegates({ addressCredentials: creds, delegates: [] }),
      ),
      rootInvocation: root,
    });
    const s3 = attachAuthSignatures(delegated, v);
    expect(s3.credentials.type).toBe('sorobanCredentialsAddressWithDelegates');
    // V2 and WITH_DELEGATES sign the same address-bound payload (CAP-71).
    expect(authEntryPayload(s3, PASSPHRASE).equals(authEntryPayload(entryV2, PASSPHRASE))).toBe(true);
  });
  it('refuses source-account credentials and a non-ScVal signature', () => {
    const src = new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsSourceAccount(),
      rootInvocation: root,
    });
    expect(codeOf(() => attachAuthSignatures(src, v))).toBe('STELLAR_BAD_AUTH_ENTRY');
    expect(codeOf(() => attachAuthSignatures(entry, 'x' as never))).toBe('STELLAR_BAD_INPUT');
  });
});

describe('decodeAuthEntry and describeAuthEntry', () => {
  it('round-trips a base64 entry and describes it', () => {
    const b64 = entry.toXdr('base64');
    const back = decodeAuthEntry(b64);
    expect(back.toXdr('base64')).toBe(b64);
    expect(describeAuthEntry(back)).toMatchObject({
      credentials: 'address',
      address: x.publicKey(),
      nonce: '99',
      signatureExpirationLedger: 5000,
      invocation: {
        contractId: contract,
        functionName: 'release',
        args: [7],
        subInvocations: [{ functionName: 'transfer' }],
      },
    });
  });
  it.each([
    ['not a string', () => decodeAuthEntry(5 as never), 'STELLAR_BAD_INPUT'],
    ['too large', () => decodeAuthEntry('AAAA'.repeat(10), { maxBytes: 8 }), 'STELLAR_XDR_TOO_LARGE'],
    ['garbage', () => decodeAuthEntry('!!!!'), 'STELLAR_MALFORMED_XDR'],
    [
      'truncated',
      () => decodeAuthEntry(Buffer.from(entry.toXdr()).subarray(0, 20).toString('base64')),
      'STELLAR_MALFORMED_XDR',
    ],
    ['describe a non-entry', () => describeAuthEntry({} as never), 'STELLAR_BAD_INPUT'],
  ])('%s -> %s', (_n, f, code) => {
    expect(codeOf(f)).toBe(code);
  });
  it('refuses non-canonical XDR (non-zero padding after a symbol)', () => {
    const raw = Buffer.from(entry.toXdr());
    const at = raw.indexOf(Buffer.from('release\0'));
    expect(at).toBeGreaterThan(0);
    raw[at + 7] = 1;
    expect(codeOf(() => decodeAuthEntry(raw.toString('base64')))).toBe('STELLAR_MALFORMED_XDR');
  });
});

describe('authCredentials: the one switch from an entry to the address it speaks for', () => {
  it('names the address of ADDRESS, ADDRESS_V2 and WITH_DELEGATES entries, and none for SOURCE_ACCOUNT', () => {
    expect(authCredentials(entry)).toMatchObject({ credentials: 'address', address: x.publicKey() });
    expect(authCredentials(entryV2)).toMatchObject({ credentials: 'addressV2', address: x.publicKey() });
    const creds = (entryV2.credentials as xdr.SorobanCredentialsAddressV2).addressV2;
    const delegated = new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsAddressWithDelegates(
        new xdr.SorobanAddressCredentialsWithDelegates({ addressCredentials: creds, delegates: [] }),
      ),
      rootInvocation: root,
    });
    const d = authCredentials(delegated);
    expect(d).toMatchObject({ credentials: 'addressWithDelegates', address: x.publicKey() });
    expect(d.credentials !== 'sourceAccount' && d.creds.nonce.toString()).toBe('99');
    const onContract = addressAuthEntry(contract, root, 1n, 10);
    expect(authCredentials(onContract)).toMatchObject({ credentials: 'address', address: contract });
    const src = new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsSourceAccount(),
      rootInvocation: root,
    });
    expect(authCredentials(src)).toEqual({ credentials: 'sourceAccount' });
    expect(codeOf(() => authCredentials({} as xdr.SorobanAuthorizationEntry))).toBe('STELLAR_BAD_INPUT');
  });
});

describe('sorobanShape (TransactionFrame::commonValidPreSeqNum, state-independent part)', () => {
  const source = x.publicKey();
  const data = () =>
    new SorobanDataBuilder()
      .setResourceFee(5000)
      .setResources(1000, 200, 300)
      .setReadOnly([xdr.LedgerKey.account(new xdr.LedgerKeyAccount({ accountId: Keypair.random().xdrPublicKey() }))])
      .build();
  const withData = (ops: xdr.Operation[], d?: xdr.SorobanTransactionData): xdr.Transaction => {
    const tx = buildTx({ source, ops });
    const raw = tx.tx as xdr.Transaction;
    if (!d) return raw;
    return new xdr.Transaction({ ...raw, ext: xdr.TransactionExt.sorobanData(d) } as ConstructorParameters<
      typeof xdr.Transaction
    >[0]);
  };
  const invoke = () =>
    Operation.invokeContractFunction({ contract, function: 'release', args: [], auth: [entry, entryV2] });

  it('knows the three Soroban operation types and nothing else', () => {
    expect([...SOROBAN_OPERATION_TYPES].sort()).toEqual([
      'extendFootprintTtl',
      'invokeHostFunction',
      'restoreFootprint',
    ]);
  });

  it('a classic transaction is classic; with SorobanTransactionData it says so (core: txMALFORMED)', () => {
    expect(sorobanShape(withData([pay(a.publicKey())]))).toEqual({ kind: 'classic', hasData: false });
    expect(sorobanShape(withData([pay(a.publicKey())], data()))).toEqual({ kind: 'classic', hasData: true });
  });

  it('a Soroban operation must be alone and carry its resources', () => {
    expect(sorobanShape(withData([invoke(), pay(a.publicKey())], data()))).toEqual({
      kind: 'malformed',
      problem: 'operationCount',
      operations: 2,
    });
    expect(sorobanShape(withData([invoke()]))).toEqual({ kind: 'malformed', problem: 'noResources', operations: 1 });
  });

  it('a well-formed one: its operation, declared resources and auth entries', () => {
    const shape = sorobanShape(withData([invoke()], data()));
    expect(shape.kind).toBe('soroban');
    if (shape.kind !== 'soroban') return;
    expect(shape.operation.body.type).toBe('invokeHostFunction');
    expect(shape.auth.map((e) => e.credentials.type)).toEqual([
      'sorobanCredentialsAddress',
      'sorobanCredentialsAddressV2',
    ]);
    expect(shape.resources).toEqual({
      resourceFee: 5000n,
      instructions: 1000,
      diskReadBytes: 200,
      writeBytes: 300,
      readOnlyEntries: 1,
      readWriteEntries: 0,
      footprintEntries: 1,
    });
    const ttl = sorobanShape(withData([Operation.extendFootprintTtl({ extendTo: 1000 })], data()));
    expect(ttl.kind === 'soroban' && ttl.auth).toEqual([]);
    const restore = sorobanShape(withData([Operation.restoreFootprint({})], data()));
    expect(restore.kind).toBe('soroban');
  });

  it('refuses what is not a v1 transaction', () => {
    expect(codeOf(() => sorobanShape({} as xdr.Transaction))).toBe('STELLAR_BAD_INPUT');
  });
});

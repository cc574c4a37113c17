import { randomBytes } from 'node:crypto';
import {
  Account,
  Address,
  Asset,
  type FeeBumpTransaction,
  Keypair,
  Memo,
  MuxedAccount,
  nativeToScVal,
  Operation,
  SorobanDataBuilder,
  StrKey,
  type Transaction,
  TransactionBuilder,
  xdr,
} from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import type { DecodedTransaction } from '../src/decode.ts';
import { assetRef, describeAuthEntry, describeTransaction, jsonSafe } from '../src/describe.ts';
import type { OperationSummary } from '../src/types.ts';
import {
  addressAuthEntry,
  buildTx,
  decode,
  everyOperation,
  feeBump,
  invocationNode,
  invokeArgs,
  newKeys,
  PASSPHRASE,
  pay,
} from './helpers.ts';

const [src, other] = newKeys(2) as [Keypair, Keypair];

function summaryOf(op: xdr.Operation): OperationSummary {
  return describeTransaction(decode(buildTx({ source: src.publicKey(), ops: [op] }))).operations[0]!;
}

describe('describeTransaction: every operation type', () => {
  const ops = everyOperation();
  const d = decode(buildTx({ source: src.publicKey(), ops: ops.map((o) => o.op) }));
  const s = describeTransaction(d);

  it('reports each operation, in order, with its SDK type and none unknown', () => {
    expect(s.operations.map((o) => o.type)).toEqual(ops.map((o) => o.type));
    expect(s.operations.every((o, i) => o.index === i && o.source === src.publicKey() && !o.explicitSource)).toBe(true);
    expect(s.operations.every((o) => o.raw !== undefined)).toBe(true);
  });
  it('is JSON-safe (no bigint, no Buffer) and round-trips through JSON', () => {
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });
  it('carries hash, source, fee, sequence, memo and preconditions', () => {
    expect(s.kind).toBe('transaction');
    expect(s.hash).toBe(d.hash.toString('hex'));
    expect(s.source).toBe(src.publicKey());
    expect(s.fee).toBe(String(100 * ops.length));
    expect(s.seqNum).toBe('101');
    expect(s.memo).toEqual({ type: 'none' });
    expect(s.preconditions.timeBounds!.minTime).toBe('0');
    expect(Number(s.preconditions.timeBounds!.maxTime)).toBeGreaterThan(0);
    expect(s.sorobanResourceFee).toBeUndefined();
  });
  it('every operation has the threshold level core gives it', () => {
    const byType = Object.fromEntries(s.operations.map((o) => [o.type, o.thresholdLevel]));
    expect(byType.accountMerge).toBe('high');
    expect(byType.bumpSequence).toBe('low');
    expect(byType.payment).toBe('medium');
  });
});

describe('describeTransaction: fields per operation', () => {
  const usd = new Asset('USD', other.publicKey());
  it('payment: exact decimal amount, asset, destination', () => {
    const o = summaryOf(
      Operation.payment({ destination: other.publicKey(), asset: usd, amount: '922337203685.4775807' }),
    );
    expect(o).toMatchObject({
      type: 'payment',
      destination: other.publicKey(),
      asset: { type: 'credit', code: 'USD', issuer: other.publicKey() },
      amount: '922337203685.4775807',
    });
  });
  it('createAccount mirrors the starting balance as a native amount', () => {
    expect(
      summaryOf(Operation.createAccount({ destination: other.publicKey(), startingBalance: '0.0000001' })),
    ).toMatchObject({
      startingBalance: '0.0000001',
      asset: { type: 'native' },
      amount: '0.0000001',
    });
  });
  it('path payments: send and destination sides, amount = most the source sends', () => {
    const r = summaryOf(
      Operation.pathPaymentStrictReceive({
        sendAsset: Asset.native(),
        sendMax: '10',
        destination: other.publicKey(),
        destAsset: usd,
        destAmount: '3',
        path: [usd],
      }),
    );
    expect(r).toMatchObject({
      sendMax: '10.0000000',
      destAmount: '3.0000000',
      amount: '10.0000000',
      asset: { type: 'native' },
    });
    expect(r.path).toHaveLength(1);
    const s = summaryOf(
      Operation.pathPaymentStrictSend({
        sendAsset: usd,
        sendAmount: '4',
        destination: other.publicKey(),
        destAsset: Asset.native(),
        destMin: '1',
        path: [],
      }),
    );
    expect(s).toMatchObject({
      sendAmount: '4.0000000',
      destMin: '1.0000000',
      amount: '4.0000000',
      destAsset: { type: 'native' },
    });
  });
  it('offers: selling, buying, price, offer id', () => {
    expect(
      summaryOf(
        Operation.manageSellOffer({ selling: usd, buying: Asset.native(), amount: '1', price: '0.5', offerId: '9' }),
      ),
    ).toMatchObject({
      selling: { code: 'USD' },
      buying: { type: 'native' },
      price: '0.5',
      offerId: '9',
      amount: '1.0000000',
    });
    expect(
      summaryOf(
        Operation.manageBuyOffer({ selling: usd, buying: Asset.native(), buyAmount: '2', price: '3', offerId: '0' }),
      ),
    ).toMatchObject({ asset: { type: 'native' }, amount: '2.0000000', price: '3' });
    const passive = summaryOf(
      Operation.createPassiveSellOffer({ selling: usd, buying: Asset.native(), amount: '1', price: '1' }),
    );
    expect(passive.offerId).toBeUndefined();
    expect(passive.selling).toEqual(assetRef(usd));
  });
  it('setOptions lists only the fields present, signer as strkey', () => {
    const k = Keypair.random().publicKey();
    expect(
      summaryOf(
        Operation.setOptions({
          masterWeight: 0,
          lowThreshold: 1,
          medThreshold: 2,
          highThreshold: 3,
          signer: { ed25519PublicKey: k, weight: 1 },
          homeDomain: 'example.org',
          inflationDest: other.publicKey(),
          setFlags: 2,
          clearFlags: 1,
        }),
      ).setOptions,
    ).toEqual({
      masterWeight: 0,
      lowThreshold: 1,
      medThreshold: 2,
      highThreshold: 3,
      signer: { key: k, weight: 1 },
      homeDomain: 'example.org',
      inflationDest: other.publicKey(),
      setFlags: 2,
      clearFlags: 1,
    });
    expect(summaryOf(Operation.setOptions({ homeDomain: 'x' })).setOptions).toEqual({ homeDomain: 'x' });
  });
  it('changeTrust (asset and pool shares), allowTrust, setTrustLineFlags', () => {
    expect(summaryOf(Operation.changeTrust({ asset: usd, limit: '5' }))).toMatchObject({
      asset: assetRef(usd),
      limit: '5.0000000',
    });
    const pool = everyOperation().filter((o) => o.type === 'changeTrust')[1]!.op;
    expect(summaryOf(pool).asset).toMatchObject({ type: 'pool' });
    expect((summaryOf(pool).asset as { poolId: string }).poolId).toMatch(/^[0-9a-f]{64}$/);
    expect(
      summaryOf(Operation.allowTrust({ trustor: other.publicKey(), assetCode: 'USD', authorize: 1 })),
    ).toMatchObject({
      destination: other.publicKey(),
      asset: { type: 'credit', code: 'USD', issuer: src.publicKey() },
    });
    expect(
      summaryOf(Operation.setTrustLineFlags({ trustor: other.publicKey(), asset: usd, flags: { authorized: true } })),
    ).toMatchObject({ destination: other.publicKey(), asset: assetRef(usd) });
  });
  it('manageData value as hex (null when deleting), bumpSequence, accountMerge', () => {
    expect(summaryOf(Operation.manageData({ name: 'k', value: Buffer.from([1, 2]) }))).toMatchObject({
      dataName: 'k',
      dataValue: '0102',
    });
    expect(summaryOf(Operation.manageData({ name: 'k', value: null })).dataValue).toBeNull();
    expect(summaryOf(Operation.bumpSequence({ bumpTo: '9223372036854775807' })).bumpTo).toBe('9223372036854775807');
    expect(summaryOf(Operation.accountMerge({ destination: other.publicKey() })).destination).toBe(other.publicKey());
  });
  it('claimable balances, clawback, pools and sponsorship keep their details in raw', () => {
    const ops = Object.fromEntries(everyOperation().map((o) => [o.type, summaryOf(o.op)]));
    expect(ops.createClaimableBalance).toMatchObject({ amount: '4.0000000', asset: { code: 'USD' } });
    expect((ops.createClaimableBalance!.raw!.claimants as unknown[])[0]).toHaveProperty('destination');
    expect(ops.claimClaimableBalance!.raw!.balanceId).toMatch(/^00000000/);
    expect(ops.clawback).toMatchObject({ amount: '1.2500000' });
    expect(ops.clawback!.raw!.from).toMatch(/^G/);
    expect(ops.liquidityPoolDeposit!.asset).toMatchObject({ type: 'pool' });
    expect(ops.liquidityPoolDeposit!.raw).toMatchObject({ maxAmountA: '10.0000000', minPrice: '0.45' });
    expect(ops.liquidityPoolWithdraw).toMatchObject({ amount: '5.0000000' });
    expect(ops.beginSponsoringFutureReserves!.raw!.sponsoredId).toMatch(/^G/);
    expect(ops.revokeSignerSponsorship!.raw).toHaveProperty('signer');
    expect(ops.extendFootprintTtl!.raw).toEqual({ extendTo: 1000 });
  });
  it('allowTrust from a muxed source names the G issuer', () => {
    const muxed = new MuxedAccount(new Account(src.publicKey(), '1'), '7');
    const tx = new TransactionBuilder(muxed, { fee: '100', networkPassphrase: PASSPHRASE })
      .addOperation(
        Operation.allowTrust({ trustor: other.publicKey(), assetCode: 'USD', authorize: 1, source: muxed.accountId() }),
      )
      .setTimeout(30)
      .build();
    const o = describeTransaction(decode(tx)).operations[0]!;
    expect(o.source.startsWith('M')).toBe(true);
    expect(o.asset).toEqual({ type: 'credit', code: 'USD', issuer: src.publicKey() });
  });
  it('an explicit operation source is reported', () => {
    const o = summaryOf(pay(src.publicKey(), other.publicKey()));
    expect(o).toMatchObject({ source: other.publicKey(), explicitSource: true });
  });
});

describe('describeTransaction: Soroban', () => {
  const contract = StrKey.encodeContract(randomBytes(32));
  const token = StrKey.encodeContract(randomBytes(32));
  const amount = nativeToScVal(10n ** 20n, { type: 'i128' });

  it('invokeHostFunction: contract, function, JSON-safe args, sub-invocations from the auth tree, auth entries', () => {
    const root = invocationNode(
      contract,
      'swap',
      [nativeToScVal(other.publicKey(), { type: 'address' }), amount],
      [invocationNode(token, 'transfer', [amount])],
    );
    const auth = [
      addressAuthEntry(other.publicKey(), root, 42n, 5000),
      new xdr.SorobanAuthorizationEntry({
        credentials: xdr.SorobanCredentials.sorobanCredentialsSourceAccount(),
        rootInvocation: root,
      }),
    ];
    const op = Operation.invokeHostFunction({
      func: xdr.HostFunction.hostFunctionTypeInvokeContract(
        invokeArgs(contract, 'swap', [nativeToScVal(other.publicKey(), { type: 'address' }), amount]),
      ),
      auth,
    });
    const o = summaryOf(op);
    expect(o.invocation).toEqual({
      kind: 'contract',
      contractId: contract,
      functionName: 'swap',
      args: [other.publicKey(), '100000000000000000000'],
      subInvocations: [
        {
          kind: 'contract',
          contractId: token,
          functionName: 'transfer',
          args: ['100000000000000000000'],
          subInvocations: [],
        },
      ],
    });
    expect(o.authEntries).toHaveLength(2);
    expect(o.authEntries![0]).toMatchObject({
      credentials: 'address',
      address: other.publicKey(),
      nonce: '42',
      signatureExpirationLedger: 5000,
    });
    expect(o.authEntries![1]).toMatchObject({ credentials: 'sourceAccount' });
    expect(o.authEntries![1]!.address).toBeUndefined();
  });

  it('a call without a matching auth entry has no sub-invocations', () => {
    const o = summaryOf(Operation.invokeContractFunction({ contract, function: 'ping', args: [] }));
    expect(o.invocation).toMatchObject({ functionName: 'ping', args: [], subInvocations: [] });
    expect(o.authEntries).toEqual([]);
  });

  it('createContract (v2 with constructor args) and uploadContractWasm', () => {
    const wasmHash = randomBytes(32);
    const c = summaryOf(
      Operation.createCustomContract({
        address: Address.fromString(src.publicKey()),
        wasmHash,
        constructorArgs: [nativeToScVal(5, { type: 'u32' })],
      }),
    );
    expect(c.invocation!.kind).toBe('createContractV2');
    expect(c.invocation!.args).toEqual([5]);
    expect(c.invocation!.details).toHaveProperty('executable');
    const sac = summaryOf(Operation.createStellarAssetContract({ asset: new Asset('USD', other.publicKey()) }));
    expect(['createContract', 'createContractV2']).toContain(sac.invocation!.kind);
    const wasm = Buffer.from('0061736d01000000', 'hex');
    const u = summaryOf(Operation.uploadContractWasm({ wasm }));
    expect(u.invocation).toMatchObject({
      kind: 'other',
      functionName: 'uploadContractWasm',
      details: { wasmBytes: 8 },
    });
  });

  it('auth entries for contract creation, V2 and delegated credentials', () => {
    const create = new xdr.SorobanAuthorizedInvocation({
      function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeCreateContractHostFn(
        new xdr.CreateContractArgs({
          contractIdPreimage: xdr.ContractIdPreimage.contractIdPreimageFromAddress(
            new xdr.ContractIdPreimageFromAddress({
              address: Address.fromString(src.publicKey()).toScAddress(),
              salt: new xdr.Uint256Bytes(randomBytes(32)),
            }),
          ),
          executable: xdr.ContractExecutable.contractExecutableWasm(new xdr.Hash(randomBytes(32))),
        }),
      ),
      subInvocations: [],
    });
    const e = describeAuthEntry(addressAuthEntry(src.publicKey(), create, 1n, 10, true));
    expect(e).toMatchObject({
      credentials: 'addressV2',
      address: src.publicKey(),
      invocation: { kind: 'createContract' },
    });
    const createV2 = new xdr.SorobanAuthorizedInvocation({
      function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeCreateContractV2HostFn(
        new xdr.CreateContractArgsV2({
          contractIdPreimage: xdr.ContractIdPreimage.contractIdPreimageFromAddress(
            new xdr.ContractIdPreimageFromAddress({
              address: Address.fromString(src.publicKey()).toScAddress(),
              salt: new xdr.Uint256Bytes(randomBytes(32)),
            }),
          ),
          executable: xdr.ContractExecutable.contractExecutableWasm(new xdr.Hash(randomBytes(32))),
          constructorArgs: [xdr.ScVal.scvU32(1)],
        }),
      ),
      subInvocations: [invocationNode(contract, 'init')],
    });
    const e2 = describeAuthEntry(addressAuthEntry(contract, createV2));
    expect(e2.invocation).toMatchObject({
      kind: 'createContractV2',
      args: [1],
      subInvocations: [{ functionName: 'init' }],
    });
    const creds = new xdr.SorobanAddressCredentials({
      address: Address.fromString(src.publicKey()).toScAddress(),
      nonce: 3n,
      signatureExpirationLedger: 9,
      signature: xdr.ScVal.scvVoid(),
    });
    const delegated = new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsAddressWithDelegates(
        new xdr.SorobanAddressCredentialsWithDelegates({ addressCredentials: creds, delegates: [] }),
      ),
      rootInvocation: invocationNode(contract, 'f'),
    });
    expect(describeAuthEntry(delegated)).toMatchObject({ credentials: 'other', address: src.publicKey(), nonce: '3' });
  });

  it('reports the Soroban resource fee', () => {
    const tx = new TransactionBuilder(new Account(src.publicKey(), '1'), { fee: '100', networkPassphrase: PASSPHRASE })
      .addOperation(Operation.invokeContractFunction({ contract, function: 'ping', args: [] }))
      .setSorobanData(new SorobanDataBuilder().setResourceFee(123456n).build())
      .setTimeout(30)
      .build();
    expect(describeTransaction(decode(tx)).sorobanResourceFee).toBe('123456');
  });
});

describe('describeTransaction: memo, preconditions, fee bump', () => {
  it.each([
    [Memo.text('héllo'), { type: 'text', value: 'héllo' }],
    [Memo.id('18446744073709551615'), { type: 'id', value: '18446744073709551615' }],
    [Memo.hash(Buffer.alloc(32, 0xab)), { type: 'hash', value: 'ab'.repeat(32) }],
    [Memo.return(Buffer.alloc(32, 0x01)), { type: 'return', value: '01'.repeat(32) }],
  ])('memo %#', (memo, expected) => {
    expect(
      describeTransaction(decode(buildTx({ source: src.publicKey(), ops: [pay(other.publicKey())], memo }))).memo,
    ).toEqual(expected);
  });

  it('CAP-21 preconditions', () => {
    const e = Keypair.random().publicKey();
    const tx = new TransactionBuilder(new Account(src.publicKey(), '10'), { fee: '100', networkPassphrase: PASSPHRASE })
      .addOperation(pay(other.publicKey()))
      .setTimebounds(100, 200)
      .setLedgerbounds(5, 0)
      .setMinAccountSequence('7')
      .setMinAccountSequenceAge(60n)
      .setMinAccountSequenceLedgerGap(3)
      .setExtraSigners([e])
      .build();
    expect(describeTransaction(decode(tx)).preconditions).toEqual({
      timeBounds: { minTime: '100', maxTime: '200' },
      ledgerBounds: { minLedger: 5, maxLedger: 0 },
      minSeqNum: '7',
      minSeqAge: '60',
      minSeqLedgerGap: 3,
      extraSigners: [e],
    });
  });

  it('fee bump: the inner operations, the outer fee and fee source, and the inner summary', () => {
    const inner = buildTx({ source: src.publicKey(), ops: [pay(other.publicKey())], memo: Memo.text('x') });
    // buildFeeBumpTransaction takes a per-operation base fee: 5000 x (1 op + the bump) = 10000.
    const fb: FeeBumpTransaction = feeBump(inner, other, '5000');
    const d = decode(fb);
    const s = describeTransaction(d);
    expect(s).toMatchObject({ kind: 'feeBump', feeSource: other.publicKey(), fee: '10000', source: src.publicKey() });
    expect(s.hash).toBe(d.hash.toString('hex'));
    expect(s.inner!.hash).toBe(d.inner!.hash.toString('hex'));
    expect(s.inner!.fee).toBe('100');
    expect(s.operations).toEqual(s.inner!.operations);
    expect(s.memo).toEqual({ type: 'text', value: 'x' });
  });
});

describe('unknown operation types are reported, not dropped', () => {
  it("an operation the SDK names but this module does not know comes out as 'unknown' with its XDR", () => {
    const real = decode(buildTx({ source: src.publicKey(), ops: [pay(other.publicKey())] }));
    const tx = real.tx as Transaction;
    // Single-module unit test: a Transaction whose SDK records name a future operation type.
    const future = Object.create(tx, {
      operations: { get: () => [{ type: 'futureOp', amount: 5n }] },
    }) as Transaction;
    const d: DecodedTransaction = { ...real, tx: future };
    const o = describeTransaction(d).operations[0]!;
    expect(o.type).toBe('unknown');
    expect(o.raw).toMatchObject({ sdkType: 'futureOp', amount: '5' });
    expect(xdr.Operation.fromXdr(o.raw!.xdr as string, 'base64').body.type).toBe('payment');
  });
});

describe('jsonSafe', () => {
  it.each([
    [undefined, null],
    [null, null],
    [12n, '12'],
    [new Uint8Array([1, 255]), '01ff'],
    [Number.NaN, 'NaN'],
    [true, true],
    [
      new Map<string, unknown>([
        ['a', 1n],
        ['b', 2],
      ]),
      [
        ['a', '1'],
        ['b', 2],
      ],
    ],
    [{ x: [1n, { y: Buffer.from('ab') }] }, { x: ['1', { y: '6162' }] }],
    [Symbol.for('s'), 'Symbol(s)'],
  ])('%#', (input, out) => {
    expect(jsonSafe(input)).toEqual(out);
  });
});

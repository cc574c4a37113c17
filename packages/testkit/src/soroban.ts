import {
  Account,
  Address,
  nativeToScVal,
  Operation,
  SorobanDataBuilder,
  StrKey,
  TransactionBuilder,
  xdr,
} from '@stellar/stellar-sdk';

/**
 * Soroban fixtures built with the real SDK, shared by the node, coordinator and end-to-end tests:
 * unsigned authorization entries with address credentials (legacy ADDRESS or protocol-27 ADDRESS_V2) and
 * already "simulated" invokeHostFunction transactions that carry SorobanTransactionData.
 */

export type ArgSpec = { address: string } | { i128: bigint } | { symbol: string } | { u32: number };

/** An argument as an ScVal: addresses (G/C), i128 amounts, symbols, u32. */
export function scArg(a: ArgSpec): xdr.ScVal {
  if ('address' in a) return new Address(a.address).toScVal();
  if ('i128' in a) return nativeToScVal(a.i128, { type: 'i128' });
  if ('symbol' in a) return xdr.ScVal.scvSymbol(a.symbol);
  return xdr.ScVal.scvU32(a.u32);
}

export interface CallSpec {
  contract: string;
  fn: string;
  args: ArgSpec[];
  sub?: CallSpec[];
}

export function invocation(c: CallSpec): xdr.SorobanAuthorizedInvocation {
  return new xdr.SorobanAuthorizedInvocation({
    function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(
      new xdr.InvokeContractArgs({
        contractAddress: new Address(c.contract).toScAddress(),
        functionName: c.fn,
        args: c.args.map(scArg),
      }),
    ),
    subInvocations: (c.sub ?? []).map(invocation),
  });
}

export interface EntrySpec extends CallSpec {
  /** The authorizing account (G...). */
  address: string;
  nonce: bigint;
  expiration: number;
  /** Build ADDRESS_V2 credentials (CAP-71) instead of the legacy ADDRESS form. */
  v2?: boolean;
}

/** An unsigned entry (signature: void), as simulation returns it once an expiration is chosen. */
export function authEntry(e: EntrySpec): xdr.SorobanAuthorizationEntry {
  const creds = new xdr.SorobanAddressCredentials({
    address: new Address(e.address).toScAddress(),
    nonce: e.nonce,
    signatureExpirationLedger: e.expiration,
    signature: xdr.ScVal.scvVoid(),
  });
  return new xdr.SorobanAuthorizationEntry({
    credentials: e.v2
      ? xdr.SorobanCredentials.sorobanCredentialsAddressV2(creds)
      : xdr.SorobanCredentials.sorobanCredentialsAddress(creds),
    rootInvocation: invocation(e),
  });
}

/** A source-account entry (covered by the envelope's signatures). */
export function sourceAccountEntry(c: CallSpec): xdr.SorobanAuthorizationEntry {
  return new xdr.SorobanAuthorizationEntry({
    credentials: xdr.SorobanCredentials.sorobanCredentialsSourceAccount(),
    rootInvocation: invocation(c),
  });
}

export interface InvokeTxSpec extends CallSpec {
  source: string;
  /** The sequence number the transaction carries. */
  seq: bigint | string;
  network: string;
  auth: xdr.SorobanAuthorizationEntry[];
  /** Omit to build a transaction without SorobanTransactionData (never simulated). */
  resources?: { fee: number; instructions: number; readOnly?: number; readWrite?: number };
  fee?: string;
  timeoutSeconds?: number;
}

function footprintKey(i: number): xdr.LedgerKey {
  return xdr.LedgerKey.contractData(
    new xdr.LedgerKeyContractData({
      contract: new Address(StrKey.encodeContract(Buffer.alloc(32, 9))).toScAddress(),
      key: xdr.ScVal.scvU32(i),
      durability: xdr.ContractDataDurability.persistent,
    }),
  );
}

/** An unsigned invokeHostFunction envelope (base64) calling `contract.fn(args)` with `auth`. */
export function invokeTx(s: InvokeTxSpec): string {
  const b = new TransactionBuilder(new Account(s.source, (BigInt(s.seq) - 1n).toString()), {
    fee: s.fee ?? '100000',
    networkPassphrase: s.network,
  })
    .addOperation(
      Operation.invokeContractFunction({ contract: s.contract, function: s.fn, args: s.args.map(scArg), auth: s.auth }),
    )
    .setTimeout(s.timeoutSeconds ?? 120);
  if (s.resources) {
    const r = s.resources;
    const keys = (n: number, from: number) => Array.from({ length: n }, (_, i) => footprintKey(from + i));
    b.setSorobanData(
      new SorobanDataBuilder()
        .setResources(r.instructions, 1000, 1000)
        .setResourceFee(r.fee)
        .setReadOnly(keys(r.readOnly ?? 0, 0))
        .setReadWrite(keys(r.readWrite ?? 0, 1000))
        .build(),
    );
  }
  return b.build().toEnvelope().toXdr('base64');
}

import { createHash } from 'node:crypto';
import {
  Address,
  Asset,
  Claimant,
  extractBaseAddress,
  type FeeBumpTransaction,
  getLiquidityPoolId,
  LiquidityPoolAsset,
  LiquidityPoolId,
  type OperationRecord,
  SignerKey,
  StrKey,
  scValToNative,
  type Transaction,
  xdr,
} from '@stellar/stellar-sdk/base';
import { assertDecoded, type DecodedTransaction, xdrTransactionOf } from './decode.ts';
import { operationThresholdLevel } from './thresholds.ts';
import type {
  AssetRef,
  AuthEntrySummary,
  InvocationSummary,
  MemoSummary,
  OperationSummary,
  PreconditionsSummary,
  TransactionSummary,
} from './types.ts';

/**
 * Plain-terms summaries of decoded transactions, for reviewers and policies.
 *
 * Conventions: amounts are the SDK's exact 7-decimal strings (never floats); 64-bit integers are decimal
 * strings; bytes are hex. Every operation also carries `raw`: everything the SDK decoded for it, rendered
 * JSON-safe, so a field this module does not name is still visible. Types the SDK does not know come out as
 * `type: 'unknown'` with the operation's XDR in `raw.xdr`, never dropped.
 */

/** Renders any decoded value JSON-safe: bigint -> decimal string, bytes -> hex, XDR values -> their JSON. */
export function jsonSafe(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v instanceof Asset || v instanceof LiquidityPoolAsset || v instanceof LiquidityPoolId) return assetRef(v);
  if (v instanceof Claimant) return { destination: v.destination, predicate: jsonSafe(v.predicate) };
  if (v instanceof xdr.XdrValue || v instanceof xdr.XdrString) return v.toJson();
  if (v instanceof Map) return [...v.entries()].map(([k, val]) => [jsonSafe(k), jsonSafe(val)]);
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) out[k] = jsonSafe(val);
    return out;
  }
  return String(v);
}

/** AssetRef of an SDK asset, pool-share asset or pool id. */
export function assetRef(a: Asset | LiquidityPoolAsset | LiquidityPoolId): AssetRef {
  if (a instanceof LiquidityPoolId) return { type: 'pool', poolId: a.getLiquidityPoolId() };
  if (a instanceof LiquidityPoolAsset) {
    return {
      type: 'pool',
      poolId: Buffer.from(getLiquidityPoolId('constant_product', a.getLiquidityPoolParameters())).toString('hex'),
    };
  }
  return a.isNative() ? { type: 'native' } : { type: 'credit', code: a.getCode(), issuer: a.getIssuer()! };
}

function scAddress(a: xdr.ScAddress): string {
  return Address.fromScAddress(a).toString();
}

function scArgs(args: readonly xdr.ScVal[]): unknown[] {
  return args.map((a) => {
    try {
      return jsonSafe(scValToNative(a));
    } catch {
      // scValToNative refuses a few shapes (e.g. non-string map keys it cannot index); keep the XDR JSON.
      return a.toJson();
    }
  });
}

function contractCall(c: xdr.InvokeContractArgs, subInvocations: InvocationSummary[]): InvocationSummary {
  return {
    kind: 'contract',
    contractId: scAddress(c.contractAddress),
    functionName: c.functionName.toString(),
    args: scArgs(c.args),
    subInvocations,
  };
}

function createContract(c: xdr.CreateContractArgs | xdr.CreateContractArgsV2, v2: boolean): InvocationSummary {
  const out: InvocationSummary = {
    kind: v2 ? 'createContractV2' : 'createContract',
    details: { contractIdPreimage: c.contractIdPreimage.toJson(), executable: c.executable.toJson() },
    subInvocations: [],
  };
  if (v2) out.args = scArgs((c as xdr.CreateContractArgsV2).constructorArgs);
  return out;
}

/** One node of an authorization tree (SorobanAuthorizedInvocation), recursively. */
export function describeInvocation(inv: xdr.SorobanAuthorizedInvocation): InvocationSummary {
  const subs = inv.subInvocations.map(describeInvocation);
  const f = inv.function;
  switch (f.type) {
    case 'sorobanAuthorizedFunctionTypeContractFn':
      return contractCall(f.contractFn, subs);
    case 'sorobanAuthorizedFunctionTypeCreateContractHostFn':
      return { ...createContract(f.createContractHostFn, false), subInvocations: subs };
    case 'sorobanAuthorizedFunctionTypeCreateContractV2HostFn':
      return { ...createContract(f.createContractV2HostFn, true), subInvocations: subs };
    default:
      return { kind: 'other', details: { function: jsonSafe(f) }, subInvocations: subs };
  }
}

/** An authorization entry in plain terms: who authorizes (credentials) and the invocation tree. */
export function describeAuthEntry(entry: xdr.SorobanAuthorizationEntry): AuthEntrySummary {
  const invocation = describeInvocation(entry.rootInvocation);
  const c = entry.credentials;
  const addressPart = (a: xdr.SorobanAddressCredentials) => ({
    address: scAddress(a.address),
    nonce: a.nonce.toString(),
    signatureExpirationLedger: a.signatureExpirationLedger,
  });
  switch (c.type) {
    case 'sorobanCredentialsSourceAccount':
      return { credentials: 'sourceAccount', invocation };
    case 'sorobanCredentialsAddress':
      return { credentials: 'address', ...addressPart(c.address), invocation };
    case 'sorobanCredentialsAddressV2':
      return { credentials: 'addressV2', ...addressPart(c.addressV2), invocation };
    default:
      // CAP-71 ADDRESS_WITH_DELEGATES (protocol 27): the address is known, the delegates are not summarised.
      return { credentials: 'other', ...addressPart(c.addressWithDelegates.addressCredentials), invocation };
  }
}

function hostFunction(func: xdr.HostFunction, auth: readonly xdr.SorobanAuthorizationEntry[]): InvocationSummary {
  switch (func.type) {
    case 'hostFunctionTypeInvokeContract': {
      // The call's sub-invocations are what its authorization entries say it will call; take them from the
      // first entry authorizing exactly this root call.
      const root = auth.find(
        (e) =>
          e.rootInvocation.function.type === 'sorobanAuthorizedFunctionTypeContractFn' &&
          e.rootInvocation.function.contractFn.equals(func.invokeContract),
      );
      return contractCall(func.invokeContract, root ? root.rootInvocation.subInvocations.map(describeInvocation) : []);
    }
    case 'hostFunctionTypeCreateContract':
      return createContract(func.createContract, false);
    case 'hostFunctionTypeCreateContractV2':
      return createContract(func.createContractV2, true);
    default:
      return {
        kind: 'other',
        functionName: 'uploadContractWasm',
        details: { wasmSha256: createHash('sha256').update(func.wasm).digest('hex'), wasmBytes: func.wasm.length },
        subInvocations: [],
      };
  }
}

function memoSummary(tx: Transaction): MemoSummary {
  const m = tx.memo;
  switch (m.type) {
    case 'text': {
      const v = m.value as string | Uint8Array;
      // Memo text is bytes on the wire; invalid UTF-8 shows as U+FFFD, which a reviewer can see.
      return { type: 'text', value: typeof v === 'string' ? v : Buffer.from(v).toString('utf8') };
    }
    case 'id':
      return { type: 'id', value: String(m.value) };
    case 'hash':
    case 'return':
      return { type: m.type, value: Buffer.from(m.value as Uint8Array).toString('hex') };
    default:
      return { type: 'none' };
  }
}

function preconditions(tx: Transaction): PreconditionsSummary {
  const age = tx.minAccountSequenceAge;
  const gap = tx.minAccountSequenceLedgerGap;
  return {
    timeBounds: tx.timeBounds ? { minTime: tx.timeBounds.minTime, maxTime: tx.timeBounds.maxTime } : null,
    ledgerBounds: tx.ledgerBounds ? { ...tx.ledgerBounds } : null,
    minSeqNum: tx.minAccountSequence ?? null,
    // Zero age or gap means no condition (CAP-21), reported as null.
    minSeqAge: age === undefined || age === 0n ? null : age.toString(),
    minSeqLedgerGap: gap === undefined || gap === 0 ? null : gap,
    extraSigners: (tx.extraSigners ?? []).map((k) => SignerKey.encodeSignerKey(k)),
  };
}

function withoutTypeAndSource(rec: OperationRecord): Record<string, unknown> {
  const { type: _t, source: _s, ...rest } = rec as unknown as Record<string, unknown>;
  return jsonSafe(rest) as Record<string, unknown>;
}

function describeOperation(index: number, rec: OperationRecord, op: xdr.Operation, txSource: string): OperationSummary {
  const out: OperationSummary = {
    index,
    type: rec.type,
    source: rec.source ?? txSource,
    explicitSource: op.sourceAccount !== null,
    thresholdLevel: operationThresholdLevel(op),
    raw: withoutTypeAndSource(rec),
  };
  switch (rec.type) {
    case 'createAccount':
      // amount/asset mirror the starting balance so outflow limits see it.
      return {
        ...out,
        destination: rec.destination,
        startingBalance: rec.startingBalance,
        asset: { type: 'native' },
        amount: rec.startingBalance,
      };
    case 'payment':
      return { ...out, destination: rec.destination, asset: assetRef(rec.asset), amount: rec.amount };
    case 'pathPaymentStrictReceive':
      // asset/amount = the most the source can send (sendMax), so outflow limits see it.
      return {
        ...out,
        destination: rec.destination,
        sendAsset: assetRef(rec.sendAsset),
        sendMax: rec.sendMax,
        destAsset: assetRef(rec.destAsset),
        destAmount: rec.destAmount,
        path: rec.path.map(assetRef),
        asset: assetRef(rec.sendAsset),
        amount: rec.sendMax,
      };
    case 'pathPaymentStrictSend':
      return {
        ...out,
        destination: rec.destination,
        sendAsset: assetRef(rec.sendAsset),
        sendAmount: rec.sendAmount,
        destAsset: assetRef(rec.destAsset),
        destMin: rec.destMin,
        path: rec.path.map(assetRef),
        asset: assetRef(rec.sendAsset),
        amount: rec.sendAmount,
      };
    case 'manageSellOffer':
    case 'createPassiveSellOffer':
      return {
        ...out,
        selling: assetRef(rec.selling),
        buying: assetRef(rec.buying),
        asset: assetRef(rec.selling),
        amount: rec.amount,
        price: rec.price,
        ...(rec.type === 'manageSellOffer' ? { offerId: rec.offerId } : {}),
      };
    case 'manageBuyOffer':
      return {
        ...out,
        selling: assetRef(rec.selling),
        buying: assetRef(rec.buying),
        asset: assetRef(rec.buying),
        amount: rec.buyAmount,
        price: rec.price,
        offerId: rec.offerId,
      };
    case 'setOptions':
      return { ...out, setOptions: setOptionsSummary(op) };
    case 'changeTrust':
      return { ...out, asset: assetRef(rec.line), limit: rec.limit };
    case 'allowTrust':
      // The asset's issuer is the operation's source account (AllowTrustOp names only the code); a muxed
      // source reduces to its G account.
      return {
        ...out,
        destination: rec.trustor,
        asset: { type: 'credit', code: rec.assetCode, issuer: extractBaseAddress(out.source) },
      };
    case 'accountMerge':
      return { ...out, destination: rec.destination };
    case 'manageData':
      return {
        ...out,
        dataName: rec.name,
        dataValue: rec.value === undefined || rec.value === null ? null : Buffer.from(rec.value).toString('hex'),
      };
    case 'bumpSequence':
      return { ...out, bumpTo: rec.bumpTo };
    case 'createClaimableBalance':
      return { ...out, asset: assetRef(rec.asset), amount: rec.amount };
    case 'clawback':
      return { ...out, asset: assetRef(rec.asset), amount: rec.amount };
    case 'setTrustLineFlags':
      return { ...out, destination: rec.trustor, asset: assetRef(rec.asset) };
    case 'liquidityPoolDeposit':
      return { ...out, asset: { type: 'pool', poolId: rec.liquidityPoolId } };
    case 'liquidityPoolWithdraw':
      return { ...out, asset: { type: 'pool', poolId: rec.liquidityPoolId }, amount: rec.amount };
    case 'invokeHostFunction': {
      const auth = rec.auth ?? [];
      return { ...out, invocation: hostFunction(rec.func, auth), authEntries: auth.map(describeAuthEntry) };
    }
    case 'inflation':
    case 'claimClaimableBalance':
    case 'beginSponsoringFutureReserves':
    case 'endSponsoringFutureReserves':
    case 'revokeAccountSponsorship':
    case 'revokeTrustlineSponsorship':
    case 'revokeOfferSponsorship':
    case 'revokeDataSponsorship':
    case 'revokeClaimableBalanceSponsorship':
    case 'revokeLiquidityPoolSponsorship':
    case 'revokeSignerSponsorship':
    case 'clawbackClaimableBalance':
    case 'extendFootprintTtl':
    case 'restoreFootprint':
      // Everything these carry (ids, accounts, ledgers) is in `raw`.
      return out;
    default:
      return unknownOperation(out, op);
  }
}

/** An operation type this module does not know: reported, with its XDR, never dropped. */
export function unknownOperation(base: OperationSummary, op: xdr.Operation): OperationSummary {
  return { ...base, type: 'unknown', raw: { ...base.raw, sdkType: base.type, xdr: op.toXdr('base64') } };
}

function setOptionsSummary(op: xdr.Operation): NonNullable<OperationSummary['setOptions']> {
  if (op.body.type !== 'setOptions') return {};
  const o = op.body.setOptionsOp;
  const s: NonNullable<OperationSummary['setOptions']> = {};
  if (o.masterWeight !== null) s.masterWeight = o.masterWeight;
  if (o.lowThreshold !== null) s.lowThreshold = o.lowThreshold;
  if (o.medThreshold !== null) s.medThreshold = o.medThreshold;
  if (o.highThreshold !== null) s.highThreshold = o.highThreshold;
  if (o.signer !== null) s.signer = { key: SignerKey.encodeSignerKey(o.signer.key), weight: o.signer.weight };
  if (o.homeDomain !== null) s.homeDomain = o.homeDomain.toString();
  if (o.inflationDest !== null) s.inflationDest = StrKey.encodeEd25519PublicKey(o.inflationDest.ed25519.value);
  if (o.setFlags !== null) s.setFlags = o.setFlags;
  if (o.clearFlags !== null) s.clearFlags = o.clearFlags;
  return s;
}

function describeV1(d: DecodedTransaction, tx: Transaction): TransactionSummary {
  const xtx = xdrTransactionOf(d) as xdr.Transaction;
  const out: TransactionSummary = {
    kind: 'transaction',
    hash: d.hash.toString('hex'),
    networkPassphrase: d.networkPassphrase,
    source: tx.source,
    fee: tx.fee,
    seqNum: tx.sequence,
    memo: memoSummary(tx),
    preconditions: preconditions(tx),
    operations: tx.operations.map((rec, i) => describeOperation(i, rec, xtx.operations[i]!, tx.source)),
  };
  if (xtx.ext.type === 'sorobanData') out.sorobanResourceFee = xtx.ext.sorobanData.resourceFee.toString();
  return out;
}

/**
 * The plain-terms summary of a decoded transaction. For a fee bump, `source`, `seqNum`, `memo`,
 * `preconditions` and `operations` are the inner transaction's (what will execute), `fee` and `feeSource` the
 * outer envelope's, and `inner` is the inner transaction's own summary (with its own hash).
 */
export function describeTransaction(d: DecodedTransaction): TransactionSummary {
  assertDecoded(d);
  if (d.kind === 'transaction') return describeV1(d, d.tx as Transaction);
  const inner = describeV1(d.inner!, d.inner!.tx as Transaction);
  const fb = d.tx as FeeBumpTransaction;
  return {
    ...inner,
    kind: 'feeBump',
    hash: d.hash.toString('hex'),
    fee: fb.fee,
    feeSource: fb.feeSource,
    inner,
  };
}

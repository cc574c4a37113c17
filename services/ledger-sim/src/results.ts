import { xdr } from '@stellar/stellar-sdk/base';

/**
 * Transaction and operation verdicts, turned into the XDR `TransactionResult` stellar-core produces and into the
 * result-code strings Horizon prints (services/horizon/internal/codes in stellar/go).
 */

/** A top-level OperationResult code (xdr OperationResultCode), or an operation-specific inner result. */
export type OpOutcome =
  | { code: 'opBadAuth' | 'opNoAccount' | 'opNotSupported' | 'opTooManySubentries' }
  | { code: 'opInner'; opType: SupportedOp; inner: string; mergedBalance?: bigint; successHash?: Buffer };

/** The operation types the simulator applies; every other type is refused with opNOT_SUPPORTED. */
export const SUPPORTED_OPS = [
  'createAccount',
  'payment',
  'setOptions',
  'changeTrust',
  'accountMerge',
  'manageData',
  'bumpSequence',
  'invokeHostFunction',
] as const;
export type SupportedOp = (typeof SUPPORTED_OPS)[number];

export function isSupportedOp(t: string): t is SupportedOp {
  return (SUPPORTED_OPS as readonly string[]).includes(t);
}

/** Result codes with no operation results (xdr TransactionResultCode variants that carry `void`). */
export type VoidTxCode =
  | 'txTooEarly'
  | 'txTooLate'
  | 'txMissingOperation'
  | 'txBadSeq'
  | 'txBadAuth'
  | 'txInsufficientBalance'
  | 'txNoAccount'
  | 'txInsufficientFee'
  | 'txBadAuthExtra'
  | 'txMalformed'
  | 'txBadMinSeqAgeOrGap'
  | 'txSorobanInvalid';

/** The verdict on one (inner or plain) transaction. */
export type TxOutcome = { code: 'txSuccess' | 'txFailed'; ops: OpOutcome[] } | { code: VoidTxCode };

/** A fee-bump verdict: the outer code, and the inner transaction's own verdict once the outer checks passed. */
export type FeeBumpOutcome =
  | { code: VoidTxCode }
  | { code: 'txFeeBumpInnerSuccess' | 'txFeeBumpInnerFailed'; innerHash: Buffer; inner: TxOutcome };

export type AnyOutcome = TxOutcome | FeeBumpOutcome;

/** The result of an operation that was checked but not applied (core's resetResults: opINNER with code 0). */
export function defaultOpOutcome(opType: string): OpOutcome {
  return isSupportedOp(opType) ? { code: 'opInner', opType, inner: 'success' } : { code: 'opNotSupported' };
}

const RESULT_UNION: Record<SupportedOp, string> = {
  createAccount: 'CreateAccountResult',
  payment: 'PaymentResult',
  setOptions: 'SetOptionsResult',
  changeTrust: 'ChangeTrustResult',
  accountMerge: 'AccountMergeResult',
  manageData: 'ManageDataResult',
  bumpSequence: 'BumpSequenceResult',
  invokeHostFunction: 'InvokeHostFunctionResult',
};

/** A checked-but-not-applied invokeHostFunction reports success with an all-zero hash (no result yet). */
const ZERO_HASH = Buffer.alloc(32);

type Factory = (...args: unknown[]) => unknown;

function opResultXdr(o: OpOutcome): xdr.OperationResult {
  if (o.code !== 'opInner') return xdr.OperationResult[o.code]();
  // Inner codes are named like the XDR variants without their type prefix: 'underfunded' -> paymentUnderfunded.
  const union = (xdr as unknown as Record<string, Record<string, Factory>>)[RESULT_UNION[o.opType]]!;
  const variant = `${o.opType}${o.inner[0]!.toUpperCase()}${o.inner.slice(1)}`;
  const make = union[variant];
  if (typeof make !== 'function') throw new TypeError(`no XDR result ${variant}`);
  const inner =
    o.inner !== 'success'
      ? make()
      : o.opType === 'accountMerge'
        ? make(o.mergedBalance ?? 0n)
        : o.opType === 'invokeHostFunction'
          ? make(o.successHash ?? ZERO_HASH)
          : make();
  const tr = (xdr.OperationResultTr as unknown as Record<string, Factory>)[o.opType]!(inner);
  return xdr.OperationResult.opInner(tr as xdr.OperationResultTr);
}

function txResultResult(o: TxOutcome): xdr.TransactionResultResult {
  if (o.code === 'txSuccess' || o.code === 'txFailed') {
    return xdr.TransactionResultResult[o.code](o.ops.map(opResultXdr));
  }
  return xdr.TransactionResultResult[o.code]();
}

function innerResultResult(o: TxOutcome): xdr.InnerTransactionResultResult {
  if (o.code === 'txSuccess' || o.code === 'txFailed') {
    return xdr.InnerTransactionResultResult[o.code](o.ops.map(opResultXdr));
  }
  return xdr.InnerTransactionResultResult[o.code]();
}

/** The base64 `TransactionResult` core reports for `outcome`, with `feeCharged` stroops. */
export function resultXdr(outcome: AnyOutcome, feeCharged: bigint): string {
  let result: xdr.TransactionResultResult;
  if (outcome.code === 'txFeeBumpInnerSuccess' || outcome.code === 'txFeeBumpInnerFailed') {
    // The inner result's feeCharged is 0: the fee source paid (FeeBumpTransactionFrame::updateResult, protocol >= 13).
    const pair = new xdr.InnerTransactionResultPair({
      transactionHash: outcome.innerHash,
      result: new xdr.InnerTransactionResult({
        feeCharged: 0n,
        result: innerResultResult(outcome.inner),
        ext: xdr.InnerTransactionResultExt.v0(),
      }),
    });
    result = xdr.TransactionResultResult[outcome.code](pair);
  } else {
    result = txResultResult(outcome as TxOutcome);
  }
  return new xdr.TransactionResult({ feeCharged, result, ext: xdr.TransactionResultExt.v0() }).toXdr('base64');
}

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Where Horizon's names differ from the XDR variant names (stellar/go services/horizon/internal/codes). */
const TX_CODE_NAMES: Record<string, string> = {
  txNoAccount: 'tx_no_source_account',
  txBadMinSeqAgeOrGap: 'tx_bad_minseq_age_or_gap',
};
const OP_CODE_NAMES: Record<string, string> = {
  opNoAccount: 'op_no_source_account',
  alreadyExist: 'op_already_exists',
  // services/horizon/internal/codes: INVOKE_HOST_FUNCTION_TRAPPED is "function_trapped", without the op_ prefix.
  trapped: 'function_trapped',
  seqnumTooFar: 'op_seq_num_too_far',
  nameNotFound: 'op_data_name_not_found',
  invalidName: 'op_data_invalid_name',
};

/** Horizon's string for a transaction result code, e.g. txBadAuth -> tx_bad_auth. */
export function txCodeName(code: string): string {
  return TX_CODE_NAMES[code] ?? snake(code);
}

/** Horizon's string for an operation result, e.g. payment underfunded -> op_underfunded. */
export function opCodeName(o: OpOutcome): string {
  if (o.code !== 'opInner') return OP_CODE_NAMES[o.code] ?? snake(o.code);
  return OP_CODE_NAMES[o.inner] ?? `op_${snake(o.inner)}`;
}

/** Horizon's `extras.result_codes` for a verdict. */
export function resultCodes(o: AnyOutcome): { transaction: string; inner_transaction?: string; operations?: string[] } {
  if (o.code === 'txFeeBumpInnerSuccess' || o.code === 'txFeeBumpInnerFailed') {
    const inner = o.inner;
    return {
      transaction: txCodeName(o.code),
      inner_transaction: txCodeName(inner.code),
      ...('ops' in inner ? { operations: inner.ops.map(opCodeName) } : {}),
    };
  }
  return { transaction: txCodeName(o.code), ...('ops' in o ? { operations: o.ops.map(opCodeName) } : {}) };
}

function opOutcomeFromXdr(r: xdr.OperationResult): OpOutcome {
  if (r.type !== 'opInner') return { code: r.type as Exclude<OpOutcome['code'], 'opInner'> };
  const opType = r.tr.type;
  const variant = (r.tr.value as { type: string }).type;
  const rest = variant.slice(opType.length);
  if (!isSupportedOp(opType)) return { code: 'opNotSupported' };
  const out: OpOutcome = { code: 'opInner', opType, inner: `${rest[0]!.toLowerCase()}${rest.slice(1)}` };
  if (variant === 'invokeHostFunctionSuccess') {
    out.successHash = Buffer.from((r.tr.value as xdr.InvokeHostFunctionResultSuccess).success.value);
  }
  return out;
}

function txOutcomeFromXdr(r: xdr.TransactionResultResult | xdr.InnerTransactionResultResult): TxOutcome {
  if (r.type === 'txSuccess' || r.type === 'txFailed') return { code: r.type, ops: r.results.map(opOutcomeFromXdr) };
  return { code: r.type as VoidTxCode };
}

/** The verdict a stored base64 TransactionResult holds (for answering a resubmission from history). */
export function outcomeFromResultXdr(resultXdrB64: string): AnyOutcome {
  const r = xdr.TransactionResult.fromXdr(resultXdrB64, 'base64').result;
  if (r.type === 'txFeeBumpInnerSuccess' || r.type === 'txFeeBumpInnerFailed') {
    const pair = r.innerResultPair;
    return {
      code: r.type,
      innerHash: Buffer.from(pair.transactionHash.value),
      inner: txOutcomeFromXdr(pair.result.result),
    };
  }
  return txOutcomeFromXdr(r);
}

import { type DecodedTransaction, decodeEnvelope } from '@cosigner/stellar/decode';
import { accountIdOf, checkAuth, neededLevels } from '@cosigner/stellar/quorum';
import type { AccountAuth, AuthCheckResult } from '@cosigner/stellar/types';
import {
  Address,
  type FeeBumpTransaction,
  SignerKey,
  StrKey,
  type Transaction,
  type xdr,
} from '@stellar/stellar-sdk/base';
import {
  type AnyOutcome,
  defaultOpOutcome,
  type FeeBumpOutcome,
  isSupportedOp,
  type OpOutcome,
  outcomeFromResultXdr,
  resultXdr,
  type TxOutcome,
  type VoidTxCode,
} from './results.ts';
import {
  checkSorobanTx,
  declaredResourceFee,
  type InvokeResult,
  invokeHostFunction,
  sorobanResourceFee,
} from './soroban.ts';
import {
  type AccountState,
  AUTH_CLAWBACK_ENABLED_FLAG,
  AUTH_IMMUTABLE_FLAG,
  AUTH_REVOCABLE_FLAG,
  availableBalance,
  BASE_FEE,
  BASE_RESERVE,
  cloneAccount,
  INT64_MAX,
  type LedgerState,
  MASK_ACCOUNT_FLAGS,
  minBalance,
  newAccount,
  numSubEntries,
  startingSequence,
  type TxRecord,
} from './state.ts';

/**
 * Validation and application of transactions, following stellar-core's src/transactions:
 * TransactionFrame.cpp (commonValidPreSeqNum, commonValid, checkValid, processFeeSeqNum, apply),
 * FeeBumpTransactionFrame.cpp, and the *OpFrame.cpp files for the seven operations applied here.
 *
 * Model: each submitted transaction is validated against the current state and, when valid, applied at once
 * into the open ledger (the ledger that closes next), like a one-transaction tx set. Invalid transactions are
 * refused without charging a fee or consuming a sequence number, as core refuses them at the queue. A valid
 * transaction is charged its fee and consumes its sequence number whether or not its operations succeed; a
 * failed transaction's operation effects are rolled back.
 */

/** The result of one submission. `applied` means included in the ledger (fee charged, sequence consumed). */
export interface SubmitOutcome {
  applied: boolean;
  successful: boolean;
  hash: string;
  ledger: number;
  outcome: AnyOutcome;
  feeCharged: bigint;
  resultXdr: string;
  envelopeXdr: string;
  record?: TxRecord;
  /** True when the hash was already in history: nothing was applied again. */
  duplicate?: boolean;
  /** Soroban refusals and failures: the reason in plain words (Horizon extras.diagnostic). */
  diagnostic?: string;
}

/** The envelope could not be decoded at all (Horizon's transaction_malformed). */
export interface Malformed {
  malformed: true;
  reason: string;
}

/** Core MAX_OPS_PER_TX. */
const MAX_OPS_PER_TX = 100;
const MAX_SIGNERS = 20;

interface Ctx {
  ledgerSeq: number;
  closeTime: bigint;
}

/** Copy-on-write view of the accounts, so a failed transaction's operations leave no trace (core's nested LedgerTxn). */
class AccountsTxn {
  private readonly changed = new Map<string, AccountState | null>();
  constructor(private readonly base: Map<string, AccountState>) {}

  get(id: string): AccountState | undefined {
    const c = this.changed.get(id);
    if (c !== undefined) return c ?? undefined;
    const b = this.base.get(id);
    if (b === undefined) return undefined;
    const copy = cloneAccount(b);
    this.changed.set(id, copy);
    return copy;
  }

  exists(id: string): boolean {
    const c = this.changed.get(id);
    return c === undefined ? this.base.has(id) : c !== null;
  }

  create(a: AccountState): void {
    this.changed.set(a.id, a);
  }

  remove(id: string): void {
    this.changed.set(id, null);
  }

  commit(ctx: Ctx, nowSec: number): void {
    for (const [id, a] of this.changed) {
      if (a === null) {
        this.base.delete(id);
      } else {
        a.lastModifiedLedger = ctx.ledgerSeq;
        a.lastModifiedTime = nowSec;
        this.base.set(id, a);
      }
    }
  }
}

function toAuth(a: AccountState): AccountAuth {
  return { accountId: a.id, masterWeight: a.masterWeight, thresholds: { ...a.thresholds }, signers: a.signers };
}

function v1Tx(d: DecodedTransaction): xdr.Transaction {
  return (d.tx as Transaction).tx as xdr.Transaction;
}

type Bounds = { time: xdr.TimeBounds | null; ledger: xdr.LedgerBounds | null; v2: xdr.PreconditionsV2 | null };

function bounds(tx: xdr.Transaction): Bounds {
  const c = tx.cond;
  if (c.type === 'precondTime') return { time: c.timeBounds, ledger: null, v2: null };
  if (c.type === 'precondV2') return { time: c.v2.timeBounds, ledger: c.v2.ledgerBounds, v2: c.v2 };
  return { time: null, ledger: null, v2: null };
}

/** Printable ASCII only (core isStringValid), used for home domains and data names. */
function isStringValid(bytes: Uint8Array): boolean {
  return bytes.every((c) => c >= 0x20 && c <= 0x7e);
}

interface AssetRef {
  code: string;
  issuer: string;
}

/**
 * A credit asset's code and issuer, or null for an invalid code (core isAssetValid: alphanumeric, zero padding
 * only at the end, alphanum12 codes longer than 4 characters).
 */
function creditAsset(a: xdr.Asset | xdr.ChangeTrustAsset): AssetRef | null {
  if (a.type !== 'assetTypeCreditAlphanum4' && a.type !== 'assetTypeCreditAlphanum12') return null;
  const an = a.type === 'assetTypeCreditAlphanum4' ? a.alphaNum4 : a.alphaNum12;
  const bytes = Buffer.from(an.assetCode.value);
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  const code = bytes.subarray(0, end).toString('latin1');
  if (!/^[A-Za-z0-9]+$/.test(code)) return null;
  if (a.type === 'assetTypeCreditAlphanum12' && code.length < 5) return null;
  return { code, issuer: StrKey.encodeEd25519PublicKey(an.issuer.ed25519.value) };
}

function publicKeyOf(pk: xdr.PublicKey): string {
  return StrKey.encodeEd25519PublicKey(pk.ed25519.value);
}

function opSource(op: xdr.Operation, txSource: string): string {
  return op.sourceAccount === null ? txSource : accountIdOf(op.sourceAccount);
}

function inner(opType: string, code: string, mergedBalance?: bigint): OpOutcome {
  if (!isSupportedOp(opType)) return { code: 'opNotSupported' };
  return mergedBalance === undefined
    ? { code: 'opInner', opType, inner: code }
    : { code: 'opInner', opType, inner: code, mergedBalance };
}

/**
 * An operation's doCheckValid: the checks that need no ledger state. Returns the failure, or null when valid.
 * Unsupported operation types fail here with opNOT_SUPPORTED: that is the simulator's own refusal (core would
 * apply them), reported with the real XDR code so clients see an honest, machine-readable "not here".
 */
function checkOpValid(op: xdr.Operation, source: string): OpOutcome | null {
  const b = op.body;
  switch (b.type) {
    case 'createAccount': {
      const o = b.createAccountOp;
      // CreateAccountOpFrame::doCheckValid (protocol >= 14): negative balance or creating yourself.
      if (o.startingBalance < 0n || publicKeyOf(o.destination) === source) return inner(b.type, 'malformed');
      return null;
    }
    case 'payment': {
      const o = b.paymentOp;
      // PaymentOpFrame::doCheckValid: amount must be positive and the asset valid.
      if (o.amount <= 0n) return inner(b.type, 'malformed');
      if (o.asset.type !== 'assetTypeNative' && creditAsset(o.asset) === null) return inner(b.type, 'malformed');
      return null;
    }
    case 'changeTrust': {
      const o = b.changeTrustOp;
      if (o.line.type === 'assetTypePoolShare') return { code: 'opNotSupported' };
      // ChangeTrustOpFrame::doCheckValid: negative limit, native or invalid asset, or trusting yourself (p16+).
      const a = creditAsset(o.line);
      if (o.limit < 0n || a === null || a.issuer === source) return inner(b.type, 'malformed');
      return null;
    }
    case 'setOptions': {
      const o = b.setOptionsOp;
      // SetOptionsOpFrame::doCheckValid, in core's order.
      if (((o.setFlags ?? 0) | (o.clearFlags ?? 0)) & ~MASK_ACCOUNT_FLAGS) return inner(b.type, 'unknownFlag');
      if ((o.setFlags ?? 0) & (o.clearFlags ?? 0)) return inner(b.type, 'badFlags');
      for (const t of [o.masterWeight, o.lowThreshold, o.medThreshold, o.highThreshold]) {
        if (t !== null && t > 255) return inner(b.type, 'thresholdOutOfRange');
      }
      if (o.signer !== null) {
        const key = SignerKey.encodeSignerKey(o.signer.key);
        const emptyPayload =
          o.signer.key.type === 'signerKeyTypeEd25519SignedPayload' &&
          o.signer.key.ed25519SignedPayload.payload.length === 0;
        if (key === source || o.signer.weight > 255 || emptyPayload) return inner(b.type, 'badSigner');
      }
      if (o.homeDomain !== null && !isStringValid(o.homeDomain.bytes)) return inner(b.type, 'invalidHomeDomain');
      return null;
    }
    case 'accountMerge':
      // MergeOpFrame::doCheckValid: merging into yourself.
      return accountIdOf(b.destination) === source ? inner(b.type, 'malformed') : null;
    case 'manageData': {
      const name = b.manageDataOp.dataName.bytes;
      // ManageDataOpFrame::doCheckValid.
      return name.length < 1 || !isStringValid(name) ? inner(b.type, 'invalidName') : null;
    }
    case 'bumpSequence':
      return b.bumpSequenceOp.bumpTo < 0n ? inner(b.type, 'badSeq') : null;
    case 'invokeHostFunction':
      // Only contract calls run here (the built-in escrow); uploading WASM or creating contracts is the sim's
      // opNOT_SUPPORTED, like the classic operations it does not apply.
      return b.invokeHostFunctionOp.hostFunction.type === 'hostFunctionTypeInvokeContract'
        ? null
        : { code: 'opNotSupported' };
    default:
      return { code: 'opNotSupported' };
  }
}

/** Applies one operation to `txn` (OperationFrame::doApply of each op). Returns its result. */
function applyOp(txn: AccountsTxn, op: xdr.Operation, sourceId: string, ctx: Ctx): OpOutcome {
  const src = txn.get(sourceId);
  // OperationFrame::checkValid(forApply): the source may have been merged away by an earlier operation.
  if (src === undefined) return { code: 'opNoAccount' };
  const b = op.body;
  switch (b.type) {
    case 'createAccount': {
      const o = b.createAccountOp;
      const dest = publicKeyOf(o.destination);
      if (txn.exists(dest)) return inner(b.type, 'alreadyExist');
      if (o.startingBalance < 2n * BASE_RESERVE) return inner(b.type, 'lowReserve');
      if (availableBalance(src) < o.startingBalance) return inner(b.type, 'underfunded');
      src.balance -= o.startingBalance;
      txn.create(newAccount(dest, o.startingBalance, ctx.ledgerSeq, Number(ctx.closeTime)));
      return inner(b.type, 'success');
    }
    case 'payment':
      return applyPayment(txn, src, b.paymentOp);
    case 'changeTrust':
      return applyChangeTrust(txn, src, b.changeTrustOp);
    case 'setOptions':
      return applySetOptions(txn, src, b.setOptionsOp);
    case 'accountMerge': {
      const destId = accountIdOf(b.destination);
      const dest = txn.get(destId);
      if (dest === undefined) return inner(b.type, 'noAccount');
      if (src.flags & AUTH_IMMUTABLE_FLAG) return inner(b.type, 'immutableSet');
      // Signers may remain; trustlines and data may not (MergeOpFrame: numSubEntries != signers.size()).
      if (numSubEntries(src) !== src.signers.length) return inner(b.type, 'hasSubEntries');
      if (src.seq >= startingSequence(ctx.ledgerSeq)) return inner(b.type, 'seqnumTooFar');
      if (dest.balance + src.balance > INT64_MAX) return inner(b.type, 'destFull');
      const moved = src.balance;
      dest.balance += moved;
      src.balance = 0n;
      txn.remove(src.id);
      return inner(b.type, 'success', moved);
    }
    case 'manageData': {
      const name = b.manageDataOp.dataName.toString();
      const value = b.manageDataOp.dataValue;
      if (value === null) {
        if (!src.data.has(name)) return inner(b.type, 'nameNotFound');
        src.data.delete(name);
        return inner(b.type, 'success');
      }
      if (!src.data.has(name) && src.balance < minBalance(src, 1)) return inner(b.type, 'lowReserve');
      src.data.set(name, Buffer.from(value.value));
      return inner(b.type, 'success');
    }
    case 'bumpSequence': {
      // BumpSequenceOpFrame::doApply; CAP-21 updates seqLedger/seqTime even when the number does not move.
      if (b.bumpSequenceOp.bumpTo > src.seq) src.seq = b.bumpSequenceOp.bumpTo;
      src.seqLedger = ctx.ledgerSeq;
      src.seqTime = ctx.closeTime;
      return inner(b.type, 'success');
    }
    default:
      return { code: 'opNotSupported' };
  }
}

/** PaymentOpFrame -> PathPaymentStrictReceiveOpFrame without a path: credit the destination, then debit the source. */
function applyPayment(txn: AccountsTxn, src: AccountState, o: xdr.PaymentOp): OpOutcome {
  const destId = accountIdOf(o.destination);
  const dest = txn.get(destId);
  if (dest === undefined) return inner('payment', 'noDestination');
  if (o.asset.type === 'assetTypeNative') {
    // Paying yourself XLM is a successful no-op (PaymentOpFrame::doApply, protocol > 2).
    if (dest === src) return inner('payment', 'success');
    if (dest.balance + o.amount > INT64_MAX) return inner('payment', 'lineFull');
    if (availableBalance(src) < o.amount) return inner('payment', 'underfunded');
    dest.balance += o.amount;
    src.balance -= o.amount;
    return inner('payment', 'success');
  }
  const asset = creditAsset(o.asset)!;
  const key = `${asset.code}:${asset.issuer}`;
  // updateDestBalance: the issuer receives its own asset without a trustline (it is burned).
  if (dest.id !== asset.issuer) {
    const tl = dest.trustlines.get(key);
    if (tl === undefined) return inner('payment', 'noTrust');
    if (tl.balance + o.amount > tl.limit) return inner('payment', 'lineFull');
    tl.balance += o.amount;
  }
  // updateSourceBalance: the issuer sends its own asset without a trustline (it is issued).
  if (src.id !== asset.issuer) {
    const tl = src.trustlines.get(key);
    if (tl === undefined) return inner('payment', 'srcNoTrust');
    if (tl.balance < o.amount) return inner('payment', 'underfunded');
    tl.balance -= o.amount;
  }
  return inner('payment', 'success');
}

/** ChangeTrustOpFrame::doApply for credit assets. */
function applyChangeTrust(txn: AccountsTxn, src: AccountState, o: xdr.ChangeTrustOp): OpOutcome {
  const asset = creditAsset(o.line)!;
  const key = `${asset.code}:${asset.issuer}`;
  const tl = src.trustlines.get(key);
  if (tl !== undefined) {
    if (o.limit < tl.balance) return inner('changeTrust', 'invalidLimit');
    if (o.limit === 0n) src.trustlines.delete(key);
    else tl.limit = o.limit;
    return inner('changeTrust', 'success');
  }
  if (o.limit === 0n) return inner('changeTrust', 'invalidLimit');
  if (!txn.exists(asset.issuer)) return inner('changeTrust', 'noIssuer');
  if (src.balance < minBalance(src, 1)) return inner('changeTrust', 'lowReserve');
  src.trustlines.set(key, { ...asset, balance: 0n, limit: o.limit, lastModifiedLedger: 0 });
  return inner('changeTrust', 'success');
}

/** SetOptionsOpFrame::doApply, in core's order. */
function applySetOptions(txn: AccountsTxn, src: AccountState, o: xdr.SetOptionsOp): OpOutcome {
  if (o.inflationDest !== null) {
    const id = publicKeyOf(o.inflationDest);
    if (!txn.exists(id)) return inner('setOptions', 'invalidInflation');
    src.inflationDest = id;
  }
  const flagsChange = (o.setFlags ?? 0) | (o.clearFlags ?? 0);
  if (flagsChange !== 0 && src.flags & AUTH_IMMUTABLE_FLAG) return inner('setOptions', 'cantChange');
  const flags = (src.flags & ~(o.clearFlags ?? 0)) | (o.setFlags ?? 0);
  // Clawback needs revocable (SetOptionsOpFrame, CAP-35).
  if (flags & AUTH_CLAWBACK_ENABLED_FLAG && !(flags & AUTH_REVOCABLE_FLAG)) {
    return inner('setOptions', 'authRevocableRequired');
  }
  src.flags = flags;
  if (o.masterWeight !== null) src.masterWeight = o.masterWeight;
  if (o.lowThreshold !== null) src.thresholds.low = o.lowThreshold;
  if (o.medThreshold !== null) src.thresholds.medium = o.medThreshold;
  if (o.highThreshold !== null) src.thresholds.high = o.highThreshold;
  if (o.homeDomain !== null) src.homeDomain = o.homeDomain.toString();
  if (o.signer !== null) {
    const key = SignerKey.encodeSignerKey(o.signer.key);
    const at = src.signers.findIndex((s) => s.key === key);
    if (o.signer.weight === 0) {
      if (at >= 0) src.signers.splice(at, 1);
    } else if (at >= 0) {
      src.signers[at]!.weight = o.signer.weight;
    } else {
      if (src.signers.length >= MAX_SIGNERS) return inner('setOptions', 'tooManySigners');
      if (src.balance < minBalance(src, 1)) return inner('setOptions', 'lowReserve');
      src.signers.push({ key, weight: o.signer.weight });
      src.signers.sort((a, b) => compareSignerKeys(a.key, b.key));
    }
  }
  return inner('setOptions', 'success');
}

/** Core sorts signers by their XDR SignerKey (type, then bytes). */
function compareSignerKeys(a: string, b: string): number {
  return Buffer.compare(SignerKey.decodeAddress(a).toXdr(), SignerKey.decodeAddress(b).toXdr());
}

type Check<T> = { ok: true; value: T } | { ok: false; outcome: TxOutcome; diagnostic?: string };

function fail(code: VoidTxCode, diagnostic?: string): { ok: false; outcome: TxOutcome; diagnostic?: string } {
  return diagnostic === undefined ? { ok: false, outcome: { code } } : { ok: false, outcome: { code }, diagnostic };
}

/** The state-independent and account checks of a v1 transaction (commonValidPreSeqNum + commonValid + checkValid). */
function validateTx(
  state: LedgerState,
  d: DecodedTransaction,
  ctx: Ctx,
  chargeFee: boolean,
): Check<{ source: AccountState }> {
  const tx = v1Tx(d);
  const nOps = tx.operations.length;
  if (nOps === 0) return fail('txMissingOperation');
  if (nOps > MAX_OPS_PER_TX) return fail('txMalformed');
  // Soroban shape, limits and resource fee (commonValidPreSeqNum, before the preconditions).
  const soroban = checkSorobanTx(tx);
  if (!soroban.ok) return fail(soroban.code, soroban.diagnostic);
  const b = bounds(tx);
  if (b.v2 !== null) {
    const extras = b.v2.extraSigners.map((k) => SignerKey.encodeSignerKey(k));
    // Duplicate extra signers are malformed (TransactionFrame::checkExtraSigners).
    if (new Set(extras).size !== extras.length) return fail('txMalformed');
  }
  // isTooEarly / isTooLate: time bounds against the close time, ledger bounds against the ledger being closed
  // (maxLedger is exclusive, 0 means none; maxTime 0 means none).
  if (b.time !== null) {
    if (b.time.minTime !== 0n && b.time.minTime > ctx.closeTime) return fail('txTooEarly');
    if (b.time.maxTime !== 0n && b.time.maxTime < ctx.closeTime) return fail('txTooLate');
  }
  if (b.ledger !== null) {
    if (b.ledger.minLedger > ctx.ledgerSeq) return fail('txTooEarly');
    if (b.ledger.maxLedger !== 0 && b.ledger.maxLedger <= ctx.ledgerSeq) return fail('txTooLate');
  }
  // Inclusion fee (fee minus the Soroban resource fee) at least baseFee per operation (getMinInclusionFee); not
  // checked for a fee bump's inner tx.
  const inclusionFee = BigInt(tx.fee) - declaredResourceFee(tx);
  if (chargeFee && inclusionFee < BASE_FEE * BigInt(nOps)) {
    return fail(
      'txInsufficientFee',
      soroban.soroban
        ? `fee: inclusion fee ${inclusionFee} (fee - resourceFee) below the base fee ${BASE_FEE}`
        : undefined,
    );
  }
  const sourceId = accountIdOf(tx.sourceAccount);
  const source = state.accounts.get(sourceId);
  if (source === undefined) return fail('txNoAccount');
  // isBadSeq: seq must not be the ledger's starting sequence; with minSeqNum, minSeqNum <= current < seq.
  const minSeq = b.v2?.minSeqNum ?? null;
  const badSeq =
    tx.seqNum === startingSequence(ctx.ledgerSeq) ||
    (minSeq === null
      ? source.seq === INT64_MAX || source.seq + 1n !== tx.seqNum
      : source.seq < minSeq || source.seq >= tx.seqNum);
  if (badSeq) return fail('txBadSeq');
  // isTooEarlyForAccount (CAP-21): minSeqAge against seqTime, minSeqLedgerGap against seqLedger.
  if (b.v2 !== null) {
    if (b.v2.minSeqAge > ctx.closeTime - source.seqTime) return fail('txBadMinSeqAgeOrGap');
    if (b.v2.minSeqLedgerGap > ctx.ledgerSeq - source.seqLedger) return fail('txBadMinSeqAgeOrGap');
  }
  // Signatures: the shared port of core's SignatureChecker. Op sources that do not exist are checked as core's
  // checkSignatureNoAccount does (their own key, weight 1, needed 0); applying them then fails opNO_ACCOUNT.
  const auths = new Map<string, AccountAuth>();
  for (const id of neededLevels(d).keys()) {
    const a = state.accounts.get(id);
    auths.set(
      id,
      a === undefined
        ? { accountId: id, masterWeight: 1, thresholds: { low: 0, medium: 0, high: 0 }, signers: [] }
        : toAuth(a),
    );
  }
  const auth: AuthCheckResult = checkAuth(d, auths);
  if (!auth.ok && auth.code === 'txBAD_AUTH') return fail('txBadAuth');
  // The fee must be payable from the balance above the reserve (commonValid, txINSUFFICIENT_BALANCE).
  if (chargeFee && availableBalance(source) < BigInt(tx.fee)) return fail('txInsufficientBalance');
  // Per operation, in order (OperationFrame::checkValid): supported?, signature (opBAD_AUTH), doCheckValid.
  const badAuthAt = !auth.ok && auth.code === 'txFAILED' ? auth.opIndex : -1;
  for (const [i, op] of tx.operations.entries()) {
    const invalid = checkOpValid(op, opSource(op, sourceId));
    const verdict: OpOutcome | null =
      invalid?.code === 'opNotSupported' ? invalid : i === badAuthAt ? { code: 'opBadAuth' } : invalid;
    if (verdict !== null) {
      const ops = tx.operations.map((o, j) => (j === i ? verdict : defaultOpOutcome(o.body.type)));
      return { ok: false, outcome: { code: 'txFailed', ops } };
    }
  }
  if (!auth.ok) return fail('txBadAuthExtra');
  return { ok: true, value: { source } };
}

/** What a Soroban invocation reported, for the transaction record. */
interface Invoked {
  diagnostic?: string;
  returnValue?: string;
}

/** Runs an invokeHostFunction operation (soroban.ts) and turns its verdict into the operation result. */
function invokeOp(
  state: LedgerState,
  txn: AccountsTxn,
  tx: xdr.Transaction,
  op: xdr.InvokeHostFunctionOp,
  sourceId: string,
  ctx: Ctx,
): { op: OpOutcome; result: InvokeResult | null } {
  // checkSorobanTx admitted only transactions with Soroban data; an op source merged away fails as any op would.
  if (tx.ext.type !== 'sorobanData' || !txn.exists(sourceId)) return { op: { code: 'opNoAccount' }, result: null };
  const r = invokeHostFunction(op, tx.ext.sorobanData, {
    networkPassphrase: state.networkPassphrase,
    ledgerSeq: ctx.ledgerSeq,
    sourceAccount: sourceId,
    accounts: txn,
    escrow: state.escrow,
    nonces: state.nonces,
  });
  const outcome: OpOutcome =
    r.code === 'success'
      ? { code: 'opInner', opType: 'invokeHostFunction', inner: 'success', successHash: r.successHash! }
      : inner('invokeHostFunction', r.code);
  return { op: outcome, result: r };
}

/** Applies a validated v1 transaction's sequence number and operations (TransactionFrame::apply). */
function applyTx(
  state: LedgerState,
  d: DecodedTransaction,
  ctx: Ctx,
  nowSec: number,
  invoked: Invoked = {},
): TxOutcome {
  const tx = v1Tx(d);
  const sourceId = accountIdOf(tx.sourceAccount);
  // processSeqNum: consumed before the operations run, kept even if they fail.
  const source = state.accounts.get(sourceId)!;
  source.seq = tx.seqNum;
  source.seqLedger = ctx.ledgerSeq;
  source.seqTime = ctx.closeTime;
  source.lastModifiedLedger = ctx.ledgerSeq;
  source.lastModifiedTime = nowSec;
  const txn = new AccountsTxn(state.accounts);
  let soroban: InvokeResult | null = null;
  const ops = tx.operations.map((op) => {
    if (op.body.type !== 'invokeHostFunction') return applyOp(txn, op, opSource(op, sourceId), ctx);
    const r = invokeOp(state, txn, tx, op.body.invokeHostFunctionOp, opSource(op, sourceId), ctx);
    soroban = r.result;
    return r.op;
  });
  const ok = ops.every((o) => o.code === 'opInner' && o.inner === 'success');
  if (ok) txn.commit(ctx, nowSec);
  const s = soroban as InvokeResult | null;
  if (s !== null) {
    if (s.diagnostic !== undefined) invoked.diagnostic = s.diagnostic;
    if (ok) {
      for (const [who, v] of s.escrowWrites) state.escrow.set(who, v);
      for (const [k, liveUntil] of s.nonceWrites) state.nonces.set(k, liveUntil);
      invoked.returnValue = s.returnValue!.toXdr('base64');
    }
  }
  // removeOneTimeSignerFromAllSourceAccounts: a pre-auth tx signer is spent once its transaction is applied.
  const preAuth = StrKey.encodePreAuthTx(d.hash);
  for (const id of new Set([sourceId, ...tx.operations.map((op) => opSource(op, sourceId))])) {
    const a = state.accounts.get(id);
    if (a !== undefined) a.signers = a.signers.filter((s) => s.key !== preAuth);
  }
  return { code: ok ? 'txSuccess' : 'txFailed', ops };
}

/**
 * Charges the fee (processFeeSeqNum): an inclusion fee of baseFee per operation when the ledger is not in surge
 * pricing, at most the inclusion bid, plus a Soroban transaction's resource fee (the part of the declared
 * resourceFee its declared resources cost; core refunds the rest after apply).
 */
function chargeFee(state: LedgerState, payer: AccountState, bid: bigint, ops: number, resourceFee = 0n): bigint {
  const wanted = BASE_FEE * BigInt(ops);
  const fee = (bid < wanted ? bid : wanted) + resourceFee;
  const charged = payer.balance < fee ? payer.balance : fee;
  payer.balance -= charged;
  state.feePool += charged;
  return charged;
}

function accountsNamed(d: DecodedTransaction): string[] {
  const out = new Set<string>();
  const v1 = d.kind === 'feeBump' ? d.inner! : d;
  if (d.kind === 'feeBump') out.add(accountIdOf((d.tx.tx as xdr.FeeBumpTransaction).feeSource));
  const tx = v1Tx(v1);
  const source = accountIdOf(tx.sourceAccount);
  out.add(source);
  for (const op of tx.operations) {
    out.add(opSource(op, source));
    const b = op.body;
    if (
      b.type === 'invokeHostFunction' &&
      b.invokeHostFunctionOp.hostFunction.type === 'hostFunctionTypeInvokeContract'
    ) {
      for (const a of b.invokeHostFunctionOp.hostFunction.invokeContract.args) {
        if (a.type === 'scvAddress' && a.address.type === 'scAddressTypeAccount') {
          out.add(Address.fromScAddress(a.address).toString());
        }
      }
    }
    if (b.type === 'createAccount') out.add(publicKeyOf(b.createAccountOp.destination));
    if (b.type === 'payment') out.add(accountIdOf(b.paymentOp.destination));
    if (b.type === 'accountMerge') out.add(accountIdOf(b.destination));
  }
  return [...out];
}

/** Validates and applies submitted envelopes against one LedgerState. `now` returns milliseconds. */
export class Engine {
  constructor(
    readonly state: LedgerState,
    private readonly now: () => number = Date.now,
  ) {}

  private ctx(): { ctx: Ctx; nowSec: number } {
    const nowSec = Math.max(Math.floor(this.now() / 1000), this.state.lastClosed.closedAt);
    return { ctx: { ledgerSeq: this.state.openSequence, closeTime: BigInt(nowSec) }, nowSec };
  }

  /**
   * Validates `envelopeXdr` (base64 TransactionEnvelope) for this network and, if valid, applies it into the open
   * ledger. Never throws on bad input: undecodable envelopes return `{ malformed: true }`.
   */
  submit(envelopeXdr: string): SubmitOutcome | Malformed {
    let d: DecodedTransaction;
    try {
      d = decodeEnvelope(envelopeXdr, this.state.networkPassphrase);
    } catch (e) {
      return { malformed: true, reason: (e as Error).message };
    }
    const { ctx, nowSec } = this.ctx();
    // Horizon looks a submitted hash up in its history first and answers with the stored result, so resubmitting
    // an applied envelope (a retry after a lost answer) is idempotent (services/horizon/internal/txsub).
    const prior = this.state.txByHash.get(d.hash.toString('hex'));
    if (prior !== undefined && prior.hash === d.hash.toString('hex')) {
      return {
        applied: true,
        successful: prior.successful,
        hash: prior.hash,
        ledger: prior.ledger,
        outcome: outcomeFromResultXdr(prior.resultXdr),
        feeCharged: prior.feeCharged,
        resultXdr: prior.resultXdr,
        envelopeXdr: prior.envelopeXdr,
        record: prior,
        duplicate: true,
        ...(prior.diagnostic !== undefined ? { diagnostic: prior.diagnostic } : {}),
      };
    }
    const refused = (outcome: AnyOutcome, diagnostic?: string): SubmitOutcome => ({
      applied: false,
      successful: false,
      hash: d.hash.toString('hex'),
      ledger: ctx.ledgerSeq,
      outcome,
      feeCharged: 0n,
      resultXdr: resultXdr(outcome, 0n),
      envelopeXdr: d.envelopeXdr,
      ...(diagnostic !== undefined ? { diagnostic } : {}),
    });

    const invoked: Invoked = {};
    let outcome: AnyOutcome;
    let feeCharged: bigint;
    let maxFee: bigint;
    let feeAccount: string;
    let v1: DecodedTransaction;
    if (d.kind === 'feeBump') {
      const fb = (d.tx as FeeBumpTransaction).tx as xdr.FeeBumpTransaction;
      v1 = d.inner!;
      const innerTx = v1Tx(v1);
      const innerOps = BigInt(innerTx.operations.length);
      // FeeBumpTransactionFrame::commonValidPreSeqNum: an inclusion fee (the fee minus the inner Soroban resource
      // fee) of at least baseFee * (ops + 1), and an inclusion fee rate at least the inner one:
      // outer / (ops + 1) >= inner / ops, compared by cross-multiplication as core does.
      const innerResourceFee = declaredResourceFee(innerTx);
      const outerInclusion = fb.fee - innerResourceFee;
      const innerInclusion = BigInt(innerTx.fee) - innerResourceFee;
      const minOuter = BASE_FEE * (innerOps + 1n);
      if (
        outerInclusion < minOuter ||
        outerInclusion * (innerOps > 0n ? innerOps : 1n) < innerInclusion * (innerOps + 1n)
      ) {
        return refused({ code: 'txInsufficientFee' });
      }
      feeAccount = accountIdOf(fb.feeSource);
      const payer = this.state.accounts.get(feeAccount);
      if (payer === undefined) return refused({ code: 'txNoAccount' });
      // The fee source's LOW threshold over the outer signatures only (FeeBumpTransactionFrame::checkSignature).
      const outer = checkAuth(d, new Map([[feeAccount, toAuth(payer)]]));
      if (!outer.ok && outer.code === 'txBAD_AUTH') return refused({ code: 'txBadAuth' });
      if (availableBalance(payer) < fb.fee) return refused({ code: 'txInsufficientBalance' });
      if (!outer.ok) return refused({ code: 'txBadAuthExtra' });
      const innerCheck = validateTx(this.state, v1, ctx, false);
      if (!innerCheck.ok) {
        return refused(
          { code: 'txFeeBumpInnerFailed', innerHash: v1.hash, inner: innerCheck.outcome },
          innerCheck.diagnostic,
        );
      }
      maxFee = fb.fee;
      feeCharged = chargeFee(this.state, payer, outerInclusion, innerTx.operations.length + 1, resourceCost(innerTx));
      const res = applyTx(this.state, v1, ctx, nowSec, invoked);
      outcome = {
        code: res.code === 'txSuccess' ? 'txFeeBumpInnerSuccess' : 'txFeeBumpInnerFailed',
        innerHash: v1.hash,
        inner: res,
      } satisfies FeeBumpOutcome;
    } else {
      v1 = d;
      const check = validateTx(this.state, d, ctx, true);
      if (!check.ok) return refused(check.outcome, check.diagnostic);
      const tx = v1Tx(d);
      feeAccount = check.value.source.id;
      maxFee = BigInt(tx.fee);
      const bid = maxFee - declaredResourceFee(tx);
      feeCharged = chargeFee(this.state, check.value.source, bid, tx.operations.length, resourceCost(tx));
      outcome = applyTx(this.state, d, ctx, nowSec, invoked);
    }
    const innerTx = v1Tx(v1);
    const successful = outcome.code === 'txSuccess' || outcome.code === 'txFeeBumpInnerSuccess';
    const payerAccount = this.state.accounts.get(feeAccount);
    if (payerAccount !== undefined) {
      payerAccount.lastModifiedLedger = ctx.ledgerSeq;
      payerAccount.lastModifiedTime = nowSec;
    }
    const record: TxRecord = {
      hash: d.hash.toString('hex'),
      ...(d.kind === 'feeBump' ? { innerHash: v1.hash.toString('hex') } : {}),
      ledger: ctx.ledgerSeq,
      createdAt: nowSec,
      order: this.state.txs.length + 1,
      successful,
      sourceAccount: accountIdOf(innerTx.sourceAccount),
      sourceAccountSequence: innerTx.seqNum.toString(),
      feeAccount,
      feeCharged,
      maxFee,
      operationCount: innerTx.operations.length,
      envelopeXdr: d.envelopeXdr,
      resultXdr: resultXdr(outcome, feeCharged),
      accounts: accountsNamed(d),
      ...invoked,
    };
    this.state.recordTx(record);
    return {
      applied: true,
      successful,
      hash: record.hash,
      ledger: ctx.ledgerSeq,
      outcome,
      feeCharged,
      resultXdr: record.resultXdr,
      envelopeXdr: d.envelopeXdr,
      record,
      ...(invoked.diagnostic !== undefined ? { diagnostic: invoked.diagnostic } : {}),
    };
  }
}

/** The resource fee a (validated) transaction's declared Soroban resources cost; 0 for a classic transaction. */
function resourceCost(tx: xdr.Transaction): bigint {
  return tx.ext.type === 'sorobanData' ? sorobanResourceFee(tx.ext.sorobanData.resources) : 0n;
}

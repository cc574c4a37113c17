import { createHash } from 'node:crypto';
import { SignerKey, StrKey, type xdr } from '@stellar/stellar-sdk/base';
import { assertDecoded, type DecodedTransaction, xdrTransactionOf } from './decode.ts';
import { stellarErrors } from './errors.ts';
import { maxLevel, operationThresholdLevel } from './thresholds.ts';
import type { AccountAuth, AuthCheckResult, DecoratedSig, Requirement, ThresholdLevel } from './types.ts';
import { verifyEd25519 } from './verify.ts';

/**
 * Quorum math: what a transaction needs from each source account, and stellar-core's verdict on a set of
 * signatures. A port of stellar-core's src/transactions/SignatureChecker.cpp and the order in which
 * TransactionFrame.cpp (commonValid, checkExtraSigners, checkOperationSignatures, checkAllSignaturesUsed) and
 * FeeBumpTransactionFrame.cpp call it.
 */

/** stellar-core MAX_SIGNATURES (TransactionFrame.cpp) and the XDR bound `DecoratedSignature signatures<20>`. */
export const MAX_SIGNATURES = 20;

/** Weights above 255 count as 255 (SignatureChecker.cpp, protocol >= 10). */
const MAX_WEIGHT = 255;

/** A signer as SignatureChecker sees it: key type, raw key, weight already clamped. */
export interface ParsedSigner {
  kind: 'ed25519' | 'preAuthTx' | 'hashX' | 'signedPayload';
  /** The strkey (G, T, X or P). */
  id: string;
  /** 32 bytes: the ed25519 public key, the pre-auth tx hash or the hashX hash. */
  key: Buffer;
  /** Signed-payload signers only: the payload the signature covers. */
  payload?: Buffer;
  weight: number;
}

/** Parses one signer strkey (G, T, X or P). @throws STELLAR_BAD_STRKEY */
export function parseSignerKey(strkey: string, weight: number): ParsedSigner {
  let key: xdr.SignerKey;
  try {
    key = SignerKey.decodeAddress(strkey);
  } catch (cause) {
    throw stellarErrors.error('STELLAR_BAD_STRKEY', { expected: 'G, T, X or P signer key' }, { cause });
  }
  const w = Math.min(weight, MAX_WEIGHT);
  switch (key.type) {
    case 'signerKeyTypeEd25519':
      return { kind: 'ed25519', id: strkey, key: Buffer.from(key.ed25519.value), weight: w };
    case 'signerKeyTypePreAuthTx':
      return { kind: 'preAuthTx', id: strkey, key: Buffer.from(key.preAuthTx.value), weight: w };
    case 'signerKeyTypeHashX':
      return { kind: 'hashX', id: strkey, key: Buffer.from(key.hashX.value), weight: w };
    default: {
      const sp = key.ed25519SignedPayload;
      return {
        kind: 'signedPayload',
        id: strkey,
        key: Buffer.from(sp.ed25519.value),
        payload: Buffer.from(sp.payload),
        weight: w,
      };
    }
  }
}

function isByte(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_WEIGHT;
}

/** An account's signers in core's order (master first, TransactionFrame::checkSignature) and its thresholds. */
export interface ParsedAccount {
  accountId: string;
  thresholds: { low: number; medium: number; high: number };
  signers: ParsedSigner[];
}

/**
 * Checks an AccountAuth and turns it into core's signer vector: the master key (only when its weight is
 * non-zero: a zero master weight removes it) followed by the added signers. Signers of weight 0 cannot exist
 * on the ledger (setOptions with weight 0 deletes them), so they are dropped.
 * @throws STELLAR_BAD_ACCOUNT_AUTH, STELLAR_BAD_STRKEY
 */
export function parseAccount(a: AccountAuth): ParsedAccount {
  if (a === null || typeof a !== 'object' || !StrKey.isValidEd25519PublicKey(a.accountId)) {
    throw stellarErrors.error('STELLAR_BAD_ACCOUNT_AUTH', { field: 'accountId' });
  }
  const t = a.thresholds;
  if (!isByte(a.masterWeight) || t === null || typeof t !== 'object' || ![t.low, t.medium, t.high].every(isByte)) {
    throw stellarErrors.error('STELLAR_BAD_ACCOUNT_AUTH', { accountId: a.accountId });
  }
  if (!Array.isArray(a.signers) || a.signers.length > 20) {
    throw stellarErrors.error('STELLAR_BAD_ACCOUNT_AUTH', { accountId: a.accountId, field: 'signers' });
  }
  const signers: ParsedSigner[] = [];
  if (a.masterWeight > 0) {
    signers.push({
      kind: 'ed25519',
      id: a.accountId,
      key: Buffer.from(StrKey.decodeEd25519PublicKey(a.accountId)),
      weight: a.masterWeight,
    });
  }
  for (const s of a.signers) {
    if (s === null || typeof s !== 'object' || typeof s.key !== 'string') {
      throw stellarErrors.error('STELLAR_BAD_ACCOUNT_AUTH', { accountId: a.accountId, field: 'signers' });
    }
    if (!Number.isInteger(s.weight) || s.weight < 0 || s.weight > 0xffffffff) {
      throw stellarErrors.error('STELLAR_BAD_ACCOUNT_AUTH', { accountId: a.accountId, signer: s.key });
    }
    if (s.weight === 0) continue;
    signers.push(parseSignerKey(s.key, s.weight));
  }
  return { accountId: a.accountId, thresholds: { low: t.low, medium: t.medium, high: t.high }, signers };
}

/** The G address behind a muxed or plain account. */
export function accountIdOf(m: xdr.MuxedAccount): string {
  const raw = m.type === 'keyTypeEd25519' ? m.ed25519.value : m.med25519.ed25519.value;
  return StrKey.encodeEd25519PublicKey(raw);
}

function xdrTxOf(d: DecodedTransaction): xdr.Transaction {
  // decodeEnvelope refuses v0 envelopes, so a plain transaction always holds a v1 xdr.Transaction.
  return xdrTransactionOf(d) as xdr.Transaction;
}

/**
 * Per source account (muxed reduced to G), every level core checks it at: the transaction source at LOW
 * (commonValid), each operation's source at its operation's level. For a fee bump, only the fee source at LOW
 * (FeeBumpTransactionFrame::checkSignature); call again on `d.inner` for the inner transaction.
 * Insertion order: the (fee) source first, then operation sources in operation order.
 */
export function checkedLevels(d: DecodedTransaction): Map<string, Set<ThresholdLevel>> {
  assertDecoded(d);
  const out = new Map<string, Set<ThresholdLevel>>();
  if (d.kind === 'feeBump') {
    out.set(accountIdOf((xdrTransactionOf(d) as xdr.FeeBumpTransaction).feeSource), new Set(['low']));
    return out;
  }
  const tx = xdrTxOf(d);
  const source = accountIdOf(tx.sourceAccount);
  out.set(source, new Set(['low']));
  for (const op of tx.operations) {
    const id = op.sourceAccount === null ? source : accountIdOf(op.sourceAccount);
    const set = out.get(id) ?? new Set<ThresholdLevel>();
    set.add(operationThresholdLevel(op));
    out.set(id, set);
  }
  return out;
}

/**
 * Per source account (muxed reduced to G), the highest level the transaction needs from it: the transaction
 * source at least LOW, each operation's source at its operation's level. For a fee bump, only the fee source
 * at LOW; call again on `d.inner` for the inner transaction. Source first, then operation sources in order.
 */
export function neededLevels(d: DecodedTransaction): Map<string, ThresholdLevel> {
  const out = new Map<string, ThresholdLevel>();
  for (const [id, levels] of checkedLevels(d)) out.set(id, [...levels].reduce(maxLevel));
  return out;
}

/** The parsed AccountAuth for `id`. @throws STELLAR_ACCOUNT_UNKNOWN, STELLAR_BAD_ACCOUNT_AUTH */
export function loadAccount(accounts: ReadonlyMap<string, AccountAuth>, id: string): ParsedAccount {
  if (accounts === null || typeof accounts !== 'object' || typeof accounts.get !== 'function') {
    throw stellarErrors.error(
      'STELLAR_BAD_INPUT',
      { field: 'accounts' },
      { message: 'accounts must be a Map of G address to AccountAuth.' },
    );
  }
  const a = accounts.get(id);
  if (a === undefined) throw stellarErrors.error('STELLAR_ACCOUNT_UNKNOWN', { accountId: id });
  if (a.accountId !== id) throw stellarErrors.error('STELLAR_BAD_ACCOUNT_AUTH', { accountId: id, field: 'accountId' });
  return parseAccount(a);
}

function thresholdAt(a: ParsedAccount, level: ThresholdLevel): number {
  return a.thresholds[level];
}

/**
 * What each source account must provide: its highest needed level and the weight it takes. The weight is the
 * largest threshold among the levels core checks the account at (thresholds need not be ordered: low may
 * exceed medium), and at least 1: SignatureChecker needs one matching signature even for threshold 0.
 * Extra signers (CAP-21) are reported by `extraSignerKeys`.
 * @throws STELLAR_ACCOUNT_UNKNOWN when an account is missing from `accounts`; STELLAR_BAD_ACCOUNT_AUTH.
 */
export function computeRequirements(d: DecodedTransaction, accounts: ReadonlyMap<string, AccountAuth>): Requirement[] {
  const out: Requirement[] = [];
  for (const [accountId, levels] of checkedLevels(d)) {
    const a = loadAccount(accounts, accountId);
    const weight = Math.max(1, ...[...levels].map((l) => thresholdAt(a, l)));
    out.push({ accountId, level: [...levels].reduce(maxLevel), weight });
  }
  return out;
}

/** The transaction's CAP-21 extra signers as strkeys (each needs one matching signature); [] for fee bumps. */
export function extraSignerKeys(d: DecodedTransaction): string[] {
  if (d.kind === 'feeBump') return [];
  const cond = xdrTxOf(d).cond;
  if (cond.type !== 'precondV2') return [];
  return cond.v2.extraSigners.map((k) => SignerKey.encodeSignerKey(k));
}

/** The hint core matches for a signed-payload signer: last4(key) XOR last4(payload), payload zero-padded. */
export function signedPayloadHint(publicKey: Uint8Array, payload: Uint8Array): Buffer {
  const hint = Buffer.alloc(4);
  hint.set(payload.length >= 4 ? payload.subarray(payload.length - 4) : payload, 0);
  for (let i = 0; i < 4; i++) hint[i] = hint[i]! ^ publicKey[28 + i]!;
  return hint;
}

/**
 * stellar-core's SignatureChecker (src/transactions/SignatureChecker.cpp) for one envelope: it remembers which
 * signatures any check used. Verification results are memoised per (signature, key), like core's verify cache.
 */
export class SignatureChecker {
  readonly used: boolean[];
  private readonly memo = new Map<string, boolean>();

  constructor(
    private readonly contentsHash: Buffer,
    private readonly signatures: readonly DecoratedSig[],
  ) {
    this.used = signatures.map(() => false);
  }

  private verify(i: number, sig: DecoratedSig, s: ParsedSigner): boolean {
    switch (s.kind) {
      case 'hashX':
        // SignatureUtils::verifyHashX: the "signature" is the preimage.
        return sig.hint.equals(s.key.subarray(28)) && createHash('sha256').update(sig.signature).digest().equals(s.key);
      case 'ed25519': {
        if (!sig.hint.equals(s.key.subarray(28))) return false;
        const k = `${i}:${s.kind}:${s.id}`;
        let ok = this.memo.get(k);
        if (ok === undefined) {
          ok = verifyEd25519(s.key, this.contentsHash, sig.signature);
          this.memo.set(k, ok);
        }
        return ok;
      }
      case 'signedPayload':
        // SignatureUtils::verifyEd25519SignedPayload: the signature covers the payload, not the tx hash.
        return sig.hint.equals(signedPayloadHint(s.key, s.payload!)) && verifyEd25519(s.key, s.payload!, sig.signature);
      default:
        return false;
    }
  }

  /**
   * SignatureChecker::checkSignature: pre-auth signers first, then for hashX, ed25519 and signed-payload signers
   * in that order, walk the signatures in envelope order, give each to the first unused signer it matches, and
   * stop as soon as the weight reaches `needed`. Returns whether it did, and the weight gathered.
   */
  check(signers: readonly ParsedSigner[], needed: number): { ok: boolean; weight: number } {
    let total = 0;
    for (const s of signers) {
      if (s.kind === 'preAuthTx' && s.key.equals(this.contentsHash)) {
        total += s.weight;
        if (total >= needed) return { ok: true, weight: total };
      }
    }
    for (const kind of ['hashX', 'ed25519', 'signedPayload'] as const) {
      const list = signers.filter((s) => s.kind === kind);
      for (let i = 0; i < this.signatures.length && list.length > 0; i++) {
        const sig = this.signatures[i]!;
        const at = list.findIndex((s) => this.verify(i, sig, s));
        if (at < 0) continue;
        this.used[i] = true;
        total += list[at]!.weight;
        if (total >= needed) return { ok: true, weight: total };
        list.splice(at, 1);
      }
    }
    return { ok: false, weight: total };
  }

  /** Indexes of signatures no check used (SignatureChecker::checkAllSignaturesUsed). */
  unused(): number[] {
    const out: number[] = [];
    this.used.forEach((u, i) => {
      if (!u) out.push(i);
    });
    return out;
  }
}

/** checkAuth's verdict plus which signatures were used, for selection and diagnostics. */
export interface AuthCheckDetail {
  result: AuthCheckResult;
  used: boolean[];
}

function checkSigs(sigs: unknown): DecoratedSig[] {
  if (!Array.isArray(sigs)) throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'signatures' });
  for (const s of sigs) {
    if (
      s === null ||
      typeof s !== 'object' ||
      !(s.hint instanceof Uint8Array) ||
      s.hint.length !== 4 ||
      !(s.signature instanceof Uint8Array) ||
      s.signature.length > 64
    ) {
      throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'signatures' });
    }
  }
  return (sigs as DecoratedSig[]).map((s) => ({ hint: Buffer.from(s.hint), signature: Buffer.from(s.signature) }));
}

/** checkAuth with the per-signature usage core computed. Same errors as checkAuth. */
export function checkAuthDetailed(
  d: DecodedTransaction,
  accounts: ReadonlyMap<string, AccountAuth>,
  signatures?: readonly DecoratedSig[],
): AuthCheckDetail {
  assertDecoded(d);
  if (signatures === undefined) signatures = d.signatures;
  const sigs = checkSigs(signatures);
  const checker = new SignatureChecker(d.hash, sigs);
  const fail = (result: AuthCheckResult): AuthCheckDetail => ({ result, used: checker.used });
  const levels = neededLevels(d);
  // Load every account first, so a missing one is an error whatever the signatures say.
  const parsed = new Map<string, ParsedAccount>();
  for (const id of levels.keys()) parsed.set(id, loadAccount(accounts, id));

  if (sigs.length > MAX_SIGNATURES) {
    return fail({
      ok: false,
      code: 'txBAD_AUTH',
      reason: `${sigs.length} signatures; an envelope carries at most ${MAX_SIGNATURES}`,
    });
  }

  // (1) The transaction (or fee) source at LOW: TransactionFrame::commonValid / FeeBumpTransactionFrame.
  const [sourceId] = levels.keys() as IterableIterator<string>;
  const source = parsed.get(sourceId!)!;
  const low = thresholdAt(source, 'low');
  const r1 = checker.check(source.signers, low);
  if (!r1.ok) {
    return fail({
      ok: false,
      code: 'txBAD_AUTH',
      accountId: source.accountId,
      reason: `source account ${source.accountId} reached weight ${r1.weight} of ${Math.max(1, low)} needed at low`,
    });
  }
  // (1b) CAP-21 extra signers: each one needs a matching signature (TransactionFrame::checkExtraSigners).
  const extras = extraSignerKeys(d);
  if (extras.length > 0) {
    const r = checker.check(
      extras.map((k) => parseSignerKey(k, 1)),
      extras.length,
    );
    if (!r.ok) {
      return fail({
        ok: false,
        code: 'txBAD_AUTH',
        reason: `${extras.length - r.weight} of ${extras.length} extra signers have no matching signature`,
      });
    }
  }
  // (2) Each operation's source at the operation's level: OperationFrame::checkSignature -> opBAD_AUTH.
  if (d.kind === 'transaction') {
    const tx = xdrTxOf(d);
    for (const [opIndex, op] of tx.operations.entries()) {
      const id = op.sourceAccount === null ? source.accountId : accountIdOf(op.sourceAccount);
      const acct = parsed.get(id)!;
      const level = operationThresholdLevel(op);
      const needed = thresholdAt(acct, level);
      const r = checker.check(acct.signers, needed);
      if (!r.ok) {
        return fail({
          ok: false,
          code: 'txFAILED',
          opIndex,
          opCode: 'opBAD_AUTH',
          accountId: id,
          reason: `operation ${opIndex}: account ${id} reached weight ${r.weight} of ${Math.max(1, needed)} needed at ${level}`,
        });
      }
    }
  }
  // (3) Every signature must have been used by some check: checkAllSignaturesUsed -> txBAD_AUTH_EXTRA.
  const unused = checker.unused();
  if (unused.length > 0) {
    return fail({
      ok: false,
      code: 'txBAD_AUTH_EXTRA',
      unusedSignatures: unused,
      reason: `signature${unused.length > 1 ? 's' : ''} at index ${unused.join(', ')} not used by any check`,
    });
  }
  return { result: { ok: true }, used: checker.used };
}

/**
 * stellar-core's verdict on `signatures` (default: the envelope's own) for `d`, in core's order:
 * (1) the source at LOW and every extra signer, else txBAD_AUTH; (2) each operation's source at its level,
 * else txFAILED/opBAD_AUTH with opIndex; (3) no unused signature, else txBAD_AUTH_EXTRA. More than 20
 * signatures is txBAD_AUTH. For a fee bump this checks the outer signatures against the fee source; call it on
 * `d.inner` for the inner transaction.
 * @throws STELLAR_ACCOUNT_UNKNOWN, STELLAR_BAD_ACCOUNT_AUTH, STELLAR_BAD_STRKEY, STELLAR_BAD_INPUT
 */
export function checkAuth(
  d: DecodedTransaction,
  accounts: ReadonlyMap<string, AccountAuth>,
  signatures?: DecoratedSig[],
): AuthCheckResult {
  return checkAuthDetailed(d, accounts, signatures).result;
}

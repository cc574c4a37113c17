import { StrKey, xdr } from '@stellar/stellar-sdk/base';
import { assertDecoded, type DecodedTransaction } from './decode.ts';
import { stellarErrors } from './errors.ts';
import {
  checkAuthDetailed,
  computeRequirements,
  extraSignerKeys,
  loadAccount,
  MAX_SIGNATURES,
  parseSignerKey,
} from './quorum.ts';
import type { AccountAuth, DecoratedSig } from './types.ts';
import { signatureHint, verifyEd25519 } from './verify.ts';

/**
 * Choosing which collected signatures go into the envelope.
 *
 * stellar-core refuses a signature no check used (txBAD_AUTH_EXTRA, TransactionFrame checkAllSignaturesUsed),
 * and its checker is greedy and order-dependent, so "all signatures we have" is often wrong. A set in which no
 * signature can be dropped is accepted in any order: each signature is needed by some account's check at the
 * level whose threshold is that account's requirement, and that check walks every signature of the account
 * until the weight is reached, so it reaches the needed one. A set of the fewest signatures is such a set.
 */

/** A signature a cosigner returned: its G key and the 64-byte signature over `d.hash`. */
export interface CandidateSignature {
  publicKey: string;
  signature: Buffer;
}

/** Above this many useful candidates the exact search gives way to greedy-then-prune (still minimal). */
const EXACT_SEARCH_MAX = 24;

interface Candidate {
  order: number;
  key: Buffer;
  sig: DecoratedSig;
  /** Weight this key adds to each requirement (index-aligned with `deficits`). */
  adds: number[];
}

function covers(deficits: readonly number[], chosen: readonly Candidate[]): boolean {
  return deficits.every((need, r) => chosen.reduce((sum, c) => sum + c.adds[r]!, 0) >= need);
}

/** Smallest subset of `pool` (preferring earlier candidates) meeting `deficits`, at most `limit` long. */
function exactSearch(pool: readonly Candidate[], deficits: readonly number[], limit: number): Candidate[] | null {
  // suffix[i][r]: the most weight candidates i.. can still add to requirement r (prunes hopeless branches).
  const suffix: number[][] = Array.from({ length: pool.length + 1 }, () => deficits.map(() => 0));
  for (let i = pool.length - 1; i >= 0; i--) suffix[i] = suffix[i + 1]!.map((v, r) => v + pool[i]!.adds[r]!);
  const picked: Candidate[] = [];
  const dfs = (start: number, left: number, need: number[]): boolean => {
    if (need.every((n) => n <= 0)) return true;
    if (left === 0) return false;
    for (let i = start; i < pool.length; i++) {
      if (need.some((n, r) => n > suffix[i]![r]!)) return false;
      const c = pool[i]!;
      picked.push(c);
      if (
        dfs(
          i + 1,
          left - 1,
          need.map((n, r) => n - c.adds[r]!),
        )
      ) {
        return true;
      }
      picked.pop();
    }
    return false;
  };
  for (let k = 0; k <= Math.min(limit, pool.length); k++) {
    picked.length = 0;
    if (dfs(0, k, [...deficits])) return picked;
  }
  return null;
}

/** Greedy by largest remaining contribution, then drop whatever is removable: minimal, maybe not the fewest. */
function greedyThenPrune(pool: readonly Candidate[], deficits: readonly number[]): Candidate[] | null {
  const chosen: Candidate[] = [];
  const rest = [...pool];
  const need = [...deficits];
  while (need.some((n) => n > 0)) {
    let best = -1;
    let bestGain = 0;
    rest.forEach((c, i) => {
      const gain = c.adds.reduce((s, a, r) => s + Math.min(a, Math.max(0, need[r]!)), 0);
      if (gain > bestGain) {
        best = i;
        bestGain = gain;
      }
    });
    if (best < 0) return null;
    const [c] = rest.splice(best, 1);
    chosen.push(c!);
    c!.adds.forEach((a, r) => {
      need[r] = need[r]! - a;
    });
  }
  for (let i = chosen.length - 1; i >= 0; i--) {
    const without = chosen.filter((_, j) => j !== i);
    if (covers(deficits, without)) chosen.splice(i, 1);
  }
  return chosen;
}

function checkCandidates(candidates: unknown): CandidateSignature[] {
  if (!Array.isArray(candidates)) throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'candidates' });
  for (const c of candidates) {
    if (
      c === null ||
      typeof c !== 'object' ||
      typeof c.publicKey !== 'string' ||
      !(c.signature instanceof Uint8Array)
    ) {
      throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'candidates' });
    }
    if (!StrKey.isValidEd25519PublicKey(c.publicKey))
      throw stellarErrors.error('STELLAR_BAD_STRKEY', { expected: 'G...' });
  }
  return candidates as CandidateSignature[];
}

/**
 * From the signatures collected, a set that meets every requirement of `d` (computeRequirements plus CAP-21
 * extra signers) with the fewest signatures (so none can be dropped), in the candidates' order, checked with
 * checkAuth before it is returned. Candidates that do not verify against `d.hash` are ignored, as are repeats of
 * a key. Returns null when no set of at most 20 signatures meets the requirements. For a fee bump, this selects
 * the outer signatures (fee source at LOW). Never mutates `candidates`.
 * @throws STELLAR_ACCOUNT_UNKNOWN, STELLAR_BAD_ACCOUNT_AUTH, STELLAR_BAD_STRKEY, STELLAR_BAD_INPUT,
 *   STELLAR_SELECTION_FAILED (the checker refused the selection: a bug, reported rather than returned)
 */
export function selectMinimalSignatures(
  d: DecodedTransaction,
  accounts: ReadonlyMap<string, AccountAuth>,
  candidates: readonly CandidateSignature[],
): DecoratedSig[] | null {
  assertDecoded(d);
  const list = checkCandidates(candidates);
  const requirements = computeRequirements(d, accounts);
  const parsed = requirements.map((r) => loadAccount(accounts, r.accountId));
  // Pre-auth signers equal to this hash add weight without any signature (SignatureChecker, first loop).
  const deficits = requirements.map((r, i) => {
    const preAuth = parsed[i]!.signers.filter((s) => s.kind === 'preAuthTx' && s.key.equals(d.hash));
    return r.weight - preAuth.reduce((sum, s) => sum + s.weight, 0);
  });

  const seen = new Set<string>();
  const valid: Candidate[] = [];
  list.forEach((c, order) => {
    if (seen.has(c.publicKey)) return;
    const key = Buffer.from(StrKey.decodeEd25519PublicKey(c.publicKey));
    if (!verifyEd25519(key, d.hash, c.signature)) return;
    seen.add(c.publicKey);
    const adds = parsed.map((a) =>
      a.signers.filter((s) => s.kind === 'ed25519' && s.key.equals(key)).reduce((sum, s) => sum + s.weight, 0),
    );
    valid.push({ order, key, sig: { hint: signatureHint(key), signature: Buffer.from(c.signature) }, adds });
  });

  // CAP-21 extra signers: an ed25519 one must be among the signatures; a pre-auth one must be this hash; a
  // hashX or signed-payload one cannot be met by signatures over the hash.
  const forced: Candidate[] = [];
  const extras = extraSignerKeys(d);
  // CAP-21 forbids repeated extra signers (core refuses such a transaction as malformed): nothing to select.
  if (new Set(extras).size !== extras.length) return null;
  for (const extra of extras) {
    const s = parseSignerKey(extra, 1);
    if (s.kind === 'preAuthTx' && s.key.equals(d.hash)) continue;
    const c = s.kind === 'ed25519' ? valid.find((v) => v.key.equals(s.key)) : undefined;
    if (c === undefined) return null;
    if (!forced.includes(c)) forced.push(c);
  }
  const afterForced = deficits.map((need, r) => need - forced.reduce((sum, c) => sum + c.adds[r]!, 0));
  const pool = valid.filter((c) => !forced.includes(c) && c.adds.some((a) => a > 0));
  const limit = MAX_SIGNATURES - forced.length;
  if (limit < 0) return null;
  const picked =
    pool.length <= EXACT_SEARCH_MAX ? exactSearch(pool, afterForced, limit) : greedyThenPrune(pool, afterForced);
  if (picked === null || forced.length + picked.length > MAX_SIGNATURES) return null;

  const chosen = [...forced, ...picked].sort((a, b) => a.order - b.order).map((c) => c.sig);
  const verdict = checkAuthDetailed(d, accounts, chosen).result;
  if (!verdict.ok)
    throw stellarErrors.error('STELLAR_SELECTION_FAILED', { code: verdict.code, reason: verdict.reason });
  return chosen;
}

/**
 * The envelope of `d` carrying exactly `sigs` (for a fee bump: the outer signatures; the inner transaction and
 * its signatures are kept as decoded), as base64 XDR. Does not verify: pass the output of
 * selectMinimalSignatures, or check with checkAuth first.
 * @throws STELLAR_TOO_MANY_SIGNATURES (more than 20), STELLAR_BAD_INPUT (hint not 4 bytes, signature over 64)
 */
export function assembleEnvelope(d: DecodedTransaction, sigs: DecoratedSig[]): string {
  assertDecoded(d);
  if (!Array.isArray(sigs)) throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'sigs' });
  if (sigs.length > MAX_SIGNATURES) throw stellarErrors.error('STELLAR_TOO_MANY_SIGNATURES', { count: sigs.length });
  const decorated = sigs.map((s) => {
    if (
      s === null ||
      typeof s !== 'object' ||
      !(s.hint instanceof Uint8Array) ||
      s.hint.length !== 4 ||
      !(s.signature instanceof Uint8Array) ||
      s.signature.length > 64
    ) {
      throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'sigs' });
    }
    return new xdr.DecoratedSignature({ hint: Buffer.from(s.hint), signature: Buffer.from(s.signature) });
  });
  const env = xdr.TransactionEnvelope.fromXdr(d.envelopeXdr, 'base64');
  if (env.type === 'envelopeTypeTxFeeBump') {
    return xdr.TransactionEnvelope.envelopeTypeTxFeeBump(
      new xdr.FeeBumpTransactionEnvelope({ tx: env.feeBump.tx, signatures: decorated }),
    ).toXdr('base64');
  }
  // decodeEnvelope only produces v1 and fee-bump envelopes.
  const v1 = (env as xdr.TransactionEnvelopeTx).v1;
  return xdr.TransactionEnvelope.envelopeTypeTx(
    new xdr.TransactionV1Envelope({ tx: v1.tx, signatures: decorated }),
  ).toXdr('base64');
}

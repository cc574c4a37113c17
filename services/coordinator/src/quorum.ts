import { SIGNER_UNAVAILABLE } from '@cosigner/protocol/reasons';
import type { DecodedTransaction } from '@cosigner/stellar/decode';
import type { AccountAuth, Requirement } from '@cosigner/stellar/types';
import type { DecisionRecord, ProposalRecord } from './store.ts';

/**
 * The arithmetic every kind of round shares: signer weights as stellar-core counts them, the progress of a
 * proposal's requirements, whether they can still be reached, and the timing rules (backoff, time bounds).
 * Pure functions: no store, no timers kept.
 */

/** A reject whose every reason is SIGNER_UNAVAILABLE says "not now", not "no". */
export function isUnavailable(d: { outcome: string; reasons: readonly { code: string }[] }): boolean {
  return d.outcome === 'reject' && d.reasons.length > 0 && d.reasons.every((r) => r.code === SIGNER_UNAVAILABLE);
}

/**
 * Exponential backoff with "equal jitter" (half fixed, half random): retries of many proposals or many
 * coordinators do not line up against a recovering ledger or key backend. `attempt` counts from 1.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Largest setTimeout delay Node accepts (2^31-1 ms, about 24.8 days); longer waits re-arm. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Call `fire` once the unix time `maxTimeS` (a transaction's upper time bound) has passed, re-arming when a wait
 * is longer than setTimeout allows or the timer fires early; `keep` receives each timer so its owner can clear it.
 */
export function atTimeBound(maxTimeS: number, keep: (t: NodeJS.Timeout) => void, fire: () => void): void {
  const wait = maxTimeS * 1000 - Date.now();
  keep(
    setTimeout(
      () => (maxTimeS * 1000 > Date.now() ? atTimeBound(maxTimeS, keep, fire) : fire()),
      Math.max(0, Math.min(wait, MAX_TIMER_MS)),
    ),
  );
}

/** Unix seconds of the transaction's upper time bound (the inner one for a fee bump); 0 = none. */
export function maxTimeOf(d: DecodedTransaction): number {
  const tx = d.kind === 'feeBump' ? d.inner!.tx : d.tx;
  const tb = (tx as { timeBounds?: { maxTime: string } }).timeBounds;
  return tb ? Number(tb.maxTime) : 0;
}

/** The ed25519 signer weights of an account, the master key included when its weight is not 0. */
export function ed25519Weights(a: AccountAuth): Map<string, number> {
  const out = new Map<string, number>();
  if (a.masterWeight > 0) out.set(a.accountId, Math.min(255, a.masterWeight));
  for (const s of a.signers) if (s.key.startsWith('G') && s.weight > 0) out.set(s.key, Math.min(255, s.weight));
  return out;
}

/** Accounts of `rec` that `stellarKey` is a signer of. */
export function accountsHelpedBy(rec: Pick<ProposalRecord, 'accounts'>, stellarKey: string): string[] {
  return rec.accounts.filter((a) => ed25519Weights(a).has(stellarKey)).map((a) => a.accountId);
}

export interface RequirementProgress extends Requirement {
  /** Weight of verified signatures collected so far. */
  collected: number;
  met: boolean;
  signers: string[];
}

/** Per requirement, the weight collected from `signerKeys` (verified signatures only). */
export function progress(rec: ProposalRecord, signerKeys: ReadonlySet<string>): RequirementProgress[] {
  return rec.requirements.map((r) => {
    const a = rec.accounts.find((x) => x.accountId === r.accountId)!;
    const weights = ed25519Weights(a);
    let collected = 0;
    const signers: string[] = [];
    for (const [k, w] of weights) {
      if (signerKeys.has(k)) {
        collected += w;
        signers.push(k);
      }
    }
    return { ...r, collected, met: collected >= r.weight, signers };
  });
}

/** A decision that counts against the quorum: the node said no, or said something that could not count. */
export function refused(d: DecisionRecord): boolean {
  return d.outcome === 'reject' || d.outcome === 'invalid';
}

/**
 * Why the quorum can no longer be reached, or null when it still can: per requirement, the best weight is the
 * verified signatures kept plus every enrolled node key whose node has neither signed nor refused.
 */
export function unreachable(
  rec: ProposalRecord,
  signed: ReadonlySet<string>,
  decisions: readonly DecisionRecord[],
  nodes: readonly { id: string; stellarKey: string }[],
): string | null {
  const no = decisions.filter(refused);
  const refusedBy = new Set(no.map((d) => d.nodeId));
  const available = new Set(nodes.filter((n) => !refusedBy.has(n.id)).map((n) => n.stellarKey));
  const short: string[] = [];
  for (const r of rec.requirements) {
    const weights = ed25519Weights(rec.accounts.find((a) => a.accountId === r.accountId)!);
    let best = 0;
    for (const [k, w] of weights) if (signed.has(k) || available.has(k)) best += w;
    if (best < r.weight) short.push(`${r.accountId} can reach weight ${best} of ${r.weight} needed at ${r.level}`);
  }
  if (short.length === 0) return null;
  const why = no.map((d) => `${d.nodeId}: ${d.reasons.map((x) => x.message).join('; ') || d.outcome}`);
  return `quorum unreachable: ${short.join('; ')}${why.length ? ` (${why.join(' | ')})` : ''}`;
}

import type { Body } from '@cosigner/protocol/messages';
import { SIGNER_UNAVAILABLE } from '@cosigner/protocol/reasons';
import type { Logger } from '@cosigner/runtime/logger';
import { type DecodedTransaction, decodeEnvelope } from '@cosigner/stellar/decode';
import { checkAuth, computeRequirements, neededLevels } from '@cosigner/stellar/quorum';
import { assembleEnvelope, selectMinimalSignatures } from '@cosigner/stellar/sigset';
import type { AccountAuth, Requirement } from '@cosigner/stellar/types';
import { publicKeyFromAddress, verifyEd25519 } from '@cosigner/stellar/verify';
import { coordinatorErrors } from './errors.ts';
import type { EventBus, EventType } from './events.ts';
import { explainResultCode, type LedgerClient } from './horizon.ts';
import type { ConnectedNode } from './hub.ts';
import type { Metrics } from './metrics.ts';
import type { DecisionReasonRecord, ProposalRecord, ProposalStatus, Store, SubmissionResult } from './store.ts';

/**
 * The signing round (docs/architecture.md "A proposal's life", steps 2 and 5): fan a proposal out in parallel to
 * every connected node whose Stellar key can add weight, verify every returned signature BEFORE keeping it,
 * and once every requirement holds assemble a MINIMAL signature set (stellar-core
 * TransactionFrame::checkAllSignaturesUsed refuses unused signatures with txBAD_AUTH_EXTRA), store it, and
 * submit it when asked. The round never waits for slow nodes once the quorum is met, and a proposal whose
 * quorum can no longer be reached ends `rejected` with every node's reasons.
 *
 * All state transitions are compare-and-set in the store, so a restart (or a duplicate decision) can never
 * move a proposal twice, and the stored envelope is the only one ever submitted for a proposal.
 */

export interface NodeLink {
  connected(): ConnectedNode[];
  send(nodeId: string, type: 'proposal', body: Body<'proposal'>): boolean;
  send(nodeId: string, type: 'cancel', body: Body<'cancel'>): boolean;
}

export interface RoundOptions {
  store: Store;
  ledger: LedgerClient;
  events: EventBus;
  metrics: Metrics;
  logger: Logger;
  network: string;
  /** Attempts for an envelope WITHOUT an upper time bound; one with a bound is retried until it passes. */
  submitAttempts: number;
  submitBackoffMs: number;
  /** Cap of the (jittered, doubling) pause between submission retries. */
  submitMaxBackoffMs?: number;
  /** First pause before asking again a node whose key backend was unavailable; doubles up to the max. */
  signerRetryMs?: number;
  signerRetryMaxMs?: number;
  /** After the time bound passes, how long to let a last ledger close and be ingested before the final lookup. */
  ledgerSettleMs?: number;
  /** Accounts whose cached state must be dropped (a bad-auth result says the signers changed). */
  invalidateAccounts(ids: readonly string[]): void;
}

interface Live {
  rec: ProposalRecord;
  decoded: DecodedTransaction;
  accounts: Map<string, AccountAuth>;
  /** When the proposal was sent to each node, for per-node latency. */
  sentAt: Map<string, number>;
  expiry?: NodeJS.Timeout;
  /** Nodes whose key backend was unavailable: how often in a row, and the timer that asks them again. */
  retries: Map<string, { count: number; timer?: NodeJS.Timeout }>;
}

/** The reason code a cosigner answers when its key backend (KMS/HSM) failed: transient, ask again later. */
export { SIGNER_UNAVAILABLE };

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

/** How many closed proposals the engine remembers for checking late decisions without a store read. */
const CLOSED_REMEMBERED = 4096;

/** What an approval is checked against: the proposal's hash (bytes and hex) and the accounts it needs. */
interface ApprovalTarget {
  hash: Buffer;
  rec: Pick<ProposalRecord, 'hash' | 'accounts'>;
}

/** A reason to flag a node: a misbehaviour kind and what was wrong. */
interface Fault {
  kind: string;
  detail: string;
}

/**
 * Why an approval cannot count, or the signature it carries: it must name OUR hash, carry a signature that
 * verifies over it under the node's enrolled key, and that key must be a signer of an account the transaction
 * needs. One rule for decisions on open proposals and for those that arrive after the close.
 */
function approvalFault(stellarKey: string, d: Body<'decision'>, p: ApprovalTarget): Fault | { signature: Buffer } {
  if (d.hash !== p.rec.hash)
    return { kind: 'hash_mismatch', detail: `node computed hash ${d.hash}, the proposal hash is ${p.rec.hash}` };
  if (d.signature === undefined) return { kind: 'missing_signature', detail: 'an approval without a signature' };
  const signature = Buffer.from(d.signature, 'base64');
  if (!verifyEd25519(publicKeyFromAddress(stellarKey), p.hash, signature)) {
    return {
      kind: 'invalid_signature',
      detail: 'the signature does not verify over the proposal hash under the enrolled key',
    };
  }
  if (accountsHelpedBy(p.rec, stellarKey).length === 0) {
    return { kind: 'not_a_signer', detail: `${stellarKey} is not a signer of any account this transaction needs` };
  }
  return { signature };
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

export class RoundEngine {
  readonly #live = new Map<string, Live>();
  /**
   * Proposals closed lately (quorum, refusal, expiry, cancel): their hash and the keys that could sign them, so a
   * decision arriving after the close is still checked (a bad signature from a node is misbehaviour whether or
   * not the quorum already formed). Bounded; older ids fall back to one store read.
   */
  readonly #closedRecently = new Map<string, ApprovalTarget>();
  readonly #submitting = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #wakers = new Set<() => void>();
  #link: NodeLink | undefined;
  #closed = false;

  constructor(private readonly o: RoundOptions) {}

  attach(link: NodeLink): void {
    this.#link = link;
  }

  /**
   * Decode, load the source accounts, compute what is needed. Pure of side effects on the store.
   * @throws STELLAR_* decode errors, COORD_ACCOUNT_NOT_FOUND, COORD_HORIZON_UNAVAILABLE
   */
  async prepare(
    xdr: string,
    loadAccount: (id: string) => Promise<AccountAuth>,
  ): Promise<{ decoded: DecodedTransaction; accounts: AccountAuth[]; requirements: Requirement[] }> {
    const decoded = decodeEnvelope(xdr, this.o.network);
    const ids = [...neededLevels(decoded).keys()];
    const accounts = await Promise.all(ids.map((id) => loadAccount(id)));
    const requirements = computeRequirements(decoded, new Map(accounts.map((a) => [a.accountId, a])));
    return { decoded, accounts, requirements };
  }

  /** Append `proposal.created`: in the proposal's own unit of work (app.ts), so both share one commit. */
  announce(rec: ProposalRecord): void {
    this.#emit(rec, 'proposal.created', { hash: rec.hash, requirements: rec.requirements });
  }

  /**
   * A new proposal was committed: announce it (unless `announce` already did), fan it out, arm its expiry.
   * `decoded`: what `prepare` decoded from this very XDR, so the envelope is not decoded a second time per proposal
   * (used only when its hash is the record's).
   */
  start(rec: ProposalRecord, announced = false, decoded?: DecodedTransaction): void {
    const live = this.#track(rec, decoded);
    if (!announced) this.announce(rec);
    this.o.metrics.proposalsCreated.inc({ kind: rec.kind });
    if (this.#settleIfUnreachable(live)) return;
    // Nobody has decided on a proposal created just now: no need to read its decisions back.
    this.#fanOut(live, undefined, true);
  }

  /** After a restart: every open proposal resumes where it stopped (signatures kept, submission continued). */
  resume(): number {
    // Soroban auth rounds are resumed by soroban.ts.
    const open = this.o.store.openProposals().filter((r) => r.kind !== 'authEntries' && r.kind !== 'sorobanTx');
    for (const rec of open) {
      if (rec.status === 'signed') {
        void this.#submit(rec, rec.envelope!, true);
        continue;
      }
      const live = this.#track(rec);
      // Signatures stored before the crash may already complete the set.
      if (this.#tryComplete(live)) continue;
      if (this.#settleIfUnreachable(live)) continue;
      this.#fanOut(live);
    }
    return open.length;
  }

  #track(rec: ProposalRecord, prepared?: DecodedTransaction): Live {
    const decoded =
      prepared !== undefined && prepared.hash.toString('hex') === rec.hash
        ? prepared
        : decodeEnvelope(rec.xdr, rec.network);
    const live: Live = {
      rec,
      decoded,
      accounts: new Map(rec.accounts.map((a) => [a.accountId, a])),
      sentAt: new Map(),
      retries: new Map(),
    };
    this.#live.set(rec.id, live);
    if (rec.maxTime > 0) this.#armExpiry(live);
    return live;
  }

  #armExpiry(live: Live): void {
    atTimeBound(
      live.rec.maxTime,
      (t) => {
        live.expiry = t;
      },
      () =>
        this.#finish(
          live,
          'expired',
          `the transaction's upper time bound (${live.rec.maxTime}) passed before a quorum signed`,
        ),
    );
  }

  #fanOut(live: Live, only?: string, fresh = false): void {
    if (!this.#link) return;
    const decided = new Set(
      fresh
        ? []
        : this.o.store
            .decisions(live.rec.id)
            .filter((d) => d.outcome !== 'hold' && d.outcome !== 'unavailable')
            .map((d) => d.nodeId),
    );
    for (const n of this.#link.connected()) {
      if (only !== undefined && n.nodeId !== only) continue;
      if (only === undefined && decided.has(n.nodeId)) continue;
      const accounts = accountsHelpedBy(live.rec, n.stellarKey);
      if (accounts.length === 0) continue;
      const body: Body<'proposal'> = {
        proposalId: live.rec.id,
        kind: 'transaction',
        networkPassphrase: live.rec.network,
        xdr: live.rec.xdr,
        hash: live.rec.hash,
        accounts,
        ...(live.rec.note ? { note: live.rec.note } : {}),
      };
      if (this.#link.send(n.nodeId, 'proposal', body)) live.sentAt.set(n.nodeId, Date.now());
    }
  }

  /** A node (re)connected and asked for open proposals: send every pending one it can help with. */
  sync(nodeId: string): void {
    for (const live of this.#live.values()) this.#fanOut(live, nodeId);
  }

  #misbehaved(nodeId: string, kind: string, detail: string, proposalId?: string): void {
    this.o.store.recordMisbehaviour({ nodeId, proposalId: proposalId ?? null, kind, detail, createdAt: Date.now() });
    this.o.metrics.nodeMisbehaviour.inc({ node: nodeId, kind });
    this.o.logger.warn({ nodeId, kind, detail, proposalId }, 'node misbehaved');
    const live = proposalId === undefined ? undefined : this.#live.get(proposalId);
    this.#emit(live?.rec ?? null, 'node.misbehaved', { nodeId, kind, detail });
  }

  /** Called by the hub for frames that fail below the decision level. */
  onMisbehaviour(nodeId: string, kind: string, detail: string, proposalId?: string): void {
    this.#misbehaved(nodeId, kind, detail, proposalId);
  }

  /**
   * A node's decision. Order: the proposal must be open; the node may only speak for its enrolled key; an
   * approval counts only once its signature verifies over OUR hash under that key and the key is a signer of a
   * needed account (js-stellar-base addSignature verifies first). Anything else is recorded
   * as misbehaviour and as an invalid decision (so reachability accounts for it), never stored as a signature.
   */
  onDecision(nodeId: string, stellarKey: string, d: Body<'decision'>): boolean {
    const live = this.#live.get(d.proposalId);
    if (!live) {
      this.#lateDecision(nodeId, stellarKey, d);
      return false;
    }
    const now = Date.now();
    const sent = live.sentAt.get(nodeId);
    if (sent !== undefined) {
      this.o.metrics.nodeLatency.observe({ node: nodeId }, (now - sent) / 1000);
      live.sentAt.delete(nodeId);
    }
    this.o.metrics.nodeDecisions.inc({ node: nodeId, outcome: isUnavailable(d) ? 'unavailable' : d.outcome });
    const invalid = (kind: string, detail: string): false => {
      this.#misbehaved(nodeId, kind, detail, live.rec.id);
      this.o.store.recordDecision({
        proposalId: live.rec.id,
        nodeId,
        outcome: 'invalid',
        reasons: [{ code: kind, message: detail }],
        createdAt: now,
      });
      this.#settleIfUnreachable(live);
      return false;
    };
    if (d.signerKey !== stellarKey)
      return invalid('wrong_signer_key', `decision names ${d.signerKey}, enrolled key is ${stellarKey}`);

    if (isUnavailable(d)) {
      // The node's KMS/HSM failed: it kept its intent (services/cosigner review.ts), so asking again signs the
      // same hash. Not a refusal: it does not count against the quorum, and the node is asked again later.
      const reasons: DecisionReasonRecord[] = d.reasons.map((r) => ({ ...r }));
      this.o.store.recordDecision({ proposalId: live.rec.id, nodeId, outcome: 'unavailable', reasons, createdAt: now });
      this.#emit(live.rec, 'node.unavailable', { nodeId, reasons });
      this.#askAgainLater(live, nodeId);
      return false;
    }
    if (d.outcome === 'reject' || d.outcome === 'hold') {
      const reasons: DecisionReasonRecord[] = d.reasons.map((r) => ({ ...r }));
      const outcome = d.outcome;
      // The decision and the node's counter in one commit; the event (its own commit) only after it.
      this.o.store.atomically(() => {
        this.o.store.recordDecision({ proposalId: live.rec.id, nodeId, outcome, reasons, createdAt: now });
        if (outcome === 'reject') this.o.store.countNode(nodeId, 'rejections');
      });
      this.#emit(live.rec, d.outcome === 'reject' ? 'node.rejected' : 'node.held', { nodeId, reasons });
      if (d.outcome === 'reject') this.#settleIfUnreachable(live);
      return false;
    }
    const checked = approvalFault(stellarKey, d, { hash: live.decoded.hash, rec: live.rec });
    if ('kind' in checked) return invalid(checked.kind, checked.detail);
    const sig = checked.signature;
    // Decision, verified signature, counter, its event and (when this signature completes the set) the quorum
    // transition with its event: one unit of the store's group commit, which shares one fsync with the other
    // decisions and proposals of this turn. Events are pushed, frames sent and the envelope submitted only after
    // that commit returned.
    this.o.store
      .grouped(() => {
        // Closed (expired, cancelled, settled) since this decision was queued: a late decision, already verified.
        if (this.#live.get(live.rec.id) !== live) return null;
        this.o.store.recordDecision({
          proposalId: live.rec.id,
          nodeId,
          outcome: 'approve',
          reasons: d.reasons.map((r) => ({ ...r })),
          createdAt: now,
        });
        if (
          this.o.store.addSignature({
            proposalId: live.rec.id,
            signerKey: stellarKey,
            nodeId,
            signature: sig.toString('base64'),
            createdAt: now,
          })
        ) {
          this.o.store.countNode(nodeId, 'approvals');
        }
        this.#emit(live.rec, 'node.approved', { nodeId, signerKey: stellarKey });
        return this.#completeInStore(live);
      })
      .then(
        (signed) => {
          if (signed) this.#afterQuorum(live, signed);
        },
        (err: unknown) => {
          // Nothing of this decision was written; the node is asked again when it reconnects or resyncs.
          this.o.logger.error({ proposalId: live.rec.id, nodeId, err: (err as Error).message }, 'decision not stored');
        },
      );
    return true;
  }

  /**
   * A decision for a proposal that is not open. Usual and harmless: the node that was not needed for the quorum
   * answers after it formed, or after a cancel. It is not stored (the proposal is closed) but checked like a live
   * one, because a node that signs the wrong hash or sends a forged signature is compromised or broken whether
   * or not its answer mattered: that is flagged as misbehaviour. A decision for an id the coordinator never sent
   * is flagged too. Soroban rounds are checked by their own module while open; once closed their decisions are
   * only logged (their digest is over auth payloads, not a transaction hash).
   */
  #lateDecision(nodeId: string, stellarKey: string, d: Body<'decision'>): void {
    const id = d.proposalId;
    let closed = this.#closedRecently.get(id);
    if (!closed) {
      const rec = this.o.store.getProposal(id);
      if (!rec) {
        this.#misbehaved(
          nodeId,
          'unknown_proposal',
          `a decision for ${id.slice(0, 64)}, which this coordinator never sent`,
        );
        return;
      }
      if (rec.kind === 'authEntries' || rec.kind === 'sorobanTx') {
        this.o.logger.debug({ nodeId, proposalId: id }, 'decision for a closed Soroban round');
        return;
      }
      closed = { hash: Buffer.from(rec.hash, 'hex'), rec };
    }
    const fault: Fault | { signature: Buffer } | undefined =
      d.signerKey !== stellarKey
        ? { kind: 'wrong_signer_key', detail: `decision names ${d.signerKey}, enrolled key is ${stellarKey}` }
        : d.outcome === 'approve'
          ? approvalFault(stellarKey, d, closed)
          : undefined;
    if (fault && 'kind' in fault) {
      this.#misbehaved(nodeId, fault.kind, `${fault.detail} (after the proposal closed)`, id);
      return;
    }
    this.o.logger.debug({ nodeId, proposalId: id, outcome: d.outcome }, 'decision for a proposal that is not open');
  }

  /** Ask `nodeId` again after a backoff, while the proposal is still pending (untrack clears the timer). */
  #askAgainLater(live: Live, nodeId: string): void {
    const prev = live.retries.get(nodeId);
    if (prev?.timer) clearTimeout(prev.timer);
    const count = (prev?.count ?? 0) + 1;
    const wait = backoffMs(count, this.o.signerRetryMs ?? 1000, this.o.signerRetryMaxMs ?? 30_000);
    const timer = setTimeout(() => {
      const entry = live.retries.get(nodeId);
      if (entry) entry.timer = undefined;
      if (this.#live.get(live.rec.id) !== live) return;
      this.o.logger.info(
        { proposalId: live.rec.id, nodeId, attempt: count + 1 },
        'asking a node again after SIGNER_UNAVAILABLE',
      );
      this.#fanOut(live, nodeId);
    }, wait);
    live.retries.set(nodeId, { count, timer });
    this.o.logger.warn(
      { proposalId: live.rec.id, nodeId, retryInMs: wait },
      'node key backend unavailable; will ask again',
    );
  }

  /** When the verified signatures cover every requirement: minimal set, assemble, store, submit if asked. */
  #tryComplete(live: Live): boolean {
    const signed = this.#completeInStore(live);
    if (signed) this.#afterQuorum(live, signed);
    return signed !== null;
  }

  /**
   * The store part of completing a proposal: choose the minimal signature set, assemble, check, move the row to
   * `signed` (compare-and-set) and append `quorum.reached`. Null when the set is not complete yet, or another
   * path already moved the proposal on.
   */
  #completeInStore(live: Live): { envelope: string; at: number } | null {
    const sigs = this.o.store.signatures(live.rec.id);
    const keys = new Set(sigs.map((s) => s.signerKey));
    if (!progress(live.rec, keys).every((p) => p.met)) return null;
    const chosen = selectMinimalSignatures(
      live.decoded,
      live.accounts,
      sigs.map((s) => ({ publicKey: s.signerKey, signature: Buffer.from(s.signature, 'base64') })),
    );
    if (chosen === null) return null;
    const envelope = assembleEnvelope(live.decoded, chosen);
    // Belt and braces: core's own verdict on what we are about to store (a bug here must never ship an envelope).
    const verdict = checkAuth(decodeEnvelope(envelope, live.rec.network), live.accounts);
    if (!verdict.ok) {
      this.o.logger.error({ proposalId: live.rec.id, verdict }, 'assembled envelope fails the signature check');
      return null;
    }
    const at = Date.now();
    if (!this.o.store.transition(live.rec.id, ['pending'], 'signed', { envelope, signedAt: at, statusReason: null }))
      return null;
    this.#emit(live.rec, 'quorum.reached', { signatures: chosen.length });
    return { envelope, at };
  }

  /** Once `signed` is durable: stop tracking, tell the other nodes, submit when asked. */
  #afterQuorum(live: Live, signed: { envelope: string; at: number }): void {
    this.#untrack(live);
    this.o.metrics.quorumTime.observe((signed.at - live.rec.createdAt) / 1000);
    this.#cancelOthers(live, 'quorum reached');
    const rec = this.o.store.getProposal(live.rec.id)!;
    if (rec.submit) void this.#submit(rec, signed.envelope, false);
    else this.o.metrics.proposalLatency.observe({ status: 'signed' }, (signed.at - rec.createdAt) / 1000);
  }

  /**
   * The best weight each requirement could still reach: verified signatures plus every enrolled node key that
   * has neither signed nor refused. Below the threshold for any requirement: the quorum is out of reach.
   */
  #settleIfUnreachable(live: Live): boolean {
    const sigs = new Set(this.o.store.signatures(live.rec.id).map((s) => s.signerKey));
    const decisions = this.o.store.decisions(live.rec.id);
    const refused = new Set(
      decisions.filter((d) => d.outcome === 'reject' || d.outcome === 'invalid').map((d) => d.nodeId),
    );
    const nodes = this.o.store.listNodes();
    const available = new Set(nodes.filter((n) => !refused.has(n.id)).map((n) => n.stellarKey));
    const short: string[] = [];
    for (const r of live.rec.requirements) {
      const weights = ed25519Weights(live.accounts.get(r.accountId)!);
      let best = 0;
      for (const [k, w] of weights) if (sigs.has(k) || available.has(k)) best += w;
      if (best < r.weight) short.push(`${r.accountId} can reach weight ${best} of ${r.weight} needed at ${r.level}`);
    }
    if (short.length === 0) return false;
    const why = decisions
      .filter((d) => d.outcome === 'reject' || d.outcome === 'invalid')
      .map((d) => `${d.nodeId}: ${d.reasons.map((x) => x.message).join('; ') || d.outcome}`);
    this.#finish(
      live,
      'rejected',
      `quorum unreachable: ${short.join('; ')}${why.length ? ` (${why.join(' | ')})` : ''}`,
    );
    return true;
  }

  #finish(live: Live, to: ProposalStatus, reason: string): boolean {
    if (!this.o.store.transition(live.rec.id, ['pending'], to, { statusReason: reason })) return false;
    this.#untrack(live);
    this.o.metrics.proposalLatency.observe({ status: to }, (Date.now() - live.rec.createdAt) / 1000);
    this.#emit(live.rec, `proposal.${to}` as EventType, { reason });
    this.#cancelOthers(live, reason.slice(0, 256));
    return true;
  }

  /** Cancel a pending proposal on a client's request. @throws COORD_NOT_FOUND, COORD_NOT_CANCELLABLE */
  cancel(id: string, reason: string): ProposalRecord {
    const rec = this.o.store.getProposal(id);
    if (!rec) throw coordinatorErrors.error('COORD_NOT_FOUND', { id });
    const live = this.#live.get(id);
    if (rec.status !== 'pending' || !live || !this.#finish(live, 'cancelled', reason)) {
      throw coordinatorErrors.error('COORD_NOT_CANCELLABLE', { id, status: rec.status });
    }
    return this.o.store.getProposal(id)!;
  }

  #cancelOthers(live: Live, reason: string): void {
    if (!this.#link) return;
    const decided = new Set(
      this.o.store
        .decisions(live.rec.id)
        .filter((d) => d.outcome !== 'hold' && d.outcome !== 'unavailable')
        .map((d) => d.nodeId),
    );
    for (const n of this.#link.connected()) {
      if (!decided.has(n.nodeId) && accountsHelpedBy(live.rec, n.stellarKey).length > 0) {
        this.#link.send(n.nodeId, 'cancel', { proposalId: live.rec.id, reason });
      }
    }
  }

  #untrack(live: Live): void {
    if (live.expiry) clearTimeout(live.expiry);
    for (const r of live.retries.values()) if (r.timer) clearTimeout(r.timer);
    this.#live.delete(live.rec.id);
    this.#closedRecently.set(live.rec.id, {
      hash: live.decoded.hash,
      rec: { hash: live.rec.hash, accounts: live.rec.accounts },
    });
    if (this.#closedRecently.size > CLOSED_REMEMBERED) {
      this.#closedRecently.delete(this.#closedRecently.keys().next().value as string);
    }
  }

  /**
   * Submit the stored envelope, the same bytes every time. Before a retry (and after a restart) ask the
   * network whether the hash already applied, so a lost response never turns into a second submission that
   * fails with bad-seq (and resending the same bytes is harmless anyway: same hash, one sequence slot).
   * A refusal with result codes is final. Transient failures (transport errors, 5xx, Horizon's 504) back off
   * exponentially with jitter, capped at `submitMaxBackoffMs`: for as long as the envelope can still apply,
   * i.e. until its upper time bound (maxTime) passes, so a ledger outage shorter than that loses nothing.
   * Then the hash is looked up once more: found -> submitted; missing -> `submission_expired` (it can never
   * apply now); the ledger still unreachable -> `submission_unavailable` (fate unknown). An envelope without a
   * time bound is tried `submitAttempts` times.
   */
  async #submit(rec: ProposalRecord, envelope: string, resumed: boolean): Promise<void> {
    if (this.#submitting.has(rec.id)) return;
    this.#submitting.add(rec.id);
    try {
      // A ledger whose close time is maxTime still takes it (closeTime <= maxTime): the bound ends a second later.
      const deadline = rec.maxTime > 0 ? (rec.maxTime + 1) * 1000 : undefined;
      const maxBackoff = this.o.submitMaxBackoffMs ?? 30_000;
      const more = (attempt: number): boolean =>
        deadline === undefined ? attempt <= this.o.submitAttempts : attempt === 1 || Date.now() <= deadline;
      let lastTransient = '';
      let tried = 0;
      for (let attempt = 1; more(attempt) && !this.#closed; attempt++) {
        if (attempt > 1 || resumed) {
          const fate = this.#fate(rec, await this.o.ledger.transactionStatus(rec.hash), attempt);
          if (fate) return fate();
        }
        tried = attempt;
        const r = await this.o.ledger.submit(envelope, rec.network);
        if (r.kind === 'accepted') {
          return this.#submitted(rec, {
            outcome: 'accepted',
            code: null,
            message: 'accepted by the network',
            operationCodes: [],
            ledger: r.ledger,
            attempts: attempt,
          });
        }
        if (r.kind === 'rejected') {
          if (r.code === 'tx_bad_auth' || r.operationCodes.includes('op_bad_auth')) {
            this.o.invalidateAccounts(rec.accounts.map((a) => a.accountId));
          }
          return this.#failed(rec, {
            outcome: 'failed',
            code: r.code,
            message: explainResultCode(r.code, r.operationCodes),
            operationCodes: r.operationCodes,
            ledger: null,
            attempts: attempt,
          });
        }
        lastTransient = r.message;
        this.o.logger.warn(
          { proposalId: rec.id, attempt, why: r.message },
          'submission failed transiently; will retry',
        );
        if (!more(attempt + 1)) break;
        let pause = backoffMs(attempt, this.o.submitBackoffMs, maxBackoff);
        // Wake once just past the time bound rather than sleep through it: the verdict is due then.
        if (deadline !== undefined) pause = Math.max(0, Math.min(pause, deadline + 1 - Date.now()));
        await this.#sleep(pause);
      }
      if (this.#closed) return;
      if (deadline !== undefined) {
        // Past maxTime no ledger can take it (stellar-core TransactionFrame::isTooLate); one that closed just
        // before may have, while we could not hear about it: let it close and be ingested, then ask once more.
        await this.#sleep(this.o.ledgerSettleMs ?? 6000);
        if (this.#closed) return;
        const status = await this.o.ledger.transactionStatus(rec.hash);
        const found = this.#fate(rec, status, tried);
        if (found) return found();
        if (status === 'missing') {
          return this.#failed(rec, {
            outcome: 'failed',
            code: 'submission_expired',
            message: `the network could not take the transaction before its time bound passed (${new Date(deadline).toISOString()}; last error: ${lastTransient}); it is not on the ledger and can no longer apply`,
            operationCodes: [],
            ledger: null,
            attempts: tried,
          });
        }
        return this.#failed(rec, {
          outcome: 'failed',
          code: 'submission_unavailable',
          message: `the network could not be reached until the time bound passed (${new Date(deadline).toISOString()}; ${lastTransient}); the transaction can no longer apply, but whether it applied before cannot be known until the network answers for its hash`,
          operationCodes: [],
          ledger: null,
          attempts: tried,
        });
      }
      return this.#failed(rec, {
        outcome: 'failed',
        code: 'submission_unavailable',
        message: `the network could not be reached after ${tried} attempts (${lastTransient}); the envelope is stored, its fate is unknown until its hash appears`,
        operationCodes: [],
        ledger: null,
        attempts: tried,
      });
    } finally {
      this.#submitting.delete(rec.id);
    }
  }

  /** The transaction's fate by hash, as the step that ends the submission; undefined when not on the ledger. */
  #fate(
    rec: ProposalRecord,
    fate: Awaited<ReturnType<LedgerClient['transactionStatus']>>,
    attempt: number,
  ): (() => void) | undefined {
    if (fate === 'success')
      return () =>
        this.#submitted(rec, {
          outcome: 'accepted',
          code: null,
          message: 'found on the ledger',
          operationCodes: [],
          ledger: null,
          attempts: attempt,
        });
    if (fate === 'failed')
      // Applied but failed: the fee was charged and the sequence consumed; resending could only get tx_bad_seq.
      return () =>
        this.#failed(rec, {
          outcome: 'failed',
          code: 'tx_failed',
          message: 'found on the ledger as failed (tx_failed): the sequence number was used',
          operationCodes: [],
          ledger: null,
          attempts: attempt,
        });
    return undefined;
  }

  /** A backoff pause that close() cuts short, so no submission loop outlives the app. */
  #sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        this.#wakers.delete(res);
        res();
      }, ms);
      this.#timers.add(t);
      this.#wakers.add(res);
    });
  }

  #submitted(rec: ProposalRecord, result: SubmissionResult): void {
    if (!this.o.store.transition(rec.id, ['signed'], 'submitted', { result, statusReason: null })) return;
    this.o.metrics.submissions.inc({ outcome: 'accepted' });
    this.o.metrics.proposalLatency.observe({ status: 'submitted' }, (Date.now() - rec.createdAt) / 1000);
    this.#emit(rec, 'proposal.submitted', { ledger: result.ledger, attempts: result.attempts });
  }

  #failed(rec: ProposalRecord, result: SubmissionResult): void {
    if (!this.o.store.transition(rec.id, ['signed'], 'failed', { result, statusReason: result.message })) return;
    this.o.metrics.submissions.inc({ outcome: result.code ?? 'failed' });
    this.o.metrics.proposalLatency.observe({ status: 'failed' }, (Date.now() - rec.createdAt) / 1000);
    this.#emit(rec, 'proposal.failed', { code: result.code, reason: result.message });
  }

  #emit(rec: ProposalRecord | null, type: EventType, data: Record<string, unknown>): void {
    this.o.events.emit(rec?.id ?? null, type, data, rec?.callbackUrl ?? null);
  }

  close(): void {
    this.#closed = true;
    for (const live of this.#live.values()) {
      if (live.expiry) clearTimeout(live.expiry);
      for (const r of live.retries.values()) if (r.timer) clearTimeout(r.timer);
    }
    for (const t of this.#timers) clearTimeout(t);
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
    this.#live.clear();
  }
}

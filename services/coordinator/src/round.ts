import type { Body } from '@cosigner/protocol/messages';
import type { Logger } from '@cosigner/runtime/logger';
import type { MisbehaviourKind } from './codes.ts';
import { type CoordinatorErrorCode, coordinatorErrors } from './errors.ts';
import type { EventBus, EventType } from './events.ts';
import type { ConnectedNode } from './hub.ts';
import type { Completion, Fault, Round, RoundControl, RoundKind } from './kinds/kind.ts';
import type { Metrics } from './metrics.ts';
import type { RoundLease, RoundLeases } from './pg/replicas.ts';
import { accountsHelpedBy, atTimeBound, backoffMs, isUnavailable, unreachable } from './quorum.ts';
import {
  type Awaitable,
  type CoordinatorStore,
  type DecisionReasonRecord,
  type EventRecord,
  type ProposalKind,
  type ProposalRecord,
  step,
} from './store.ts';

/**
 * The one signing round (docs/architecture.md "A proposal's life", steps 2 and 5, and "Kinds of round"): fan a
 * proposal out in parallel to every connected node whose Stellar key can add weight, verify every answer BEFORE
 * keeping it, and once the answers complete the round let its kind assemble the result, store it and act on it.
 * The round never waits for slow nodes once the quorum is met, and a proposal whose quorum can no longer be
 * reached ends `rejected` with every node's reasons. What differs between a classic transaction, a Soroban
 * transaction and standalone authorization entries lives in one module per kind (src/kinds/).
 *
 * All state transitions are compare-and-set in the store, so a restart (or a duplicate decision) can never
 * move a proposal twice, and the stored result is the only one ever used for a proposal.
 */

export interface NodeLink {
  connected(): ConnectedNode[];
  send(nodeId: string, type: 'proposal', body: Body<'proposal'>): boolean;
  send(nodeId: string, type: 'cancel', body: Body<'cancel'>): boolean;
}

export interface RoundOptions {
  store: CoordinatorStore;
  events: EventBus;
  metrics: Metrics;
  logger: Logger;
  /** First pause before asking again a node whose key backend was unavailable; doubles up to the max. */
  signerRetryMs?: number;
  signerRetryMaxMs?: number;
  /**
   * Several replicas on one database: a round is driven only under its lease, every write for it fenced by the
   * lease, and `resume` takes over the rounds whose lease lapsed (docs/architecture.md "Coordinator replicas on PostgreSQL").
   */
  leases?: RoundLeases;
}

interface Live<S = unknown> extends Round<S> {
  kind: RoundKind<S>;
  /** When the proposal was sent to each node, for per-node latency. */
  sentAt: Map<string, number>;
  expiry?: NodeJS.Timeout;
  /** Nodes whose key backend was unavailable: how often in a row, and the timer that asks them again. */
  retries: Map<string, { count: number; timer?: NodeJS.Timeout }>;
  /** The round's lease when replicas share the database: held while this replica drives the round. */
  lease?: RoundLease;
  /**
   * Set by the approval unit that moved the round to `signed` inside a synchronous batch (SQLite's group commit:
   * every unit of the batch shares its transaction and its fate), until that commit's outcome is known. A later
   * unit of the same batch keeps its approval and skips the assembly, whose compare-and-set would fail anyway.
   */
  signedInBatch?: boolean;
}

/** A round completed: signed at `at` with its envelope, or to end as its kind said. */
type Done = { at: number; envelope: string | null } | Extract<Completion, { end: string }>;

/** How many closed proposals the engine remembers for checking late decisions without a store read. */
const CLOSED_REMEMBERED = 4096;

export class RoundEngine {
  readonly #kinds = new Map<ProposalKind, RoundKind>();
  readonly #live = new Map<string, Live>();
  /**
   * Proposals closed lately (quorum, refusal, expiry, cancel) with what their kind needs to check an answer, so a
   * decision arriving after the close is still checked (a bad signature from a node is misbehaviour whether or
   * not the quorum already formed). Bounded; older ids fall back to one store read.
   */
  readonly #closedRecently = new Map<string, { kind: RoundKind; target: unknown }>();
  readonly #sweeps = new Map<RoundKind, NodeJS.Timeout>();
  #link: NodeLink | undefined;
  readonly #control: RoundControl = {
    start: (rec, prepared) => this.start(rec, false, prepared),
    emit: (rec, type, data) => void this.#quiet(this.#emit(rec, type, data), rec.id),
  };

  constructor(private readonly o: RoundOptions) {}

  /** Run the stored kinds `kind.kinds` with this module. */
  register<S, L>(kind: RoundKind<S, L>): this {
    for (const k of kind.kinds) this.#kinds.set(k, kind as unknown as RoundKind);
    return this;
  }

  attach(link: NodeLink): void {
    this.#link = link;
  }

  #kindOf(rec: ProposalRecord): RoundKind {
    const kind = this.#kinds.get(rec.kind);
    if (!kind) throw new Error(`no round module is registered for proposals of kind ${rec.kind}`);
    return kind;
  }

  /** Append `proposal.created`: in the proposal's own unit of work (app.ts), so both share one commit. */
  announce(rec: ProposalRecord): Awaitable<unknown> {
    return step(this.#kindOf(rec).announce?.(rec) ?? {}, (extra) =>
      this.#emit(rec, 'proposal.created', { hash: rec.hash, requirements: rec.requirements, ...extra }),
    );
  }

  /**
   * A new proposal was committed: announce it (unless `announce` already did), fan it out, arm its expiry.
   * `prepared`: what the proposal route decoded from these very bytes, so they are not decoded a second time.
   * Throws at once for a kind no module runs; resolves once the proposal was sent out (never rejects: a store
   * failure on the way is logged, and the round is asked again on the node's next sync).
   */
  start(rec: ProposalRecord, announced = false, prepared?: unknown): Promise<void> {
    const tracked = this.#track(rec, prepared);
    return this.#quiet(
      step(tracked, (live) => (live ? this.#begin(live, announced) : undefined)),
      rec.id,
    );
  }

  async #begin(live: Live, announced: boolean): Promise<void> {
    if (!announced) await this.announce(live.rec);
    this.o.metrics.proposalsCreated.inc({ kind: live.rec.kind });
    if (await this.#settleIfUnreachable(live)) return;
    // Nobody has decided on a proposal created just now: no need to read its decisions back.
    await this.#fanOut(live, undefined, true);
  }

  /**
   * After a restart: every open proposal resumes where it stopped (answers kept, submission continued). With
   * replicas, the open proposals no replica drives (never leased, or the lease lapsed: its replica died) are taken
   * over; called again periodically, it is how a replica takes over a dead one's rounds. Returns how many it took.
   */
  async resume(): Promise<number> {
    const leases = this.o.leases;
    const open = leases ? await this.#orphans(leases) : await this.o.store.openProposals();
    let taken = 0;
    for (const rec of open) {
      try {
        if (await this.#resumeOne(rec)) taken++;
      } catch (err) {
        // One replica among several: a round that fails here is tried again at the next scan. One process whose
        // store fails at start cannot run; but one proposal that cannot be resumed (its stored transaction no
        // longer decodes, or its kind is unknown to this version) must not keep the others, and the service,
        // down: it stays as stored, untouched, for the operator (it can still be read and cancelled).
        const e = err as Error & { code?: string };
        if (!leases && (coordinatorErrors.is(err, 'COORD_STORE_UNAVAILABLE') || e.code?.startsWith('SQLITE_')))
          throw err;
        this.o.logger.error(
          { proposalId: rec.id, code: e.code, err: e.message },
          leases ? 'taking a round over failed' : 'open proposal could not be resumed; left as stored',
        );
      }
    }
    return taken;
  }

  async #orphans(leases: RoundLeases): Promise<ProposalRecord[]> {
    const out: ProposalRecord[] = [];
    for (const id of await leases.candidates(256)) {
      if (this.#live.has(id)) continue;
      const rec = await this.o.store.getProposal(id);
      if (rec && (rec.status === 'pending' || (rec.status === 'signed' && rec.submit && rec.result === null))) {
        out.push(rec);
      }
    }
    return out;
  }

  async #resumeOne(rec: ProposalRecord): Promise<boolean> {
    if (rec.status === 'signed') {
      if (rec.followUpDue) return this.#resumeFollowUp(rec);
      // The submitter takes the lease itself and asks the network for the hash before anything else.
      await this.#kindOf(rec).resumeSigned?.(rec, this.#control);
      return true;
    }
    const live = await this.#track(rec);
    if (!live) return false;
    if (this.o.leases) this.o.logger.info({ proposalId: rec.id }, 'round taken over');
    // Answers stored before the crash may already complete the round; the nodes that have not answered are asked
    // again (a node answers the same transaction with the same signature).
    if (await this.#tryComplete(live)) return true;
    if (await this.#settleIfUnreachable(live)) return true;
    await this.#fanOut(live);
    return true;
  }

  /**
   * A signed row whose follow-up proposal was never opened (its coordinator died in between): open it now, under
   * the row's lease with replicas so one replica does it (its idempotency key makes a second attempt harmless).
   */
  async #resumeFollowUp(rec: ProposalRecord): Promise<boolean> {
    const lease = this.o.leases ? await this.o.leases.acquire(rec.id) : undefined;
    if (lease === null) return false;
    try {
      this.o.logger.info({ proposalId: rec.id }, 'opening the follow-up of a signed round');
      await this.#kindOf(rec).resumeSigned?.(rec, this.#control);
    } finally {
      await lease?.release();
    }
    return true;
  }

  /**
   * An event from the store's stream (every replica's). A round this replica drives that another replica ended (a
   * client's cancel sent there) stops here too.
   */
  observe(e: EventRecord): void {
    if (e.proposalId === null || !TERMINAL_EVENTS.has(e.type)) return;
    const live = this.#live.get(e.proposalId);
    if (!live) return;
    this.#untrack(live);
    void this.#quiet(this.#cancelOthers(live, String(e.data.reason ?? e.type).slice(0, 256)), live.rec.id);
  }

  /** Run `fn` (writes for the round) fenced by its lease, or as is without replicas. */
  #write<T>(live: Live, fn: () => Awaitable<T>): Awaitable<T> {
    return live.lease ? live.lease.write(fn) : fn();
  }

  /** Wait for `p`, logging a failure instead of rejecting (a round step started from a timer or a frame). */
  async #quiet(p: Awaitable<unknown>, proposalId?: string): Promise<void> {
    try {
      await p;
    } catch (err) {
      this.o.logger.error({ proposalId, err: (err as Error).message }, 'round step failed');
    }
  }

  /**
   * Start driving a round. Throws at once for a kind no module runs, and when a synchronous `open` throws. With
   * replicas, null when another replica holds the round's lease (it drives the round).
   */
  #track(rec: ProposalRecord, prepared?: unknown): Awaitable<Live | null> {
    const kind = this.#kindOf(rec);
    const leases = this.o.leases;
    if (!leases) return step(kind.open(rec, prepared), (state) => this.#tracked(rec, kind, state));
    return leases.acquire(rec.id).then(async (lease) => {
      if (!lease) return null;
      const known = this.#live.get(rec.id);
      if (known) return known;
      try {
        return this.#tracked(rec, kind, await kind.open(rec, prepared), lease);
      } catch (err) {
        await lease.release();
        throw err;
      }
    });
  }

  #tracked(rec: ProposalRecord, kind: RoundKind, state: unknown, lease?: RoundLease): Live {
    const live: Live = {
      rec,
      kind,
      state,
      accounts: new Map(rec.accounts.map((a) => [a.accountId, a])),
      sentAt: new Map(),
      retries: new Map(),
      lease,
    };
    this.#live.set(rec.id, live);
    if (rec.maxTime > 0) this.#armExpiry(live);
    if (kind.sweep) this.#armSweep(kind);
    lease?.signal.addEventListener('abort', () => this.#leaseLost(live), { once: true });
    return live;
  }

  /** This replica may no longer act for the round: stop here, without a write (another replica drives it). */
  #leaseLost(live: Live): void {
    if (this.#live.get(live.rec.id) !== live) return;
    this.#stopTimers(live);
    this.#live.delete(live.rec.id);
    this.o.logger.warn({ proposalId: live.rec.id }, 'round lease lost: this replica stops driving the round');
  }

  #armExpiry(live: Live): void {
    atTimeBound(
      live.rec.maxTime,
      (t) => {
        live.expiry = t;
      },
      () =>
        void this.#quiet(
          this.#finish(
            live,
            'expired',
            `the transaction's upper time bound (${live.rec.maxTime}) passed before a quorum signed`,
            'COORD_TIME_BOUND_PASSED',
          ),
          live.rec.id,
        ),
    );
  }

  /**
   * While rounds of a kind with a sweep are open, run its check every `everyMs` (the auth kinds end rounds whose
   * entries expired by ledger). A check that fails ends nothing.
   */
  #armSweep(kind: RoundKind): void {
    const sweep = kind.sweep;
    if (!sweep || this.#sweeps.has(kind)) return;
    const t = setTimeout(() => {
      this.#sweeps.delete(kind);
      const rounds = [...this.#live.values()].filter((l) => l.kind === kind);
      if (rounds.length === 0) return;
      void sweep
        .check(rounds)
        .then(
          async (ends) => {
            for (const e of ends) {
              const live = e.round as Live;
              if ('ask' in e) {
                if (this.#live.get(live.rec.id) === live && e.ask.length > 0) {
                  await this.#quiet(this.#fanOut(live, new Set(e.ask)), live.rec.id);
                }
              } else await this.#quiet(this.#finish(live, e.end, e.reason, e.code), live.rec.id);
            }
          },
          (err: unknown) => this.o.logger.warn({ err: (err as Error).message }, 'round sweep failed'),
        )
        .finally(() => {
          if ([...this.#live.values()].some((l) => l.kind === kind)) this.#armSweep(kind);
        });
    }, sweep.everyMs);
    t.unref();
    this.#sweeps.set(kind, t);
  }

  /** The nodes that gave an answer that stands (not a hold, not "unavailable"): they are not asked again. */
  async #answered(id: string): Promise<Set<string>> {
    return new Set(
      (await this.o.store.decisions(id))
        .filter((d) => d.outcome !== 'hold' && d.outcome !== 'unavailable')
        .map((d) => d.nodeId),
    );
  }

  async #fanOut(live: Live, only?: string | ReadonlySet<string>, fresh = false): Promise<void> {
    if (!this.#link || live.lease?.signal.aborted) return;
    const named = typeof only === 'string' ? new Set([only]) : only;
    const decided = fresh || named ? new Set<string>() : await this.#answered(live.rec.id);
    for (const n of this.#link.connected()) {
      if (named !== undefined && !named.has(n.nodeId)) continue;
      if (decided.has(n.nodeId)) continue;
      const accounts = this.#helps(live, n);
      if (accounts.length === 0) continue;
      const body = live.kind.request(live, n, accounts);
      if (body && this.#link.send(n.nodeId, 'proposal', body)) live.sentAt.set(n.nodeId, Date.now());
    }
  }

  /** The accounts of the round `n` can help with: its kind's say, or its enrolled key's signer weights. */
  #helps(live: Live, n: { nodeId: string; stellarKey: string }): string[] {
    return live.kind.helps ? live.kind.helps(live, n) : accountsHelpedBy(live.rec, n.stellarKey);
  }

  /** A node (re)connected and asked for open proposals: send every pending one it can help with. */
  sync(nodeId: string): void {
    // Named: no store read, so the frames leave in this very turn.
    for (const live of this.#live.values()) void this.#quiet(this.#fanOut(live, nodeId), live.rec.id);
  }

  async #misbehaved(nodeId: string, kind: MisbehaviourKind, detail: string, proposalId?: string): Promise<void> {
    this.o.metrics.nodeMisbehaviour.inc({ node: nodeId, kind });
    this.o.logger.warn({ nodeId, kind, detail, proposalId }, 'node misbehaved');
    await this.o.store.recordMisbehaviour({
      nodeId,
      proposalId: proposalId ?? null,
      kind,
      detail,
      createdAt: Date.now(),
    });
    const live = proposalId === undefined ? undefined : this.#live.get(proposalId);
    await this.#emit(live?.rec ?? null, 'node.misbehaved', { nodeId, kind, detail });
  }

  /** Called by the hub for frames that fail below the decision level. */
  onMisbehaviour(nodeId: string, kind: MisbehaviourKind, detail: string, proposalId?: string): void {
    void this.#quiet(this.#misbehaved(nodeId, kind, detail, proposalId), proposalId);
  }

  /**
   * A node's decision. Order: the proposal must be open; the node may only speak for its enrolled key; an
   * approval counts only once its kind verified it against what the coordinator computed, under that key
   * (js-stellar-base addSignature verifies first). Anything else is recorded as misbehaviour and as an invalid
   * decision (so reachability accounts for it), never kept.
   */
  onDecision(nodeId: string, stellarKey: string, d: Body<'decision'>): boolean {
    const live = this.#live.get(d.proposalId);
    if (!live) {
      void this.#quiet(this.#lateDecision(nodeId, stellarKey, d), d.proposalId);
      return false;
    }
    const now = Date.now();
    const sent = live.sentAt.get(nodeId);
    if (sent !== undefined) {
      this.o.metrics.nodeLatency.observe({ node: nodeId }, (now - sent) / 1000);
      live.sentAt.delete(nodeId);
    }
    this.o.metrics.nodeDecisions.inc({ node: nodeId, outcome: isUnavailable(d) ? 'unavailable' : d.outcome });
    const invalid = (f: Fault): false => {
      const record = async () => {
        await this.#misbehaved(nodeId, f.kind, f.detail, live.rec.id);
        await this.#write(live, () =>
          this.o.store.recordDecision({
            proposalId: live.rec.id,
            nodeId,
            outcome: 'invalid',
            reasons: [{ code: f.kind, message: f.detail }],
            createdAt: now,
          }),
        );
        await this.#afterRefusal(live, nodeId, undefined);
      };
      void this.#quiet(record(), live.rec.id);
      return false;
    };
    if (d.signerKey !== stellarKey) return invalid(wrongKey(d, stellarKey));
    const reasons: DecisionReasonRecord[] = d.reasons.map((r) => ({ ...r }));
    if (isUnavailable(d)) {
      // The node's KMS/HSM failed: it kept its intent (same hash, same nonce), so asking again signs the same
      // thing. Not a refusal: it does not count against the quorum, and the node is asked again later.
      const record = async () => {
        await this.#write(live, async () => {
          await this.o.store.recordRefusal({
            proposalId: live.rec.id,
            nodeId,
            outcome: 'unavailable',
            reasons,
            createdAt: now,
          });
          await this.#emit(live.rec, 'node.unavailable', { nodeId, reasons });
        });
        this.#askAgainLater(live, nodeId);
      };
      void this.#quiet(record(), live.rec.id);
      return false;
    }
    if (d.outcome === 'reject' || d.outcome === 'hold') {
      const outcome = d.outcome;
      // The decision and the node's counter in one commit; the event (its own commit) only after it.
      const record = async () => {
        await this.#write(live, async () => {
          await this.o.store.recordRefusal({ proposalId: live.rec.id, nodeId, outcome, reasons, createdAt: now });
          await this.#emit(live.rec, outcome === 'reject' ? 'node.rejected' : 'node.held', { nodeId, reasons });
        });
        if (outcome === 'reject' || live.kind.refused) await this.#afterRefusal(live, nodeId, d);
      };
      void this.#quiet(record(), live.rec.id);
      return false;
    }
    const checked = live.kind.verify(live, nodeId, stellarKey, d, now);
    if ('kind' in checked) return invalid(checked);
    const decision = { proposalId: live.rec.id, nodeId, outcome: 'approve' as const, reasons, createdAt: now };
    // Decision, verified rows, counter, its event and (when this answer completes the round) the `signed`
    // transition with its event: one unit of the store's group commit, which shares one fsync with the other
    // decisions and proposals of this turn. Events are pushed, frames sent and the result acted on only after
    // that commit returned.
    // On SQLite every call below returns a value and the unit runs synchronously inside the turn's group commit
    // (`step` continues without a turn of the event loop); on PostgreSQL it is one transaction.
    // With replicas it is a transaction fenced by the round's lease instead.
    const unit = () => {
      // Closed (expired, cancelled, settled) since this decision was queued: a late decision, already verified.
      if (this.#live.get(live.rec.id) !== live) return null;
      return step(this.o.store.recordApproval(decision, checked.rows), () =>
        step(this.#emit(live.rec, 'node.approved', { nodeId, signerKey: stellarKey, ...checked.event }), () => {
          // An earlier unit of this batch completed the round: its `signed` transition is in this transaction.
          // Assembling again (a store read, the minimal set, the envelope, its decode and checkAuth) would end in
          // a compare-and-set that fails; the approval above is kept all the same.
          if (live.signedInBatch) return null;
          const done = this.#completeInStore(live);
          if (done !== null && !(done instanceof Promise) && !('end' in done)) live.signedInBatch = true;
          return done;
        }),
      );
    };
    const commit = () => (live.lease ? live.lease.write(unit) : this.o.store.grouped(unit));
    const before = live.kind.beforeApproval?.(live);
    (before ? before.then(commit, commit) : commit()).then(
      async (done) => {
        if (done) await this.#quiet(this.#afterComplete(live, done), live.rec.id);
        else if (this.#live.get(live.rec.id) === live) await this.#quiet(this.#askNext(live), live.rec.id);
      },
      (err: unknown) => {
        // Nothing of this decision was written (a failed commit undoes every unit of its batch, the `signed`
        // transition included): the round is pending again, and the node is asked again when it resyncs.
        live.signedInBatch = false;
        this.o.logger.error({ proposalId: live.rec.id, nodeId, err: (err as Error).message }, 'decision not stored');
      },
    );
    return true;
  }

  /**
   * After a refusal or an answer that could not count: the kind hears of it (a kind that picks its nodes may pick
   * others), the round ends if it can no longer complete, and otherwise whoever the kind names next is asked.
   */
  async #afterRefusal(live: Live, nodeId: string, d: Body<'decision'> | undefined): Promise<void> {
    live.kind.refused?.(live, nodeId, d);
    if (await this.#settleIfUnreachable(live)) return;
    if (live.kind.refused) await this.#askNext(live);
  }

  /** A kind with more than one exchange per round names who to ask next once an answer was kept. */
  async #askNext(live: Live): Promise<void> {
    const next = live.kind.next?.(live);
    if (next && next.length > 0) await this.#fanOut(live, new Set(next));
  }

  /**
   * A decision for a proposal that is not open. Usual and harmless: the node that was not needed for the quorum
   * answers after it formed, or after a cancel. It is not stored (the proposal is closed) but checked like a live
   * one where its kind can, because a node that signs the wrong hash or sends a forged signature is compromised
   * or broken whether or not its answer mattered: that is flagged as misbehaviour. A decision for an id the
   * coordinator never sent is flagged too.
   */
  async #lateDecision(nodeId: string, stellarKey: string, d: Body<'decision'>): Promise<void> {
    const id = d.proposalId;
    let closed = this.#closedRecently.get(id);
    if (!closed) {
      const rec = await this.o.store.getProposal(id);
      if (!rec) {
        await this.#misbehaved(
          nodeId,
          'unknown_proposal',
          `a decision for ${id.slice(0, 64)}, which this coordinator never sent`,
        );
        return;
      }
      const kind = this.#kindOf(rec);
      closed = { kind, target: kind.lateTargetOf?.(rec) };
    }
    const { kind, target } = closed;
    if (!kind.verifyLate || target === undefined) {
      this.o.logger.debug({ nodeId, proposalId: id }, 'decision for a closed round whose answers are not checked late');
      return;
    }
    const fault =
      d.signerKey !== stellarKey
        ? wrongKey(d, stellarKey)
        : d.outcome === 'approve'
          ? kind.verifyLate(target, stellarKey, d)
          : null;
    if (fault) {
      await this.#misbehaved(nodeId, fault.kind, `${fault.detail} (after the proposal closed)`, id);
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
      void this.#quiet(this.#fanOut(live, nodeId), live.rec.id);
    }, wait);
    live.retries.set(nodeId, { count, timer });
    this.o.logger.warn(
      { proposalId: live.rec.id, nodeId, retryInMs: wait },
      'node key backend unavailable; will ask again',
    );
  }

  /** When the answers complete the round: assemble, store, act on it. */
  async #tryComplete(live: Live): Promise<boolean> {
    const done = await this.#write(live, () => this.#completeInStore(live));
    if (done) await this.#afterComplete(live, done);
    return done !== null;
  }

  /**
   * The store part of completing a round: the kind assembles, the row moves to `signed` (compare-and-set) with
   * `quorum.reached`; or the kind says the result can no longer be used and the round must end. Null when the
   * round is not complete yet, or another path already moved the proposal on.
   */
  #completeInStore(live: Live): Awaitable<Done | null> {
    const failed = (err: unknown): null => {
      // A bug in assembly must not take the decision path down or lose the answer: the round stays pending.
      this.o.logger.error({ err, proposalId: live.rec.id }, 'round completion failed');
      return null;
    };
    let completion: Awaitable<Completion | null>;
    try {
      completion = live.kind.complete(live);
    } catch (err) {
      return failed(err);
    }
    if (completion instanceof Promise) completion = completion.catch(failed);
    return step(completion, (c): Awaitable<Done | null> => {
      if (c === null) return null;
      // Ending is a transition of its own, after the commit of the answer that found it.
      if ('end' in c) return c;
      const at = Date.now();
      const patch = {
        envelope: c.envelope ?? undefined,
        signedEntries: c.signedEntries,
        followUpDue: c.followUp,
        signedAt: at,
        statusReason: null,
      };
      return step(this.o.store.transition(live.rec.id, ['pending'], 'signed', patch), (moved) =>
        moved ? step(this.#emit(live.rec, 'quorum.reached', c.event), () => ({ at, envelope: c.envelope })) : null,
      );
    });
  }

  /** Once `signed` is durable: stop tracking, tell the other nodes, let the kind act on the result. */
  async #afterComplete(live: Live, done: Done): Promise<void> {
    if ('end' in done) {
      await this.#finish(live, done.end, done.reason, done.code);
      return;
    }
    // A submission keeps the round's lease (the submitter holds it until the network answered).
    this.#untrack(live, true);
    this.o.metrics.quorumTime.observe((done.at - live.rec.createdAt) / 1000);
    await this.#cancelOthers(live, 'quorum reached');
    if (!(await live.kind.afterSigned(live, done.envelope, this.#control))) {
      this.o.metrics.proposalLatency.observe({ status: 'signed' }, (done.at - live.rec.createdAt) / 1000);
      await live.lease?.release();
    }
  }

  /** Below the threshold for any requirement, counting every node that has not refused: the round ends. */
  async #settleIfUnreachable(live: Live): Promise<boolean> {
    const [decisions, nodes] = await Promise.all([this.o.store.decisions(live.rec.id), this.o.store.listNodes()]);
    const why = live.kind.unreachable
      ? await live.kind.unreachable(live, decisions, nodes)
      : unreachable(live.rec, await live.kind.signers(live), decisions, nodes);
    if (why === null) return false;
    await this.#finish(live, 'rejected', why, 'COORD_QUORUM_UNREACHABLE');
    return true;
  }

  /** End a pending round without a result; `code` (registered in errors.ts) names why in the event. */
  async #finish(
    live: Live,
    to: 'expired' | 'rejected' | 'cancelled',
    reason: string,
    code: CoordinatorErrorCode,
  ): Promise<boolean> {
    const ended = await this.#write(live, async () => {
      if (!(await this.o.store.transition(live.rec.id, ['pending'], to, { statusReason: reason }))) return false;
      await this.#emit(live.rec, `proposal.${to}` as EventType, { reason, code });
      return true;
    });
    if (!ended) return false;
    this.#untrack(live);
    this.o.metrics.proposalLatency.observe({ status: to }, (Date.now() - live.rec.createdAt) / 1000);
    await this.#cancelOthers(live, reason.slice(0, 256));
    return true;
  }

  /** Cancel a pending proposal on a client's request. @throws COORD_NOT_FOUND, COORD_NOT_CANCELLABLE */
  async cancel(id: string, reason: string): Promise<ProposalRecord> {
    const rec = await this.o.store.getProposal(id);
    if (!rec) throw coordinatorErrors.error('COORD_NOT_FOUND', { id });
    const live = this.#live.get(id);
    const cancelled =
      rec.status === 'pending' &&
      (live
        ? await this.#finish(live, 'cancelled', reason, 'COORD_CANCELLED')
        : this.o.leases !== undefined && (await this.#cancelElsewhere(rec, reason)));
    if (!cancelled) throw coordinatorErrors.error('COORD_NOT_CANCELLABLE', { id, status: rec.status });
    return (await this.o.store.getProposal(id))!;
  }

  /**
   * A cancel for a round another replica drives: a compare-and-set on the status (pending -> cancelled) with its
   * event in one transaction. The driving replica's own transitions are compare-and-set too, so one of the two
   * wins; it learns of the cancel from the event stream (`observe`) and stops asking its nodes.
   */
  async #cancelElsewhere(rec: ProposalRecord, reason: string): Promise<boolean> {
    return this.o.store.grouped(() =>
      step(this.o.store.transition(rec.id, ['pending'], 'cancelled', { statusReason: reason }), (moved) =>
        moved ? step(this.#emit(rec, 'proposal.cancelled', { reason, code: 'COORD_CANCELLED' }), () => true) : false,
      ),
    );
  }

  async #cancelOthers(live: Live, reason: string): Promise<void> {
    if (!this.#link) return;
    const decided = await this.#answered(live.rec.id);
    for (const n of this.#link.connected()) {
      if (!decided.has(n.nodeId) && this.#helps(live, n).length > 0) {
        this.#link.send(n.nodeId, 'cancel', { proposalId: live.rec.id, reason });
      }
    }
  }

  #stopTimers(live: Live): void {
    if (live.expiry) clearTimeout(live.expiry);
    for (const r of live.retries.values()) if (r.timer) clearTimeout(r.timer);
  }

  /** Stop driving a round that ended; its lease is released unless `keepLease` (a submission follows). */
  #untrack(live: Live, keepLease = false): void {
    this.#stopTimers(live);
    this.#live.delete(live.rec.id);
    if (!keepLease && live.lease) void live.lease.release().catch(() => undefined);
    this.#closedRecently.set(live.rec.id, { kind: live.kind, target: live.kind.lateTarget?.(live) });
    if (this.#closedRecently.size > CLOSED_REMEMBERED) {
      this.#closedRecently.delete(this.#closedRecently.keys().next().value as string);
    }
  }

  #emit(rec: ProposalRecord | null, type: EventType, data: Record<string, unknown>): Awaitable<unknown> {
    return this.o.events.emit(rec?.id ?? null, type, data, rec?.callbackUrl ?? null);
  }

  close(): void {
    for (const live of this.#live.values()) this.#stopTimers(live);
    for (const t of this.#sweeps.values()) clearTimeout(t);
    this.#sweeps.clear();
    for (const kind of new Set(this.#kinds.values())) kind.close?.();
    this.#live.clear();
  }
}

/**
 * Events another replica may write for a round this one drives: a client's cancel sent there. (Every other end of a
 * round is written by its driver, under its lease.)
 */
const TERMINAL_EVENTS = new Set<string>(['proposal.cancelled']);

function wrongKey(d: Body<'decision'>, stellarKey: string): Fault {
  return { kind: 'wrong_signer_key', detail: `decision names ${d.signerKey}, enrolled key is ${stellarKey}` };
}

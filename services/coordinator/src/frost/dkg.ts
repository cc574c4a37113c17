import { randomUUID } from 'node:crypto';
import { checkGroup, type GroupPublic, groupAddress } from '@cosigner/frost/suite';
import { type DkgRosterEntry, type DkgStatementPayload, rosterDigest } from '@cosigner/protocol/frost-dkg';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import type { Logger } from '@cosigner/runtime/logger';
import { coordinatorErrors } from '../errors.ts';
import { type Awaitable, type AwaitableRepository, type FrostRepository, type NodeRepository, step } from '../store.ts';
import { StepRelay, type StepRun } from './relay-steps.ts';
import type { DkgError, DkgRecord, DkgStep } from './store.ts';

/**
 * The coordinator's part in FROST key generation (docs/architecture.md, "FROST key generation"): a relay that
 * learns nothing it could use. It announces the session to the chosen nodes (threshold, participants with the
 * identity keys they are enrolled with), then carries each step's signed statements between them:
 *
 *   start  -> every node's transport-key statement          -> round1 to every node (all of them)
 *   round1 -> every node's round-1 commitment               -> round2 to every node (the others')
 *   round2 -> every node's n-1 encrypted round-2 packages   -> round3 to every node (those addressed to it)
 *   round3 -> every node's result (group key, verifying shares, transcript): all equal, or no group
 *                                                            -> confirm to every node (all the results)
 *   confirm -> every node's acknowledgement                  -> the group is ready.
 * A node keeps its group pending until `confirm` shows it every participant's signed result equal to its own, so a
 * group that some participant could not derive is kept nowhere.
 *
 * Statements are signed by their author's identity key and verified here too, so a node that answers with
 * something that is not its own statement of that step is named at once. Round-2 packages are encrypted node to
 * node (packages/frost channel.ts): the coordinator holds public data only, which it records with the group.
 * Any refusal, timeout or disagreement aborts the session at every node and is recorded with its culprits.
 *
 * The records are in the coordinator's one store (store.ts FrostRepository), which every replica on PostgreSQL
 * shares: any replica answers for every group, and a FROST proposal sent to any replica finds its group. A session
 * is driven by the replica that started it (its statements live in that replica's memory, the nodes answer on
 * their session with it); if that replica dies, the session cannot go on. Another replica that sees it (reading it,
 * listing, at its start) after no step was sent for longer than a step may take (`staleAfterMs`) records it failed
 * with COORD_FROST_RELAY_LOST and aborts it at the nodes connected to it; the write is a compare-and-set that also
 * requires the record still stale, so it never overrides a step or an outcome its driver wrote meanwhile.
 */

/** How long one step may take across all participants (a 17-of-25 round 2 or 3 takes seconds per node). */
export const DKG_STEP_TIMEOUT_MS = 120_000;
/** How long an abort is kept for a node that missed it: a node forgets a session it confirmed after 10 minutes. */
export const ABORT_RETENTION_MS = 600_000;
/**
 * How long after its last step a running session is taken as abandoned by a replica that does not drive it: a
 * step's time-out plus a margin for clocks of replicas that differ (the record's times are each writer's clock).
 */
export const ABANDON_MARGIN_MS = 30_000;
/** Key generations relayed at once. */
export const MAX_RUNNING = 2;

type Reply = Body<'frost-dkg-reply'>;

export interface HubLike {
  send<T extends MessageType>(nodeId: string, type: T, body: Body<T>): boolean;
  connected(): { nodeId: string }[];
}

interface Run extends StepRun<DkgStep> {
  rec: DkgRecord;
  /** The session's store writes, in order (a step's record never lands after the outcome). */
  writes: Promise<unknown>;
  /** The agreed group, once every round-3 result matched. */
  result?: { address: string; group: GroupPublic; transcript: string };
}

const KIND: Record<DkgStep, DkgStatementPayload['kind']> = {
  start: 'transport-key',
  round1: 'round1',
  round2: 'round2',
  round3: 'result',
  confirm: 'confirmed',
};

const NEXT = { start: 'round1', round1: 'round2', round2: 'round3' } as const;

export class FrostDkgRelay {
  readonly #store: AwaitableRepository<FrostRepository>;
  readonly #nodes: AwaitableRepository<NodeRepository>;
  readonly #logger: Logger;
  readonly #stepTimeoutMs: number;
  readonly #runs = new Map<string, Run>();
  readonly #steps: StepRelay<DkgStep, Run, Partial<Body<'frost-dkg'>>>;
  #hub: HubLike | undefined;

  readonly #staleAfterMs: number;

  /** Use `open`, which also settles the sessions left running. */
  constructor(o: {
    store: AwaitableRepository<FrostRepository>;
    nodes: AwaitableRepository<NodeRepository>;
    logger: Logger;
    stepTimeoutMs?: number;
    /** How long after its last step a session this replica does not drive is abandoned (default: see above). */
    abandonAfterMs?: number;
  }) {
    this.#store = o.store;
    this.#nodes = o.nodes;
    this.#logger = o.logger;
    this.#stepTimeoutMs = o.stepTimeoutMs ?? DKG_STEP_TIMEOUT_MS;
    this.#staleAfterMs = o.abandonAfterMs ?? this.#stepTimeoutMs + ABANDON_MARGIN_MS;
    this.#steps = new StepRelay<DkgStep, Run, Partial<Body<'frost-dkg'>>>({
      name: 'key generation',
      idField: 'dkgId',
      codes: {
        refused: 'COORD_FROST_DKG_REFUSED',
        badStatement: 'COORD_FROST_DKG_BAD_STATEMENT',
        timeout: 'COORD_FROST_DKG_TIMEOUT',
      },
      keeps: '',
      stepTimeoutMs: this.#stepTimeoutMs,
      logger: this.#logger,
      kind: (step) => KIND[step],
      persist: (id, step) => {
        const run = this.#runs.get(id);
        if (run) this.#write(run, () => this.#store.setFrostDkgStep(id, step, Date.now()));
      },
      deliver: (run, to, step, extra) =>
        this.#hub?.send(to.nodeId, 'frost-dkg', { dkgId: run.rec.id, step, ...extra }) ?? false,
      fail: (run, error) => this.#fail(run, error),
    });
  }

  /**
   * A relay on `store`, its sessions left running settled: with `exclusive` (this process is the store's only
   * writer: the embedded SQLite store, so a session left running was its own, cut off by its stop) every
   * one (a session open when the coordinator stopped cannot go on: the nodes' halves of it live in their memory and
   * the statements gathered so far lived in ours); on a shared store only those abandoned (see the class comment),
   * as another replica may be driving the others.
   */
  static async open(o: {
    store: AwaitableRepository<FrostRepository>;
    nodes: AwaitableRepository<NodeRepository>;
    logger: Logger;
    stepTimeoutMs?: number;
    abandonAfterMs?: number;
    exclusive: boolean;
  }): Promise<FrostDkgRelay> {
    const relay = new FrostDkgRelay(o);
    for (const r of await o.store.runningFrostDkgs()) {
      if (o.exclusive) {
        const message = 'The coordinator stopped during this key generation; start a new one.';
        if (await o.store.failFrostDkg(r.id, { code: 'COORD_FROST_DKG_TIMEOUT', message, culprits: [] }, Date.now())) {
          relay.#owed(r.id, r.participants, message);
        }
      } else await relay.#settle(r);
    }
    return relay;
  }

  /** Chain a store write of `run` after its earlier ones; a failed write is logged (the step timer still runs). */
  #write<T>(run: Run, fn: () => Awaitable<T>): Promise<T | undefined> {
    const next = run.writes.then(fn).catch((e: unknown) => {
      this.#logger.error({ err: (e as Error).message, dkgId: run.rec.id }, 'FROST key generation record not written');
      return undefined;
    });
    run.writes = next;
    return next;
  }

  /**
   * `r` as it stands: a running session no replica drives any more (no step for `staleAfterMs`) is recorded failed
   * here (COORD_FROST_RELAY_LOST) and aborted at the nodes; one this replica drives, or a fresh one, is left alone.
   */
  async #settle(r: DkgRecord): Promise<DkgRecord> {
    const now = Date.now();
    if (r.status !== 'running' || this.#runs.has(r.id) || r.updatedAt >= now - this.#staleAfterMs) return r;
    const message = `The coordinator replica relaying this key generation stopped during ${r.step} (no step for ${Math.round((now - r.updatedAt) / 1000)} s); start a new one.`;
    const error: DkgError = { code: 'COORD_FROST_RELAY_LOST', message, culprits: [] };
    if (await this.#store.failFrostDkg(r.id, error, now, now - this.#staleAfterMs)) {
      this.#logger.warn(
        { dkgId: r.id, step: r.step },
        'FROST key generation abandoned by its replica: recorded failed',
      );
      this.#abort(r.id, r.participants, message);
    }
    return (await this.#store.getFrostDkg(r.id)) ?? r;
  }

  /** Tell every participant the session is over; those not connected here hear it when they sync. */
  #abort(dkgId: string, participants: readonly DkgRosterEntry[], reason: string): void {
    const away = participants.filter(
      (p) => !this.#hub?.send(p.nodeId, 'frost-dkg', { dkgId, step: 'abort', reason: reason.slice(0, 1024) }),
    );
    if (away.length > 0) this.#owed(dkgId, away, reason);
  }

  /** Aborts not yet delivered, by node: a node that was away hears them when it syncs. */
  readonly #undelivered = new Map<string, { dkgId: string; reason: string; until: number }[]>();

  #owed(dkgId: string, participants: readonly DkgRosterEntry[], reason: string): void {
    const until = Date.now() + ABORT_RETENTION_MS;
    for (const p of participants) {
      const list = (this.#undelivered.get(p.nodeId) ?? []).filter((x) => x.until > Date.now());
      list.push({ dkgId, reason, until });
      this.#undelivered.set(p.nodeId, list.slice(-16));
    }
  }

  /**
   * A node (re)connected and asked for what it missed: send it the aborts of sessions that failed while it was away,
   * or while the coordinator was stopped. A node that confirmed a group of such a session drops it on the abort
   * (within its session time-out), so a group never stays at some nodes of a key generation recorded as failed.
   */
  sync(nodeId: string): void {
    const list = this.#undelivered.get(nodeId);
    if (!list) return;
    this.#undelivered.delete(nodeId);
    for (const x of list) {
      if (x.until <= Date.now()) continue;
      if (!this.#hub?.send(nodeId, 'frost-dkg', { dkgId: x.dkgId, step: 'abort', reason: x.reason.slice(0, 1024) })) {
        this.#owed(x.dkgId, [{ index: 0, nodeId, identityKey: '' }], x.reason);
      }
    }
  }

  attach(hub: HubLike): void {
    this.#hub = hub;
  }

  /** By id or group address, abandoned sessions settled (see the class comment). @throws COORD_FROST_GROUP_NOT_FOUND */
  async get(idOrAddress: string): Promise<DkgRecord> {
    const r = await this.#store.getFrostDkg(idOrAddress);
    if (!r) throw coordinatorErrors.error('COORD_FROST_GROUP_NOT_FOUND', { id: idOrAddress });
    return this.#settle(r);
  }

  /**
   * A ready group by address (its public data), or undefined: what a FROST signing round runs with. A value, not a
   * promise, on the synchronous SQLite store (so a grouped unit of work can call it).
   */
  readyGroup(address: string): Awaitable<ReadyGroup | undefined> {
    return step(this.#store.getFrostDkg(address), (r) =>
      r?.status !== 'ready' || r.address !== address || r.group === null ? undefined : (r as ReadyGroup),
    );
  }

  /** Record which group signs FROST proposal `proposalId`, in the shared store (store.ts bindFrostProposal). */
  bindProposal(proposalId: string, address: string): Awaitable<void> {
    return this.#store.bindFrostProposal(proposalId, address, Date.now());
  }

  /** The ready group FROST proposal `proposalId` was bound to, read from the store (so any replica finds it). */
  proposalGroup(proposalId: string): Awaitable<ReadyGroup | undefined> {
    return step(this.#store.frostProposalGroup(proposalId), (address) =>
      address === undefined ? undefined : this.readyGroup(address),
    );
  }

  /** Newest first (at most 100), abandoned sessions settled. */
  async list(): Promise<DkgRecord[]> {
    const all = await this.#store.listFrostDkgs(100);
    return Promise.all(all.map((r) => this.#settle(r)));
  }

  /**
   * Start a key generation among `participants` (node ids, indices 1..n in the order given) for a `threshold`-of-n
   * group. Answers at once with the running record; the outcome is read with get().
   * @throws COORD_BAD_REQUEST (threshold, repeated node), COORD_FROST_NODE_UNAVAILABLE, COORD_FROST_BUSY
   */
  async start(req: { participants: string[]; threshold: number; createdBy?: string | null }): Promise<DkgRecord> {
    const ids = req.participants;
    if (new Set(ids).size !== ids.length) {
      throw coordinatorErrors.error(
        'COORD_BAD_REQUEST',
        { field: 'participants' },
        { message: 'participants must not repeat a node.' },
      );
    }
    if (req.threshold < 2 || req.threshold > ids.length) {
      throw coordinatorErrors.error(
        'COORD_BAD_REQUEST',
        { field: 'threshold' },
        { message: `threshold must be between 2 and the number of participants (${ids.length}).` },
      );
    }
    const enrolled = new Map(await Promise.all(ids.map(async (id) => [id, await this.#nodes.getNode(id)] as const)));
    const unknown = ids.filter((id) => !enrolled.get(id));
    const live = new Set(this.#hub?.connected().map((c) => c.nodeId));
    const offline = ids.filter((id) => !unknown.includes(id) && !live.has(id));
    if (unknown.length > 0 || offline.length > 0) {
      throw coordinatorErrors.error(
        'COORD_FROST_NODE_UNAVAILABLE',
        { unknown, offline },
        {
          message: `Every participant must be enrolled and connected: ${[
            unknown.length > 0 ? `not enrolled: ${unknown.join(', ')}` : '',
            offline.length > 0 ? `not connected: ${offline.join(', ')}` : '',
          ]
            .filter(Boolean)
            .join('; ')}.`,
        },
      );
    }
    if (this.#runs.size >= MAX_RUNNING) throw coordinatorErrors.error('COORD_FROST_BUSY', { running: this.#runs.size });
    const participants: DkgRosterEntry[] = ids.map((nodeId, i) => ({
      index: i + 1,
      nodeId,
      identityKey: enrolled.get(nodeId)!.identityKey,
    }));
    const id = randomUUID();
    const now = Date.now();
    const rec: DkgRecord = {
      id,
      threshold: req.threshold,
      participants,
      roster: rosterDigest(id, req.threshold, participants),
      status: 'running',
      step: 'start',
      address: null,
      group: null,
      transcript: null,
      error: null,
      createdBy: req.createdBy ?? null,
      createdAt: now,
      updatedAt: now,
    };
    await this.#store.insertFrostDkg(rec);
    const run: Run = {
      rec,
      step: 'start',
      waiting: new Set(),
      replies: new Map(),
      timer: undefined,
      writes: Promise.resolve(),
    };
    this.#runs.set(id, run);
    this.#logger.info({ dkgId: id, threshold: req.threshold, participants: ids }, 'FROST key generation started');
    this.#send(run, 'start', () => ({ threshold: rec.threshold, participants }));
    await run.writes;
    return (await this.#store.getFrostDkg(id))!;
  }

  /** A node's answer to a step (hub.ts routes `frost-dkg-reply` frames here). Never throws into the hub. */
  onReply(nodeId: string, body: Reply): void {
    try {
      this.#onReply(nodeId, body);
    } catch (e) {
      const run = this.#runs.get(body.dkgId);
      this.#logger.error({ err: (e as Error).message, dkgId: body.dkgId, nodeId }, 'FROST relay failed');
      if (run) {
        this.#fail(run, {
          code: 'COORD_INTERNAL',
          message: 'The relay failed; the details are in its log.',
          culprits: [],
        });
      }
    }
  }

  #onReply(nodeId: string, body: Reply): void {
    if (!this.#steps.receive(this.#runs.get(body.dkgId), nodeId, body.dkgId, body)) return;
    const run = this.#runs.get(body.dkgId)!;
    if (run.waiting.size === 0) this.#advance(run);
  }

  /** Abort every running session (coordinator stopping); resolves once their records are written. */
  async close(): Promise<void> {
    const runs = [...this.#runs.values()];
    for (const run of runs) {
      this.#fail(run, { code: 'COORD_FROST_DKG_TIMEOUT', message: 'The coordinator stopped.', culprits: [] });
    }
    await Promise.all(runs.map((r) => r.writes));
  }

  #advance(run: Run): void {
    clearTimeout(run.timer);
    switch (run.step) {
      case 'start':
      case 'round1':
      case 'round2':
        this.#steps.forward(run, NEXT[run.step]);
        return;
      case 'round3':
        this.#agree(run);
        return;
      default: {
        const r = run.result!;
        this.#runs.delete(run.rec.id);
        void this.#write(run, async () => {
          if (await this.#store.readyFrostDkg(run.rec.id, r, Date.now())) {
            this.#logger.info({ dkgId: run.rec.id, address: r.address }, 'FROST group generated');
            return;
          }
          // Another replica recorded it failed (it took this one for dead): its outcome stands, the nodes drop it.
          const now = await this.#store.getFrostDkg(run.rec.id);
          this.#logger.warn(
            { dkgId: run.rec.id, code: now?.error?.code },
            'FROST key generation finished after another replica recorded it failed; the group is dropped',
          );
          this.#abort(run.rec.id, run.rec.participants, now?.error?.message ?? 'The key generation failed.');
        });
      }
    }
  }

  /** Every node's result must be the same group, which the coordinator checks; then every node is shown them all. */
  #agree(run: Run): void {
    const results = run.rec.participants.map((p) => {
      const r = run.replies.get(p.nodeId)!.payloads[0] as DkgStatementPayload & {
        group: unknown;
        address: string;
        transcript: string;
      };
      return { nodeId: p.nodeId, group: r.group, address: r.address, transcript: r.transcript };
    });
    const first = results[0]!;
    let group: ReturnType<typeof checkGroup> | undefined;
    try {
      group = checkGroup(first.group);
    } catch {
      group = undefined;
    }
    const same = (r: (typeof results)[number]) =>
      JSON.stringify(r.group) === JSON.stringify(first.group) &&
      r.address === first.address &&
      r.transcript === first.transcript;
    const differ = results.filter((r) => !same(r)).map((r) => r.nodeId);
    if (
      !group ||
      differ.length > 0 ||
      groupAddress(group) !== first.address ||
      group.threshold !== run.rec.threshold ||
      group.participants.join() !== run.rec.participants.map((p) => p.index).join()
    ) {
      this.#fail(run, {
        code: 'COORD_FROST_DKG_DISAGREE',
        message:
          differ.length > 0
            ? `The nodes reported different groups: ${differ.join(', ')} differ from ${first.nodeId}.`
            : 'The nodes reported a group that does not match the session (threshold, participants or address).',
        culprits: [],
      });
      return;
    }
    run.result = { address: first.address, group, transcript: first.transcript };
    const statements = run.rec.participants.flatMap((p) => run.replies.get(p.nodeId)!.statements);
    this.#send(run, 'confirm', () => ({ statements }));
  }

  #send(run: Run, step: DkgStep, body: (to: DkgRosterEntry) => Partial<Body<'frost-dkg'>>): void {
    this.#steps.send(run, step, body);
  }

  #fail(run: Run, error: DkgError): void {
    clearTimeout(run.timer);
    if (this.#runs.get(run.rec.id) !== run) return;
    this.#runs.delete(run.rec.id);
    void this.#write(run, () => this.#store.failFrostDkg(run.rec.id, error, Date.now()));
    // A node that already recorded the group drops it on abort (it is pending until confirm).
    this.#abort(run.rec.id, run.rec.participants, error.message);
    this.#logger.warn(
      { dkgId: run.rec.id, step: run.step, code: error.code, culprits: error.culprits },
      'FROST key generation aborted',
    );
  }
}

/** A ready group's record: what a FROST signing round runs with. */
export type ReadyGroup = DkgRecord & { address: string; group: GroupPublic };

import { randomUUID } from 'node:crypto';
import { decideRefresh, groupDigest } from '@cosigner/frost/refresh';
import { checkGroup, type GroupPublic } from '@cosigner/frost/suite';
import {
  type DkgRosterEntry,
  type DkgStatementPayload,
  openStatement,
  refreshRosterDigest,
} from '@cosigner/protocol/frost-dkg';
import type { Body } from '@cosigner/protocol/messages';
import type { Logger } from '@cosigner/runtime/logger';
import { coordinatorErrors } from '../errors.ts';
import type { Awaitable, AwaitableRepository, FrostRepository } from '../store.ts';
import { ABANDON_MARGIN_MS, DKG_STEP_TIMEOUT_MS, type FrostDkgRelay, type HubLike } from './dkg.ts';
import type { RefreshError, RefreshRecord, RefreshStep } from './refresh-store.ts';
import { StepRelay, type StepRun } from './relay-steps.ts';

/**
 * The coordinator's part in a FROST share refresh (docs/architecture.md, "FROST share refresh"; the protocol is
 * packages/frost refresh.ts): the same relay as key generation, learning nothing it could use, plus the decision
 * of the second phase.
 *
 *   start  -> every node's transport-key statement         -> round1 to every node (all of them)
 *   round1 -> every node's commitment to its sharing of 0  -> round2 to every node (the others')
 *   round2 -> every node's n-1 encrypted packages          -> round3 to every node (those addressed to it)
 *   round3 -> every node's report (transcript digest, new group and its digest); each node has sealed its new
 *             share BESIDE the old one, which keeps signing
 *          -> decideRefresh: every participant reported the same transcript and group (same key, checked here)
 *             -> recorded as adopted (synced) BEFORE anyone is told, the group's public data replaced, then
 *                `adopt` with the digest to every node, which switches and deletes its old sealed share;
 *             otherwise `abort`, and every node discards the new share.
 *
 * A refresh needs all n participants (a share of a node left out would no longer fit the group). Any refusal,
 * timeout, statement that is not its author's, disagreement, or a participant that restarts (syncs) while the relay
 * waits for it, fails the refresh: every node keeps its current share. A node that missed the outcome (it was down,
 * e.g. killed between the phases) is told the recorded outcome when it syncs, also after a coordinator restart,
 * until it acknowledged it.
 *
 * The records are in the coordinator's one store, shared by every replica on PostgreSQL (store.ts
 * FrostRepository). A refresh is driven by the replica that started it; at most one runs per group, whichever
 * replica started it (a unique index on the running ones). Its outcome is one compare-and-set on `running`:
 * `adoptFrostRefresh` (which also replaces the group's public data, in the same transaction) or
 * `failFrostRefresh`. A replica that finds a refresh abandoned (no step for longer than a step may take, its driver
 * gone) records it failed with COORD_FROST_RELAY_LOST, never over a decision its driver wrote meanwhile; a driver
 * that then loses the compare-and-set tells the nodes the recorded outcome, not its own. Any replica tells a
 * syncing node a decided outcome it has not acknowledged.
 */

/** Refreshes relayed at once. */
export const MAX_REFRESHES = 2;

type Reply = Body<'frost-refresh-reply'>;

const KIND: Record<Exclude<RefreshStep, 'adopt'>, DkgStatementPayload['kind']> = {
  start: 'refresh-transport-key',
  round1: 'refresh-round1',
  round2: 'refresh-round2',
  round3: 'refresh-report',
};

interface Run extends StepRun<RefreshStep> {
  rec: RefreshRecord;
  old: GroupPublic;
  /** The refresh's store writes, in order (a step's record never lands after the outcome). */
  writes: Promise<unknown>;
  transportKeys: Map<string, string>;
}

const NEXT = { start: 'round1', round1: 'round2', round2: 'round3' } as const;

export class FrostRefreshRelay {
  readonly #store: AwaitableRepository<FrostRepository>;
  readonly #dkg: FrostDkgRelay;
  readonly #logger: Logger;
  readonly #stepTimeoutMs: number;
  readonly #runs = new Map<string, Run>();
  readonly #steps: StepRelay<RefreshStep, Run, Partial<Body<'frost-refresh'>>>;
  #hub: HubLike | undefined;

  readonly #staleAfterMs: number;

  /** Use `open` (it also settles the refreshes left running). */
  constructor(o: {
    store: AwaitableRepository<FrostRepository>;
    dkg: FrostDkgRelay;
    logger: Logger;
    stepTimeoutMs?: number;
    /** How long after its last step a session this replica does not drive is abandoned (default: see above). */
    abandonAfterMs?: number;
  }) {
    this.#store = o.store;
    this.#dkg = o.dkg;
    this.#logger = o.logger;
    this.#stepTimeoutMs = o.stepTimeoutMs ?? DKG_STEP_TIMEOUT_MS;
    this.#staleAfterMs = o.abandonAfterMs ?? this.#stepTimeoutMs + ABANDON_MARGIN_MS;
    this.#steps = new StepRelay<RefreshStep, Run, Partial<Body<'frost-refresh'>>>({
      name: 'share refresh',
      idField: 'refreshId',
      codes: {
        refused: 'COORD_FROST_REFRESH_REFUSED',
        badStatement: 'COORD_FROST_REFRESH_BAD_STATEMENT',
        timeout: 'COORD_FROST_REFRESH_TIMEOUT',
      },
      keeps: '; every node keeps its current share',
      stepTimeoutMs: this.#stepTimeoutMs,
      logger: this.#logger,
      kind: (step) => KIND[step as Exclude<RefreshStep, 'adopt'>],
      persist: (id, step) => {
        const run = this.#runs.get(id);
        if (run) this.#write(run, () => this.#store.setFrostRefreshStep(id, step, Date.now()));
      },
      deliver: (run, to, step, extra) =>
        this.#hub?.send(to.nodeId, 'frost-refresh', {
          refreshId: run.rec.id,
          address: run.rec.address,
          step: step as Exclude<RefreshStep, 'adopt'>,
          ...extra,
        }) ?? false,
      fail: (run, error) => this.#fail(run, error),
    });
  }

  /**
   * A relay on `store`. A refresh open when the coordinator stopped, and not decided, cannot go on (its statements
   * lived in memory): with `exclusive` (one process on a SQLite store) every running one is recorded failed; on a
   * shared store only those abandoned (see the class comment). Every participant is told to discard what it kept
   * when it syncs (unacknowledgedFrostRefreshes).
   */
  static async open(o: {
    store: AwaitableRepository<FrostRepository>;
    dkg: FrostDkgRelay;
    logger: Logger;
    stepTimeoutMs?: number;
    abandonAfterMs?: number;
    exclusive: boolean;
  }): Promise<FrostRefreshRelay> {
    const relay = new FrostRefreshRelay(o);
    for (const r of await o.store.runningFrostRefreshes()) {
      if (o.exclusive) {
        await o.store.failFrostRefresh(
          r.id,
          {
            code: 'COORD_FROST_REFRESH_TIMEOUT',
            message: 'The coordinator stopped during this share refresh; every node keeps its current share.',
            culprits: [],
          },
          Date.now(),
        );
      } else await relay.#settle(r);
    }
    return relay;
  }

  /** Chain a store write of `run` after its earlier ones; a failed write is logged. */
  #write<T>(run: Run, fn: () => Awaitable<T>): Promise<T | undefined> {
    const next = run.writes.then(fn).catch((e: unknown) => {
      this.#logger.error({ err: (e as Error).message, refreshId: run.rec.id }, 'FROST refresh record not written');
      return undefined;
    });
    run.writes = next;
    return next;
  }

  /** `r` as it stands, recorded failed first when no replica drives it any more (see the class comment). */
  async #settle(r: RefreshRecord): Promise<RefreshRecord> {
    const now = Date.now();
    if (r.status !== 'running' || this.#runs.has(r.id) || r.updatedAt >= now - this.#staleAfterMs) return r;
    const error: RefreshError = {
      code: 'COORD_FROST_RELAY_LOST',
      message: `The coordinator replica relaying this share refresh stopped during ${r.step} (no step for ${Math.round((now - r.updatedAt) / 1000)} s); every node keeps its current share.`,
      culprits: [],
    };
    if (await this.#store.failFrostRefresh(r.id, error, now, now - this.#staleAfterMs)) {
      this.#logger.warn(
        { refreshId: r.id, step: r.step },
        'FROST share refresh abandoned by its replica: recorded failed',
      );
      const failed = await this.#store.getFrostRefresh(r.id);
      if (failed) for (const p of failed.participants) await this.#tell(failed, p.nodeId);
    }
    return (await this.#store.getFrostRefresh(r.id)) ?? r;
  }

  attach(hub: HubLike): void {
    this.#hub = hub;
  }

  /** @throws COORD_FROST_REFRESH_NOT_FOUND */
  async get(id: string): Promise<RefreshRecord> {
    const r = await this.#store.getFrostRefresh(id);
    if (!r) throw coordinatorErrors.error('COORD_FROST_REFRESH_NOT_FOUND', { id });
    return this.#settle(r);
  }

  /** The address of a group given by id or address. @throws COORD_FROST_GROUP_NOT_FOUND */
  async groupAddress(group: string): Promise<string> {
    const g = await this.#dkg.get(group);
    return g.address ?? g.id;
  }

  /** Newest first (at most 100); of one group when `address` is given. */
  async list(address?: string): Promise<RefreshRecord[]> {
    const all = await this.#store.listFrostRefreshes(address, 100);
    return Promise.all(all.map((r) => this.#settle(r)));
  }

  /**
   * Start a share refresh of the ready group `group` (its id or address) among all its participants.
   * @throws COORD_FROST_GROUP_NOT_FOUND, COORD_FROST_REFRESH_NOT_READY, COORD_FROST_REFRESH_RUNNING,
   *   COORD_FROST_NODE_UNAVAILABLE, COORD_FROST_BUSY
   */
  async start(req: { group: string; createdBy?: string | null }): Promise<RefreshRecord> {
    const g = await this.#dkg.get(req.group);
    if (g.status !== 'ready' || g.group === null || g.address === null) {
      throw coordinatorErrors.error('COORD_FROST_REFRESH_NOT_READY', { id: g.id, status: g.status });
    }
    const address = g.address;
    // One refresh per group at a time, across replicas: one abandoned by its replica is settled first, and the
    // insert below is refused while another is running (the unique index, whichever replica inserts first).
    for (const r of await this.#store.listFrostRefreshes(address, 100)) {
      if (r.status === 'running' && (await this.#settle(r)).status === 'running') {
        throw coordinatorErrors.error('COORD_FROST_REFRESH_RUNNING', { address });
      }
    }
    const live = new Set(this.#hub?.connected().map((c) => c.nodeId));
    const offline = g.participants.map((p) => p.nodeId).filter((id) => !live.has(id));
    if (offline.length > 0) {
      throw coordinatorErrors.error(
        'COORD_FROST_NODE_UNAVAILABLE',
        { unknown: [], offline },
        {
          message: `A share refresh needs every participant of the group connected; not connected: ${offline.join(', ')}.`,
        },
      );
    }
    if (this.#runs.size >= MAX_REFRESHES)
      throw coordinatorErrors.error('COORD_FROST_BUSY', { running: this.#runs.size });
    const id = randomUUID();
    const now = Date.now();
    const rec: RefreshRecord = {
      id,
      address,
      threshold: g.threshold,
      participants: g.participants,
      roster: refreshRosterDigest(id, address, g.threshold, g.participants),
      status: 'running',
      step: 'start',
      oldDigest: groupDigest(g.group),
      digest: null,
      group: null,
      transcript: null,
      reports: null,
      error: null,
      acked: [],
      createdBy: req.createdBy ?? null,
      createdAt: now,
      updatedAt: now,
    };
    if (!(await this.#store.insertFrostRefresh(rec))) {
      throw coordinatorErrors.error('COORD_FROST_REFRESH_RUNNING', { address });
    }
    const run: Run = {
      rec,
      old: g.group,
      writes: Promise.resolve(),
      step: 'start',
      waiting: new Set(),
      replies: new Map(),
      transportKeys: new Map(),
      timer: undefined,
    };
    this.#runs.set(id, run);
    this.#logger.info({ refreshId: id, address }, 'FROST share refresh started');
    this.#send(run, 'start', () => ({ participants: g.participants }));
    await run.writes;
    return (await this.#store.getFrostRefresh(id))!;
  }

  /**
   * A node (re)connected: a running refresh that waits for it fails (its half lived in the memory of the session
   * it lost), and a decided refresh it has not acknowledged is told again: `adopt` with the adopted digest, or
   * `abort`. This is how a node killed between the phases learns which share to keep.
   */
  async sync(nodeId: string): Promise<void> {
    for (const run of [...this.#runs.values()]) {
      if (run.waiting.has(nodeId) && run.step !== 'adopt') {
        this.#fail(run, {
          code: 'COORD_FROST_REFRESH_TIMEOUT',
          message: `${nodeId} reconnected during ${run.step}: its part of the refresh was lost; every node keeps its current share.`,
          culprits: [],
          unreachable: [nodeId],
        });
      }
    }
    for (const r of await this.#store.unacknowledgedFrostRefreshes()) {
      if (!r.participants.some((p) => p.nodeId === nodeId) || r.acked.includes(nodeId)) continue;
      await this.#tell(r, nodeId);
    }
  }

  /** Send a decided refresh's outcome to one node; an abort needs no answer, so a delivered one counts as heard. */
  async #tell(r: RefreshRecord, nodeId: string): Promise<void> {
    if (r.status === 'adopted') {
      this.#hub?.send(nodeId, 'frost-refresh', {
        refreshId: r.id,
        address: r.address,
        step: 'adopt',
        digest: r.digest!,
        statements: r.reports ?? [],
      });
      return;
    }
    const reason = (r.error?.message ?? 'the refresh failed').slice(0, 1024);
    if (this.#hub?.send(nodeId, 'frost-refresh', { refreshId: r.id, address: r.address, step: 'abort', reason })) {
      await this.#store.ackFrostRefresh(r.id, nodeId, Date.now());
    }
  }

  /** A node's answer (hub.ts routes `frost-refresh-reply` frames here). Never throws into the hub. */
  onReply(nodeId: string, body: Reply): void {
    try {
      if (body.step === 'adopt') {
        this.#onAdopted(nodeId, body).catch((e: unknown) =>
          this.#logger.error(
            { err: (e as Error).message, refreshId: body.refreshId, nodeId },
            'FROST refresh acknowledgement not recorded',
          ),
        );
      } else this.#onReply(nodeId, body);
    } catch (e) {
      const run = this.#runs.get(body.refreshId);
      this.#logger.error(
        { err: (e as Error).message, refreshId: body.refreshId, nodeId },
        'FROST refresh relay failed',
      );
      if (run) {
        this.#fail(run, {
          code: 'COORD_INTERNAL',
          message: 'The relay failed; the details are in its log.',
          culprits: [],
        });
      }
    }
  }

  /** A node's signed acknowledgement that it switched to the adopted group. */
  async #onAdopted(nodeId: string, body: Reply): Promise<void> {
    const r = await this.#store.getFrostRefresh(body.refreshId);
    const me = r?.participants.find((p) => p.nodeId === nodeId);
    if (r?.status !== 'adopted' || !me) return;
    if (body.error) {
      this.#logger.error(
        { refreshId: r.id, nodeId, code: body.error.code, message: body.error.message },
        'a node did not switch to the adopted refresh: it keeps its old share, which no longer fits the group',
      );
      return;
    }
    const st = body.statements?.[0];
    const p = st && openStatement(Buffer.from(me.identityKey, 'base64'), st);
    const digest = (p as { digest?: unknown } | undefined)?.digest;
    if (
      body.statements?.length !== 1 ||
      !p ||
      p.kind !== 'refresh-adopted' ||
      p.dkgId !== r.id ||
      p.roster !== r.roster ||
      p.nodeId !== nodeId ||
      digest !== r.digest
    ) {
      this.#logger.warn(
        { refreshId: r.id, nodeId },
        'FROST refresh acknowledgement refused: not a signed one of this refresh',
      );
      return;
    }
    await this.#store.ackFrostRefresh(r.id, nodeId, Date.now());
    this.#logger.info({ refreshId: r.id, nodeId }, 'FROST refresh adopted at node');
  }

  #onReply(nodeId: string, body: Reply): void {
    const payloads = this.#steps.receive(this.#runs.get(body.refreshId), nodeId, body.refreshId, body);
    if (!payloads) return;
    const run = this.#runs.get(body.refreshId)!;
    if (run.step === 'start') {
      run.transportKeys.set(nodeId, String((payloads[0] as { transportKey?: unknown }).transportKey));
    }
    if (run.waiting.size === 0) this.#advance(run);
  }

  /** Abort every running refresh (coordinator stopping); resolves once their records are written. */
  async close(): Promise<void> {
    const runs = [...this.#runs.values()];
    for (const run of runs) {
      this.#fail(run, { code: 'COORD_FROST_REFRESH_TIMEOUT', message: 'The coordinator stopped.', culprits: [] });
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
      default:
        this.#decide(run);
    }
  }

  /**
   * The second phase: every report must carry a group that hashes to its digest and keeps the group key (checked
   * here, so a node cannot report a digest of something else), and decideRefresh must find every participant in
   * agreement. Only then is the refresh recorded as adopted, and only after that is any node told.
   */
  #decide(run: Run): void {
    const reports: { index: number; transcript: string; group: string }[] = [];
    const groups = new Map<string, GroupPublic>();
    for (const p of run.rec.participants) {
      const r = run.replies.get(p.nodeId)!.payloads[0] as { transcript?: unknown; digest?: unknown; group?: unknown };
      let group: GroupPublic | undefined;
      try {
        group = checkGroup(r.group);
      } catch {
        group = undefined;
      }
      if (
        !group ||
        groupDigest(group) !== r.digest ||
        group.groupPublicKey !== run.old.groupPublicKey ||
        typeof r.transcript !== 'string'
      ) {
        this.#fail(run, {
          code: 'COORD_FROST_REFRESH_BAD_STATEMENT',
          message: `${p.nodeId} reported a refreshed group that does not match its digest or changes the group key.`,
          reportedBy: p.nodeId,
          culprits: [p.nodeId],
        });
        return;
      }
      groups.set(r.digest as string, group);
      reports.push({ index: p.index, transcript: r.transcript, group: r.digest as string });
    }
    let decision: ReturnType<typeof decideRefresh>;
    try {
      decision = decideRefresh(
        {
          sessionId: run.rec.id,
          group: run.old,
          members: run.rec.participants.map((p) => ({
            index: p.index,
            nodeId: p.nodeId,
            transportKey: run.transportKeys.get(p.nodeId)!,
          })),
        },
        reports,
      );
    } catch (e) {
      this.#fail(run, {
        code: 'COORD_FROST_REFRESH_BAD_STATEMENT',
        message: `The refresh reports could not be decided on: ${(e as Error).message}`,
        culprits: [],
      });
      return;
    }
    const byIndex = (xs: number[]) => xs.map((i) => run.rec.participants.find((p) => p.index === i)!.nodeId).sort();
    if (!decision.adopt) {
      const disagreeing = byIndex(decision.disagreeing);
      const missing = byIndex(decision.missing);
      this.#fail(run, {
        code: 'COORD_FROST_REFRESH_DISAGREE',
        message: `The nodes reported different refreshed groups: ${disagreeing.join(', ')} differ from the others; nobody switches.`,
        culprits: disagreeing,
        disagreeing,
        missing,
      });
      return;
    }
    const group = groups.get(decision.group)!;
    clearTimeout(run.timer);
    this.#runs.delete(run.rec.id);
    const signed = run.rec.participants.flatMap((p) => run.replies.get(p.nodeId)!.statements);
    void this.#write(run, async () => {
      // The decision and the group's new public data in one commit, before any node hears it; false when another
      // replica recorded the refresh failed meanwhile (it took this one for dead): that outcome is the one told.
      const adopted = await this.#store.adoptFrostRefresh(
        run.rec.id,
        { digest: decision.group, group, transcript: decision.transcript, reports: signed },
        Date.now(),
      );
      if (adopted) {
        this.#logger.info(
          { refreshId: run.rec.id, address: run.rec.address, digest: decision.group },
          'FROST share refresh adopted',
        );
      } else {
        this.#logger.warn({ refreshId: run.rec.id }, 'FROST share refresh decided after another replica failed it');
      }
      const rec = (await this.#store.getFrostRefresh(run.rec.id))!;
      for (const p of rec.participants) await this.#tell(rec, p.nodeId);
    });
  }

  #send(run: Run, step: RefreshStep, body: (to: DkgRosterEntry) => Partial<Body<'frost-refresh'>>): void {
    this.#steps.send(run, step, body);
  }

  #fail(run: Run, error: RefreshError): void {
    clearTimeout(run.timer);
    if (this.#runs.get(run.rec.id) !== run) return;
    this.#runs.delete(run.rec.id);
    void this.#write(run, async () => {
      await this.#store.failFrostRefresh(run.rec.id, error, Date.now());
      // The recorded outcome (an adoption can never be overridden: the write above is a compare-and-set).
      const rec = (await this.#store.getFrostRefresh(run.rec.id))!;
      for (const p of rec.participants) await this.#tell(rec, p.nodeId);
    });
    this.#logger.warn(
      { refreshId: run.rec.id, step: run.step, code: error.code, culprits: error.culprits },
      'FROST share refresh failed',
    );
  }
}

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
import { DKG_STEP_TIMEOUT_MS, type FrostDkgRelay, type HubLike } from './dkg.ts';
import { FrostRefreshStore, type RefreshError, type RefreshRecord, type RefreshStep } from './refresh-store.ts';
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
  transportKeys: Map<string, string>;
}

const NEXT = { start: 'round1', round1: 'round2', round2: 'round3' } as const;

export class FrostRefreshRelay {
  readonly #store: FrostRefreshStore;
  readonly #dkg: FrostDkgRelay;
  readonly #logger: Logger;
  readonly #stepTimeoutMs: number;
  readonly #runs = new Map<string, Run>();
  readonly #steps: StepRelay<RefreshStep, Run, Partial<Body<'frost-refresh'>>>;
  #hub: HubLike | undefined;

  constructor(o: { store: FrostRefreshStore; dkg: FrostDkgRelay; logger: Logger; stepTimeoutMs?: number }) {
    this.#store = o.store;
    this.#dkg = o.dkg;
    this.#logger = o.logger;
    this.#stepTimeoutMs = o.stepTimeoutMs ?? DKG_STEP_TIMEOUT_MS;
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
      persist: (id, step) => this.#store.setStep(id, step),
      deliver: (run, to, step, extra) =>
        this.#hub?.send(to.nodeId, 'frost-refresh', {
          refreshId: run.rec.id,
          address: run.rec.address,
          step: step as Exclude<RefreshStep, 'adopt'>,
          ...extra,
        }) ?? false,
      fail: (run, error) => this.#fail(run, error),
    });
    // A refresh open when the coordinator stopped, and not decided, cannot go on (its statements lived in memory):
    // it failed, and every participant is told to discard what it kept when it syncs (unacknowledged()).
    for (const r of this.#store.running()) {
      this.#store.fail(r.id, {
        code: 'COORD_FROST_REFRESH_TIMEOUT',
        message: 'The coordinator stopped during this share refresh; every node keeps its current share.',
        culprits: [],
      });
    }
  }

  attach(hub: HubLike): void {
    this.#hub = hub;
  }

  get(id: string): RefreshRecord {
    const r = this.#store.get(id);
    if (!r) throw coordinatorErrors.error('COORD_FROST_REFRESH_NOT_FOUND', { id });
    return r;
  }

  /** The address of a group given by id or address. @throws COORD_FROST_GROUP_NOT_FOUND */
  groupAddress(group: string): string {
    const g = this.#dkg.get(group);
    return g.address ?? g.id;
  }

  list(address?: string): RefreshRecord[] {
    return this.#store.list(address);
  }

  /**
   * Start a share refresh of the ready group `group` (its id or address) among all its participants.
   * @throws COORD_FROST_GROUP_NOT_FOUND, COORD_FROST_REFRESH_NOT_READY, COORD_FROST_REFRESH_RUNNING,
   *   COORD_FROST_NODE_UNAVAILABLE, COORD_FROST_BUSY
   */
  start(req: { group: string; createdBy?: string | null }): RefreshRecord {
    const g = this.#dkg.get(req.group);
    if (g.status !== 'ready' || g.group === null || g.address === null) {
      throw coordinatorErrors.error('COORD_FROST_REFRESH_NOT_READY', { id: g.id, status: g.status });
    }
    const address = g.address;
    if ([...this.#runs.values()].some((r) => r.rec.address === address)) {
      throw coordinatorErrors.error('COORD_FROST_REFRESH_RUNNING', { address });
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
    this.#store.insert(rec);
    const run: Run = {
      rec,
      old: g.group,
      step: 'start',
      waiting: new Set(),
      replies: new Map(),
      transportKeys: new Map(),
      timer: undefined,
    };
    this.#runs.set(id, run);
    this.#logger.info({ refreshId: id, address }, 'FROST share refresh started');
    this.#send(run, 'start', () => ({ participants: g.participants }));
    return this.#store.get(id)!;
  }

  /**
   * A node (re)connected: a running refresh that waits for it fails (its half lived in the memory of the session
   * it lost), and a decided refresh it has not acknowledged is told again: `adopt` with the adopted digest, or
   * `abort`. This is how a node killed between the phases learns which share to keep.
   */
  sync(nodeId: string): void {
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
    for (const r of this.#store.unacknowledged()) {
      if (!r.participants.some((p) => p.nodeId === nodeId) || r.acked.includes(nodeId)) continue;
      this.#tell(r, nodeId);
    }
  }

  /** Send a decided refresh's outcome to one node; an abort needs no answer, so a delivered one counts as heard. */
  #tell(r: RefreshRecord, nodeId: string): void {
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
      this.#store.ack(r.id, nodeId);
    }
  }

  /** A node's answer (hub.ts routes `frost-refresh-reply` frames here). Never throws into the hub. */
  onReply(nodeId: string, body: Reply): void {
    try {
      if (body.step === 'adopt') this.#onAdopted(nodeId, body);
      else this.#onReply(nodeId, body);
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
  #onAdopted(nodeId: string, body: Reply): void {
    const r = this.#store.get(body.refreshId);
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
    this.#store.ack(r.id, nodeId);
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

  /** Abort every running refresh (coordinator stopping). */
  close(): void {
    for (const run of [...this.#runs.values()]) {
      this.#fail(run, { code: 'COORD_FROST_REFRESH_TIMEOUT', message: 'The coordinator stopped.', culprits: [] });
    }
    this.#store.close();
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
    this.#store.adopt(run.rec.id, {
      digest: decision.group,
      group,
      transcript: decision.transcript,
      reports: signed,
    });
    this.#dkg.recordRefresh(run.rec.address, { group, transcript: decision.transcript });
    this.#logger.info(
      { refreshId: run.rec.id, address: run.rec.address, digest: decision.group },
      'FROST share refresh adopted',
    );
    const rec = this.#store.get(run.rec.id)!;
    for (const p of rec.participants) this.#tell(rec, p.nodeId);
  }

  #send(run: Run, step: RefreshStep, body: (to: DkgRosterEntry) => Partial<Body<'frost-refresh'>>): void {
    this.#steps.send(run, step, body);
  }

  #fail(run: Run, error: RefreshError): void {
    clearTimeout(run.timer);
    if (this.#runs.get(run.rec.id) !== run) return;
    this.#runs.delete(run.rec.id);
    this.#store.fail(run.rec.id, error);
    const rec = this.#store.get(run.rec.id)!;
    for (const p of rec.participants) this.#tell(rec, p.nodeId);
    this.#logger.warn(
      { refreshId: run.rec.id, step: run.step, code: error.code, culprits: error.culprits },
      'FROST share refresh failed',
    );
  }
}

/** The refresh relay with its store in the coordinator's data directory. */
export function openFrostRefreshRelay(o: { dataDir: string; dkg: FrostDkgRelay; logger: Logger }): FrostRefreshRelay {
  return new FrostRefreshRelay({ store: FrostRefreshStore.at(o.dataDir), dkg: o.dkg, logger: o.logger });
}

import { randomUUID } from 'node:crypto';
import { decodeFrame, type Envelope, encodeFrame, MAX_FRAME_BYTES } from '@cosigner/protocol/frame';
import type { Identity } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { ReplayGuard, TokenBucket } from '@cosigner/protocol/replay';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import type { AuditLog } from './audit.ts';
import type { NodeMetrics } from './metrics.ts';

/**
 * The node's outbound session with the coordinator (the node exposes no public port: docs/architecture.md).
 *
 * Handshake: dial `<url>/v1/nodes/connect`; the coordinator's first frame is `hello` (to '*', session
 * null) carrying a fresh challenge, signed by a PINNED coordinator key; the node answers `auth` signed
 * with its identity key, echoing the challenge; `welcome` opens the session and every later frame carries
 * its id. Then `sync`, so the coordinator re-sends every open proposal (nothing missed across reconnects).
 *
 * Every incoming frame goes through packages/protocol decodeFrame (size, signature under a pinned key,
 * freshness, recipient, session, replay guard, body schema). A refused frame is never acted on; it is
 * counted by code and logged at warn. Incoming frames are rate limited with a token bucket.
 * Liveness: ping every heartbeat; with no traffic for 3 heartbeats the node drops the socket and redials
 * with jittered exponential backoff (cap `reconnectMaxMs`).
 */

export type SessionState = 'stopped' | 'connecting' | 'handshake' | 'up' | 'backoff';

export interface SessionHandlers {
  /** Review one proposal; the returned body is sent back as a `decision` frame. */
  onProposal(body: Body<'proposal'>): Promise<Body<'decision'>>;
  onCancel(body: Body<'cancel'>): void;
  /** One step of a FROST key generation (frost/dkg.ts); the reply, if any, goes back as `frost-dkg-reply`. */
  onFrostDkg?(body: Body<'frost-dkg'>): Promise<Body<'frost-dkg-reply'> | undefined>;
  /** One step of a FROST share refresh (frost/refresh.ts); the reply, if any, goes back as `frost-refresh-reply`. */
  onFrostRefresh?(body: Body<'frost-refresh'>): Promise<Body<'frost-refresh-reply'> | undefined>;
}

export interface SessionOptions {
  url: string;
  nodeId: string;
  identity: Identity;
  coordinatorKeys: readonly Buffer[];
  stellarKey: string;
  network: string;
  version: string;
  handlers: SessionHandlers;
  logger: Logger;
  audit?: AuditLog;
  metrics?: NodeMetrics;
  maxSkewMs?: number;
  framesPerSecond?: number;
  frameBurst?: number;
  reconnectMaxMs?: number;
  reconnectBaseMs?: number;
  handshakeTimeoutMs?: number;
  /** Told of every state change (the session set derives readiness and the aggregate gauge from it). */
  onState?: (state: SessionState) => void;
}

/** Full-jitter exponential backoff (AWS Architecture Blog "Exponential Backoff And Jitter"), at least 50 ms. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.max(50, Math.floor(ceiling / 2 + (random() * ceiling) / 2));
}

export class CoordinatorSession {
  readonly #o: SessionOptions;
  #ws: WebSocket | undefined;
  #state: SessionState = 'stopped';
  #sessionId: string | null = null;
  #heartbeatMs = 5_000;
  #lastRx = 0;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #replay: ReplayGuard;
  #bucket: TokenBucket;
  /** Decisions made while the session was down (manual approvals): sent after the next welcome. */
  readonly #outbox: Body<'decision'>[] = [];
  #stopping = false;
  #upWaiters: (() => void)[] = [];

  constructor(opts: SessionOptions) {
    this.#o = opts;
    this.#replay = new ReplayGuard({ ttlMs: 2 * (opts.maxSkewMs ?? 30_000) });
    this.#bucket = new TokenBucket(opts.framesPerSecond ?? 200, opts.frameBurst ?? 1000);
  }

  get state(): SessionState {
    return this.#state;
  }

  /** The coordinator base URL this session dials, as the config wrote it. */
  get url(): string {
    return this.#o.url;
  }

  get sessionId(): string | null {
    return this.#sessionId;
  }

  get isUp(): boolean {
    return this.#state === 'up';
  }

  start(): void {
    this.#stopping = false;
    if (this.#state === 'stopped') this.#connect();
  }

  /** Resolves once the session is up (tests, start-up). */
  waitUp(): Promise<void> {
    if (this.isUp) return Promise.resolve();
    return new Promise((res) => this.#upWaiters.push(res));
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    clearInterval(this.#heartbeat);
    const ws = this.#ws;
    this.#ws = undefined;
    this.#setState('stopped');
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((res) => {
        ws.once('close', () => res());
        ws.close(1001, 'node stopping');
        setTimeout(() => {
          ws.terminate();
          res();
        }, 1000).unref();
      });
    }
  }

  /** Send a decision now if the session is up, else after the next welcome. */
  sendDecision(body: Body<'decision'>): void {
    if (this.isUp && this.#send('decision', body)) return;
    this.#outbox.push(body);
  }

  #setState(s: SessionState): void {
    if (this.#state === s) return;
    const wasUp = this.#state === 'up';
    this.#state = s;
    this.#o.metrics?.coordinatorSessionUp.set({ coordinator: this.#o.url }, s === 'up' ? 1 : 0);
    if (s === 'up') {
      this.#o.metrics?.coordinatorSessions.inc({ coordinator: this.#o.url });
      this.#o.audit?.append('session.up', { sessionId: this.#sessionId, url: this.#o.url });
      for (const w of this.#upWaiters.splice(0)) w();
    } else if (wasUp) {
      this.#o.audit?.append('session.down', { sessionId: this.#sessionId, url: this.#o.url, state: s });
    }
    this.#o.onState?.(s);
  }

  #connect(): void {
    if (this.#stopping) return;
    this.#setState('connecting');
    this.#sessionId = null;
    const url = new URL('v1/nodes/connect', this.#o.url.endsWith('/') ? this.#o.url : `${this.#o.url}/`);
    // maxPayload: ws refuses (close 1009) any frame over the protocol's size before it is buffered whole.
    // perMessageDeflate off (RFC 7692): ws's client offers it by default, and were a coordinator to accept, the
    // connection would hold a zlib deflate and inflate state (about 256 KB + 40 KB of native memory at the default
    // 15-bit window, per zlib's zconf.h) to compress frames of signatures and hashes, which do not compress.
    const ws = new WebSocket(url, {
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: this.#o.handshakeTimeoutMs ?? 10_000,
    });
    this.#ws = ws;
    const handshakeTimer = setTimeout(() => {
      if (this.#ws === ws && this.#state !== 'up') {
        this.#o.logger.warn({ url: this.#o.url }, 'coordinator handshake timed out');
        ws.terminate();
      }
    }, this.#o.handshakeTimeoutMs ?? 10_000);
    ws.on('open', () => {
      this.#lastRx = Date.now();
      this.#setState('handshake');
    });
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (this.#ws !== ws) return;
      this.#lastRx = Date.now();
      const raw = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
      this.#onFrame(ws, isBinary ? raw : raw.toString('utf8'));
    });
    ws.on('error', (e) => {
      this.#o.logger.warn({ url: this.#o.url, err: e.message }, 'coordinator connection error');
    });
    ws.on('close', (code) => {
      clearTimeout(handshakeTimer);
      if (this.#ws !== ws) return;
      this.#ws = undefined;
      clearInterval(this.#heartbeat);
      this.#o.logger.info({ code, sessionId: this.#sessionId }, 'coordinator connection closed');
      this.#scheduleReconnect();
    });
  }

  #scheduleReconnect(): void {
    if (this.#stopping) return;
    this.#setState('backoff');
    const delay = backoffDelay(this.#attempt, this.#o.reconnectBaseMs ?? 250, this.#o.reconnectMaxMs ?? 10_000);
    this.#attempt += 1;
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #refuse(code: string, detail: Record<string, unknown>): void {
    this.#o.metrics?.refusedFrames.inc({ code });
    this.#o.logger.warn({ code, ...detail }, 'refused a coordinator frame');
  }

  #onFrame(ws: WebSocket, raw: string | Buffer): void {
    if (!this.#bucket.take()) {
      this.#refuse('RATE_LIMITED', {});
      return;
    }
    let env: Envelope;
    try {
      env = decodeFrame(raw, {
        trustedKeys: this.#o.coordinatorKeys,
        sender: 'coordinator',
        self: this.#o.nodeId,
        session: this.#sessionId,
        replay: this.#replay,
        maxSkewMs: this.#o.maxSkewMs,
      }).envelope;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const c = typeof code === 'string' ? code : 'PROTOCOL_MALFORMED';
      this.#refuse(c, { sessionId: this.#sessionId });
      // A frame failing authentication during the handshake means this is not our coordinator: drop it.
      if (this.#state !== 'up' && c === 'PROTOCOL_BAD_SIGNATURE') ws.terminate();
      return;
    }
    this.#dispatch(ws, env);
  }

  #dispatch(ws: WebSocket, env: Envelope): void {
    switch (env.type) {
      case 'hello': {
        const body = env.body as Body<'hello'>;
        if (this.#state !== 'handshake') {
          this.#refuse('UNEXPECTED_HELLO', {});
          return;
        }
        if (body.networkPassphrase !== this.#o.network) {
          this.#refuse('WRONG_NETWORK', { network: body.networkPassphrase });
          ws.terminate();
          return;
        }
        this.#sendRaw(ws, 'auth', {
          nodeId: this.#o.nodeId,
          identityKey: this.#o.identity.publicKeyB64,
          stellarKey: this.#o.stellarKey,
          challenge: body.challenge,
          networkPassphrase: this.#o.network,
          version: this.#o.version,
        });
        return;
      }
      case 'welcome': {
        const body = env.body as Body<'welcome'>;
        if (this.#state !== 'handshake') {
          this.#refuse('UNEXPECTED_WELCOME', {});
          return;
        }
        this.#sessionId = body.sessionId;
        this.#heartbeatMs = body.heartbeatMs;
        this.#attempt = 0;
        this.#setState('up');
        this.#o.logger.info({ sessionId: body.sessionId }, 'coordinator session up');
        this.#startHeartbeat(ws);
        this.#send('sync', {});
        for (const d of this.#outbox.splice(0)) this.#send('decision', d);
        return;
      }
      case 'proposal': {
        const body = env.body as Body<'proposal'>;
        const session = this.#sessionId;
        this.#o.handlers.onProposal(body).then(
          (decision) => {
            // Only into the session that asked; if it dropped, the re-sent proposal after sync is answered.
            if (this.#sessionId === session && this.isUp) this.#send('decision', decision);
          },
          (e: unknown) =>
            this.#o.logger.error({ err: (e as Error).message, proposalId: body.proposalId }, 'review failed'),
        );
        return;
      }
      case 'cancel':
        this.#o.handlers.onCancel(env.body as Body<'cancel'>);
        return;
      case 'frost-dkg': {
        const session = this.#sessionId;
        void this.#o.handlers.onFrostDkg?.(env.body as Body<'frost-dkg'>).then((reply) => {
          if (reply && this.#sessionId === session && this.isUp) this.#send('frost-dkg-reply', reply);
        });
        return;
      }
      case 'frost-refresh': {
        const session = this.#sessionId;
        void this.#o.handlers.onFrostRefresh?.(env.body as Body<'frost-refresh'>).then((reply) => {
          if (reply && this.#sessionId === session && this.isUp) this.#send('frost-refresh-reply', reply);
        });
        return;
      }
      case 'ping':
        this.#send('pong', { nonce: (env.body as Body<'ping'>).nonce });
        return;
      case 'error': {
        const b = env.body as Body<'error'>;
        this.#o.logger.warn({ code: b.code, message: b.message }, 'coordinator reported an error');
        return;
      }
      default:
        // pong: liveness only (lastRx was updated).
        return;
    }
  }

  #startHeartbeat(ws: WebSocket): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => {
      if (this.#ws !== ws) return;
      if (Date.now() - this.#lastRx > 3 * this.#heartbeatMs) {
        this.#o.logger.warn(
          { sessionId: this.#sessionId },
          'no traffic from the coordinator for 3 heartbeats; reconnecting',
        );
        ws.terminate();
        return;
      }
      this.#send('ping', { nonce: randomUUID() });
    }, this.#heartbeatMs);
  }

  #send<T extends MessageType>(type: T, body: Body<T>): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.#sessionId === null) return false;
    ws.send(
      encodeFrame(this.#o.identity, { type, body, from: this.#o.nodeId, to: 'coordinator', session: this.#sessionId }),
    );
    return true;
  }

  #sendRaw<T extends MessageType>(ws: WebSocket, type: T, body: Body<T>): void {
    ws.send(encodeFrame(this.#o.identity, { type, body, from: this.#o.nodeId, to: 'coordinator', session: null }));
  }
}

/** One coordinator session as the admin API shows it. */
export interface SessionStatus {
  url: string;
  state: SessionState;
  up: boolean;
}

export interface SessionSetOptions extends Omit<SessionOptions, 'url' | 'onState'> {
  /** Every coordinator replica's URL (config coordinator.urls); one session each. */
  urls: readonly string[];
  /** How many held proposals' asking sessions are remembered (default 10 000); the oldest is forgotten first. */
  maxRoutes?: number;
}

/**
 * The node's sessions with every coordinator replica (docs/architecture.md, "The session set").
 *
 * Replicas of one coordinator share their database: each drives the rounds it holds a lease on and sends their
 * proposals on its own session. So the node dials every configured URL and keeps one `CoordinatorSession` per URL,
 * each with its own handshake, pinned-key check, replay guard, clock check, rate limit, heartbeat and reconnect
 * backoff: nothing is shared between them but the review behind them. A replica that is down, slow or refusing
 * affects its own session only.
 *
 * Frames are answered on the session they came on (CoordinatorSession does that). Review does not change: every
 * proposal, whichever replica sends it, goes through the one review pipeline, which decodes and hashes the
 * transaction itself; the same transaction asked by two replicas (a takeover re-asks) finds its slot recorded in
 * the signing ledger and gets the same signature, and a different transaction for a slot already signed is refused
 * (pipeline.ts). A decision made outside a review (an operator approves a held proposal) goes to the sessions that
 * asked for that proposal, queued on those that are down; when the node does not know who asked (it restarted
 * since), to every session: a replica that shares the database accepts it, and the node loses nothing either way,
 * since a held proposal asked again after a sync is answered from the ledger.
 *
 * Ready while at least one session is up. The set is fixed at start: a URL added to or removed from the config
 * takes effect at the next restart (SIGHUP reloads the policy only; docs/operations/coordinator-replicas.md).
 */
export class CoordinatorSessions {
  readonly sessions: readonly CoordinatorSession[];
  readonly #metrics: NodeMetrics | undefined;
  readonly #maxRoutes: number;
  /** proposalId -> the sessions that asked for it and got `hold` (bounded: a forgotten one goes to every session). */
  readonly #routes = new Map<string, Set<CoordinatorSession>>();
  #upWaiters: (() => void)[] = [];

  constructor(opts: SessionSetOptions) {
    if (opts.urls.length === 0) throw new Error('CoordinatorSessions needs at least one coordinator URL');
    const { urls, handlers, logger, maxRoutes, ...common } = opts;
    this.#metrics = opts.metrics;
    this.#maxRoutes = maxRoutes ?? 10_000;
    this.sessions = urls.map((url) => {
      const session: CoordinatorSession = new CoordinatorSession({
        ...common,
        // A spread copies a getter's value once: read the caller's key at every handshake instead, so that after a
        // key switch each session reconnects announcing the new key (the coordinator refuses the old one).
        get stellarKey() {
          return opts.stellarKey;
        },
        url,
        logger: logger.child({ coordinator: url }),
        onState: () => this.#changed(),
        handlers: {
          onProposal: async (body) => {
            const decision = await handlers.onProposal(body);
            if (decision.outcome === 'hold') this.#route(body.proposalId, session);
            return decision;
          },
          onCancel: (body) => {
            this.#routes.delete(body.proposalId);
            handlers.onCancel(body);
          },
          ...(handlers.onFrostDkg ? { onFrostDkg: handlers.onFrostDkg } : {}),
          ...(handlers.onFrostRefresh ? { onFrostRefresh: handlers.onFrostRefresh } : {}),
        },
      });
      return session;
    });
    this.#metrics?.sessionUp.set(0);
    for (const s of this.sessions) this.#metrics?.coordinatorSessionUp.set({ coordinator: s.url }, 0);
  }

  /** True while at least one session is up: the node can be asked. */
  get isUp(): boolean {
    return this.sessions.some((s) => s.isUp);
  }

  /** Each session's URL and state, in config order. */
  status(): SessionStatus[] {
    return this.sessions.map((s) => ({ url: s.url, state: s.state, up: s.isUp }));
  }

  start(): void {
    for (const s of this.sessions) s.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.stop()));
  }

  /** Resolves once at least one session is up. */
  waitUp(): Promise<void> {
    if (this.isUp) return Promise.resolve();
    return new Promise((res) => this.#upWaiters.push(res));
  }

  /**
   * Send a decision made outside a review (manual approval or rejection) to the sessions that asked for the
   * proposal, or to every session when none is known; each one that is down sends it after its next welcome.
   * Returns true when it left on at least one session now.
   */
  sendDecision(body: Body<'decision'>): boolean {
    const asked = this.#routes.get(body.proposalId);
    const targets = asked && asked.size > 0 ? [...asked] : this.sessions;
    this.#routes.delete(body.proposalId);
    let now = false;
    for (const s of targets) {
      now = now || s.isUp;
      s.sendDecision(body);
    }
    return now;
  }

  #route(proposalId: string, session: CoordinatorSession): void {
    let set = this.#routes.get(proposalId);
    if (!set) {
      if (this.#routes.size >= this.#maxRoutes) this.#routes.delete(this.#routes.keys().next().value as string);
      set = new Set();
      this.#routes.set(proposalId, set);
    }
    set.add(session);
  }

  #changed(): void {
    const up = this.isUp;
    this.#metrics?.sessionUp.set(up ? 1 : 0);
    if (up) for (const w of this.#upWaiters.splice(0)) w();
  }
}

import { randomBytes, randomUUID } from 'node:crypto';
import { DEFAULT_MAX_SKEW_MS, decodeFrame, encodeFrame, peekSender } from '@cosigner/protocol/frame';
import type { Identity } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { ReplayGuard, TokenBucket } from '@cosigner/protocol/replay';
import type { Logger } from '@cosigner/runtime/logger';
import { type Corkable, type WriteBatch, writeBatch } from '@cosigner/runtime/write-batch';
import type { WebSocket } from 'ws';
import type { MisbehaviourKind } from './codes.ts';
import type { Metrics } from './metrics.ts';
import { type Awaitable, type AwaitableRepository, type NodeRecord, type NodeRepository, step } from './store.ts';

/**
 * The node side of the coordinator: authenticated WebSocket sessions that nodes dial out to
 * (docs/architecture.md, "Components and trust boundaries"). Handshake: we send `hello` with a fresh 32-byte challenge, signed with the
 * coordinator message key; the node answers `auth` signed with the identity key it was ENROLLED with (we pick
 * that key by the claimed sender id before verifying: peekSender), echoing the challenge and naming its
 * Stellar key and network; we answer `welcome` with a session id that every later frame carries.
 * A node is refused at connect when it is unknown, its signature or challenge is wrong, or its Stellar key or
 * network differs from its enrolment. Frames are rate-limited per session: a flood is dropped and flagged.
 */

/** WebSocket close codes (4000-4999 are for applications, RFC 6455 section 7.4.2). */
export const CLOSE = {
  UNKNOWN_NODE: 4001,
  AUTH_FAILED: 4002,
  STELLAR_KEY_MISMATCH: 4003,
  NETWORK_MISMATCH: 4004,
  RATE_LIMITED: 4008,
  REPLACED: 4009,
  HANDSHAKE_TIMEOUT: 4010,
  HEARTBEAT_TIMEOUT: 4011,
  /** The coordinator's store could not be read: the node retries its connection (RFC 6455 1013 Try Again Later). */
  TRY_AGAIN_LATER: 1013,
  SHUTDOWN: 1001,
} as const;

export interface HubHandlers {
  /** The node asked for every open proposal it can help with. */
  onSync(nodeId: string): void;
  onDecision(nodeId: string, stellarKey: string, body: Body<'decision'>): void;
  /** A node's answer to a FROST key-generation step (frost/dkg.ts). */
  onFrostDkgReply?(nodeId: string, body: Body<'frost-dkg-reply'>): void;
  onFrostRefreshReply?(nodeId: string, body: Body<'frost-refresh-reply'>): void;
  /** Something wrong came from an authenticated node. */
  onMisbehaviour(nodeId: string, kind: MisbehaviourKind, detail: string, proposalId?: string): void;
}

export interface HubOptions {
  identity: Identity;
  network: string;
  nodes: AwaitableRepository<NodeRepository>;
  logger: Logger;
  metrics: Metrics;
  heartbeatMs: number;
  handshakeTimeoutMs: number;
  framesPerSecond: number;
  frameBurst: number;
  handlers: HubHandlers;
  maxSkewMs?: number;
}

interface Session {
  nodeId: string;
  stellarKey: string;
  identityKey: Buffer;
  sessionId: string;
  socket: WebSocket;
  /** The frames of one turn leave in one write (runtime/write-batch.ts); absent without the raw socket. */
  batch: WriteBatch | undefined;
  connectedAt: number;
  bucket: TokenBucket;
  dropped: number;
  flaggedFlood: boolean;
  lastPong: number;
  /** When last_seen was last written: a durable write per frame would cost an fsync per decision. */
  lastTouch: number;
  heartbeat: NodeJS.Timeout;
}

/** last_seen is a liveness hint for operators (GET /v1/nodes), kept to this resolution. */
export const TOUCH_INTERVAL_MS = 1000;

export interface ConnectedNode {
  nodeId: string;
  stellarKey: string;
  connectedAt: number;
}

export class NodeHub {
  readonly #sessions = new Map<string, Session>();
  readonly #replay: ReplayGuard;
  readonly #pending = new Set<WebSocket>();

  constructor(private readonly o: HubOptions) {
    this.#replay = new ReplayGuard({ ttlMs: 2 * (o.maxSkewMs ?? DEFAULT_MAX_SKEW_MS) });
  }

  connected(): ConnectedNode[] {
    return [...this.#sessions.values()].map((s) => ({
      nodeId: s.nodeId,
      stellarKey: s.stellarKey,
      connectedAt: s.connectedAt,
    }));
  }

  /** Send one signed frame to a connected node; false when it is not connected. */
  send<T extends MessageType>(nodeId: string, type: T, body: Body<T>): boolean {
    const s = this.#sessions.get(nodeId);
    if (!s || s.socket.readyState !== s.socket.OPEN) return false;
    s.batch?.beforeWrite();
    s.socket.send(encodeFrame(this.o.identity, { type, body, from: 'coordinator', to: nodeId, session: s.sessionId }));
    return true;
  }

  /**
   * Take over a freshly upgraded socket: run the handshake, then the session. `raw`: the TCP socket under it (the
   * upgrade request's), so that the frames sent to the node in one turn share one write.
   */
  handle(socket: WebSocket, raw?: Corkable): void {
    const batch = raw ? writeBatch(raw) : undefined;
    const challenge = randomBytes(32).toString('base64');
    this.#pending.add(socket);
    let session: Session | undefined;
    const timer = setTimeout(() => {
      if (!session) this.#refuse(socket, CLOSE.HANDSHAKE_TIMEOUT, 'handshake timeout');
    }, this.o.handshakeTimeoutMs);
    socket.send(
      encodeFrame(this.o.identity, {
        type: 'hello',
        body: {
          challenge,
          coordinatorKey: this.o.identity.publicKeyB64,
          networkPassphrase: this.o.network,
          serverTime: Date.now(),
        },
        from: 'coordinator',
        to: '*',
        session: null,
      }),
    );
    let authenticating = false;
    socket.on('message', (data: Buffer) => {
      if (session) {
        this.#onFrame(session, data);
        return;
      }
      // One handshake frame: a node sends nothing more before `welcome`; anything it does send meanwhile is dropped.
      if (authenticating) return;
      authenticating = true;
      clearTimeout(timer);
      const done = this.#authenticate(socket, data, challenge, batch);
      if (!(done instanceof Promise)) {
        session = done;
        return;
      }
      done.then(
        (s) => {
          session = s;
        },
        (err: unknown) => {
          this.o.logger.error({ err: (err as Error).message }, 'node handshake failed: store unavailable');
          this.#refuse(socket, CLOSE.TRY_AGAIN_LATER, 'coordinator store unavailable; try again later');
        },
      );
    });
    socket.on('close', () => {
      clearTimeout(timer);
      this.#pending.delete(socket);
      if (session && this.#sessions.get(session.nodeId) === session) {
        clearInterval(session.heartbeat);
        this.#sessions.delete(session.nodeId);
        this.o.metrics.connectedNodes.set(this.#sessions.size);
        this.o.logger.info({ nodeId: session.nodeId }, 'node disconnected');
      } else if (session) {
        clearInterval(session.heartbeat);
      }
    });
    socket.on('error', () => undefined);
  }

  #refuse(socket: WebSocket, code: number, reason: string): undefined {
    this.o.logger.warn({ code, reason }, 'node connection refused');
    socket.close(code, reason);
    return undefined;
  }

  /** A value on a synchronous store; on PostgreSQL a promise (the enrolment is read from the database). */
  #authenticate(
    socket: WebSocket,
    data: Buffer,
    challenge: string,
    batch: WriteBatch | undefined,
  ): Awaitable<Session | undefined> {
    const claimed = peekSender(data);
    if (claimed === undefined) return this.#refuse(socket, CLOSE.UNKNOWN_NODE, 'unknown node: not enrolled');
    return step(this.o.nodes.getNode(claimed), (enrolled) => this.#admit(socket, data, challenge, enrolled, batch));
  }

  #admit(
    socket: WebSocket,
    data: Buffer,
    challenge: string,
    enrolled: NodeRecord | undefined,
    batch: WriteBatch | undefined,
  ): Session | undefined {
    // The socket may have closed while the enrolment was read.
    if (socket.readyState !== socket.OPEN) return undefined;
    if (!enrolled) return this.#refuse(socket, CLOSE.UNKNOWN_NODE, 'unknown node: not enrolled');
    const identityKey = Buffer.from(enrolled.identityKey, 'base64');
    let env: ReturnType<typeof decodeFrame>['envelope'];
    try {
      env = decodeFrame(data, {
        trustedKeys: [identityKey],
        sender: 'node',
        self: 'coordinator',
        session: null,
        replay: this.#replay,
        maxSkewMs: this.o.maxSkewMs,
      }).envelope;
    } catch (e) {
      return this.#refuse(socket, CLOSE.AUTH_FAILED, `auth failed: ${(e as { code?: string }).code ?? 'bad frame'}`);
    }
    // decodeFrame already refused every non-handshake type (they need a session) and coordinator-only types.
    const body = env.body as Body<'auth'>;
    if (
      env.type !== 'auth' ||
      body.nodeId !== enrolled.id ||
      env.from !== enrolled.id ||
      body.identityKey !== enrolled.identityKey
    ) {
      return this.#refuse(socket, CLOSE.AUTH_FAILED, 'auth failed: node id or identity key differs');
    }
    if (body.challenge !== challenge) return this.#refuse(socket, CLOSE.AUTH_FAILED, 'auth failed: wrong challenge');
    if (body.stellarKey !== enrolled.stellarKey) {
      return this.#refuse(socket, CLOSE.STELLAR_KEY_MISMATCH, 'stellar key differs from enrolment');
    }
    if (body.networkPassphrase !== this.o.network) {
      return this.#refuse(socket, CLOSE.NETWORK_MISMATCH, 'network passphrase differs from the coordinator');
    }
    this.#pending.delete(socket);
    const now = Date.now();
    const session: Session = {
      nodeId: enrolled.id,
      stellarKey: enrolled.stellarKey,
      identityKey,
      sessionId: randomUUID(),
      socket,
      batch,
      connectedAt: now,
      bucket: new TokenBucket(this.o.framesPerSecond, this.o.frameBurst, now),
      dropped: 0,
      flaggedFlood: false,
      lastPong: now,
      lastTouch: now,
      heartbeat: setInterval(() => this.#beat(session), this.o.heartbeatMs),
    };
    const previous = this.#sessions.get(enrolled.id);
    this.#sessions.set(enrolled.id, session);
    if (previous) {
      // A reconnecting node replaces its older socket: one live session per node.
      clearInterval(previous.heartbeat);
      previous.socket.close(CLOSE.REPLACED, 'replaced by a newer session');
    }
    this.o.metrics.connectedNodes.set(this.#sessions.size);
    this.#touch(enrolled.id, now);
    socket.send(
      encodeFrame(this.o.identity, {
        type: 'welcome',
        body: { sessionId: session.sessionId, heartbeatMs: this.o.heartbeatMs },
        from: 'coordinator',
        to: enrolled.id,
        session: null,
      }),
    );
    this.o.logger.info({ nodeId: enrolled.id, stellarKey: enrolled.stellarKey }, 'node connected');
    return session;
  }

  #beat(s: Session): void {
    if (Date.now() - s.lastPong > 3 * this.o.heartbeatMs) {
      // terminate(), not close(): a graceful close waits for the peer's close frame, which a silent partition
      // (packets dropped, no RST) never delivers, so ws would keep the session (shown connected, rounds waiting
      // on it) for its 30 s close timeout. A node that misses three heartbeats is gone now; it reconnects and
      // syncs when it can (RFC 6455 section 7.1.7: "_Fail the WebSocket Connection_" may drop the TCP connection).
      this.o.logger.warn({ nodeId: s.nodeId, code: CLOSE.HEARTBEAT_TIMEOUT }, 'heartbeat timeout; dropping the node');
      clearInterval(s.heartbeat);
      s.socket.terminate();
      return;
    }
    this.send(s.nodeId, 'ping', { nonce: String(Date.now()) });
  }

  #onFrame(s: Session, data: Buffer): void {
    if (this.#sessions.get(s.nodeId) !== s) return;
    if (!s.bucket.take()) {
      s.dropped++;
      if (!s.flaggedFlood) {
        s.flaggedFlood = true;
        this.o.handlers.onMisbehaviour(
          s.nodeId,
          'flood',
          `more than ${this.o.framesPerSecond} frames/s (burst ${this.o.frameBurst})`,
        );
      }
      if (s.dropped > this.o.frameBurst) s.socket.close(CLOSE.RATE_LIMITED, 'rate limit exceeded');
      return;
    }
    let env: ReturnType<typeof decodeFrame>['envelope'];
    try {
      env = decodeFrame(data, {
        trustedKeys: [s.identityKey],
        sender: 'node',
        self: 'coordinator',
        session: s.sessionId,
        replay: this.#replay,
        maxSkewMs: this.o.maxSkewMs,
      }).envelope;
    } catch (e) {
      this.o.handlers.onMisbehaviour(s.nodeId, 'bad_frame', (e as { code?: string }).code ?? 'undecodable frame');
      return;
    }
    if (env.from !== s.nodeId) {
      this.o.handlers.onMisbehaviour(s.nodeId, 'bad_frame', 'frame names another sender');
      return;
    }
    const now = Date.now();
    const touch = (): void => {
      if (now - s.lastTouch < TOUCH_INTERVAL_MS) return;
      s.lastTouch = now;
      this.#touch(s.nodeId, now);
    };
    switch (env.type) {
      case 'sync':
        touch();
        this.o.handlers.onSync(s.nodeId);
        break;
      case 'decision':
        touch();
        this.o.handlers.onDecision(s.nodeId, s.stellarKey, env.body as Body<'decision'>);
        break;
      case 'frost-dkg-reply':
        this.o.handlers.onFrostDkgReply?.(s.nodeId, env.body as Body<'frost-dkg-reply'>);
        break;
      case 'frost-refresh-reply':
        this.o.handlers.onFrostRefreshReply?.(s.nodeId, env.body as Body<'frost-refresh-reply'>);
        break;
      case 'ping':
        this.send(s.nodeId, 'pong', { nonce: (env.body as Body<'ping'>).nonce });
        break;
      case 'pong': {
        s.lastPong = now;
        s.lastTouch = now;
        const sent = Number((env.body as Body<'pong'>).nonce);
        this.#touch(s.nodeId, now, Number.isFinite(sent) && sent <= now ? now - sent : undefined);
        break;
      }
      default:
        // 'error': informational only (messages.ts); logged, never acted on.
        this.o.logger.info({ nodeId: s.nodeId, body: env.body }, 'node reported an error');
    }
  }

  /** last_seen is a hint: a write that fails (store unavailable) is logged and dropped. */
  #touch(nodeId: string, at: number, latencyMs?: number): void {
    const written = this.o.nodes.touchNode(nodeId, at, latencyMs);
    if (written instanceof Promise) {
      written.catch((err: unknown) =>
        this.o.logger.warn({ nodeId, err: (err as Error).message }, 'last_seen not kept'),
      );
    }
  }

  close(): void {
    for (const s of this.#sessions.values()) {
      clearInterval(s.heartbeat);
      s.socket.close(CLOSE.SHUTDOWN, 'coordinator shutting down');
    }
    for (const socket of this.#pending) socket.close(CLOSE.SHUTDOWN, 'coordinator shutting down');
    this.#sessions.clear();
    this.#pending.clear();
    this.o.metrics.connectedNodes.set(0);
  }
}

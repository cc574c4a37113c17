import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { decodeFrame, type Envelope, encodeFrame } from '@cosigner/protocol/frame';
import { generateIdentity, type Identity, parsePublicKeyB64 } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { ReplayGuard } from '@cosigner/protocol/replay';
import { type WebSocket, WebSocketServer } from 'ws';

/**
 * A coordinator-side test double that speaks the real protocol over a real `ws` server: hello with a fresh
 * challenge, verifies the node's `auth` (signature by the identity key it names, echoed challenge), welcome,
 * answers `sync` by re-sending every open proposal, records decisions. Tests also use it to send forged,
 * replayed or stale frames.
 */
export interface NodeConn {
  ws: WebSocket;
  nodeId: string;
  sessionId: string;
  identityKey: Buffer;
  stellarKey: string;
}

export class CoordinatorDouble {
  readonly identity: Identity;
  readonly wss: WebSocketServer;
  readonly url: string;
  readonly network: string;
  readonly decisions: Body<'decision'>[] = [];
  readonly frames: Envelope[] = [];
  /** Proposals re-sent on every sync until a decision with a signature (or reject) arrives. */
  readonly open = new Map<string, Body<'proposal'>>();
  readonly conns = new Map<string, NodeConn>();
  connects = 0;
  heartbeatMs: number;
  /** When false, the double never answers pings (to test the node's dead-peer detection). */
  answerPings = true;
  #waiters: { pred: () => boolean; res: () => void }[] = [];

  private constructor(wss: WebSocketServer, url: string, network: string, heartbeatMs: number, identity: Identity) {
    this.wss = wss;
    this.url = url;
    this.network = network;
    this.heartbeatMs = heartbeatMs;
    this.identity = identity;
  }

  static async start(opts: {
    network: string;
    heartbeatMs?: number;
    identity?: Identity;
    port?: number;
  }): Promise<CoordinatorDouble> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: opts.port ?? 0, path: '/v1/nodes/connect' });
    await new Promise<void>((res) => wss.once('listening', () => res()));
    const port = (wss.address() as AddressInfo).port;
    const c = new CoordinatorDouble(
      wss,
      `ws://127.0.0.1:${port}`,
      opts.network,
      opts.heartbeatMs ?? 1000,
      opts.identity ?? generateIdentity().identity,
    );
    wss.on('connection', (ws) => c.#onConnection(ws));
    return c;
  }

  get port(): number {
    return (this.wss.address() as AddressInfo).port;
  }

  #notify(): void {
    for (const w of [...this.#waiters]) {
      if (w.pred()) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.res();
      }
    }
  }

  /** Resolve when `pred` holds (checked on every received frame and every 20 ms), or reject after `ms`. */
  waitFor(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((res, rej) => {
      const poll = setInterval(() => this.#notify(), 20);
      const t = setTimeout(() => {
        clearInterval(poll);
        rej(new Error(`timed out waiting for ${what}`));
      }, ms);
      this.#waiters.push({
        pred,
        res: () => {
          clearTimeout(t);
          clearInterval(poll);
          res();
        },
      });
    });
  }

  async waitNode(nodeId: string): Promise<NodeConn> {
    await this.waitFor(() => this.conns.get(nodeId)?.ws.readyState === 1, `node ${nodeId} to connect`);
    return this.conns.get(nodeId) as NodeConn;
  }

  async waitDecision(proposalId: string, ms?: number): Promise<Body<'decision'>> {
    await this.waitFor(() => this.decisions.some((d) => d.proposalId === proposalId), `decision for ${proposalId}`, ms);
    return this.decisions.filter((d) => d.proposalId === proposalId).at(-1) as Body<'decision'>;
  }

  #onConnection(ws: WebSocket): void {
    this.connects += 1;
    const challenge = randomBytes(32).toString('base64');
    const replay = new ReplayGuard({ ttlMs: 60_000 });
    let conn: NodeConn | undefined;
    ws.send(
      encodeFrame(this.identity, {
        type: 'hello',
        from: 'coordinator',
        to: '*',
        session: null,
        body: {
          challenge,
          coordinatorKey: this.identity.publicKeyB64,
          networkPassphrase: this.network,
          serverTime: Date.now(),
        },
      }),
    );
    ws.on('message', (data) => {
      const raw = data.toString();
      if (!conn) {
        // auth: trust the identity key the node names, but only if the frame verifies under it.
        const p = JSON.parse((JSON.parse(raw) as { p: string }).p) as { body?: { identityKey?: string } };
        const key = parsePublicKeyB64(String(p.body?.identityKey), 'identityKey');
        const { envelope } = decodeFrame(raw, {
          trustedKeys: [key],
          sender: 'node',
          self: 'coordinator',
          session: null,
          replay,
        });
        if (envelope.type !== 'auth') return ws.close(4001, 'expected auth');
        const body = envelope.body as Body<'auth'>;
        if (body.challenge !== challenge || body.networkPassphrase !== this.network) return ws.close(4001, 'bad auth');
        conn = {
          ws,
          nodeId: body.nodeId,
          sessionId: `s-${randomUUID()}`,
          identityKey: key,
          stellarKey: body.stellarKey,
        };
        this.conns.set(body.nodeId, conn);
        this.#sendTo(conn, 'welcome', { sessionId: conn.sessionId, heartbeatMs: this.heartbeatMs }, null);
        this.#notify();
        return;
      }
      const { envelope } = decodeFrame(raw, {
        trustedKeys: [conn.identityKey],
        sender: 'node',
        self: 'coordinator',
        session: conn.sessionId,
        replay,
      });
      this.frames.push(envelope);
      if (envelope.type === 'sync') {
        for (const p of this.open.values()) this.send(conn.nodeId, 'proposal', p);
      } else if (envelope.type === 'decision') {
        const d = envelope.body as Body<'decision'>;
        this.decisions.push(d);
        if (d.outcome !== 'hold') this.open.delete(d.proposalId);
      } else if (envelope.type === 'ping' && this.answerPings) {
        this.send(conn.nodeId, 'pong', { nonce: (envelope.body as Body<'ping'>).nonce });
      }
      this.#notify();
    });
  }

  #sendTo<T extends MessageType>(conn: NodeConn, type: T, body: Body<T>, session: string | null): string {
    const raw = encodeFrame(this.identity, { type, body, from: 'coordinator', to: conn.nodeId, session });
    conn.ws.send(raw);
    return raw;
  }

  /** Build a frame for a node's current session (optionally forged, stale or with a chosen id). */
  frame<T extends MessageType>(
    nodeId: string,
    type: T,
    body: Body<T>,
    over: { signer?: Identity; ts?: number; id?: string; session?: string | null } = {},
  ): string {
    const conn = this.conns.get(nodeId);
    if (!conn) throw new Error(`node ${nodeId} is not connected`);
    return encodeFrame(over.signer ?? this.identity, {
      type,
      body,
      from: 'coordinator',
      to: nodeId,
      session: over.session === undefined ? conn.sessionId : over.session,
      ts: over.ts,
      id: over.id,
    });
  }

  /** Send a signed frame in the node's session; returns the raw frame (tests replay it). */
  send<T extends MessageType>(nodeId: string, type: T, body: Body<T>): string {
    const raw = this.frame(nodeId, type, body);
    this.sendRaw(nodeId, raw);
    return raw;
  }

  sendRaw(nodeId: string, raw: string | Buffer): void {
    this.conns.get(nodeId)?.ws.send(raw);
  }

  /** Send a proposal and keep it open (re-sent on sync) until decided. */
  propose(nodeId: string, body: Body<'proposal'>): string {
    this.open.set(body.proposalId, body);
    return this.send(nodeId, 'proposal', body);
  }

  /** Drop every node connection (the node reconnects). */
  dropAll(): void {
    for (const c of this.conns.values()) c.ws.terminate();
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((res) => this.wss.close(() => res()));
  }
}

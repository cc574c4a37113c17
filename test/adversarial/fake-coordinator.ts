import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
// The real protocol package, by path (test/ depends on the testkit only): the attacker speaks the same wire format.
import { decodeFrame, type Envelope, encodeFrame } from '@cosigner/protocol/frame';
import type { Identity } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { ReplayGuard } from '@cosigner/protocol/replay';
import { type WebSocket, WebSocketServer } from 'ws';

/**
 * A malicious coordinator: a WebSocket server that holds the coordinator's message key (so the nodes, which pin
 * that key, accept its frames) and speaks the real node protocol, but sends whatever the test asks, including
 * frames a real coordinator never would (replays, forged signatures, stale timestamps, other sessions).
 *
 * It serves `/v1/nodes/connect` exactly as services/coordinator does: `hello` with a fresh challenge, checks the
 * node's `auth` against the node's enrolled identity key, `welcome` with a session id, then answers pings and
 * records every frame a node sends (decisions above all).
 */

export interface EnrolledNode {
  id: string;
  /** Base64 raw ed25519 identity key, as in coordinator.yaml. */
  identityKey: string;
}

export interface FakeSession {
  nodeId: string;
  sessionId: string;
  socket: WebSocket;
}

/** How the next handshakes are done (tests of the handshake itself). */
export interface HelloOverride {
  /** Sign `hello` with this key instead of the pinned one. */
  identity?: Identity;
  /** Announce this network passphrase in `hello`. */
  network?: string;
}

export interface HandshakeRecord {
  /** Did the node answer `hello` with an `auth` frame? */
  authReceived: boolean;
  nodeId: string | null;
  closedAt?: number;
}

type Decision = Body<'decision'>;

export class FakeCoordinator {
  readonly #server: Server;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Map<string, FakeSession>();
  readonly #replay = new ReplayGuard({ ttlMs: 60_000 });
  readonly #decisions: { nodeId: string; body: Decision }[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #frost: { nodeId: string; body: Body<'frost-dkg-reply'> }[] = [];
  readonly handshakes: HandshakeRecord[] = [];
  /** When set, every new connection gets this `hello` (and the session is never opened by us). */
  helloOverride: HelloOverride | undefined;

  constructor(
    private readonly o: { identity: Identity; network: string; nodes: readonly EnrolledNode[]; heartbeatMs?: number },
  ) {
    this.#server = createServer((_req, res) => {
      res.writeHead(404).end();
    });
    this.#wss = new WebSocketServer({ noServer: true });
    this.#server.on('upgrade', (req, socket, head) => {
      if (!req.url?.startsWith('/v1/nodes/connect')) {
        socket.destroy();
        return;
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#handle(ws));
    });
  }

  /** Listen on 127.0.0.1:`port` (the real coordinator's port once it is stopped, so the nodes redial us). */
  listen(port: number): Promise<void> {
    return new Promise((res, rej) => {
      this.#server.once('error', rej);
      this.#server.listen(port, '127.0.0.1', () => res());
    });
  }

  async close(): Promise<void> {
    for (const s of this.#sessions.values()) s.socket.terminate();
    for (const c of this.#wss.clients) c.terminate();
    this.#wss.close();
    await new Promise<void>((res) => this.#server.close(() => res()));
  }

  session(nodeId: string): FakeSession | undefined {
    return this.#sessions.get(nodeId);
  }

  /** Wait until `nodeId` has an open session (it dialled us and authenticated). */
  async waitForSession(nodeId: string, timeoutMs = 30_000): Promise<FakeSession> {
    await this.#until(() => this.#sessions.get(nodeId)?.socket.readyState === 1, timeoutMs, `${nodeId} session`);
    return this.#sessions.get(nodeId)!;
  }

  /** Drop a node's socket: it redials (tests of the handshake). */
  disconnect(nodeId: string): void {
    const s = this.#sessions.get(nodeId);
    this.#sessions.delete(nodeId);
    s?.socket.terminate();
  }

  /**
   * A signed frame for `nodeId`'s session, as the real coordinator would build it; every field can be overridden
   * to build a frame the real one never would (another key, id, timestamp, session or recipient).
   */
  frame<T extends MessageType>(
    nodeId: string,
    type: T,
    body: Body<T>,
    over: { identity?: Identity; id?: string; ts?: number; session?: string | null; to?: string } = {},
  ): string {
    const s = this.#sessions.get(nodeId);
    return encodeFrame(over.identity ?? this.o.identity, {
      type,
      body,
      from: 'coordinator',
      to: over.to ?? nodeId,
      session: over.session !== undefined ? over.session : (s?.sessionId ?? null),
      id: over.id,
      ts: over.ts,
    });
  }

  /** Send raw text to a node's open session. */
  sendRaw(nodeId: string, raw: string): void {
    const socket = this.#sessions.get(nodeId)?.socket;
    if (socket?.readyState !== 1) throw new Error(`${nodeId} has no open session with the fake coordinator`);
    socket.send(raw);
  }

  /** Send a `proposal` frame and return the decision the node answers with. */
  async propose(nodeId: string, body: Body<'proposal'>, timeoutMs = 30_000): Promise<Decision> {
    const before = this.decisions(nodeId, body.proposalId).length;
    this.sendRaw(nodeId, this.frame(nodeId, 'proposal', body));
    return this.waitForDecision(nodeId, body.proposalId, before, timeoutMs);
  }

  /** Decisions received so far from `nodeId` for a proposal id. */
  decisions(nodeId: string, proposalId: string): Decision[] {
    return this.#decisions.filter((d) => d.nodeId === nodeId && d.body.proposalId === proposalId).map((d) => d.body);
  }

  /** Send one FROST key-generation step to a node and return its reply to that step of that session. */
  async frostDkg(nodeId: string, body: Body<'frost-dkg'>, timeoutMs = 60_000): Promise<Body<'frost-dkg-reply'>> {
    const mine = () =>
      this.#frost.find((r) => r.nodeId === nodeId && r.body.dkgId === body.dkgId && r.body.step === body.step);
    this.sendRaw(nodeId, this.frame(nodeId, 'frost-dkg', body));
    await this.#until(() => mine() !== undefined, timeoutMs, `${nodeId}'s reply to ${body.step} of ${body.dkgId}`);
    return mine()!.body;
  }

  /** Every decision received, in arrival order. */
  allDecisions(): readonly { nodeId: string; body: Decision }[] {
    return this.#decisions;
  }

  /** The (after+1)-th decision from `nodeId` for `proposalId`. */
  async waitForDecision(nodeId: string, proposalId: string, after = 0, timeoutMs = 30_000): Promise<Decision> {
    await this.#until(
      () => this.decisions(nodeId, proposalId).length > after,
      timeoutMs,
      `${nodeId}'s decision on ${proposalId}`,
    );
    return this.decisions(nodeId, proposalId)[after]!;
  }

  async #until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`fake coordinator: timed out waiting for ${what}`);
      await new Promise<void>((res) => {
        const t = setTimeout(done, Math.min(left, 200));
        function done(): void {
          clearTimeout(t);
          res();
        }
        this.#waiters.add(done);
      });
    }
  }

  #wake(): void {
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }

  #handle(ws: WebSocket): void {
    const record: HandshakeRecord = { authReceived: false, nodeId: null };
    this.handshakes.push(record);
    const challenge = randomBytes(32).toString('base64');
    const over = this.helloOverride;
    ws.send(
      encodeFrame(over?.identity ?? this.o.identity, {
        type: 'hello',
        body: {
          challenge,
          coordinatorKey: this.o.identity.publicKeyB64,
          networkPassphrase: over?.network ?? this.o.network,
          serverTime: Date.now(),
        },
        from: 'coordinator',
        to: '*',
        session: null,
      }),
    );
    let session: FakeSession | undefined;
    ws.on('message', (data: Buffer) => {
      if (!session) {
        record.authReceived = true;
        session = this.#authenticate(ws, data, challenge, record);
        this.#wake();
        return;
      }
      this.#onFrame(session, data);
    });
    ws.on('close', () => {
      record.closedAt = Date.now();
      if (session && this.#sessions.get(session.nodeId) === session) this.#sessions.delete(session.nodeId);
      this.#wake();
    });
    ws.on('error', () => undefined);
  }

  #authenticate(ws: WebSocket, data: Buffer, challenge: string, record: HandshakeRecord): FakeSession | undefined {
    let env: Envelope;
    try {
      const from = (JSON.parse(JSON.parse(data.toString()).p) as { from: string }).from;
      const enrolled = this.o.nodes.find((n) => n.id === from);
      if (!enrolled) throw new Error('unknown node');
      env = decodeFrame(data, {
        trustedKeys: [Buffer.from(enrolled.identityKey, 'base64')],
        sender: 'node',
        self: 'coordinator',
        session: null,
        replay: this.#replay,
      }).envelope;
    } catch {
      ws.close(4002, 'auth failed');
      return undefined;
    }
    const body = env.body as Body<'auth'>;
    if (env.type !== 'auth' || body.challenge !== challenge || body.nodeId !== env.from) {
      ws.close(4002, 'auth failed');
      return undefined;
    }
    record.nodeId = body.nodeId;
    const session: FakeSession = { nodeId: body.nodeId, sessionId: randomUUID(), socket: ws };
    this.#sessions.get(body.nodeId)?.socket.terminate();
    this.#sessions.set(body.nodeId, session);
    ws.send(
      encodeFrame(this.o.identity, {
        type: 'welcome',
        body: { sessionId: session.sessionId, heartbeatMs: this.o.heartbeatMs ?? 5_000 },
        from: 'coordinator',
        to: body.nodeId,
        session: null,
      }),
    );
    return session;
  }

  #onFrame(s: FakeSession, data: Buffer): void {
    let env: Envelope;
    try {
      const enrolled = this.o.nodes.find((n) => n.id === s.nodeId)!;
      env = decodeFrame(data, {
        trustedKeys: [Buffer.from(enrolled.identityKey, 'base64')],
        sender: 'node',
        self: 'coordinator',
        session: s.sessionId,
        replay: this.#replay,
      }).envelope;
    } catch {
      return;
    }
    if (env.type === 'ping') {
      s.socket.send(this.frame(s.nodeId, 'pong', { nonce: (env.body as Body<'ping'>).nonce }));
    } else if (env.type === 'decision') {
      this.#decisions.push({ nodeId: s.nodeId, body: env.body as Decision });
      this.#wake();
    } else if (env.type === 'frost-dkg-reply') {
      this.#frost.push({ nodeId: s.nodeId, body: env.body as Body<'frost-dkg-reply'> });
      this.#wake();
    }
  }
}

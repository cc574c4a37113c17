// The real protocol package, by path (test/ depends on the testkit only): the rogue node speaks the real wire format.
import { decodeFrame, type Envelope, encodeFrame } from '@cosigner/protocol/frame';
import type { Identity } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { ReplayGuard } from '@cosigner/protocol/replay';
import WebSocket from 'ws';

/**
 * A misbehaving node: a client holding a REAL node's identity key (its host was taken over), which
 * authenticates to the real coordinator exactly as services/cosigner does and then answers proposals with
 * whatever `answer` returns (garbage signatures, signatures by another key or over another hash), or floods frames.
 */
export interface RogueNodeOptions {
  /** The coordinator's base URL (http://host:port); the rogue dials `ws://host:port/v1/nodes/connect`. */
  coordinatorUrl: string;
  nodeId: string;
  identity: Identity;
  /** The Stellar key the node was enrolled with (the coordinator refuses any other at connect). */
  stellarKey: string;
  network: string;
  /** The coordinator message key (raw 32 bytes): the rogue checks `hello` as a real node would. */
  coordinatorKey: Buffer;
  /** The decision to send for a proposal; undefined sends nothing. */
  answer(p: Body<'proposal'>): Body<'decision'> | undefined | Promise<Body<'decision'> | undefined>;
  /** The answer to a FROST key-generation step; undefined (or no handler) sends nothing. */
  frostDkg?(b: Body<'frost-dkg'>): Body<'frost-dkg-reply'> | undefined;
}

export class RogueNode {
  readonly proposals: Body<'proposal'>[] = [];
  closeCode: number | undefined;
  #ws: WebSocket;
  #session: string | null = null;
  readonly #replay = new ReplayGuard({ ttlMs: 60_000 });

  private constructor(
    private readonly o: RogueNodeOptions,
    ws: WebSocket,
  ) {
    this.#ws = ws;
  }

  /** Connect and complete the handshake; rejects when the coordinator closes the socket first. */
  static connect(o: RogueNodeOptions): Promise<RogueNode> {
    const u = new URL(o.coordinatorUrl);
    const ws = new WebSocket(`${u.protocol === 'https:' ? 'wss' : 'ws'}://${u.host}/v1/nodes/connect`);
    const rogue = new RogueNode(o, ws);
    return new Promise((res, rej) => {
      ws.on('message', (data: Buffer) => {
        const env = rogue.#decode(data);
        if (!env) return;
        if (env.type === 'hello') {
          rogue.#send('auth', {
            nodeId: o.nodeId,
            identityKey: o.identity.publicKeyB64,
            stellarKey: o.stellarKey,
            challenge: (env.body as Body<'hello'>).challenge,
            networkPassphrase: o.network,
            version: 'rogue',
          });
        } else if (env.type === 'welcome') {
          rogue.#session = (env.body as Body<'welcome'>).sessionId;
          rogue.#send('sync', {});
          res(rogue);
        } else if (env.type === 'proposal') {
          const p = env.body as Body<'proposal'>;
          rogue.proposals.push(p);
          void Promise.resolve(o.answer(p)).then((d) => {
            if (d) rogue.#send('decision', d);
          });
        } else if (env.type === 'frost-dkg') {
          const reply = o.frostDkg?.(env.body as Body<'frost-dkg'>);
          if (reply) rogue.#send('frost-dkg-reply', reply);
        } else if (env.type === 'ping') {
          rogue.#send('pong', { nonce: (env.body as Body<'ping'>).nonce });
        }
      });
      ws.on('close', (code) => {
        rogue.closeCode = code;
        rej(new Error(`the coordinator closed the rogue node's socket (${code})`));
      });
      ws.on('error', () => undefined);
    });
  }

  /** Send `count` well-signed ping frames as fast as possible. */
  flood(count: number): void {
    for (let i = 0; i < count; i++) this.#send('ping', { nonce: String(i) });
  }

  /** Resolves with the close code once the coordinator (or we) closed the socket. */
  closed(): Promise<number> {
    if (this.closeCode !== undefined) return Promise.resolve(this.closeCode);
    return new Promise((res) => this.#ws.once('close', (code: number) => res(code)));
  }

  close(): void {
    this.#ws.terminate();
  }

  #decode(data: Buffer): Envelope | undefined {
    try {
      return decodeFrame(data, {
        trustedKeys: [this.o.coordinatorKey],
        sender: 'coordinator',
        self: this.o.nodeId,
        session: this.#session,
        replay: this.#replay,
      }).envelope;
    } catch {
      return undefined;
    }
  }

  #send<T extends MessageType>(type: T, body: Body<T>): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    this.#ws.send(
      encodeFrame(this.o.identity, { type, body, from: this.o.nodeId, to: 'coordinator', session: this.#session }),
    );
  }
}

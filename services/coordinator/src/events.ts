import { createHmac } from 'node:crypto';
import type { lookup as dnsLookup } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from '@cosigner/runtime/logger';
import { Type } from 'typebox';
import { DestinationPolicy } from './destinations.ts';
import { type Awaitable, type AwaitableRepository, type EventRecord, type EventRepository, step } from './store.ts';

/**
 * Every step of a proposal, in order: stored (so `GET /v1/events?since=` style replays and audits work),
 * pushed to live WebSocket subscribers, and POSTed to the proposal's callback URL.
 *
 * Callbacks are signed like Stripe/GitHub webhooks: `x-cosigner-signature: sha256=<hex HMAC-SHA256(secret,
 * "<timestamp>.<body>")>` with `x-cosigner-timestamp`, so a receiver can check origin and freshness. They are
 * retried with exponential backoff up to `maxAttempts` (bounded: a dead receiver cannot grow memory forever).
 * They go only where `callbacks.allowedDestinations` and the mode allow (destinations.ts), checked on the address
 * the socket connects to, and a redirect is never followed (node:http does not follow one; a 3xx is a failure).
 */

const Str = (description: string) => Type.String({ description });
const Reasons = Type.Array(
  Type.Object({
    code: Type.String(),
    message: Type.String(),
    opIndex: Type.Optional(Type.Integer()),
    field: Type.Optional(Type.String()),
  }),
  { description: "The node's reasons, each with a policy or protocol code" },
);
const Ended = (what: string) =>
  Type.Object({
    reason: Str(what),
    code: Type.Optional(Str('A registered code when one names the cause (e.g. COORD_SOROBAN_ENTRY_EXPIRED)')),
  });

/**
 * What each event's `data` holds: the contract of the event stream (`/v1/events`) and of callbacks. The OpenAPI
 * document serves it as `components.schemas.Event` (app.ts); a coordinator test checks every event the tests emit
 * against it and the document against this table, so the two cannot drift.
 */
export const EVENT_DATA = {
  'proposal.created': Type.Object({
    hash: Str('Transaction hash, or for auth rounds the digest of the entry payloads'),
    requirements: Type.Array(
      Type.Object(
        { accountId: Type.String(), level: Type.String(), weight: Type.Integer() },
        { additionalProperties: true },
      ),
    ),
    kind: Type.Optional(Str('authEntries or sorobanTx for Soroban auth rounds')),
  }),
  'node.approved': Type.Object({
    nodeId: Type.String(),
    signerKey: Type.String(),
    entries: Type.Optional(Type.Array(Type.Integer(), { description: 'Auth rounds: the entries the node signed' })),
  }),
  'node.rejected': Type.Object({ nodeId: Type.String(), reasons: Reasons }),
  'node.held': Type.Object({ nodeId: Type.String(), reasons: Reasons }),
  /** The node's key backend could not sign (SIGNER_UNAVAILABLE): a transient refusal, asked again later. */
  'node.unavailable': Type.Object({ nodeId: Type.String(), reasons: Reasons }),
  'node.misbehaved': Type.Object({ nodeId: Type.String(), kind: Type.String(), detail: Type.String() }),
  'quorum.reached': Type.Object({
    signatures: Type.Optional(Type.Integer({ description: 'Transactions: signatures in the minimal set' })),
    entries: Type.Optional(Type.Integer({ description: 'Auth rounds: entries signed' })),
  }),
  'proposal.submitted': Type.Object({
    ledger: Type.Union([Type.Integer(), Type.Null()]),
    attempts: Type.Integer(),
  }),
  'proposal.failed': Type.Object({
    reason: Type.String(),
    code: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description: 'Result code from the network, or a registered code (e.g. COORD_FOLLOW_UP_FAILED)',
      }),
    ),
  }),
  'proposal.rejected': Ended('Who refused and why, or which requirement cannot be reached'),
  'proposal.expired': Ended('Which bound passed: the time bound or an entry expiration ledger'),
  'proposal.cancelled': Ended('The client reason'),
  // Operator lifecycle (lifecycle.ts): a node's signing key changed; a step of setup/rotation/membership/thresholds.
  'node.key_changed': Type.Object({ nodeId: Type.String(), stellarKey: Type.String(), previous: Type.String() }),
  'lifecycle.step': Type.Object({
    action: Type.Union(['setup', 'rotate', 'node-add', 'node-remove', 'thresholds'].map((a) => Type.Literal(a))),
    step: Type.String({ description: 'e.g. started, key-created, added, switched, removed, deletion-scheduled' }),
    account: Type.Optional(Type.String()),
    nodeId: Type.Optional(Type.String()),
    proposalId: Type.Optional(Type.String()),
    detail: Type.Optional(
      Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()])),
    ),
  }),
};

export type EventType = keyof typeof EVENT_DATA;
export const EVENT_TYPES = Object.keys(EVENT_DATA) as EventType[];

/** One frame of `/v1/events` (and one callback body): which event, for which proposal, and its data. */
export const EventSchema = Type.Union(
  EVENT_TYPES.map((type) =>
    Type.Object(
      {
        seq: Type.Integer({ description: 'Position in the stream; resume with ?since=<seq>' }),
        proposalId: Type.Union([Type.String(), Type.Null()], { description: 'null for node and lifecycle events' }),
        type: Type.Literal(type),
        data: EVENT_DATA[type],
        createdAt: Type.Integer({ description: 'Unix milliseconds' }),
      },
      { title: type },
    ),
  ),
  { $id: 'Event', description: 'One event of the stream, a JSON text frame of /v1/events' },
);

export interface CallbackSettings {
  secret: string;
  maxAttempts: number;
  initialBackoffMs: number;
  timeoutMs: number;
  /** Hosts, `*.` names, IP literals and CIDRs callbacks may go to (empty: see destinations.ts). */
  allowedDestinations?: readonly string[];
  /** Production refuses loopback, private, link-local and metadata destinations unless listed. */
  production?: boolean;
  /** The resolver the callback socket uses (tests point a name at loopback). Default: the system's. */
  lookup?: typeof dnsLookup;
}

export function signCallback(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** What the event tail reads: the PostgreSQL store. */
export interface EventTailSource {
  eventsSince(seq: number, limit: number): Promise<EventRecord[]>;
  latestEventSeq(): Promise<number>;
}

const TAIL_BATCH = 500;

export class EventBus {
  readonly #subscribers = new Set<(e: EventRecord) => void>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #inflight = new Set<Promise<void>>();
  #closed = false;
  readonly #destinations: DestinationPolicy;

  /**
   * `afterCommit` (the store's): inside a grouped unit of work the event is written in that unit's transaction
   * and pushed only once it committed, so no subscriber or callback hears of a step that a crash could still
   * undo. Outside one, it is pushed as soon as it is written (its own commit).
   */
  constructor(
    private readonly repo: AwaitableRepository<EventRepository>,
    private readonly logger: Logger,
    private readonly callbacks: CallbackSettings,
    private readonly afterCommit: (fn: () => void) => void = (fn) => fn(),
  ) {
    this.#destinations = new DestinationPolicy({
      allowed: callbacks.allowedDestinations ?? [],
      production: callbacks.production ?? false,
    });
  }

  /** Why a proposal's callbackUrl is refused before anything is stored (IP literals, unlisted names). */
  callbackUrlRefusal(url: string): string | undefined {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return 'it is not a valid URL';
    }
    return this.#destinations.refusalForUrl(parsed);
  }

  /**
   * Store an event, push it to subscribers, and deliver it to `callbackUrl` when given. A value on a synchronous
   * store (so a grouped unit stays synchronous), a promise on PostgreSQL.
   */
  emit(
    proposalId: string | null,
    type: EventType,
    data: Record<string, unknown>,
    callbackUrl?: string | null,
  ): Awaitable<EventRecord> {
    return step(this.repo.appendEvent(proposalId, type, data, Date.now()), (e) => this.#published(e, callbackUrl));
  }

  #published(e: EventRecord, callbackUrl: string | null | undefined): EventRecord {
    this.afterCommit(() => {
      // Tailing the table (replicas): subscribers hear every replica's events from it, in order, each once.
      if (this.#tail) void this.#poll();
      else this.#push(e);
      if (callbackUrl) this.#deliver(callbackUrl, e, 1);
    });
    return e;
  }

  #push(e: EventRecord): void {
    for (const fn of this.#subscribers) {
      try {
        fn(e);
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, 'event subscriber failed');
      }
    }
  }

  #tail: { source: EventTailSource; last: number; timer: NodeJS.Timeout } | undefined;
  #polling = false;
  #pollAgain = false;

  /**
   * Feed subscribers from the store's events table instead of this process's own emits: with several replicas on
   * one database, a client streaming `/v1/events` from one replica hears what every replica wrote. Events are
   * numbered in commit order (pg/store.ts), so reading `seq > last` never skips one. Polled every `everyMs` and at
   * once after each local commit. A read that fails (database unreachable) is retried at the next tick.
   */
  async tail(source: EventTailSource, everyMs: number): Promise<void> {
    const last = await source.latestEventSeq();
    const timer = setInterval(() => void this.#poll(), everyMs);
    timer.unref();
    this.#tail = { source, last, timer };
  }

  async #poll(): Promise<void> {
    const tail = this.#tail;
    if (!tail) return;
    if (this.#polling) {
      this.#pollAgain = true;
      return;
    }
    this.#polling = true;
    try {
      do {
        this.#pollAgain = false;
        for (;;) {
          const batch = await tail.source.eventsSince(tail.last, TAIL_BATCH);
          for (const e of batch) {
            tail.last = e.seq;
            this.#push(e);
          }
          if (batch.length < TAIL_BATCH) break;
        }
      } while (this.#pollAgain && !this.#closed);
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'event tail read failed; next tick');
    } finally {
      this.#polling = false;
    }
  }

  subscribe(fn: (e: EventRecord) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  #deliver(url: string, e: EventRecord, attempt: number): void {
    if (this.#closed) return;
    const p = this.#post(url, e).then((outcome) => {
      this.#inflight.delete(p);
      if (outcome === 'ok' || this.#closed) return;
      if (outcome === 'refused') return; // the destination will not become allowed by retrying
      if (attempt >= this.callbacks.maxAttempts) {
        this.logger.warn({ proposalId: e.proposalId, seq: e.seq, attempts: attempt }, 'callback delivery gave up');
        return;
      }
      const t = setTimeout(
        () => {
          this.#timers.delete(t);
          this.#deliver(url, e, attempt + 1);
        },
        this.callbacks.initialBackoffMs * 2 ** (attempt - 1),
      );
      this.#timers.add(t);
    });
    this.#inflight.add(p);
  }

  /**
   * One POST over node:http(s) with the destination check in the socket's lookup. Resolves 'ok' on a 2xx,
   * 'refused' when the destination is not allowed (not retried), 'failed' otherwise (retried).
   */
  #post(url: string, e: EventRecord): Promise<'ok' | 'failed' | 'refused'> {
    const body = JSON.stringify({ event: e });
    const ts = String(Date.now());
    const refused = (why: string): 'refused' => {
      this.logger.warn({ proposalId: e.proposalId, seq: e.seq, reason: why }, 'callback destination refused');
      return 'refused';
    };
    // An IP literal never goes through a lookup: judge it (and names the list refuses outright) here.
    const early = this.callbackUrlRefusal(url);
    if (early !== undefined) return Promise.resolve(refused(early));
    const target = new URL(url);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve) => {
      const req = send(
        target,
        {
          method: 'POST',
          agent: false,
          lookup: this.#destinations.connectLookup(this.callbacks.lookup),
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'x-cosigner-event': e.type,
            'x-cosigner-timestamp': ts,
            'x-cosigner-signature': signCallback(this.callbacks.secret, ts, body),
          },
          signal: AbortSignal.timeout(this.callbacks.timeoutMs),
        },
        (res) => {
          // The answer's body is not used; read it away so the socket closes.
          res.resume();
          res.on('end', () =>
            resolve(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300 ? 'ok' : 'failed'),
          );
          res.on('error', () => resolve('failed'));
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        resolve(err.code === 'CALLBACK_DESTINATION_REFUSED' ? refused(err.message) : 'failed');
      });
      req.end(body);
    });
  }

  /** Stop retries; waits for requests in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#tail) clearInterval(this.#tail.timer);
    this.#tail = undefined;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all([...this.#inflight]);
  }
}

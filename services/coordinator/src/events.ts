import { createHmac } from 'node:crypto';
import type { lookup as dnsLookup } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from '@cosigner/runtime/logger';
import { Type } from 'typebox';
import { DestinationPolicy } from './destinations.ts';
import {
  type Awaitable,
  type AwaitableRepository,
  type CallbackOutcome,
  type CallbackRecord,
  type EventRecord,
  type EventRepository,
  step,
} from './store.ts';

/**
 * Every step of a proposal, in order: stored (so `GET /v1/events?since=` style replays and audits work),
 * pushed to live WebSocket subscribers, and POSTed to the proposal's callback URL.
 *
 * Callbacks are signed like Stripe/GitHub webhooks: `x-cosigner-signature: sha256=<hex HMAC-SHA256(secret,
 * "<timestamp>.<body>")>` with `x-cosigner-timestamp`, so a receiver can check origin and freshness. They are
 * retried with exponential backoff up to `maxAttempts`, then kept as failed (counted in
 * coordinator_callbacks_failed_total and logged).
 *
 * Delivery is durable (a transactional outbox): the event's commit also writes its callback to the store's
 * `callback_outbox`, and the row goes only once the receiver answered 2xx. Whoever runs the store delivers pending
 * rows: this process at once after the commit, its restarted self, or with replicas any replica (a claim with
 * FOR UPDATE SKIP LOCKED keeps two replicas from posting one row at once; the claim of a replica that died lapses
 * after one request timeout plus five seconds). At least once: a receiver may see an event twice (a crash after
 * the POST, before its row went) and deduplicates by the event's `seq`.
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
    frost: Type.Optional(
      Type.Object(
        { group: Type.String(), threshold: Type.Integer() },
        { description: 'FROST rounds (kind frostTx): the group that signs and its threshold' },
      ),
    ),
  }),
  'node.approved': Type.Object({
    nodeId: Type.String(),
    signerKey: Type.String(),
    entries: Type.Optional(Type.Array(Type.Integer(), { description: 'Auth rounds: the entries the node signed' })),
    frost: Type.Optional(
      Type.Object(
        { group: Type.String(), roundId: Type.String(), signers: Type.Array(Type.String()) },
        { description: 'FROST rounds: the approval whose share completed the group signature, and the t signers' },
      ),
    ),
  }),
  'node.rejected': Type.Object({ nodeId: Type.String(), reasons: Reasons }),
  'node.held': Type.Object({ nodeId: Type.String(), reasons: Reasons }),
  /** The node's key backend could not sign (SIGNER_UNAVAILABLE): a transient refusal, asked again later. */
  'node.unavailable': Type.Object({ nodeId: Type.String(), reasons: Reasons }),
  'node.misbehaved': Type.Object({ nodeId: Type.String(), kind: Type.String(), detail: Type.String() }),
  'quorum.reached': Type.Object({
    signatures: Type.Optional(Type.Integer({ description: 'Transactions: signatures in the minimal set' })),
    entries: Type.Optional(Type.Integer({ description: 'Auth rounds: entries signed' })),
    frost: Type.Optional(
      Type.Object({ group: Type.String() }, { description: 'FROST rounds: the group key that signed' }),
    ),
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
    action: Type.Union(
      ['setup', 'rotate', 'node-add', 'node-remove', 'thresholds', 'frost-swap'].map((a) => Type.Literal(a)),
    ),
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
  /** Who claims outbox rows (a replica's id); one process alone may leave the default. */
  holder?: string;
  /** How often pending rows are looked for (retries due, rows left by a restart or a dead replica). */
  pollMs?: number;
  /** Called once per callback given up on (a metric). */
  onFailed?: () => void;
}

export function signCallback(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** What the event tail reads: the PostgreSQL store. */
export interface EventTailSource {
  eventsSince(seq: number, limit: number): Promise<EventRecord[]>;
  latestEventSeq(): Promise<number>;
  /** Wake-ups when any replica commits an event (PostgreSQL LISTEN/NOTIFY); returns stop. */
  listenEvents?(onNotify: () => void): () => Promise<void>;
}

/**
 * The JSON text of an event, made once however many subscribers (event streams, the console) send it: an event
 * record is never changed after it is stored, so its text is kept with it (weakly: it goes with the record).
 */
const eventTexts = new WeakMap<EventRecord, string>();
export function eventJson(e: EventRecord): string {
  let text = eventTexts.get(e);
  if (text === undefined) {
    text = JSON.stringify(e);
    eventTexts.set(e, text);
  }
  return text;
}

const TAIL_BATCH = 500;
/** Outbox rows taken per pass. */
const CALLBACK_BATCH = 64;

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
    /** The store's unit of work, so settling a row shares the turn's commit (SQLite group commit). */
    private readonly unit: <T>(fn: () => Awaitable<T>) => Promise<T> = async (fn) => fn(),
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
    return step(this.repo.appendEvent(proposalId, type, data, Date.now(), callbackUrl ?? null), (e) =>
      this.#published(e, callbackUrl),
    );
  }

  #published(e: EventRecord, callbackUrl: string | null | undefined): EventRecord {
    this.afterCommit(() => {
      // Tailing the table (replicas): subscribers hear every replica's events from it, in order, each once.
      if (this.#tail) void this.#poll();
      else this.#push(e);
      // The outbox row committed with the event: deliver it now.
      if (callbackUrl) this.#kick();
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
   * numbered in commit order (pg/store.ts), so reading `seq > last` never skips one. Read at once after each local
   * commit and on each notification of another replica's commit (LISTEN/NOTIFY: milliseconds), and polled every
   * `everyMs` as the fallback, since a notification is lost with a dropped connection. A read that fails (database
   * unreachable) is retried at the next wake-up or tick.
   */
  async tail(source: EventTailSource, everyMs: number): Promise<void> {
    const last = await source.latestEventSeq();
    const timer = setInterval(() => void this.#poll(), everyMs);
    timer.unref();
    this.#tail = { source, last, timer };
    this.#unlisten = source.listenEvents?.(() => void this.#poll());
  }

  #unlisten: (() => Promise<void>) | undefined;

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

  /** Deliver pending outbox rows now and every `pollMs`: rows a restart or a dead replica left, retries due. */
  startOutbox(): void {
    if (this.#outboxTimer || this.#closed) return;
    this.#outboxTimer = setInterval(() => this.#kick(), this.callbacks.pollMs ?? 1000);
    this.#outboxTimer.unref();
    this.#kick();
  }

  #outboxTimer: NodeJS.Timeout | undefined;
  /** Outbox rows this process is posting now (SQLite claims write nothing: this set is the claim). */
  readonly #sending = new Set<number>();
  #passing = false;
  #passAgain = false;

  #kick(): void {
    if (this.#closed) return;
    if (this.#passing) {
      this.#passAgain = true;
      return;
    }
    this.#passing = true;
    const pass = this.#pass().finally(() => {
      this.#passing = false;
      this.#inflight.delete(pass);
    });
    this.#inflight.add(pass);
  }

  async #pass(): Promise<void> {
    const holder = this.callbacks.holder ?? 'local';
    // One request's time plus a margin: a replica that dies mid-POST leaves its rows to another after that.
    const claimMs = this.callbacks.timeoutMs + 5000;
    try {
      do {
        this.#passAgain = false;
        const due = await this.repo.claimCallbacks(holder, Date.now(), claimMs, CALLBACK_BATCH);
        for (const c of due) if (!this.#sending.has(c.id)) this.#send(c, holder);
        // Finished even when closing: close() waits for this pass and the posts it started.
      } while (this.#passAgain);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'callback outbox read failed; next poll');
    }
  }

  #send(c: CallbackRecord, holder: string): void {
    this.#sending.add(c.id);
    const e = c.event;
    const p = this.#post(c.url, e)
      .then(async (result) => {
        const attempts = c.attempts + 1;
        let outcome: CallbackOutcome;
        if (result === 'ok') outcome = { state: 'delivered' };
        else if (result === 'refused' || attempts >= this.callbacks.maxAttempts) {
          // A refused destination will not become allowed by retrying.
          const error = result === 'refused' ? 'destination refused' : 'no 2xx answer';
          outcome = { state: 'failed', attempts, error };
          this.callbacks.onFailed?.();
          this.logger.warn({ proposalId: e.proposalId, seq: e.seq, attempts, error }, 'callback delivery gave up');
        } else {
          const wait = this.callbacks.initialBackoffMs * 2 ** (attempts - 1);
          outcome = { state: 'retry', attempts, nextAt: Date.now() + wait, error: 'no 2xx answer' };
        }
        await this.unit(() => this.repo.settleCallback(c.id, holder, outcome));
        return outcome;
      })
      .catch((err: unknown) => {
        // Not settled: the row stays pending and is posted again (at least once).
        this.logger.warn({ proposalId: e.proposalId, seq: e.seq, err: (err as Error).message }, 'callback not settled');
      })
      .then((outcome) => {
        this.#sending.delete(c.id);
        this.#inflight.delete(p);
        // Look again once the retry is due (the periodic poll would find it too, later).
        if (outcome?.state === 'retry') this.#retryAt(outcome.nextAt);
      });
    this.#inflight.add(p);
  }

  /**
   * Look for due rows once the wall clock shows `nextAt`. A timer runs on the monotonic clock and can fire a
   * millisecond before `Date.now()` reaches the due time; the row would then not be due yet, and without the
   * periodic poll (or until it comes) the retry would wait: such an early timer is armed again for the rest.
   */
  #retryAt(nextAt: number): void {
    if (this.#closed) return;
    const t = setTimeout(
      () => {
        this.#timers.delete(t);
        if (Date.now() < nextAt) this.#retryAt(nextAt);
        else this.#kick();
      },
      Math.max(1, nextAt - Date.now()),
    );
    this.#timers.add(t);
  }

  /**
   * One POST over node:http(s) with the destination check in the socket's lookup. Resolves 'ok' on a 2xx,
   * 'refused' when the destination is not allowed (not retried), 'failed' otherwise (retried).
   */
  #post(url: string, e: EventRecord): Promise<'ok' | 'failed' | 'refused'> {
    const body = `{"event":${eventJson(e)}}`;
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
    clearInterval(this.#outboxTimer);
    if (this.#tail) clearInterval(this.#tail.timer);
    this.#tail = undefined;
    await this.#unlisten?.();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    // A pass in flight may start posts: wait until nothing is left.
    while (this.#inflight.size > 0) await Promise.all([...this.#inflight]);
  }
}

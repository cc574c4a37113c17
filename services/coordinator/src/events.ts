import { createHmac } from 'node:crypto';
import type { Logger } from '@cosigner/runtime/logger';
import type { EventRecord, EventRepository } from './store.ts';

/**
 * Every step of a proposal, in order: stored (so `GET /v1/events?since=` style replays and audits work),
 * pushed to live WebSocket subscribers, and POSTed to the proposal's callback URL.
 *
 * Callbacks are signed like Stripe/GitHub webhooks: `x-cosigner-signature: sha256=<hex HMAC-SHA256(secret,
 * "<timestamp>.<body>")>` with `x-cosigner-timestamp`, so a receiver can check origin and freshness. They are
 * retried with exponential backoff up to `maxAttempts` (bounded: a dead receiver cannot grow memory forever).
 */
export type EventType =
  | 'proposal.created'
  | 'node.approved'
  | 'node.rejected'
  | 'node.held'
  /** The node's key backend could not sign (SIGNER_UNAVAILABLE): a transient refusal, asked again later. */
  | 'node.unavailable'
  | 'node.misbehaved'
  | 'quorum.reached'
  | 'proposal.submitted'
  | 'proposal.failed'
  | 'proposal.rejected'
  | 'proposal.expired'
  | 'proposal.cancelled'
  // Operator lifecycle (lifecycle.ts): a node's signing key changed; a step of setup/rotation/membership/thresholds.
  | 'node.key_changed'
  | 'lifecycle.step';

export interface CallbackSettings {
  secret: string;
  maxAttempts: number;
  initialBackoffMs: number;
  timeoutMs: number;
}

export function signCallback(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export class EventBus {
  readonly #subscribers = new Set<(e: EventRecord) => void>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #inflight = new Set<Promise<void>>();
  #closed = false;

  /**
   * `afterCommit` (the store's): inside a grouped unit of work the event is written in that unit's transaction
   * and pushed only once it committed, so no subscriber or callback hears of a step that a crash could still
   * undo. Outside one, it is pushed as soon as it is written (its own commit).
   */
  constructor(
    private readonly repo: EventRepository,
    private readonly logger: Logger,
    private readonly callbacks: CallbackSettings,
    private readonly afterCommit: (fn: () => void) => void = (fn) => fn(),
  ) {}

  /** Store an event, push it to subscribers, and deliver it to `callbackUrl` when given. */
  emit(
    proposalId: string | null,
    type: EventType,
    data: Record<string, unknown>,
    callbackUrl?: string | null,
  ): EventRecord {
    const e = this.repo.appendEvent(proposalId, type, data, Date.now());
    this.afterCommit(() => {
      for (const fn of this.#subscribers) {
        try {
          fn(e);
        } catch (err) {
          this.logger.warn({ err: (err as Error).message }, 'event subscriber failed');
        }
      }
      if (callbackUrl) this.#deliver(callbackUrl, e, 1);
    });
    return e;
  }

  subscribe(fn: (e: EventRecord) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  #deliver(url: string, e: EventRecord, attempt: number): void {
    if (this.#closed) return;
    const p = this.#post(url, e).then((ok) => {
      this.#inflight.delete(p);
      if (ok || this.#closed) return;
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

  async #post(url: string, e: EventRecord): Promise<boolean> {
    const body = JSON.stringify({ event: e });
    const ts = String(Date.now());
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-cosigner-event': e.type,
          'x-cosigner-timestamp': ts,
          'x-cosigner-signature': signCallback(this.callbacks.secret, ts, body),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.callbacks.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      return res.status >= 200 && res.status < 300;
    } catch {
      return false;
    }
  }

  /** Stop retries; waits for requests in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all([...this.#inflight]);
  }
}

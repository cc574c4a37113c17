import { coordinatorErrors } from '../errors.ts';
import { acquireLease, fenced, type Lease, releaseLease, renewLease } from './lease.ts';
import type { PgStore } from './store.ts';

/**
 * A held round lease, kept alive: what a replica's round driver holds while it drives one round.
 *
 * Fencing (lease.ts) stops the database writes of a replica that lost its lease. It cannot stop what a replica
 * does outside the database: frames to nodes, a submission to the network. So the keeper also knows, on its own
 * clock, until when its lease is surely still valid, and aborts `signal` before that moment passes without a
 * successful renewal:
 * - a renewal is sent every `renewEveryMs` (default a third of the lease time), by the keeper itself or, for a
 *   replica's many rounds, by one batched statement for all of them (`external`: PgRoundLeases calls `renewed`
 *   with the batch's send time, so the rule below holds per lease);
 * - each successful renewal that was *sent* at local time t proves the lease valid until at least t + ttl (the
 *   database set expiry = its clock at execution + ttl, and execution came after sending), so the keeper counts
 *   from the send time, never from the answer;
 * - `signal` aborts when a renewal is refused (taken over), when a fenced write is refused, when the lease is
 *   released, or when the local deadline minus `safetyMs` passes (database unreachable, process paused). A driver
 *   checks `signal.aborted` (or listens) before every outside action.
 * Clock rates of the host and the database are assumed to agree over one lease time, not their absolute values.
 */
export class LeaseKeeper {
  readonly #store: PgStore;
  readonly #ttlMs: number;
  readonly #safetyMs: number;
  readonly #controller = new AbortController();
  readonly #clock: () => number;
  #lease: Lease;
  #validUntil: number;
  #timer: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;

  private constructor(
    store: PgStore,
    lease: Lease,
    opts: {
      ttlMs: number;
      renewEveryMs: number;
      safetyMs: number;
      clock: () => number;
      sentAt: number;
      external: boolean;
    },
  ) {
    this.#store = store;
    this.#lease = lease;
    this.#ttlMs = opts.ttlMs;
    this.#safetyMs = opts.safetyMs;
    this.#clock = opts.clock;
    this.#validUntil = opts.sentAt + opts.ttlMs;
    this.#armDeadline();
    if (!opts.external) {
      this.#timer = setInterval(() => void this.#renew(), opts.renewEveryMs);
      this.#timer.unref();
    }
  }

  /**
   * Take the round's lease and keep it. Null when another replica holds it.
   * @throws CosignerError COORD_STORE_UNAVAILABLE, COORD_BAD_REQUEST (timings that cannot work)
   */
  static async acquire(
    store: PgStore,
    proposalId: string,
    holder: string,
    ttlMs: number,
    opts: { renewEveryMs?: number; safetyMs?: number; clock?: () => number; external?: boolean } = {},
  ): Promise<LeaseKeeper | null> {
    const renewEveryMs = opts.renewEveryMs ?? Math.floor(ttlMs / 3);
    const safetyMs = opts.safetyMs ?? Math.min(1000, Math.floor(ttlMs / 10));
    if (!(renewEveryMs > 0 && renewEveryMs + safetyMs < ttlMs)) {
      throw coordinatorErrors.error(
        'COORD_BAD_REQUEST',
        { ttlMs, renewEveryMs, safetyMs },
        {
          message:
            'A lease must be renewed, with its safety margin, well within its time: renewEveryMs + safetyMs < ttlMs.',
        },
      );
    }
    const clock = opts.clock ?? (() => performance.now());
    const sentAt = clock();
    const lease = await acquireLease(store, proposalId, holder, ttlMs);
    return (
      lease &&
      new LeaseKeeper(store, lease, { ttlMs, renewEveryMs, safetyMs, clock, sentAt, external: opts.external ?? false })
    );
  }

  /** This keeper's clock (a batch renewal reads its send time on it). */
  now(): number {
    return this.#clock();
  }

  /**
   * The answer to a renewal sent at `sentAt` (this keeper's clock): the renewed lease, or null when the database
   * did not renew it (taken over or expired). Used by a batched renewal; the keeper's own renewals go through it too.
   */
  renewed(sentAt: number, renewed: Lease | null): void {
    if (this.signal.aborted) return;
    if (!renewed || renewed.token !== this.#lease.token) {
      this.#lose('taken over');
      return;
    }
    this.#lease = renewed;
    this.#validUntil = Math.max(this.#validUntil, sentAt + this.#ttlMs);
    this.#armDeadline();
  }

  get lease(): Lease {
    return this.#lease;
  }

  /** Aborted once this replica may no longer act for the round (reason: a COORD_LEASE_LOST error). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * A fenced write for the round (lease.ts `fenced`). A refusal also aborts `signal`.
   * @throws CosignerError COORD_LEASE_LOST, COORD_STORE_UNAVAILABLE
   */
  async write<T>(fn: (tx: PgStore) => Promise<T>): Promise<T> {
    if (this.signal.aborted) throw this.signal.reason as Error;
    try {
      return await fenced(this.#store, this.#lease, fn);
    } catch (e) {
      if (coordinatorErrors.is(e, 'COORD_LEASE_LOST')) this.#lose('taken over');
      throw e;
    }
  }

  /** Stop renewing and end the lease now, so another replica can take the round at once. */
  async release(): Promise<void> {
    const wasHeld = !this.signal.aborted;
    this.#lose('released');
    if (wasHeld) await releaseLease(this.#store, this.#lease).catch(() => undefined);
  }

  async #renew(): Promise<void> {
    if (this.signal.aborted) return;
    const sentAt = this.#clock();
    try {
      this.renewed(sentAt, await renewLease(this.#store, this.#lease, this.#ttlMs));
    } catch {
      // Unreachable database: keep trying at the next tick; the deadline stops the driver if none succeeds.
    }
  }

  #armDeadline(): void {
    clearTimeout(this.#deadline);
    const ms = Math.max(0, this.#validUntil - this.#safetyMs - this.#clock());
    this.#deadline = setTimeout(() => this.#lose('not renewed in time'), ms);
    this.#deadline.unref();
  }

  #lose(why: string): void {
    clearInterval(this.#timer);
    clearTimeout(this.#deadline);
    if (this.signal.aborted) return;
    this.#controller.abort(
      coordinatorErrors.error('COORD_LEASE_LOST', {
        proposalId: this.#lease.proposalId,
        token: this.#lease.token,
        why,
      }),
    );
  }
}

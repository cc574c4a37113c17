import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Awaitable } from '../store.ts';
import { renewLeases, unleasedOpenProposals } from './lease.ts';
import { LeaseKeeper } from './lease-keeper.ts';
import type { PgStore } from './store.ts';

/**
 * What the round engine and the submitter need to run as one of several coordinator replicas on one database
 * (docs/architecture.md "Coordinator replicas on PostgreSQL"): a round is driven only while this replica holds its lease, every
 * write for it is fenced by that lease, and rounds whose lease lapsed are found and taken over.
 */
export interface RoundLease {
  /** Aborted once this replica may no longer act for the round (taken over, not renewed in time, released). */
  readonly signal: AbortSignal;
  /**
   * Run `fn` as one transaction that commits only while the lease is still this replica's; store calls inside it
   * join it. @throws CosignerError COORD_LEASE_LOST (nothing written), COORD_STORE_UNAVAILABLE
   */
  write<T>(fn: () => Awaitable<T>): Promise<T>;
  /** Give the round up now (another replica may take it at once). */
  release(): Promise<void>;
}

export interface RoundLeases {
  /** Take the round's lease, or null when another replica holds it. The same lease when this one holds it. */
  acquire(proposalId: string): Promise<RoundLease | null>;
  /** Open proposals no replica drives now (never leased, or lease expired), oldest first. */
  candidates(limit: number): Promise<string[]>;
  /** Release every lease this replica holds (a clean stop). */
  releaseAll(): Promise<void>;
}

/** This process's name as a lease holder: host, pid and a random part (a restarted pid is another holder). */
export function replicaId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Round leases in PostgreSQL (lease.ts), each kept alive by a LeaseKeeper while held. The renewals of every lease
 * this replica holds go out as one statement every `ttlMs/3` (renewLeases), not one per round: the queries per
 * replica stay constant however many rounds it drives. Each keeper applies the answer with the batch's send time,
 * so its local validity rule (counted from the send time) holds per lease.
 */
export class PgRoundLeases implements RoundLeases {
  readonly #held = new Map<string, { keeper: LeaseKeeper; lease: RoundLease }>();
  readonly #timer: NodeJS.Timeout;
  #renewing = false;

  constructor(
    private readonly store: PgStore,
    readonly holder: string,
    private readonly ttlMs: number,
  ) {
    this.#timer = setInterval(() => void this.renewAll(), Math.floor(ttlMs / 3));
    this.#timer.unref();
  }

  /** One renewal statement for every lease held now (also run by the timer). Resolves once applied. */
  async renewAll(): Promise<void> {
    if (this.#renewing) return;
    const keepers = [...this.#held.values()].map((h) => h.keeper).filter((k) => !k.signal.aborted);
    if (keepers.length === 0) return;
    this.#renewing = true;
    // Every keeper uses the same monotonic clock; the send time is read before the statement goes out.
    const sentAt = keepers[0]!.now();
    try {
      const renewed = await renewLeases(
        this.store,
        this.holder,
        keepers.map((k) => k.lease),
        this.ttlMs,
      );
      for (const k of keepers) k.renewed(sentAt, renewed.get(k.lease.proposalId) ?? null);
    } catch {
      // Unreachable database: the next tick tries again; each keeper's deadline stops its driver meanwhile.
    } finally {
      this.#renewing = false;
    }
  }

  async acquire(proposalId: string): Promise<RoundLease | null> {
    const mine = this.#held.get(proposalId);
    if (mine && !mine.keeper.signal.aborted) return mine.lease;
    const keeper = await LeaseKeeper.acquire(this.store, proposalId, this.holder, this.ttlMs, { external: true });
    if (!keeper) return null;
    const lease: RoundLease = {
      signal: keeper.signal,
      write: (fn) => keeper.write(() => Promise.resolve(fn())),
      release: async () => {
        if (this.#held.get(proposalId)?.keeper === keeper) this.#held.delete(proposalId);
        await keeper.release();
      },
    };
    this.#held.set(proposalId, { keeper, lease });
    keeper.signal.addEventListener('abort', () => {
      if (this.#held.get(proposalId)?.keeper === keeper) this.#held.delete(proposalId);
    });
    return lease;
  }

  candidates(limit: number): Promise<string[]> {
    return unleasedOpenProposals(this.store, limit);
  }

  async releaseAll(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all([...this.#held.values()].map((h) => h.lease.release()));
  }

  /** Rounds this replica holds now (metrics, tests). */
  get size(): number {
    return this.#held.size;
  }
}

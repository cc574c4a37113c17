import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Awaitable } from '../store.ts';
import { unleasedOpenProposals } from './lease.ts';
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

/** Round leases in PostgreSQL (lease.ts), each kept alive by a LeaseKeeper while held. */
export class PgRoundLeases implements RoundLeases {
  readonly #held = new Map<string, { keeper: LeaseKeeper; lease: RoundLease }>();

  constructor(
    private readonly store: PgStore,
    readonly holder: string,
    private readonly ttlMs: number,
  ) {}

  async acquire(proposalId: string): Promise<RoundLease | null> {
    const mine = this.#held.get(proposalId);
    if (mine && !mine.keeper.signal.aborted) return mine.lease;
    const keeper = await LeaseKeeper.acquire(this.store, proposalId, this.holder, this.ttlMs);
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
    await Promise.all([...this.#held.values()].map((h) => h.lease.release()));
  }

  /** Rounds this replica holds now (metrics, tests). */
  get size(): number {
    return this.#held.size;
  }
}

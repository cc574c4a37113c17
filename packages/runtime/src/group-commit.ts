/**
 * Group commit for a synchronous SQLite connection (better-sqlite3).
 *
 * Why: both services keep `synchronous=FULL`, so every commit is an fsync, and better-sqlite3 runs it on the
 * event loop. One commit per step made the fsync, not the CPU, the limit under load (bench/README.md, profile
 * item 1). Here every unit of work queued during one turn of the event loop runs, in order, inside ONE
 * transaction, and that transaction commits once, before any caller hears back. Durability is unchanged:
 * a caller's promise resolves only after the commit that holds its writes returned, so nothing a caller does
 * next (answer a client, sign, send a frame) can get ahead of its own durable record.
 *
 * Each unit runs in a savepoint of its own: a unit that throws rolls back its own writes and rejects its own
 * promise; the units before and after it in the batch commit. A failed COMMIT rejects every unit of the
 * batch (nothing of it was written). Units run in the order they were queued and each sees the writes of
 * the ones before it, exactly as if each had been its own transaction: the checks inside a unit (a slot, a
 * velocity window, a compare-and-set on a status) keep their meaning.
 *
 * Effects that must follow the commit but are decided inside a unit (an event pushed to subscribers) are
 * registered with `afterCommit`; they run after the commit, in order, and are dropped with their unit's
 * savepoint when it rolls back.
 *
 * With `durability` (a WalSync, wal-sync.ts) the batch commits under `synchronous=NORMAL` and then syncs the WAL
 * itself, which is what FULL does, unless every unit that succeeded in it deferred its sync (`syncDeferred`):
 * then the callers resume with their writes committed but not yet on disk, and the next synced commit covers
 * them. A unit defers only when nothing leaves the process on the strength of its writes before such a commit
 * (the node's reservation: its signature leaves only after the signature's own, synced, commit).
 *
 * Written here rather than taken from a library: better-sqlite3 has no asynchronous or batched commit, and
 * the rule above (resolve only after the fsync) is the whole of it.
 */

/** The part of a better-sqlite3 `Database` this needs. */
export interface TransactionalDb {
  transaction(fn: () => unknown): { (): unknown; immediate(): unknown };
}

interface Unit {
  work: () => unknown;
  syncDeferred: ((value: unknown) => boolean) | undefined;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  after: Array<() => void>;
}

export interface GroupCommitOptions {
  /** Units per transaction at most; the rest wait for the next turn (bounds how long one commit blocks). */
  maxBatch?: number;
  /** `BEGIN IMMEDIATE` (take the write lock first: no other process interleaves) instead of `BEGIN`. */
  immediate?: boolean;
  /** Called with an error thrown by an afterCommit effect (the commit itself stands). */
  onEffectError?: (error: unknown) => void;
  /**
   * Commit under NORMAL and sync the WAL after the commit, skipping the sync when every unit deferred it (a
   * WalSync). Without it every commit syncs inside COMMIT (the connection's own `synchronous` setting).
   */
  durability?: { relaxed<T>(commit: () => T): T; sync(): void };
  /**
   * Called when a committed batch could not be synced (its units are rejected with the same error). The writes
   * are visible to this connection but may not be on disk: the process should stop, as PostgreSQL does after a
   * failed fsync, and recover from what the disk holds (wal-sync.ts `durableExit`).
   */
  onDurabilityError?: (error: unknown) => void;
}

export interface RunOptions<T> {
  /**
   * True when this unit's caller may resume before its writes are on disk (only with `durability`): it promises
   * that nothing leaves the process on the strength of them until a later synced commit covers them.
   */
  syncDeferred?: (value: T) => boolean;
}

export class GroupCommit {
  readonly #db: TransactionalDb;
  readonly #maxBatch: number;
  readonly #immediate: boolean;
  readonly #onEffectError: (error: unknown) => void;
  readonly #durability: GroupCommitOptions['durability'];
  readonly #onDurabilityError: (error: unknown) => void;
  #queue: Unit[] = [];
  #scheduled = false;
  /** The unit running now, inside the batch transaction. */
  #current: Unit | undefined;
  #batches = 0;
  #units = 0;

  constructor(db: TransactionalDb, opts: GroupCommitOptions = {}) {
    this.#db = db;
    this.#maxBatch = Math.max(1, opts.maxBatch ?? 256);
    this.#immediate = opts.immediate ?? false;
    this.#onEffectError = opts.onEffectError ?? (() => undefined);
    this.#durability = opts.durability;
    this.#onDurabilityError = opts.onDurabilityError ?? (() => undefined);
  }

  /**
   * Queue `work` (synchronous: it must not return a promise) to run in this turn's transaction. Resolves with
   * its result once that transaction committed and is on disk (see `syncDeferred`); rejects with what it threw
   * (its writes rolled back) or with the commit's (or the sync's) error.
   */
  run<T>(work: () => T, opts: RunOptions<T> = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        work,
        syncDeferred: opts.syncDeferred as ((v: unknown) => boolean) | undefined,
        resolve: resolve as (v: unknown) => void,
        reject,
        after: [],
      });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** True while a unit of work runs (inside the batch transaction). */
  get active(): boolean {
    return this.#current !== undefined;
  }

  /**
   * Run `fn` after the commit of the unit running now, or at once when no unit is running. Returns whether it
   * was deferred.
   */
  afterCommit(fn: () => void): boolean {
    if (!this.#current) {
      fn();
      return false;
    }
    this.#current.after.push(fn);
    return true;
  }

  /** Batches committed and units run so far (metrics, tests). */
  get stats(): { batches: number; units: number } {
    return { batches: this.#batches, units: this.#units };
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#queue.splice(0, this.#maxBatch);
    if (this.#queue.length > 0) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    const all = (): void => {
      for (const unit of batch) {
        this.#current = unit;
        try {
          // A nested transaction function is a SAVEPOINT: a throw undoes this unit's writes only.
          results.push({ ok: true, value: this.#db.transaction(unit.work)() });
        } catch (error) {
          unit.after.length = 0;
          results.push({ ok: false, error });
        } finally {
          this.#current = undefined;
        }
      }
    };
    const durability = this.#durability;
    try {
      const tx = this.#db.transaction(all);
      const commit = (): unknown => (this.#immediate ? tx.immediate() : tx());
      if (durability) durability.relaxed(commit);
      else commit();
    } catch (error) {
      for (const unit of batch) unit.reject(error);
      return;
    }
    if (durability && batch.some((unit, i) => results[i]!.ok && !this.#deferred(unit, results[i]!))) {
      try {
        durability.sync();
      } catch (error) {
        batch.forEach((unit, i) => {
          const r = results[i]!;
          unit.reject(r.ok ? error : r.error);
        });
        this.#onDurabilityError(error);
        return;
      }
    }
    this.#batches += 1;
    this.#units += batch.length;
    batch.forEach((unit, i) => {
      const r = results[i]!;
      if (!r.ok) {
        unit.reject(r.error);
        return;
      }
      for (const fn of unit.after) {
        try {
          fn();
        } catch (error) {
          this.#onEffectError(error);
        }
      }
      unit.resolve(r.value);
    });
  }

  #deferred(unit: Unit, r: { ok: true; value: unknown } | { ok: false; error: unknown }): boolean {
    if (!r.ok || !unit.syncDeferred) return false;
    try {
      return unit.syncDeferred(r.value) === true;
    } catch {
      return false;
    }
  }
}

import { type FileHandle, open, stat } from 'node:fs/promises';

/**
 * Durability of a SQLite WAL database without blocking the event loop on the fsync.
 *
 * Why: with `synchronous=FULL` every commit fsyncs the `-wal` file inside better-sqlite3's synchronous COMMIT, so
 * the whole process (every socket, every other proposal) waits on the disk: 11% of a node's busy time under load,
 * and 1-6 ms per commit on this machine when several processes fsync at once (bench/README.md). Here a group
 * commit runs with `synchronous=NORMAL` (SQLite appends the WAL frames with write(2) and does not sync; a commit is
 * then safe from a killed process but not yet from a power cut), and the caller hears back only after `sync()`
 * returned: an fdatasync(2) of the `-wal` file on libuv's thread pool, started after that commit. fdatasync flushes
 * every write made to the file before it was called, whichever descriptor made it, so once it returns the commit
 * is exactly as durable as under `synchronous=FULL` (which also syncs only the WAL at commit). While the disk
 * works, the event loop keeps serving.
 *
 * Checkpoints need nothing from us: under NORMAL, SQLite still syncs the WAL before it copies frames into the
 * database file and syncs that file before the WAL is reused. Commits made outside `relaxed` keep FULL and sync
 * themselves.
 *
 * One fdatasync at a time: callers that arrive while one runs share the next one, which starts when it ends
 * (group commit of the syncs). Before each one, the open descriptor is checked against the path (device and
 * inode), so a WAL file that was replaced (SQLite deletes the WAL when the last connection closes) is reopened,
 * never synced through a stale descriptor.
 *
 * Written here rather than taken from a library: SQLite has no asynchronous commit, and better-sqlite3 runs every
 * statement on the calling thread.
 */

/** The part of a better-sqlite3 `Database` this needs. */
export interface PragmaDb {
  readonly name: string;
  readonly memory: boolean;
  pragma(source: string, options?: { simple?: boolean }): unknown;
}

interface Waiter {
  gen: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class WalSync {
  readonly #db: PragmaDb;
  readonly #walPath: string;
  #handle: FileHandle | undefined;
  #requested = 0;
  #running = false;
  #waiters: Waiter[] = [];
  #syncs = 0;
  #closed = false;

  /** @throws Error when the database is in memory or not in WAL mode (nothing to sync, or not this way). */
  constructor(db: PragmaDb) {
    if (db.memory) throw new Error('WalSync needs a database file, not an in-memory database');
    const mode = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
    if (mode !== 'wal') throw new Error(`WalSync needs journal_mode=WAL (the database is in ${mode} mode)`);
    this.#db = db;
    this.#walPath = `${db.name}-wal`;
  }

  /**
   * Run `commit` (synchronous: it runs and commits a transaction) with `synchronous=NORMAL`, then restore FULL,
   * also when it throws. The commit is durable only after a `sync()` that started after it resolved.
   */
  relaxed<T>(commit: () => T): T {
    this.#db.pragma('synchronous = NORMAL');
    try {
      return commit();
    } finally {
      this.#db.pragma('synchronous = FULL');
    }
  }

  /** Resolves once everything committed before this call is on disk (fdatasync of the WAL); rejects if it failed. */
  sync(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('WalSync is closed'));
    this.#requested += 1;
    const gen = this.#requested;
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ gen, resolve, reject }));
    if (!this.#running) void this.#pump();
    return done;
  }

  /** fdatasync calls made so far (tests, metrics). */
  get syncs(): number {
    return this.#syncs;
  }

  /** Close the descriptor; later `sync()` calls reject. Waits for a running fdatasync. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#running) await new Promise((r) => setImmediate(r));
    await this.#handle?.close().catch(() => undefined);
    this.#handle = undefined;
  }

  async #pump(): Promise<void> {
    this.#running = true;
    try {
      while (this.#waiters.length > 0) {
        let upTo = this.#requested;
        let error: unknown;
        try {
          const handle = await this.#current();
          // Every caller counted by now committed before this fdatasync starts: it covers all of them.
          upTo = this.#requested;
          await handle.datasync();
          this.#syncs += 1;
        } catch (e) {
          error = e;
        }
        const settled = this.#waiters.filter((w) => w.gen <= upTo);
        this.#waiters = this.#waiters.filter((w) => w.gen > upTo);
        for (const w of settled) {
          if (error === undefined) w.resolve();
          else w.reject(error);
        }
      }
    } finally {
      this.#running = false;
    }
  }

  /** The open `-wal` file, reopened when the path now names another file than the one we hold. */
  async #current(): Promise<FileHandle> {
    if (this.#handle) {
      const [held, now] = await Promise.all([this.#handle.stat(), stat(this.#walPath).catch(() => undefined)]);
      if (now !== undefined && now.ino === held.ino && now.dev === held.dev) return this.#handle;
      await this.#handle.close().catch(() => undefined);
      this.#handle = undefined;
    }
    // Read-only is enough: fsync(2) and fdatasync(2) work on any descriptor of the file.
    this.#handle = await open(this.#walPath, 'r');
    return this.#handle;
  }
}

/**
 * A WalSync for `db` when it is a writable file in WAL mode; undefined otherwise (in memory, read-only, another
 * journal mode), where commits keep syncing inside COMMIT under the connection's own `synchronous` setting.
 */
export function walSyncFor(db: PragmaDb & { readonly readonly: boolean }): WalSync | undefined {
  if (db.memory || db.readonly) return undefined;
  if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') return undefined;
  return new WalSync(db);
}

/**
 * What a service does when a committed batch could not be synced: stop at once. After a failed fsync the kernel
 * may have dropped the dirty pages and a later fsync can succeed without them (PostgreSQL's "fsyncgate", 2018),
 * so writes this process already sees (a reserved slot) may never reach the disk. Carrying on could act on them;
 * a restart recovers from what the disk really holds.
 */
export function durableExit(error: unknown): never {
  process.stderr.write(
    `FATAL: the database could not be synced to disk (${(error as Error)?.message ?? String(error)}); stopping so that nothing acts on writes that may be lost\n`,
  );
  process.exit(70);
}

import { closeSync, fdatasyncSync, fstatSync, openSync, statSync } from 'node:fs';

/**
 * Commit now, make durable later: the two halves of a `synchronous=FULL` commit of a SQLite WAL database, taken
 * apart so that a group commit can skip the second half for writes that nothing outside the process acts on yet.
 *
 * Under FULL, SQLite syncs the `-wal` file at every commit. Under NORMAL it writes the WAL frames with write(2) and
 * does not sync: the commit survives a killed process (the kernel holds the pages) but a power cut may take it,
 * and after recovery the database is still consistent, holding a prefix of its commits (the WAL's checksums cut
 * it at the first frame that did not reach the disk). `relaxed` runs a commit under NORMAL; `sync` then does the
 * half that FULL would have done, an fdatasync(2) of the `-wal` file, which makes every commit made before it
 * durable, whichever descriptor wrote it. Checkpoints need nothing from us: under NORMAL SQLite still syncs the
 * WAL before copying it into the database file and syncs that file before the WAL is reused.
 *
 * Why (bench/README.md): a node made two durable commits per signature, the reservation and then the signature,
 * and on a machine where several nodes fsync at once each took 2-6 ms on the critical path. The reservation need
 * not be on disk before the key backend signs, only before the signature leaves the node, so the node defers its
 * sync to the signature's commit: one fdatasync per signature instead of two (review.ts says why that is safe).
 *
 * The sync is synchronous on purpose. Doing it on libuv's thread pool was measured and reverted: on this disk an
 * uncontended fdatasync takes about 0.3 ms, less than the pool's round trips added (commit e5cea98).
 *
 * Before each sync the held descriptor is checked against the path (device and inode), so a WAL that was replaced
 * (SQLite deletes it when the last connection closes) is reopened, never synced through a stale descriptor.
 */

/** The part of a better-sqlite3 `Database` this needs. */
export interface PragmaDb {
  readonly name: string;
  readonly memory: boolean;
  readonly readonly: boolean;
  pragma(source: string, options?: { simple?: boolean }): unknown;
}

export class WalSync {
  readonly #db: PragmaDb;
  readonly #walPath: string;
  #fd: number | undefined;
  #syncs = 0;

  /** @throws Error when the database is in memory, read-only or not in WAL mode (`walProblem`). */
  constructor(db: PragmaDb) {
    const problem = walProblem(db);
    if (problem !== undefined) throw new Error(problem);
    this.#db = db;
    this.#walPath = `${db.name}-wal`;
  }

  /**
   * Run `commit` (it runs and commits a transaction) with `synchronous=NORMAL`, then restore FULL, also when it
   * throws. What it committed is durable only after a later `sync()` (or a FULL commit) returned.
   */
  relaxed<T>(commit: () => T): T {
    this.#db.pragma('synchronous = NORMAL');
    try {
      return commit();
    } finally {
      this.#db.pragma('synchronous = FULL');
    }
  }

  /** Make every commit made so far durable: fdatasync(2) of the `-wal` file. Throws what the system call threw. */
  sync(): void {
    fdatasyncSync(this.#current());
    this.#syncs += 1;
  }

  /** fdatasync calls made so far (tests, metrics). */
  get syncs(): number {
    return this.#syncs;
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** The open `-wal` file, reopened when the path now names another file than the one held. */
  #current(): number {
    if (this.#fd !== undefined) {
      const held = fstatSync(this.#fd);
      let now: ReturnType<typeof statSync> | undefined;
      try {
        now = statSync(this.#walPath);
      } catch {
        now = undefined;
      }
      if (now !== undefined && now.ino === held.ino && now.dev === held.dev) return this.#fd;
      this.close();
    }
    // Read-only is enough: fsync(2) and fdatasync(2) work on any descriptor of the file.
    this.#fd = openSync(this.#walPath, 'r');
    return this.#fd;
  }
}

/**
 * A WalSync for `db` when it is a writable file in WAL mode; undefined otherwise (in memory, read-only, another
 * journal mode), where every commit keeps syncing under the connection's own `synchronous` setting.
 */
export function walSyncFor(db: PragmaDb): WalSync | undefined {
  return walProblem(db) === undefined ? new WalSync(db) : undefined;
}

/** Why `db` cannot be synced this way, or undefined when it is a writable file in WAL mode. */
function walProblem(db: PragmaDb): string | undefined {
  if (db.memory || db.readonly) return 'WalSync needs a writable database file';
  const mode = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
  return mode === 'wal' ? undefined : `WalSync needs journal_mode=WAL (the database is in ${mode} mode)`;
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

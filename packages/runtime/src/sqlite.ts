import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';

/** One numbered schema change: a file `NNN_name.sql` in a migrations folder; NNN is the schema version it makes. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The migrations of a folder, in version order (files not named `NNN_name.sql` are not migrations). */
export function listMigrations(dir: string): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((name) => ({ version: Number(name.slice(0, 3)), name, sql: readFileSync(join(dir, name), 'utf8') }));
}

export interface OpenDatabaseOptions {
  migrationsDir: string;
  /** The caller's registered error for a file whose schema is newer than its newest migration. */
  newerSchema: (details: { path: string; version: number; supported: number }) => Error;
  /** The caller's registered error for a migration that failed (its transaction rolled back). */
  migrationFailed: (details: { path: string; migration: string }, cause: unknown) => Error;
}

/**
 * Open a service's SQLite file, creating it if needed, and bring its schema up to date. The one way every store of
 * this project opens its database, so the rules below hold for all of them:
 * - the file is created by us with mode 0600 in a 0700 directory, so it is never, even briefly, readable by
 *   others; SQLite gives its -wal and -shm files the mode of the main file (os_unix.c findCreateFileMode), and
 *   files left by an older version are tightened too;
 * - WAL (readers never block the writer) and synchronous=FULL (a commit is on disk, the WAL fsynced, before it
 *   returns); savepoint journals in memory (temp_store, below); foreign keys enforced, said here rather than left to the driver's build default; a busy timeout for
 *   the odd second connection (a CLI reading a live file);
 * - a schema newer than the code is refused before anything is written: older code must not write to a layout
 *   it does not know;
 * - each pending migration runs in its own BEGIN IMMEDIATE transaction with its `user_version`, so a crash leaves
 *   the file at the last whole version and two processes cannot migrate the same file at once.
 */
export function openMigratedDatabase(path: string, opts: OpenDatabaseOptions): Database.Database {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
  for (const suffix of ['-wal', '-shm']) if (existsSync(path + suffix)) chmodSync(path + suffix, 0o600);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  // Savepoint (statement) journals in memory. Every unit of a group commit (group-commit.ts) runs in a SAVEPOINT,
  // and SQLite keeps the original of each page a savepoint changes in a sub-journal so that the savepoint can be
  // rolled back. With the default temp_store that journal spills past 64 KiB to an unlinked file in /var/tmp
  // (pager.c openSubJournal, SQLITE_STMTJRNL_SPILL): under load about 80% of the coordinator's write system calls
  // were to such files (strace, bench/README.md "The coordinator's CPU per proposal"). The journal is emptied when
  // each unit's savepoint is released, so in memory it holds one unit's pages. No durability is involved: a
  // sub-journal only undoes a savepoint of the open transaction and is never read in crash recovery (the WAL is).
  db.pragma('temp_store = MEMORY');
  const current = db.pragma('user_version', { simple: true }) as number;
  const migrations = listMigrations(opts.migrationsDir);
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    db.close();
    throw opts.newerSchema({ path, version: current, supported: latest });
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    try {
      db.transaction(() => {
        db.exec(m.sql);
        db.pragma(`user_version = ${m.version}`);
      }).immediate();
    } catch (cause) {
      db.close();
      throw opts.migrationFailed({ path, migration: m.name }, cause);
    }
  }
  return db;
}

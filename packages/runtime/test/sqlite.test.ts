import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listMigrations, openMigratedDatabase } from '../src/sqlite.ts';

// Real SQLite files in a temporary directory, with a migrations folder written by each test.
let dir: string;
let migrations: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sqlite-open-'));
  migrations = join(dir, 'migrations');
  await mkdir(migrations);
  await writeFile(join(migrations, '001_first.sql'), 'CREATE TABLE a (k TEXT PRIMARY KEY);');
  await writeFile(join(migrations, '002_second.sql'), 'CREATE TABLE b (k TEXT PRIMARY KEY REFERENCES a (k));');
  await writeFile(join(migrations, 'README.md'), 'not a migration');
  await writeFile(join(migrations, '3_bad_name.sql'), 'not a migration either');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const errors = {
  newerSchema: (d: { path: string; version: number; supported: number }) =>
    Object.assign(new Error(`newer ${d.version} > ${d.supported}`), { code: 'NEWER', details: d }),
  migrationFailed: (d: { path: string; migration: string }, cause: unknown) =>
    Object.assign(new Error(`failed ${d.migration}`), { code: 'FAILED', details: d, cause }),
};

describe('openMigratedDatabase', () => {
  it('lists only NNN_name.sql files, in version order', () => {
    expect(listMigrations(migrations).map((m) => [m.version, m.name])).toEqual([
      [1, '001_first.sql'],
      [2, '002_second.sql'],
    ]);
  });

  it('creates the file 0600 in a 0700 directory, with WAL, synchronous=FULL and the schema up to date', async () => {
    const path = join(dir, 'nested', 'store.sqlite');
    const db = openMigratedDatabase(path, { migrationsDir: migrations, ...errors });
    try {
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'nested'))).mode & 0o777).toBe(0o700);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
      expect(db.pragma('temp_store', { simple: true })).toBe(2); // MEMORY
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      expect(() => db.prepare('INSERT INTO b (k) VALUES (?)').run('missing')).toThrow(/FOREIGN KEY/);
    } finally {
      db.close();
    }
  });

  it('keeps savepoint journals in memory, and a rolled-back savepoint still undoes only its own rows', () => {
    const db = openMigratedDatabase(join(dir, 'store.sqlite'), { migrationsDir: migrations, ...errors });
    try {
      // temp_store=MEMORY (2): a group commit's savepoint journals no longer spill to temporary files (bench/README.md
      // counts the write system calls it saved; a count is the bench's to print, since a test process shares its
      // system-call counters with whatever else runs in it).
      expect(db.pragma('temp_store', { simple: true })).toBe(2);
      db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT);');
      db.exec('CREATE TABLE e (seq INTEGER PRIMARY KEY, d TEXT); CREATE INDEX e_d ON e (d);');
      const row = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      const event = db.prepare('INSERT INTO e (d) VALUES (?)');
      // As group-commit.ts runs a batch: one transaction, one savepoint per unit (a row and two events, as a
      // proposal and its event), a unit that throws rolls back its own writes.
      const batch = (from: number) =>
        db.transaction(() => {
          for (let i = from; i < from + 64; i++) {
            try {
              db.transaction(() => {
                row.run(`k${i}`, 'x'.repeat(600));
                event.run(`{"n":${i}}`.padEnd(300));
                event.run('y'.repeat(200));
                if (i % 16 === 15) throw new Error('this unit fails');
              })();
            } catch {
              // Its own rows only are undone.
            }
          }
        })();
      for (let b = 0; b <= 20; b++) batch(b * 1000);
      expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 21 * 60 });
      expect(db.prepare('SELECT count(*) AS n FROM e').get()).toEqual({ n: 21 * 60 * 2 });
      expect(db.prepare("SELECT count(*) AS n FROM t WHERE k = 'k1007'").get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });

  it('applies only the migrations a file lacks', async () => {
    const path = join(dir, 'store.sqlite');
    openMigratedDatabase(path, { migrationsDir: migrations, ...errors }).close();
    await writeFile(join(migrations, '003_third.sql'), 'CREATE TABLE c (k TEXT);');
    const db = openMigratedDatabase(path, { migrationsDir: migrations, ...errors });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(3);
      expect(listMigrations(migrations)).toHaveLength(3);
    } finally {
      db.close();
    }
  });

  it('refuses a schema newer than its newest migration, writing nothing', async () => {
    const path = join(dir, 'store.sqlite');
    const db = openMigratedDatabase(path, { migrationsDir: migrations, ...errors });
    db.pragma('user_version = 7');
    db.close();
    let thrown: unknown;
    try {
      openMigratedDatabase(path, { migrationsDir: migrations, ...errors });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'NEWER', details: { path, version: 7, supported: 2 } });
  });

  it('rolls a failed migration back whole and names it, keeping the last good version', async () => {
    const path = join(dir, 'store.sqlite');
    openMigratedDatabase(path, { migrationsDir: migrations, ...errors }).close();
    await writeFile(join(migrations, '003_broken.sql'), 'CREATE TABLE c (k TEXT); THIS IS NOT SQL;');
    let thrown: unknown;
    try {
      openMigratedDatabase(path, { migrationsDir: migrations, ...errors });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'FAILED', details: { path, migration: '003_broken.sql' } });
    await rm(join(migrations, '003_broken.sql'));
    const db = openMigratedDatabase(path, { migrationsDir: migrations, ...errors });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      // The broken migration's first statement did not survive its rollback.
      expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'c'").get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });

  it('tightens a file an older version left readable to 0600', async () => {
    const path = join(dir, 'store.sqlite');
    openMigratedDatabase(path, { migrationsDir: migrations, ...errors }).close();
    await chmod(path, 0o644);
    const db = openMigratedDatabase(path, { migrationsDir: migrations, ...errors });
    try {
      expect((await stat(path)).mode & 0o777).toBe(0o600);
    } finally {
      db.close();
    }
  });
});

import { spawnSync } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WalSync, walSyncFor } from '../src/wal-sync.ts';

// A real SQLite file in WAL mode with synchronous=FULL, as the services open theirs.
let dir: string;
let db: Database.Database;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wal-sync-'));
  db = new Database(join(dir, 'w.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE t (v INTEGER)');
});
afterEach(async () => {
  if (db.open) db.close();
  await rm(dir, { recursive: true, force: true });
});

const level = () => db.pragma('synchronous', { simple: true }) as number;

describe('WalSync', () => {
  it('refuses an in-memory, a read-only and a non-WAL database', () => {
    const mem = new Database(':memory:');
    expect(() => new WalSync(mem)).toThrow(/writable database file/);
    mem.close();
    const ro = new Database(join(dir, 'w.sqlite'), { readonly: true });
    expect(() => new WalSync(ro)).toThrow(/writable database file/);
    ro.close();
    const rollback = new Database(join(dir, 'r.sqlite'));
    rollback.pragma('journal_mode = DELETE');
    expect(() => new WalSync(rollback)).toThrow(/journal_mode=WAL \(the database is in delete mode\)/);
    rollback.close();
  });

  it('relaxed commits under synchronous=NORMAL and restores FULL, also when the commit throws', () => {
    const wal = new WalSync(db);
    expect(wal.relaxed(() => level())).toBe(1);
    expect(level()).toBe(2);
    expect(() =>
      wal.relaxed(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(level()).toBe(2);
  });

  it('syncs the WAL, and never through a descriptor the WAL path no longer names', async () => {
    const wal = new WalSync(db);
    wal.relaxed(() => db.prepare('INSERT INTO t VALUES (1)').run());
    wal.sync();
    wal.sync();
    expect(wal.syncs).toBe(2);
    const path = join(dir, 'w.sqlite-wal');
    // Another file at the path now: the next sync reopens and syncs that one.
    await rename(path, `${path}.old`);
    await writeFile(path, '');
    wal.sync();
    // No file at the path at all: the sync fails (the held descriptor would have "succeeded" on a stale file).
    await rm(path);
    expect(() => wal.sync()).toThrow(/ENOENT/);
    expect(wal.syncs).toBe(3);
    await rename(`${path}.old`, path);
    wal.close();
    wal.close();
  });

  it('walSyncFor: only for a writable file in WAL mode', () => {
    expect(walSyncFor(db)).toBeInstanceOf(WalSync);
    const mem = new Database(':memory:');
    expect(walSyncFor(mem)).toBeUndefined();
    mem.close();
    const ro = new Database(join(dir, 'w.sqlite'), { readonly: true });
    expect(walSyncFor(ro)).toBeUndefined();
    ro.close();
    const rollback = new Database(join(dir, 'r.sqlite'));
    rollback.pragma('journal_mode = DELETE');
    expect(walSyncFor(rollback)).toBeUndefined();
    rollback.close();
  });

  it('durableExit stops the process at once with status 70 and says why', () => {
    const mod = fileURLToPath(new URL('../src/wal-sync.ts', import.meta.url));
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(mod)}); m.durableExit(new Error('EIO: i/o error')); console.log('still running');`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(70);
    expect(r.stderr).toMatch(/FATAL: the database could not be synced to disk \(EIO: i\/o error\)/);
    expect(r.stdout).not.toContain('still running');
  });
});

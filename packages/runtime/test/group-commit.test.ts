import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/group-commit.ts';

// A real SQLite file in WAL mode with synchronous=FULL, as both services open theirs.
let dir: string;
let db: Database.Database;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'group-commit-'));
  db = new Database(join(dir, 'g.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)');
});
afterEach(async () => {
  if (db.open) db.close();
  await rm(dir, { recursive: true, force: true });
});

const insert =
  (k: string, v = 1) =>
  () =>
    db.prepare('INSERT INTO t (k, v) VALUES (?, ?)').run(k, v).changes;
const rows = () => db.prepare('SELECT k FROM t ORDER BY k').pluck().all();
/** What another connection (another process) sees: only committed rows. */
const committed = () => {
  const other = new Database(join(dir, 'g.sqlite'), { readonly: true });
  try {
    return other.prepare('SELECT k FROM t ORDER BY k').pluck().all();
  } finally {
    other.close();
  }
};

describe('GroupCommit', () => {
  it('runs the units of one turn in one transaction, in order, and resolves each only after the commit', async () => {
    const g = new GroupCommit(db);
    const seen: string[] = [];
    const a = g.run(() => {
      insert('a')();
      seen.push(`a sees ${rows().join(',')}`);
      return 'A';
    });
    const b = g.run(() => {
      insert('b')();
      seen.push(`b sees ${rows().join(',')}`);
      return 'B';
    });
    // Nothing has run yet: the batch runs at the end of this turn.
    expect(rows()).toEqual([]);
    const order: string[] = [];
    await Promise.all([
      a.then((v) => order.push(`${v}:${committed().join(',')}`)),
      b.then((v) => order.push(`${v}:${committed().join(',')}`)),
    ]);
    expect(seen).toEqual(['a sees a', 'b sees a,b']);
    // When a caller hears back, its writes (and the whole batch) are committed.
    expect(order).toEqual(['A:a,b', 'B:a,b']);
    expect(g.stats).toEqual({ batches: 1, units: 2 });
  });

  it('a unit that throws rolls back its own writes only and rejects its own promise', async () => {
    const g = new GroupCommit(db, { immediate: true });
    const ran: string[] = [];
    const a = g.run(insert('a'));
    const bad = g.run(() => {
      insert('x')();
      g.afterCommit(() => ran.push('x effect'));
      throw new Error('policy said no');
    });
    const c = g.run(() => {
      insert('c')();
      g.afterCommit(() => ran.push('c effect'));
      return 'c';
    });
    await expect(bad).rejects.toThrow('policy said no');
    await expect(a).resolves.toBe(1);
    await expect(c).resolves.toBe('c');
    expect(committed()).toEqual(['a', 'c']);
    // The failed unit's effect was dropped with its savepoint.
    expect(ran).toEqual(['c effect']);
  });

  it('a failed commit rejects every unit of the batch and writes none of it', async () => {
    const g = new GroupCommit(db);
    const a = g.run(insert('a'));
    const b = g.run(insert('b'));
    db.close();
    await expect(a).rejects.toThrow(/not open/);
    await expect(b).rejects.toThrow(/not open/);
  });

  it('runs afterCommit effects after the commit and before the caller resumes; outside a unit at once', async () => {
    const errors: unknown[] = [];
    const g = new GroupCommit(db, { onEffectError: (e) => errors.push(e) });
    const log: string[] = [];
    expect(g.active).toBe(false);
    expect(g.afterCommit(() => log.push('now'))).toBe(false);
    expect(log).toEqual(['now']);
    const p = g.run(() => {
      expect(g.active).toBe(true);
      insert('a')();
      expect(
        g.afterCommit(() => {
          log.push(`effect sees committed ${committed().join(',')}`);
        }),
      ).toBe(true);
      g.afterCommit(() => {
        throw new Error('subscriber broke');
      });
      log.push('work');
    });
    await p.then(() => log.push('caller'));
    expect(log).toEqual(['now', 'work', 'effect sees committed a', 'caller']);
    expect(errors.map((e) => (e as Error).message)).toEqual(['subscriber broke']);
  });

  it('bounds a batch: units beyond maxBatch commit in the next turn', async () => {
    const g = new GroupCommit(db, { maxBatch: 2 });
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((k) => g.run(insert(k))));
    expect(committed()).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(g.stats).toEqual({ batches: 3, units: 5 });
  });

  it('refuses asynchronous work (a promise would escape the transaction)', async () => {
    const g = new GroupCommit(db);
    await expect(g.run(async () => insert('a')())).rejects.toThrow(/promise/);
    expect(committed()).toEqual([]);
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/group-commit.ts';
import { WalSync } from '../src/wal-sync.ts';

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

  describe('with durability (commit under NORMAL, then sync unless every unit deferred it)', () => {
    function recorder(fail?: Error) {
      const log: string[] = [];
      return {
        log,
        durability: {
          relaxed<T>(commit: () => T): T {
            log.push('commit');
            return commit();
          },
          sync(): void {
            log.push('sync');
            if (fail) throw fail;
          },
        },
      };
    }
    const defer = { syncDeferred: () => true };

    it('syncs once per batch, before any caller resumes or any effect runs', async () => {
      const r = recorder();
      const g = new GroupCommit(db, { durability: r.durability });
      await Promise.all([
        g.run(() => {
          g.afterCommit(() => r.log.push('effect'));
          return insert('a')();
        }),
        g.run(insert('b'), defer).then(() => r.log.push('b resumed')),
      ]);
      expect(r.log).toEqual(['commit', 'sync', 'effect', 'b resumed']);
    });

    it('skips the sync when every unit that succeeded deferred it', async () => {
      const r = recorder();
      const g = new GroupCommit(db, { durability: r.durability });
      const failing = g.run(() => {
        insert('x')();
        throw new Error('rolled back');
      });
      await Promise.all([g.run(insert('a'), defer), g.run(insert('b'), defer)]);
      await expect(failing).rejects.toThrow('rolled back');
      expect(r.log).toEqual(['commit']);
      expect(committed()).toEqual(['a', 'b']);
    });

    it('decides per result: a unit defers only for the results its predicate accepts; a throwing predicate syncs', async () => {
      const r = recorder();
      const g = new GroupCommit(db, { durability: r.durability });
      await g.run(insert('a'), { syncDeferred: (changes) => changes === 2 });
      expect(r.log).toEqual(['commit', 'sync']);
      await g.run(insert('b'), {
        syncDeferred: () => {
          throw new Error('predicate');
        },
      });
      expect(r.log).toEqual(['commit', 'sync', 'commit', 'sync']);
    });

    it('a failed sync rejects every unit of the batch, runs no effect and is reported', async () => {
      const r = recorder(new Error('EIO'));
      const reported: unknown[] = [];
      const g = new GroupCommit(db, { durability: r.durability, onDurabilityError: (e) => reported.push(e) });
      const ran: string[] = [];
      const a = g.run(() => {
        g.afterCommit(() => ran.push('effect'));
        return insert('a')();
      });
      const bad = g.run(() => {
        throw new Error('own failure');
      });
      await expect(a).rejects.toThrow('EIO');
      await expect(bad).rejects.toThrow('own failure');
      expect(ran).toEqual([]);
      expect(reported).toHaveLength(1);
    });

    it('with a real WalSync: the batch commits under NORMAL, FULL is restored, one fdatasync per synced batch', async () => {
      const wal = new WalSync(db);
      const g = new GroupCommit(db, { durability: wal });
      const level = () => db.pragma('synchronous', { simple: true }) as number;
      const seen: number[] = [];
      const unit = (k: string) => () => {
        seen.push(level());
        return insert(k)();
      };
      await Promise.all([g.run(unit('a')), g.run(unit('b'), defer)]);
      await g.run(unit('c'), defer);
      // 1 = NORMAL inside a batch, 2 = FULL for every commit outside one.
      expect(seen).toEqual([1, 1, 1]);
      expect(level()).toBe(2);
      expect(wal.syncs).toBe(1);
      expect(committed()).toEqual(['a', 'b', 'c']);
      wal.close();
    });
  });
});

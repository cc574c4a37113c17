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

  describe('with durability (commit relaxed, then an asynchronous sync)', () => {
    /** A durability whose sync the test releases by hand, recording what happened in order. */
    function manual() {
      const log: string[] = [];
      const pending: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
      return {
        log,
        pending,
        durability: {
          relaxed<T>(commit: () => T): T {
            log.push('relaxed:begin');
            try {
              return commit();
            } finally {
              log.push('relaxed:end');
            }
          },
          sync(): Promise<void> {
            log.push('sync');
            return new Promise<void>((resolve, reject) => pending.push({ resolve, reject }));
          },
        },
      };
    }
    const tick = () => new Promise((r) => setImmediate(r));

    it('nobody hears back, and no effect runs, before the sync; `committed` hears right after the commit', async () => {
      const m = manual();
      const g = new GroupCommit(db, { durability: m.durability });
      const heard: string[] = [];
      const a = g
        .run(
          () => {
            g.afterCommit(() => heard.push('a effect'));
            return insert('a')();
          },
          (v) => heard.push(`a committed ${v} rows=${committed().join(',')}`),
        )
        .then(() => heard.push('a resolved'));
      const b = g.run(insert('b')).then(() => heard.push('b resolved'));
      await tick();
      await tick();
      // Committed (another connection sees both rows) but not yet durable: only the hook ran.
      expect(heard).toEqual(['a committed 1 rows=a,b']);
      expect(m.log).toEqual(['relaxed:begin', 'relaxed:end', 'sync']);
      m.pending[0]!.resolve();
      await Promise.all([a, b]);
      expect(heard).toEqual(['a committed 1 rows=a,b', 'a effect', 'a resolved', 'b resolved']);
    });

    it('a failed sync rejects every unit of the batch, runs no effect and reports it', async () => {
      const m = manual();
      const failures: unknown[] = [];
      const g = new GroupCommit(db, { durability: m.durability, onDurabilityError: (e) => failures.push(e) });
      const ran: string[] = [];
      const a = g.run(() => {
        g.afterCommit(() => ran.push('a effect'));
        return insert('a')();
      });
      const bad = g.run(() => {
        throw new Error('own failure');
      });
      await tick();
      m.pending[0]!.reject(new Error('EIO'));
      await expect(a).rejects.toThrow('EIO');
      await expect(bad).rejects.toThrow('own failure');
      expect(ran).toEqual([]);
      expect(failures).toHaveLength(1);
    });

    it('a throwing `committed` hook is reported and its unit still resolves; failed units get no hook', async () => {
      const m = manual();
      const errors: unknown[] = [];
      const g = new GroupCommit(db, { durability: m.durability, onEffectError: (e) => errors.push(e) });
      const hooked: string[] = [];
      const a = g.run(insert('a'), () => {
        throw new Error('hook');
      });
      const b = g.run(insert('a'), () => hooked.push('b'));
      await tick();
      m.pending[0]!.resolve();
      await expect(a).resolves.toBe(1);
      await expect(b).rejects.toThrow(/UNIQUE/);
      expect(hooked).toEqual([]);
      expect(errors).toHaveLength(1);
    });

    it('drain waits for queued units and for batches whose sync is still running', async () => {
      const m = manual();
      const g = new GroupCommit(db, { durability: m.durability });
      let resumed = false;
      void g.run(insert('a')).then(() => {
        resumed = true;
      });
      let drained = false;
      const d = g.drain().then(() => {
        drained = true;
      });
      await tick();
      await tick();
      expect(drained).toBe(false);
      m.pending[0]!.resolve();
      await d;
      expect(resumed).toBe(true);
      await g.drain();
    });

    it('with a real WalSync: the batch commits under synchronous=NORMAL, FULL is restored, one fdatasync', async () => {
      const wal = new WalSync(db);
      const g = new GroupCommit(db, { durability: wal });
      const seen: number[] = [];
      const level = () => db.pragma('synchronous', { simple: true }) as number;
      await Promise.all(
        ['a', 'b', 'c'].map((k) =>
          g.run(() => {
            seen.push(level());
            return insert(k)();
          }),
        ),
      );
      // 1 = NORMAL inside the batch, 2 = FULL for every commit outside it.
      expect(seen).toEqual([1, 1, 1]);
      expect(level()).toBe(2);
      expect(wal.syncs).toBe(1);
      expect(committed()).toEqual(['a', 'b', 'c']);
      await wal.close();
    });
  });
});

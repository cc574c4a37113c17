import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { latestPgVersion, migratePg, PG_MIGRATIONS_DIR } from '../../src/pg/migrate.ts';
import { createPool, PgStore } from '../../src/pg/store.ts';
import { freshDatabase, freshPool, poolOn, usePostgres } from './helpers.ts';
import { proposal, runStoreContract } from './store-contract.ts';

const pg = usePostgres();

runStoreContract('postgres', async () => {
  const store = await PgStore.open(await freshPool(pg.server()));
  return { store, close: () => store.close() };
});

/** Two "replicas": two pools (two sets of connections) on one database. */
async function twoReplicas(): Promise<[PgStore, PgStore]> {
  const db = await freshDatabase(pg.server());
  return [await PgStore.open(poolOn(pg.server(), db)), await PgStore.open(poolOn(pg.server(), db))];
}

const expectCode = (code: string, status?: number) =>
  expect.objectContaining(status === undefined ? { code } : { code, status });

describe('PgStore across replicas', () => {
  it('the same idempotency key sent to two replicas at once yields one proposal', async () => {
    const [a, b] = await twoReplicas();
    try {
      for (let round = 0; round < 15; round++) {
        const key = `idem-${round}`;
        // Six concurrent inserts per key, three through each replica, each with its own proposal id.
        const results = await Promise.all(
          [a, b, a, b, a, b].map((s, i) => s.insertProposal(proposal(`r${round}-${i}`, { idempotencyKey: key }))),
        );
        expect(results.filter((r) => r.created)).toHaveLength(1);
        const winner = results.find((r) => r.created)!.proposal.id;
        expect(new Set(results.map((r) => r.proposal.id))).toEqual(new Set([winner]));
        expect((await b.getByIdempotencyKey(key))?.id).toBe(winner);
      }
      expect((await a.listProposals({ limit: 100 })).items).toHaveLength(15);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('events are numbered in commit order: a later insert waits for an earlier open one', async () => {
    const [a, b] = await twoReplicas();
    try {
      let committedA = 0;
      const slow = a.atomically(async (tx) => {
        const e = await tx.appendEvent('p', 'first', {}, 1);
        await sleep(300);
        return e;
      });
      void slow.then(() => {
        committedA = Date.now();
      });
      await sleep(100);
      const fast = await b.appendEvent('p', 'second', {}, 2);
      const resolvedB = Date.now();
      const first = await slow;
      expect(committedA).toBeGreaterThan(0);
      expect(resolvedB).toBeGreaterThanOrEqual(committedA);
      expect(fast.seq).toBeGreaterThan(first.seq);
      expect((await b.eventsSince(0, 10)).map((e) => e.type)).toEqual(['first', 'second']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('atomically: a throw rolls everything back; nested calls join the transaction', async () => {
    const s = await PgStore.open(await freshPool(pg.server()));
    try {
      await expect(
        s.atomically(async (tx) => {
          await tx.insertProposal(proposal('x'));
          await tx.atomically((inner) => inner.appendEvent('x', 'proposal.created', {}, 1));
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await s.getProposal('x')).toBeUndefined();
      expect(await s.eventsSince(0, 10)).toEqual([]);
      expect(await s.atomically(async (tx) => (await tx.insertProposal(proposal('y'))).created)).toBe(true);
      expect(await s.getProposal('y')).toBeDefined();
      await expect(s.countNode('y', 'bogus' as 'approvals')).rejects.toThrow(/bad counter/);
      expect(await s.ping()).toBe(true);
    } finally {
      await s.close();
      await s.close();
    }
    expect(await s.ping()).toBe(false);
  });
});

it('a unit of work (grouped): calls on the store join it, read its own writes, effects follow the commit only', async () => {
  const s = await PgStore.open(await freshPool(pg.server()));
  try {
    const seen: string[] = [];
    const other = await PgStore.open(
      poolOn(pg.server(), (await s.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db),
      { migrate: false },
    );
    const inside = await s.grouped(async () => {
      // The root store, not a transaction handle: the call joins the unit (what the round kinds rely on).
      await s.insertProposal(proposal('u1'));
      await s.addSignature({ proposalId: 'u1', signerKey: 'GA', nodeId: 'n1', signature: 'c2ln', createdAt: 1 });
      s.afterCommit(() => seen.push('after'));
      // Another connection does not see the unit's writes before its commit.
      const outside = await other.getProposal('u1');
      seen.push(outside === undefined ? 'invisible' : 'visible');
      return (await s.signatures('u1')).length;
    });
    expect(inside).toBe(1);
    expect(seen).toEqual(['invisible', 'after']);
    expect(await other.getProposal('u1')).toBeDefined();
    // A unit that throws: nothing written, its effects dropped.
    await expect(
      s.grouped(async () => {
        await s.insertProposal(proposal('u2'));
        s.afterCommit(() => seen.push('dropped'));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await s.getProposal('u2')).toBeUndefined();
    // Outside a unit an effect runs at once; a failing effect does not undo the commit.
    s.afterCommit(() => seen.push('now'));
    await s.grouped(async () => {
      await s.insertProposal(proposal('u3'));
      s.afterCommit(() => {
        throw new Error('effect failed');
      });
    });
    expect(seen).toEqual(['invisible', 'after', 'now']);
    expect(await s.getProposal('u3')).toBeDefined();
    await other.close();
  } finally {
    await s.close();
  }
});

describe('PostgreSQL migrations', () => {
  it('several replicas starting at once migrate once, under the advisory lock', async () => {
    const db = await freshDatabase(pg.server());
    const pools = Array.from({ length: 4 }, () => poolOn(pg.server(), db));
    const first = pools[0]!;
    try {
      const applied = await Promise.all(pools.map((p) => migratePg(p)));
      expect(applied.filter((a) => a.length > 0)).toEqual([[1, 2, 3, 4]]);
      expect(latestPgVersion()).toBe(4);
      const { rows } = await first.query('SELECT version, name FROM coordinator_schema ORDER BY version');
      expect(rows).toEqual([
        { version: 1, name: '001_init.sql' },
        { version: 2, name: '002_follow_up_due.sql' },
        { version: 3, name: '003_callback_outbox.sql' },
        { version: 4, name: '004_frost.sql' },
      ]);
      expect(await migratePg(first)).toEqual([]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('refuses a schema newer than the code, and a failed migration leaves the last whole version', async () => {
    const pool = await freshPool(pg.server());
    const dir = await mkdtemp(join(tmpdir(), 'coord-pg-mig-'));
    try {
      await writeFile(join(dir, '001_init.sql'), 'CREATE TABLE t1 (x int);');
      await writeFile(join(dir, '002_broken.sql'), 'CREATE TABLE t2 (x int); SELECT no_such_function();');
      await expect(migratePg(pool, dir)).rejects.toThrow(
        expect.objectContaining({ code: 'COORD_MIGRATION_FAILED', details: { migration: '002_broken.sql' } }),
      );
      const { rows } = await pool.query('SELECT max(version) AS v, to_regclass($1) AS t2 FROM coordinator_schema', [
        't2',
      ]);
      expect(rows[0]).toEqual({ v: 1, t2: null });
      await pool.query('INSERT INTO coordinator_schema (version, name) VALUES (99, $1)', ['099_future.sql']);
      // The lock was released: another migration run does not wait for ever.
      await expect(migratePg(pool, PG_MIGRATIONS_DIR)).rejects.toThrow(expectCode('COORD_NEWER_SCHEMA'));
      await expect(PgStore.open(pool)).rejects.toThrow(
        expect.objectContaining({ code: 'COORD_NEWER_SCHEMA', details: { version: 99, supported: 4 } }),
      );
      expect(pool.ended).toBe(true);
    } finally {
      if (!pool.ended) await pool.end();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('PostgreSQL unreachable', () => {
  it('under a steady stream of inserts across a crash and restart: every acknowledged one is kept, every failure is the code', async () => {
    const server = pg.server();
    const s = await PgStore.open(await freshPool(server, { connectionTimeoutMillis: 1000 }));
    const acknowledged: string[] = [];
    const failures: unknown[] = [];
    let n = 0;
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        const id = `w-${n++}`;
        try {
          await s.atomically(async (tx) => {
            await tx.insertProposal(proposal(id, { idempotencyKey: id }));
            await tx.appendEvent(id, 'proposal.created', {}, 1);
          });
          acknowledged.push(id);
        } catch (e) {
          failures.push(e);
          await sleep(20);
        }
      }
    })();
    try {
      await sleep(300);
      await server.stop('immediate');
      await sleep(300);
      await server.start();
      // Writes go through again by themselves.
      const before = acknowledged.length;
      const deadline = Date.now() + 10_000;
      while (acknowledged.length < before + 5 && Date.now() < deadline) await sleep(50);
    } finally {
      stop = true;
      await writer;
      if (!server.running) await server.start();
    }
    try {
      expect(failures.length).toBeGreaterThan(0);
      for (const f of failures) expect(f).toEqual(expectCode('COORD_STORE_UNAVAILABLE', 503));
      expect(acknowledged.length).toBeGreaterThan(10);
      const kept = new Set((await s.listProposals({ limit: 100_000 })).items.map((p) => p.id));
      for (const id of acknowledged) expect(kept.has(id), id).toBe(true);
      // Each kept proposal has its event: the two writes of a unit were kept together or not at all.
      const withEvent = new Set((await s.eventsSince(0, 100_000)).map((e) => e.proposalId));
      expect([...kept].filter((id) => !withEvent.has(id))).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it('a server that is not there: COORD_STORE_UNAVAILABLE (503) at open', async () => {
    const pool = createPool({ host: '127.0.0.1', port: 1, user: 'x', database: 'x', connectionTimeoutMillis: 1000 });
    await expect(PgStore.open(pool)).rejects.toThrow(expectCode('COORD_STORE_UNAVAILABLE', 503));
    expect(pool.ended).toBe(true);
  });

  it('server stopped (crash): calls fail with the code; started again: calls succeed, nothing acknowledged lost', async () => {
    const server = pg.server();
    const idleErrors: Error[] = [];
    const pool = await freshPool(server, { connectionTimeoutMillis: 2000 });
    pool.removeAllListeners('error');
    pool.on('error', (e) => idleErrors.push(e));
    const s = await PgStore.open(pool);
    try {
      const acknowledged: string[] = [];
      for (let i = 0; i < 20; i++) {
        await s.insertProposal(proposal(`ack-${i}`, { idempotencyKey: `k-${i}` }));
        acknowledged.push(`ack-${i}`);
      }
      // A transaction in progress when the server dies: it raises the code and none of it is kept.
      const inFlight = s.atomically(async (tx) => {
        await tx.insertProposal(proposal('in-flight'));
        await server.stop('immediate');
        await tx.appendEvent('in-flight', 'proposal.created', {}, 1);
      });
      await expect(inFlight).rejects.toThrow(expectCode('COORD_STORE_UNAVAILABLE', 503));
      expect(server.running).toBe(false);
      await expect(s.getProposal('ack-0')).rejects.toThrow(expectCode('COORD_STORE_UNAVAILABLE', 503));
      await expect(s.insertProposal(proposal('during'))).rejects.toThrow(expectCode('COORD_STORE_UNAVAILABLE'));
      await expect(s.atomically(async () => 1)).rejects.toThrow(expectCode('COORD_STORE_UNAVAILABLE'));
      expect(await s.ping()).toBe(false);

      await server.start();
      // No reconnect call: the pool opens new connections for the next queries.
      expect(await s.ping()).toBe(true);
      for (const id of acknowledged) expect((await s.getProposal(id))?.id).toBe(id);
      expect(await s.getProposal('in-flight')).toBeUndefined();
      expect(await s.getProposal('during')).toBeUndefined();
      expect((await s.insertProposal(proposal('after'))).created).toBe(true);
      expect(await s.countOpen()).toBe(21);
    } finally {
      if (!server.running) await server.start();
      await s.close();
    }
  });
});

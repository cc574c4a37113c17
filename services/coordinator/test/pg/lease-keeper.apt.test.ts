import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLease } from '../../src/pg/lease.ts';
import { LeaseKeeper } from '../../src/pg/lease-keeper.ts';
import { PgRoundLeases } from '../../src/pg/replicas.ts';
import { PgStore } from '../../src/pg/store.ts';
import { freshDatabase, poolOn, usePostgres } from './helpers.ts';

const pg = usePostgres();
let a: PgStore;
let b: PgStore;
beforeAll(async () => {
  const db = await freshDatabase(pg.server());
  a = await PgStore.open(poolOn(pg.server(), db, { connectionTimeoutMillis: 500 }));
  b = await PgStore.open(poolOn(pg.server(), db));
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

const lostWith = (why: string) =>
  expect.objectContaining({ code: 'COORD_LEASE_LOST', details: expect.objectContaining({ why }) });
const event = (k: LeaseKeeper, n: number) =>
  k.write((tx) => tx.appendEvent(k.lease.proposalId, 'test.write', { n }, 0));

describe('LeaseKeeper', () => {
  it('keeps the lease past its time while alive; released, another replica takes the round at once', async () => {
    const keeper = (await LeaseKeeper.acquire(a, 'k1', 'replica-a', 600))!;
    expect(await LeaseKeeper.acquire(b, 'k1', 'replica-b', 600)).toBeNull();
    await sleep(1500);
    expect(keeper.signal.aborted).toBe(false);
    expect(await acquireLease(b, 'k1', 'replica-b', 600)).toBeNull();
    await event(keeper, 1);
    await keeper.release();
    await keeper.release();
    expect(keeper.signal.reason).toEqual(lostWith('released'));
    const next = (await LeaseKeeper.acquire(b, 'k1', 'replica-b', 600))!;
    expect(next.lease.token).toBe(2);
    await expect(event(keeper, 2)).rejects.toEqual(lostWith('released'));
    await event(next, 3);
    await next.release();
    expect((await a.eventsOf('k1', 10)).map((e) => e.data.n)).toEqual([1, 3]);
  });

  it('a lease taken over (expired under it) aborts the signal at the next renewal and refuses writes', async () => {
    const keeper = (await LeaseKeeper.acquire(a, 'k2', 'replica-a', 900, { renewEveryMs: 200 }))!;
    // The lease runs out under the keeper (as if its renewals had not reached the database), another replica takes it.
    await b.query('UPDATE round_leases SET expires_at = 0 WHERE proposal_id = $1', ['k2']);
    const successor = (await acquireLease(b, 'k2', 'replica-b', 60_000))!;
    await expect(event(keeper, 1)).rejects.toEqual(expect.objectContaining({ code: 'COORD_LEASE_LOST' }));
    expect(keeper.signal.aborted).toBe(true);
    expect(successor.token).toBe(2);

    const other = (await LeaseKeeper.acquire(a, 'k3', 'replica-a', 900, { renewEveryMs: 200 }))!;
    await b.query('UPDATE round_leases SET expires_at = 0 WHERE proposal_id = $1', ['k3']);
    await acquireLease(b, 'k3', 'replica-b', 60_000);
    await sleep(500);
    expect(other.signal.reason).toEqual(lostWith('taken over'));
  });

  it('database unreachable: the signal aborts before the lease can expire in the database', async () => {
    const server = pg.server();
    const ttl = 2000;
    const keeper = (await LeaseKeeper.acquire(a, 'k4', 'replica-a', ttl, { renewEveryMs: 300, safetyMs: 300 }))!;
    const expiresAt = (
      await b.query<{ e: number; now: number }>(
        `SELECT expires_at AS e, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now FROM round_leases
         WHERE proposal_id = 'k4'`,
      )
    ).rows[0]!;
    // The lease's expiry in the database, on the local clock (renewals after this query only move it later).
    const expiresLocal = performance.now() + (expiresAt.e - expiresAt.now);
    const stoppedAt = performance.now();
    await server.stop('immediate');
    try {
      const aborted = new Promise<number>((resolve) => {
        keeper.signal.addEventListener('abort', () => resolve(performance.now()));
      });
      const at = await aborted;
      expect(keeper.signal.reason).toEqual(lostWith('not renewed in time'));
      // Before the database could let another replica take the round, and within one lease time.
      expect(at).toBeLessThan(expiresLocal);
      expect(at - stoppedAt).toBeLessThan(ttl);
    } finally {
      await server.start();
    }
    await expect(event(keeper, 1)).rejects.toEqual(lostWith('not renewed in time'));
  });

  it('refuses timings that cannot keep a lease', async () => {
    await expect(LeaseKeeper.acquire(a, 'k5', 'r', 1000, { renewEveryMs: 950, safetyMs: 100 })).rejects.toEqual(
      expect.objectContaining({ code: 'COORD_BAD_REQUEST' }),
    );
    await expect(LeaseKeeper.acquire(a, 'k5', 'r', 1000, { renewEveryMs: 0 })).rejects.toEqual(
      expect.objectContaining({ code: 'COORD_BAD_REQUEST' }),
    );
  });

  it("a replica's leases are renewed together, one statement per interval; a taken-over one alone is lost", async () => {
    const leases = new PgRoundLeases(a, 'replica-batch', 600);
    // Count the batch statements this replica sends (a spy on the real store; the statements still run).
    let batches = 0;
    const query = a.query.bind(a);
    a.query = ((sql: string, params?: unknown[]) => {
      if (sql.includes('unnest($2::text[], $3::bigint[])')) batches++;
      return query(sql, params);
    }) as typeof a.query;
    try {
      const ids = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6'];
      const held = await Promise.all(ids.map((id) => leases.acquire(id)));
      expect(leases.size).toBe(6);
      // Past twice the lease time: every lease alive, none can be taken, at about one statement per 200 ms.
      await sleep(1400);
      for (const l of held) expect(l!.signal.aborted).toBe(false);
      for (const id of ids) expect(await acquireLease(b, id, 'replica-b', 600)).toBeNull();
      // Six leases renewed one by one would be some 40 statements in that time.
      expect(batches).toBeGreaterThanOrEqual(3);
      expect(batches).toBeLessThanOrEqual(10);
      // b3's lease lapses under the replica (as if its renewals were lost) and another replica takes the round.
      await query('UPDATE round_leases SET expires_at = 0 WHERE proposal_id = $1', ['b3']);
      expect(await acquireLease(b, 'b3', 'replica-b', 600)).not.toBeNull();
      await waitForAbort(held[2]!.signal);
      expect(held[2]!.signal.reason).toEqual(lostWith('taken over'));
      await sleep(400);
      for (const [i, l] of held.entries()) if (i !== 2) expect(l!.signal.aborted).toBe(false);
      await expect(held[2]!.write(async () => 1)).rejects.toEqual(lostWith('taken over'));
      expect(await held[0]!.write(async () => 'ok')).toBe('ok');
    } finally {
      a.query = query;
      await leases.releaseAll();
    }
    expect(leases.size).toBe(0);
  });
});

const waitForAbort = (signal: AbortSignal): Promise<void> =>
  signal.aborted ? Promise.resolve() : new Promise((r) => signal.addEventListener('abort', () => r(), { once: true }));

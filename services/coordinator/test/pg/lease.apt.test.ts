import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  acquireLease,
  currentLease,
  fenced,
  type Lease,
  releaseLease,
  renewLease,
  renewLeases,
  unleasedOpenProposals,
} from '../../src/pg/lease.ts';
import { PgStore } from '../../src/pg/store.ts';
import { freshDatabase, poolOn, usePostgres } from './helpers.ts';
import { proposal } from './store-contract.ts';

const pg = usePostgres();
const TTL = 1000;
let db = '';
let a: PgStore;
let b: PgStore;

beforeAll(async () => {
  db = await freshDatabase(pg.server());
  // Two replicas: two pools on one database.
  a = await PgStore.open(poolOn(pg.server(), db));
  b = await PgStore.open(poolOn(pg.server(), db));
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

const expectCode = (code: string) => expect.objectContaining({ code });
let seq = 0;
const round = (): string => `round-${++seq}`;

/** A fenced write as a driver makes it: an event of the round, carrying who wrote it under which token. */
const write = (s: PgStore, lease: Lease, now?: number) =>
  fenced(
    s,
    lease,
    (tx) => tx.appendEvent(lease.proposalId, 'test.write', { holder: lease.holder, token: lease.token }, 0),
    now,
  );

describe('round leases: rules against a model', () => {
  type Action = { t: 'advance'; ms: number } | { t: 'acquire' | 'renew' | 'release' | 'write'; r: number };
  const replica = fc.integer({ min: 0, max: 2 });
  // Weighted so that histories hold many writes and takeovers, not mostly refusals of replicas that hold nothing.
  const action: fc.Arbitrary<Action> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: TTL * 1.5 }) }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('acquire' as const), r: replica }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('renew' as const), r: replica }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('release' as const), r: replica }) },
    { weight: 5, arbitrary: fc.record({ t: fc.constant('write' as const), r: replica }) },
  );

  it('acquire, renew, release and fenced writes behave as the model says, tokens only grow', async () => {
    const stats = { runs: 0, withWrites: 0, withTakeover: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 10, maxLength: 50, size: 'max' }), async (actions) => {
        const pid = round();
        const holders = ['r0', 'r1', 'r2'];
        let now = 1_000_000;
        // The model: the stored row, and the lease each replica believes it holds.
        let row: { holder: string; token: number; expiresAt: number } | null = null;
        const held: (Lease | null)[] = [null, null, null];
        const writes: number[] = [];
        stats.runs++;
        for (const act of actions) {
          if (act.t === 'advance') {
            now += act.ms;
            continue;
          }
          const store = act.r % 2 === 0 ? a : b;
          const mine = held[act.r] ?? null;
          if (act.t === 'acquire') {
            const got = await acquireLease(store, pid, holders[act.r]!, TTL, now);
            const free = row === null || row.expiresAt <= now;
            expect(got !== null).toBe(free);
            if (got) {
              const token: number = (row?.token ?? 0) + 1;
              expect(got).toEqual({ proposalId: pid, holder: holders[act.r], token, expiresAt: now + TTL });
              row = { holder: holders[act.r]!, token, expiresAt: now + TTL };
              held[act.r] = got;
            }
          } else if (mine === null) {
            continue;
          } else if (act.t === 'renew') {
            const got = await renewLease(store, mine, TTL, now);
            const valid = row!.token === mine.token && row!.expiresAt > now;
            expect(got !== null).toBe(valid);
            if (got) {
              row!.expiresAt = now + TTL;
              held[act.r] = got;
              expect(got.token).toBe(mine.token);
            }
          } else if (act.t === 'release') {
            const ok = await releaseLease(store, mine, now);
            expect(ok).toBe(row!.token === mine.token);
            if (ok) row!.expiresAt = Math.min(row!.expiresAt, now);
          } else {
            const valid = row!.token === mine.token && row!.expiresAt > now;
            const result = write(store, mine, now);
            if (valid) {
              await result;
              writes.push(mine.token);
            } else await expect(result).rejects.toThrow(expectCode('COORD_LEASE_LOST'));
          }
          expect(await currentLease(a, pid)).toEqual(row ? { proposalId: pid, ...row } : undefined);
        }
        // What reached the database is exactly the writes the model allowed, in order, tokens never going back.
        const stored = (await a.eventsOf(pid, 1000)).map((e) => e.data.token as number);
        expect(stored).toEqual(writes);
        if (writes.length > 0) stats.withWrites++;
        if (new Set(writes).size > 1) stats.withTakeover++;
        expect([...stored].sort((x, y) => x - y)).toEqual(stored);
      }),
      { numRuns: 80 },
    );
    // The generated histories exercised writes and takeovers between writes, not only refusals.
    expect(stats.withWrites).toBeGreaterThan(5);
    expect(stats.withTakeover).toBeGreaterThan(0);
  });

  it('a batched renewal renews exactly the leases a single renewal would, and touches no other', async () => {
    // Per round: whether r0 holds it, lost it to expiry, or lost it to r1's takeover; what r0 believes it holds.
    const state = fc.constantFrom('held' as const, 'expired' as const, 'takenOver' as const, 'stale' as const);
    let batches = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(state, { minLength: 0, maxLength: 12 }), async (states) => {
        const now = 5_000_000;
        const believed: Lease[] = [];
        const expected = new Map<string, Lease>();
        for (const st of states) {
          const pid = round();
          const mine = (await acquireLease(a, pid, 'r0', TTL, now - TTL / 2))!;
          believed.push(mine);
          if (st === 'held') expected.set(pid, { ...mine, expiresAt: now + TTL });
          else if (st === 'takenOver') {
            // r0's lease ended (released or lapsed); r1 took the round, its lease still running at `now`.
            await releaseLease(a, mine, now - TTL / 2);
            await acquireLease(b, pid, 'r1', TTL, now - TTL / 2);
          } else if (st === 'stale') {
            // r0 took it again since (a newer token): the batch carries the old one, which must not renew it.
            await releaseLease(a, mine, now - TTL / 2);
            await acquireLease(a, pid, 'r0', TTL, now - TTL / 2);
          }
          // expired: its time ran out at now - TTL/2 + TTL = now, so it is no longer valid at `now`.
          if (st === 'expired') await releaseLease(a, mine, now);
        }
        const before = await Promise.all(believed.map((l) => currentLease(a, l.proposalId)));
        const got = await renewLeases(a, 'r0', believed, TTL, now);
        batches++;
        expect(got).toEqual(expected);
        // Every row the batch did not renew is as it was; the renewed ones carry the new expiry only.
        for (const [i, l] of believed.entries()) {
          const row = await currentLease(a, l.proposalId);
          expect(row).toEqual(expected.get(l.proposalId) ?? before[i]);
        }
      }),
      { numRuns: 40 },
    );
    expect(batches).toBe(40);
  });

  it('replicas acquiring one round at once: exactly one wins, and its token is the next', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 8 }), fc.boolean(), async (n, taken) => {
        const pid = round();
        if (taken) await acquireLease(a, pid, 'old', TTL, 1000);
        const got = await Promise.all(
          Array.from({ length: n }, (_, i) => acquireLease(i % 2 ? a : b, pid, `c${i}`, TTL, 1000 + TTL)),
        );
        const winners = got.filter((g) => g !== null);
        expect(winners).toHaveLength(1);
        expect(winners[0]!.token).toBe(taken ? 2 : 1);
      }),
      { numRuns: 15 },
    );
  });
});

describe('round leases: takeover and fencing', () => {
  it("a takeover waits for the old holder's fenced write in progress, which is ordered before it", async () => {
    const pid = round();
    const old = (await acquireLease(a, pid, 'old', TTL, 0))!;
    let takeoverAt = 0;
    let committedAt = 0;
    const slow = fenced(
      a,
      old,
      async (tx) => {
        await tx.appendEvent(pid, 'test.write', { token: old.token }, 0);
        await sleep(300);
        committedAt = Date.now();
      },
      TTL - 1,
    );
    await sleep(50);
    const next = await acquireLease(b, pid, 'new', TTL, TTL);
    takeoverAt = Date.now();
    await slow;
    expect(next?.token).toBe(2);
    expect(takeoverAt).toBeGreaterThanOrEqual(committedAt);
    // From now on the old holder's writes are refused, even with a clock that says its lease is still valid.
    await expect(write(a, old, 0)).rejects.toThrow(expectCode('COORD_LEASE_LOST'));
    await write(b, next!, TTL + 1);
    expect((await a.eventsOf(pid, 10)).map((e) => e.data.token)).toEqual([1, 2]);
  });

  it('the holder whose connection is killed writes nothing more; another replica takes over', async () => {
    const pid = round();
    const holder = (await acquireLease(a, pid, 'holder', TTL, 0))!;
    await write(a, holder, 10);
    // Mid-transaction, the holder's database connection is killed (pg_terminate_backend, as a network cut or a
    // restarted proxy would). The share lock it held goes with it, so a takeover waiting on it proceeds.
    let takeover: Promise<Lease | null> | undefined;
    let takenOver = false;
    const cut = fenced(
      a,
      holder,
      async (tx) => {
        await tx.appendEvent(pid, 'test.write', { token: holder.token, lost: true }, 0);
        const pid2 = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        takeover = acquireLease(b, pid, 'successor', TTL, TTL);
        void takeover.then(() => {
          takenOver = true;
        });
        await sleep(150);
        // The takeover waits on the share lock this fenced transaction holds.
        expect(takenOver).toBe(false);
        await b.query('SELECT pg_terminate_backend($1)', [pid2]);
        await tx.query('SELECT 1');
      },
      20,
    );
    await expect(cut).rejects.toThrow(expectCode('COORD_STORE_UNAVAILABLE'));
    const successor = await takeover!;
    expect(successor).toMatchObject({ holder: 'successor', token: 2 });
    // The old holder's pool reconnects, but its lease is gone: renew and writes are refused.
    expect(await renewLease(a, holder, TTL, TTL + 10)).toBeNull();
    await expect(write(a, holder, TTL + 10)).rejects.toThrow(expectCode('COORD_LEASE_LOST'));
    await write(b, successor!, TTL + 10);
    expect((await a.eventsOf(pid, 10)).map((e) => [e.data.token, e.data.lost ?? false])).toEqual([
      [1, false],
      [2, false],
    ]);
  });

  it("on the database's own clock: a lease not renewed is taken over after its time, a released one at once", async () => {
    const pid = round();
    const first = (await acquireLease(a, pid, 'first', 600))!;
    expect(first.token).toBe(1);
    expect(await acquireLease(b, pid, 'second', 600)).toBeNull();
    const renewed = (await renewLease(a, first, 600))!;
    expect(renewed.expiresAt).toBeGreaterThanOrEqual(first.expiresAt);
    await write(a, renewed);
    await sleep(700);
    await expect(write(a, renewed)).rejects.toThrow(expectCode('COORD_LEASE_LOST'));
    const second = (await acquireLease(b, pid, 'second', 60_000))!;
    expect(second.token).toBe(2);
    expect(await releaseLease(a, first)).toBe(false);
    expect(await releaseLease(b, second)).toBe(true);
    expect((await acquireLease(a, pid, 'third', 600))?.token).toBe(3);
  });

  it('unleasedOpenProposals lists the open rounds nobody drives, oldest first', async () => {
    const s = await PgStore.open(poolOn(pg.server(), await freshDatabase(pg.server())));
    try {
      await s.insertProposal(proposal('free'));
      await s.insertProposal(proposal('driven'));
      await s.insertProposal(proposal('expired'));
      await s.insertProposal(proposal('closed', { status: 'submitted' }));
      await s.insertProposal(proposal('toSubmit', { status: 'signed' }));
      // Signed Soroban rounds: one whose follow-up is still to open (its replica died first), one done.
      await s.insertProposal(proposal('followUp', { kind: 'sorobanTx', submit: false }));
      await s.transition('followUp', ['pending'], 'signed', { followUpDue: true });
      await s.insertProposal(proposal('followedUp', { kind: 'sorobanTx', submit: false, status: 'signed' }));
      await acquireLease(s, 'driven', 'x', TTL, 0);
      await acquireLease(s, 'expired', 'x', TTL, 0);
      expect(await unleasedOpenProposals(s, 10, TTL - 1)).toEqual(['free', 'toSubmit', 'followUp']);
      expect(await unleasedOpenProposals(s, 10, TTL)).toEqual(['free', 'driven', 'expired', 'toSubmit', 'followUp']);
      expect(await unleasedOpenProposals(s, 1, TTL)).toEqual(['free']);
      expect(await currentLease(s, 'free')).toBeUndefined();
    } finally {
      await s.close();
    }
  });
});

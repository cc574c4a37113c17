import { rm } from 'node:fs/promises';
import { generateIdentity } from '@cosigner/protocol/identity';
import { createLogger } from '@cosigner/runtime/logger';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApiKey } from '../../src/apikeys.ts';
import { build } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { EventBus } from '../../src/events.ts';
import { currentLease } from '../../src/pg/lease.ts';
import { PgStore } from '../../src/pg/store.ts';
import type { EventRecord } from '../../src/store.ts';
import { bearer, FakeLedger, multisig, NETWORK, payment, TestNode, waitFor } from '../helpers.ts';
import { freshDatabase, poolOn, usePostgres } from './helpers.ts';

/**
 * Two coordinator replicas in this process, each its own app, pool and hub, on one real PostgreSQL database: they
 * behave as one coordinator (any replica answers every call, one proposal per idempotency key, events streamed
 * from either, a cancel sent to the replica that does not drive the round), and when the driving replica dies its
 * rounds are taken over within the lease time plus one second: the nodes that had not answered are asked again, a
 * submission is first looked up by hash, and no envelope is ever sent twice.
 */
const pg = usePostgres();
const LEASE_MS = 1500;

interface Replica {
  app: FastifyInstance;
  store: PgStore;
  url: string;
  key: Buffer;
  dir: string;
}

const open: Replica[] = [];
afterEach(async () => {
  for (const r of open.splice(0)) {
    await r.app.close().catch(() => undefined);
    await rm(r.dir, { recursive: true, force: true });
  }
});

async function replica(database: string, ledger: FakeLedger, round: Record<string, unknown> = {}): Promise<Replica> {
  const dir = await tempDir('coord-replica-');
  const config = parseConfig({
    dataDir: dir,
    network: NETWORK,
    store: { type: 'postgres', url: pg.server().url(database), tls: { mode: 'disable' }, leaseMs: LEASE_MS },
    round: { submitBackoffMs: 10, heartbeatMs: 1000, ...round },
  });
  const store = await PgStore.open(poolOn(pg.server(), database));
  const identity = generateIdentity().identity;
  const app = await build({
    config,
    store,
    identity,
    callbackSecret: 'test-secret',
    ledger,
    logger: createLogger({ name: 'replica', level: 'silent' }),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  const r = { app, store, url: `http://127.0.0.1:${addr.port}`, key: identity.publicKey, dir };
  open.push(r);
  return r;
}

/** A crash as far as the database can tell: the replica's connections go, so its leases lapse unrenewed. */
async function crash(r: Replica): Promise<number> {
  r.app.coordinator.hub.close();
  await r.store.close();
  return Date.now();
}

async function setup(behaviours: ('approve' | 'silent')[], round: Record<string, unknown> = {}) {
  const database = await freshDatabase(pg.server());
  const ledger = new FakeLedger();
  const nodes = behaviours.map((b, i) => new TestNode(`n${i}`, b));
  const source = Keypair.random().publicKey();
  ledger.accounts.set(
    source,
    multisig(
      source,
      nodes.map((n) => n.stellarKey),
      2,
    ),
  );
  const a = await replica(database, ledger, round);
  const b = await replica(database, ledger, round);
  for (const n of nodes) await a.store.enrollNode(n.enrolment(), Date.now());
  const adminKey = (await createApiKey(a.store, ['admin'])).key;
  return { database, ledger, nodes, source, a, b, adminKey };
}

const post = (r: Replica, key: string, body: Record<string, unknown>) =>
  r.app.inject({ method: 'POST', url: '/v1/proposals', headers: bearer(key), payload: body });
const get = async (r: Replica, key: string, id: string) =>
  (await r.app.inject({ url: `/v1/proposals/${id}`, headers: bearer(key) })).json() as Record<string, unknown>;

describe('coordinator replicas on one PostgreSQL database', () => {
  it('any replica answers: one proposal per idempotency key, read, streamed and cancelled from the other', async () => {
    const s = await setup(['silent', 'silent', 'silent']);
    const streamedByB: EventRecord[] = [];
    s.b.app.coordinator.events.subscribe((e) => streamedByB.push(e));
    const xdr = payment(s.source);
    // The same key at both replicas at once, several times each: one proposal, every answer names it.
    const answers = await Promise.all(
      [s.a, s.b, s.a, s.b].map((r) => post(r, s.adminKey, { xdr, idempotencyKey: 'same-key' })),
    );
    expect(answers.map((r) => r.statusCode).sort()).toEqual([200, 200, 200, 201]);
    const ids = new Set(answers.map((r) => r.json().id as string));
    expect(ids.size).toBe(1);
    const id = [...ids][0]!;
    // Exactly one replica drives it (holds its lease).
    const lease = await currentLease(s.a.store, id);
    expect(lease).toBeDefined();
    // Read from either; the event of its creation streamed by B whichever replica wrote it.
    expect((await get(s.b, s.adminKey, id)).status).toBe('pending');
    await waitFor(() => streamedByB.some((e) => e.proposalId === id && e.type === 'proposal.created'), 'B streams');
    // Cancelled at each replica in turn (one drives it, the other does not): both work.
    for (const [at, other] of [
      [s.b, s.a],
      [s.a, s.b],
    ] as const) {
      const p = (await post(at, s.adminKey, { xdr: payment(s.source) })).json();
      const cancelled = await at.app.inject({
        method: 'POST',
        url: `/v1/proposals/${p.id}/cancel`,
        headers: bearer(s.adminKey),
        payload: { reason: 'changed my mind' },
      });
      expect(cancelled.statusCode, cancelled.body).toBe(200);
      expect(cancelled.json().status).toBe('cancelled');
      expect((await get(other, s.adminKey, p.id as string)).status).toBe('cancelled');
      await waitFor(
        () => streamedByB.some((e) => e.proposalId === p.id && e.type === 'proposal.cancelled'),
        'cancel streamed',
      );
    }
    // Twice is refused, from either replica.
    const once = await s.a.app.inject({
      method: 'POST',
      url: `/v1/proposals/${id}/cancel`,
      headers: bearer(s.adminKey),
      payload: {},
    });
    expect(once.statusCode).toBe(200);
    const twice = await s.b.app.inject({
      method: 'POST',
      url: `/v1/proposals/${id}/cancel`,
      headers: bearer(s.adminKey),
      payload: {},
    });
    expect(twice.statusCode).toBe(409);
    // Every event once, in order, on B's stream.
    const seqs = streamedByB.map((e) => e.seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((x, y) => x - y));
  });

  it('/v1/events of one replica: the stored events since a position, then live ones written by the other, each once', async () => {
    const s = await setup(['silent', 'silent', 'silent']);
    const first = (await post(s.a, s.adminKey, { xdr: payment(s.source) })).json();
    const received: { seq: number; type: string; proposalId: string | null }[] = [];
    const ws = new WebSocket(`${s.b.url.replace('http', 'ws')}/v1/events?since=0`, {
      headers: { authorization: `Bearer ${s.adminKey}` },
    });
    ws.on('message', (d: Buffer) => received.push(JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    const second = (await post(s.a, s.adminKey, { xdr: payment(s.source) })).json();
    const third = (await post(s.b, s.adminKey, { xdr: payment(s.source) })).json();
    await waitFor(
      () => (received.some((e) => e.proposalId === third.id && e.type === 'proposal.created') ? true : undefined),
      'the live events',
    );
    const created = received.filter((e) => e.type === 'proposal.created').map((e) => e.proposalId);
    expect(created).toEqual([first.id, second.id, third.id]);
    const seqs = received.map((e) => e.seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((x, y) => x - y));
    ws.close();
  });

  it('the event tail wakes on NOTIFY within milliseconds, and after its listening connection was killed', async () => {
    const database = await freshDatabase(pg.server());
    const a = await PgStore.open(poolOn(pg.server(), database));
    const b = await PgStore.open(poolOn(pg.server(), database));
    const bus = new EventBus(a, createLogger({ name: 'tail', level: 'silent' }), {
      secret: 's',
      maxAttempts: 1,
      initialBackoffMs: 10,
      timeoutMs: 100,
    });
    try {
      const heard: { seq: number; at: number }[] = [];
      bus.subscribe((e) => heard.push({ seq: e.seq, at: Date.now() }));
      // A fallback poll of a minute: only a notification can bring an event in within the waits below.
      await bus.tail(a, 60_000);
      const listening = async () =>
        (
          await b.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
          )
        ).rows;
      await waitFor(async () => ((await listening()).length === 1 ? true : undefined), 'listening');
      const sent = Date.now();
      const e1 = await b.appendEvent(null, 'node.misbehaved', { nodeId: 'n', kind: 'k', detail: 'd' }, sent);
      await waitFor(() => (heard.some((h) => h.seq === e1.seq) ? true : undefined), 'notified', 5000);
      // The listening connection dies: notifications sent meanwhile are lost, so the reconnected tail reads what
      // it missed at once.
      const [victim] = await listening();
      await b.query('SELECT pg_terminate_backend($1)', [victim!.pid]);
      const e2 = await b.appendEvent(null, 'node.misbehaved', { nodeId: 'n', kind: 'k', detail: 'd' }, Date.now());
      await waitFor(() => (heard.some((h) => h.seq === e2.seq) ? true : undefined), 'after the reconnect', 10_000);
      await waitFor(async () => ((await listening()).length === 1 ? true : undefined), 'listening again');
      const e3 = await b.appendEvent(null, 'node.misbehaved', { nodeId: 'n', kind: 'k', detail: 'd' }, Date.now());
      await waitFor(() => (heard.some((h) => h.seq === e3.seq) ? true : undefined), 'notified again', 5000);
      expect(heard.map((h) => h.seq)).toEqual([e1.seq, e2.seq, e3.seq]);
    } finally {
      await bus.close();
      await a.close();
      await b.close();
    }
  });

  it('the driving replica dies mid-round: the other takes the round over in time and asks the nodes that had not answered', async () => {
    const s = await setup(['approve', 'silent', 'silent']);
    // n1 answers nothing on its session with A, but signs when B (the replica that takes over) asks.
    const twins = s.nodes.map(
      (n, i) => new TestNode(n.id, i === 1 ? 'approve' : 'silent', { keypair: n.keypair, identity: n.identity }),
    );
    for (const n of s.nodes) expect(await n.connect(s.a.url, s.a.key)).toBe('welcome');
    for (const n of twins) expect(await n.connect(s.b.url, s.b.key)).toBe('welcome');
    const xdr = payment(s.source, { seq: '300' });
    const created = await post(s.a, s.adminKey, { xdr, submit: true, idempotencyKey: 'takeover-1' });
    expect(created.statusCode).toBe(201);
    const id = created.json().id as string;
    await waitFor(async () => ((await s.b.store.signatures(id)).length === 1 ? true : undefined), 'n0 signed via A');
    expect((await currentLease(s.b.store, id))?.holder).toBeDefined();
    const lease = (await currentLease(s.b.store, id))!;
    const died = await crash(s.a);
    const done = await waitFor(
      async () => {
        const p = await s.b.store.getProposal(id);
        return p?.status === 'submitted' ? p : undefined;
      },
      'taken over and submitted',
      LEASE_MS + 10_000,
    );
    const after = (await currentLease(s.b.store, id))!;
    expect(after.token).toBe(lease.token + 1);
    expect(after.holder).not.toBe(lease.holder);
    // Taken over within the lease time plus one second of its expiry (the signature and submission after it).
    const signedAt = done.signedAt!;
    expect(signedAt - died).toBeLessThan(LEASE_MS + 1000 + 2000);
    expect(twins[1]!.proposals.map((p) => p.proposalId)).toContain(id);
    // One envelope, sent once.
    expect(s.ledger.submitted).toHaveLength(1);
    const events = (await s.b.store.eventsOf(id, 100)).map((e) => e.type);
    expect(events.filter((t) => t === 'quorum.reached')).toHaveLength(1);
    expect(events.filter((t) => t === 'proposal.submitted')).toHaveLength(1);
  });

  it('the driving replica dies mid-submission: the other asks the network for the hash first and sends nothing again', async () => {
    // A's submission applies but its answer is lost, and A waits long before asking again: it dies meanwhile.
    const s = await setup(['approve', 'approve', 'silent'], { submitBackoffMs: 60_000, submitMaxBackoffMs: 60_000 });
    const xdr = payment(s.source, { seq: '400' });
    const hash = decodeEnvelope(xdr, NETWORK).hash.toString('hex');
    s.ledger.lostFor.add(hash);
    for (const n of s.nodes) expect(await n.connect(s.a.url, s.a.key)).toBe('welcome');
    const created = await post(s.a, s.adminKey, { xdr, submit: true });
    const id = created.json().id as string;
    await waitFor(() => (s.ledger.submitted.length === 1 ? true : undefined), 'A submitted once');
    expect((await s.b.store.getProposal(id))?.status).toBe('signed');
    const statusCalls = s.ledger.statusCalls;
    await crash(s.a);
    const done = await waitFor(
      async () => {
        const p = await s.b.store.getProposal(id);
        return p?.status === 'submitted' ? p : undefined;
      },
      'submission taken over',
      LEASE_MS + 10_000,
    );
    expect(s.ledger.statusCalls).toBeGreaterThan(statusCalls);
    expect(done.result).toMatchObject({ outcome: 'accepted', message: 'found on the ledger' });
    expect(s.ledger.submitted).toHaveLength(1);
  });

  it('three replicas, the driver dies: exactly one of the two others takes each round over, and each ends once', async () => {
    const s = await setup(['approve', 'silent', 'silent']);
    const c = await replica(s.database, s.ledger);
    // Node n1 signs for whichever survivor asks it; n0 signed through A before A died.
    const onB = s.nodes.map(
      (n, i) => new TestNode(n.id, i === 1 ? 'approve' : 'silent', { keypair: n.keypair, identity: n.identity }),
    );
    const onC = s.nodes.map(
      (n, i) => new TestNode(n.id, i === 1 ? 'approve' : 'silent', { keypair: n.keypair, identity: n.identity }),
    );
    for (const n of s.nodes) expect(await n.connect(s.a.url, s.a.key)).toBe('welcome');
    for (const n of onB) expect(await n.connect(s.b.url, s.b.key)).toBe('welcome');
    for (const n of onC) expect(await n.connect(c.url, c.key)).toBe('welcome');
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await post(s.a, s.adminKey, { xdr: payment(s.source, { seq: String(700 + i) }), submit: true });
      expect(res.statusCode).toBe(201);
      ids.push(res.json().id as string);
    }
    await waitFor(async () => {
      for (const id of ids) if ((await s.b.store.signatures(id)).length === 0) return undefined;
      return true;
    }, "n0's signatures via A");
    const holderA = (await currentLease(s.b.store, ids[0]!))!.holder;
    await crash(s.a);
    for (const id of ids) {
      await waitFor(
        async () => ((await s.b.store.getProposal(id))?.status === 'submitted' ? true : undefined),
        `${id} submitted`,
        LEASE_MS + 10_000,
      );
      const lease = (await currentLease(s.b.store, id))!;
      expect(lease.holder).not.toBe(holderA);
      // One takeover per round: the token moved once; one quorum, one submission.
      expect(lease.token).toBe(2);
      const types = (await s.b.store.eventsOf(id, 100)).map((e) => e.type);
      expect(types.filter((t) => t === 'quorum.reached')).toHaveLength(1);
      expect(types.filter((t) => t === 'proposal.submitted')).toHaveLength(1);
    }
    // Four envelopes, each sent once.
    expect(s.ledger.submitted).toHaveLength(4);
    expect(new Set(s.ledger.submitted).size).toBe(4);
    // Only the replica that holds a round asked node n1 for it.
    for (const id of ids) {
      const askedByB = onB[1]!.proposals.some((p) => p.proposalId === id);
      const askedByC = onC[1]!.proposals.some((p) => p.proposalId === id);
      expect(askedByB !== askedByC).toBe(true);
    }
    for (const n of [...s.nodes, ...onB, ...onC]) n.close();
  });

  it('a clean stop hands the rounds over at once', async () => {
    const s = await setup(['silent', 'silent', 'silent']);
    const created = await post(s.a, s.adminKey, { xdr: payment(s.source, { seq: '500' }) });
    const id = created.json().id as string;
    const first = (await currentLease(s.b.store, id))!;
    const holderA = first.holder;
    await s.a.app.close();
    open.splice(open.indexOf(s.a), 1);
    await rm(s.a.dir, { recursive: true, force: true });
    const stopped = Date.now();
    const taken = await waitFor(async () => {
      const l = await currentLease(s.b.store, id);
      return l && l.holder !== holderA && l.expiresAt > Date.now() ? l : undefined;
    }, 'B holds the round');
    expect(taken.token).toBe(first.token + 1);
    // Well before the old lease would have expired.
    expect(Date.now() - stopped).toBeLessThan(LEASE_MS);
  });

  it('takeover rules, for any split of the answers between the replicas and any crash point: one proposal, at most one envelope, never lost', async () => {
    const behaviour = fc.constantFrom<'approve' | 'silent'>('approve', 'silent');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(behaviour, behaviour), { minLength: 3, maxLength: 3 }),
        fc.constantFrom('afterCreate', 'afterFirstSignature', 'inSubmission'),
        async (answers, crashAt) => {
          const s = await setup(
            answers.map(([onA]) => onA),
            { submitBackoffMs: 60_000, submitMaxBackoffMs: 60_000 },
          );
          const twins = s.nodes.map(
            (n, i) => new TestNode(n.id, answers[i]![1], { keypair: n.keypair, identity: n.identity }),
          );
          for (const n of s.nodes) await n.connect(s.a.url, s.a.key);
          for (const n of twins) await n.connect(s.b.url, s.b.key);
          const xdr = payment(s.source, { seq: '600' });
          const hash = decodeEnvelope(xdr, NETWORK).hash.toString('hex');
          if (crashAt === 'inSubmission') s.ledger.lostFor.add(hash);
          const created = await post(s.a, s.adminKey, { xdr, submit: true, idempotencyKey: 'model' });
          const id = created.json().id as string;
          const reached = (f: () => Promise<boolean>) =>
            waitFor(async () => ((await f()) ? true : undefined), crashAt, 2000).catch(() => false);
          if (crashAt === 'afterFirstSignature') await reached(async () => (await s.b.store.signatures(id)).length > 0);
          if (crashAt === 'inSubmission') await reached(async () => s.ledger.submitted.length > 0);
          const crashedAt = await crash(s.a);
          // The answer-losing link was A's only.
          s.ledger.lostFor.clear();
          // B can complete the round when two nodes signed in all: before the crash via A, or when B asks them.
          const signedViaA = new Set((await s.b.store.signatures(id)).map((x) => x.nodeId));
          const willSign = new Set([
            ...signedViaA,
            ...s.nodes.filter((_, i) => answers[i]![1] === 'approve').map((n) => n.id),
          ]);
          const end = await waitFor(
            async () => {
              const p = await s.b.store.getProposal(id);
              if (p?.status === 'submitted' || p?.status === 'failed') return p;
              // Still open: past A's lease time, a live lease can only be B's (A is gone): it is driven, not lost.
              const lease = await currentLease(s.b.store, id);
              const drivenByB =
                Date.now() > crashedAt + LEASE_MS && lease !== undefined && lease.expiresAt > Date.now();
              if (willSign.size < 2 && drivenByB) return p;
              return undefined;
            },
            'the round ends or is driven by B',
            LEASE_MS + 8000,
          );
          if (willSign.size >= 2) expect(end!.status).toBe('submitted');
          // One proposal for the key; at most one envelope ever sent; one quorum, one submission at most.
          expect((await s.b.store.listProposals({ limit: 10 })).items).toHaveLength(1);
          expect(new Set(s.ledger.submitted).size).toBeLessThanOrEqual(1);
          const types = (await s.b.store.eventsOf(id, 100)).map((e) => e.type);
          expect(types.filter((t) => t === 'quorum.reached').length).toBeLessThanOrEqual(1);
          expect(types.filter((t) => t === 'proposal.submitted').length).toBe(end!.status === 'submitted' ? 1 : 0);
          for (const n of [...s.nodes, ...twins]) n.close();
          for (const r of open.splice(0)) {
            await r.app.close().catch(() => undefined);
            await rm(r.dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 6 },
    );
  }, 180_000);
});

import { rm } from 'node:fs/promises';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeSession, runDkg } from '../../../packages/frost/test/helpers.ts';
import { FrostDkgRelay, type HubLike } from '../src/frost/dkg.ts';
import { FrostRefreshRelay } from '../src/frost/refresh.ts';
import { type NodeRecord, type NodeRepository, openSqliteStore, type Store } from '../src/store.ts';

/**
 * Two replicas' relays on one shared store (shared: `exclusive` false, as on PostgreSQL). A relay in progress is
 * driven by the replica that started it; when that replica dies, another one that sees the session after no step
 * for `abandonAfterMs` records it failed (COORD_FROST_RELAY_LOST) and aborts it at the nodes connected to it; a
 * session whose driver is alive is left alone. The compare-and-set underneath is in the store contract.
 */

const logger = createLogger({ name: 't', level: 'silent' });
const nodes = {
  getNode: (id: string) => ({ id, identityKey: Buffer.alloc(32, 1).toString('base64'), stellarKey: 'G' }) as NodeRecord,
} as unknown as NodeRepository;
const { session, secrets } = makeSession(3, 2, 'abandoned-1');
const OUT = runDkg(session, secrets).outputs[0]!;
const PARTICIPANTS = [1, 2, 3].map((index) => ({ index, nodeId: `n${index}`, identityKey: `key-${index}` }));

/** A hub whose nodes are connected but never answer; it records what it was asked to send. */
function silentHub(): HubLike & { sent: { nodeId: string; type: string; body: Record<string, unknown> }[] } {
  const sent: { nodeId: string; type: string; body: Record<string, unknown> }[] = [];
  return {
    sent,
    connected: () => ['n1', 'n2', 'n3'].map((nodeId) => ({ nodeId })),
    send<T extends MessageType>(nodeId: string, type: T, body: Body<T>) {
      sent.push({ nodeId, type, body: body as Record<string, unknown> });
      return true;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let store: Store;

/** Group g1 (the key generation's output OUT) recorded as made and ready, as a refresh needs it. */
function readyGroup(): void {
  store.insertFrostDkg({
    id: 'g1',
    threshold: 2,
    participants: PARTICIPANTS,
    roster: 'r',
    status: 'running',
    step: 'confirm',
    address: null,
    group: null,
    transcript: null,
    error: null,
    createdBy: null,
    createdAt: 1,
    updatedAt: Date.now(),
  });
  store.readyFrostDkg('g1', { address: OUT.address, group: OUT.group, transcript: 't' }, Date.now());
}
const opened: { close(): Promise<void> }[] = [];

beforeEach(async () => {
  dir = await tempDir('coord-frost-abandoned-');
  store = openSqliteStore(dir);
});
afterEach(async () => {
  for (const r of opened.splice(0)) await r.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
});

async function dkgRelay(abandonAfterMs: number, hub = silentHub()) {
  const relay = await FrostDkgRelay.open({
    store,
    nodes,
    logger,
    exclusive: false,
    stepTimeoutMs: 60_000,
    abandonAfterMs,
  });
  relay.attach(hub);
  opened.push(relay);
  return { relay, hub };
}

describe('a FROST relay whose replica died', () => {
  it('a key generation is recorded failed by another replica once abandoned, never while its driver is alive', async () => {
    const a = await dkgRelay(60_000);
    const started = await a.relay.start({ participants: ['n1', 'n2', 'n3'], threshold: 2 });
    // B sees it at once: fresh, left alone; it is A's, and A is alive.
    const b = await dkgRelay(300);
    expect((await b.relay.get(started.id)).status).toBe('running');
    // A dies (nothing more is written for it). After abandonAfterMs, B records it failed and aborts it at the nodes.
    await sleep(400);
    const seen = await b.relay.get(started.id);
    expect(seen).toMatchObject({ status: 'failed', error: { code: 'COORD_FROST_RELAY_LOST', culprits: [] } });
    expect(seen.error!.message).toMatch(/replica relaying this key generation stopped during start/);
    expect(b.hub.sent.filter((s) => s.body.step === 'abort').map((s) => s.nodeId)).toEqual(['n1', 'n2', 'n3']);
    // A's own view: it still drives its run in memory, but the record's outcome is B's and stays so.
    expect((await a.relay.get(started.id)).status).toBe('failed');
    // Listing settles too, and a node that was away hears the abort from B when it syncs.
    store.insertFrostDkg({ ...seen, id: 'left', status: 'running', error: null, updatedAt: Date.now() - 10_000 });
    store.insertFrostDkg({ ...seen, id: 'fresh', status: 'running', error: null, updatedAt: Date.now() });
    const offline = silentHub();
    offline.send = () => false;
    b.relay.attach(offline);
    const listed = await b.relay.list();
    expect(listed.find((r) => r.id === 'left')).toMatchObject({ status: 'failed' });
    expect(listed.find((r) => r.id === 'fresh')).toMatchObject({ status: 'running' });
    b.relay.attach(b.hub);
    b.relay.sync('n2');
    expect(b.hub.sent.filter((s) => s.body.dkgId === 'left').map((s) => [s.nodeId, s.body.step])).toEqual([
      ['n2', 'abort'],
    ]);
  });

  it('a record the store cannot write is logged; the relay goes on and its step timer still ends the session', async () => {
    const failing = new Proxy(store, {
      get(target, prop) {
        if (prop === 'setFrostDkgStep') {
          return () => {
            throw new Error('the database is away');
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const hub = silentHub();
    const relay = await FrostDkgRelay.open({ store: failing, nodes, logger, exclusive: false, stepTimeoutMs: 200 });
    relay.attach(hub);
    opened.push(relay);
    const started = await relay.start({ participants: ['n1', 'n2', 'n3'], threshold: 2 });
    expect(started.status).toBe('running');
    for (let i = 0; i < 100 && store.getFrostDkg(started.id)!.status === 'running'; i++) await sleep(20);
    expect(store.getFrostDkg(started.id)).toMatchObject({
      status: 'failed',
      error: { code: 'COORD_FROST_DKG_TIMEOUT' },
    });
  });

  it('a refresh whose insert loses a race is refused as running; a step the store cannot write is logged', async () => {
    readyGroup();
    // Between its look at the running refreshes (none yet) and its insert, another replica inserted one.
    let raced = false;
    const racing = new Proxy(store, {
      get(target, prop) {
        if (prop === 'listFrostRefreshes' && !raced) return () => [];
        if (prop === 'setFrostRefreshStep') {
          return () => {
            throw new Error('the database is away');
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const b = await dkgRelay(5_000);
    const refresh = await FrostRefreshRelay.open({ store: racing, dkg: b.relay, logger, exclusive: false });
    refresh.attach(silentHub());
    opened.push(refresh);
    const first = await refresh.start({ group: OUT.address }); // its step record is not written: logged, it runs
    expect(store.getFrostRefresh(first.id)).toMatchObject({ status: 'running', step: 'start' });
    await expect(refresh.start({ group: OUT.address })).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_FROST_REFRESH_RUNNING' }),
    );
    raced = true;
    expect(store.runningFrostRefreshes().map((r) => r.id)).toEqual([first.id]);
  });

  it('at start, a shared store settles only the abandoned sessions; an exclusive one settles them all', async () => {
    const rec = {
      threshold: 2,
      participants: PARTICIPANTS,
      roster: 'r',
      status: 'running' as const,
      step: 'round2' as const,
      address: null,
      group: null,
      transcript: null,
      error: null,
      createdBy: null,
      createdAt: 1,
    };
    store.insertFrostDkg({ ...rec, id: 'old', updatedAt: Date.now() - 10_000 });
    store.insertFrostDkg({ ...rec, id: 'new', updatedAt: Date.now() });
    await dkgRelay(5_000);
    expect(store.getFrostDkg('old')).toMatchObject({ status: 'failed', error: { code: 'COORD_FROST_RELAY_LOST' } });
    expect(store.getFrostDkg('new')!.status).toBe('running');
    const solo = await FrostDkgRelay.open({ store, nodes, logger, exclusive: true });
    opened.push(solo);
    expect(store.getFrostDkg('new')).toMatchObject({ status: 'failed', error: { code: 'COORD_FROST_DKG_TIMEOUT' } });
  });

  it('a refresh abandoned by its replica is failed when seen, its nodes told to keep their share; a new one may start', async () => {
    readyGroup();
    const refreshRec = {
      address: OUT.address,
      threshold: 2,
      participants: PARTICIPANTS,
      roster: 'rr',
      status: 'running' as const,
      step: 'round2' as const,
      oldDigest: 'aa'.repeat(32),
      digest: null,
      group: null,
      transcript: null,
      reports: null,
      error: null,
      acked: [],
      createdBy: null,
      createdAt: 1,
    };
    // Left by a replica that died during round 2; and one whose replica is alive, of another group.
    store.insertFrostRefresh({ ...refreshRec, id: 'dead', updatedAt: Date.now() - 10_000 });
    store.insertFrostRefresh({ ...refreshRec, id: 'alive', address: 'GOTHER', updatedAt: Date.now() });
    const b = await dkgRelay(5_000);
    const hub = silentHub();
    const refresh = await FrostRefreshRelay.open({
      store,
      dkg: b.relay,
      logger,
      exclusive: false,
      stepTimeoutMs: 60_000,
      abandonAfterMs: 300,
    });
    refresh.attach(hub);
    opened.push(refresh);
    // Settled at start: abandoned 10 s ago. The live one is not.
    expect(store.getFrostRefresh('dead')).toMatchObject({
      status: 'failed',
      error: { code: 'COORD_FROST_RELAY_LOST' },
    });
    expect((await refresh.get('alive')).status).toBe('running');
    // Not connected through this replica at open: each node hears the abort when it syncs here (and it counts).
    await refresh.sync('n1');
    expect(hub.sent.filter((s) => s.body.refreshId === 'dead').map((s) => [s.nodeId, s.body.step])).toEqual([
      ['n1', 'abort'],
    ]);
    expect(store.getFrostRefresh('dead')!.acked).toEqual(['n1']);
    // A refresh of the group starts; while it runs a second is refused whichever replica asks.
    const started = await refresh.start({ group: OUT.address });
    expect(started.status).toBe('running');
    await expect(refresh.start({ group: OUT.address })).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_FROST_REFRESH_RUNNING' }),
    );
    // Its replica "dies": once abandoned, a new start on another replica settles it first and runs.
    const other = await FrostRefreshRelay.open({ store, dkg: b.relay, logger, exclusive: false, abandonAfterMs: 300 });
    other.attach(silentHub());
    opened.push(other);
    await expect(other.start({ group: OUT.address })).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_FROST_REFRESH_RUNNING' }),
    );
    await sleep(400);
    const next = await other.start({ group: OUT.address });
    expect(next.status).toBe('running');
    expect(store.getFrostRefresh(started.id)).toMatchObject({
      status: 'failed',
      error: { code: 'COORD_FROST_RELAY_LOST' },
    });
    expect((await other.list(OUT.address)).map((r) => [r.id, r.status])).toEqual(
      expect.arrayContaining([
        [next.id, 'running'],
        [started.id, 'failed'],
      ]),
    );
  });
});

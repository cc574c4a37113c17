import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateIdentity } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit.ts';
import { ledgerPath, openLedgerDb } from '../src/ledger.ts';
import { createMetrics, type NodeMetrics } from '../src/metrics.ts';
import {
  backoffDelay,
  CoordinatorSession,
  CoordinatorSessions,
  type SessionOptions,
  type SessionSetOptions,
} from '../src/session.ts';
import { CoordinatorDouble } from './coordinator-double.ts';

const NETWORK = 'Test SDF Network ; September 2015';
const logger = createLogger({ name: 'session-test', level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function refused(m: NodeMetrics, code: string): Promise<number> {
  const v = (await m.refusedFrames.get()).values.find((x) => x.labels.code === code);
  return v?.value ?? 0;
}

function proposal(id: string): Body<'proposal'> {
  return { proposalId: id, kind: 'transaction', networkPassphrase: NETWORK, xdr: 'AAAA' };
}

async function setup(over: Partial<SessionOptions> = {}, coordOpts: { heartbeatMs?: number } = {}) {
  const coord = await CoordinatorDouble.start({ network: NETWORK, ...coordOpts });
  cleanups.push(() => coord.close());
  const seen: Body<'proposal'>[] = [];
  const cancels: string[] = [];
  const metrics = createMetrics();
  const dir = await mkdtemp(join(tmpdir(), 'cosigner-session-'));
  dirs.push(dir);
  const db = openLedgerDb(ledgerPath(dir));
  const audit = new AuditLog(db);
  const stellarKey = Keypair.random().publicKey();
  const session = new CoordinatorSession({
    url: coord.url,
    nodeId: 'node-a',
    identity: generateIdentity().identity,
    coordinatorKeys: [generateIdentity().identity.publicKey, coord.identity.publicKey],
    stellarKey,
    network: NETWORK,
    version: 'test',
    logger,
    audit,
    metrics,
    reconnectBaseMs: 50,
    reconnectMaxMs: 200,
    handlers: {
      onProposal: async (p) => {
        seen.push(p);
        if (p.proposalId === 'boom') throw new Error('review crashed');
        return {
          proposalId: p.proposalId,
          hash: 'ab'.repeat(32),
          outcome: 'reject',
          reasons: [{ code: 'X', message: 'm' }],
          signerKey: stellarKey,
        };
      },
      onCancel: (c) => cancels.push(c.proposalId),
    },
    ...over,
  });
  cleanups.push(async () => {
    await session.stop();
    db.close();
  });
  return { coord, session, seen, cancels, metrics, audit, db };
}

describe('coordinator session', () => {
  it('authenticates, syncs, answers proposals and logs session events in the audit chain', async () => {
    const { coord, session, seen, audit } = await setup();
    expect(session.state).toBe('stopped');
    session.start();
    await session.waitUp();
    expect(session.isUp).toBe(true);
    expect(session.sessionId).toMatch(/^s-/);
    await coord.waitFor(() => coord.frames.some((f) => f.type === 'sync'), 'sync');
    coord.propose('node-a', proposal('p1'));
    const d = await coord.waitDecision('p1');
    expect(d).toMatchObject({ proposalId: 'p1', outcome: 'reject' });
    expect(seen.map((p) => p.proposalId)).toEqual(['p1']);
    expect(audit.tail(10).map((e) => e.type)).toContain('session.up');
    // A review that throws is logged, and the session stays up.
    coord.send('node-a', 'proposal', proposal('boom'));
    await coord.waitFor(() => seen.length === 2, 'second proposal');
    expect(session.isUp).toBe(true);
  });

  it('refuses forged, replayed, stale, misaddressed and malformed frames without acting on them', async () => {
    const { coord, session, seen, metrics } = await setup();
    session.start();
    await session.waitUp();
    const stranger = generateIdentity().identity;
    coord.sendRaw('node-a', coord.frame('node-a', 'proposal', proposal('forged'), { signer: stranger }));
    const raw = coord.send('node-a', 'proposal', proposal('once'));
    coord.sendRaw('node-a', raw); // replay
    coord.sendRaw('node-a', coord.frame('node-a', 'proposal', proposal('stale'), { ts: Date.now() - 120_000 }));
    coord.sendRaw('node-a', coord.frame('node-a', 'proposal', proposal('other-session'), { session: 's-other' }));
    coord.sendRaw('node-a', 'not json');
    // A second hello inside a session is refused too.
    coord.sendRaw(
      'node-a',
      coord.frame(
        'node-a',
        'hello',
        { challenge: 'AAAA', coordinatorKey: 'AAAA', networkPassphrase: NETWORK, serverTime: 1 },
        { session: null },
      ),
    );
    coord.sendRaw('node-a', coord.frame('node-a', 'welcome', { sessionId: 'x', heartbeatMs: 1000 }, { session: null }));
    coord.send('node-a', 'proposal', proposal('last'));
    await coord.waitDecision('last');
    expect(seen.map((p) => p.proposalId)).toEqual(['once', 'last']);
    expect(await refused(metrics, 'PROTOCOL_BAD_SIGNATURE')).toBe(1);
    expect(await refused(metrics, 'PROTOCOL_REPLAY')).toBe(1);
    expect(await refused(metrics, 'PROTOCOL_STALE')).toBe(1);
    expect(await refused(metrics, 'PROTOCOL_WRONG_SESSION')).toBe(1);
    expect(await refused(metrics, 'PROTOCOL_MALFORMED')).toBe(1);
    expect(await refused(metrics, 'UNEXPECTED_HELLO')).toBe(1);
    expect(await refused(metrics, 'UNEXPECTED_WELCOME')).toBe(1);
    expect(session.isUp).toBe(true);
  });

  it('never authenticates to a coordinator whose key is not pinned, nor one on another network', async () => {
    const a = await setup({ coordinatorKeys: [generateIdentity().identity.publicKey] });
    a.session.start();
    await a.coord.waitFor(() => a.coord.connects >= 2, 'a redial after the forged hello');
    expect(a.session.isUp).toBe(false);
    expect(a.coord.conns.size).toBe(0);
    expect(await refused(a.metrics, 'PROTOCOL_BAD_SIGNATURE')).toBeGreaterThanOrEqual(1);

    const b = await setup({ network: 'Public Global Stellar Network ; September 2015' });
    b.session.start();
    await b.coord.waitFor(() => b.coord.connects >= 2, 'a redial after the wrong network');
    expect(b.coord.conns.size).toBe(0);
    expect(await refused(b.metrics, 'WRONG_NETWORK')).toBeGreaterThanOrEqual(1);
  });

  it('reconnects after a drop, syncs again (open proposals are re-sent) and flushes queued decisions', async () => {
    const { coord, session, seen, audit } = await setup();
    session.start();
    await session.waitUp();
    coord.open.set('p-open', proposal('p-open'));
    const first = session.sessionId;
    coord.dropAll();
    await coord.waitFor(() => coord.connects >= 2 && coord.decisions.some((d) => d.proposalId === 'p-open'), 'resync');
    await session.waitUp();
    expect(session.sessionId).not.toBe(first);
    expect(seen.map((p) => p.proposalId)).toContain('p-open');
    expect(audit.tail(20).map((e) => e.type)).toContain('session.down');

    // A decision made while down (a manual approval) goes out after the next welcome.
    const port = coord.port;
    await coord.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(session.isUp).toBe(false);
    session.sendDecision({
      proposalId: 'manual',
      hash: 'cd'.repeat(32),
      outcome: 'reject',
      reasons: [],
      signerKey: Keypair.random().publicKey(),
    });
    const again = await CoordinatorDouble.start({ network: NETWORK, identity: coord.identity, port });
    cleanups.push(() => again.close());
    const d = await again.waitDecision('manual');
    expect(d.outcome).toBe('reject');
  });

  it('drops a silent coordinator after three heartbeats and redials; answers pings, cancels and errors', async () => {
    const { coord, session, cancels } = await setup({}, { heartbeatMs: 100 });
    session.start();
    await session.waitUp();
    coord.send('node-a', 'ping', { nonce: 'n1' });
    await coord.waitFor(() => coord.frames.some((f) => f.type === 'pong'), 'pong');
    coord.send('node-a', 'cancel', { proposalId: 'p9', reason: 'expired' });
    coord.send('node-a', 'error', { code: 'X', message: 'informational' });
    coord.send('node-a', 'pong', { nonce: 'unsolicited' });
    await coord.waitFor(() => coord.frames.some((f) => f.type === 'ping'), 'a heartbeat ping');
    expect(cancels).toEqual(['p9']);
    coord.answerPings = false;
    await coord.waitFor(() => coord.connects >= 2, 'redial after silence', 10_000);
  });

  it('rate limits incoming frames and refuses frames over the protocol size', async () => {
    const { coord, session, metrics, seen } = await setup({ framesPerSecond: 1, frameBurst: 5 });
    session.start();
    await session.waitUp();
    for (let i = 0; i < 8; i++) coord.send('node-a', 'proposal', proposal(`r${i}`));
    await coord.waitFor(() => coord.decisions.length >= 1, 'some decisions');
    await new Promise((r) => setTimeout(r, 100));
    expect(await refused(metrics, 'RATE_LIMITED')).toBeGreaterThanOrEqual(5);
    expect(seen.length).toBeLessThanOrEqual(3);
    // ws closes the socket (1009) on a frame above maxPayload; the node redials.
    coord.sendRaw('node-a', 'x'.repeat(600 * 1024));
    await coord.waitFor(() => coord.connects >= 2, 'redial after an oversize frame');
  });

  it('gives up the handshake after its deadline', async () => {
    const { coord, session } = await setup({ handshakeTimeoutMs: 150 });
    // The double never welcomes a node that names this id.
    coord.wss.removeAllListeners('connection');
    coord.wss.on('connection', () => {
      coord.connects += 1;
    });
    session.start();
    await coord.waitFor(() => coord.connects >= 2, 'redial after handshake timeout', 10_000);
    expect(session.isUp).toBe(false);
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(backoffDelay(0, 250, 10_000, () => 0)).toBe(125);
    expect(backoffDelay(0, 250, 10_000, () => 1)).toBe(250);
    expect(backoffDelay(3, 250, 10_000, () => 1)).toBe(2000);
    expect(backoffDelay(20, 250, 10_000, () => 1)).toBe(10_000);
    expect(backoffDelay(20, 250, 10_000, () => 0)).toBe(5000);
    expect(backoffDelay(0, 10, 10_000, () => 0)).toBe(50);
  });
});

async function gauge(m: NodeMetrics, name: 'sessionUp' | 'coordinatorSessionUp', url?: string): Promise<number> {
  const values = (await m[name].get()).values;
  return (url === undefined ? values[0] : values.find((v) => v.labels.coordinator === url))?.value ?? -1;
}

async function opened(m: NodeMetrics, url: string): Promise<number> {
  return (await m.coordinatorSessions.get()).values.find((v) => v.labels.coordinator === url)?.value ?? 0;
}

/** Two coordinator replicas (protocol doubles on real ports) and a node's session set dialling both. */
async function setupSet(over: Partial<SessionSetOptions> = {}) {
  const a = await CoordinatorDouble.start({ network: NETWORK });
  const b = await CoordinatorDouble.start({ network: NETWORK });
  const doubles = [a, b];
  cleanups.push(async () => {
    for (const d of doubles) await d.close();
  });
  const dir = await mkdtemp(join(tmpdir(), 'cosigner-sessions-'));
  dirs.push(dir);
  const db = openLedgerDb(ledgerPath(dir));
  const audit = new AuditLog(db);
  const metrics = createMetrics();
  const stellarKey = Keypair.random().publicKey();
  const seen: string[] = [];
  const cancels: string[] = [];
  const options: SessionSetOptions = {
    urls: [a.url, b.url],
    nodeId: 'node-a',
    identity: generateIdentity().identity,
    coordinatorKeys: [a.identity.publicKey, b.identity.publicKey],
    stellarKey,
    network: NETWORK,
    version: 'test',
    logger,
    audit,
    metrics,
    reconnectBaseMs: 50,
    reconnectMaxMs: 200,
    handlers: {
      onProposal: async (p) => {
        seen.push(p.proposalId);
        // The same answer whoever asks: the review behind every session is one.
        return {
          proposalId: p.proposalId,
          hash: 'ab'.repeat(32),
          outcome: p.proposalId.startsWith('held') ? 'hold' : 'approve',
          reasons: [],
          signerKey: stellarKey,
          ...(p.proposalId.startsWith('held') ? {} : { signature: Buffer.from(`sig-of-${p.xdr}`).toString('base64') }),
        };
      },
      onCancel: (c) => cancels.push(c.proposalId),
    },
  };
  // Descriptors, not a spread: a getter in `over` (a key that changes) stays a getter.
  Object.defineProperties(options, Object.getOwnPropertyDescriptors(over));
  const set = new CoordinatorSessions(options);
  cleanups.push(async () => {
    await set.stop();
    db.close();
  });
  return { a, b, doubles, set, metrics, audit, seen, cancels, stellarKey };
}

function manual(id: string, signerKey: string): Body<'decision'> {
  return { proposalId: id, hash: 'cd'.repeat(32), outcome: 'reject', reasons: [], signerKey };
}

describe('coordinator session set (one session per replica)', () => {
  it('announces the key the node signs with now at every handshake, on every session (a key switch)', async () => {
    let key = Keypair.random().publicKey();
    const { a, b, set } = await setupSet({
      get stellarKey() {
        return key;
      },
    });
    set.start();
    for (const d of [a, b]) await d.waitFor(() => d.conns.get('node-a')?.stellarKey === key, 'the first key');
    // What node.ts does on a key switch: the sessions stop and start again, and each handshake reads the key anew.
    key = Keypair.random().publicKey();
    await set.stop();
    set.start();
    for (const d of [a, b]) await d.waitFor(() => d.conns.get('node-a')?.stellarKey === key, 'the new key');
  });

  it('holds one authenticated session per URL and answers each frame on the session it came on', async () => {
    const { a, b, set, metrics, audit } = await setupSet();
    expect(set.isUp).toBe(false);
    expect(await gauge(metrics, 'sessionUp')).toBe(0);
    expect(set.status().map((s) => s.state)).toEqual(['stopped', 'stopped']);
    set.start();
    await set.waitUp();
    await a.waitFor(() => set.status().every((x) => x.up), 'both sessions up');
    await set.waitUp(); // already up: resolves at once
    expect(set.status()).toEqual([
      { url: a.url, state: 'up', up: true },
      { url: b.url, state: 'up', up: true },
    ]);
    expect(await gauge(metrics, 'sessionUp')).toBe(1);
    expect(await gauge(metrics, 'coordinatorSessionUp', a.url)).toBe(1);
    expect(await gauge(metrics, 'coordinatorSessionUp', b.url)).toBe(1);
    // Each session has its own id, handshake and sync.
    const [sa, sb] = set.sessions;
    expect(sa!.sessionId).not.toBe(sb!.sessionId);
    for (const d of [a, b]) await d.waitFor(() => d.frames.some((f) => f.type === 'sync'), 'a sync on each');

    // Both replicas ask the same transaction (a takeover re-asks): each gets the answer on its own session.
    a.propose('node-a', { proposalId: 'p-same', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX1' });
    b.propose('node-a', { proposalId: 'p-same', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX1' });
    const [da, db] = await Promise.all([a.waitDecision('p-same'), b.waitDecision('p-same')]);
    expect(da.signature).toBe(Buffer.from('sig-of-TX1').toString('base64'));
    expect(db.signature).toBe(da.signature);
    // A proposal only one replica sends is answered to that one only.
    a.propose('node-a', { proposalId: 'p-a', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX2' });
    await a.waitDecision('p-a');
    expect(b.decisions.map((d) => d.proposalId)).toEqual(['p-same']);
    const ups = audit
      .tail(20)
      .filter((e) => e.type === 'session.up')
      .map((e) => (e.data as { url: string }).url);
    expect(ups.sort()).toEqual([a.url, b.url].sort());
  });

  it('a replica down leaves the others serving; the node stays ready and redials it until it returns', async () => {
    const { a, b, doubles, set, metrics, audit } = await setupSet();
    set.start();
    await a.waitFor(() => set.status().every((x) => x.up), 'both sessions up');
    const port = a.port;
    await a.close();
    await b.waitFor(() => set.status()[0]!.state !== 'up', 'the first session to notice');
    expect(set.isUp).toBe(true);
    expect(set.status()[1]).toEqual({ url: b.url, state: 'up', up: true });
    expect(await gauge(metrics, 'sessionUp')).toBe(1);
    expect(await gauge(metrics, 'coordinatorSessionUp', a.url)).toBe(0);
    expect(audit.tail(20).some((e) => e.type === 'session.down' && (e.data as { url: string }).url === a.url)).toBe(
      true,
    );
    b.propose('node-a', { proposalId: 'p-b', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX3' });
    expect((await b.waitDecision('p-b')).outcome).toBe('approve');

    // The replica returns on its address: the node's own backoff brings its session back, with a sync.
    const again = await CoordinatorDouble.start({ network: NETWORK, identity: a.identity, port });
    doubles.push(again);
    await again.waitNode('node-a');
    await again.waitFor(() => again.frames.some((f) => f.type === 'sync'), 'sync after the return');
    await again.waitFor(() => set.status()[0]!.up, 'session state up');
    expect(await opened(metrics, a.url)).toBe(2);
    expect(await opened(metrics, b.url)).toBe(1);

    // Every replica down: not ready; the first to return makes it ready again.
    const portB = b.port;
    await again.close();
    await b.close();
    await b.waitFor(() => !set.isUp, 'all sessions down');
    expect(set.isUp).toBe(false);
    expect(await gauge(metrics, 'sessionUp')).toBe(0);
    const waiting = set.waitUp();
    const back = await CoordinatorDouble.start({ network: NETWORK, identity: b.identity, port: portB });
    doubles.push(back);
    await waiting;
    expect(set.isUp).toBe(true);
  });

  it('sends a manual decision to the sessions that asked for it, else to every session; queued while one is down', async () => {
    const { a, b, set, cancels, stellarKey } = await setupSet();
    set.start();
    await a.waitFor(() => set.status().every((x) => x.up), 'both sessions up');
    a.propose('node-a', { proposalId: 'held-1', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX4' });
    await a.waitDecision('held-1');
    expect(set.sendDecision(manual('held-1', stellarKey))).toBe(true);
    await a.waitFor(() => a.decisions.filter((d) => d.proposalId === 'held-1').length === 2, 'manual decision on a');
    // Not known to have been asked there: b never hears of it.
    await new Promise((r) => setTimeout(r, 100));
    expect(b.decisions.some((d) => d.proposalId === 'held-1')).toBe(false);

    // Nobody known to have asked (the node restarted since, or a cancel forgot it): every session gets it.
    b.propose('node-a', { proposalId: 'held-2', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX5' });
    await b.waitDecision('held-2');
    b.send('node-a', 'cancel', { proposalId: 'held-2', reason: 'cancelled' });
    await b.waitFor(() => cancels.includes('held-2'), 'cancel');
    set.sendDecision(manual('held-2', stellarKey));
    await a.waitDecision('held-2');
    await b.waitFor(() => b.decisions.filter((d) => d.proposalId === 'held-2').length === 2, 'on b too');

    // The session that asked is down: the decision waits for its next welcome, and says it did not leave now.
    b.propose('node-a', { proposalId: 'held-3', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX6' });
    await b.waitDecision('held-3');
    const port = b.port;
    await b.close();
    await a.waitFor(() => !set.status()[1]!.up, 'b down');
    expect(set.sendDecision(manual('held-3', stellarKey))).toBe(false);
    const again = await CoordinatorDouble.start({ network: NETWORK, identity: b.identity, port });
    cleanups.push(() => again.close());
    expect((await again.waitDecision('held-3')).outcome).toBe('reject');
    expect(a.decisions.some((d) => d.proposalId === 'held-3')).toBe(false);
  });

  it('forgets the oldest route beyond its bound (that decision then goes to every session)', async () => {
    const { a, b, set, stellarKey } = await setupSet({ maxRoutes: 1 });
    set.start();
    await a.waitFor(() => set.status().every((x) => x.up), 'both sessions up');
    a.propose('node-a', { proposalId: 'held-old', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX7' });
    await a.waitDecision('held-old');
    a.propose('node-a', { proposalId: 'held-new', kind: 'transaction', networkPassphrase: NETWORK, xdr: 'TX8' });
    await a.waitDecision('held-new');
    set.sendDecision(manual('held-old', stellarKey));
    await b.waitDecision('held-old');
  });

  it('needs at least one URL', () => {
    expect(
      () =>
        new CoordinatorSessions({
          urls: [],
          nodeId: 'n',
          identity: generateIdentity().identity,
          coordinatorKeys: [],
          stellarKey: Keypair.random().publicKey(),
          network: NETWORK,
          version: 'test',
          logger,
          handlers: { onProposal: async () => ({}) as Body<'decision'>, onCancel: () => {} },
        }),
    ).toThrow(/at least one coordinator URL/);
  });
});

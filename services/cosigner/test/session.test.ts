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
import { backoffDelay, CoordinatorSession, type SessionOptions } from '../src/session.ts';
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

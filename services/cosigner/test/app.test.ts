import { rm } from 'node:fs/promises';
import { createLogger } from '@cosigner/runtime/logger';
import { rawRequest } from '@cosigner/testkit/http';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { build } from '../src/app.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics } from '../src/metrics.ts';
import type { DecisionBody } from '../src/review.ts';
import { buildTx, NETWORK, pay, reviewerFor, reviewFixture } from './helpers.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function setup(
  opts: {
    token?: string;
    keyOk?: boolean;
    sessionUp?: boolean;
    allowedHosts?: string[];
    sessions?: { url: string; state: string; up: boolean }[];
  } = {},
) {
  const { dir, account, dest, policy, signer } = await reviewFixture('cosigner-app-', dirs, { holdAbove: '50' });
  const ledger = new SigningLedger(openLedgerDb(ledgerPath(dir)));
  const metrics = createMetrics();
  const logger = createLogger({ name: 'app-test', level: 'silent' });
  const reviewer = reviewerFor(policy, { ledger, signer, logger, metrics });
  const sent: DecisionBody[] = [];
  const app = build({
    reviewer,
    ledger,
    metrics,
    keyHealth: async () => (opts.keyOk === false ? { ok: false, detail: 'KMS unreachable' } : { ok: true }),
    sessionUp: () => opts.sessionUp ?? true,
    sendDecision: (d) => {
      sent.push(d);
      return opts.sessionUp ?? true;
    },
    ...(opts.sessions ? { sessions: () => opts.sessions! } : {}),
    adminToken: opts.token,
    ...(opts.allowedHosts ? { allowedHosts: opts.allowedHosts } : {}),
  });
  const hold = async (seq: string, id: string) => {
    const d = await reviewer.review({
      proposalId: id,
      kind: 'transaction',
      networkPassphrase: NETWORK,
      xdr: buildTx({ source: account, seq, ops: [pay(dest, '60')] }),
    });
    expect(d.outcome).toBe('hold');
  };
  return { app, ledger, sent, hold, signer };
}

describe('admin API', () => {
  it('serves health, readiness (key AND session) and metrics', async () => {
    const a = await setup();
    expect((await a.app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await a.app.inject({ url: '/readyz' })).json()).toEqual({ ready: true, key: true, session: true });
    const m = await a.app.inject({ url: '/metrics' });
    expect(m.headers['content-type']).toContain('text/plain');
    expect(m.body).toContain('cosigner_node_ledger_rows{kind="signatures"} 0');
    const b = await setup({ keyOk: false });
    const nr = await b.app.inject({ url: '/readyz' });
    expect(nr.statusCode).toBe(503);
    expect(nr.json()).toEqual({ ready: false, key: false, session: true, detail: 'KMS unreachable' });
    const c = await setup({ sessionUp: false });
    expect((await c.app.inject({ url: '/readyz' })).json()).toMatchObject({ ready: false, session: false });
    // With several coordinator replicas: ready while one session is up, each URL's state listed.
    const sessions = [
      { url: 'ws://127.0.0.1:7001', state: 'backoff', up: false },
      { url: 'ws://127.0.0.1:7002', state: 'up', up: true },
    ];
    const d = await setup({ sessions });
    const dr = await d.app.inject({ url: '/readyz' });
    expect(dr.statusCode).toBe(200);
    expect(dr.json()).toEqual({ ready: true, key: true, session: true, sessions });
  });

  it('lists held proposals and approves one: the signature goes to the coordinator', async () => {
    const a = await setup();
    await a.hold('5', 'h-1');
    const list = await a.app.inject({ url: '/v1/pending' });
    expect(list.json().pending).toEqual([
      expect.objectContaining({ id: 'h-1', reasons: [expect.objectContaining({ code: 'HOLD_AMOUNT_ABOVE' })] }),
    ]);
    const r = await a.app.inject({ method: 'POST', url: '/v1/pending/h-1/approve', payload: { by: 'alice' } });
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(body).toMatchObject({ outcome: 'approve', delivered: true, signerKey: a.signer.address });
    expect(
      Keypair.fromPublicKey(a.signer.address).verify(
        Buffer.from(body.hash, 'hex'),
        Buffer.from(body.signature, 'base64'),
      ),
    ).toBe(true);
    expect(a.sent).toHaveLength(1);
    expect(a.ledger.pending('h-1')).toMatchObject({ state: 'approved', closedBy: 'admin:alice' });
    const again = await a.app.inject({ method: 'POST', url: '/v1/pending/h-1/reject', payload: {} });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: 'NODE_PENDING_CLOSED' });
    const missing = await a.app.inject({ method: 'POST', url: '/v1/pending/none/approve', payload: {} });
    expect(missing.statusCode).toBe(404);
  });

  it('rejects with a note; refuses bad ids, unknown fields and oversized bodies with 4xx', async () => {
    const a = await setup({ sessionUp: false });
    await a.hold('6', 'h-2');
    const r = await a.app.inject({ method: 'POST', url: '/v1/pending/h-2/reject', payload: { note: 'too big' } });
    expect(r.json()).toMatchObject({ outcome: 'reject', delivered: false, reasons: [{ code: 'MANUAL_REJECT' }] });
    expect(a.sent).toHaveLength(1); // queued by the session until it is up again
    expect((await a.app.inject({ method: 'POST', url: '/v1/pending/bad%20id/approve', payload: {} })).statusCode).toBe(
      400,
    );
    expect(
      (await a.app.inject({ method: 'POST', url: '/v1/pending/h-2/approve', payload: { evil: 1 } })).statusCode,
    ).toBe(400);
    const big = await a.app.inject({
      method: 'POST',
      url: '/v1/pending/h-2/approve',
      payload: { note: 'x'.repeat(20_000) },
    });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ code: 'NODE_BAD_REQUEST' });
  });

  it('requires the admin token on /v1 routes when one is configured', async () => {
    const a = await setup({ token: 's3cret-token' });
    await a.hold('7', 'h-3');
    expect((await a.app.inject({ url: '/v1/pending' })).statusCode).toBe(401);
    expect(
      (await a.app.inject({ url: '/v1/pending', headers: { authorization: 'Bearer wrong' } })).json(),
    ).toMatchObject({
      code: 'NODE_UNAUTHORIZED',
    });
    const ok = await a.app.inject({ url: '/v1/pending', headers: { authorization: 'Bearer s3cret-token' } });
    expect(ok.statusCode).toBe(200);
    expect((await a.app.inject({ method: 'POST', url: '/v1/pending/h-3/approve', payload: {} })).statusCode).toBe(401);
    expect(a.ledger.pending('h-3')?.state).toBe('held');
    // Health stays open (probes carry no token).
    expect((await a.app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });

  it('refuses a foreign Host (DNS rebinding) and a foreign Origin over a real socket: nothing approved, nothing signed', async () => {
    const a = await setup({ allowedHosts: ['node-0.internal'] });
    await a.hold('8', 'h-4');
    const url = await a.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const approve = (headers: Record<string, string>) =>
        rawRequest(url, { method: 'POST', path: '/v1/pending/h-4/approve', headers, body: '{}' });
      for (const host of ['rebind.attacker.example', 'rebind.attacker.example:7400', '127.evil.example']) {
        const r = await approve({ host });
        expect(r.status, host).toBe(403);
        expect(JSON.parse(r.body)).toMatchObject({ code: 'RUNTIME_HOST_NOT_ALLOWED' });
      }
      for (const origin of ['http://rebind.attacker.example', 'null']) {
        const r = await approve({ host: new URL(url).host, origin });
        expect(r.status, origin).toBe(403);
        expect(JSON.parse(r.body)).toMatchObject({ code: 'RUNTIME_ORIGIN_NOT_ALLOWED' });
      }
      const roster = await rawRequest(url, { path: '/v1/pending', headers: { host: 'rebind.attacker.example' } });
      expect(roster.status).toBe(403);
      expect(a.ledger.pending('h-4')?.state).toBe('held');
      expect(a.sent).toHaveLength(0);
      expect(a.ledger.counts().signatures).toBe(0);
      // Loopback literals, localhost and the configured name are served.
      for (const host of [new URL(url).host, 'localhost:7400', '[::1]:7400', 'NODE-0.internal']) {
        expect((await rawRequest(url, { path: '/v1/pending', headers: { host } })).status, host).toBe(200);
      }
      const ok = await approve({ host: 'localhost', origin: 'http://localhost:3000' });
      expect(ok.status).toBe(200);
      expect(a.sent).toHaveLength(1);
    } finally {
      await a.app.close();
    }
  });

  it('answers 500 without details when something unexpected fails', async () => {
    const a = await setup();
    a.ledger.close();
    const r = await a.app.inject({ url: '/v1/pending' });
    expect(r.statusCode).toBe(500);
    expect(r.json()).toEqual({
      code: 'NODE_INTERNAL',
      message: 'The node failed unexpectedly; the details are in its log.',
    });
  });
});

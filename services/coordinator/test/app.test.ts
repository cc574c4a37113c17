import { rawRequest } from '@cosigner/testkit/http';
import { Keypair } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createApiKey } from '../src/apikeys.ts';
import {
  bearer,
  disposeHarness,
  FakeLedger,
  type Harness,
  harness,
  harnessWithAccount,
  multisig,
  NETWORK,
  payment,
  postAsAdmin,
} from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  h = await disposeHarness(h);
});

const signers = () => [Keypair.random().publicKey(), Keypair.random().publicKey(), Keypair.random().publicKey()];

async function withAccount(config: Record<string, unknown> = {}) {
  const r = await harnessWithAccount({ config });
  h = r.h;
  return r;
}

describe('POST /v1/proposals', () => {
  it('accepts a transaction: 201, committed, with requirements per account', async () => {
    const { source, h } = await withAccount();
    const xdr = payment(source);
    const res = await postAsAdmin(h, '/v1/proposals', { xdr, note: 'rent' });
    expect(res.statusCode).toBe(201);
    const p = res.json();
    expect(p.status).toBe('pending');
    expect(p.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(p.note).toBe('rent');
    expect(p.requirements).toEqual([
      { accountId: source, level: 'medium', weight: 2, collected: 0, met: false, signers: [] },
    ]);
    expect(h.store.getProposal(p.id)?.xdr).toBe(xdr);
    const got = await h.app.inject({
      method: 'GET',
      url: `/v1/proposals/${p.id}`,
      headers: { 'x-api-key': h.adminKey },
    });
    expect(got.statusCode).toBe(200);
    expect(got.json().id).toBe(p.id);
    expect(got.json().envelope).toBeNull();
  });

  it('idempotency: same key and XDR -> 200 with the same proposal; other XDR -> 409', async () => {
    const { source, h } = await withAccount();
    const xdr = payment(source);
    const a = await postAsAdmin(h, '/v1/proposals', { xdr, idempotencyKey: 'k-1' });
    const b = await postAsAdmin(h, '/v1/proposals', { xdr, idempotencyKey: 'k-1' });
    expect(a.statusCode).toBe(201);
    expect(b.statusCode).toBe(200);
    expect(b.json().id).toBe(a.json().id);
    const c = await postAsAdmin(h, '/v1/proposals', { xdr: payment(source, { seq: '200' }), idempotencyKey: 'k-1' });
    expect(c.statusCode).toBe(409);
    expect(c.json().code).toBe('COORD_IDEMPOTENCY_CONFLICT');
    // A client that lost the answer finds the proposal by its key: zero or one item, the status filter applies.
    const list = (q: string) => h.app.inject({ url: `/v1/proposals?${q}`, headers: bearer(h.adminKey) });
    const found = (await list('idempotencyKey=k-1')).json();
    expect(found.items.map((p: { id: string }) => p.id)).toEqual([a.json().id]);
    expect(found.nextCursor).toBeNull();
    expect((await list('idempotencyKey=k-1&status=submitted')).json().items).toEqual([]);
    expect((await list('idempotencyKey=k-2')).json().items).toEqual([]);
    const bad = await list('idempotencyKey=has%20space');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('COORD_BAD_REQUEST');
  });

  it('bad XDR -> 400 with the decoder code; wrong network -> 400; schema errors -> 400', async () => {
    const { source, h } = await withAccount();
    const bad = await postAsAdmin(h, '/v1/proposals', { xdr: 'AAAA%%%' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('STELLAR_MALFORMED_XDR');
    const net = await postAsAdmin(h, '/v1/proposals', {
      xdr: payment(source),
      network: 'Public Global Stellar Network ; September 2015',
    });
    expect(net.statusCode).toBe(400);
    expect(net.json().code).toBe('COORD_WRONG_NETWORK');
    const extra = await postAsAdmin(h, '/v1/proposals', { xdr: payment(source), surprise: 1 });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().code).toBe('COORD_BAD_REQUEST');
    const missing = await postAsAdmin(h, '/v1/proposals', {});
    expect(missing.json().code).toBe('COORD_BAD_REQUEST');
    const notJson = await h.app.inject({
      method: 'POST',
      url: '/v1/proposals',
      headers: { ...bearer(h.adminKey), 'content-type': 'application/json' },
      payload: '{',
    });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json().code).toBe('COORD_BAD_REQUEST');
  });

  it('a transaction hashed for another network is refused by the hash the nodes would compute (same XDR, other hash)', async () => {
    const { source, h } = await withAccount();
    const other = payment(source, { network: 'Some Other Network' });
    const res = await postAsAdmin(h, '/v1/proposals', { xdr: other });
    // The XDR carries no network: it decodes, and its hash is computed for the pinned network only.
    expect(res.statusCode).toBe(201);
    expect(res.json().network).toBe(NETWORK);
  });

  it('unknown source account -> 422; Horizon down -> 503', async () => {
    const { h, ledger } = await withAccount();
    const res = await postAsAdmin(h, '/v1/proposals', { xdr: payment(Keypair.random().publicKey()) });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('COORD_ACCOUNT_NOT_FOUND');
    ledger.up = false;
    const down = await postAsAdmin(h, '/v1/proposals', { xdr: payment(Keypair.random().publicKey()) });
    expect(down.statusCode).toBe(503);
    expect(down.json().code).toBe('COORD_HORIZON_UNAVAILABLE');
  });

  it('caches account state for a ledger: two proposals, one load', async () => {
    const { source, h, ledger } = await withAccount();
    for (const seq of ['1', '2']) {
      const r = await postAsAdmin(h, '/v1/proposals', { xdr: payment(source, { seq }) });
      expect(r.statusCode).toBe(201);
    }
    expect(ledger.loads).toBe(1);
  });

  it('production mode accepts https callback URLs only', async () => {
    const { source, h } = await withAccount({ mode: 'production' });
    const r = await postAsAdmin(h, '/v1/proposals', { xdr: payment(source), callbackUrl: 'http://hooks.example/x' });
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'COORD_BAD_REQUEST', details: { field: 'callbackUrl' } });
    const ok = await postAsAdmin(h, '/v1/proposals', { xdr: payment(source), callbackUrl: 'https://hooks.example/x' });
    expect(ok.statusCode).toBe(201);
  });

  it('413 above the body limit', async () => {
    const { h } = await withAccount({ limits: { bodyBytes: 2048 } });
    const res = await postAsAdmin(h, '/v1/proposals', { xdr: 'A'.repeat(4000) });
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe('COORD_BODY_TOO_LARGE');
  });

  it('429 per API key past its rate, with a code; other keys unaffected', async () => {
    const { h } = await withAccount({ limits: { ratePerSecond: 0.1, rateBurst: 2 } });
    const other = (await createApiKey(h.store, ['read'])).key;
    const codes: number[] = [];
    for (let i = 0; i < 3; i++)
      codes.push((await h.app.inject({ url: '/v1/proposals', headers: bearer(h.adminKey) })).statusCode);
    expect(codes).toEqual([200, 200, 429]);
    const limited = await h.app.inject({ url: '/v1/proposals', headers: bearer(h.adminKey) });
    expect(limited.json().code).toBe('COORD_RATE_LIMITED');
    expect(limited.headers['retry-after']).toBeDefined();
    expect((await h.app.inject({ url: '/v1/proposals', headers: bearer(other) })).statusCode).toBe(200);
  });

  it('429 when too many proposals are open', async () => {
    const { source, h } = await withAccount({ limits: { maxOpenProposals: 1 } });
    expect((await postAsAdmin(h, '/v1/proposals', { xdr: payment(source, { seq: '1' }) })).statusCode).toBe(201);
    const r = await postAsAdmin(h, '/v1/proposals', { xdr: payment(source, { seq: '2' }) });
    expect(r.statusCode).toBe(429);
    expect(r.json().code).toBe('COORD_TOO_MANY_OPEN');
  });
});

describe('authentication and scopes', () => {
  it('401 without or with a wrong key, 403 without the scope', async () => {
    const { source, h } = await withAccount();
    const none = await h.app.inject({ url: '/v1/proposals' });
    expect(none.statusCode).toBe(401);
    expect(none.json().code).toBe('COORD_UNAUTHENTICATED');
    const forged = `cak.${'0'.repeat(16)}.${'A'.repeat(43)}`;
    expect((await h.app.inject({ url: '/v1/proposals', headers: bearer(forged) })).statusCode).toBe(401);
    expect((await h.app.inject({ url: '/v1/proposals', headers: bearer('garbage') })).statusCode).toBe(401);
    const realId = h.adminKey.split('.')[1];
    expect(
      (await h.app.inject({ url: '/v1/proposals', headers: bearer(`cak.${realId}.${'B'.repeat(43)}`) })).statusCode,
    ).toBe(401);
    const reader = (await createApiKey(h.store, ['read'])).key;
    const post = await h.app.inject({
      method: 'POST',
      url: '/v1/proposals',
      headers: bearer(reader),
      payload: { xdr: payment(source) },
    });
    expect(post.statusCode).toBe(403);
    expect(post.json().code).toBe('COORD_FORBIDDEN');
    const proposer = (await createApiKey(h.store, ['propose'])).key;
    expect((await h.app.inject({ url: '/v1/nodes', headers: { 'x-api-key': proposer } })).statusCode).toBe(403);
    expect(
      (
        await h.app.inject({
          method: 'POST',
          url: '/v1/proposals',
          headers: bearer(proposer),
          payload: { xdr: payment(source) },
        })
      ).statusCode,
    ).toBe(201);
  });
});

describe('GET /v1/proposals, cancel, nodes, health, docs', () => {
  it('lists newest first with a cursor and a status filter', async () => {
    const { source, h } = await withAccount();
    const ids: string[] = [];
    for (const seq of ['1', '2', '3']) {
      ids.push((await postAsAdmin(h, '/v1/proposals', { xdr: payment(source, { seq }) })).json().id);
    }
    const p1 = (await h.app.inject({ url: '/v1/proposals?limit=2', headers: bearer(h.adminKey) })).json();
    expect(p1.items.map((p: { id: string }) => p.id)).toEqual([ids[2], ids[1]]);
    expect(p1.nextCursor).not.toBeNull();
    const p2 = (
      await h.app.inject({ url: `/v1/proposals?limit=2&cursor=${p1.nextCursor}`, headers: bearer(h.adminKey) })
    ).json();
    expect(p2.items.map((p: { id: string }) => p.id)).toEqual([ids[0]]);
    expect(p2.nextCursor).toBeNull();
    const cancelled = await postAsAdmin(h, `/v1/proposals/${ids[0]}/cancel`, { reason: 'typo' });
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json().status).toBe('cancelled');
    expect(cancelled.json().statusReason).toContain('typo');
    const only = (await h.app.inject({ url: '/v1/proposals?status=cancelled', headers: bearer(h.adminKey) })).json();
    expect(only.items.map((p: { id: string }) => p.id)).toEqual([ids[0]]);
    const again = await h.app.inject({
      method: 'POST',
      url: `/v1/proposals/${ids[0]}/cancel`,
      headers: bearer(h.adminKey),
    });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('COORD_NOT_CANCELLABLE');
    const bad = await h.app.inject({ url: '/v1/proposals?cursor=abc', headers: bearer(h.adminKey) });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('COORD_BAD_CURSOR');
    const badStatus = await h.app.inject({ url: '/v1/proposals?status=nope', headers: bearer(h.adminKey) });
    expect(badStatus.statusCode).toBe(400);
  });

  it('404 for an unknown proposal, cancel target or route', async () => {
    const { h } = await withAccount();
    const r = await h.app.inject({ url: '/v1/proposals/nope', headers: bearer(h.adminKey) });
    expect(r.statusCode).toBe(404);
    expect(r.json().code).toBe('COORD_NOT_FOUND');
    expect(
      (await h.app.inject({ method: 'POST', url: '/v1/proposals/nope/cancel', headers: bearer(h.adminKey) }))
        .statusCode,
    ).toBe(404);
    expect((await h.app.inject({ url: '/v2/nothing' })).json().code).toBe('COORD_NOT_FOUND');
  });

  it('GET /v1/nodes lists enrolled nodes', async () => {
    const { h } = await withAccount();
    h.store.enrollNode(
      { id: 'x1', identityKey: Buffer.alloc(32, 1).toString('base64'), stellarKey: Keypair.random().publicKey() },
      Date.now(),
    );
    const r = await h.app.inject({ url: '/v1/nodes', headers: bearer(h.adminKey) });
    expect(r.statusCode).toBe(200);
    expect(r.json().nodes).toMatchObject([
      { id: 'n0' },
      { id: 'n1' },
      { id: 'n2' },
      { id: 'x1', connected: false, approvals: 0, misbehaviours: 0, lastSeen: null },
    ]);
  });

  it('answers only a Host it serves, over HTTP and the node WebSocket (DNS rebinding guard)', async () => {
    const ledger = new FakeLedger();
    const source = Keypair.random().publicKey();
    ledger.accounts.set(source, multisig(source, signers(), 2));
    h = await harness({ ledger, listen: true, config: { allowedHosts: ['coordinator'] } });
    const url = h.url!;
    const propose = (host: string) =>
      rawRequest(url, {
        method: 'POST',
        path: '/v1/proposals',
        headers: { host, ...bearer(h!.adminKey) },
        body: JSON.stringify({ xdr: payment(source) }),
      });
    const refused = await propose('rebind.attacker.example:8080');
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'RUNTIME_HOST_NOT_ALLOWED' });
    expect((await propose('127.evil.example')).status).toBe(403);
    expect((await propose('coordinator:8080')).status).toBe(201);
    expect((await propose(new URL(url).host)).status).toBe(201);
    const upgrade = (host: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/nodes/connect`, { headers: { host } });
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on('open', () => {
          resolve(101);
          ws.close();
        });
        ws.on('error', () => resolve(-1));
      });
    expect(await upgrade('rebind.attacker.example')).toBe(403);
    expect(await upgrade('coordinator:8080')).toBe(101);
  });

  it('healthz, readyz (db + horizon), metrics, OpenAPI', async () => {
    const { h, ledger } = await withAccount();
    expect((await h.app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await h.app.inject({ url: '/readyz' })).json()).toEqual({
      status: 'ready',
      checks: { database: true, horizon: true },
    });
    ledger.up = false;
    const un = await h.app.inject({ url: '/readyz' });
    expect(un.statusCode).toBe(503);
    expect(un.json().checks.horizon).toBe(false);
    const m = await h.app.inject({ url: '/metrics' });
    expect(m.statusCode).toBe(200);
    expect(m.body).toContain('coordinator_proposal_seconds');
    expect(m.body).toContain('coordinator_node_decision_seconds');
    const spec = await h.app.inject({ url: '/docs/json' });
    expect(spec.statusCode).toBe(200);
    const paths = Object.keys(spec.json().paths);
    expect(paths).toEqual(
      expect.arrayContaining(['/v1/proposals', '/v1/proposals/{id}', '/v1/proposals/{id}/cancel', '/v1/nodes']),
    );
    expect(paths).not.toContain('/v1/nodes/connect');
  });
});

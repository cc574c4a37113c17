import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONSOLE_CSP, SHARED_CONSOLE_DIR } from '@cosigner/runtime/console-static';
import { authEntry } from '@cosigner/testkit/soroban';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApiKey } from '../src/apikeys.ts';
import { CONSOLE_SUBPROTOCOL, consoleSocketKey, summaryOf } from '../src/console-routes.ts';
import type { ProposalRecord } from '../src/store.ts';
import { bearer, disposeHarness, type Harness, harnessWithAccount, NETWORK, payment, postAsAdmin } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  h = await disposeHarness(h);
});

async function withAccount(listen = false) {
  const r = await harnessWithAccount({ listen });
  h = r.h;
  return r;
}

describe('console files', () => {
  it('serves the page and its scripts from the allow-list with a strict CSP; anything else is 404', async () => {
    const { h } = await withAccount();
    const redirect = await h.app.inject({ url: '/console' });
    expect(redirect.statusCode).toBe(302);
    expect(redirect.headers.location).toBe('/console/');
    const page = await h.app.inject({ url: '/console/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).not.toContain('unsafe');
    expect(page.headers['x-frame-options']).toBe('DENY');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.body).toContain('<script type="module" src="/console/console.js"></script>');
    for (const name of ['console.js', 'dom.js', 'words.js']) {
      const js = await h.app.inject({ url: `/console/${name}` });
      expect(js.statusCode, name).toBe(200);
      expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
      expect(js.headers['content-security-policy']).toBe(CONSOLE_CSP);
    }
    expect((await h.app.inject({ url: '/console/console.css' })).headers['content-type']).toBe(
      'text/css; charset=utf-8',
    );
    for (const bad of [
      '/console/app.ts',
      '/console/..%2fsrc%2fapp.ts',
      '/console/%2e%2e%2fpackage.json',
      '/console/x.js',
    ]) {
      const r = await h.app.inject({ url: bad });
      expect(r.statusCode, bad).toBe(404);
      expect(r.json().code).toBe('COORD_NOT_FOUND');
    }
  });

  it('the console sources never write markup: no inline script or style, no innerHTML-like sink', async () => {
    const dirs = [join(SHARED_CONSOLE_DIR), join(SHARED_CONSOLE_DIR, '../../../services/coordinator/console')];
    dirs.push(join(SHARED_CONSOLE_DIR, '../../../services/cosigner/console'));
    let scripts = 0;
    for (const dir of dirs) {
      for (const f of await readdir(dir)) {
        const text = await readFile(join(dir, f), 'utf8');
        if (f.endsWith('.js')) {
          scripts++;
          const source = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
          expect(source, f).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
        }
        if (f.endsWith('.html')) {
          // Every script is external (CSP script-src 'self'); no inline style attribute or element.
          expect(text, f).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
          expect(text, f).not.toMatch(/\sstyle=|<style|\son[a-z]+=/i);
        }
      }
    }
    expect(scripts).toBe(4);
  });
});

describe('GET /v1/session', () => {
  it("answers the key's id, label and scopes; 401 without a valid key; 403 without read", async () => {
    const { h } = await withAccount();
    const me = await h.app.inject({ url: '/v1/session', headers: bearer(h.adminKey) });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toEqual({
      keyId: h.adminKey.split('.')[1],
      label: null,
      scopes: ['admin'],
      network: expect.any(String),
    });
    const reader = await createApiKey(h.store, ['read'], 'treasury-viewer');
    expect((await h.app.inject({ url: '/v1/session', headers: bearer(reader.key) })).json()).toMatchObject({
      keyId: reader.id,
      label: 'treasury-viewer',
      scopes: ['read'],
    });
    expect((await h.app.inject({ url: '/v1/session' })).statusCode).toBe(401);
    const wrong = await h.app.inject({ url: '/v1/session', headers: bearer(`cak.${reader.id}.${'A'.repeat(43)}`) });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().code).toBe('COORD_UNAUTHENTICATED');
    const proposer = await createApiKey(h.store, ['propose']);
    const forbidden = await h.app.inject({ url: '/v1/session', headers: bearer(proposer.key) });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json().code).toBe('COORD_FORBIDDEN');
  });
});

describe('POST /v1/decode', () => {
  it('decodes an envelope in plain terms without storing anything; bad XDR gets the decoder code', async () => {
    const { source, h } = await withAccount();
    const xdr = payment(source, { amount: '12.5' });
    const res = await postAsAdmin(h, '/v1/decode', { xdr });
    expect(res.statusCode).toBe(200);
    const t = res.json().transaction;
    expect(t.kind).toBe('transaction');
    expect(t.source).toBe(source);
    expect(t.operations[0]).toMatchObject({ type: 'payment', amount: '12.5000000', asset: { type: 'native' } });
    expect(h.store.listProposals({ limit: 10 }).items).toHaveLength(0);
    const bad = await postAsAdmin(h, '/v1/decode', { xdr: 'AAAA' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('STELLAR_MALFORMED_XDR');
    const extra = await postAsAdmin(h, '/v1/decode', { xdr, submit: true });
    expect(extra.statusCode).toBe(400);
    expect((await h.app.inject({ method: 'POST', url: '/v1/decode', payload: { xdr } })).statusCode).toBe(401);
  });
});

describe('proposal search and summary', () => {
  it('finds by hash (any case), idempotency key or signing account, not by a signer key; summary decodes', async () => {
    const { source, keys, h } = await withAccount();
    const propose = async (payload: Record<string, unknown>) => {
      const r = await h.app.inject({ method: 'POST', url: '/v1/proposals', headers: bearer(h.adminKey), payload });
      expect(r.statusCode).toBe(201);
      return r.json();
    };
    const a = await propose({ xdr: payment(source, { seq: '100' }), idempotencyKey: 'rent-2026-12', note: '<b>x</b>' });
    const b = await propose({ xdr: payment(source, { seq: '101' }) });
    const search = async (q: string) => {
      const r = await h.app.inject({
        url: `/v1/proposals/search?q=${encodeURIComponent(q)}`,
        headers: bearer(h.adminKey),
      });
      expect(r.statusCode).toBe(200);
      return (r.json().items as { id: string }[]).map((i) => i.id);
    };
    expect(await search(a.hash)).toEqual([a.id]);
    expect(await search(a.hash.toUpperCase())).toEqual([a.id]);
    expect(await search('rent-2026-12')).toEqual([a.id]);
    expect(await search(keys[0]!)).toEqual([]);
    // An idempotency key may look like an account: it is still found as a key.
    const lookalike = Keypair.random().publicKey();
    const c = await propose({ xdr: payment(source, { seq: '102' }), idempotencyKey: lookalike });
    expect(await search(lookalike)).toEqual([c.id]);
    expect(await search(source)).toEqual([c.id, b.id, a.id]);
    expect(await search('nothing')).toEqual([]);
    const one = await h.app.inject({ url: `/v1/proposals/search?q=${source}&limit=1`, headers: bearer(h.adminKey) });
    expect(one.json().items).toHaveLength(1);
    expect(one.json().items[0]).toMatchObject({ id: c.id, status: 'pending', accounts: [source], note: null });
    expect(await search(source)).toContain(b.id);
    expect((await h.app.inject({ url: '/v1/proposals/search', headers: bearer(h.adminKey) })).statusCode).toBe(400);

    const s = await h.app.inject({ url: `/v1/proposals/${a.id}/summary`, headers: bearer(h.adminKey) });
    expect(s.statusCode).toBe(200);
    expect(s.json()).toMatchObject({ id: a.id, kind: 'transaction', authEntries: [] });
    expect(s.json().xdr).toBe(h.store.getProposal(a.id)!.xdr);
    expect(s.json().transaction.hash).toBe(a.hash);
    expect(s.json().transaction.operations[0].type).toBe('payment');
    const ev = await h.app.inject({ url: `/v1/proposals/${a.id}/events`, headers: bearer(h.adminKey) });
    expect(ev.statusCode).toBe(200);
    expect(ev.json().events.map((e: { type: string }) => e.type)).toEqual(['proposal.created']);
    expect(ev.json().events[0].data.hash).toBe(a.hash);
    const cancelled = await postAsAdmin(h, `/v1/proposals/${a.id}/cancel`, { reason: 'wrong amount' });
    expect(cancelled.statusCode).toBe(200);
    const after = (await h.app.inject({ url: `/v1/proposals/${a.id}/events`, headers: bearer(h.adminKey) })).json();
    expect(after.events.map((e: { type: string }) => e.type)).toEqual(['proposal.created', 'proposal.cancelled']);
    // Only this proposal's events, however many others have.
    const other = (
      await h.app.inject({ url: `/v1/proposals/${b.id}/events?limit=1`, headers: bearer(h.adminKey) })
    ).json();
    expect(other.events).toHaveLength(1);
    expect((await h.app.inject({ url: '/v1/proposals/nope/events', headers: bearer(h.adminKey) })).json().code).toBe(
      'COORD_NOT_FOUND',
    );
    const missing = await h.app.inject({ url: '/v1/proposals/nope/summary', headers: bearer(h.adminKey) });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('COORD_NOT_FOUND');
  });

  it('summaryOf decodes Soroban proposals: standalone entries, and a transaction with its entries', () => {
    const account = Keypair.random().publicKey();
    const contract = StrKey.encodeContract(Buffer.alloc(32, 7));
    const entry = authEntry({
      address: account,
      contract,
      fn: 'deposit',
      args: [{ i128: 5n }],
      nonce: 3n,
      expiration: 900,
    });
    const base = { id: 'p1', network: NETWORK } as unknown as ProposalRecord;
    const standalone = summaryOf({ ...base, kind: 'authEntries', xdr: null }, [entry.toXDR('base64')]);
    expect(standalone.transaction).toBeNull();
    expect(standalone.xdr).toBeNull();
    expect(standalone.authEntries).toHaveLength(1);
    expect(standalone.authEntries[0]).toMatchObject({
      address: account,
      signatureExpirationLedger: 900,
      invocation: { kind: 'contract', contractId: contract, functionName: 'deposit' },
    });
    const tx = payment(account);
    const withTx = summaryOf({ ...base, kind: 'sorobanTx', xdr: tx, submitFollowUp: true }, [entry.toXDR('base64')]);
    expect(withTx.xdr).toBe(tx);
    expect(withTx.transaction?.operations[0]?.type).toBe('payment');
    expect(withTx.authEntries).toHaveLength(1);
  });

  it('the OpenAPI document lists the new reads and hides the console files', async () => {
    const { h } = await withAccount();
    const spec = (await h.app.inject({ url: '/docs/json' })).json() as { paths: Record<string, unknown> };
    for (const p of [
      '/v1/session',
      '/v1/decode',
      '/v1/proposals/search',
      '/v1/proposals/{id}/summary',
      '/v1/proposals/{id}/events',
    ]) {
      expect(spec.paths, p).toHaveProperty([p]);
    }
    expect(Object.keys(spec.paths).filter((p) => p.startsWith('/console'))).toEqual([]);
  });
});

describe('event stream from a browser', () => {
  it('takes the key as the second subprotocol after cosigner.console, answers with cosigner.console only', async () => {
    const { h } = await withAccount(true);
    const url = `${h.url!.replace('http', 'ws')}/v1/events`;
    const ok = new WebSocket(url, [CONSOLE_SUBPROTOCOL, h.adminKey]);
    await new Promise((r, j) => {
      ok.on('open', r);
      ok.on('error', j);
    });
    expect(ok.protocol).toBe(CONSOLE_SUBPROTOCOL);
    ok.close();
    for (const protocols of [
      [CONSOLE_SUBPROTOCOL, `${h.adminKey.slice(0, -1)}x`],
      [h.adminKey],
      ['other', h.adminKey],
    ]) {
      const refused = new WebSocket(url, protocols);
      const err = await new Promise<string>((r) => refused.on('error', (e) => r(e.message)));
      expect(err, protocols.join(',')).toContain('401');
    }
  });

  it('consoleSocketKey reads exactly two offered protocols, the first being the console one', () => {
    expect(consoleSocketKey('cosigner.console, cak.1.2')).toBe('cak.1.2');
    expect(consoleSocketKey('cosigner.console,cak.1.2')).toBe('cak.1.2');
    expect(consoleSocketKey('cak.1.2')).toBeUndefined();
    expect(consoleSocketKey('cosigner.console')).toBeUndefined();
    expect(consoleSocketKey('cosigner.console, a, b')).toBeUndefined();
    expect(consoleSocketKey(undefined)).toBeUndefined();
    expect(consoleSocketKey(['cosigner.console', 'k'])).toBeUndefined();
  });
});

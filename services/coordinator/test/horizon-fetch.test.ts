import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHorizonClient } from '../src/horizon.ts';

/**
 * The Horizon client's answers to what a real Horizon (or a proxy in front of it) can send besides the happy path
 * the simulator test covers (process.test.ts): a real HTTP server on loopback plays each answer.
 */
type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;
let server: Server;
let base: string;
let handler: Handler = (_q, _b, res) => res.end();

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => handler(req, body, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function answer(status: number, body: string, type = 'application/json'): Handler {
  return (_q, _b, res) => {
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };
}

const ACCOUNT = 'GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7';

describe('Horizon client over fetch', () => {
  it('posts the envelope as the form field tx to /transactions, with a trailing slash in the base URL', async () => {
    let seen: { method?: string; url?: string; type?: string; body?: string } = {};
    handler = (req, body, res) => {
      seen = { method: req.method, url: req.url, type: req.headers['content-type'], body };
      answer(200, JSON.stringify({ hash: 'ab', ledger: 7, successful: true }))(req, body, res);
    };
    const xdr = 'AAAA+/==';
    expect(await createHorizonClient(base).submit(xdr, 'any')).toEqual({ kind: 'accepted', ledger: 7 });
    expect(seen).toEqual({
      method: 'POST',
      url: '/transactions',
      type: 'application/x-www-form-urlencoded',
      body: 'tx=AAAA%2B%2F%3D%3D',
    });
    expect(new URLSearchParams(seen.body).get('tx')).toBe(xdr);
    handler = answer(200, '{}');
    expect(await createHorizonClient(base).submit(xdr, 'any')).toEqual({ kind: 'accepted', ledger: null });
  });

  it('maps refusals, server errors and non-JSON answers as the SDK client did', async () => {
    const c = createHorizonClient(base);
    handler = answer(
      400,
      JSON.stringify({
        type: 'https://stellar.org/horizon-errors/transaction_failed',
        title: 'Transaction Failed',
        status: 400,
        extras: { result_codes: { transaction: 'tx_failed', operations: ['op_underfunded'] } },
      }),
      'application/problem+json',
    );
    expect(await c.submit('AAAA', 'n')).toEqual({
      kind: 'rejected',
      code: 'tx_failed',
      operationCodes: ['op_underfunded'],
      message: 'Transaction Failed',
    });
    handler = answer(504, JSON.stringify({ title: 'Timeout', status: 504 }));
    expect(await c.submit('AAAA', 'n')).toEqual({ kind: 'transient', message: 'Horizon answered 504' });
    handler = answer(502, '<html>bad gateway</html>', 'text/html');
    expect(await c.submit('AAAA', 'n')).toEqual({ kind: 'transient', message: 'Horizon answered 502' });
    handler = answer(413, 'too large', 'text/plain');
    expect(await c.submit('AAAA', 'n')).toEqual({
      kind: 'rejected',
      code: 'http_413',
      operationCodes: [],
      message: 'Horizon answered 413',
    });
  });

  it('loads an account; 404 is not found, anything else (5xx, garbage, a wrong shape) is unavailable', async () => {
    const c = createHorizonClient(base);
    let path = '';
    handler = (req, b, res) => {
      path = String(req.url);
      answer(
        200,
        JSON.stringify({
          account_id: ACCOUNT,
          thresholds: { low_threshold: 1, med_threshold: 2, high_threshold: 2 },
          signers: [{ key: ACCOUNT, weight: 1, type: 'ed25519_public_key' }],
        }),
      )(req, b, res);
    };
    expect(await c.loadAccount(ACCOUNT)).toEqual({
      accountId: ACCOUNT,
      masterWeight: 1,
      thresholds: { low: 1, medium: 2, high: 2 },
      signers: [],
    });
    expect(path).toBe(`/accounts/${ACCOUNT}`);
    handler = answer(404, JSON.stringify({ status: 404, title: 'Resource Missing' }));
    await expect(c.loadAccount(ACCOUNT)).rejects.toMatchObject({ code: 'COORD_ACCOUNT_NOT_FOUND' });
    for (const h of [
      answer(503, '{}'),
      answer(200, 'not json', 'text/plain'),
      answer(200, JSON.stringify({ account_id: ACCOUNT })),
    ]) {
      handler = h;
      await expect(c.loadAccount(ACCOUNT)).rejects.toMatchObject({ code: 'COORD_HORIZON_UNAVAILABLE' });
    }
  });

  it("reads a transaction's fate: success, failed, missing, and unknown for anything it cannot read", async () => {
    const c = createHorizonClient(base);
    const hash = 'ab'.repeat(32);
    let path = '';
    handler = (req, b, res) => {
      path = String(req.url);
      answer(200, JSON.stringify({ hash, successful: false }))(req, b, res);
    };
    expect(await c.transactionStatus(hash)).toBe('failed');
    expect(path).toBe(`/transactions/${hash}`);
    handler = answer(200, JSON.stringify({ hash, successful: true }));
    expect(await c.transactionStatus(hash)).toBe('success');
    handler = answer(404, '{}');
    expect(await c.transactionStatus(hash)).toBe('missing');
    for (const h of [answer(500, '{}'), answer(200, '{}'), answer(200, 'nope', 'text/plain')]) {
      handler = h;
      expect(await c.transactionStatus(hash)).toBe('unknown');
    }
  });
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Account, Asset, Keypair, Networks, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkGroupEnvelope,
  frostGroupOutcome,
  frostKeyGeneration,
  frostSigners,
  signatureHint,
  stroops,
} from '../src/frost.ts';
import { type CoordinatorApi, coordinatorApi } from '../src/http.ts';

/** A payment envelope signed by each of `signers`. */
function envelope(signers: Keypair[]): string {
  const source = Keypair.random();
  const tx = new TransactionBuilder(new Account(source.publicKey(), '1'), {
    fee: '100',
    networkPassphrase: Networks.TESTNET,
  })
    .addOperation(Operation.payment({ destination: source.publicKey(), asset: Asset.native(), amount: '1' }))
    .setTimeout(30)
    .build();
  for (const k of signers) tx.sign(k);
  return tx.toXDR();
}

/** An API that answers from a script: each call takes the next answer for its method and path. */
function scripted(answers: Record<string, { status: number; body: unknown }[]>): {
  api: CoordinatorApi;
  calls: string[];
} {
  const calls: string[] = [];
  const api: CoordinatorApi = async (method, path) => {
    const key = `${method} ${path}`;
    calls.push(key);
    const next = answers[key]?.shift();
    if (!next) throw new Error(`no answer scripted for ${key}`);
    return next;
  };
  return { api, calls };
}

describe('testkit FROST helpers', () => {
  it('reads XLM amounts as stroops and refuses what is not one', () => {
    expect(stroops('25')).toBe(250_000_000n);
    expect(stroops('10010.0000000')).toBe(100_100_000_000n);
    expect(stroops('0.5')).toBe(5_000_000n);
    expect(stroops('0.0000001')).toBe(1n);
    for (const bad of ['', '-1', '1.00000001', '1e3', 'abc']) expect(() => stroops(bad)).toThrow(/not an amount/);
  });

  it('accepts an envelope with exactly the group key signature, and refuses any other', () => {
    const group = Keypair.random();
    const other = Keypair.random();
    expect(signatureHint(group.publicKey()).equals(Buffer.from(group.signatureHint()))).toBe(true);
    expect(() => checkGroupEnvelope(envelope([group]), group.publicKey(), Networks.TESTNET)).not.toThrow();
    expect(() => checkGroupEnvelope(envelope([]), group.publicKey(), Networks.TESTNET)).toThrow(/0 signatures/);
    expect(() => checkGroupEnvelope(envelope([group, other]), group.publicKey(), Networks.TESTNET)).toThrow(
      /2 signatures/,
    );
    expect(() => checkGroupEnvelope(envelope([other]), group.publicKey(), Networks.TESTNET)).toThrow(/group key/);
    expect(() => checkGroupEnvelope(undefined, group.publicKey(), Networks.TESTNET)).toThrow(/no envelope/);
  });

  it('repeats a key generation request while a node is not connected, then waits for its end', async () => {
    const unavailable = { status: 409, body: { code: 'COORD_FROST_NODE_UNAVAILABLE' } };
    const { api, calls } = scripted({
      'POST /v1/frost/groups': [unavailable, unavailable, { status: 202, body: { id: 'g1' } }],
      'GET /v1/frost/groups/g1': [
        { status: 200, body: { id: 'g1', status: 'running' } },
        { status: 200, body: { id: 'g1', status: 'ready', address: 'GADDR' } },
      ],
    });
    const r = await frostKeyGeneration(api, { participants: ['node-0', 'node-1'], threshold: 2, pollMs: 1 });
    expect(r.started.status).toBe(202);
    expect(r.group).toMatchObject({ status: 'ready', address: 'GADDR' });
    expect(calls.filter((c) => c.startsWith('POST'))).toHaveLength(3);
  });

  it('returns a refused request as it came, without polling', async () => {
    const { api, calls } = scripted({
      'POST /v1/frost/groups': [{ status: 400, body: { code: 'COORD_BAD_REQUEST' } }],
    });
    const r = await frostKeyGeneration(api, { participants: ['node-0'], threshold: 4 });
    expect(r).toEqual({ started: { status: 400, body: { code: 'COORD_BAD_REQUEST' } } });
    expect(calls).toEqual(['POST /v1/frost/groups']);
    // A node that stays away: the request is repeated until the time is up, then its answer is returned.
    const away = { status: 409, body: { code: 'COORD_FROST_NODE_UNAVAILABLE' } };
    const { api: awayApi } = scripted({ 'POST /v1/frost/groups': [away, away, away, away, away, away] });
    const late = await frostKeyGeneration(awayApi, { participants: ['node-0'], threshold: 1, timeoutMs: 5, pollMs: 2 });
    expect(late.started.status).toBe(409);
    expect(late.group).toBeUndefined();
  });

  it('says so when a key generation is still running after its time', async () => {
    const running = { status: 200, body: { id: 'g2', status: 'running' } };
    const { api } = scripted({ 'GET /v1/frost/groups/g2': Array.from({ length: 50 }, () => running) });
    await expect(frostGroupOutcome(api, 'g2', 5, 1)).rejects.toThrow(/g2 still running/);
  });

  it("reads a proposal's FROST signers from its last approval, and says when there is none", async () => {
    const { api } = scripted({
      'GET /v1/proposals/p1/events': [
        {
          status: 200,
          body: {
            events: [
              { type: 'node.approved', data: { frost: { signers: ['node-2', 'node-0'] } } },
              { type: 'node.approved', data: { frost: { signers: ['node-1', 'node-0'] } } },
              { type: 'quorum.reached', data: {} },
            ],
          },
        },
      ],
      'GET /v1/proposals/p2/events': [{ status: 200, body: { events: [{ type: 'proposal.created', data: {} }] } }],
    });
    expect(await frostSigners(api, 'p1')).toEqual(['node-0', 'node-1']);
    await expect(frostSigners(api, 'p2')).rejects.toThrow(/no node.approved/);
  });

  describe('coordinatorApi over a real socket', () => {
    let server: Server;
    let url: string;
    const seen: { method?: string; url?: string; auth?: string; type?: string; body: string }[] = [];
    beforeAll(async () => {
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => {
          body += c.toString();
        });
        req.on('end', () => {
          seen.push({
            method: req.method,
            url: req.url,
            auth: req.headers.authorization,
            type: req.headers['content-type'],
            body,
          });
          res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ok: true }));
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it('sends the admin key, JSON only with a body, and returns status and parsed body', async () => {
      const api = coordinatorApi({ coordinator: { url }, apiKey: 'k-123' });
      expect(await api('POST', '/v1/x', { a: 1 })).toEqual({ status: 201, body: { ok: true } });
      expect(await api('GET', '/v1/y')).toEqual({ status: 200, body: { ok: true } });
      expect(seen).toEqual([
        { method: 'POST', url: '/v1/x', auth: 'Bearer k-123', type: 'application/json', body: '{"a":1}' },
        { method: 'GET', url: '/v1/y', auth: 'Bearer k-123', type: undefined, body: '' },
      ]);
    });
  });
});

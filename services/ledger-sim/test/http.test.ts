import { readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { Asset, Keypair, Memo, Operation, TransactionBuilder, xdr } from '@stellar/stellar-sdk';
import { Command } from 'commander';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { build, SNAPSHOT_FILE } from '../src/app.ts';
import { register } from '../src/command.ts';
import { resolveConfig } from '../src/config.ts';
import { amount } from '../src/horizon.ts';
import { LedgerState, rootKeypair, TOTAL_COINS } from '../src/state.ts';
import { account, fund, keys, NETWORK, post, signed, sim, tx } from './helpers.ts';

describe('Horizon endpoints', () => {
  let app: FastifyInstance;
  beforeEach(async () => {
    app = await sim();
  });
  afterEach(async () => {
    await app.close();
  });

  it('serves the root, fee stats and ledgers as Horizon does', async () => {
    const root = (await app.inject({ url: '/' })).json();
    expect(root).toMatchObject({ network_passphrase: NETWORK, history_latest_ledger: 1, core_latest_ledger: 1 });
    expect(typeof root.horizon_version).toBe('string');
    const fees = (await app.inject({ url: '/fee_stats' })).json();
    expect(fees).toMatchObject({ last_ledger_base_fee: '100', last_ledger: '1' });
    expect(fees.fee_charged.p99).toBe('100');
    await app.ledger.close();
    await app.ledger.close();
    const latest = (await app.inject({ url: '/ledgers?order=desc&limit=1' })).json();
    expect(latest._embedded.records).toHaveLength(1);
    expect(latest._embedded.records[0]).toMatchObject({
      sequence: 3,
      base_fee_in_stroops: 100,
      total_coins: '100000000000.0000000',
    });
    const next = (await app.inject({ url: latest._links.next.href.replace(/^https?:\/\/[^/]+/, '') })).json();
    expect(next._embedded.records.map((l: { sequence: number }) => l.sequence)).toEqual([2]);
    const asc = (await app.inject({ url: '/ledgers?cursor=now' })).json();
    expect(asc._embedded.records).toEqual([]);
    expect((await app.inject({ url: '/ledgers/2' })).json().prev_hash).toBe(
      (await app.inject({ url: '/ledgers/1' })).json().hash,
    );
    expect((await app.inject({ url: '/ledgers/99' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/ledgers/x' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ url: '/readyz' })).json()).toEqual({ status: 'ok', ledger: 3 });
  });

  it('answers bad paging parameters with bad_request problems', async () => {
    for (const q of ['order=sideways', 'limit=0', 'limit=201', 'limit=x', 'cursor=abc']) {
      const res = await app.inject({ url: `/transactions?${q}` });
      expect(res.statusCode, q).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().type).toBe('https://stellar.org/horizon-errors/bad_request');
    }
    expect((await app.inject({ url: '/ledgers?order=up' })).statusCode).toBe(400);
    const a = Keypair.random().publicKey();
    expect((await app.inject({ url: `/accounts/${a}/transactions?limit=0` })).statusCode).toBe(400);
  });

  it('answers unknown and invalid accounts, hashes and routes with Horizon problems', async () => {
    const missing = await app.inject({ url: `/accounts/${Keypair.random().publicKey()}` });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ type: 'https://stellar.org/horizon-errors/not_found', status: 404 });
    expect((await app.inject({ url: '/accounts/GNOTANACCOUNT' })).json().extras.invalid_field).toBe('account_id');
    expect((await app.inject({ url: '/accounts/nope/transactions' })).statusCode).toBe(400);
    expect((await app.inject({ url: `/accounts/${Keypair.random().publicKey()}/transactions` })).statusCode).toBe(404);
    expect((await app.inject({ url: `/transactions/${'ab'.repeat(32)}` })).statusCode).toBe(404);
    expect((await app.inject({ url: '/transactions/xyz' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/no/such/route' })).statusCode).toBe(404);
  });

  it('refuses malformed submissions with 4xx problems and keeps serving', async () => {
    const form = (payload: string, type = 'application/x-www-form-urlencoded') =>
      app.inject({ method: 'POST', url: '/transactions', headers: { 'content-type': type }, payload });
    for (const body of ['tx=', 'nottx=AAAA', '', 'tx=%E0%A4%A', 'tx=a&tx=b']) {
      const r = await form(body);
      expect(r.statusCode, body).toBe(400);
      expect(r.json().status).toBe(400);
    }
    const garbage = await form('tx=AAAAAgAAAAB%2F%2F%2F%2F');
    expect(garbage.json()).toMatchObject({
      type: 'https://stellar.org/horizon-errors/transaction_malformed',
      status: 400,
    });
    expect((await form('tx=!!!!')).json().type).toContain('transaction_malformed');
    // A v0 envelope (pre-protocol-13) is refused as malformed.
    const v0 = xdr.TransactionEnvelope.fromXdrObject({
      type: 0,
      v0: {
        tx: {
          sourceAccountEd25519: Buffer.alloc(32, 1),
          fee: 100,
          seqNum: 1n,
          timeBounds: null,
          memo: { type: 0 },
          operations: [],
          ext: { v: 0 },
        },
        signatures: [],
      },
    } as never);
    expect((await form(`tx=${encodeURIComponent(v0.toXdr('base64'))}`)).json().type).toContain('transaction_malformed');
    const big = await form(`tx=${'A'.repeat(300 * 1024)}`);
    expect(big.statusCode).toBe(413);
    expect(big.json().type).toContain('payload_too_large');
    // fastify parses text/plain as a string: there is no form field tx in it.
    const plain = await form('tx=AAAA', 'text/plain');
    expect(plain.json()).toMatchObject({ status: 400, extras: { invalid_field: 'tx' } });
    const octets = await form('tx=AAAA', 'application/octet-stream');
    expect(octets.statusCode).toBe(415);
    expect(octets.json().status).toBe(415);
    const badJson = await form('{"tx":', 'application/json');
    expect(badJson.statusCode).toBe(400);
    const jsonBody = await form(JSON.stringify({ tx: 42 }), 'application/json');
    expect(jsonBody.statusCode).toBe(400);
    expect((await app.inject({ url: '/' })).statusCode).toBe(200);
  });

  it('accepts asynchronous submissions with Horizon tx_status answers', async () => {
    const [a, b] = keys(2);
    await fund(app, a!, b!);
    const t = signed(
      tx(app, a!.publicKey(), [Operation.payment({ destination: b!.publicKey(), asset: Asset.native(), amount: '1' })]),
      a!,
    );
    const send = (payload: string) =>
      app.inject({
        method: 'POST',
        url: '/transactions_async',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload,
      });
    const body = `tx=${encodeURIComponent(t.toEnvelope().toXdr('base64'))}`;
    const first = await send(body);
    expect(first.statusCode).toBe(201);
    expect(first.json()).toEqual({ tx_status: 'PENDING', hash: Buffer.from(t.hash()).toString('hex') });
    expect((await send(body)).json().tx_status).toBe('DUPLICATE');
    const late = signed(
      tx(app, a!.publicKey(), [Operation.bumpSequence({ bumpTo: '1' })], { timebounds: { minTime: 0, maxTime: 1 } }),
      a!,
    );
    const err = await send(`tx=${encodeURIComponent(late.toEnvelope().toXdr('base64'))}`);
    expect(err.statusCode).toBe(400);
    expect(xdr.TransactionResult.fromXdr(err.json().error_result_xdr, 'base64').result.type).toBe('txTooLate');
    expect((await send('tx=%%%')).json().type).toContain('transaction_malformed');
    expect((await send('nothing=1')).statusCode).toBe(400);
  });

  it('friendbot funds once with 10000 XLM from the network root, then refuses', async () => {
    const kp = Keypair.random();
    const first = await app.inject({ url: `/friendbot?addr=${kp.publicKey()}` });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ successful: true, source_account: rootKeypair(NETWORK).publicKey() });
    expect(account(app, kp.publicKey()).balance).toBe(100_000_000_000n);
    const again = await app.inject({ method: 'POST', url: `/friendbot?addr=${kp.publicKey()}` });
    expect(again.statusCode).toBe(400);
    expect(again.json().extras.result_codes).toEqual({ transaction: 'tx_failed', operations: ['op_already_exists'] });
    expect((await app.inject({ url: '/friendbot?addr=nope' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/friendbot' })).statusCode).toBe(400);
  });

  it('renders transactions with memos, preconditions, fee bumps and paging', async () => {
    const [a, b, sponsor] = keys(3);
    await fund(app, a!, b!, sponsor!);
    const pay = Operation.payment({ destination: b!.publicKey(), asset: Asset.native(), amount: '1' });
    const memos = [Memo.text('hello'), Memo.id('42'), Memo.hash(Buffer.alloc(32, 1)), Memo.return(Buffer.alloc(32, 2))];
    const hashes: string[] = [];
    for (const m of memos) {
      const t = tx(app, a!.publicKey(), [pay]);
      const withMemo = TransactionBuilder.cloneFrom(t, { fee: '100', memo: m }).build();
      const r = await post(app, signed(withMemo, a!));
      expect(r.status).toBe(200);
      hashes.push(r.body.hash as string);
    }
    const got = await Promise.all(hashes.map(async (h) => (await app.inject({ url: `/transactions/${h}` })).json()));
    expect(got.map((t) => [t.memo_type, t.memo])).toEqual([
      ['text', 'hello'],
      ['id', '42'],
      ['hash', Buffer.alloc(32, 1).toString('base64')],
      ['return', Buffer.alloc(32, 2).toString('base64')],
    ]);
    const seq = account(app, a!.publicKey()).seq;
    const open = app.ledger.state.openSequence;
    const pre = tx(app, a!.publicKey(), [pay], {
      timebounds: { minTime: 1, maxTime: 4_000_000_000 },
      ledgerbounds: { minLedger: 1, maxLedger: open + 10 },
      minAccountSequence: seq.toString(),
      minAccountSequenceAge: 0n,
      minAccountSequenceLedgerGap: 0,
    });
    const inner = signed(pre, a!);
    const bump = signed(TransactionBuilder.buildFeeBumpTransaction(sponsor!, '100', inner, NETWORK), sponsor!);
    const r = await post(app, bump);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      fee_account: sponsor!.publicKey(),
      source_account: a!.publicKey(),
      memo_type: 'none',
      valid_before: '2096-10-02T07:06:40Z',
      preconditions: { ledgerbounds: { min_ledger: 1, max_ledger: open + 10 }, min_account_sequence: seq.toString() },
      inner_transaction: { hash: Buffer.from(inner.hash()).toString('hex') },
      fee_bump_transaction: { hash: Buffer.from(bump.hash()).toString('hex') },
    });
    // The same fee bump again is answered from history.
    expect(await post(app, bump)).toEqual(r);
    // Horizon finds a fee bump by its inner hash too.
    expect((await app.inject({ url: `/transactions/${Buffer.from(inner.hash()).toString('hex')}` })).json().hash).toBe(
      Buffer.from(bump.hash()).toString('hex'),
    );
    const page1 = (await app.inject({ url: `/accounts/${a!.publicKey()}/transactions?limit=2` })).json();
    expect(page1._embedded.records).toHaveLength(2);
    const rest = (await app.inject({ url: page1._links.next.href.replace(/^https?:\/\/[^/]+/, '') })).json();
    expect(rest._embedded.records.length).toBeGreaterThan(0);
    const all = (await app.inject({ url: '/transactions?order=desc&limit=200' })).json();
    expect(all._embedded.records[0].hash).toBe(Buffer.from(bump.hash()).toString('hex'));
  });

  it('streams transactions as server-sent events', async () => {
    const live = await build({ closeMs: 0 });
    const url = await live.listen({ port: 0, host: '127.0.0.1' });
    const [a] = keys(1);
    await fund(live, a!);
    const events: string[] = [];
    const res = await new Promise<import('node:http').IncomingMessage>((resolve) => {
      request(`${url}/transactions`, { headers: { accept: 'text/event-stream' } }, resolve).end();
    });
    expect(res.headers['content-type']).toBe('text/event-stream');
    let buf = '';
    let wake = (): void => {};
    res.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n\n');
      buf = parts.pop()!;
      events.push(...parts);
      wake();
    });
    const got = async (n: number): Promise<void> => {
      while (events.length < n) await new Promise<void>((resolve) => (wake = resolve));
    };
    const ended = new Promise<void>((resolve) => res.on('end', resolve));
    await got(2);
    expect(events[0]).toContain('"hello"');
    expect(events[1]).toMatch(/^id: 1\ndata: \{.*"successful":true/);
    await fund(live, Keypair.random());
    await got(3);
    expect(events[2]).toMatch(/^id: 2\ndata: \{/);
    // An account's stream from now on: only transactions naming that account.
    const mine: string[] = [];
    const accRes = await new Promise<import('node:http').IncomingMessage>((resolve) => {
      request(
        `${url}/accounts/${a!.publicKey()}/transactions?cursor=now`,
        { headers: { accept: 'text/event-stream' } },
        resolve,
      ).end();
    });
    let mineBuf = '';
    let mineWake = (): void => {};
    accRes.on('data', (d: Buffer) => {
      mineBuf += d.toString();
      const parts = mineBuf.split('\n\n');
      mineBuf = parts.pop()!;
      mine.push(...parts);
      mineWake();
    });
    await fund(live, Keypair.random());
    const pay = signed(tx(live, a!.publicKey(), [Operation.bumpSequence({ bumpTo: '0' })]), a!);
    expect((await post(live, pay)).status).toBe(200);
    while (mine.length < 2) await new Promise<void>((resolve) => (mineWake = resolve));
    expect(mine[0]).toContain('"hello"');
    expect(mine[1]).toContain(Buffer.from(pay.hash()).toString('hex'));
    await got(5);
    expect(mine).toHaveLength(2);
    const accEnded = new Promise<void>((resolve) => accRes.on('end', resolve));
    // Closing the app ends open streams instead of hanging.
    await live.close();
    await ended;
    await accEnded;
  });
});

describe('ledger clock and snapshot', () => {
  it('closes ledgers on its own clock', async () => {
    const app = await build({ closeMs: 10 });
    while (app.ledger.state.lastClosed.sequence < 3) await new Promise((r) => setTimeout(r, 10));
    await app.close();
    expect(app.ledger.state.lastClosed.sequence).toBeGreaterThanOrEqual(3);
  });

  it('keeps accounts and transactions across a restart, and refuses a foreign or broken snapshot', async () => {
    const dir = await tempDir('ledger-sim-snap-');
    try {
      const app = await sim({ dataDir: dir });
      const [a, b] = keys(2);
      await fund(app, a!, b!);
      const r = await post(
        app,
        signed(
          tx(app, a!.publicKey(), [
            Operation.manageData({ name: 'n', value: 'v' }),
            Operation.setOptions({ homeDomain: 'x.org' }),
          ]),
          a!,
        ),
      );
      expect(r.status).toBe(200);
      const issuer = b!.publicKey();
      expect(
        (
          await post(
            app,
            signed(tx(app, a!.publicKey(), [Operation.changeTrust({ asset: new Asset('USD', issuer) })]), a!),
          )
        ).status,
      ).toBe(200);
      await app.ledger.close();
      const before = (await app.inject({ url: `/accounts/${a!.publicKey()}` })).json();
      await app.close();

      const again = await sim({ dataDir: dir });
      expect((await again.inject({ url: `/accounts/${a!.publicKey()}` })).json()).toEqual(before);
      expect((await again.inject({ url: `/transactions/${r.body.hash}` })).statusCode).toBe(200);
      expect(again.ledger.state.totalLumens()).toBe(TOTAL_COINS);
      expect(again.ledger.state.lastClosed.sequence).toBe(app.ledger.state.lastClosed.sequence);
      await again.close();

      await expect(sim({ dataDir: dir, networkPassphrase: 'Another Network' })).rejects.toMatchObject({
        code: 'LEDGER_SNAPSHOT_WRONG_NETWORK',
      });
      const file = join(dir, SNAPSHOT_FILE);
      const snap = JSON.parse(await readFile(file, 'utf8'));
      for (const bad of [
        'not json',
        JSON.stringify({ version: 2 }),
        JSON.stringify(null),
        JSON.stringify({ ...snap, feePool: '1' }),
        JSON.stringify({ ...snap, ledgers: [] }),
        JSON.stringify({ ...snap, accounts: 'x' }),
      ]) {
        await writeFile(file, bad);
        await expect(sim({ dataDir: dir }), bad.slice(0, 40)).rejects.toMatchObject({
          code: 'LEDGER_SNAPSHOT_CORRUPT',
        });
      }
      await rm(file);
      await writeFile(join(dir, 'sub'), 'a file where a directory should be');
      await expect(sim({ dataDir: join(dir, 'sub') })).rejects.toMatchObject({ code: 'LEDGER_SNAPSHOT_CORRUPT' });
      const fresh = await sim({ dataDir: dir });
      expect(fresh.ledger.state.accounts.size).toBe(1);
      await fresh.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('logs and survives a snapshot it cannot write', async () => {
    const dir = await tempDir('ledger-sim-snap-');
    const lines: string[] = [];
    const { createLogger } = await import('@cosigner/runtime/logger');
    const logger = createLogger({ name: 't', destination: { write: (s: string) => lines.push(s) } });
    try {
      const app = await sim({ dataDir: join(dir, 'blocker'), logger });
      await writeFile(join(dir, 'blocker'), 'a file where the data directory should be');
      await fund(app, Keypair.random());
      await app.ledger.close();
      await app.close();
      expect(lines.some((l) => l.includes('snapshot write failed'))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('formats amounts as Horizon does', () => {
    expect([amount(0n), amount(1n), amount(10_000_000n), amount(-15_000_000n)]).toEqual([
      '0.0000000',
      '0.0000001',
      '1.0000000',
      '-1.5000000',
    ]);
    expect(new LedgerState(NETWORK, 0).totalLumens()).toBe(TOTAL_COINS);
  });
});

describe('configuration', () => {
  const flags = { port: 0, host: '127.0.0.1', dataDir: '.cosigner/ledger-sim' };
  it('defaults to the standalone network and a 1 s close', async () => {
    expect(await resolveConfig(flags, {})).toEqual({ ...flags, networkPassphrase: NETWORK, closeMs: 1000 });
    const mem = await resolveConfig({ ...flags, inMemory: true, readyFile: '/tmp/r', network: 'N', closeMs: 50 }, {});
    expect(mem).toEqual({ port: 0, host: '127.0.0.1', readyFile: '/tmp/r', networkPassphrase: 'N', closeMs: 50 });
  });

  it('refuses production, bad values and bad config files', async () => {
    await expect(resolveConfig(flags, { NODE_ENV: 'production' })).rejects.toMatchObject({
      code: 'RUNTIME_DEV_BACKEND_IN_PRODUCTION',
    });
    await expect(resolveConfig({ ...flags, network: '' }, {})).rejects.toMatchObject({ code: 'LEDGER_BAD_CONFIG' });
    await expect(resolveConfig({ ...flags, closeMs: 1 }, {})).rejects.toMatchObject({ code: 'LEDGER_BAD_CONFIG' });
    await expect(resolveConfig({ ...flags, dataDir: '' }, {})).rejects.toMatchObject({ code: 'LEDGER_BAD_CONFIG' });
    const dir = await tempDir('ledger-sim-cfg-');
    try {
      const f = join(dir, 'c.json');
      await writeFile(f, JSON.stringify({ network: 'From File', closeMs: 250 }));
      expect(await resolveConfig({ ...flags, config: f }, {})).toMatchObject({
        networkPassphrase: 'From File',
        closeMs: 250,
      });
      for (const bad of ['[1]', '{"nope":1}', 'not json', 'null']) {
        await writeFile(f, bad);
        await expect(resolveConfig({ ...flags, config: f }, {}), bad).rejects.toMatchObject({
          code: 'LEDGER_BAD_CONFIG',
        });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('registers `cosigner ledger-sim` with its flags', () => {
    const program = new Command();
    register(program);
    const cmd = program.commands.find((c) => c.name() === 'ledger-sim')!;
    expect(cmd.options.map((o) => o.long)).toEqual([
      '--port',
      '--host',
      '--allowed-host',
      '--ready-file',
      '--data-dir',
      '--in-memory',
      '--config',
      '--network',
      '--close-ms',
    ]);
    expect(() => cmd.parseOptions(['--port', '70000'])).toThrow();
  });
});

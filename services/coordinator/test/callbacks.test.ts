import type { lookup as dnsLookup } from 'node:dns';
import { rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { DestinationPolicy, destinationEntryProblem, isSpecialAddress } from '../src/destinations.ts';
import { EventBus } from '../src/events.ts';
import { openSqliteStore, type Store } from '../src/store.ts';
import { disposeHarness, FakeLedger, type Harness, harness, multisig, payment, waitFor } from './helpers.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** A real HTTP receiver on loopback that counts what reaches it. */
async function receiver(answer: (res: import('node:http').ServerResponse) => void = (res) => res.end('ok')) {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits.push(String(req.headers['x-cosigner-event']));
      answer(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
  return { hits, port: (server.address() as AddressInfo).port };
}

/** A resolver that answers `address` for every name (the "DNS" of a rebinding attacker). */
const resolvesTo = (address: string): typeof dnsLookup =>
  ((_host: string, _opts: unknown, cb: (e: null, a: { address: string; family: number }[]) => void) =>
    cb(null, [{ address, family: address.includes(':') ? 6 : 4 }])) as unknown as typeof dnsLookup;

async function bus(settings: {
  production?: boolean;
  allowedDestinations?: string[];
  lookup?: typeof dnsLookup;
  maxAttempts?: number;
}) {
  const dir = await tempDir('coord-callbacks-');
  const store: Store = openSqliteStore(dir);
  let log = '';
  const logger = createLogger({
    name: 'callbacks-test',
    level: 'warn',
    destination: new Writable({
      write(chunk, _e, cb) {
        log += chunk.toString();
        cb();
      },
    }),
  });
  const events = new EventBus(store, logger, {
    secret: 'test-secret',
    maxAttempts: settings.maxAttempts ?? 1,
    initialBackoffMs: 10,
    timeoutMs: 2000,
    allowedDestinations: settings.allowedDestinations ?? [],
    production: settings.production ?? false,
    ...(settings.lookup ? { lookup: settings.lookup } : {}),
  });
  cleanup.push(async () => {
    await events.close();
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { events, log: () => log };
}

describe('callback destinations', () => {
  it('knows the special-purpose addresses: loopback, private, link-local, metadata, unique-local, mapped', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.100.100.200',
      '0.0.0.0',
      '255.255.255.255',
      '::1',
      '::',
      'fe80::1',
      'fd00:ec2::254',
      '::ffff:10.0.0.1',
      '::ffff:127.0.0.1',
      '[::1]',
    ]) {
      expect(isSpecialAddress(a), a).toBe(true);
    }
    for (const a of ['203.0.113.7', '8.8.8.8', '2001:db8::1', '172.32.0.1', 'hooks.example']) {
      expect(isSpecialAddress(a), a).toBe(false);
    }
  });

  it('reads allow-list entries: names, *.names, IP literals and CIDRs; anything else is named as invalid', () => {
    for (const ok of [
      'hooks.example.com',
      '*.example.com',
      '10.0.0.5',
      '10.0.0.0/8',
      'fd00:1::/64',
      '[::1]',
      'Hooks',
    ]) {
      expect(destinationEntryProblem(ok), ok).toBeUndefined();
    }
    for (const bad of ['10.0.0.0/33', 'x/8', 'http://a', 'a b', '*', 'a..b', '::1/129']) {
      expect(destinationEntryProblem(bad), bad).toBeDefined();
    }
    expect(() => parseConfig({ callbacks: { allowedDestinations: ['hooks.example', '10.0.0.0/40'] } })).toThrow(
      /callbacks\.allowedDestinations\.1/,
    );
  });

  it('decides by name, by address and by mode', () => {
    const prod = new DestinationPolicy({ allowed: [], production: true });
    expect(prod.refusal('hooks.example', '203.0.113.7')).toBeUndefined();
    expect(prod.refusal('hooks.example', '10.0.0.1')).toMatch(/private, link-local or metadata/);
    expect(prod.refusalForUrl(new URL('https://169.254.169.254/latest'))).toMatch(/metadata/);
    expect(prod.refusalForUrl(new URL('https://[::1]:8443/'))).toBeDefined();
    expect(prod.refusalForUrl(new URL('https://hooks.example/'))).toBeUndefined(); // decided at connect time
    const dev = new DestinationPolicy({ allowed: [], production: false });
    expect(dev.refusal('localhost', '127.0.0.1')).toBeUndefined();
    const listed = new DestinationPolicy({
      allowed: ['hooks.example', '*.corp.example', '10.20.0.0/16'],
      production: true,
    });
    expect(listed.refusal('hooks.example', '10.9.9.9')).toBeUndefined(); // a listed name: the operator's choice
    expect(listed.refusal('a.corp.example', '10.9.9.9')).toBeUndefined();
    expect(listed.refusal('corp.example', '203.0.113.7')).toMatch(/not in callbacks\.allowedDestinations/);
    expect(listed.refusal('other.example', '10.20.3.4')).toBeUndefined(); // resolves into a listed CIDR
    expect(listed.refusal('other.example', '203.0.113.7')).toMatch(/not in callbacks\.allowedDestinations/);
    expect(listed.refusalForUrl(new URL('https://10.20.0.9/'))).toBeUndefined();
    expect(listed.refusalForUrl(new URL('https://10.21.0.9/'))).toBeDefined();
    const single = new DestinationPolicy({ allowed: ['10.0.0.7', '[fd00::7]'], production: true });
    expect(single.refusal('internal.example', '10.0.0.7')).toBeUndefined();
    expect(single.refusal('internal.example', 'fd00::7')).toBeUndefined();
    expect(single.refusal('internal.example', '10.0.0.8')).toMatch(/not in callbacks/);
    const namesOnly = new DestinationPolicy({ allowed: ['hooks.example'], production: false });
    expect(namesOnly.refusalForUrl(new URL('http://other.example/'))).toMatch(/not in callbacks/);
  });

  it('the connect-time lookup answers both shapes net.connect asks for, and passes resolver errors on', async () => {
    const policy = new DestinationPolicy({ allowed: [], production: true });
    const ask = (resolve: typeof dnsLookup, all: boolean) =>
      new Promise<{ err: NodeJS.ErrnoException | null; address: unknown; family?: number }>((done) =>
        policy.connectLookup(resolve)('hooks.example', { all }, (err, address, family) =>
          done({ err, address, family }),
        ),
      );
    expect(await ask(resolvesTo('203.0.113.7'), false)).toMatchObject({ err: null, address: '203.0.113.7', family: 4 });
    expect((await ask(resolvesTo('2001:db8::1'), true)).address).toEqual([{ address: '2001:db8::1', family: 6 }]);
    expect((await ask(resolvesTo('169.254.169.254'), false)).err?.code).toBe('CALLBACK_DESTINATION_REFUSED');
    const failing = ((_h: string, _o: unknown, cb: (e: Error) => void) =>
      cb(Object.assign(new Error('no such name'), { code: 'ENOTFOUND' }))) as unknown as typeof dnsLookup;
    expect((await ask(failing, false)).err?.code).toBe('ENOTFOUND');
    const empty = ((_h: string, _o: unknown, cb: (e: null, a: unknown[]) => void) =>
      cb(null, [])) as unknown as typeof dnsLookup;
    expect((await ask(empty, false)).err?.code).toBe('ENOTFOUND');
  });

  it('production: a name that resolves to loopback at connect time gets no callback (DNS rebinding), over real sockets', async () => {
    const r = await receiver();
    const refused = await bus({ production: true, lookup: resolvesTo('127.0.0.1') });
    refused.events.emit(null, 'proposal.created', { n: 1 }, `http://hooks.example:${r.port}/hook`);
    refused.events.emit(null, 'proposal.created', { n: 2 }, `http://localhost:${r.port}/hook`);
    await refused.events.close();
    expect(r.hits).toEqual([]);
    expect(refused.events.callbackUrlRefusal('http://')).toBe('it is not a valid URL');
    expect(refused.log()).toContain('callback destination refused');
    expect(refused.log()).toContain('127.0.0.1');
    // The control: the same resolver in development reaches the receiver, so the refusal above is the check.
    const dev = await bus({ production: false, lookup: resolvesTo('127.0.0.1') });
    dev.events.emit(null, 'proposal.created', {}, `http://hooks.example:${r.port}/hook`);
    await dev.events.close();
    expect(r.hits).toEqual(['proposal.created']);
  });

  it('an allow-list admits only its destinations, checked on the connected address', async () => {
    const r = await receiver();
    const cidr = await bus({ production: true, allowedDestinations: ['127.0.0.0/8'] });
    cidr.events.emit(null, 'proposal.created', {}, `http://localhost:${r.port}/hook`);
    await cidr.events.close();
    expect(r.hits).toEqual(['proposal.created']);
    // A name allowed by a CIDR entry is judged on what it resolves to when the socket connects.
    const elsewhere = await bus({ production: false, allowedDestinations: ['203.0.113.0/24'] });
    elsewhere.events.emit(null, 'quorum.reached', {}, `http://localhost:${r.port}/hook`);
    elsewhere.events.emit(null, 'quorum.reached', {}, `http://127.0.0.1:${r.port}/hook`);
    await elsewhere.events.close();
    expect(r.hits).toEqual(['proposal.created']);
  });

  it('does not follow a redirect', async () => {
    const target = await receiver();
    const redirecting = await receiver((res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${target.port}/elsewhere` }).end();
    });
    const b = await bus({ production: false, maxAttempts: 2 });
    b.events.emit(null, 'proposal.created', {}, `http://127.0.0.1:${redirecting.port}/hook`);
    // The retry comes from the outbox after its backoff: wait for it (bounded), however slow the machine is.
    const deadline = Date.now() + 15_000;
    while (redirecting.hits.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await b.events.close();
    expect(redirecting.hits).toEqual(['proposal.created', 'proposal.created']); // a 3xx is a failed delivery
    expect(target.hits).toEqual([]);
  });
});

describe('POST /v1/proposals callbackUrl', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    h = await disposeHarness(h);
  });

  const withAccount = async (config: Record<string, unknown>) => {
    const ledger = new FakeLedger();
    const source = Keypair.random().publicKey();
    ledger.accounts.set(source, multisig(source, [Keypair.random().publicKey(), Keypair.random().publicKey()], 2));
    h = await harness({ ledger, config });
    const post = (callbackUrl: string) =>
      h!.app.inject({
        method: 'POST',
        url: '/v1/proposals',
        headers: { authorization: `Bearer ${h!.adminKey}` },
        payload: { xdr: payment(source), callbackUrl },
      });
    return post;
  };

  it('production refuses loopback, private, link-local and metadata addresses with a code naming the field', async () => {
    const post = await withAccount({ mode: 'production' });
    for (const url of [
      'https://169.254.169.254/latest/meta-data/',
      'https://127.0.0.1:8443/x',
      'https://[::1]/x',
      'https://10.0.0.5/x',
      'https://[::ffff:192.168.1.1]/x',
    ]) {
      const r = await post(url);
      expect(r.statusCode, url).toBe(400);
      expect(r.json(), url).toMatchObject({ code: 'COORD_CALLBACK_NOT_ALLOWED', details: { field: 'callbackUrl' } });
    }
    expect((await post('https://hooks.example/x')).statusCode).toBe(201);
  });

  it('an allow-list of names refuses any other host before the proposal is stored', async () => {
    const post = await withAccount({ callbacks: { allowedDestinations: ['hooks.example'] } });
    const r = await post('http://other.example/x');
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'COORD_CALLBACK_NOT_ALLOWED' });
    expect((await post('http://hooks.example/x')).statusCode).toBe(201);
  });
});

describe('callbacks are durable (the outbox)', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    h = await disposeHarness(h);
  });

  /** A receiver that answers 503 while `down`, 200 once up; `delivered` lists the event seqs it accepted. */
  async function flakyReceiver() {
    const state = { down: true, tries: 0, delivered: [] as number[] };
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        state.tries++;
        if (state.down) return res.writeHead(503).end();
        state.delivered.push((JSON.parse(body) as { event: { seq: number } }).event.seq);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    return { state, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
  }

  it('a callback pending when the coordinator stops is delivered by the restarted one, once per event', async () => {
    const r = await flakyReceiver();
    const ledger = new FakeLedger();
    const source = Keypair.random().publicKey();
    ledger.accounts.set(source, multisig(source, [Keypair.random().publicKey(), Keypair.random().publicKey()], 2));
    const config = { callbacks: { maxAttempts: 20, initialBackoffMs: 1000 } };
    h = await harness({ ledger, config });
    const created = await h.app.inject({
      method: 'POST',
      url: '/v1/proposals',
      headers: { authorization: `Bearer ${h.adminKey}` },
      payload: { xdr: payment(source), callbackUrl: r.url },
    });
    expect(created.statusCode).toBe(201);
    // The first try met the receiver down; the coordinator stops with the callback pending.
    await waitFor(() => (r.state.tries > 0 ? true : undefined), 'first try');
    const seqs = h.store.eventsSince(0, 100).map((e) => e.seq);
    // Every event's callback is pending (a retried one is due later, so the order is by due time, not seq).
    const pending = h.store.claimCallbacks('t', Date.now() + 60_000, 1, 100).map((c) => c.event.seq);
    expect(pending.sort((x, y) => x - y)).toEqual(seqs);
    const dir = h.dir;
    await h.close();
    h = undefined;
    r.state.down = false;
    h = await harness({ ledger, config, dir });
    const hh = h;
    await waitFor(() => (r.state.delivered.length >= seqs.length ? true : undefined), 'delivered after the restart');
    await waitFor(() => (hh.store.claimCallbacks('t', Date.now() + 60_000, 1, 100).length === 0 ? true : undefined));
    expect(r.state.delivered.sort((a, b) => a - b)).toEqual(seqs);
    expect(hh.store.failedCallbacks(10)).toEqual([]);
  });

  it('gives up after maxAttempts: the row stays, failed, with its error, and the metric counts it', async () => {
    const r = await flakyReceiver();
    h = await harness({ config: { callbacks: { maxAttempts: 2, initialBackoffMs: 10 } } });
    const hh = h;
    const e = hh.app.coordinator.events.emit('p1', 'proposal.created', { hash: 'h', requirements: [] }, r.url);
    await waitFor(() => (hh.store.failedCallbacks(10).length === 1 ? true : undefined), 'given up');
    expect(r.state.tries).toBe(2);
    expect(hh.store.failedCallbacks(10)).toEqual([
      expect.objectContaining({ url: r.url, attempts: 2, error: 'no 2xx answer', event: await e }),
    ]);
    const metrics = await (await hh.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/coordinator_callbacks_failed_total 1/);
  });
});

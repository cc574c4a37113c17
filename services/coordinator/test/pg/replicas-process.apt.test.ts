import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { type PostgresServer, startPostgres } from '@cosigner/testkit/postgres';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Asset, Horizon, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TestNode, waitFor } from '../helpers.ts';

/**
 * Two `cosigner coordinator` processes on one real PostgreSQL database, the real ledger simulator, and test-double
 * nodes each holding a session with both replicas (what a node configured with `coordinator.urls` does). The
 * replica driving a round is killed with SIGKILL mid-round and mid-submission: the other takes the round over
 * within the lease time plus one second, asks again the nodes that had not answered, asks the network for the hash
 * before submitting, and the ledger applies exactly one envelope. Zero proposals lost, none completed twice.
 */
const NETWORK = 'Coordinator Replicas Process Test ; 2026';
const LEASE_MS = 2000;
let sim: RunningProcess;
let server: Horizon.Server;
let db: PostgresServer;
const procs: RunningProcess[] = [];
const dirs: string[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  [sim, db] = await Promise.all([
    startCosignerProcess({
      args: ['ledger-sim', '--in-memory', '--network', NETWORK, '--close-ms', '100'],
      readyTimeoutMs: 60_000,
    }),
    startPostgres(),
  ]);
  server = new Horizon.Server(sim.url, { allowHttp: true });
});
afterAll(async () => {
  for (const p of procs) await p.stop();
  for (const s of servers) s.closeAllConnections();
  await sim?.stop();
  await db?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function fund(kp: Keypair): Promise<void> {
  expect((await fetch(`${sim.url}/friendbot?addr=${kp.publicKey()}`)).status).toBe(200);
}

async function multisigAccount(nodeKeys: string[]): Promise<Keypair> {
  const master = Keypair.random();
  await fund(master);
  const b = new TransactionBuilder(await server.loadAccount(master.publicKey()), {
    fee: '100',
    networkPassphrase: NETWORK,
  });
  for (const k of nodeKeys) b.addOperation(Operation.setOptions({ signer: { ed25519PublicKey: k, weight: 1 } }));
  b.addOperation(Operation.setOptions({ masterWeight: 0, lowThreshold: 2, medThreshold: 2, highThreshold: 2 }));
  const tx = b.setTimeout(60).build();
  tx.sign(master);
  await server.submitTransaction(tx, { skipMemoRequiredCheck: true });
  return master;
}

async function paymentXdr(source: string, dest: string, amount: string): Promise<string> {
  return new TransactionBuilder(await server.loadAccount(source), { fee: '100', networkPassphrase: NETWORK })
    .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount }))
    .setTimeout(120)
    .build()
    .toEnvelope()
    .toXDR('base64');
}

/**
 * One API call as a well-behaved client makes it: on 429 (the API key's rate limit, 20/s by default, which the
 * tests' polling can exceed on a slow machine) it waits as `retry-after` says and asks again.
 */
async function api(base: string, key: string, path: string, body?: unknown) {
  for (;;) {
    const res = await fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status !== 429) return { status: res.status, json };
    await new Promise((r) => setTimeout(r, 1000 * Math.max(0.1, Number(res.headers.get('retry-after') ?? 0.2))));
  }
}

/**
 * Horizon as a replica sees it through a network that loses the answer to a submission: every request reaches the
 * simulator, but the answer to `POST /transactions` never comes back (the envelope applies all the same).
 */
async function answerLosingProxy(target: string): Promise<string> {
  const s = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const upstream = await fetch(`${target}${req.url}`, {
      method: req.method,
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : Buffer.concat(chunks),
    });
    const body = Buffer.from(await upstream.arrayBuffer());
    if (req.method === 'POST' && req.url?.startsWith('/transactions')) return; // applied; the answer is lost
    res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
    res.end(body);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
}

async function cluster(database: string) {
  const dir = await tempDir('coord-replicas-proc-');
  dirs.push(dir);
  await writeFile(join(dir, 'db.password'), `${db.password}\n`, { mode: 0o600 });
  // One node of three approves on its session with A; on its session with B a second one approves too (the one A
  // never heard from): so only a replica that takes the round over and asks again can complete it.
  const nodes = ['approve', 'silent', 'silent'].map(
    (b, i) => new TestNode(`node-${i}`, b as 'approve', { network: NETWORK }),
  );
  const configFile = join(dir, 'coordinator.yaml');
  await writeFile(
    configFile,
    stringify({
      network: NETWORK,
      // Shared by the replicas: the message key nodes pin, the admin key and the callback secret.
      messageKeyFile: 'message-key.pem',
      adminKeyFile: 'admin.key',
      callbacks: { secretFile: 'callback.key', initialBackoffMs: 300, timeoutMs: 1000, maxAttempts: 20 },
      nodes: nodes.map((n) => n.enrolment()),
      store: {
        type: 'postgres',
        url: database,
        passwordFile: 'db.password',
        tls: { mode: 'disable' },
        leaseMs: LEASE_MS,
        connectTimeoutMs: 1000,
      },
      round: { submitBackoffMs: 50, heartbeatMs: 1000 },
    }),
  );
  const start = async (name: string, horizon: string) => {
    const proc = await startCosignerProcess({
      args: ['coordinator', '--config', configFile, '--data-dir', join(dir, name), '--horizon-url', horizon],
      readyTimeoutMs: 60_000,
    });
    procs.push(proc);
    return proc;
  };
  return { dir, nodes, configFile, start };
}

/** The holder of the round's lease as stored: `<host>:<pid>:<random>` (src/pg/replicas.ts replicaId). */
async function leaseHolder(database: string, proposalId: string): Promise<{ holder: string; token: number } | null> {
  const u = new URL(database);
  const client = new pg.Client({
    host: u.hostname,
    port: Number(u.port),
    user: decodeURIComponent(u.username),
    password: db.password,
    database: u.pathname.slice(1),
  });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT holder, token FROM round_leases WHERE proposal_id = $1', [proposalId]);
    const row = rows[0] as { holder: string; token: string } | undefined;
    // BIGINT arrives as a string from a plain client.
    return row ? { holder: row.holder, token: Number(row.token) } : null;
  } finally {
    await client.end();
  }
}

const driverPid = (holder: string): number => Number(holder.split(':').at(-2));

describe('two coordinator processes on PostgreSQL', () => {
  it('kill -9 of the driving replica mid-round: the other takes over in time, re-asks, submits once', async () => {
    const database = await db.createDatabase('replicas_round');
    const c = await cluster(database);
    const a = await c.start('a', sim.url);
    const b = await c.start('b', sim.url);
    const key = (await readFile(String(a.ready.adminKeyFile), 'utf8')).trim();
    const messageKey = Buffer.from(String(a.ready.messageKey), 'base64');
    expect(b.ready.messageKey).toBe(a.ready.messageKey);
    const twins = c.nodes.map(
      (n, i) =>
        new TestNode(n.id, i < 2 ? 'approve' : 'silent', {
          keypair: n.keypair,
          identity: n.identity,
          network: NETWORK,
        }),
    );
    for (const n of c.nodes) expect(await n.connect(a.url, messageKey)).toBe('welcome');
    for (const n of twins) expect(await n.connect(b.url, messageKey)).toBe('welcome');
    const master = await multisigAccount(c.nodes.map((n) => n.stellarKey));
    const dest = Keypair.random();
    await fund(dest);
    const seqBefore = BigInt((await server.loadAccount(master.publicKey())).sequenceNumber());

    const xdr = await paymentXdr(master.publicKey(), dest.publicKey(), '5');
    const created = await api(a.url, key, '/v1/proposals', { xdr, submit: true, idempotencyKey: 'replica-kill-1' });
    expect(created.status).toBe(201);
    const id = String(created.json.id);
    // A drives it (it created it) and node-0's signature is in: then A dies.
    await waitFor(async () => {
      const p = (await api(b.url, key, `/v1/proposals/${id}`)).json;
      return (p.signatures as unknown[]).length === 1 ? true : undefined;
    }, "node-0's signature");
    const before = (await leaseHolder(database, id))!;
    expect(driverPid(before.holder)).toBe(a.pid);
    await a.kill9();
    const died = Date.now();

    const done = await waitFor(
      async () => {
        const p = (await api(b.url, key, `/v1/proposals/${id}`)).json;
        return p.status === 'submitted' || p.status === 'failed' ? p : undefined;
      },
      'taken over and submitted by B',
      30_000,
    );
    expect(done.status).toBe('submitted');
    const after = (await leaseHolder(database, id))!;
    expect(driverPid(after.holder)).toBe(b.pid);
    expect(after.token).toBe(before.token + 1);
    // B asked node-1 again (on its session with B), within the lease time plus one second of A's death.
    expect(twins[1]!.proposals.some((p) => p.proposalId === id)).toBe(true);
    expect(Date.parse(String(done.signedAt)) - died).toBeLessThan(LEASE_MS + 1000 + 1500);
    // One envelope on the ledger: the sequence moved by one, the transaction applied.
    expect((await server.transactions().transaction(String(done.hash)).call()).successful).toBe(true);
    expect(BigInt((await server.loadAccount(master.publicKey())).sequenceNumber())).toBe(seqBefore + 1n);
    // Nothing lost, nothing twice: one proposal for the key, one quorum, one submission.
    const listed = (await api(b.url, key, '/v1/proposals?idempotencyKey=replica-kill-1')).json.items as unknown[];
    expect(listed).toHaveLength(1);
    const events = (await api(b.url, key, `/v1/proposals/${id}/events`)).json.events as { type: string }[];
    expect(events.filter((e) => e.type === 'quorum.reached')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'proposal.submitted')).toHaveLength(1);
    for (const n of [...c.nodes, ...twins]) n.close();
  }, 180_000);

  it('kill -9 of the driving replica mid-submission: the other asks the network for the hash and sends nothing', async () => {
    const database = await db.createDatabase('replicas_submit');
    const c = await cluster(database);
    // A reaches the network through a link that loses the answer to its submission; B reaches it directly.
    const a = await c.start('a', await answerLosingProxy(sim.url));
    const b = await c.start('b', sim.url);
    const key = (await readFile(String(a.ready.adminKeyFile), 'utf8')).trim();
    const messageKey = Buffer.from(String(a.ready.messageKey), 'base64');
    c.nodes[1]!.behaviour = 'approve';
    for (const n of c.nodes) expect(await n.connect(a.url, messageKey)).toBe('welcome');
    const master = await multisigAccount(c.nodes.map((n) => n.stellarKey));
    const dest = Keypair.random();
    await fund(dest);
    const seqBefore = BigInt((await server.loadAccount(master.publicKey())).sequenceNumber());
    const xdr = await paymentXdr(master.publicKey(), dest.publicKey(), '4');
    const created = await api(a.url, key, '/v1/proposals', { xdr, submit: true });
    expect(created.status).toBe(201);
    const id = String(created.json.id);
    const hash = String(created.json.hash);
    // Signed, sent by A, applied on the ledger: A is still waiting for the answer when it dies.
    await waitFor(async () => {
      try {
        return (await server.transactions().transaction(hash).call()).successful ? true : undefined;
      } catch {
        return undefined;
      }
    }, 'the envelope applied');
    expect((await api(b.url, key, `/v1/proposals/${id}`)).json.status).toBe('signed');
    expect(driverPid((await leaseHolder(database, id))!.holder)).toBe(a.pid);
    await a.kill9();
    const done = await waitFor(
      async () => {
        const p = (await api(b.url, key, `/v1/proposals/${id}`)).json;
        return p.status === 'submitted' || p.status === 'failed' ? p : undefined;
      },
      'submission taken over by B',
      30_000,
    );
    // Found by its hash, not sent again (a second send would have failed with a used sequence number).
    expect(done.status).toBe('submitted');
    expect(done.result).toMatchObject({ outcome: 'accepted', message: 'found on the ledger' });
    expect(BigInt((await server.loadAccount(master.publicKey())).sequenceNumber())).toBe(seqBefore + 1n);
    for (const n of c.nodes) n.close();
  }, 180_000);

  it('kill -9 of the driving replica while PostgreSQL restarts: 503 meanwhile, then the other replica finishes the round', async () => {
    const database = await db.createDatabase('replicas_restart');
    const c = await cluster(database);
    const a = await c.start('a', sim.url);
    const b = await c.start('b', sim.url);
    const key = (await readFile(String(a.ready.adminKeyFile), 'utf8')).trim();
    const messageKey = Buffer.from(String(a.ready.messageKey), 'base64');
    const twins = c.nodes.map(
      (n, i) =>
        new TestNode(n.id, i < 2 ? 'approve' : 'silent', {
          keypair: n.keypair,
          identity: n.identity,
          network: NETWORK,
        }),
    );
    for (const n of c.nodes) expect(await n.connect(a.url, messageKey)).toBe('welcome');
    for (const n of twins) expect(await n.connect(b.url, messageKey)).toBe('welcome');
    const master = await multisigAccount(c.nodes.map((n) => n.stellarKey));
    const dest = Keypair.random();
    await fund(dest);
    const seqBefore = BigInt((await server.loadAccount(master.publicKey())).sequenceNumber());
    const xdr = await paymentXdr(master.publicKey(), dest.publicKey(), '3');
    const created = await api(a.url, key, '/v1/proposals', { xdr, submit: true, idempotencyKey: 'pg-restart-1' });
    expect(created.status).toBe(201);
    const id = String(created.json.id);
    await waitFor(async () => {
      const p = (await api(b.url, key, `/v1/proposals/${id}`)).json;
      return (p.signatures as unknown[]).length === 1 ? true : undefined;
    }, "node-0's signature");
    expect(driverPid((await leaseHolder(database, id))!.holder)).toBe(a.pid);
    // The database goes down, the driver dies meanwhile, the database comes back.
    await db.stop('immediate');
    await a.kill9();
    const down = await api(b.url, key, `/v1/proposals/${id}`);
    expect(down.status).toBe(503);
    expect(down.json.code).toBe('COORD_STORE_UNAVAILABLE');
    await db.start();
    const done = await waitFor(
      async () => {
        const r = await api(b.url, key, `/v1/proposals/${id}`);
        return r.status === 200 && (r.json.status === 'submitted' || r.json.status === 'failed') ? r.json : undefined;
      },
      'B finishes the round once the database is back',
      30_000,
    );
    expect(done.status).toBe('submitted');
    expect(driverPid((await leaseHolder(database, id))!.holder)).toBe(b.pid);
    expect(BigInt((await server.loadAccount(master.publicKey())).sequenceNumber())).toBe(seqBefore + 1n);
    const events = (await api(b.url, key, `/v1/proposals/${id}/events`)).json.events as { type: string }[];
    expect(events.filter((e) => e.type === 'proposal.submitted')).toHaveLength(1);
    for (const n of [...c.nodes, ...twins]) n.close();
  }, 180_000);

  it('kill -9 of the replica that emitted events while their receiver is down: the other replica delivers them', async () => {
    const database = await db.createDatabase('replicas_callbacks');
    const c = await cluster(database);
    const a = await c.start('a', sim.url);
    const b = await c.start('b', sim.url);
    const key = (await readFile(String(a.ready.adminKeyFile), 'utf8')).trim();
    const messageKey = Buffer.from(String(a.ready.messageKey), 'base64');
    for (const n of c.nodes) expect(await n.connect(a.url, messageKey)).toBe('welcome');
    // The client's receiver: 503 while down; every accepted delivery noted with its event's seq and time.
    const receiver = { down: true, tries: 0, delivered: [] as { seq: number; at: number }[] };
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        receiver.tries++;
        if (receiver.down) return res.writeHead(503).end();
        receiver.delivered.push({ seq: (JSON.parse(body) as { event: { seq: number } }).event.seq, at: Date.now() });
        res.end('ok');
      });
    });
    servers.push(hook);
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const callbackUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`;
    const master = await multisigAccount(c.nodes.map((n) => n.stellarKey));
    const xdr = await paymentXdr(master.publicKey(), Keypair.random().publicKey(), '1');
    const created = await api(a.url, key, '/v1/proposals', { xdr, callbackUrl });
    expect(created.status).toBe(201);
    const id = String(created.json.id);
    // A wrote the events and tried their callbacks (503): they are pending when A dies.
    await waitFor(() => (receiver.tries >= 2 ? true : undefined), 'callbacks tried by A');
    await a.kill9();
    const died = Date.now();
    receiver.down = false;
    const events = (await api(b.url, key, `/v1/proposals/${id}/events`)).json.events as { seq: number }[];
    expect(events.length).toBeGreaterThanOrEqual(2);
    const seqs = events.map((e) => e.seq);
    await waitFor(
      () => (seqs.every((s) => receiver.delivered.some((d) => d.seq === s)) ? true : undefined),
      'every event delivered by B',
      30_000,
    );
    // Delivered after A died (so by B), and each once: B claimed each row once and removed it once delivered.
    expect(receiver.delivered.every((d) => d.at >= died)).toBe(true);
    expect(receiver.delivered.map((d) => d.seq).sort((x, y) => x - y)).toEqual(seqs);
    for (const n of c.nodes) n.close();
  }, 180_000);
});

import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type PostgresServer, startPostgres } from '@cosigner/testkit/postgres';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Asset, Horizon, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import pg from 'pg';
import { afterAll, beforeAll, expect } from 'vitest';
import { stringify } from 'yaml';
import { TestNode, waitFor } from '../helpers.ts';

/**
 * What the coordinator's PostgreSQL process tests share: the real ledger simulator and a real PostgreSQL 15 server
 * per test file (started before its tests, stopped after them with every coordinator process and directory the
 * tests made), multisig accounts and payments on the simulator, API calls as a well-behaved client makes them, and
 * for the replica tests two `cosigner coordinator` processes on one database with test-double nodes.
 */
export interface ProcessEnv {
  readonly network: string;
  readonly sim: RunningProcess;
  readonly server: Horizon.Server;
  readonly db: PostgresServer;
  /** A temporary directory, removed after the file's tests. */
  dir(prefix: string): Promise<string>;
  /** Start a `cosigner` service process, stopped after the file's tests. */
  start(args: string[]): Promise<RunningProcess>;
  /** Fund an account through the simulator's friendbot. */
  fund(kp: Keypair): Promise<void>;
  /** A funded account whose signers are `nodeKeys` (weight 1 each), thresholds 2, master weight 0. */
  multisigAccount(nodeKeys: string[]): Promise<Keypair>;
  /** An unsigned payment from `source` at its current sequence number. */
  paymentXdr(source: string, dest: string, amount: string): Promise<string>;
  /** The account's sequence number on the ledger. */
  sequence(account: string): Promise<bigint>;
}

/** Register the file's start-up and clean-up; the environment is usable inside its tests. */
export function useProcessEnv(network: string): ProcessEnv {
  let sim: RunningProcess | undefined;
  let server: Horizon.Server | undefined;
  let db: PostgresServer | undefined;
  const procs: RunningProcess[] = [];
  const dirs: string[] = [];
  beforeAll(async () => {
    [sim, db] = await Promise.all([
      startCosignerProcess({
        args: ['ledger-sim', '--in-memory', '--network', network, '--close-ms', '100'],
        readyTimeoutMs: 60_000,
      }),
      startPostgres(),
    ]);
    server = new Horizon.Server(sim.url, { allowHttp: true });
  });
  afterAll(async () => {
    for (const p of procs) await p.stop();
    await sim?.stop();
    await db?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const env: ProcessEnv = {
    network,
    get sim() {
      return sim!;
    },
    get server() {
      return server!;
    },
    get db() {
      return db!;
    },
    async dir(prefix) {
      const d = await tempDir(prefix);
      dirs.push(d);
      return d;
    },
    async start(args) {
      const proc = await startCosignerProcess({ args, readyTimeoutMs: 60_000 });
      procs.push(proc);
      return proc;
    },
    async fund(kp) {
      expect((await fetch(`${sim!.url}/friendbot?addr=${kp.publicKey()}`)).status).toBe(200);
    },
    async multisigAccount(nodeKeys) {
      const master = Keypair.random();
      await env.fund(master);
      const b = new TransactionBuilder(await server!.loadAccount(master.publicKey()), {
        fee: '100',
        networkPassphrase: network,
      });
      for (const k of nodeKeys) b.addOperation(Operation.setOptions({ signer: { ed25519PublicKey: k, weight: 1 } }));
      b.addOperation(Operation.setOptions({ masterWeight: 0, lowThreshold: 2, medThreshold: 2, highThreshold: 2 }));
      const tx = b.setTimeout(60).build();
      tx.sign(master);
      await server!.submitTransaction(tx, { skipMemoRequiredCheck: true });
      return master;
    },
    async paymentXdr(source, dest, amount) {
      return new TransactionBuilder(await server!.loadAccount(source), { fee: '100', networkPassphrase: network })
        .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount }))
        .setTimeout(120)
        .build()
        .toEnvelope()
        .toXDR('base64');
    },
    async sequence(account) {
      return BigInt((await server!.loadAccount(account)).sequenceNumber());
    },
  };
  return env;
}

/**
 * One API call as a well-behaved client makes it: on 429 (the API key's rate limit, 20/s by default, which the
 * tests' polling can exceed on a slow machine) it waits as `retry-after` says and asks again.
 */
export async function api(
  base: string,
  key: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
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

/** Two coordinator replicas on one database, sharing one config; the nodes as enrolled there. */
export interface ReplicaCluster {
  dir: string;
  nodes: TestNode[];
  configFile: string;
  /** Start replica `name` (its own data directory) reaching the network at `horizon`. */
  start(name: string, horizon: string): Promise<RunningProcess>;
}

/**
 * The replicas' shared config on `database`: the message key nodes pin, the admin key and the callback secret
 * are files both read; rounds under a lease of `leaseMs`. Three test-double nodes are enrolled: node-0 approves,
 * the others are silent (on their sessions with the first replica; see `twins`).
 */
export async function replicaCluster(env: ProcessEnv, database: string, leaseMs: number): Promise<ReplicaCluster> {
  const dir = await env.dir('coord-replicas-proc-');
  await writeFile(join(dir, 'db.password'), `${env.db.password}\n`, { mode: 0o600 });
  const nodes = ['approve', 'silent', 'silent'].map(
    (b, i) => new TestNode(`node-${i}`, b as 'approve', { network: env.network }),
  );
  const configFile = join(dir, 'coordinator.yaml');
  await writeFile(
    configFile,
    stringify({
      network: env.network,
      messageKeyFile: 'message-key.pem',
      adminKeyFile: 'admin.key',
      callbacks: { secretFile: 'callback.key', initialBackoffMs: 300, timeoutMs: 1000, maxAttempts: 20 },
      nodes: nodes.map((n) => n.enrolment()),
      store: {
        type: 'postgres',
        url: database,
        passwordFile: 'db.password',
        tls: { mode: 'disable' },
        leaseMs,
        connectTimeoutMs: 1000,
      },
      round: { submitBackoffMs: 50, heartbeatMs: 1000 },
    }),
  );
  const start = (name: string, horizon: string) =>
    env.start(['coordinator', '--config', configFile, '--data-dir', join(dir, name), '--horizon-url', horizon]);
  return { dir, nodes, configFile, start };
}

/** Two replicas started: `a` reaching the network at `horizonA` (default: the simulator), `b` directly. */
export interface Replicas {
  a: RunningProcess;
  b: RunningProcess;
  /** The admin API key both replicas accept. */
  key: string;
  /** The coordinator message key the nodes pin (base64 in the ready file). */
  messageKey: Buffer;
}

export async function startReplicas(env: ProcessEnv, c: ReplicaCluster, horizonA?: string): Promise<Replicas> {
  const a = await c.start('a', horizonA ?? env.sim.url);
  const b = await c.start('b', env.sim.url);
  const key = (await readFile(String(a.ready.adminKeyFile), 'utf8')).trim();
  expect(b.ready.messageKey).toBe(a.ready.messageKey);
  return { a, b, key, messageKey: Buffer.from(String(a.ready.messageKey), 'base64') };
}

/**
 * The nodes' sessions with the second replica: the same identities and keys, node-0 and node-1 approving, so only
 * a replica that takes a round over and asks again the node that was silent on the first can complete it. Every
 * node connects to `a`, every twin to `b`.
 */
export async function connectWithTwins(env: ProcessEnv, c: ReplicaCluster, r: Replicas): Promise<TestNode[]> {
  const twins = c.nodes.map(
    (n, i) =>
      new TestNode(n.id, i < 2 ? 'approve' : 'silent', {
        keypair: n.keypair,
        identity: n.identity,
        network: env.network,
      }),
  );
  for (const n of c.nodes) expect(await n.connect(r.a.url, r.messageKey)).toBe('welcome');
  for (const n of twins) expect(await n.connect(r.b.url, r.messageKey)).toBe('welcome');
  return twins;
}

/** The holder of the round's lease as stored: `<host>:<pid>:<random>` (src/pg/replicas.ts replicaId). */
export async function leaseHolder(
  db: PostgresServer,
  database: string,
  proposalId: string,
): Promise<{ holder: string; token: number } | null> {
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

/** The pid in a lease holder's id. */
export const driverPid = (holder: string): number => Number(holder.split(':').at(-2));

/** Wait (30 s at most) until replica `on` answers 200 for the proposal with an end of its submission. */
export function submissionEnded(
  on: RunningProcess,
  key: string,
  id: string,
  what: string,
): Promise<Record<string, unknown>> {
  return waitFor(
    async () => {
      const r = await api(on.url, key, `/v1/proposals/${id}`);
      return r.status === 200 && (r.json.status === 'submitted' || r.json.status === 'failed') ? r.json : undefined;
    },
    what,
    30_000,
  );
}

/**
 * The checks after the driving replica was killed: replica `b` ended the round `submitted`, it holds the round's
 * lease, the ledger applied exactly one envelope (the account's sequence moved by one) and one submission is
 * recorded. Returns the proposal as `b` shows it, the lease and the proposal's events, for the case's own checks.
 */
export async function expectTakenOverOnce(
  env: ProcessEnv,
  o: { b: RunningProcess; key: string; id: string; database: string; account: string; seqBefore: bigint; what: string },
): Promise<{
  done: Record<string, unknown>;
  lease: { holder: string; token: number };
  events: { type: string }[];
}> {
  const done = await submissionEnded(o.b, o.key, o.id, o.what);
  expect(done.status).toBe('submitted');
  const lease = (await leaseHolder(env.db, o.database, o.id))!;
  expect(driverPid(lease.holder)).toBe(o.b.pid);
  expect(await env.sequence(o.account)).toBe(o.seqBefore + 1n);
  const events = (await api(o.b.url, o.key, `/v1/proposals/${o.id}/events`)).json.events as { type: string }[];
  expect(events.filter((e) => e.type === 'proposal.submitted')).toHaveLength(1);
  return { done, lease, events };
}

/**
 * Wait until replica `b` shows node-0's signature on the proposal (collected by `a`, which created the proposal
 * and drives its round), and check that `a` holds the round's lease; returns the lease.
 */
export async function drivenByA(
  env: ProcessEnv,
  r: Replicas,
  database: string,
  id: string,
): Promise<{ holder: string; token: number }> {
  await waitFor(async () => {
    const p = (await api(r.b.url, r.key, `/v1/proposals/${id}`)).json;
    return (p.signatures as unknown[]).length === 1 ? true : undefined;
  }, "node-0's signature");
  const lease = (await leaseHolder(env.db, database, id))!;
  expect(driverPid(lease.holder)).toBe(r.a.pid);
  return lease;
}

/**
 * The start of a take-over case: two replicas on a fresh database `databaseName`, every node connected to A and
 * its twin to B, a multisig account of the nodes, and a payment of `amount` XLM proposed on A (submit: true), whose
 * round A drives with node-0's signature in.
 */
export async function roundDrivenByA(
  env: ProcessEnv,
  o: { databaseName: string; leaseMs: number; amount: string; idempotencyKey: string },
): Promise<{
  database: string;
  c: ReplicaCluster;
  replicas: Replicas;
  twins: TestNode[];
  master: Keypair;
  seqBefore: bigint;
  id: string;
  lease: { holder: string; token: number };
}> {
  const database = await env.db.createDatabase(o.databaseName);
  const c = await replicaCluster(env, database, o.leaseMs);
  const replicas = await startReplicas(env, c);
  const twins = await connectWithTwins(env, c, replicas);
  const master = await env.multisigAccount(c.nodes.map((n) => n.stellarKey));
  const dest = Keypair.random();
  await env.fund(dest);
  const seqBefore = await env.sequence(master.publicKey());
  const xdr = await env.paymentXdr(master.publicKey(), dest.publicKey(), o.amount);
  const created = await api(replicas.a.url, replicas.key, '/v1/proposals', {
    xdr,
    submit: true,
    idempotencyKey: o.idempotencyKey,
  });
  expect(created.status).toBe(201);
  const id = String(created.json.id);
  const lease = await drivenByA(env, replicas, database, id);
  return { database, c, replicas, twins, master, seqBefore, id, lease };
}

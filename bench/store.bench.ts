/**
 * `pnpm bench store`: the coordinator on each of its stores, in one run, the cluster otherwise the same: a 2-of-3
 * cluster of real processes (packages/launcher startCluster: one KMS emulator per node, the ledger simulator, three
 * cosigner nodes) with
 * - `sqlite`: one coordinator on its embedded SQLite file (the default store);
 * - `pg x1`: one coordinator on PostgreSQL (packages/testkit startPostgres: a real PostgreSQL 15 server, one database
 *   per run, password from a file, loopback without TLS);
 * - `pg x2`: two coordinator replicas on the same database, every node holding a session with both
 *   (`coordinator.urls`), and the bench spreading its proposals over the two round-robin, as a load balancer
 *   without affinity would. The replica that accepts a proposal drives its round under the round's lease.
 * Per variant: c=1 latency from POST /v1/proposals (submit: false) to the `quorum.reached` event (the quorum of
 * signatures verified, the minimal envelope assembled, checked and stored: a signed envelope), then proposals per
 * second with STORE_C (default 16) clients over a window after a warm-up, and the CPU ms per proposal of the
 * coordinator process(es) and of the PostgreSQL server (all its processes) in that window.
 * The variants alternate, STORE_ROUNDS times (default 2), each on a fresh cluster, and the medians are printed: the
 * machine is shared, a single run measures the neighbours as much as the store.
 * Settings: STORE_ROUNDS, STORE_N (c=1 samples, default 150), STORE_C, STORE_WINDOW_MS (8000), STORE_WARMUP_MS
 * (2000), STORE_VARIANTS (default sqlite,pg1,pg2). Children run dist/ (the build first), as the cluster bench.
 * Writes bench/results/store.json. Never run by tests.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { type Cluster, nodeSocketUrl, SERVICE_V8_FLAGS, startCluster } from '@cosigner/launcher/cluster';
import { type PostgresServer, startPostgres } from '@cosigner/testkit/postgres';
import { COSIGNER_BIN, REPO_ROOT, tempDir, useBuiltJs } from '@cosigner/testkit/process';
import { Account, Asset, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { drawFrom, measureWindow, ProposalClient } from './load.ts';
import { cpuSeconds } from './proc.ts';

const ROUNDS = Number(process.env.STORE_ROUNDS ?? 2);
const N_LATENCY = Number(process.env.STORE_N ?? 150);
const C = Number(process.env.STORE_C ?? 16);
const WINDOW_MS = Number(process.env.STORE_WINDOW_MS ?? 8000);
const WARMUP_MS = Number(process.env.STORE_WARMUP_MS ?? 2000);
type Variant = 'sqlite' | 'pg1' | 'pg2';
const VARIANTS = (process.env.STORE_VARIANTS ?? 'sqlite,pg1,pg2').split(',') as Variant[];
const LABEL: Record<Variant, string> = { sqlite: 'sqlite', pg1: 'pg x1', pg2: 'pg x2' };

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;
const load = (): number[] => loadavg().map((x) => round2(x));
const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function payments(cluster: Cluster, destination: string, firstSeq: bigint, count: number): string[] {
  const account = new Account(cluster.account.id, (firstSeq - 1n).toString());
  return Array.from({ length: count }, () =>
    new TransactionBuilder(account, { fee: '100', networkPassphrase: cluster.networkPassphrase })
      .addOperation(Operation.payment({ destination, asset: Asset.native(), amount: '0.0000001' }))
      .setTimeout(240)
      .build()
      .toXDR(),
  );
}

/** The second replica: the launcher's coordinator.yaml and flags, its own data directory, the same database. */
async function startReplica(dir: string, log: string): Promise<{ url: string; proc: ChildProcess }> {
  const readyFile = join(dir, 'coordinator-b.ready.json');
  const out: string[] = [];
  const proc = spawn(
    process.execPath,
    [
      ...SERVICE_V8_FLAGS,
      COSIGNER_BIN,
      'coordinator',
      '--config',
      join(dir, 'coordinator', 'coordinator.yaml'),
      '--data-dir',
      join(dir, 'coordinator-b'),
      '--port',
      '0',
      '--ready-file',
      readyFile,
    ],
    { cwd: REPO_ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  proc.stdout?.on('data', (d: Buffer) => out.push(d.toString()));
  proc.stderr?.on('data', (d: Buffer) => out.push(d.toString()));
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`replica b exited before it was ready:\n${out.join('')}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`replica b not ready in time:\n${out.join('')}`);
    }
    try {
      const ready = JSON.parse(await readFile(readyFile, 'utf8')) as { url: string };
      proc.on('exit', () => writeFileSync(log, out.join('')));
      return { url: ready.url, proc };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** CPU seconds of every process of the PostgreSQL server: the postmaster (postmaster.pid) and its children. */
function postgresCpu(db: PostgresServer): number {
  try {
    const pid = Number(readFileSync(join(db.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    let kids: number[] = [];
    try {
      kids = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .map(Number);
    } catch {
      // pgrep exits 1 when it lists nothing
    }
    return [pid, ...kids].filter((p) => p > 0).reduce((sum, p) => sum + cpuSeconds(p), 0);
  } catch {
    return Number.NaN;
  }
}

interface RunResult {
  variant: Variant;
  round: number;
  c1: { p50Ms: number; p90Ms: number; p99Ms: number; samples: number };
  proposalsPerSecond: number;
  cpuMsPerProposal: { coordinators: number; postgres: number | null };
  loadavg: number[];
}

async function runVariant(variant: Variant, round: number, db: PostgresServer | undefined): Promise<RunResult> {
  const dir = await tempDir(`cosigner-bench-store-${variant}-`);
  let replica: { url: string; proc: ChildProcess } | undefined;
  let replicaStarting: Promise<{ url: string; proc: ChildProcess }> | undefined;
  const coordinatorConfig: Record<string, unknown> = {
    limits: { ratePerSecond: 100_000, rateBurst: 100_000, nodeFramesPerSecond: 100_000, nodeFrameBurst: 100_000 },
    logLevel: 'warn',
  };
  if (variant !== 'sqlite') {
    if (!db) throw new Error('no PostgreSQL server');
    const url = await db.createDatabase(`bench_${variant}_${round}_${randomBytes(3).toString('hex')}`);
    const passwordFile = join(dir, 'db.password');
    await writeFile(passwordFile, `${db.password}\n`, { mode: 0o600 });
    coordinatorConfig.store = { type: 'postgres', url, passwordFile, tls: { mode: 'disable' } };
    // Shared by the replicas: the admin key (the message key file is already the launcher's absolute path).
    coordinatorConfig.adminKeyFile = join(dir, 'admin.key');
  }
  const cluster = await startCluster({
    cosignerBin: COSIGNER_BIN,
    dir,
    nodes: 3,
    threshold: 2,
    closeMs: 200,
    readyTimeoutMs: 180_000,
    coordinatorConfig,
    nodeConfig: { limits: { framesPerSecond: 100_000, frameBurst: 100_000 } },
    ...(variant === 'pg2'
      ? {
          // Called per node once the first coordinator runs: the second starts then, and every node dials both.
          nodeCoordinatorUrl: async (_id: string, socketUrl: string) => {
            replicaStarting ??= startReplica(dir, join(dir, 'coordinator-b.log'));
            replica = await replicaStarting;
            return [socketUrl, nodeSocketUrl(replica.url)];
          },
        }
      : {}),
  });
  const urls = [cluster.coordinator.url, ...(replica ? [replica.url] : [])];
  const coordinatorPids = (): number[] => [cluster.coordinator.pid, ...(replica?.proc.pid ? [replica.proc.pid] : [])];
  const client = new ProposalClient(urls, cluster.apiKey);
  try {
    await client.open();
    if (replica) await waitForNodesOn(replica.url, cluster.apiKey, 3);
    const dest = await cluster.fundedAccount();
    const seq = BigInt((await cluster.horizon.loadAccount(cluster.account.id)).sequenceNumber());
    let nextSeq = seq + 1_000_000n;
    const take = (count: number): string[] => {
      const p = payments(cluster, dest.publicKey(), nextSeq, count);
      nextSeq += BigInt(count);
      return p;
    };
    for (const xdr of take(30)) await client.propose(xdr);
    const lat: number[] = [];
    for (const xdr of take(N_LATENCY)) lat.push((await client.propose(xdr))[1]);
    lat.sort((a, b) => a - b);

    const pool = take(Math.ceil(((WARMUP_MS + WINDOW_MS) / 1000) * 800) + C);
    const draw = drawFrom(pool);
    const cpu = () => ({
      coord: coordinatorPids().reduce((s, p) => s + cpuSeconds(p), 0),
      pg: db && variant !== 'sqlite' ? postgresCpu(db) : Number.NaN,
    });
    const { completed, windowMs, before, after } = await measureWindow({
      concurrency: C,
      warmupMs: WARMUP_MS,
      windowMs: WINDOW_MS,
      propose: () => client.propose(draw()),
      sample: cpu,
    });
    const per = (x: number): number => round2((x * 1000) / Math.max(1, completed));
    return {
      variant,
      round,
      c1: {
        p50Ms: round1(pct(lat, 50)),
        p90Ms: round1(pct(lat, 90)),
        p99Ms: round1(pct(lat, 99)),
        samples: lat.length,
      },
      proposalsPerSecond: Math.round((completed * 1000) / windowMs),
      cpuMsPerProposal: {
        coordinators: per(after.coord - before.coord),
        postgres: Number.isFinite(after.pg) ? per(after.pg - before.pg) : null,
      },
      loadavg: load(),
    };
  } finally {
    client.close();
    if (replica) {
      replica.proc.kill('SIGTERM');
      await new Promise((r) => (replica?.proc.exitCode !== null ? r(null) : replica.proc.once('exit', r)));
    }
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Until the replica has a live session with every node (GET /v1/nodes), so its first proposals are not refused. */
async function waitForNodesOn(url: string, apiKey: string, n: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await fetch(`${url}/v1/nodes`, { headers: { authorization: `Bearer ${apiKey}` } });
    const body = (await r.json()) as { nodes?: { connected?: boolean }[] };
    if ((body.nodes ?? []).filter((x) => x.connected).length >= n) return;
    if (Date.now() > deadline) throw new Error(`replica ${url}: nodes not connected in time`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

console.log(useBuiltJs());
const db = VARIANTS.some((v) => v !== 'sqlite') ? await startPostgres() : undefined;
const runs: RunResult[] = [];
try {
  for (let r = 1; r <= ROUNDS; r++) {
    for (const v of VARIANTS) {
      const res = await runVariant(v, r, db);
      runs.push(res);
      console.log(
        `round ${r} ${LABEL[v].padEnd(7)} c=1 p50 ${res.c1.p50Ms} ms p90 ${res.c1.p90Ms} ms | c=${C} ${res.proposalsPerSecond}/s | CPU ms/proposal coordinator(s) ${res.cpuMsPerProposal.coordinators}${res.cpuMsPerProposal.postgres === null ? '' : `, postgres ${res.cpuMsPerProposal.postgres}`} | loadavg ${res.loadavg.join(' ')}`,
      );
    }
  }
} finally {
  await db?.close();
}

console.log(`\nmedians of ${ROUNDS} alternating round(s), 2-of-3 cluster, dist/:`);
console.log(
  '| store | c=1 p50 to signed | c=1 p90 | proposals/s, c=' +
    C +
    ' | coordinator CPU ms/proposal | PostgreSQL CPU ms/proposal |',
);
console.log('| --- | --- | --- | --- | --- | --- |');
const summary: Record<string, unknown> = {};
for (const v of VARIANTS) {
  const rs = runs.filter((x) => x.variant === v);
  const pg = rs.map((x) => x.cpuMsPerProposal.postgres).filter((x): x is number => x !== null);
  const row = {
    c1P50Ms: round1(median(rs.map((x) => x.c1.p50Ms))),
    c1P90Ms: round1(median(rs.map((x) => x.c1.p90Ms))),
    proposalsPerSecond: Math.round(median(rs.map((x) => x.proposalsPerSecond))),
    coordinatorCpuMs: round2(median(rs.map((x) => x.cpuMsPerProposal.coordinators))),
    postgresCpuMs: pg.length ? round2(median(pg)) : null,
  };
  summary[v] = row;
  console.log(
    `| ${LABEL[v]} | ${row.c1P50Ms} ms | ${row.c1P90Ms} ms | ${row.proposalsPerSecond} | ${row.coordinatorCpuMs} | ${row.postgresCpuMs ?? '-'} |`,
  );
}
mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
writeFileSync(
  join(REPO_ROOT, 'bench/results/store.json'),
  `${JSON.stringify({ at: new Date().toISOString(), rounds: ROUNDS, c: C, windowMs: WINDOW_MS, runs, summary }, null, 2)}\n`,
);

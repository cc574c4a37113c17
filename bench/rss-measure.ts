/**
 * Peak RSS (VmHWM) and start-up of the cluster's processes, children run through tsx or from dist/ (the driver behind
 * bench/README.md "Build"; not part of `pnpm bench`). Run `pnpm build` first for dist.
 *
 *   pnpm exec tsx bench/rss-measure.ts <tsx|dist> [nodeSemiSpaceMb]      # one JSON line on stdout
 *
 * 1. a KMS emulator and the ledger simulator alone, spawn to ready file, median of 3 each;
 * 2. a 2-of-3 cluster (startCluster): its start time, every process's VmHWM/VmRSS 3 s after it is up (idle), then
 *    after LOAD_MS (default 8000) of signed-only proposals from C (default 16) clients, with the rate and the CPU
 *    ms per proposal of each process. `nodeSemiSpaceMb` adds --max-semi-space-size to the nodes only.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Account, Asset, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import WebSocket from 'ws';
import { cpuSeconds, memoryMb } from './proc.ts';

const mode = process.argv[2] === 'dist' ? 'dist' : 'tsx';
const semi = process.argv[3];
const base = process.env.NODE_OPTIONS ?? '';
const opts = mode === 'dist' ? `${base} --conditions=cosigner-dist`.trim() : base;
const LOAD_MS = Number(process.env.LOAD_MS ?? 8000);
const C = Number(process.env.C ?? 16);

const status = (pid: number): { hwm: number; rss: number } => {
  const m = memoryMb(pid);
  return { hwm: m?.peak ?? 0, rss: m?.rss ?? 0 };
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// 1. One process alone, spawn to ready file: a KMS emulator and the ledger simulator, 3 times each.
const alone: Record<string, number> = {};
for (const cmd of ['kms-emulator', 'ledger-sim']) {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const dir = await tempDir('rss-alone-');
    const t0 = performance.now();
    const p = await startCosignerProcess({
      args: [cmd, '--data-dir', dir, ...(cmd === 'kms-emulator' ? ['--accounts', '1'] : [])],
      env: { NODE_OPTIONS: opts },
      readyTimeoutMs: 60_000,
    });
    times.push(performance.now() - t0);
    await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
  alone[cmd] = Math.round(median(times));
}

// 2. A 2-of-3 cluster: start time, idle peak, then LOAD_MS of signed-only proposals at c=16, then the peak again.
const dir = await tempDir('rss-cluster-');
process.env.NODE_OPTIONS = opts;
const t0 = performance.now();
const cluster: Cluster = await startCluster({
  cosignerBin: COSIGNER_BIN,
  dir,
  nodes: 3,
  threshold: 2,
  readyTimeoutMs: 180_000,
  coordinatorConfig: {
    limits: { ratePerSecond: 100_000, rateBurst: 100_000, nodeFramesPerSecond: 100_000, nodeFrameBurst: 100_000 },
  },
  nodeConfig: { limits: { framesPerSecond: 100_000, frameBurst: 100_000 } },
  ...(semi ? { nodeEnv: { NODE_OPTIONS: `${opts} --max-semi-space-size=${semi}` } } : {}),
});
const startMs = Math.round(performance.now() - t0);
process.env.NODE_OPTIONS = base;
const procs = [cluster.kms[0]!, cluster.ledger, cluster.coordinator, ...cluster.nodes];
await new Promise((r) => setTimeout(r, 3000));
const idle = Object.fromEntries(procs.map((p) => [p.name, status(p.pid)]));

const url = new URL(cluster.coordinator.url);
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const waiting = new Map<string, () => void>();
const early = new Set<string>();
const ws = new WebSocket(new URL('/v1/events', url), { headers: { authorization: `Bearer ${cluster.apiKey}` } });
await new Promise((res, rej) => {
  ws.once('open', res);
  ws.once('error', rej);
});
ws.on('message', (d: Buffer) => {
  const e = JSON.parse(d.toString()) as { proposalId: string | null; type: string };
  if (!e.proposalId || e.type !== 'quorum.reached') return;
  const w = waiting.get(e.proposalId);
  if (w) {
    waiting.delete(e.proposalId);
    w();
  } else early.add(e.proposalId);
});
const post = (body: string): Promise<string> =>
  new Promise((res, rej) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: '/v1/proposals',
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          authorization: `Bearer ${cluster.apiKey}`,
        },
      },
      (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          if (r.statusCode !== 201) rej(new Error(`POST ${r.statusCode}: ${text}`));
          else res((JSON.parse(text) as { id: string }).id);
        });
      },
    );
    req.on('error', rej);
    req.end(body);
  });
const dest = await cluster.fundedAccount();
const info = await cluster.horizon.loadAccount(cluster.account.id);
const account = new Account(cluster.account.id, (BigInt(info.sequenceNumber()) + 1_000_000n).toString());
const tx = (): string =>
  new TransactionBuilder(account, { fee: '100', networkPassphrase: cluster.networkPassphrase })
    .addOperation(Operation.payment({ destination: dest.publicKey(), asset: Asset.native(), amount: '0.0000001' }))
    .setTimeout(240)
    .build()
    .toXDR();
const cpu0 = procs.map((p) => cpuSeconds(p.pid));
const loadStart = performance.now();
let done = 0;
await Promise.all(
  Array.from({ length: C }, async () => {
    while (performance.now() - loadStart < LOAD_MS) {
      const id = await post(
        JSON.stringify({ xdr: tx(), submit: false, idempotencyKey: randomBytes(12).toString('hex') }),
      );
      if (early.delete(id)) {
        done++;
        continue;
      }
      await new Promise<void>((r) => waiting.set(id, r));
      done++;
    }
  }),
);
const loadSeconds = (performance.now() - loadStart) / 1000;
const cpu = procs.map((p, i) => Math.round(((cpuSeconds(p.pid) - cpu0[i]!) * 1000) / done));
const loaded = Object.fromEntries(procs.map((p) => [p.name, status(p.pid)]));
ws.close();
agent.destroy();
await cluster.stop();
await rm(dir, { recursive: true, force: true });

console.log(
  JSON.stringify({
    mode,
    nodeSemiSpaceMb: semi ?? 'default',
    aloneStartMs: alone,
    clusterStartMs: startMs,
    idle,
    afterLoad: loaded,
    proposals: done,
    perSecond: Math.round(done / loadSeconds),
    cpuMsPerProposal: Object.fromEntries(procs.map((p, i) => [p.name, cpu[i]])),
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
  }),
);

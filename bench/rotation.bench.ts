/**
 * Time to rotate one node's signing key end to end, on real processes: the launcher's 2-of-3 cluster
 * (packages/testkit startCluster: one KMS emulator per node, the ledger simulator, the coordinator, 3 nodes), the
 * nodes' policy opened to signer changes on the cluster's accounts for keys on their rosters (as in
 * test/e2e/lifecycle.test.ts), and `cosigner rotate` run as a child process exactly as an operator runs it.
 * Run: `pnpm bench rotation` (or `pnpm exec tsx bench/rotation.bench.ts`). Prints figures, writes
 * bench/results/rotation.json. Never run by tests (no timing assertions anywhere).
 *
 * Per rotation (BENCH_ROTATIONS, default 3: node-1, node-2, node-0, ...):
 * - total wall time of the `cosigner rotate` process, from spawn to exit (tsx start-up included);
 * - time of each step (key-created, prepared, roster, added, registry, switched, old-disabled, removed,
 *   deletion-scheduled), from the `[rotate] <step>` lines the command prints as it records each step;
 * - with BENCH_STREAM=1 (the default): a background stream of payments from the second operator account, one after
 *   another (proposal -> submitted, applied by the ledger simulator), measured before the rotations (baseline) and
 *   during them; every payment must end `submitted`, the count of the others is printed.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { signerChangePolicy } from '@cosigner/testkit/policy';
import { COSIGNER_BIN, REPO_ROOT, tempDir } from '@cosigner/testkit/process';
import { Asset, Operation, TransactionBuilder } from '@stellar/stellar-sdk';

const ROTATIONS = Number(process.env.BENCH_ROTATIONS ?? 3);
const STREAM = (process.env.BENCH_STREAM ?? '1') !== '0';
const BASELINE_MS = Number(process.env.BENCH_BASELINE_MS ?? 8000);

const round1 = (x: number): number => Math.round(x * 10) / 10;
const load = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);

interface Latency {
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

function summarize(samples: number[]): Latency {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return { n: s.length, p50Ms: round1(at(0.5)), p99Ms: round1(at(0.99)), maxMs: round1(s.at(-1) ?? Number.NaN) };
}

async function post(url: string, body: unknown): Promise<void> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`POST ${url}: ${r.status} ${await r.text()}`);
}

interface KmsAccountsFile {
  accounts: { region: string; principals: { role: string; accessKeyId: string; secretAccessKey: string }[] }[];
}

/** The emulator's admin principal (CreateKey, DisableKey, ScheduleKeyDeletion): the operator's credentials. */
function kmsAdmin(c: Cluster, i: number): { region: string; env: NodeJS.ProcessEnv } {
  const acct = (JSON.parse(readFileSync(String(c.kms[i]!.ready.accountsFile), 'utf8')) as KmsAccountsFile).accounts[0]!;
  const admin = acct.principals.find((p) => p.role === 'admin')!;
  return {
    region: acct.region,
    env: {
      AWS_ACCESS_KEY_ID: admin.accessKeyId,
      AWS_SECRET_ACCESS_KEY: admin.secretAccessKey,
      AWS_REGION: acct.region,
    },
  };
}

interface RotationRun {
  node: string;
  totalMs: number;
  /** From the `started` line to the last step: the rotation itself, without the CLI's start-up. */
  afterStartMs: number;
  /** Each step's duration: from the previous step's line (or the spawn, for `started`) to its own line. */
  stepsMs: Record<string, number>;
  exitCode: number | null;
}

/** `cosigner rotate ...` as a child process; each `[rotate] <step>` line is stamped as it arrives. */
function runRotate(args: string[], env: NodeJS.ProcessEnv): Promise<RotationRun & { out: string }> {
  return new Promise((res) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [COSIGNER_BIN, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, NODE_ENV: 'development', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let buf = '';
    let last = t0;
    const stepsMs: Record<string, number> = {};
    p.stdout.on('data', (d: Buffer) => {
      const now = performance.now();
      out += d.toString();
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = /^\[rotate\] ([a-z-]+)(?: \(|$)/.exec(line);
        if (m) {
          stepsMs[m[1]!] = round1(now - last);
          last = now;
        }
      }
    });
    p.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const node = args[args.indexOf('--node') + 1]!;
    p.once('exit', (code) => {
      const totalMs = round1(performance.now() - t0);
      const afterStartMs = round1(last - t0 - (stepsMs.started ?? 0));
      res({ node, totalMs, afterStartMs, stepsMs, exitCode: code, out });
    });
  });
}

const machine = {
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  loadavgAtStart: load(),
  date: new Date().toISOString(),
};
console.log(
  `rotation bench on ${machine.cpu} (${machine.cores} cores), node ${machine.node}, loadavg ${machine.loadavgAtStart.join(' ')}`,
);

const dir = await tempDir('cosigner-bench-rotation-');
const cluster = await startCluster({
  cosignerBin: COSIGNER_BIN,
  dir,
  nodes: 3,
  threshold: 2,
  operatorAccounts: 2,
  nodePolicy: ({ network, accounts }) => signerChangePolicy({ network, accounts, dailyMax: '100000000' }),
});

const runs: RotationRun[] = [];
let baseline: Latency | undefined;
let during: Latency | undefined;
let streamStatuses: Record<string, number> = {};
try {
  const [a, b] = cluster.operatorAccounts as [string, string];
  for (const n of cluster.nodes) {
    for (const x of cluster.nodeInfo)
      await post(`${n.url}/v1/roster`, { address: x.stellarKey, nodeId: x.id, by: 'bench' });
  }
  const dest = await cluster.fundedAccount();

  // The payment stream: from B, one at a time (one sequence number per ledger), for as long as `phase` says.
  let phase = 'baseline' as 'baseline' | 'during' | 'stop';
  const samples: { baseline: number[]; during: number[] } = { baseline: [], during: [] };
  const statuses: Record<string, number> = {};
  const stream = STREAM
    ? (async () => {
        let n = 0;
        while (phase !== 'stop') {
          const at = phase;
          const src = await cluster.horizon.loadAccount(b);
          const xdr = new TransactionBuilder(src, { fee: '100', networkPassphrase: cluster.networkPassphrase })
            .addOperation(Operation.payment({ destination: dest.publicKey(), asset: Asset.native(), amount: '1' }))
            .setTimeout(120)
            .build()
            .toXDR();
          const t0 = performance.now();
          const p = await cluster.propose({ xdr, note: `stream ${n++}` });
          const end = await cluster.waitForProposal(p.id, { timeoutMs: 60_000 });
          statuses[end.status] = (statuses[end.status] ?? 0) + 1;
          if (end.status === 'submitted') samples[at].push(performance.now() - t0);
        }
      })()
    : Promise.resolve();
  if (STREAM) {
    await new Promise((r) => setTimeout(r, BASELINE_MS));
    phase = 'during';
  }

  for (let i = 0; i < ROTATIONS; i++) {
    const k = (i + 1) % 3;
    const kms = kmsAdmin(cluster, k);
    const r = await runRotate(
      [
        'rotate',
        ...['--horizon-url', cluster.horizonUrl, '--coordinator-url', cluster.coordinator.url],
        ...['--api-key-file', cluster.adminKeyFile, '--node', `node-${k}`],
        ...['--account', a, '--account', b, '--tx-source', a, '--admin-url', cluster.nodes[k]!.url],
        '--peer-admin-url',
        ...cluster.nodes.filter((_, j) => j !== k).map((n) => n.url),
        ...['--state-dir', join(dir, 'rotate', String(i)), '--backend', 'aws-kms'],
        ...['--kms-endpoint', cluster.kms[k]!.url, '--region', kms.region, '--pending-window-days', '7'],
      ],
      kms.env,
    );
    if (r.exitCode !== 0) {
      console.error(r.out);
      throw new Error(`rotate node-${k} exited ${r.exitCode}`);
    }
    const { out: _out, ...run } = r;
    runs.push(run);
    console.log(
      `rotation ${i + 1}: node-${k} ${(r.totalMs / 1000).toFixed(2)} s (after start-up ${(r.afterStartMs / 1000).toFixed(2)} s)  ` +
        Object.entries(r.stepsMs)
          .map(([s, ms]) => `${s} ${Math.round(ms)}`)
          .join(', '),
    );
  }
  phase = 'stop';
  await stream;
  if (STREAM) {
    baseline = summarize(samples.baseline);
    during = summarize(samples.during);
    streamStatuses = statuses;
    console.log(
      `payment stream (proposal -> submitted): before ${baseline.n} p50 ${baseline.p50Ms} ms p99 ${baseline.p99Ms} ms; ` +
        `during rotations ${during.n} p50 ${during.p50Ms} ms p99 ${during.p99Ms} ms max ${during.maxMs} ms; ` +
        `ends: ${JSON.stringify(statuses)}`,
    );
  }
} finally {
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}

const totals = runs.map((r) => r.totalMs);
const steps = [...new Set(runs.flatMap((r) => Object.keys(r.stepsMs)))];
const medianStep = Object.fromEntries(
  steps.map((s) => [s, summarize(runs.map((r) => r.stepsMs[s] ?? 0)).p50Ms] as const),
);
const total = summarize(totals);
const afterStart = summarize(runs.map((r) => r.afterStartMs));
const secs = (ms: number): string => (ms / 1000).toFixed(2);
console.log(
  `\nrotate one node end to end: median ${secs(total.p50Ms)} s over ${total.n} (max ${secs(total.maxMs)} s); ` +
    `after the CLI's start-up: median ${secs(afterStart.p50Ms)} s (max ${secs(afterStart.maxMs)} s)`,
);
console.log(`median per step (ms): ${steps.map((s) => `${s} ${Math.round(medianStep[s]!)}`).join(', ')}`);

const results = {
  machine: { ...machine, loadavgAtEnd: load() },
  settings: { rotations: ROTATIONS, stream: STREAM, baselineMs: BASELINE_MS, nodes: 3, threshold: 2 },
  rotateTotal: total,
  rotateAfterStart: afterStart,
  medianStepMs: medianStep,
  runs,
  ...(STREAM ? { stream: { baseline, during, ends: streamStatuses } } : {}),
  notes:
    'Total = spawn to exit of `cosigner rotate`, its start-up (`started`: tsx loading the CLI, the AWS and Stellar ' +
    'SDKs, then reading the keyring and the account) included; afterStart = from that line to the last step. Steps are timed from the ' +
    "command's own step lines. The two setOptions proposals wait for ledger closes (200 ms interval). All " +
    'processes share the machine (see loadavg).',
};
mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(REPO_ROOT, 'bench/results/rotation.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\nwrote bench/results/rotation.json');

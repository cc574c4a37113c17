/**
 * `pnpm bench memory`: where each role's memory goes. Children run dist/ (the production way: scripts/build.ts
 * first) with bench/memory-probe.mjs preloaded, which reports process.memoryUsage(), V8's heap spaces and the
 * modules loaded per package (see that file).
 *
 * Default mode, a 2-of-3 cluster from the launcher's startCluster (the same harness as the cluster bench):
 * 1. at rest, MEM_REST_MS (default 3000) after every process is ready: RSS, heap used / total, modules;
 * 2. MEM_LOAD_MS (default 8000) of signed-only proposals from MEM_C (default 64) clients, then per process the peak
 *    RSS (VmHWM from /proc, which sees between samples), the peak heap used / total the probe sampled every 100 ms,
 *    and the CPU ms per proposal (so a setting that trades memory for CPU shows both).
 *    MEM_RATE=<n> starts n proposals per second (open loop, at most MEM_C in flight) instead of back to back, so
 *    two settings compare at the same rate: CPU per proposal falls as the rate rises.
 *    MEM_NODE_FLAGS adds V8/Node flags to the nodes only, MEM_FLAGS to every child (e.g. --max-semi-space-size=4).
 * 3. MEM_SNAPSHOT=1: a heap snapshot of node-0 and of the coordinator at rest and after the load, summarised by
 *    bench/heap-summary.ts (what fills the heap) and kept as bench/results/memory-<phase>-<process>.heapsnapshot.
 * `imports` mode (`pnpm exec tsx bench/memory.bench.ts imports`): one plain node process per module set (what a
 * node imports before it serves, what the coordinator does, the Stellar SDK's root vs its `/base` entry), RSS and
 * heap after two full GCs, and the modules per package; no cluster.
 * Writes bench/results/memory.json (or memory-imports.json).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, REPO_ROOT, tempDir, useBuiltJs } from '@cosigner/testkit/process';
import { Account, Asset, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import WebSocket from 'ws';
import { print, summariseFile } from './heap-summary.ts';
import { cpuSeconds, memoryMb } from './proc.ts';

const PROBE = join(REPO_ROOT, 'bench/memory-probe.mjs');
const RESULTS = join(REPO_ROOT, 'bench/results');
const TARGETS = { node: 110, coordinator: 130 };

interface Probe {
  role: string;
  pid: number;
  now: Record<string, number>;
  peak: Record<string, number>;
  spaces: Record<string, { size: number; used: number }>;
  modules: number;
  byPackage: Record<string, number>;
  /** KB of source files per package: each module's source text stays in the heap as a string. */
  sourceKb?: Record<string, number>;
}

const top = (byPackage: Record<string, number>, n = 6): string =>
  Object.entries(byPackage)
    .slice(0, n)
    .map(([p, c]) => `${p} ${c}`)
    .join(', ');

// ---- imports mode: one module set per process, no cluster ----
if (process.argv[2] === 'imports') {
  console.log(useBuiltJs());
  const sets: { name: string; cwd: string; modules: string[] }[] = [
    { name: 'empty', cwd: 'services/cosigner', modules: [] },
    { name: 'stellar-sdk (root)', cwd: 'packages/stellar', modules: ['@stellar/stellar-sdk'] },
    { name: 'stellar-sdk/base', cwd: 'packages/stellar', modules: ['@stellar/stellar-sdk/base'] },
    {
      name: '@cosigner/stellar',
      cwd: 'packages/stellar',
      modules: ['@cosigner/stellar/decode', '@cosigner/stellar/verify'],
    },
    // A node's own modules before it opens its key backend (each backend is imported when configured).
    { name: 'node service', cwd: 'services/cosigner', modules: ['@cosigner/node/command', '@cosigner/node/server'] },
    // What `cosigner node start` loads with an aws-kms key (as in the cluster mode). The CLI's `node add|remove|
    // roster` (commands/membership, which loads the SDK root for Horizon) load only when asked for (apps/cli/src/
    // main.ts); the second set is what a node loaded before that.
    {
      name: 'node process, KMS',
      cwd: 'apps/cli',
      modules: [
        '@cosigner/cli/main',
        '@cosigner/node/command',
        '@cosigner/node/server',
        '@cosigner/keys/aws-kms/kms-signer',
      ],
    },
    {
      name: '  + membership',
      cwd: 'apps/cli',
      modules: [
        '@cosigner/cli/main',
        '@cosigner/node/command',
        '@cosigner/cli/commands/membership',
        '@cosigner/node/server',
        '@cosigner/keys/aws-kms/kms-signer',
      ],
    },
    {
      name: 'coordinator process',
      cwd: 'apps/cli',
      modules: ['@cosigner/cli/main', '@cosigner/coordinator/command', '@cosigner/coordinator/server'],
    },
  ];
  const out: Record<string, unknown>[] = [];
  const flags = (process.env.MEM_FLAGS ?? '').split(' ').filter(Boolean);
  for (const s of sets) {
    const dir = await tempDir('mem-imports-');
    const script = `for (const m of ${JSON.stringify(s.modules)}) await import(m); gc(); gc();
      const m = process.memoryUsage(); const mb = (n) => Math.round(n / 104857.6) / 10;
      console.log(JSON.stringify({ rss: mb(m.rss), heapUsed: mb(m.heapUsed), heapTotal: mb(m.heapTotal) }));`;
    const r = spawnSync(
      process.execPath,
      ['--expose-gc', '--conditions=cosigner-dist', '--import', PROBE, ...flags, '--input-type=module', '-e', script],
      { cwd: join(REPO_ROOT, s.cwd), env: { ...process.env, BENCH_MEMORY: dir, BENCH_MEMORY_ROLE: 'imports' } },
    );
    if (r.status !== 0) throw new Error(`${s.name}: ${r.stderr}`);
    const after = JSON.parse(r.stdout.toString().trim().split('\n').at(-1)!) as Record<string, number>;
    const probe = JSON.parse(readFileSync(join(dir, readdirSync(dir)[0]!), 'utf8')) as Probe;
    await rm(dir, { recursive: true, force: true });
    const sourceMb = Math.round(Object.values(probe.sourceKb ?? {}).reduce((a, b) => a + b, 0) / 102.4) / 10;
    out.push({ name: s.name, ...after, modules: probe.modules, sourceMb, byPackage: probe.byPackage });
    console.log(
      `${s.name.padEnd(20)} RSS ${String(after.rss).padStart(6)} MB  heap used ${String(after.heapUsed).padStart(5)} / total ${String(after.heapTotal).padStart(5)} MB  modules ${String(probe.modules).padStart(5)} (${String(sourceMb).padStart(4)} MB source)  (${top(probe.byPackage)})`,
    );
  }
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(
    join(RESULTS, 'memory-imports.json'),
    `${JSON.stringify({ node: process.version, flags, sets: out }, null, 2)}\n`,
  );
  process.exit(0);
}

// ---- cluster mode ----
const REST_MS = Number(process.env.MEM_REST_MS ?? 3000);
const LOAD_MS = Number(process.env.MEM_LOAD_MS ?? 8000);
const C = Number(process.env.MEM_C ?? 64);
/** MEM_RATE: proposals start on a fixed schedule (per second) instead of back to back; 0 = as fast as they go. */
const RATE = Number(process.env.MEM_RATE ?? 0);
const FLAGS = process.env.MEM_FLAGS ?? '';
const NODE_FLAGS = process.env.MEM_NODE_FLAGS ?? '';
const SNAPSHOT = process.env.MEM_SNAPSHOT === '1';
if (SNAPSHOT) process.env.BENCH_MEMORY_SNAPSHOT = '1';

console.log(useBuiltJs());
const probeDir = await tempDir('mem-probe-');
process.env.BENCH_MEMORY = probeDir;
const childOptions = `${process.env.NODE_OPTIONS ?? ''} --import ${PROBE} ${FLAGS}`.trim();
const base = process.env.NODE_OPTIONS ?? '';
process.env.NODE_OPTIONS = childOptions;
const dir = await tempDir('mem-cluster-');
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
  ...(NODE_FLAGS ? { nodeEnv: { NODE_OPTIONS: `${childOptions} ${NODE_FLAGS}` } } : {}),
});
process.env.NODE_OPTIONS = base;
const procs = [cluster.kms[0]!, cluster.ledger, cluster.coordinator, ...cluster.nodes];
/** From /proc/<pid>/status: resident anonymous memory (heap, malloc, SQLite's page cache) vs file-backed (the node
 * binary and shared libraries, shared with every other node process on the machine), in MB, and the thread count. */
const procStatus = (pid: number): { anon: number; file: number; threads: number } | null => {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
    return {
      anon: Math.round(kb('RssAnon') / 102.4) / 10,
      file: Math.round(kb('RssFile') / 102.4) / 10,
      threads: kb('Threads'),
    };
  } catch {
    return null;
  }
};
/** Ask node-0 and the coordinator for a heap snapshot (the probe writes it on SIGUSR2), keep and summarise it. */
const snapshots: Record<string, unknown> = {};
const snapshot = async (phase: string): Promise<void> => {
  if (!SNAPSHOT) return;
  for (const p of [cluster.nodes[0]!, cluster.coordinator]) {
    const written = (): string | undefined =>
      readdirSync(probeDir).find((f) => f.startsWith(`${p.pid}-`) && f.endsWith('.heapsnapshot'));
    process.kill(p.pid, 'SIGUSR2');
    const deadline = Date.now() + 60_000;
    while (!written()) {
      if (Date.now() > deadline) throw new Error(`no heap snapshot from ${p.name}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const from = join(probeDir, written()!);
    const to = join(RESULTS, `memory-${phase}-${p.name}.heapsnapshot`);
    mkdirSync(RESULTS, { recursive: true });
    renameSync(from, to);
    const s = summariseFile(to);
    snapshots[`${phase}/${p.name}`] = s;
    print(`${p.name}, ${phase}`, s);
  }
};
const probes = (): Map<number, Probe> => {
  const m = new Map<number, Probe>();
  for (const f of readdirSync(probeDir)) {
    try {
      const p = JSON.parse(readFileSync(join(probeDir, f), 'utf8')) as Probe;
      m.set(p.pid, p);
    } catch {
      // Caught mid-write: the next read has it.
    }
  }
  return m;
};
await new Promise((r) => setTimeout(r, REST_MS));
const restProbes = probes();
const rest = Object.fromEntries(
  procs.map((p) => {
    const pr = restProbes.get(p.pid);
    return [
      p.name,
      {
        rss: memoryMb(p.pid)?.rss ?? null,
        startPeakRss: memoryMb(p.pid)?.peak ?? null,
        ...procStatus(p.pid),
        heapUsed: pr?.now.heapUsed ?? null,
        heapTotal: pr?.now.heapTotal ?? null,
        newSpace: pr?.spaces.new_space?.size ?? null,
        spaces: pr?.spaces ?? null,
        modules: pr?.modules ?? null,
        topPackages: pr ? top(pr.byPackage, 4) : '',
      },
    ];
  }),
);

await snapshot('rest');

// Load: signed-only proposals from C clients, each waiting for its quorum.reached event (as the cluster bench does).
const url = new URL(cluster.coordinator.url);
const agent = new Agent({ keepAlive: true, maxSockets: C });
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
let slot = 0;
await Promise.all(
  Array.from({ length: C }, async () => {
    while (performance.now() - loadStart < LOAD_MS) {
      if (RATE > 0) {
        // Open loop: a setting that costs CPU shows it as CPU per proposal at the same rate, not as a lower rate.
        const wait = loadStart + (slot++ * 1000) / RATE - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (performance.now() - loadStart >= LOAD_MS) break;
      }
      const id = await post(
        JSON.stringify({ xdr: tx(), submit: false, idempotencyKey: randomBytes(12).toString('hex') }),
      );
      if (!early.delete(id)) await new Promise<void>((r) => waiting.set(id, r));
      done++;
    }
  }),
);
const loadSeconds = (performance.now() - loadStart) / 1000;
await new Promise((r) => setTimeout(r, 600)); // one more probe write after the last proposal
const loadProbes = probes();
const loaded = Object.fromEntries(
  procs.map((p, i) => {
    const pr = loadProbes.get(p.pid);
    return [
      p.name,
      {
        peakRss: memoryMb(p.pid)?.peak ?? null,
        peakHeapUsed: pr?.peak.heapUsed ?? null,
        peakHeapTotal: pr?.peak.heapTotal ?? null,
        // Off the V8 heap: Buffers and ArrayBuffers (ws frames, HTTP bodies, the KMS client's), peak as sampled.
        peakExternal: pr?.peak.external ?? null,
        // After the load: anonymous RSS not in the V8 heap (malloc: SQLite's page cache, Buffers, threads' arenas).
        nativeAfter: (() => {
          const st = procStatus(p.pid);
          const heap = pr?.now.heapTotal;
          return st && heap !== undefined ? Math.round((st.anon - heap) * 10) / 10 : null;
        })(),
        cpuMsPerProposal: done > 0 ? Math.round(((cpuSeconds(p.pid) - cpu0[i]!) * 100_000) / done) / 100 : null,
      },
    ];
  }),
);
await snapshot('load');
ws.close();
agent.destroy();
await cluster.stop();
await rm(dir, { recursive: true, force: true });
await rm(probeDir, { recursive: true, force: true });

const result = {
  node: process.version,
  flags: FLAGS,
  nodeFlags: NODE_FLAGS,
  clients: C,
  proposals: done,
  perSecond: Math.round(done / loadSeconds),
  loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
  rest,
  loaded,
  ...(SNAPSHOT ? { snapshots } : {}),
};
mkdirSync(RESULTS, { recursive: true });
writeFileSync(join(RESULTS, 'memory.json'), `${JSON.stringify(result, null, 2)}\n`);

const cell = (v: number | null | undefined, w: number): string => String(v ?? '-').padStart(w);
console.log(
  `\n2-of-3 cluster, children from dist/, flags '${FLAGS}', node flags '${NODE_FLAGS}', c=${C}${RATE > 0 ? ` at ${RATE}/s` : ''}: ${done} proposals, ${result.perSecond}/s, load average ${result.loadavg.join(' ')}`,
);
console.log(
  `${'process'.padEnd(14)} | at rest: ${'RSS'.padStart(6)} ${'heap'.padStart(6)} ${'total'.padStart(6)} ${'new sp'.padStart(6)} ${'mods'.padStart(5)} ${'anon'.padStart(6)} ${'file'.padStart(5)} ${'thr'.padStart(3)} | under load: ${'peak RSS'.padStart(8)} ${'heap'.padStart(6)} ${'total'.padStart(6)} ${'extern'.padStart(6)} ${'native'.padStart(6)} ${'CPU ms/prop'.padStart(11)}`,
);
for (const p of procs) {
  const r = rest[p.name]!;
  const l = loaded[p.name]!;
  console.log(
    `${p.name.padEnd(14)} |          ${cell(r.rss, 6)} ${cell(r.heapUsed, 6)} ${cell(r.heapTotal, 6)} ${cell(r.newSpace, 6)} ${cell(r.modules, 5)} ${cell(r.anon, 6)} ${cell(r.file, 5)} ${cell(r.threads, 3)} |             ${cell(l.peakRss, 8)} ${cell(l.peakHeapUsed, 6)} ${cell(l.peakHeapTotal, 6)} ${cell(l.peakExternal, 6)} ${cell(l.nativeAfter, 6)} ${cell(l.cpuMsPerProposal, 11)}`,
  );
}
const worst = (prefix: string): number =>
  Math.max(
    ...procs.filter((p) => p.name.startsWith(prefix)).map((p) => loaded[p.name]!.peakRss ?? Number.POSITIVE_INFINITY),
  );
for (const [role, prefix] of [
  ['node', 'node-'],
  ['coordinator', 'coordinator'],
] as const) {
  const got = worst(prefix);
  console.log(`peak RSS of each ${role} <= ${TARGETS[role]} MB: ${got} MB, ${got <= TARGETS[role] ? 'MET' : 'MISS'}`);
}

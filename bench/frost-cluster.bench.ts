/**
 * FROST against native signing, among real processes, in one run: a native 2-of-3 cluster (each node signs with
 * its KMS key, the envelope carries 2 signatures), a FROST 2-of-3 group and a FROST 14-of-20 group (t nodes make
 * one signature), each its own launcher cluster (KMS emulators, the ledger simulator, the coordinator, the nodes),
 * all three up at once and measured in alternation: round r measures each setup in turn, and the figures are the
 * medians over the rounds, so load from others on a shared machine falls on all three alike.
 * Run: `pnpm bench frost-cluster` (or `pnpm exec tsx bench/frost-cluster.bench.ts`). Prints figures, writes
 * bench/results/frost-cluster.json. Never run by tests (no timing assertions anywhere).
 *
 * Per setup and round:
 * - latency at concurrency 1: POST /v1/proposals (submit: false; with `group` for FROST) until `quorum.reached`
 *   arrives on the client event stream (/v1/events): the coordinator holds a verified, complete envelope;
 * - idle CPU: each role's CPU per second over BENCH_IDLE_MS (default 3000) with nothing in flight (heartbeats, timers,
 *   GC of 20 node processes add up), and the CPU per proposal less that rate: what a proposal itself costs;
 * - throughput with BENCH_CONCURRENCY (default 8) clients over a window after a warm-up: signed proposals per second,
 *   and CPU ms per proposal per role over the window (/proc/<pid>/stat): the coordinator, all nodes summed, and the
 *   KMS emulators summed. For FROST a proposal costs t nodes two exchanges each; the emulators see one Decrypt per
 *   node when its share is opened after two idle minutes, not per proposal.
 * Every proposal is a real payment from the setup's account with its own sequence number far above the account's,
 * so every node reviews it in full (policy, slot guard, signing ledger, for FROST the nonce record).
 *
 * Settings: BENCH_ROUNDS (default 3), BENCH_N (c=1 proposals per round, default 20), BENCH_WINDOW_MS (default
 * 8000), BENCH_WARMUP_MS (default 2000), BENCH_CONCURRENCY (default 8), BENCH_DIST (default 0: children through
 * tsx as tests run them; 1: `pnpm build`'s dist, as the image runs), BENCH_SETUPS (comma-separated names of the setups
 * to run, default all three: `BENCH_SETUPS='FROST 14-of-20'` while iterating), BENCH_PROFILE=<dir> (every child
 * profiled by V8's sampling profiler as in the cluster bench: `<pid>-<name>.cpuprofile` per process, read with
 * `pnpm exec tsx bench/profile-summary.ts <dir> --match coordinator --last S`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type Cluster, type ClusterProcess, demoPolicyYaml, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, REPO_ROOT, tempDir, useBuiltJs } from '@cosigner/testkit/process';
import { Account, Asset, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { measureWindow, ProposalClient } from './load.ts';
import { cpuSeconds } from './proc.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const N_LATENCY = Number(process.env.BENCH_N ?? 20);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 8000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 3000);
const DIST = process.env.BENCH_DIST === '1';
const PROFILE_DIR = process.env.BENCH_PROFILE ? resolve(process.env.BENCH_PROFILE) : undefined;

interface Setup {
  name: string;
  nodes: number;
  t: number;
  frost: boolean;
  cluster?: Cluster;
  /** The paying account, and the FROST group key when the setup signs with one. */
  account?: string;
  group?: string;
  nextSeq?: bigint;
  dest?: string;
}

const ALL_SETUPS: Setup[] = [
  { name: 'native 2-of-3', nodes: 3, t: 2, frost: false },
  { name: 'FROST 2-of-3', nodes: 3, t: 2, frost: true },
  { name: 'FROST 14-of-20', nodes: 20, t: 14, frost: true },
];
const chosen = process.env.BENCH_SETUPS?.split(',').map((x) => x.trim());
const SETUPS = chosen ? ALL_SETUPS.filter((s) => chosen.includes(s.name)) : ALL_SETUPS;
if (SETUPS.length === 0) throw new Error(`BENCH_SETUPS names none of: ${ALL_SETUPS.map((s) => s.name).join(', ')}`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)]!;
};
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
const r1 = (x: number): number => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One unsigned payment from the setup's account, with the next of its far-ahead sequence numbers. */
function payment(s: Setup): string {
  const seq = s.nextSeq!;
  s.nextSeq = seq + 1n;
  return new TransactionBuilder(new Account(s.account!, (seq - 1n).toString()), {
    fee: '100',
    networkPassphrase: s.cluster!.networkPassphrase,
  })
    .addOperation(Operation.payment({ destination: s.dest!, asset: Asset.native(), amount: '0.0000001' }))
    .setTimeout(240)
    .build()
    .toXDR();
}

async function start(s: Setup, root: string): Promise<void> {
  const frostAccount = Keypair.random();
  const dir = join(root, s.name.replace(/[^a-z0-9]+/gi, '-'));
  const cluster = await startCluster({
    cosignerBin: COSIGNER_BIN,
    dir,
    nodes: s.nodes,
    threshold: s.frost ? Math.min(2, s.nodes) : s.t,
    ...(s.nodes > 5 ? { kmsEmulators: Math.ceil(s.nodes / 5) } : {}),
    readyTimeoutMs: 900_000,
    coordinatorConfig: {
      limits: { ratePerSecond: 5000, rateBurst: 10_000, nodeFramesPerSecond: 5000, nodeFrameBurst: 10_000 },
      logLevel: 'warn',
    },
    nodeConfig: { limits: { framesPerSecond: 5000 }, logLevel: 'warn' },
    nodePolicy: ({ network, accounts }) =>
      demoPolicyYaml({ network, account: accounts[0]!, maxXlm: '1000', extraAccounts: [frostAccount.publicKey()] }),
    ...(s.frost
      ? {
          nodeConfigOf: async ({ nodes, kms }) => {
            const admin = new KMSClient({
              endpoint: kms.endpoint,
              region: kms.region,
              credentials: { accessKeyId: kms.admin.accessKeyId, secretAccessKey: kms.admin.secretAccessKey },
            });
            const made = await admin.send(
              new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }),
            );
            admin.destroy();
            const sealer = {
              type: 'aws-kms',
              keyId: made.KeyMetadata!.KeyId!,
              region: kms.region,
              endpoint: kms.endpoint,
              credentials: { accessKeyId: kms.node.accessKeyId, secretAccessKey: kms.node.secretAccessKey },
            };
            const roster = nodes.map((x) => ({ nodeId: x.id, identityKey: x.identityKey }));
            return { frost: { sealer, expect: [{ threshold: s.t, participants: roster }] } };
          },
        }
      : {}),
  });
  s.cluster = cluster;
  s.dest = (await cluster.fundedAccount()).publicKey();
  if (!s.frost) {
    s.account = cluster.account.id;
  } else {
    const api = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${cluster.coordinator.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${cluster.apiKey}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return (await r.json()) as Record<string, unknown>;
    };
    const { id } = (await api('POST', '/v1/frost/groups', {
      participants: cluster.nodeInfo.map((x) => x.id),
      threshold: s.t,
    })) as { id: string };
    let g: Record<string, unknown>;
    for (;;) {
      g = await api('GET', `/v1/frost/groups/${id}`);
      if (g.status !== 'running') break;
      await sleep(500);
    }
    if (g.status !== 'ready') throw new Error(`${s.name}: key generation ended ${JSON.stringify(g)}`);
    s.group = String(g.address);
    // The account: the group key its only signer (weight 1, thresholds 1, master weight 0).
    await fetch(`${cluster.horizonUrl}/friendbot?addr=${frostAccount.publicKey()}`);
    const tx = new TransactionBuilder(await cluster.horizon.loadAccount(frostAccount.publicKey()), {
      fee: '100',
      networkPassphrase: cluster.networkPassphrase,
    })
      .addOperation(
        Operation.setOptions({
          signer: { ed25519PublicKey: s.group, weight: 1 },
          lowThreshold: 1,
          medThreshold: 1,
          highThreshold: 1,
          masterWeight: 0,
        }),
      )
      .setTimeout(60)
      .build();
    tx.sign(frostAccount);
    await cluster.horizon.submitTransaction(tx);
    s.account = frostAccount.publicKey();
  }
  s.nextSeq = BigInt((await cluster.horizon.loadAccount(s.account)).sequenceNumber()) + 1_000_000n;
}

const procs = (c: Cluster): ClusterProcess[] => [c.coordinator, ...c.nodes, ...c.kms];
const role = (name: string): string => (name.startsWith('node-') ? 'nodes' : name.startsWith('kms-') ? 'kms' : name);

interface RoundFigures {
  p50Ms: number;
  p90Ms: number;
  proposalsPerSecond: number;
  cpuMsPerProposal: Record<string, number>;
  /** CPU ms per second of each role with no proposal in flight (heartbeats, timers, GC): paid whatever the load. */
  idleCpuMsPerSecond: Record<string, number>;
  /** cpuMsPerProposal less the idle rate over the window: the work a proposal itself costs. */
  netCpuMsPerProposal: Record<string, number>;
  loadavg: number[];
}

async function measure(s: Setup): Promise<RoundFigures> {
  const c = s.cluster!;
  const client = new ProposalClient([c.coordinator.url], c.apiKey);
  await client.open();
  try {
    const cpu = (): Map<string, number> => new Map(procs(c).map((p) => [p.name, cpuSeconds(p.pid)]));
    const byRole = (before: Map<string, number>, after: Map<string, number>): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const [name, v] of after) out[role(name)] = (out[role(name)] ?? 0) + v - (before.get(name) ?? v);
      return out;
    };
    // The idle rate first: with 20 node processes, what they spend with nothing to sign is a large part of the
    // CPU per proposal at a few proposals per second.
    const idle0 = cpu();
    const i0 = performance.now();
    await sleep(IDLE_MS);
    const idleS = (performance.now() - i0) / 1000;
    const idleCpuMsPerSecond = Object.fromEntries(
      Object.entries(byRole(idle0, cpu())).map(([k, v]) => [k, r1((v * 1000) / idleS)]),
    );
    const lat: number[] = [];
    for (let i = 0; i < N_LATENCY; i++) lat.push((await client.propose(payment(s), { group: s.group }))[1]);
    // Throughput: CONCURRENCY clients in a loop; CPU and completions counted over the window after the warm-up.
    const run = await measureWindow({
      concurrency: CONCURRENCY,
      warmupMs: WARMUP_MS,
      windowMs: WINDOW_MS,
      propose: () => client.propose(payment(s), { group: s.group }),
      sample: cpu,
    });
    const { completed, before, after } = run;
    const elapsed = run.windowMs;
    const spent = byRole(before, after);
    const cpuMsPerProposal = Object.fromEntries(
      Object.entries(spent).map(([k, v]) => [k, completed > 0 ? r1((v * 1000) / completed) : Number.NaN]),
    );
    const netCpuMsPerProposal = Object.fromEntries(
      Object.entries(spent).map(([k, v]) => [
        k,
        completed > 0 ? r1((v * 1000 - (idleCpuMsPerSecond[k] ?? 0) * (elapsed / 1000)) / completed) : Number.NaN,
      ]),
    );
    return {
      p50Ms: r1(median(lat)),
      p90Ms: r1(pct(lat, 90)),
      proposalsPerSecond: r1((completed * 1000) / elapsed),
      cpuMsPerProposal,
      idleCpuMsPerSecond,
      netCpuMsPerProposal,
      loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    };
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const built = DIST ? useBuiltJs() : undefined;
  if (built) console.log(built);
  if (PROFILE_DIR) {
    mkdirSync(PROFILE_DIR, { recursive: true });
    // Children inherit the environment; Node refuses --cpu-prof in NODE_OPTIONS, so a preload starts the built-in
    // profiler instead and writes <pid>-<name>.cpuprofile at exit (bench/cpu-profile.mjs).
    process.env.BENCH_PROFILE = PROFILE_DIR;
    process.env.NODE_OPTIONS =
      `${process.env.NODE_OPTIONS ?? ''} --import ${join(REPO_ROOT, 'bench/cpu-profile.mjs')}`.trim();
  }
  const root = await tempDir('cosigner-bench-frost-');
  const startedAt = new Date().toISOString();
  try {
    for (const s of SETUPS) {
      const t0 = performance.now();
      await start(s, root);
      console.log(`${s.name}: ready in ${r1((performance.now() - t0) / 1000)} s (key generation included)`);
    }
    const rounds = new Map<string, RoundFigures[]>(SETUPS.map((s) => [s.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of SETUPS) {
        const f = await measure(s);
        rounds.get(s.name)!.push(f);
        console.log(`round ${r + 1} ${s.name}: ${JSON.stringify(f)}`);
      }
    }
    const summary = SETUPS.map((s) => {
      const fs = rounds.get(s.name)!;
      const roles = [...new Set(fs.flatMap((f) => Object.keys(f.cpuMsPerProposal)))];
      return {
        setup: s.name,
        signaturesInEnvelope: s.frost ? 1 : s.t,
        p50Ms: median(fs.map((f) => f.p50Ms)),
        p90Ms: median(fs.map((f) => f.p90Ms)),
        proposalsPerSecond: median(fs.map((f) => f.proposalsPerSecond)),
        cpuMsPerProposal: Object.fromEntries(
          roles.map((k) => [k, median(fs.map((f) => f.cpuMsPerProposal[k] ?? Number.NaN))]),
        ),
        idleCpuMsPerSecond: Object.fromEntries(
          roles.map((k) => [k, median(fs.map((f) => f.idleCpuMsPerSecond[k] ?? Number.NaN))]),
        ),
        netCpuMsPerProposal: Object.fromEntries(
          roles.map((k) => [k, median(fs.map((f) => f.netCpuMsPerProposal[k] ?? Number.NaN))]),
        ),
      };
    });
    console.log('\nmedians over rounds (c=1 latency to a signed envelope; throughput and CPU at c=%d):', CONCURRENCY);
    for (const x of summary) {
      const cpu = (r: Record<string, number>, unit: string) =>
        Object.entries(r)
          .map(([k, v]) => `${k} ${v}${unit}`)
          .join(', ');
      console.log(
        `  ${x.setup.padEnd(15)} p50 ${x.p50Ms} ms  p90 ${x.p90Ms} ms  ${x.proposalsPerSecond}/s  CPU per proposal: ${cpu(x.cpuMsPerProposal, ' ms')}`,
      );
      console.log(
        `  ${''.padEnd(15)} idle CPU per second: ${cpu(x.idleCpuMsPerSecond, ' ms')}; CPU per proposal less idle: ${cpu(x.netCpuMsPerProposal, ' ms')}`,
      );
    }
    const out = {
      startedAt,
      machine: { cpus: cpus().length, memMb: Math.round(totalmem() / 2 ** 20), node: process.version },
      settings: {
        ROUNDS,
        N_LATENCY,
        WINDOW_MS,
        WARMUP_MS,
        CONCURRENCY,
        IDLE_MS,
        DIST,
        profiled: PROFILE_DIR !== undefined,
      },
      summary,
      rounds: Object.fromEntries(rounds),
    };
    mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'bench/results/frost-cluster.json'), `${JSON.stringify(out, null, 2)}\n`);
  } finally {
    for (const s of SETUPS) await s.cluster?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Cluster, type ClusterFile, type ProposalView, startCluster } from '@cosigner/testkit/cluster';
import { type Command, InvalidArgumentError } from 'commander';

/**
 * `cosigner cluster up|down`: the whole system on this machine with one command (`pnpm start`). The launcher
 * itself lives in packages/testkit/src/cluster.ts (the end-to-end tests run the very same code); this module
 * adds the demo proposal, the terminal output and the Ctrl-C handling.
 */

export interface ClusterUpOptions {
  dir: string;
  nodes: number;
  threshold: number;
  demo: boolean;
  /** One line of terminal output. */
  out: (line: string) => void;
  signal?: AbortSignal;
}

/** One decision as the coordinator reports it; other fields are ignored. */
interface DecisionView {
  nodeId?: string;
  node?: string;
  outcome?: string;
  reasons?: { code?: string; message?: string }[];
}

function decisionsOf(p: ProposalView): DecisionView[] {
  const d = p.decisions;
  if (Array.isArray(d)) return d as DecisionView[];
  if (d && typeof d === 'object') {
    return Object.entries(d as Record<string, DecisionView>).map(([nodeId, v]) => ({ nodeId, ...v }));
  }
  return [];
}

function decisionKey(d: DecisionView): string {
  return `${d.nodeId ?? d.node ?? '?'}:${d.outcome ?? '?'}`;
}

/**
 * The lines that tell a human what changed between two views of a proposal: each node's new decision (with
 * its reasons when it refused), then the new state. Pure, so the wording is tested without a cluster.
 */
export function progressLines(prev: ProposalView | undefined, next: ProposalView): string[] {
  const lines: string[] = [];
  const seen = new Set(prev ? decisionsOf(prev).map(decisionKey) : []);
  for (const d of decisionsOf(next)) {
    if (seen.has(decisionKey(d))) continue;
    const who = d.nodeId ?? d.node ?? 'a node';
    const why = (d.reasons ?? []).map((r) => r.message ?? r.code).filter(Boolean);
    lines.push(`  ${who}: ${d.outcome ?? 'decided'}${why.length > 0 ? ` (${why.join('; ')})` : ''}`);
  }
  // Polling can miss the short `signed` step (quorum reached, envelope assembled) on its way to `submitted`.
  const signedNow = next.status === 'signed' || next.status === 'submitted' || next.status === 'failed';
  const signedBefore = prev !== undefined && ['signed', 'submitted', 'failed'].includes(prev.status);
  if (signedNow && next.status !== 'signed' && !signedBefore) {
    const n = Array.isArray(next.signatures) ? next.signatures.length : 0;
    lines.push(`  proposal ${next.id}: quorum reached (${n} signatures)`);
  }
  if (!prev || prev.status !== next.status) {
    const result = next.result as { ledger?: number | null; code?: string | null } | null | undefined;
    const extra =
      next.status === 'submitted' && typeof result?.ledger === 'number'
        ? ` (ledger ${result.ledger})`
        : typeof next.statusReason === 'string'
          ? ` (${next.statusReason})`
          : '';
    const label = next.status === 'signed' ? 'quorum reached, envelope signed' : next.status;
    lines.push(`  proposal ${next.id}: ${label}${extra}`);
  }
  return lines;
}

/** Submit the demo payment (operator account pays 10 XLM to a fresh account) and print its progress live. */
export async function runDemo(cluster: Cluster, out: (line: string) => void): Promise<ProposalView> {
  const dest = await cluster.fundedAccount();
  const before = await cluster.nativeBalance(dest.publicKey());
  out(`demo: ${cluster.account.id} pays 10 XLM to ${dest.publicKey()}`);
  const xdr = await cluster.paymentXdr({ destination: dest.publicKey(), amount: '10' });
  const created = await cluster.propose({ xdr, note: 'cluster up demo payment' });
  let prev: ProposalView | undefined;
  const final = await cluster.waitForProposal(created.id, {
    timeoutMs: 60_000,
    onChange: (p) => {
      for (const l of progressLines(prev, p)) out(l);
      prev = p;
    },
  });
  // Nodes that answer after the quorum was reached are still worth seeing: one more look, shortly after.
  await new Promise((r) => setTimeout(r, 500));
  for (const l of progressLines(final, await cluster.getProposal(created.id))) out(l);
  if (final.status === 'submitted') {
    const after = await cluster.nativeBalance(dest.publicKey());
    out(`  ledger: destination balance ${before} -> ${after} XLM`);
  }
  return final;
}

/** The endpoints block: URLs and file paths, never a key. */
export function endpointLines(c: Cluster): string[] {
  return [
    'endpoints:',
    `  coordinator   ${c.coordinator.url}  (admin API key in ${c.adminKeyFile})`,
    `  ledger (Horizon) ${c.horizonUrl}  network "${c.networkPassphrase}"`,
    ...c.nodes.map((p, i) => `  ${p.name.padEnd(13)} ${p.url}  signer ${c.nodeInfo[i]?.stellarKey}`),
    ...c.kms.map((p) => `  ${p.name.padEnd(13)} ${p.url}`),
    `  multisig account ${c.account.id} (${c.account.threshold}-of-${c.nodes.length})`,
    `  state and logs under ${c.dir} (logs/<name>.log)`,
    'try:',
    `  curl -s -H "authorization: Bearer $(cat ${c.adminKeyFile})" ${c.coordinator.url}/v1/proposals`,
    `  open ${c.coordinator.url}/docs for the API; cosigner cluster down --dir ${c.dir} stops it from another shell`,
  ];
}

/** Start the cluster, run the demo unless disabled, print the endpoints; the caller decides when to stop. */
export async function clusterUp(o: ClusterUpOptions): Promise<Cluster> {
  const previous = await readFile(join(o.dir, 'cluster.json'), 'utf8').catch(() => undefined);
  if (previous !== undefined) {
    const pid = (JSON.parse(previous) as Partial<ClusterFile>).launcherPid;
    if (typeof pid === 'number' && pid !== process.pid && isCosignerProcess(pid)) {
      throw new Error(
        `a cluster is already running under ${o.dir} (launcher pid ${pid}); stop it with: cosigner cluster down --dir ${o.dir}`,
      );
    }
  }
  o.out(`starting a ${o.threshold}-of-${o.nodes} cluster under ${o.dir}`);
  const cluster = await startCluster({
    dir: o.dir,
    nodes: o.nodes,
    threshold: o.threshold,
    onStep: (l) => o.out(`  ${l}`),
    signal: o.signal,
  });
  try {
    if (o.demo) {
      const final = await runDemo(cluster, o.out);
      if (final.status !== 'submitted') {
        o.out(`demo proposal ended ${final.status}; the cluster keeps running for inspection`);
      }
    }
  } catch (e) {
    // A failed demo is reported, but the cluster stays up: the logs and APIs are what one needs to see why.
    o.out(`demo failed: ${(e as Error).message}`);
  }
  for (const l of endpointLines(cluster)) o.out(l);
  return cluster;
}

function isCosignerProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // Guard against pid reuse since the cluster ran: only signal a process that is a cosigner command.
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('cosigner');
  } catch {
    // No /proc (macOS): the pid is alive and was ours when cluster.json was written.
    return true;
  }
}

/**
 * Stop a cluster from its `cluster.json`: SIGTERM to the launcher (which stops its children in order), then to
 * every child still alive, SIGKILL after `graceMs`. Returns how many processes were signalled.
 */
export async function clusterDown(dir: string, out: (line: string) => void, graceMs = 10_000): Promise<number> {
  const file = join(resolve(dir), 'cluster.json');
  let info: ClusterFile;
  try {
    info = JSON.parse(await readFile(file, 'utf8')) as ClusterFile;
  } catch {
    throw new Error(`no running cluster under ${dir} (${file} is missing or unreadable)`);
  }
  const children = [
    ...info.nodes.map((x) => ({ name: x.name, pid: x.pid })),
    { name: 'coordinator', pid: info.coordinator.pid },
    { name: 'ledger', pid: info.ledger.pid },
    ...info.kms.map((x) => ({ name: x.name, pid: x.pid })),
  ];
  const wait = async (procs: { pid: number }[], ms: number): Promise<void> => {
    const until = Date.now() + ms;
    while (Date.now() < until && procs.some((x) => isCosignerProcess(x.pid))) {
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const signal = (x: { name: string; pid: number }): void => {
    try {
      process.kill(x.pid, 'SIGTERM');
      out(`stopping ${x.name} (pid ${x.pid})`);
    } catch {
      // Gone between the check and the signal: nothing to stop.
    }
  };
  const launcher = { name: 'launcher', pid: info.launcherPid };
  const all = [launcher, ...children].filter((x) => isCosignerProcess(x.pid));
  // The launcher stops its children in order (nodes first); only what it leaves behind is signalled directly.
  if (all.includes(launcher)) {
    signal(launcher);
    await wait([launcher, ...children], graceMs);
  }
  for (const x of children.filter((y) => isCosignerProcess(y.pid))) signal(x);
  await wait(all, graceMs);
  const stubborn = all.filter((y) => isCosignerProcess(y.pid));
  for (const x of stubborn) {
    out(`${x.name} (pid ${x.pid}) ignored SIGTERM; killing it`);
    process.kill(x.pid, 'SIGKILL');
  }
  // SIGKILL cannot be ignored; wait (bounded) until the kernel has ended them, so `down` returns when they are gone.
  const killDeadline = Date.now() + 5_000;
  while (Date.now() < killDeadline && stubborn.some((x) => isCosignerProcess(x.pid))) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return all.length;
}

/**
 * `cluster up` as the terminal runs it: start (Ctrl-C while starting stops what has started), warn when a child
 * dies, and on SIGINT/SIGTERM stop every child in order before returning. `signals` and `start` are parameters
 * so the stop logic is tested without a terminal or a whole cluster.
 */
export async function upUntilSignalled(
  o: Omit<ClusterUpOptions, 'signal'>,
  deps: { signals?: NodeJS.EventEmitter; start?: (o: ClusterUpOptions) => Promise<Cluster> } = {},
): Promise<void> {
  const signals = deps.signals ?? process;
  const start = deps.start ?? clusterUp;
  const abort = new AbortController();
  const stopRequested = new Promise<void>((res) => abort.signal.addEventListener('abort', () => res(), { once: true }));
  const onSignal = (): void => abort.abort();
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);
  try {
    const running = await start({ ...o, signal: abort.signal });
    if (!abort.signal.aborted) o.out('cluster running; press Ctrl-C to stop');
    for (const p of [...running.nodes, running.coordinator, running.ledger, ...running.kms]) {
      void p.exited.then((code) => {
        if (!abort.signal.aborted) o.out(`warning: ${p.name} (pid ${p.pid}) exited with ${code}; see ${p.logFile}`);
      });
    }
    await stopRequested;
    o.out('stopping the cluster');
    await running.stop();
    o.out('cluster stopped');
  } finally {
    signals.off('SIGINT', onSignal);
    signals.off('SIGTERM', onSignal);
  }
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 20) throw new InvalidArgumentError('expected a whole number from 1 to 20');
  return n;
}

/** Register `cosigner cluster up|down`. */
export function registerCluster(program: Command): void {
  const cluster = program
    .command('cluster')
    .description('run the whole system on this machine: KMS emulators, ledger simulator, coordinator, nodes');
  cluster
    .command('up')
    .description('start a local cluster, create its multisig account, run a demo payment, keep running until Ctrl-C')
    .option('--dir <path>', 'state directory (keys, ledgers, logs)', '.cosigner')
    .option('--nodes <n>', 'number of cosigner nodes', positiveInt, 3)
    .option('--threshold <n>', 'node signatures the account needs', positiveInt, 2)
    .option('--no-demo', 'skip the demo payment proposal')
    .addHelpText(
      'after',
      '\nEvery node gets its own KMS emulator (a separate simulated AWS account). The coordinator admin API key\n' +
        'is written to <dir>/coordinator/admin.key (0600) and never printed. Stop with Ctrl-C or `cosigner cluster down`.',
    )
    .action(async (opts: { dir: string; nodes: number; threshold: number; demo: boolean }) => {
      if (opts.threshold > opts.nodes) throw new Error(`--threshold ${opts.threshold} exceeds --nodes ${opts.nodes}`);
      await upUntilSignalled({ ...opts, dir: resolve(opts.dir), out: (l) => process.stdout.write(`${l}\n`) });
    });
  cluster
    .command('down')
    .description('stop a cluster started by `cosigner cluster up` (reads <dir>/cluster.json)')
    .option('--dir <path>', 'state directory', '.cosigner')
    .action(async (opts: { dir: string }) => {
      const n = await clusterDown(opts.dir, (l) => process.stdout.write(`${l}\n`));
      process.stdout.write(`stopped ${n} process(es)\n`);
    });
}

import { readFileSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Cluster,
  type ClusterFile,
  ClusterStartError,
  LAUNCHER_STATE_FILE,
  type ProposalView,
  startCluster,
} from '@cosigner/launcher/cluster';
import { type Command, InvalidArgumentError } from 'commander';

/**
 * `cosigner cluster up|down`: the whole system on this machine with one command (`pnpm start`). The launcher
 * itself lives in packages/launcher/src/cluster.ts (the end-to-end tests run the very same code); this module
 * adds the demo proposal, the terminal output and the Ctrl-C handling.
 */

/** This command's own executable: every child of the cluster runs `cosigner <service>` through it (src/ or dist/). */
const COSIGNER_BIN = fileURLToPath(new URL('../../bin/cosigner.js', import.meta.url));

export interface ClusterUpOptions {
  dir: string;
  /** undefined: 3 for a new cluster, the recorded count when resuming one. */
  nodes?: number;
  threshold?: number;
  demo: boolean;
  /** Discard the cluster under `dir` (what `launcherEntries` names) and start a new one. */
  fresh?: boolean;
  /** A policy file for every node (the demo policy otherwise). */
  policy?: string;
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
  const txSource = c.operatorAccounts[1];
  const kmsAccounts = c.kmsAccounts ?? [];
  const lines = [
    'endpoints:',
    `  coordinator   ${c.coordinator.url}  (admin API key in ${c.adminKeyFile})`,
    `  web console   ${c.coordinator.url}/console/  (sign in with that key; each node's console: <node URL>/console/)`,
    `  ledger (Horizon) ${c.horizonUrl}  network "${c.networkPassphrase}"`,
    ...c.nodes.map((p, i) => `  ${p.name.padEnd(13)} ${p.url}  signer ${c.nodeInfo[i]?.stellarKey}`),
    ...c.kms.map((p, i) => {
      const a = kmsAccounts[i];
      return `  ${p.name.padEnd(13)} ${p.url}${a ? `  region ${a.region}, key admin profile ${a.profile}` : ''}`;
    }),
    `  multisig account ${c.account.id} (${c.account.threshold}-of-${c.nodes.length}): payments`,
  ];
  if (txSource) {
    lines.push(`  second account   ${txSource} (same signers): the --tx-source of \`cosigner rotate\``);
  }
  if (c.aws) {
    lines.push(
      `  KMS credentials  AWS_CONFIG_FILE=${c.aws.configFile} with AWS_PROFILE=kms-<i>-admin (key admin) or kms-<i>-node;`,
      `                   they read each emulator's ${kmsAccounts[0]?.accountsFile ?? 'accounts.json'} (kms-<i>/accounts.json)`,
    );
  }
  if (c.policyFile) lines.push(`  nodes' policy    ${c.policyFile} (kill -HUP <node pid> reloads it)`);
  lines.push(
    `  state and logs under ${c.dir} (logs/<name>.log); \`pnpm start\` again resumes this cluster`,
    'try:',
    `  curl -s -H "authorization: Bearer $(cat ${c.adminKeyFile})" ${c.coordinator.url}/v1/proposals`,
    `  open ${c.coordinator.url}/docs for the API; cosigner cluster down --dir ${c.dir} stops it from another shell`,
  );
  const n0 = c.nodes[0];
  const a0 = kmsAccounts[0];
  if (txSource && c.aws && n0 && a0) {
    lines.push(
      `  rotate ${n0.name}'s key (docs/operations/rotation.md):`,
      `    AWS_CONFIG_FILE=${c.aws.configFile} AWS_PROFILE=${a0.profile} \\`,
      `    pnpm cosigner rotate --node ${n0.name} --horizon-url ${c.horizonUrl} --coordinator-url ${c.coordinator.url} \\`,
      `      --api-key-file ${c.adminKeyFile} --account ${c.account.id} --account ${txSource} --tx-source ${txSource} \\`,
      `      --admin-url ${n0.url} --peer-admin-url ${c.nodes
        .slice(1)
        .map((p) => p.url)
        .join(' ')} --state-dir ${join(c.dir, 'rotations')} \\`,
      `      --backend aws-kms --kms-endpoint ${c.kms[0]?.url} --region ${a0.region} --pending-window-days 7`,
    );
  }
  return lines;
}

/**
 * What the launcher creates under a cluster's directory, and so what `--fresh` deletes: nothing else in the
 * directory is touched (a mistyped `--dir $HOME --fresh` must not empty a home directory).
 */
export function launcherEntries(names: readonly string[]): string[] {
  const fixed = new Set([
    LAUNCHER_STATE_FILE,
    'cluster.json',
    'policy.yaml',
    'ledger',
    'coordinator',
    'logs',
    'run',
    'aws',
    'rotations',
  ]);
  return names.filter(
    (x) => fixed.has(x) || /^(node|kms)-\d+$/.test(x) || /^(launcher|cluster)\.json\.\d+\.tmp$/.test(x),
  );
}

/** Start the cluster, run the demo unless disabled, print the endpoints; the caller decides when to stop. */
export async function clusterUp(o: ClusterUpOptions): Promise<Cluster> {
  const previous = await readClusterFile(o.dir);
  if (previous !== undefined) {
    const pid = previous.launcherPid;
    if (typeof pid === 'number' && pid !== process.pid && isCosignerProcess(pid)) {
      throw new Error(
        `a cluster is already running under ${o.dir} (launcher pid ${pid}); stop it with: cosigner cluster down --dir ${o.dir}`,
      );
    }
    // The launcher is gone (kill -9, a closed terminal before SIGHUP was handled) but its children may still run,
    // holding the data directories: stop them before anything else opens those.
    const left = childrenOf(previous).filter((x) => isCosignerProcess(x.pid, o.dir));
    if (left.length > 0) {
      o.out(`stopping ${left.length} process(es) an earlier launcher left running`);
      await stopProcesses(left, () => {}, 10_000);
    }
  }
  if (o.fresh) {
    const doomed = launcherEntries(await readdir(o.dir).catch(() => [] as string[]));
    if (doomed.length > 0) {
      o.out(
        `--fresh: deleting the cluster under ${o.dir} (KMS keys, ledger, accounts, coordinator and node histories)`,
      );
      for (const x of doomed) await rm(join(o.dir, x), { recursive: true, force: true });
    }
  }
  const threshold = o.threshold ?? (o.nodes === undefined ? undefined : Math.min(2, o.nodes));
  o.out(`starting a cluster under ${o.dir}`);
  let cluster: Cluster;
  try {
    cluster = await startCluster({
      dir: o.dir,
      cosignerBin: COSIGNER_BIN,
      ...(o.nodes !== undefined ? { nodes: o.nodes } : {}),
      ...(threshold !== undefined ? { threshold } : {}),
      // The second account is the --tx-source of rotations, so they never compete with payments for a sequence.
      operatorAccounts: 2,
      signerChanges: true,
      ...(o.policy !== undefined ? { policyFile: o.policy } : {}),
      onStep: (l) => o.out(`  ${l}`),
      signal: o.signal,
    });
  } catch (e) {
    if (e instanceof ClusterStartError && (await readFile(join(o.dir, LAUNCHER_STATE_FILE)).catch(() => undefined))) {
      o.out(
        `the recorded cluster did not start (above); if it keeps failing, \`cosigner cluster up --fresh\` starts over and deletes ${o.dir}'s keys, ledger, accounts and histories`,
      );
    }
    throw e;
  }
  o.out(
    cluster.resumed
      ? `resumed the ${cluster.account.threshold}-of-${cluster.nodes.length} cluster under ${o.dir}`
      : `started a ${cluster.account.threshold}-of-${cluster.nodes.length} cluster under ${o.dir}`,
  );
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

async function readClusterFile(dir: string): Promise<Partial<ClusterFile> | undefined> {
  const text = await readFile(join(dir, 'cluster.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Partial<ClusterFile>;
  } catch {
    // Torn by a power cut (it is written without fsync): nothing in it can be trusted, nothing runs from before.
    return undefined;
  }
}

function childrenOf(info: Partial<ClusterFile>): { name: string; pid: number }[] {
  const list = [
    ...(info.nodes ?? []).map((x) => ({ name: x.name, pid: x.pid })),
    ...(info.coordinator ? [{ name: 'coordinator', pid: info.coordinator.pid }] : []),
    ...(info.ledger ? [{ name: 'ledger', pid: info.ledger.pid }] : []),
    ...(info.kms ?? []).map((x) => ({ name: x.name, pid: x.pid })),
  ];
  return list.filter((x) => Number.isInteger(x.pid) && x.pid > 0);
}

function isCosignerProcess(pid: number, dir?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // Guard against pid reuse since the cluster ran: only signal a process that is a cosigner command (and, when
    // the directory is known, one whose arguments name it: every child's data directory or config is under it).
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('cosigner') && (dir === undefined || cmd.includes(dir));
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
  const launcher = { name: 'launcher', pid: info.launcherPid };
  const all = [launcher, ...children].filter((x) => isCosignerProcess(x.pid));
  // The launcher stops its children in order (nodes first); only what it leaves behind is signalled directly.
  if (all.includes(launcher)) {
    signalTerm(launcher, out);
    await waitGone([launcher, ...children], graceMs);
  }
  await stopProcesses(
    all.filter((y) => isCosignerProcess(y.pid)),
    out,
    graceMs,
  );
  return all.length;
}

async function waitGone(procs: { pid: number }[], ms: number, stepMs = 100): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && procs.some((x) => isCosignerProcess(x.pid))) {
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

function signalTerm(x: { name: string; pid: number }, out: (line: string) => void): void {
  try {
    process.kill(x.pid, 'SIGTERM');
    out(`stopping ${x.name} (pid ${x.pid})`);
  } catch {
    // Gone between the check and the signal: nothing to stop.
  }
}

/** SIGTERM each process, wait up to `graceMs`, SIGKILL what is left (SIGKILL cannot be ignored) and wait for it. */
async function stopProcesses(
  procs: { name: string; pid: number }[],
  out: (line: string) => void,
  graceMs: number,
): Promise<void> {
  for (const x of procs) signalTerm(x, out);
  await waitGone(procs, graceMs);
  const left = procs.filter((y) => isCosignerProcess(y.pid));
  for (const x of left) {
    out(`${x.name} (pid ${x.pid}) ignored SIGTERM; killing it`);
    try {
      process.kill(x.pid, 'SIGKILL');
    } catch {
      // Ended meanwhile.
    }
  }
  await waitGone(left, 5_000, 50);
}

/**
 * `cluster up` as the terminal runs it: start (Ctrl-C while starting stops what has started), warn when a child
 * dies, and on SIGINT, SIGTERM or SIGHUP (the terminal closed) stop every child in order before returning. `signals` and `start` are parameters
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
  signals.on('SIGHUP', onSignal);
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
    signals.off('SIGHUP', onSignal);
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
    .description('start a local cluster (or resume the one under --dir), run a demo payment, keep running until Ctrl-C')
    .option('--dir <path>', 'state directory (keys, ledgers, logs)', '.cosigner')
    .option('--nodes <n>', 'number of cosigner nodes (default 3; a resumed cluster keeps its own)', positiveInt)
    .option('--threshold <n>', 'node signatures the accounts need (default 2)', positiveInt)
    .option('--policy <file>', "every node's policy YAML (network and accounts are filled in when absent)")
    .option('--fresh', 'delete the cluster under --dir (keys, ledger, accounts, histories) and start a new one')
    .option('--no-demo', 'skip the demo payment proposal')
    .addHelpText(
      'after',
      '\nEvery node gets its own KMS emulator (a separate simulated AWS account). The coordinator admin API key\n' +
        'is written to <dir>/coordinator/admin.key (0600) and never printed. Stop with Ctrl-C or `cosigner cluster down`;\n' +
        'the next `cluster up` with the same --dir resumes the same cluster (keys, accounts, ledger, histories),\n' +
        'however it stopped. --fresh discards it first.',
    )
    .action(
      async (opts: {
        dir: string;
        nodes?: number;
        threshold?: number;
        demo: boolean;
        fresh?: boolean;
        policy?: string;
      }) => {
        if (opts.threshold !== undefined && opts.threshold > (opts.nodes ?? 3) && opts.nodes !== undefined) {
          throw new Error(`--threshold ${opts.threshold} exceeds --nodes ${opts.nodes}`);
        }
        // A closed terminal (SIGHUP) or a closed pipe makes writes to stdout fail: the launcher must still stop
        // its children in order, so an output error is not allowed to end the process.
        process.stdout.on('error', () => {});
        const write = (l: string): void => {
          try {
            process.stdout.write(`${l}\n`);
          } catch {
            // See above.
          }
        };
        await upUntilSignalled({
          dir: resolve(opts.dir),
          ...(opts.nodes !== undefined ? { nodes: opts.nodes } : {}),
          ...(opts.threshold !== undefined ? { threshold: opts.threshold } : {}),
          ...(opts.policy !== undefined ? { policy: resolve(opts.policy) } : {}),
          fresh: opts.fresh === true,
          demo: opts.demo,
          out: write,
        });
      },
    );
  cluster
    .command('down')
    .description('stop a cluster started by `cosigner cluster up` (reads <dir>/cluster.json)')
    .option('--dir <path>', 'state directory', '.cosigner')
    .action(async (opts: { dir: string }) => {
      const n = await clusterDown(opts.dir, (l) => process.stdout.write(`${l}\n`));
      process.stdout.write(`stopped ${n} process(es)\n`);
    });
}

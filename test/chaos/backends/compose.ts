import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { waitForNodes } from '@cosigner/launcher/cluster';
import { REPO_ROOT, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import type { ClusterDriver } from '../driver.ts';

/**
 * The docker-compose backend: the repository's own docker-compose.yml (coordinator, three nodes, one KMS emulator
 * per node, the ledger simulator, the one-shot setup service), run under its own project name.
 *
 * Crash is `docker kill` (SIGKILL), start is `docker start`, pause is `docker pause` (cgroup freezer), a
 * partition is two iptables DROP rules inside the node's network namespace (`nsenter -t <pid> -n`), for the
 * coordinator's address on the network the two share: packets vanish, no RST, no FIN. A KMS outage kills the
 * emulator's container, a throttled KMS loses 30% of the node's packets to it (iptables statistic: this kernel has
 * no netem, KEYS-AND-CLUSTER-NOTES.md), so its calls crawl through TCP retransmits; the ledger simulator is stopped gracefully (`docker stop`) and started again. The
 * coordinator and the ledger are published on fixed loopback ports chosen at start, so their URLs survive
 * restarts. Node ledgers are read from the volumes' host directories (root runs the suite), as the process
 * backend reads its data directories. Every listener answers only the Host names it serves: this driver reaches
 * the published ports as 127.0.0.1 (loopback, always served) and the containers reach each other by service name,
 * which docker-compose.yml passes to each service with --allowed-host.
 *
 * Needs: a Docker engine, docker-compose (v1), nsenter and iptables on the host, root, and the image
 * (`COSIGNER_IMAGE`, default cosigner:local, built by .ci/docker.sh).
 */

export interface ComposeDriverOptions {
  /** Compose project name (default: cosigner-chaos-<pid>); its containers, networks and volumes go with close(). */
  project?: string;
  /** Image every service runs (default: $COSIGNER_IMAGE or cosigner:local). */
  image?: string;
  /** Operator accounts (sequence lanes) the setup service creates (default 4). */
  operatorAccounts?: number;
  /** Coordinator heartbeat (default 1000 ms): a silent partition is noticed after three missed beats. */
  heartbeatMs?: number;
  /** How long `up` and each start may take (default 180 s: eight containers on two cores). */
  readyTimeoutMs?: number;
  onStep?: (line: string) => void;
}

export interface ComposeDriver extends ClusterDriver {
  readonly name: 'compose';
  readonly project: string;
  /** Container id of a service (`coordinator`, `ledger`, `kms-<i>`, `node-<i>`). */
  container(service: string): string;
  /** Run a command in a service's container; resolves with its stdout (rejects on a non-zero exit). */
  exec(service: string, args: string[]): Promise<string>;
  /** docker-compose with this project's file, name and environment. */
  compose(args: string[]): Promise<string>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Run a program; resolves with stdout, rejects with stderr in the message. */
export function run(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((res, rej) => {
    execFile(
      file,
      args,
      { cwd: REPO_ROOT, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err) rej(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`.trim()));
        else res(stdout);
      },
    );
  });
}

const docker = (args: string[], timeoutMs?: number): Promise<string> => run('docker', args, { timeoutMs });

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface State {
  running: boolean;
  paused: boolean;
  pid: number;
}

async function state(id: string): Promise<State> {
  const [running, paused, pid] = (
    await docker(['inspect', '-f', '{{.State.Running}} {{.State.Paused}} {{.State.Pid}}', id])
  )
    .trim()
    .split(' ');
  return { running: running === 'true', paused: paused === 'true', pid: Number(pid) };
}

/** Poll until `probe` resolves true (bounded). */
async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(150);
  }
}

const answers = (url: string) => async (): Promise<boolean> =>
  (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok;

/**
 * Take down the stacks of earlier runs whose test process died before its close() (a killed worker): projects
 * named cosigner-chaos-<pid> whose pid is gone. Returns the projects removed.
 */
export async function removeStaleProjects(): Promise<string[]> {
  const out = await docker([
    'ps',
    '-a',
    '--filter',
    'label=com.docker.compose.project',
    '--format',
    '{{.Label "com.docker.compose.project"}}',
  ]);
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const stale = [...new Set(out.split('\n'))].filter((p) => {
    const m = /^cosigner-chaos-(\d+)$/.exec(p);
    return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
  });
  for (const p of stale) {
    await run('docker-compose', ['-f', join(REPO_ROOT, 'docker-compose.yml'), '-p', p, 'down', '-v', '-t', '1']);
  }
  return stale;
}

export async function startComposeDriver(opts: ComposeDriverOptions = {}): Promise<ComposeDriver> {
  const project = opts.project ?? `cosigner-chaos-${process.pid}`;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 180_000;
  const step = opts.onStep ?? (() => {});
  const [coordPort, ledgerPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    COSIGNER_IMAGE: opts.image ?? process.env.COSIGNER_IMAGE ?? 'cosigner:local',
    COSIGNER_COORDINATOR_PORT: String(coordPort),
    COSIGNER_LEDGER_PORT: String(ledgerPort),
    COSIGNER_LEDGER_CLOSE_MS: '200',
    COSIGNER_OPERATOR_ACCOUNTS: String(opts.operatorAccounts ?? 4),
    // As the process backend: a stream of proposals polls hard, heartbeats notice a silent partition in 3 s, and
    // nodes redial quickly after a coordinator restart or a healed partition.
    COSIGNER_COORDINATOR_CONFIG: JSON.stringify({
      limits: { ratePerSecond: 5000, rateBurst: 10_000, nodeFramesPerSecond: 2000, nodeFrameBurst: 4000 },
      round: { heartbeatMs: opts.heartbeatMs ?? 1000 },
      logLevel: 'warn',
    }),
    COSIGNER_NODE_CONFIG: JSON.stringify({ limits: { reconnectMaxMs: 1000 }, logLevel: 'warn' }),
  };
  const compose = (args: string[], timeoutMs = readyTimeoutMs): Promise<string> =>
    run('docker-compose', ['-f', join(REPO_ROOT, 'docker-compose.yml'), '-p', project, ...args], { env, timeoutMs });
  const down = () => compose(['down', '-v', '--remove-orphans', '-t', '5'], 120_000);

  const copies = await tempDir('cosigner-compose-chaos-');
  const nodeIds = ['node-0', 'node-1', 'node-2'];
  const services = ['coordinator', 'ledger', 'kms-0', 'kms-1', 'kms-2', ...nodeIds];
  const ids = new Map<string, string>();
  const coordinatorUrl = `http://127.0.0.1:${coordPort}`;
  const horizonUrl = `http://127.0.0.1:${ledgerPort}`;
  let apiKey = '';
  let accounts: string[] = [];
  let funder: Keypair;

  const container = (service: string): string => {
    const id = ids.get(service);
    if (!id) throw new RangeError(`unknown service '${service}': ${services.join(', ')}`);
    return id;
  };
  const exec = (service: string, args: string[]): Promise<string> => docker(['exec', container(service), ...args]);
  const nodeIndex = (nodeId: string): number => {
    const i = nodeIds.indexOf(nodeId);
    if (i < 0) throw new RangeError(`unknown node '${nodeId}': ${nodeIds.join(', ')}`);
    return i;
  };

  try {
    step(`docker-compose -p ${project} up -d`);
    const stale = await removeStaleProjects();
    if (stale.length > 0) step(`removed stale stacks of dead runs: ${stale.join(', ')}`);
    await down().catch(() => '');
    await compose(['up', '-d', '--no-build']);
    for (const s of services) {
      const id = (await compose(['ps', '-q', s], 60_000)).trim();
      if (!id) throw new Error(`service ${s} has no container`);
      ids.set(s, id);
    }
    await until('the coordinator /healthz', answers(`${coordinatorUrl}/healthz`), readyTimeoutMs);
    apiKey = (await exec('coordinator', ['cat', '/data/admin.key'])).trim();
    const facts = JSON.parse(await exec('coordinator', ['cat', '/data/cluster.json'])) as { accounts: string[] };
    accounts = facts.accounts;
    await waitForNodes(coordinatorUrl, apiKey, nodeIds, readyTimeoutMs);
    funder = Keypair.random();
    const fb = await fetch(`${horizonUrl}/friendbot?addr=${funder.publicKey()}`);
    if (!fb.ok) throw new Error(`friendbot answered ${fb.status}`);
    step(`cluster up: coordinator ${coordinatorUrl}, Horizon ${horizonUrl}, ${accounts.length} operator accounts`);
  } catch (e) {
    const logs = await compose(['logs', '--no-color', '--tail', '30'], 60_000).catch(() => '');
    await down().catch(() => '');
    await rm(copies, { recursive: true, force: true });
    throw new Error(`${(e as Error).message}\n--- docker-compose logs (last lines) ---\n${logs}`);
  }

  const stopContainer = async (service: string, how: 'kill' | 'stop'): Promise<void> => {
    const id = container(service);
    const s = await state(id);
    if (!s.running) return;
    if (s.paused) await docker(['unpause', id]);
    await docker(how === 'kill' ? ['kill', id] : ['stop', '-t', '10', id]);
    await until(`${service} stopped`, async () => !(await state(id)).running, 30_000);
  };
  /** Start unless running; resolves once `ready` holds. */
  const startContainer = async (service: string, ready: () => Promise<boolean>): Promise<void> => {
    const id = container(service);
    if (!(await state(id)).running) await docker(['start', id]);
    await until(`${service} ready`, ready, readyTimeoutMs);
  };
  const kmsReady = (service: string) => async (): Promise<boolean> => {
    await exec(service, ['node', '-e', "fetch('http://127.0.0.1:4566/healthz').then(r=>process.exit(r.ok?0:1))"]);
    return true;
  };

  /** The coordinator's address on the network it shares with the node (inspected now: restarts may move it). */
  const coordinatorAddressFor = async (nodeId: string): Promise<string> => {
    const nets = async (service: string) =>
      JSON.parse(await docker(['inspect', '-f', '{{json .NetworkSettings.Networks}}', container(service)])) as Record<
        string,
        { IPAddress: string }
      >;
    const [coord, node] = [await nets('coordinator'), await nets(nodeId)];
    const shared = Object.keys(node).find((n) => coord[n]?.IPAddress);
    if (!shared) throw new Error(`${nodeId} shares no network with the coordinator`);
    return coord[shared]!.IPAddress;
  };
  /** Partition rules in force: node -> the container pid and coordinator address they were put in with. */
  const cuts = new Map<string, { pid: number; ip: string }>();
  const iptables = (pid: number, args: string[]) =>
    run('nsenter', ['-t', String(pid), '-n', 'iptables', '-w', ...args], { timeoutMs: 30_000 });

  /** Throttled nodes: the KMS address whose packets are dropped at random (TCP retransmits make every call slow). */
  const slow = new Map<string, { pid: number; ip: string }>();
  const lossRule = (ip: string) => [
    'OUTPUT',
    '-d',
    ip,
    '-m',
    'statistic',
    '--mode',
    'random',
    '--probability',
    '0.3',
    '-j',
    'DROP',
  ];

  /** docker pause unless paused or not running. */
  const pause = async (service: string): Promise<void> => {
    const id = container(service);
    const s = await state(id);
    if (!s.running || s.paused) return;
    // The cgroup v1 freezer gives up when the tasks do not freeze in time on a loaded machine ("unable to
    // freeze"; runc thaws them again): ask again a few times.
    for (let attempt = 1; ; attempt++) {
      try {
        await docker(['pause', id]);
        return;
      } catch (e) {
        if (attempt >= 5 || !/unable to freeze/.test((e as Error).message)) throw e;
        await sleep(500);
      }
    }
  };
  const kmsAddress = async (kms: string): Promise<string> => {
    const nets = JSON.parse(
      await docker(['inspect', '-f', '{{json .NetworkSettings.Networks}}', container(kms)]),
    ) as Record<string, { IPAddress: string }>;
    const ip = Object.values(nets)[0]?.IPAddress;
    if (!ip) throw new Error(`${kms} has no address`);
    return ip;
  };

  let copyN = 0;
  const nodeDataDir = async (nodeId: string): Promise<string> => {
    const src = (
      await docker([
        'inspect',
        '-f',
        '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}',
        container(nodeId),
      ])
    ).trim();
    if (!src) throw new Error(`${nodeId} has no /data volume`);
    return src;
  };

  return {
    name: 'compose',
    project,
    nodeIds,
    container,
    exec,
    compose: (args) => compose(args),
    coordinatorUrl: () => coordinatorUrl,
    apiKey: () => apiKey,
    horizonUrl: () => horizonUrl,
    account: () => accounts[0]!,
    accounts: () => accounts,
    funder: () => ({ secret: funder.secret() }),
    kill: async (nodeId) => {
      nodeIndex(nodeId);
      // A new process gets a new network namespace, without the rules.
      cuts.delete(nodeId);
      slow.delete(nodeId);
      await stopContainer(nodeId, 'kill');
    },
    start: async (nodeId) => {
      nodeIndex(nodeId);
      const id = container(nodeId);
      if ((await state(id)).running) return;
      await docker(['start', id]);
      await waitForNodes(coordinatorUrl, apiKey, [nodeId], readyTimeoutMs);
    },
    pause: (nodeId) => {
      nodeIndex(nodeId);
      return pause(nodeId);
    },
    resume: async (nodeId) => {
      const id = container(nodeId);
      if ((await state(id)).paused) await docker(['unpause', id]);
    },
    partition: async (nodeId) => {
      nodeIndex(nodeId);
      if (cuts.has(nodeId)) return;
      const { pid, running } = await state(container(nodeId));
      if (!running) throw new Error(`${nodeId} is not running: nothing to partition`);
      const ip = await coordinatorAddressFor(nodeId);
      await iptables(pid, ['-I', 'INPUT', '-s', ip, '-j', 'DROP']);
      await iptables(pid, ['-I', 'OUTPUT', '-d', ip, '-j', 'DROP']);
      cuts.set(nodeId, { pid, ip });
    },
    heal: async (nodeId) => {
      nodeIndex(nodeId);
      const cut = cuts.get(nodeId);
      if (!cut) return;
      cuts.delete(nodeId);
      const { pid, running } = await state(container(nodeId));
      if (!running || pid !== cut.pid) return; // restarted: its new namespace never had the rules
      await iptables(pid, ['-D', 'INPUT', '-s', cut.ip, '-j', 'DROP']);
      await iptables(pid, ['-D', 'OUTPUT', '-d', cut.ip, '-j', 'DROP']);
    },
    killCoordinator: () => stopContainer('coordinator', 'kill'),
    startCoordinator: () => startContainer('coordinator', answers(`${coordinatorUrl}/healthz`)),
    stopKms: (nodeId) => stopContainer(`kms-${nodeIndex(nodeId)}`, 'kill'),
    startKms: (nodeId) => startContainer(`kms-${nodeIndex(nodeId)}`, kmsReady(`kms-${nodeIndex(nodeId)}`)),
    throttleKms: async (nodeId, on) => {
      const i = nodeIndex(nodeId);
      const had = slow.get(nodeId);
      const { pid, running } = await state(container(nodeId));
      if (!on) {
        slow.delete(nodeId);
        if (had && running && pid === had.pid) await iptables(pid, ['-D', ...lossRule(had.ip)]);
        return;
      }
      if (had && pid === had.pid) return;
      if (!running) throw new Error(`${nodeId} is not running: nothing to throttle`);
      const ip = await kmsAddress(`kms-${i}`);
      await iptables(pid, ['-I', ...lossRule(ip)]);
      slow.set(nodeId, { pid, ip });
    },
    stopLedger: () => stopContainer('ledger', 'stop'),
    startLedger: () => startContainer('ledger', answers(`${horizonUrl}/healthz`)),
    nodeLedgerFiles: async (nodeId) => {
      // The volume's host directory, read as the process backend reads a data directory: VACUUM INTO writes a
      // consistent snapshot of the live WAL database, then the copy drops WAL so it opens read-only alone.
      const out = join(copies, `${nodeId}-${++copyN}`);
      await mkdir(out, { recursive: true, mode: 0o700 });
      const file = join(out, 'ledger.sqlite');
      const src = new Database(join(await nodeDataDir(nodeId), 'ledger.sqlite'), {
        fileMustExist: true,
        readonly: true,
      });
      try {
        src.pragma('busy_timeout = 5000');
        src.prepare('VACUUM INTO ?').run(file);
      } finally {
        src.close();
      }
      const copy = new Database(file);
      copy.pragma('journal_mode = DELETE');
      copy.close();
      return file;
    },
    close: async () => {
      try {
        for (const id of services) {
          const s = await state(container(id)).catch(() => undefined);
          if (s?.paused) await docker(['unpause', container(id)]).catch(() => '');
        }
      } finally {
        await down();
        await rm(copies, { recursive: true, force: true });
      }
    },
  };
}

import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { waitForNodes } from '@cosigner/launcher/cluster';
import { REPO_ROOT, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import type { ClusterDriver, ReplicatedClusterDriver } from '../driver.ts';

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
 *
 * With `ha: true` it runs docker-compose.ha.yml instead: two coordinator replicas (`coordinator-1`, `coordinator-2`)
 * on PostgreSQL behind haproxy (`lb`). `coordinatorUrl()` is then the balancer's published port, the coordinator
 * faults of ClusterDriver act on every replica, a node partition cuts the node from every replica, and the driver
 * is a ReplicatedClusterDriver (driver.ts): one replica killed or cut from the database, PostgreSQL killed and
 * started, and the round leases and terminal events read from the database itself (psql in its container, as its
 * superuser over the container's socket).
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
  /** docker-compose.ha.yml: two coordinator replicas on PostgreSQL behind haproxy (default false). */
  ha?: boolean;
  /** With `ha`: the round lease time of the replicas (`store.leaseMs`, default 3000). */
  leaseMs?: number;
  onStep?: (line: string) => void;
}

export interface ComposeDriver extends ClusterDriver {
  readonly name: 'compose';
  /** The compose file this driver runs (docker-compose.yml, or docker-compose.ha.yml with `ha`). */
  readonly file: string;
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
const HA_FILE = 'docker-compose.ha.yml';

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
    const m = /^cosigner-chaos-(?:ha-)?(\d+)$/.exec(p);
    return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
  });
  for (const p of stale) {
    const file = p.startsWith('cosigner-chaos-ha-') ? HA_FILE : 'docker-compose.yml';
    await run('docker-compose', ['-f', join(REPO_ROOT, file), '-p', p, 'down', '-v', '-t', '1']);
  }
  return stale;
}

export function startComposeDriver(
  opts: ComposeDriverOptions & { ha: true },
): Promise<ComposeDriver & ReplicatedClusterDriver>;
export function startComposeDriver(opts?: ComposeDriverOptions): Promise<ComposeDriver>;
export async function startComposeDriver(opts: ComposeDriverOptions = {}): Promise<ComposeDriver> {
  const ha = opts.ha === true;
  const file = ha ? HA_FILE : 'docker-compose.yml';
  const project = opts.project ?? `cosigner-chaos-${ha ? 'ha-' : ''}${process.pid}`;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 180_000;
  const step = opts.onStep ?? (() => {});
  const [coordPort, ledgerPort] = [await freePort(), await freePort()];
  const replicaPorts = ha ? [await freePort(), await freePort()] : [];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    COSIGNER_IMAGE: opts.image ?? process.env.COSIGNER_IMAGE ?? 'cosigner:local',
    COSIGNER_COORDINATOR_PORT: String(coordPort),
    ...(ha
      ? {
          COSIGNER_COORDINATOR_1_PORT: String(replicaPorts[0]),
          COSIGNER_COORDINATOR_2_PORT: String(replicaPorts[1]),
          COSIGNER_LEASE_MS: String(opts.leaseMs ?? 3000),
        }
      : {}),
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
    run('docker-compose', ['-f', join(REPO_ROOT, file), '-p', project, ...args], { env, timeoutMs });
  const down = () => compose(['down', '-v', '--remove-orphans', '-t', '5'], 120_000);

  const copies = await tempDir('cosigner-compose-chaos-');
  const nodeIds = ['node-0', 'node-1', 'node-2'];
  const replicas = ha ? ['coordinator-1', 'coordinator-2'] : ['coordinator'];
  const services = [...replicas, 'ledger', 'kms-0', 'kms-1', 'kms-2', ...nodeIds, ...(ha ? ['postgres', 'lb'] : [])];
  const replicaUrl = (name: string): string => {
    const i = replicas.indexOf(name);
    if (i < 0) throw new RangeError(`unknown replica '${name}': ${replicas.join(', ')}`);
    return ha ? `http://127.0.0.1:${replicaPorts[i]}` : `http://127.0.0.1:${coordPort}`;
  };
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
    for (const r of replicas) await until(`${r} /healthz`, answers(`${replicaUrl(r)}/healthz`), readyTimeoutMs);
    // Through the balancer too: it has seen a replica pass its health check.
    await until('the coordinator /healthz', answers(`${coordinatorUrl}/healthz`), readyTimeoutMs);
    apiKey = (await exec(replicas[0]!, ['cat', '/data/admin.key'])).trim();
    const facts = JSON.parse(await exec(replicas[0]!, ['cat', '/data/cluster.json'])) as { accounts: string[] };
    accounts = facts.accounts;
    await waitForNodes(coordinatorUrl, apiKey, nodeIds, readyTimeoutMs);
    funder = Keypair.random();
    const fb = await fetch(`${horizonUrl}/friendbot?addr=${funder.publicKey()}`);
    if (!fb.ok) throw new Error(`friendbot answered ${fb.status}`);
    step(
      `cluster up: coordinator ${coordinatorUrl}${ha ? ` (haproxy; replicas ${replicas.map(replicaUrl).join(', ')})` : ''}, Horizon ${horizonUrl}, ${accounts.length} operator accounts`,
    );
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

  const networksOf = async (service: string) =>
    JSON.parse(await docker(['inspect', '-f', '{{json .NetworkSettings.Networks}}', container(service)])) as Record<
      string,
      { IPAddress: string }
    >;
  /** Every replica's address on the network it shares with the node (inspected now: restarts may move them). */
  const coordinatorAddressesFor = async (nodeId: string): Promise<string[]> => {
    const node = await networksOf(nodeId);
    const out: string[] = [];
    for (const r of replicas) {
      const coord = await networksOf(r);
      const shared = Object.keys(node).find((n) => coord[n]?.IPAddress);
      if (!shared) throw new Error(`${nodeId} shares no network with ${r}`);
      out.push(coord[shared]!.IPAddress);
    }
    return out;
  };
  /** Partition rules in force: node -> the container pid and coordinator addresses they were put in with. */
  const cuts = new Map<string, { pid: number; ips: string[] }>();
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

  const base: ComposeDriver = {
    name: 'compose',
    project,
    file,
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
      const ips = await coordinatorAddressesFor(nodeId);
      for (const ip of ips) {
        await iptables(pid, ['-I', 'INPUT', '-s', ip, '-j', 'DROP']);
        await iptables(pid, ['-I', 'OUTPUT', '-d', ip, '-j', 'DROP']);
      }
      cuts.set(nodeId, { pid, ips });
    },
    heal: async (nodeId) => {
      nodeIndex(nodeId);
      const cut = cuts.get(nodeId);
      if (!cut) return;
      cuts.delete(nodeId);
      const { pid, running } = await state(container(nodeId));
      if (!running || pid !== cut.pid) return; // restarted: its new namespace never had the rules
      for (const ip of cut.ips) {
        await iptables(pid, ['-D', 'INPUT', '-s', ip, '-j', 'DROP']);
        await iptables(pid, ['-D', 'OUTPUT', '-d', ip, '-j', 'DROP']);
      }
    },
    killCoordinator: async () => {
      for (const r of replicas) await stopContainer(r, 'kill');
    },
    startCoordinator: async () => {
      for (const r of replicas) await startContainer(r, answers(`${replicaUrl(r)}/healthz`));
      await until('the coordinator /healthz', answers(`${coordinatorUrl}/healthz`), readyTimeoutMs);
    },
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
  if (!ha) return base;

  /** psql in the PostgreSQL container, as its superuser over the container's socket (peer: no password). */
  const sql = async (query: string): Promise<string[][]> => {
    const out = await exec('postgres', [
      'psql',
      '-X',
      '-A',
      '-t',
      '-F',
      '\t',
      '-h',
      '/tmp',
      '-U',
      'postgres',
      '-d',
      'cosigner',
      '-c',
      query,
    ]);
    return out
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t'));
  };
  const dbNetwork = Object.keys(await networksOf('postgres')).find((n) => n.endsWith('_db'));
  if (!dbNetwork) throw new Error('postgres is on no network named *_db');
  /** Replicas cut from the database now. */
  const cutFromDb = new Set<string>();
  const replica = (name: string): string => {
    replicaUrl(name);
    return name;
  };
  const dbReady = async (): Promise<boolean> => {
    await exec('postgres', ['pg_isready', '-q', '-h', '/tmp', '-U', 'postgres', '-d', 'cosigner']);
    return true;
  };
  const terminal =
    "('proposal.submitted','proposal.failed','proposal.rejected','proposal.expired','proposal.cancelled')";
  const replicated: ComposeDriver & ReplicatedClusterDriver = {
    ...base,
    replicas,
    replicaUrl,
    killReplica: (name) => stopContainer(replica(name), 'kill'),
    startReplica: (name) => startContainer(replica(name), answers(`${replicaUrl(name)}/healthz`)),
    killDatabase: () => stopContainer('postgres', 'kill'),
    startDatabase: () => startContainer('postgres', dbReady),
    partitionFromDatabase: async (name) => {
      if (cutFromDb.has(replica(name))) return;
      // The replica leaves the network it shares with PostgreSQL: its connections break and the name `postgres`
      // no longer resolves (a fast failure, not a silent one).
      await docker(['network', 'disconnect', dbNetwork, container(name)]);
      cutFromDb.add(name);
    },
    healDatabase: async (name) => {
      if (!cutFromDb.has(replica(name))) return;
      await docker(['network', 'connect', '--alias', name, dbNetwork, container(name)]);
      cutFromDb.delete(name);
    },
    leaseHolder: async (proposalId) => {
      if (!/^[A-Za-z0-9_-]{1,100}$/.test(proposalId)) throw new RangeError(`not a proposal id: ${proposalId}`);
      const rows = await sql(
        `SELECT holder, token, expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint FROM round_leases WHERE proposal_id = '${proposalId}'`,
      );
      const row = rows[0];
      if (!row) return undefined;
      const [holder, token, live] = row as [string, string, string];
      // Each replica's container hostname is its service name, and a replica's lease holder id is
      // `<hostname>:<pid>:<random>` (services/coordinator/src/pg/replicas.ts replicaId).
      const name = replicas.find((r) => holder.startsWith(`${r}:`));
      if (!name) throw new Error(`lease holder '${holder}' names none of ${replicas.join(', ')}`);
      return { replica: name, token: Number(token), live: live === 't' };
    },
    terminalEvents: async () => {
      const rows = await sql(
        `SELECT proposal_id, count(*) FROM events WHERE type IN ${terminal} AND proposal_id IS NOT NULL GROUP BY proposal_id`,
      );
      return new Map(rows.map(([id, n]) => [id!, Number(n)]));
    },
    close: async () => {
      for (const name of [...cutFromDb]) await replicated.healDatabase(name).catch(() => undefined);
      await base.close();
    },
  };
  return replicated;
}

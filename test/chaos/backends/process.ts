import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Cluster, type ClusterOptions, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import Database from 'better-sqlite3';
import type { ClusterDriver } from '../driver.ts';
import { KmsProxy, TcpProxy } from '../proxy.ts';

/**
 * The process backend: the whole cluster as local processes (packages/testkit startCluster). Crash is SIGKILL,
 * pause is SIGSTOP/SIGCONT, a partition is a TcpProxy between the node and the coordinator that stops
 * forwarding (no RST), KMS throttling is a KmsProxy answering ThrottlingException. The coordinator, the ledger
 * and the emulators restart on their old ports (testkit startService), so no URL changes under the test.
 */

export interface ProcessDriverOptions {
  /** State directory (default: a fresh temporary one, removed by close()). */
  dir?: string;
  nodes?: number;
  threshold?: number;
  /** Operator accounts (sequence lanes) to set up (default 4). */
  operatorAccounts?: number;
  /** Coordinator heartbeat (default 1000 ms): a silent partition is noticed after three missed beats. */
  heartbeatMs?: number;
  onStep?: ClusterOptions['onStep'];
}

export interface ProcessDriver extends ClusterDriver {
  readonly name: 'process';
  readonly cluster: Cluster;
}

export async function startProcessDriver(opts: ProcessDriverOptions = {}): Promise<ProcessDriver> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await tempDir('cosigner-chaos-'));
  const links = new Map<string, TcpProxy>();
  const kmsLinks = new Map<string, KmsProxy>();
  const closeLinks = async (): Promise<void> => {
    await Promise.all([...links.values(), ...kmsLinks.values()].map((l) => l.close()));
  };
  let cluster: Cluster;
  try {
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      nodes: opts.nodes ?? 3,
      threshold: opts.threshold ?? 2,
      operatorAccounts: opts.operatorAccounts ?? 4,
      closeMs: 200,
      onStep: opts.onStep,
      // A stream of proposals polls hard; a chaos run must not be throttled by the client rate limit.
      coordinatorConfig: {
        limits: { ratePerSecond: 5000, rateBurst: 10_000, nodeFramesPerSecond: 2000, nodeFrameBurst: 4000 },
        round: { heartbeatMs: opts.heartbeatMs ?? 1000 },
        logLevel: 'warn',
      },
      // Redial quickly after a coordinator restart or a healed partition (the default cap is 10 s).
      nodeConfig: { limits: { reconnectMaxMs: 1000 }, logLevel: 'warn' },
      nodeCoordinatorUrl: async (nodeId, socketUrl) => {
        const u = new URL(socketUrl);
        const link = await TcpProxy.start({ host: u.hostname, port: Number(u.port) });
        links.set(nodeId, link);
        return `${u.protocol}//127.0.0.1:${link.port}`;
      },
      nodeKmsEndpoint: async (nodeId, kmsUrl) => {
        const link = await KmsProxy.start(kmsUrl);
        kmsLinks.set(nodeId, link);
        return link.url;
      },
    });
  } catch (e) {
    await closeLinks();
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const funder = await cluster.fundedAccount();
  const nodeIds = cluster.nodeInfo.map((x) => x.id);
  const index = (nodeId: string): number => {
    const i = nodeIds.indexOf(nodeId);
    if (i < 0) throw new RangeError(`unknown node '${nodeId}': ${nodeIds.join(', ')}`);
    return i;
  };
  const link = (nodeId: string): TcpProxy => {
    index(nodeId);
    return links.get(nodeId)!;
  };
  const running = (name: string): boolean => {
    const p = cluster.service(name);
    return p.proc.exitCode === null && p.proc.signalCode === null;
  };
  const signal = (nodeId: string, sig: NodeJS.Signals): void => {
    if (running(nodeId)) process.kill(cluster.service(nodeId).pid, sig);
  };
  // Start a service unless it runs: every start is a no-op on a running service (driver.ts contract).
  const ensure = async (name: string): Promise<void> => {
    if (!running(name)) await cluster.startService(name);
  };
  const copies = join(dir, 'ledger-copies');
  let copyN = 0;

  return {
    name: 'process',
    cluster,
    nodeIds,
    coordinatorUrl: () => cluster.coordinator.url,
    apiKey: () => cluster.apiKey,
    horizonUrl: () => cluster.horizonUrl,
    account: () => cluster.account.id,
    accounts: () => cluster.operatorAccounts,
    funder: () => ({ secret: funder.secret() }),
    kill: async (nodeId) => {
      index(nodeId);
      await cluster.stopService(nodeId, 'kill');
    },
    start: async (nodeId) => {
      index(nodeId);
      await ensure(nodeId);
    },
    pause: async (nodeId) => signal(nodeId, 'SIGSTOP'),
    resume: async (nodeId) => signal(nodeId, 'SIGCONT'),
    partition: async (nodeId) => link(nodeId).cut(),
    heal: async (nodeId) => link(nodeId).heal(),
    killCoordinator: () => cluster.stopService('coordinator', 'kill'),
    startCoordinator: () => ensure('coordinator'),
    stopKms: async (nodeId) => cluster.stopService(`kms-${index(nodeId)}`, 'kill'),
    startKms: (nodeId) => ensure(`kms-${index(nodeId)}`),
    throttleKms: async (nodeId, on) => {
      index(nodeId);
      kmsLinks.get(nodeId)!.throttle(on);
    },
    stopLedger: () => cluster.stopService('ledger', 'term'),
    startLedger: () => ensure('ledger'),
    nodeLedgerFiles: async (nodeId) => {
      // VACUUM INTO writes a consistent snapshot of the live WAL database (sqlite.org/lang_vacuum.html#vacuuminto)
      // without stopping the node; the copy is then switched to a rollback journal so a read-only open needs no
      // -shm file next to it.
      const out = join(copies, `${nodeId}-${++copyN}`);
      await mkdir(out, { recursive: true, mode: 0o700 });
      const file = join(out, 'ledger.sqlite');
      const src = new Database(join(dir, nodeId, 'ledger.sqlite'), { fileMustExist: true });
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
    nodeDataDir: (nodeId) => join(dir, nodeIds[index(nodeId)]!),
    close: async () => {
      for (const id of nodeIds) signal(id, 'SIGCONT');
      for (const l of links.values()) l.heal();
      await cluster.stop();
      await closeLinks();
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

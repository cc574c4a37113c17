/**
 * One cluster driver, two backends: `backends/process.ts` runs every service as a local
 * process (SIGKILL/SIGSTOP, a TCP proxy for partitions); `backends/compose.ts` runs the docker-compose stack
 * (docker kill/pause, iptables inside the container's network namespace). `scenarios.ts` only ever talks to
 * this interface, so both suites run the very same scenarios and invariant checks.
 *
 * Contract every backend keeps:
 * - Every method resolves once the effect holds: `kill` after the process is gone, `start` after the service
 *   answers again (for a node: once the coordinator lists it as connected), `partition` once no byte flows.
 * - A method whose target is already in the asked state is a no-op (kill of a dead node, start of a running
 *   coordinator, heal of a healed node), so scenario cleanup (scenarios.ts restoreAll) calls them unconditionally.
 * - Nothing here returns a secret other than `apiKey()` and `funder()`, which the harness needs to act as a client.
 */
export interface ClusterDriver {
  readonly name: 'process' | 'compose';
  /** Node ids as the coordinator knows them (GET /v1/nodes), e.g. ['node-0','node-1','node-2']. */
  readonly nodeIds: readonly string[];
  /** HTTP base URL of the coordinator reachable from the test (stable across `killCoordinator`/`startCoordinator`). */
  coordinatorUrl(): string;
  /** The coordinator API key (admin or propose+read scopes) for `authorization: Bearer`. */
  apiKey(): string;
  /** Base URL of the ledger simulator's Horizon API (stable across `stopLedger`/`startLedger`). */
  horizonUrl(): string;
  /** The multisig operator account (G...): master weight 0, every node key at weight 1, thresholds = quorum. */
  account(): string;
  /**
   * Further operator accounts with the same signers and thresholds, allowed by every node's policy: independent
   * sequence-number lanes, so a stream can keep several proposals in flight without txBAD_SEQ between them.
   * Optional: without it the stream runs one lane on `account()`.
   */
  accounts?(): readonly string[];
  /** A funded throwaway account (its secret), used as the payments' destination. */
  funder(): { secret: string };

  /** SIGKILL (docker kill) the node; its data stays. */
  kill(nodeId: string): Promise<void>;
  /** Start a killed or stopped node again with the same config and data; resolves once it is connected. */
  start(nodeId: string): Promise<void>;
  /** SIGSTOP (docker pause) the node. */
  pause(nodeId: string): Promise<void>;
  /** SIGCONT (docker unpause) the node. */
  resume(nodeId: string): Promise<void>;
  /** Cut node <-> coordinator silently: packets vanish, no RST, no FIN; new connections hang. */
  partition(nodeId: string): Promise<void>;
  /** Undo `partition`. */
  heal(nodeId: string): Promise<void>;

  /** SIGKILL (docker kill) the coordinator; its database stays. */
  killCoordinator(): Promise<void>;
  /** Start the coordinator again at the same URL; resolves once it answers /healthz. */
  startCoordinator(): Promise<void>;

  /** Stop the node's KMS (outage: its Sign calls fail to connect). */
  stopKms(nodeId: string): Promise<void>;
  /** Start the node's KMS again at the same endpoint with the same keys. */
  startKms(nodeId: string): Promise<void>;
  /** Slow the node's KMS down (each request delayed) or back to normal; optional. */
  throttleKms?(nodeId: string, on: boolean): Promise<void>;

  /** Stop the ledger simulator (graceful: the network itself never forgets an applied transaction). */
  stopLedger(): Promise<void>;
  /** Start the ledger simulator again at the same URL with its state. */
  startLedger(): Promise<void>;

  /**
   * Path to a consistent, readable copy of the node's signing ledger (the SQLite file holding the `signatures`
   * and `audit` tables, services/cosigner/src/migrations/001_init.sql). The file is named `ledger.sqlite`, so
   * its directory can be handed to `cosigner node audit verify --data-dir`. The caller may delete it.
   */
  nodeLedgerFiles(nodeId: string): Promise<string>;
  /** The node's live data directory, when the test can reach it. */
  nodeDataDir?(nodeId: string): string;

  /** Stop everything the driver started and remove what it created. */
  close(): Promise<void>;
}

/**
 * A cluster whose coordinator is several replicas on one shared database (docker-compose.ha.yml). The coordinator
 * faults of ClusterDriver (`killCoordinator`, `startCoordinator`) act on every replica; these act on one replica
 * or on the database. `coordinatorUrl()` is the one address clients use (the load balancer).
 */
export interface ReplicatedClusterDriver extends ClusterDriver {
  /** Replica names, e.g. ['coordinator-1', 'coordinator-2']. */
  readonly replicas: readonly string[];
  /** One replica's own HTTP base URL, bypassing the balancer. */
  replicaUrl(replica: string): string;
  /** SIGKILL one replica; the others and the database stay. */
  killReplica(replica: string): Promise<void>;
  /** Start a killed replica again; resolves once it answers /healthz. */
  startReplica(replica: string): Promise<void>;
  /** SIGKILL the database server (a crash: it recovers from its write-ahead log at the next start). */
  killDatabase(): Promise<void>;
  /** Start the database server again; resolves once it accepts connections. */
  startDatabase(): Promise<void>;
  /** Cut one replica from the database (the replica stays reachable by clients and nodes). */
  partitionFromDatabase(replica: string): Promise<void>;
  /** Undo `partitionFromDatabase`. */
  healDatabase(replica: string): Promise<void>;
  /**
   * The last lease taken on the proposal's round: which replica took it, its fencing token, and whether it is still
   * live (unexpired, not released); undefined when no replica ever drove the round.
   */
  leaseHolder(proposalId: string): Promise<{ replica: string; token: number; live: boolean } | undefined>;
  /** Terminal events (submitted, failed, rejected, expired, cancelled) the database holds, per proposal id. */
  terminalEvents(): Promise<Map<string, number>>;
}

export function isReplicated(d: ClusterDriver): d is ReplicatedClusterDriver {
  return Array.isArray((d as Partial<ReplicatedClusterDriver>).replicas);
}

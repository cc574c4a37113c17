import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CreateKeyCommand, GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type SetupSafety, signedFreshSetup } from '@cosigner/policy/account-setup';
import { loadOrCreateIdentity } from '@cosigner/protocol/identity';
import { Asset, Horizon, Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { parse as parseYaml, stringify as toYaml } from 'yaml';

/**
 * V8 flags for every service process (bench/README.md, "memory", has the measurements). The image's entrypoint sets
 * the same.
 * - `--max-semi-space-size=4`: a young generation capped at 4 MB per semi-space. V8 otherwise grows it to 64 MB
 *   under load and keeps it; the cap takes 60-75 MB off each process's peak RSS at no CPU cost per proposal.
 * - `--no-concurrent-recompilation`: TurboFan compiles on the main thread instead of a background one. After a
 *   load, one background thread's malloc arena held 25 MB of a node (read from /proc/<pid>/smaps), memory glibc
 *   keeps for that thread; with the flag a node's native memory after the load fell from 43 to 28 MB and its peak
 *   RSS from 157 to 145 MB (medians, four pairs), with throughput and CPU per proposal no worse: on 2 cores the
 *   compile jobs competed with the services for the same cores anyway. V8 refuses it in NODE_OPTIONS.
 */
export const SERVICE_V8_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--no-concurrent-recompilation'];

/**
 * The whole system on one machine, as real processes: one KMS emulator per node (separate simulated accounts,
 * so each node's credentials reach only its own emulator, as separate AWS accounts would), the ledger simulator,
 * the coordinator and N cosigner nodes. Production code: `cosigner cluster up` runs it, and the end-to-end tests,
 * the benchmarks and the chaos harness start their clusters with it, so it must not import vitest or the testkit.
 * Every child is spawned exactly as an operator would run it: `<cosignerBin> <cmd> --port 0 --ready-file F`, with
 * the `cosigner` executable the caller names (the CLI passes its own); nothing here imports a service's source or
 * the CLI, which sit above this package.
 *
 * Layout under `dir`: `kms-<i>/`, `ledger/`, `coordinator/`, `node-<i>/` (one data directory each),
 * `logs/<name>.log` (every child's stdout+stderr), `run/<name>.ready.json`, and `cluster.json` (pids and
 * endpoints, read by `cosigner cluster down`; it never holds a secret, only the admin key's file path).
 */

export interface ClusterOptions {
  /** State directory; created when absent. */
  dir: string;
  /** The `cosigner` executable (`apps/cli/bin/cosigner.js`) every child runs; the CLI passes its own path. */
  cosignerBin: string;
  /** Number of cosigner nodes (default 3; up to 64, of which at most 20 sign for the operator accounts). */
  nodes?: number;
  /**
   * How many of the nodes (the first ones) are signers of the operator accounts (default: all of them). Stellar
   * caps an account at 20 signers besides the master key (stellar-core SetOptionsOpFrame, MAX_SIGNERS), so a
   * larger cluster (a FROST group of 25, which is one signer whatever its size) names the few that sign natively.
   */
  operatorSigners?: number;
  /**
   * How many KMS emulator processes to run (default: one per node). With fewer, node i uses emulator
   * `i % kmsEmulators` and its own account there (the emulator holds up to 26 accounts, each with its own keys,
   * principals and key policies), so every node's key custody stays separate while a 25-node cluster fits on a
   * small machine.
   */
  kmsEmulators?: number;
  /** Signing weight the operator account needs at every threshold level (default 2). */
  threshold?: number;
  /** Ledger simulator close interval in ms (default 200: fast enough for tests, visible in a demo). */
  closeMs?: number;
  /** Extra environment for the node processes only. */
  nodeEnv?: NodeJS.ProcessEnv;
  /** Largest native payment (XLM, decimal string) the nodes' policy approves (default '1000'). */
  maxPaymentXlm?: string;
  /** How long each child may take to become ready (default 60 s: eight tsx processes on two cores). */
  readyTimeoutMs?: number;
  /** Progress lines for a human (the CLI prints them); silent by default. */
  onStep?: (line: string) => void;
  /** Abort the start (Ctrl-C while starting): every child started so far is stopped. */
  signal?: AbortSignal;
  /**
   * Extra coordinator.yaml fields, merged one level deep over the launcher's (e.g. `{ limits: {
   * nodeFramesPerSecond: 2000 }, logLevel: 'warn' }`): the benchmarks size the rate limits to their load.
   */
  coordinatorConfig?: Record<string, unknown>;
  /** Extra node.yaml fields for every node, merged the same way (e.g. `{ limits: { framesPerSecond: 5000 } }`). */
  nodeConfig?: Record<string, unknown>;
  /**
   * Extra node.yaml fields for one node, merged after `nodeConfig`: called once per node when its config is
   * written, with every member's identity and the node's own KMS account (its endpoint and the principals of its
   * simulated account). A FROST test writes each node's share sealer (a key it creates in the node's account) and
   * the group it expects here, so the nodes start ready for key generation without a restart each.
   */
  nodeConfigOf?: (ctx: {
    index: number;
    nodes: readonly ClusterNodeInfo[];
    kms: { endpoint: string; region: string; admin: KmsPrincipal; node: KmsPrincipal };
  }) => Record<string, unknown> | Promise<Record<string, unknown>>;
  /**
   * How many operator accounts to set up (default 1). Each is a multisig with the same node signers and
   * thresholds, and every one is in the nodes' policy: independent sequence-number lanes for a client that keeps
   * several proposals in flight (a source account's transactions must apply in sequence order).
   */
  operatorAccounts?: number;
  /**
   * The coordinator URL node `nodeId` dials (default: `socketUrl`, the coordinator's own). The chaos harness
   * returns the address of a TCP proxy it can cut, to partition one node from the coordinator. Several URLs (one
   * per coordinator replica) are written as `coordinator.urls`: the node holds a session with each.
   */
  nodeCoordinatorUrl?: (
    nodeId: string,
    socketUrl: string,
  ) => string | readonly string[] | Promise<string | readonly string[]>;
  /** The KMS endpoint node `nodeId` calls (default: its emulator's URL); the chaos harness slows it through a proxy. */
  nodeKmsEndpoint?: (nodeId: string, kmsUrl: string) => string | Promise<string>;
  /**
   * The nodes' policy YAML (default: `demoYaml`, the demo policy). Called once the ledger simulator runs and the
   * operator accounts exist, so a Soroban policy can anchor its ledger clock on the simulator.
   */
  nodePolicy?: (ctx: {
    network: string;
    accounts: readonly string[];
    horizonUrl: string;
    demoYaml: string;
  }) => string | Promise<string>;
  /**
   * The demo policy also lets the nodes sign signer changes on the operator accounts for keys on their rosters
   * (`operations: [payment, setOptions]`, `signerChanges.clusterMembers`), so a rotation or a node change can be
   * approved right after the start (what `cosigner cluster up` runs). Default false: payments only.
   */
  signerChanges?: boolean;
  /**
   * A policy YAML file for every node instead of the demo policy (`cosigner cluster up --policy`). The launcher
   * fills in what only it knows: `network`, `accounts` when the file names none, and the ledger clock. Recorded,
   * so a later start of the same cluster uses it again.
   */
  policyFile?: string;
  /**
   * Anchor `soroban.ledgerClock` of the nodes' policy on the simulator's latest ledger at every start, with
   * `maxCloseSeconds` = the close interval (default true). The node estimates the network's ledger from that
   * anchor; a clock of the real network's 6 s would fall behind the simulator's 200 ms closes by 29 ledgers a
   * minute and refuse every expiration window after a few minutes.
   */
  ledgerClock?: boolean;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** `base` with `extra`'s fields over it; a field that is an object in both is merged one level down. */
export function mergeConfig(
  base: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? { ...b, ...v } : v;
  }
  return out;
}

/** A child process the launcher started and saw ready. */
export interface RunningProcess {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Base URL from the ready file, e.g. http://127.0.0.1:41233 */
  readonly url: string;
  /** Everything the ready file held (url, pid and whatever else the service wrote). */
  readonly ready: Record<string, unknown>;
  /** stdout and stderr so far, for assertions on what a process logged. */
  output(): string;
  /** SIGTERM and wait for exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill9(): Promise<void>;
  /** Resolves with the exit code when the process ends. */
  readonly exited: Promise<number | null>;
}

export interface ClusterProcess extends RunningProcess {
  /** e.g. `kms-0`, `ledger`, `coordinator`, `node-1`. */
  readonly name: string;
  readonly logFile: string;
}

/** One node as the launcher set it up. */
export interface ClusterNodeInfo {
  readonly id: string;
  readonly configFile: string;
  readonly stellarKey: string;
  readonly identityKey: string;
  readonly kmsKeyId: string;
}

/** A proposal as the coordinator reports it (GET /v1/proposals/:id); fields beyond these are kept as-is. */
export interface ProposalView {
  id: string;
  /** pending, signed, submitted, failed, rejected, expired or cancelled. */
  status: string;
  [k: string]: unknown;
}

export interface Cluster {
  readonly dir: string;
  readonly kms: ClusterProcess[];
  readonly ledger: ClusterProcess;
  readonly coordinator: ClusterProcess;
  /** Index i is node i; a killed or restarted node's entry is replaced by its new process. */
  readonly nodes: ClusterProcess[];
  readonly nodeInfo: readonly ClusterNodeInfo[];
  /** The multisig operator account: master weight 0, every signing node's key at weight 1 (`operatorSigners`). */
  readonly account: { id: string; signers: string[]; threshold: number };
  /** Every operator account (`options.operatorAccounts` of them; the first is `account.id`), same signers. */
  readonly operatorAccounts: readonly string[];
  /** True when this start resumed a cluster an earlier start left in `dir` (its `launcher.json`). */
  readonly resumed: boolean;
  /** The nodes' policy file (every node reads the same one; `kill -HUP` a node to reload it). */
  readonly policyFile: string;
  /**
   * Per node (index i is node i): its KMS account's region, its emulator's endpoint, the emulator's accounts file
   * holding the simulated account's credentials at `accountIndex` (the `admin` principal administers keys, `node`
   * signs), and the AWS profile of its key administrator (`kms-<i>-admin`; `kms-<i>-node` is the node's) in the
   * files of `aws`. With one emulator per node (the default) node i's is kms-i, account 0.
   */
  readonly kmsAccounts: readonly {
    region: string;
    endpoint: string;
    accountsFile: string;
    accountIndex: number;
    profile: string;
  }[];
  /**
   * An AWS config file (0600) with a profile per emulator principal (`kms-<i>-admin`, `kms-<i>-node`) for tools on
   * the standard credential chain; its `credential_process` reads the emulator's accounts file.
   */
  readonly aws: { readonly configFile: string };
  /** The coordinator's admin API key (for `authorization: Bearer`); also in `adminKeyFile` (0600). */
  readonly apiKey: string;
  readonly adminKeyFile: string;
  readonly networkPassphrase: string;
  /** Horizon base URL of the ledger simulator. */
  readonly horizonUrl: string;
  readonly horizon: Horizon.Server;
  /** Stop every child: nodes first, then the coordinator, the ledger and the emulators. */
  stop(): Promise<void>;
  /** SIGKILL node i (its data stays). */
  kill9Node(i: number): Promise<void>;
  /**
   * Stop node i if it runs, then start it again with the same config and data; `env` adds to `nodeEnv` for this
   * start only (a test hook armed on one node).
   */
  restartNode(i: number, env?: NodeJS.ProcessEnv): Promise<ClusterProcess>;
  /** The current process of a service: `coordinator`, `ledger`, `kms-<i>` or `node-<i>`. */
  service(name: string): ClusterProcess;
  /** Stop a service, its data kept: SIGKILL (`kill`, the default) or SIGTERM and wait (`term`). */
  stopService(name: string, how?: 'kill' | 'term'): Promise<void>;
  /**
   * Start a service again (stopping it first if it still runs) with the same arguments and data. The coordinator,
   * the ledger and the emulators come back on the port they had, so every URL handed out stays valid; a node
   * starts as `restartNode` starts it.
   */
  startService(name: string): Promise<ClusterProcess>;
  /** A fresh account funded by the friendbot. */
  fundedAccount(): Promise<Keypair>;
  /** The native balance of an account as Horizon prints it (e.g. '10010.0000000'). */
  nativeBalance(accountId: string): Promise<string>;
  /** An unsigned payment from the operator account, valid for `timeoutSeconds` (default 120). */
  paymentXdr(p: { destination: string; amount: string; timeoutSeconds?: number }): Promise<string>;
  /** POST /v1/proposals with submit: true. */
  propose(p: { xdr: string; note?: string; idempotencyKey?: string; submit?: boolean }): Promise<ProposalView>;
  getProposal(id: string): Promise<ProposalView>;
  /** Poll until the proposal has a terminal status (or one of `states`); `onChange` sees each new view. */
  waitForProposal(
    id: string,
    opts?: { states?: string[]; timeoutMs?: number; onChange?: (p: ProposalView) => void },
  ): Promise<ProposalView>;
}

/**
 * Proposal statuses after which nothing changes (docs/architecture.md "A proposal's life", step 6). `signed` is
 * final only for a proposal that was not asked to be submitted; pass it in `states` then.
 */
export const TERMINAL_STATES = ['submitted', 'failed', 'rejected', 'expired', 'cancelled'];

/** Environment for every child: quieter logs, never production (the emulators refuse production mode). */
const CHILD_ENV: NodeJS.ProcessEnv = { NODE_ENV: 'development' };

interface SpawnParams {
  /** The `cosigner` executable to run (`ClusterOptions.cosignerBin`). */
  cosignerBin: string;
  name: string;
  args: string[];
  dir: string;
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs: number;
  signal?: AbortSignal;
  /** Listen on this port instead of 0 (a service restarted where its clients expect it). */
  port?: number;
}

/** The last `n` lines of a log file ('' when it does not exist yet). */
export function tailFile(path: string, n = 20): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return '';
  }
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

/** A child failed to start: the message names it and quotes its last output lines. */
export class ClusterStartError extends Error {
  readonly code = 'TESTKIT_CLUSTER_START_FAILED';
  constructor(
    readonly child: string,
    readonly reason: string,
    readonly lastOutput: string,
    readonly logFile: string,
  ) {
    super(
      `${child} ${reason}. Last output (${logFile}):\n${lastOutput
        .split('\n')
        .map((l) => `  | ${l}`)
        .join('\n')}`,
    );
    this.name = 'ClusterStartError';
  }
}

/**
 * Spawn `cosigner <args> --port 0 --ready-file <dir>/run/<name>.ready.json`, output appended to
 * `<dir>/logs/<name>.log`, and wait for the ready file. The child gets its own process group (detached) so a
 * terminal's Ctrl-C reaches only the launcher, which then stops the children in order.
 */
export async function spawnService(p: SpawnParams): Promise<ClusterProcess> {
  const runDir = join(p.dir, 'run');
  const logDir = join(p.dir, 'logs');
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  await mkdir(logDir, { recursive: true, mode: 0o700 });
  const readyFile = join(runDir, `${p.name}.ready.json`);
  const logFile = join(logDir, `${p.name}.log`);
  await rm(readyFile, { force: true });
  const fd = openSync(logFile, 'a', 0o600);
  let proc: ChildProcess;
  try {
    proc = spawn(
      process.execPath,
      [...SERVICE_V8_FLAGS, p.cosignerBin, ...p.args, '--port', String(p.port ?? 0), '--ready-file', readyFile],
      {
        env: { ...process.env, ...CHILD_ENV, ...p.env },
        stdio: ['ignore', fd, fd],
        detached: true,
      },
    );
  } finally {
    closeSync(fd);
  }
  let done = false;
  const exited = new Promise<number | null>((res) => {
    proc.once('exit', (code, signal) => {
      done = true;
      res(code ?? (signal ? null : 0));
    });
  });
  const deadline = Date.now() + p.readyTimeoutMs;
  let ready: Record<string, unknown> | undefined;
  while (!ready) {
    if (done) throw new ClusterStartError(p.name, 'exited before it was ready', tailFile(logFile), logFile);
    if (p.signal?.aborted) {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`start of ${p.name} interrupted`);
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      throw new ClusterStartError(p.name, `was not ready within ${p.readyTimeoutMs} ms`, tailFile(logFile), logFile);
    }
    try {
      ready = JSON.parse(await readFile(readyFile, 'utf8')) as Record<string, unknown>;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const stop = async (graceMs = 5_000): Promise<number | null> => {
    if (done) return exited;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  return {
    name: p.name,
    logFile,
    proc,
    pid: proc.pid as number,
    url: String(ready.url),
    ready,
    output: () => tailFile(logFile, 10_000),
    stop,
    kill9: async () => {
      if (!done) proc.kill('SIGKILL');
      await exited;
    },
    exited,
  };
}

export interface KmsPrincipal {
  name: string;
  role: string;
  accessKeyId: string;
  secretAccessKey: string;
  arn?: string;
}
interface KmsAccount {
  name: string;
  accountId: string;
  region: string;
  principals: KmsPrincipal[];
}

function principal(acct: KmsAccount, role: string, emulator: string): KmsPrincipal {
  const p = acct.principals.find((x) => x.role === role);
  if (!p) throw new Error(`${emulator}: its accounts file has no '${role}' principal`);
  return p;
}

function kmsClient(endpoint: string, region: string, p: KmsPrincipal): KMSClient {
  return new KMSClient({
    endpoint,
    region,
    credentials: { accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey },
    maxAttempts: 3,
  });
}

/**
 * Create the node's Ed25519 signing key with the account's admin credentials, then read its public key with
 * the node's own credentials (proving the node can use it). KMS returns DER SubjectPublicKeyInfo: the raw key
 * is the last 32 bytes: a 12-byte DER prefix (RFC 8410 section 4) and the 32-byte key.
 */
async function createNodeKey(
  endpoint: string,
  acct: KmsAccount,
  emulator: string,
): Promise<{ keyId: string; stellarKey: string; node: KmsPrincipal }> {
  const admin = kmsClient(endpoint, acct.region, principal(acct, 'admin', emulator));
  const node = principal(acct, 'node', emulator);
  try {
    const created = await admin.send(
      new CreateKeyCommand({
        KeySpec: 'ECC_NIST_EDWARDS25519',
        KeyUsage: 'SIGN_VERIFY',
        Description: 'stellar-cosigner node signing key (cluster launcher)',
      }),
    );
    const keyId = created.KeyMetadata?.KeyId;
    if (!keyId) throw new Error(`${emulator}: CreateKey returned no KeyId`);
    const reader = kmsClient(endpoint, acct.region, node);
    try {
      const pub = await reader.send(new GetPublicKeyCommand({ KeyId: keyId }));
      const spki = Buffer.from(pub.PublicKey ?? new Uint8Array());
      if (spki.length !== 44) throw new Error(`${emulator}: GetPublicKey returned ${spki.length} bytes, not 44`);
      return { keyId, stellarKey: StrKey.encodeEd25519PublicKey(spki.subarray(12)), node };
    } finally {
      reader.destroy();
    }
  } finally {
    admin.destroy();
  }
}

/**
 * The policy every launcher node runs (packages/policy schema): native payments from the operator account up to
 * `maxXlm` each, within a daily velocity, nothing else. A payment above the maximum is refused with a reason.
 * Fees are capped as production requires (0.1 XLM per transaction and per fee bump: a thousand times the base
 * fee of a one-operation payment), and count toward the velocity.
 */
export function demoPolicyYaml(p: {
  network: string;
  account: string;
  maxXlm: string;
  extraAccounts?: string[];
  /** Also sign signer changes on these accounts for keys on the node's roster, never below `threshold`. */
  signerChanges?: { threshold: number };
}): string {
  const accounts = [p.account, ...(p.extraAccounts ?? [])];
  return toYaml({
    version: 1,
    network: p.network,
    accounts,
    operations: p.signerChanges ? ['payment', 'setOptions'] : ['payment'],
    assets: [{ asset: 'native', maxPerTx: p.maxXlm, velocity: [{ window: '24h', max: '1000000' }] }],
    fees: { maxFee: '1000000', maxFeeBump: '1000000' },
    validity: { maxWindowSeconds: 300 },
    ...(p.signerChanges
      ? {
          signerChanges: {
            accounts,
            // Keys on this node's roster (the launcher enrols every member) and its own: rotations, node changes.
            clusterMembers: true,
            maxWeight: 1,
            minThresholds: {
              low: p.signerChanges.threshold,
              medium: p.signerChanges.threshold,
              high: p.signerChanges.threshold,
            },
          },
        }
      : {}),
  });
}

async function httpJson(
  url: string,
  init: { method?: string; body?: unknown; apiKey?: string } = {},
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(init.apiKey ? { authorization: `Bearer ${init.apiKey}` } : {}),
    },
    body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON (e.g. a proxy error page): keep the text for the error message.
  }
  return { status: res.status, body };
}

/**
 * The `coordinator` section of a node.yaml: `url` for one coordinator (what every config written before replicas
 * existed says), `urls` for several replicas; the node holds one session per URL (services/cosigner session.ts).
 */
export function nodeCoordinatorSection(
  urls: string | readonly string[],
  publicKeys: readonly string[],
): { url: string; publicKeys: string[] } | { urls: string[]; publicKeys: string[] } {
  const list = typeof urls === 'string' ? [urls] : [...urls];
  if (list.length === 0) throw new Error('a node needs at least one coordinator URL');
  return list.length === 1
    ? { url: list[0]!, publicKeys: [...publicKeys] }
    : { urls: list, publicKeys: [...publicKeys] };
}

/**
 * The coordinator base URL a node dials, from its HTTP URL: same host and port, ws(s) scheme. The node adds
 * the path itself (`v1/nodes/connect`, services/cosigner/src/session.ts).
 */
export function nodeSocketUrl(coordinatorUrl: string): string {
  const u = new URL(coordinatorUrl);
  return `${u.protocol === 'https:' ? 'wss:' : 'ws:'}//${u.host}`;
}

/**
 * The `credential_process` of the development cluster's AWS profiles: prints the credentials of one principal
 * (`admin` or `node`) of an emulator's accounts file in the shape the AWS SDK and CLI expect (Version 1).
 */
const CREDENTIAL_PROCESS_SCRIPT = `import { readFileSync } from 'node:fs';
const [file, role, index = '0'] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, 'utf8')).accounts[Number(index)].principals.find((x) => x.role === role);
if (!p) { process.stderr.write('no ' + role + ' principal in ' + file + '\\n'); process.exit(1); }
process.stdout.write(JSON.stringify({ Version: 1, AccessKeyId: p.accessKeyId, SecretAccessKey: p.secretAccessKey }));
`;

/** One line on what the account-setup checks found (the launcher reports it; the CLI's account setup refuses it). */
export function setupWarning(s: SetupSafety): string {
  const problems = s.lockout.problems.map((p) => `${p.field}: ${p.message}`);
  const disjoint = s.quorums.disjoint.map(
    (d) => `thresholds.${d.level} ${d.threshold}: {${d.first.join(', ')}} and {${d.second.join(', ')}} each reach it`,
  );
  return [...problems, ...disjoint].join('; ');
}

/** The file under a cluster's directory that lets a later start resume it (see `LauncherState`). */
export const LAUNCHER_STATE_FILE = 'launcher.json';
/** Stellar's cap on an account's signers besides the master key (stellar-core SetOptionsOpFrame, MAX_SIGNERS). */
const MAX_ACCOUNT_SIGNERS = 20;
/** The largest cluster the launcher starts (a FROST group may exceed the signer cap: it is one signer). */
const MAX_NODES = 64;
/** The KMS emulator holds at most this many accounts (`kms-emulator --accounts`). */
const MAX_EMULATOR_ACCOUNTS = 26;

/**
 * What the launcher needs to start the same cluster again in the same directory: the node keys it created, the
 * accounts it set up, the ports its services had. Written durably (fsync, rename, fsync of the directory) after
 * each step of a first start, so a stop at any moment (Ctrl-C, SIGTERM, SIGHUP, kill -9, a power cut) leaves a
 * record of everything that exists: the next start reuses it instead of creating new keys, which is what made a
 * second `pnpm start` fail before (the nodes' keyrings reopened the keys they had recorded).
 */
export interface LauncherState {
  version: 1;
  nodes: number;
  threshold: number;
  closeMs: number;
  /** How many nodes sign for the operator accounts, when not all (ClusterOptions.operatorSigners). */
  operatorSigners?: number;
  /** How many KMS emulators the nodes share, when not one each (ClusterOptions.kmsEmulators). */
  kmsEmulators?: number;
  /** Index i is node i's key: created once in its own emulator account, reused by every later start. */
  keys: { keyId: string; stellarKey: string; region: string; signer?: string }[];
  /** The operator accounts set up so far (the first is the payments account). */
  accounts: string[];
  /** The port each service listened on last time; a restart asks for the same one (URLs stay valid). */
  ports: Record<string, number>;
  /** The policy file the cluster was started with (`cosigner cluster up --policy`), used again on resume. */
  policyFile?: string;
}

/**
 * The cluster under a directory cannot be resumed. The message is one sentence saying why and how to start over;
 * `cosigner cluster up --fresh` says what it discards.
 */
export class ClusterResumeError extends Error {
  readonly code = 'TESTKIT_CLUSTER_RESUME_FAILED';
  constructor(
    readonly dir: string,
    readonly why: string,
  ) {
    super(
      `the cluster under ${dir} cannot be resumed: ${why}; start over with \`cosigner cluster up --fresh\`, which ` +
        'deletes that directory: its KMS keys, ledger, accounts, coordinator and node histories',
    );
    this.name = 'ClusterResumeError';
  }
}

/** Write a file so that after a crash or a power cut it holds either the old or the new content, whole. */
export function writeFileDurably(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // rename(2) is atomic; the directory's own fsync makes the new name survive a power cut (rename(2), fsync(2)).
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * The launcher state under `dir`: undefined for a directory no cluster ran in.
 * @throws ClusterResumeError when the directory holds a cluster without a readable state (a launcher from before
 *   resuming existed, or a torn file)
 */
export async function readLauncherState(dir: string): Promise<LauncherState | undefined> {
  const file = join(dir, LAUNCHER_STATE_FILE);
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text === undefined) {
    const entries = await readdir(dir).catch(() => [] as string[]);
    const ran = entries.some((x) => /^(node|kms)-\d+$/.test(x) || x === 'ledger' || x === 'coordinator');
    if (ran) throw new ClusterResumeError(dir, `it holds a cluster but no ${LAUNCHER_STATE_FILE} to resume it from`);
    return undefined;
  }
  let state: LauncherState;
  try {
    state = JSON.parse(text) as LauncherState;
    if (state.version !== 1 || !Array.isArray(state.keys) || !Array.isArray(state.accounts)) throw new Error('shape');
  } catch {
    throw new ClusterResumeError(dir, `${file} is not a launcher state this launcher wrote`);
  }
  return state;
}

/** A policy YAML with the launcher's parts filled in: network, accounts when absent, the ledger clock. */
export function fillPolicy(
  yamlText: string,
  p: { network: string; accounts: readonly string[]; clock?: { ledger: number; closedAt: number; closeMs: number } },
): string {
  const doc = parseYaml(yamlText) as Record<string, unknown> | null;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new Error('the policy must be a YAML mapping');
  doc.network ??= p.network;
  if (!Array.isArray(doc.accounts) || doc.accounts.length === 0) doc.accounts = [...p.accounts];
  if (p.clock) {
    const soroban = isPlainObject(doc.soroban) ? doc.soroban : {};
    const given = isPlainObject(soroban.ledgerClock) ? soroban.ledgerClock : {};
    soroban.ledgerClock = {
      ledger: p.clock.ledger,
      // One second later than the close: the anchor's time is whole seconds, and a later anchor keeps the node's
      // estimate of the current ledger a lower bound (policy ledgerLowerBound).
      closedAt: p.clock.closedAt + 1,
      maxCloseSeconds: typeof given.maxCloseSeconds === 'number' ? given.maxCloseSeconds : p.clock.closeMs / 1000,
    };
    doc.soroban = soroban;
  }
  return toYaml(doc);
}

/**
 * Start a whole cluster under `opts.dir` and set up the multisig account. On any failure every child already
 * started is stopped before the error (a ClusterStartError naming the child) is thrown.
 */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // A directory a cluster ran in before: resume that cluster (its keys, accounts, ledger and histories).
  const previous = await readLauncherState(dir);
  const n = opts.nodes ?? previous?.nodes ?? 3;
  const threshold = opts.threshold ?? previous?.threshold ?? 2;
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES) throw new Error(`nodes must be 1..${MAX_NODES}, got ${n}`);
  const signing = opts.operatorSigners ?? previous?.operatorSigners ?? n;
  if (!Number.isInteger(signing) || signing < 1 || signing > Math.min(n, MAX_ACCOUNT_SIGNERS)) {
    throw new Error(
      `operatorSigners must be 1..${Math.min(n, MAX_ACCOUNT_SIGNERS)} (a Stellar account holds at most ${MAX_ACCOUNT_SIGNERS} signers), got ${signing}`,
    );
  }
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > signing) {
    throw new Error(`threshold must be 1..${signing} (one weight per signing node), got ${threshold}`);
  }
  const emulators = opts.kmsEmulators ?? previous?.kmsEmulators ?? n;
  const perEmulator = Math.ceil(n / emulators);
  if (!Number.isInteger(emulators) || emulators < 1 || emulators > n || perEmulator > MAX_EMULATOR_ACCOUNTS) {
    throw new Error(
      `kmsEmulators must be 1..${n} with at most ${MAX_EMULATOR_ACCOUNTS} nodes to an emulator, got ${emulators}`,
    );
  }
  const operators = opts.operatorAccounts ?? 1;
  if (!Number.isInteger(operators) || operators < 1 || operators > 64) {
    throw new Error(`operatorAccounts must be 1..64, got ${operators}`);
  }
  if (
    previous &&
    (previous.nodes !== n ||
      previous.threshold !== threshold ||
      (previous.operatorSigners ?? n) !== signing ||
      (previous.kmsEmulators ?? n) !== emulators)
  ) {
    const shape = (t: number, nodes: number, s: number, e: number): string =>
      `${t}-of-${nodes} cluster${s !== nodes ? ` (${s} signing for the operator accounts)` : ''}${e !== nodes ? ` on ${e} KMS emulators` : ''}`;
    throw new ClusterResumeError(
      dir,
      `it is a ${shape(previous.threshold, previous.nodes, previous.operatorSigners ?? previous.nodes, previous.kmsEmulators ?? previous.nodes)}, not the ${shape(threshold, n, signing, emulators)} asked for (start it without --nodes and --threshold to resume it)`,
    );
  }
  const closeMs = opts.closeMs ?? previous?.closeMs ?? 200;
  const policySource = opts.policyFile !== undefined ? resolve(opts.policyFile) : previous?.policyFile;
  const state: LauncherState = previous ?? {
    version: 1,
    nodes: n,
    threshold,
    closeMs,
    keys: [],
    accounts: [],
    ports: {},
    ...(signing !== n ? { operatorSigners: signing } : {}),
    ...(emulators !== n ? { kmsEmulators: emulators } : {}),
  };
  state.closeMs = closeMs;
  if (policySource !== undefined) state.policyFile = policySource;
  const record = (): void => writeFileDurably(join(dir, LAUNCHER_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
  const step = opts.onStep ?? (() => {});
  if (previous) step(`resuming the ${threshold}-of-${n} cluster recorded in ${join(dir, LAUNCHER_STATE_FILE)}`);

  const started: ClusterProcess[] = [];
  const launch = async (name: string, args: string[], env?: NodeJS.ProcessEnv): Promise<ClusterProcess> => {
    if (opts.signal?.aborted) throw new Error('cluster start interrupted');
    const spawnAt = (port: number | undefined): Promise<ClusterProcess> =>
      spawnService({ cosignerBin: opts.cosignerBin, name, args, dir, env, readyTimeoutMs, signal: opts.signal, port });
    let p: ClusterProcess;
    const port = state.ports[name];
    try {
      p = await spawnAt(port);
    } catch (e) {
      // The port it had is taken by something else now: any free one will do (the URLs printed change).
      if (port === undefined || !(e instanceof ClusterStartError) || !/EADDRINUSE/.test(e.lastOutput)) throw e;
      step(`${name}: port ${port} is in use; taking another`);
      p = await spawnAt(undefined);
    }
    started.push(p);
    state.ports[name] = Number(new URL(p.url).port);
    step(`${name} ready at ${p.url} (pid ${p.pid})`);
    return p;
  };
  const stopAll = async (procs: ClusterProcess[]): Promise<void> => {
    // Reverse dependency order: nodes, coordinator, ledger, emulators.
    const rank = (p: ClusterProcess): number =>
      p.name.startsWith('node-') ? 0 : p.name === 'coordinator' ? 1 : p.name === 'ledger' ? 2 : 3;
    for (const r of [0, 1, 2, 3]) await Promise.all(procs.filter((p) => rank(p) === r).map((p) => p.stop()));
  };

  try {
    step(`starting ${emulators} KMS emulators and the ledger simulator`);
    const ledgerArgs = ['ledger-sim', '--data-dir', join(dir, 'ledger'), '--close-ms', String(closeMs)];
    // Emulator e holds the accounts of nodes e, e + emulators, ...: node i's is account floor(i / emulators).
    const kmsArgs = (e: number): string[] => [
      'kms-emulator',
      '--data-dir',
      join(dir, `kms-${e}`),
      '--accounts',
      String(Math.ceil((n - e) / emulators)),
    ];
    const ledgerStart = launch('ledger', ledgerArgs);
    const kmsStarts = Array.from({ length: emulators }, (_, e) => launch(`kms-${e}`, kmsArgs(e)));
    const [ledger, ...kms] = (await settleAll([ledgerStart, ...kmsStarts])) as [ClusterProcess, ...ClusterProcess[]];
    const networkPassphrase = String(ledger.ready.networkPassphrase);
    const horizonUrl = ledger.url;
    const horizon = new Horizon.Server(horizonUrl, { allowHttp: true });

    // Node keys and identities first, so both the coordinator's enrolment and the node configs can be written
    // before either starts. A key recorded by an earlier start is used again: the node's keyring holds it.
    const coordDir = join(dir, 'coordinator');
    const message = await loadOrCreateIdentity(join(coordDir, 'message-key.pem'));
    const nodeInfo: ClusterNodeInfo[] = [];
    const nodeKms: {
      endpoint: string;
      region: string;
      keyId: string;
      node: KmsPrincipal;
      account: KmsAccount;
      accountsFile: string;
      accountIndex: number;
    }[] = [];
    let created = 0;
    for (let i = 0; i < n; i++) {
      const emulator = kms[i % emulators]!;
      const accountIndex = Math.floor(i / emulators);
      const file = String(emulator.ready.accountsFile);
      const accounts = (JSON.parse(await readFile(file, 'utf8')) as { accounts: KmsAccount[] }).accounts;
      const acct = accounts[accountIndex];
      if (!acct) throw new Error(`${emulator.name}: its accounts file ${file} lists no account ${accountIndex}`);
      let key = state.keys[i];
      if (!key) {
        const made = await createNodeKey(emulator.url, acct, emulator.name);
        key = { keyId: made.keyId, stellarKey: made.stellarKey, region: acct.region };
        state.keys[i] = key;
        record();
        created += 1;
      }
      const nodeDir = join(dir, `node-${i}`);
      const { identity } = await loadOrCreateIdentity(join(nodeDir, 'identity.pem'));
      nodeKms.push({
        endpoint: emulator.url,
        region: key.region,
        keyId: key.keyId,
        node: principal(acct, 'node', emulator.name),
        account: acct,
        accountsFile: file,
        accountIndex,
      });
      nodeInfo.push({
        id: `node-${i}`,
        configFile: join(nodeDir, 'node.yaml'),
        stellarKey: key.signer ?? key.stellarKey,
        identityKey: identity.publicKeyB64,
        kmsKeyId: key.keyId,
      });
    }
    // One AWS config file (INI, 0600) with a profile per principal of every emulator's account: with
    // AWS_CONFIG_FILE pointing here, `AWS_PROFILE=kms-0-admin` gives a tool on the standard credential chain
    // (`cosigner rotate`) the key administrator of node 0's simulated account, as an AWS_PROFILE does in production.
    // The credentials stay in the emulator's accounts file only: each profile's `credential_process` (AWS CLI and
    // SDK "Sourcing credentials with an external process") reads them from there when a tool asks.
    const awsDir = join(dir, 'aws');
    await mkdir(awsDir, { recursive: true, mode: 0o700 });
    const reader = join(awsDir, 'credential-process.mjs');
    await writeFile(reader, CREDENTIAL_PROCESS_SCRIPT, { mode: 0o600 });
    const q = (x: string): string => `"${x.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
    const profiles: string[] = [];
    for (let i = 0; i < n; i++) {
      const file = nodeKms[i]!.accountsFile;
      const acct = (JSON.parse(await readFile(file, 'utf8')) as { accounts: KmsAccount[] }).accounts[
        nodeKms[i]!.accountIndex
      ]!;
      for (const p of acct.principals) {
        profiles.push(
          `[profile kms-${i}-${p.role}]\nregion = ${acct.region}\n` +
            `credential_process = ${q(process.execPath)} ${q(reader)} ${q(file)} ${p.role} ${nodeKms[i]!.accountIndex}\n`,
        );
      }
    }
    const awsConfigFile = join(awsDir, 'config');
    await writeFile(awsConfigFile, profiles.join('\n'), { mode: 0o600 });
    if (created > 0) step(`created ${created} node keys in ${created} separate KMS accounts (${emulators} emulators)`);
    if (created < n) step(`reusing ${n - created} node keys recorded by an earlier start`);

    // The operator accounts: each funded by the friendbot, then one setOptions transaction signed by its master key
    // adds every node's key at weight 1, sets low/med/high to the threshold and the master weight to 0, so from
    // here on only a quorum of nodes can move its funds (setOptions that changes signers or thresholds is a high-threshold operation: stellar-core SetOptionsOpFrame::getThresholdLevel).
    // Accounts recorded by an earlier start must still be on the ledger (its snapshot) to be resumed.
    for (const id of state.accounts) {
      try {
        await horizon.loadAccount(id);
      } catch (e) {
        const status = (e as { response?: { status?: number } }).response?.status;
        if (status !== 404) throw e;
        throw new ClusterResumeError(dir, `the ledger no longer holds its operator account ${id}`);
      }
    }
    const setupOperator = async (): Promise<string> => {
      const master = Keypair.random();
      await friendbot(horizonUrl, master.publicKey());
      const { tx, safety } = signedFreshSetup(
        await horizon.loadAccount(master.publicKey()),
        master,
        {
          signers: nodeInfo.slice(0, signing).map((x) => ({ key: x.stellarKey, weight: 1, node: x.id })),
          thresholds: { low: threshold, med: threshold, high: threshold },
        },
        { networkPassphrase, fee: '100', timeoutSeconds: 60 },
      );
      // A development cluster may be 1-of-n or one node: said, not refused (`cosigner account setup` refuses it).
      if (!safety.ok) step(`warning: ${master.publicKey()}: ${setupWarning(safety)}`);
      await horizon.submitTransaction(tx);
      return master.publicKey();
    };
    const before = state.accounts.length;
    while (state.accounts.length < operators) {
      state.accounts.push(await setupOperator());
      record();
    }
    const operatorAccounts = state.accounts.slice(0, Math.max(operators, state.accounts.length));
    const account = {
      id: operatorAccounts[0]!,
      signers: nodeInfo.slice(0, signing).map((x) => x.stellarKey),
      threshold,
    };
    if (before === 0) step(`operator account ${account.id}: ${threshold}-of-${signing} multisig, master weight 0`);
    else step(`operator account ${account.id} (recorded)`);
    if (operatorAccounts.length > 1)
      step(`${operatorAccounts.length - 1} more operator accounts with the same signers`);

    const coordConfig = join(coordDir, 'coordinator.yaml');
    await writeFile(
      coordConfig,
      toYaml(
        mergeConfig(
          {
            network: networkPassphrase,
            horizonUrl,
            messageKeyFile: join(coordDir, 'message-key.pem'),
            nodes: nodeInfo.map((x) => ({ id: x.id, identityKey: x.identityKey, stellarKey: x.stellarKey })),
            // Tests and the demo poll proposals several times a second; the default per-key rate is for real clients.
            limits: { ratePerSecond: 500, rateBurst: 1000 },
          },
          opts.coordinatorConfig,
        ),
      ),
      { mode: 0o600 },
    );
    const coordArgs = ['coordinator', '--config', coordConfig, '--data-dir', coordDir];
    const coordinator = await launch('coordinator', coordArgs);
    const adminKeyFile = String(coordinator.ready.adminKeyFile ?? join(coordDir, 'admin.key'));
    const apiKey = (await readFile(adminKeyFile, 'utf8')).trim();
    const coordinatorKey = String(coordinator.ready.messageKey ?? message.identity.publicKeyB64);

    const policyFile = join(dir, 'policy.yaml');
    const demoYaml = demoPolicyYaml({
      network: networkPassphrase,
      account: account.id,
      maxXlm: opts.maxPaymentXlm ?? '1000',
      extraAccounts: operatorAccounts.slice(1),
      ...(opts.signerChanges ? { signerChanges: { threshold } } : {}),
    });
    let policyYaml = opts.nodePolicy
      ? await opts.nodePolicy({ network: networkPassphrase, accounts: operatorAccounts, horizonUrl, demoYaml })
      : demoYaml;
    if (policySource !== undefined && !opts.nodePolicy) {
      policyYaml = await readFile(policySource, 'utf8').catch((e: unknown) => {
        throw new Error(`cannot read the policy file ${policySource}: ${(e as Error).message}`);
      });
    }
    let clock: { ledger: number; closedAt: number; closeMs: number } | undefined;
    if (opts.ledgerClock !== false) {
      // Anchored afresh at every start: the simulator's ledger numbers and its close times are known only now.
      const latest = (await horizon.ledgers().order('desc').limit(1).call()).records[0];
      if (latest) {
        clock = { ledger: latest.sequence, closedAt: Math.floor(Date.parse(latest.closed_at) / 1000), closeMs };
      }
    }
    if (clock || policySource !== undefined) {
      policyYaml = fillPolicy(policyYaml, { network: networkPassphrase, accounts: operatorAccounts, clock });
    }
    if (clock) step(`ledger clock anchored at ledger ${clock.ledger}, ${closeMs / 1000} s per ledger`);
    await writeFile(policyFile, policyYaml, { mode: 0o600 });
    record();
    for (let i = 0; i < n; i++) {
      const k = nodeKms[i]!;
      const info = nodeInfo[i]!;
      const socketUrl = nodeSocketUrl(coordinator.url);
      const coordinatorUrl = opts.nodeCoordinatorUrl ? await opts.nodeCoordinatorUrl(info.id, socketUrl) : socketUrl;
      const kmsEndpoint = opts.nodeKmsEndpoint ? await opts.nodeKmsEndpoint(info.id, k.endpoint) : k.endpoint;
      await writeFile(
        info.configFile,
        toYaml(
          mergeConfig(
            {
              mode: 'development',
              nodeId: info.id,
              dataDir: join(dir, `node-${i}`),
              coordinator: nodeCoordinatorSection(coordinatorUrl, [coordinatorKey]),
              identityKeyFile: join(dir, `node-${i}`, 'identity.pem'),
              network: networkPassphrase,
              key: {
                type: 'aws-kms',
                keyId: k.keyId,
                region: k.region,
                endpoint: kmsEndpoint,
                credentials: { accessKeyId: k.node.accessKeyId, secretAccessKey: k.node.secretAccessKey },
                expectedAddress: state.keys[i]!.stellarKey,
              },
              policy: policyFile,
            },
            mergeConfig(
              opts.nodeConfig ?? {},
              opts.nodeConfigOf
                ? await opts.nodeConfigOf({
                    index: i,
                    nodes: nodeInfo,
                    kms: {
                      endpoint: k.endpoint,
                      region: k.region,
                      admin: principal(k.account, 'admin', `kms-${i % emulators}`),
                      node: k.node,
                    },
                  })
                : undefined,
            ),
          ),
        ),
        { mode: 0o600 },
      );
    }
    const nodeArgs = (i: number): string[] => ['node', '--config', nodeInfo[i]!.configFile];
    const nodes = await settleAll(nodeInfo.map((x, i) => launch(x.id, nodeArgs(i), opts.nodeEnv)));
    // A node rotated since the coordinator last enrolled it signs with the key its keyring holds: enrol that one
    // (what `cosigner rotate` does at its `registry` step), and remember it for the next start's coordinator.yaml.
    for (const [i, p] of nodes.entries()) {
      const signer = String(p.ready.stellarKey ?? '');
      const info = nodeInfo[i]!;
      if (!StrKey.isValidEd25519PublicKey(signer) || signer === info.stellarKey) continue;
      const res = await httpJson(`${coordinator.url}/v1/nodes/${info.id}/stellar-key`, {
        method: 'PUT',
        apiKey,
        body: { stellarKey: signer },
      });
      if (res.status !== 200) throw new Error(`PUT /v1/nodes/${info.id}/stellar-key answered ${res.status}`);
      step(`${info.id} signs with ${signer} (rotated); the coordinator enrols that key`);
      nodeInfo[i] = { ...info, stellarKey: signer };
      state.keys[i]!.signer = signer;
    }
    account.signers.splice(0, account.signers.length, ...nodeInfo.slice(0, signing).map((x) => x.stellarKey));
    record();

    await waitForNodes(
      coordinator.url,
      apiKey,
      nodeInfo.map((x) => x.id),
      readyTimeoutMs,
    );
    step(`all ${n} nodes connected to the coordinator`);
    // Each node's roster accepts every member's key (its own operator's act in production: setup.md step 5), so a
    // signer change among the members can be approved right away. Idempotent: a resumed start adds nothing.
    // A node configured with an admin token (opts.nodeConfig.admin.tokenFile) is called with it, as its operator would.
    const tokenFile = (opts.nodeConfig?.admin as { tokenFile?: unknown } | undefined)?.tokenFile;
    const adminToken = typeof tokenFile === 'string' ? (await readFile(tokenFile, 'utf8')).trim() : undefined;
    for (const [i, p] of nodes.entries()) {
      for (const [j, x] of nodeInfo.entries()) {
        if (i === j) continue;
        const res = await httpJson(`${p.url}/v1/roster`, {
          method: 'POST',
          body: { address: x.stellarKey, nodeId: x.id, by: 'cluster-launcher' },
          ...(adminToken ? { apiKey: adminToken } : {}),
        });
        if (res.status !== 200) throw new Error(`${p.name}: POST /v1/roster answered ${res.status}`);
      }
    }
    if (n > 1) step(`each node's roster lists the other ${n - 1} members' keys`);

    // How each service other than the nodes was started, so it can start again where its clients expect it.
    const serviceArgs = new Map<string, string[]>([
      ['coordinator', coordArgs],
      ['ledger', ledgerArgs],
      ...kms.map((p, i): [string, string[]] => [p.name, kmsArgs(i)]),
    ]);
    const nodeIndex = (name: string): number => {
      const i = nodeInfo.findIndex((x) => x.id === name);
      if (i < 0) throw new RangeError(`no service '${name}': the cluster has ${serviceNames().join(', ')}`);
      return i;
    };
    const serviceNames = (): string[] => [...serviceArgs.keys(), ...nodeInfo.map((x) => x.id)];
    const current = (name: string): ClusterProcess => {
      if (name === 'coordinator') return cluster.coordinator;
      if (name === 'ledger') return cluster.ledger;
      const k = cluster.kms.find((p) => p.name === name);
      return k ?? nodeAt(nodeIndex(name));
    };
    const replace = (p: ClusterProcess): void => {
      const c = cluster as Mutable<Cluster>;
      if (p.name === 'coordinator') c.coordinator = p;
      else if (p.name === 'ledger') c.ledger = p;
      else cluster.kms[cluster.kms.findIndex((x) => x.name === p.name)] = p;
    };
    const nodeAt = (i: number): ClusterProcess => {
      const p = cluster.nodes[i];
      if (!p) throw new RangeError(`no node ${i}: the cluster has nodes 0..${cluster.nodes.length - 1}`);
      return p;
    };
    const cluster: Cluster = {
      dir,
      kms,
      ledger,
      coordinator,
      nodes,
      nodeInfo,
      account,
      operatorAccounts,
      resumed: previous !== undefined,
      policyFile,
      kmsAccounts: nodeKms.map((k, i) => ({
        region: k.region,
        endpoint: k.endpoint,
        accountsFile: k.accountsFile,
        accountIndex: k.accountIndex,
        profile: `kms-${i}-admin`,
      })),
      aws: { configFile: awsConfigFile },
      apiKey,
      adminKeyFile,
      networkPassphrase,
      horizonUrl,
      horizon,
      stop: async () => {
        await stopAll([...cluster.nodes, cluster.coordinator, cluster.ledger, ...cluster.kms]);
        await rm(join(dir, 'cluster.json'), { force: true });
      },
      kill9Node: async (i) => {
        await nodeAt(i).kill9();
      },
      restartNode: async (i, env) => {
        await nodeAt(i).stop();
        const p = await spawnService({
          cosignerBin: opts.cosignerBin,
          name: nodeAt(i).name,
          args: nodeArgs(i),
          dir,
          env: env ? { ...opts.nodeEnv, ...env } : opts.nodeEnv,
          readyTimeoutMs,
        });
        cluster.nodes[i] = p;
        await writeClusterFile(cluster);
        await waitForNodes(coordinator.url, apiKey, [p.name], readyTimeoutMs);
        return p;
      },
      service: (name) => current(name),
      stopService: async (name, how = 'kill') => {
        const p = current(name);
        if (how === 'kill') await p.kill9();
        else await p.stop();
      },
      startService: async (name) => {
        const args = serviceArgs.get(name);
        if (!args) return cluster.restartNode(nodeIndex(name));
        const old = current(name);
        await old.stop();
        const p = await spawnService({
          cosignerBin: opts.cosignerBin,
          name,
          args,
          dir,
          readyTimeoutMs,
          port: Number(new URL(old.url).port),
        });
        replace(p);
        await writeClusterFile(cluster);
        return p;
      },
      fundedAccount: async () => {
        const kp = Keypair.random();
        await friendbot(horizonUrl, kp.publicKey());
        return kp;
      },
      nativeBalance: async (id) => {
        const a = await horizon.loadAccount(id);
        return a.balances.find((b) => b.asset_type === 'native')?.balance ?? '0';
      },
      paymentXdr: async ({ destination, amount, timeoutSeconds }) => {
        const src = await horizon.loadAccount(account.id);
        return new TransactionBuilder(src, { fee: '100', networkPassphrase })
          .addOperation(Operation.payment({ destination, asset: Asset.native(), amount }))
          .setTimeout(timeoutSeconds ?? 120)
          .build()
          .toXDR();
      },
      propose: async ({ xdr, note, idempotencyKey, submit }) => {
        const res = await httpJson(`${coordinator.url}/v1/proposals`, {
          method: 'POST',
          apiKey,
          body: {
            xdr,
            submit: submit ?? true,
            idempotencyKey: idempotencyKey ?? `launcher-${Date.now()}-${Math.random().toString(36).slice(2)}`,
            ...(note ? { note } : {}),
          },
        });
        if (res.status >= 300) {
          throw new Error(`POST /v1/proposals answered ${res.status}: ${JSON.stringify(res.body)}`);
        }
        return res.body as ProposalView;
      },
      getProposal: async (id) => {
        const res = await httpJson(`${coordinator.url}/v1/proposals/${encodeURIComponent(id)}`, { apiKey });
        if (res.status !== 200) throw new Error(`GET /v1/proposals/${id} answered ${res.status}`);
        return res.body as ProposalView;
      },
      waitForProposal: async (id, w = {}) => {
        const states = w.states ?? TERMINAL_STATES;
        const deadline = Date.now() + (w.timeoutMs ?? 30_000);
        let last = '';
        for (;;) {
          const p = await cluster.getProposal(id);
          const seen = JSON.stringify(p);
          if (seen !== last) {
            last = seen;
            w.onChange?.(p);
          }
          if (states.includes(p.status)) return p;
          if (Date.now() > deadline) {
            throw new Error(`proposal ${id} is still '${p.status}' after ${w.timeoutMs ?? 30_000} ms: ${seen}`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      },
    };
    await writeClusterFile(cluster);
    return cluster;
  } catch (e) {
    await stopAll(started);
    throw e;
  }
}

/**
 * Like Promise.all, but waits for every launch to settle before rejecting, so no child that was still starting
 * is left running when the launcher cleans up after a failure.
 */
async function settleAll<T>(ps: Promise<T>[]): Promise<T[]> {
  const rs = await Promise.allSettled(ps);
  const failed = rs.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** Poll GET /v1/nodes until every named node has a live session with the coordinator. */
export async function waitForNodes(
  coordinatorUrl: string,
  apiKey: string,
  ids: string[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let missing = ids;
  while (missing.length > 0) {
    const res = await httpJson(`${coordinatorUrl}/v1/nodes`, { apiKey });
    const nodes = res.status === 200 ? (res.body as { nodes: { id: string; connected: boolean }[] }).nodes : [];
    const live = new Set(nodes.filter((x) => x.connected).map((x) => x.id));
    missing = ids.filter((id) => !live.has(id));
    if (missing.length === 0) return;
    if (Date.now() > deadline) throw new Error(`nodes not connected to the coordinator in time: ${missing.join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function friendbot(horizonUrl: string, address: string): Promise<void> {
  const res = await httpJson(`${horizonUrl}/friendbot?addr=${address}`);
  if (res.status !== 200) throw new Error(`friendbot refused ${address}: ${res.status} ${JSON.stringify(res.body)}`);
}

/** What `cluster.json` holds: pids and endpoints, never a secret. */
export interface ClusterFile {
  launcherPid: number;
  coordinator: { url: string; pid: number; adminKeyFile: string };
  ledger: { url: string; pid: number; networkPassphrase: string };
  kms: { name: string; url: string; pid: number }[];
  nodes: { name: string; url: string; pid: number; stellarKey: string }[];
  account: string;
}

export function clusterFileOf(c: Cluster, launcherPid = process.pid): ClusterFile {
  return {
    launcherPid,
    coordinator: { url: c.coordinator.url, pid: c.coordinator.pid, adminKeyFile: c.adminKeyFile },
    ledger: { url: c.ledger.url, pid: c.ledger.pid, networkPassphrase: c.networkPassphrase },
    kms: c.kms.map((p) => ({ name: p.name, url: p.url, pid: p.pid })),
    nodes: c.nodes.map((p, i) => ({
      name: p.name,
      url: p.url,
      pid: p.pid,
      stellarKey: c.nodeInfo[i]?.stellarKey ?? '',
    })),
    account: c.account.id,
  };
}

export async function writeClusterFile(c: Cluster): Promise<void> {
  const tmp = join(c.dir, `cluster.json.${process.pid}.tmp`);
  await writeFile(tmp, `${JSON.stringify(clusterFileOf(c), null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, join(c.dir, 'cluster.json'));
}

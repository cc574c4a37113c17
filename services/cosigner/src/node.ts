import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SqliteNonceStore } from '@cosigner/frost/nonce-store';
import { createSigner } from '@cosigner/keys/factory';
import { createKeyMetrics } from '@cosigner/keys/metrics';
import type { Signer } from '@cosigner/keys/signer';
import { evaluate } from '@cosigner/policy/evaluate';
import { loadPolicy } from '@cosigner/policy/schema';
import { type Identity, loadOrCreateIdentity } from '@cosigner/protocol/identity';
import { readSecretFile } from '@cosigner/runtime/secrets';
import { durableExit } from '@cosigner/runtime/wal-sync';
import type { Logger } from 'pino';
import { AuditLog } from './audit.ts';
import { assertProductionSafe, type NodeConfig } from './config.ts';
import { nodeErrors } from './errors.ts';
import { openFrostDkg } from './frost/dkg.ts';
import { FrostSigning } from './frost/sign.ts';
import { membershipKey, type NodeFrostGroup, type Retirement } from './frost/store.ts';
import { Keyring } from './keyring.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from './ledger.ts';
import { createMetrics, type NodeMetrics } from './metrics.ts';
import { CRASH_POINTS, type CrashPoint, SigningPipeline } from './pipeline.ts';
import { NodePolicy } from './policy-reload.ts';
import { type EvaluateFn, Reviewer } from './review.ts';
import { CoordinatorSessions } from './session.ts';
import { SorobanReviewer } from './soroban.ts';

/** The FROST nonce record's file, beside the signing ledger (0600 in the 0700 data directory). */
export function frostNoncesPath(dataDir: string): string {
  return join(dataDir, 'frost-nonces.sqlite');
}

/** Version string sent in `auth`. */
export const NODE_VERSION = '0.1.0';

/**
 * Everything a running node is made of, wired from a validated config. server.ts only listens and handles
 * signals; this is where the parts meet (and what in-process tests start).
 */
export interface CosignerNode {
  readonly config: NodeConfig;
  readonly identity: Identity;
  readonly signer: Signer;
  /** The signer above: active/pending/retired keys and the roster (keyring.ts). */
  readonly keyring: Keyring;
  /** The policy in force, reloadable (policy-reload.ts). */
  readonly policy: NodePolicy;
  readonly ledger: SigningLedger;
  readonly audit: AuditLog;
  readonly metrics: NodeMetrics;
  readonly reviewer: Reviewer;
  /** One session per coordinator URL of the config (session.ts CoordinatorSessions): up while any one is. */
  readonly session: CoordinatorSessions;
  /**
   * FROST key generation (frost/dkg.ts): the groups this node holds a share of, and their retirement by this
   * node's operator (the store's change, open refreshes ended, the signing side's share and nonces zeroed).
   */
  readonly frost: { groups(): NodeFrostGroup[]; retire(address: string, by: string): Promise<Retirement> };
  /** FROST signing rounds (frost/sign.ts). */
  readonly frostSigning: FrostSigning;
  readonly adminToken: string | undefined;
  /** Start the coordinator sessions. */
  start(): void;
  close(): Promise<void>;
}

/**
 * The crash-injection test hook: `COSIGNER_CRASH_AT=after-record|after-sign|before-reply` makes the process
 * SIGKILL itself at that point of the signing path. Read ONLY in development mode; production ignores it.
 */
export function crashPointFromEnv(production: boolean, env: NodeJS.ProcessEnv): CrashPoint | undefined {
  if (production) return undefined;
  const v = env.COSIGNER_CRASH_AT;
  return CRASH_POINTS.find((p) => p === v);
}

/**
 * Build a node: policy, identity, ledger, production checks, key backend, review pipeline, session.
 * @throws CosignerError NODE_CONFIG_INVALID, NODE_CONFIG_UNSAFE, POLICY_*, KEYS_*, LEDGER_*, RUNTIME_*
 */
export async function createNode(
  config: NodeConfig,
  opts: { logger: Logger; env?: NodeJS.ProcessEnv; crash?: (p: CrashPoint) => void },
): Promise<CosignerNode> {
  const { logger } = opts;
  const env = opts.env ?? process.env;
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });

  const policyText = await readFile(config.policy, 'utf8').catch((cause: unknown) => {
    throw nodeErrors.error(
      'NODE_CONFIG_INVALID',
      { field: 'policy' },
      { message: `Cannot read the policy file ${config.policy}.`, cause },
    );
  });
  const loaded = loadPolicy(policyText, { production: config.production });
  if (loaded.network !== config.network) {
    throw nodeErrors.error(
      'NODE_CONFIG_INVALID',
      { field: 'network' },
      { message: 'The policy names a different network passphrase than the node config (network).' },
    );
  }

  const identity = (await loadOrCreateIdentity(config.identityKeyFile)).identity;
  const path = ledgerPath(config.dataDir);
  const db = openLedgerDb(path);
  const ledger = new SigningLedger(db, {
    graceSeconds: config.limits.slotGraceSeconds,
    onDurabilityError: (error) => {
      logger.fatal({ err: (error as Error).message }, 'the signing ledger could not be synced to disk; stopping');
      durableExit(error);
    },
  });
  const audit = new AuditLog(db);
  try {
    await assertProductionSafe(config, { ledger: path });
  } catch (e) {
    ledger.close();
    throw e;
  }
  const adminToken = config.admin.tokenFile ? await readSecretFile(config.admin.tokenFile, 'admin token') : undefined;

  const metrics = createMetrics();
  let signer: Keyring;
  try {
    const keyMetrics = createKeyMetrics(metrics.registry);
    // The keyring opens the key it recorded as active (after a rotation, not the config's) and signs with it only.
    signer = await Keyring.open({
      db,
      audit,
      logger,
      base: config.key,
      open: (key) => createSigner(key, { production: config.production, metrics: keyMetrics, logger, env }),
    });
  } catch (e) {
    ledger.close();
    throw e;
  }

  const frost = await openFrostDkg({ ...config, config: config.frost, identity, audit, logger, env }).catch(
    async (e: unknown) => {
      await signer.close();
      ledger.close();
      throw e;
    },
  );
  // The FROST nonce record (packages/frost nonce-store.ts), beside the signing ledger: every round still `issued`
  // from a previous run lost its nonces with that process, and is marked lost before any new round.
  let nonces: SqliteNonceStore | undefined;
  if (frost.signing) {
    try {
      nonces = SqliteNonceStore.open(frostNoncesPath(config.dataDir));
    } catch (e) {
      await frost.close();
      await signer.close();
      ledger.close();
      throw e;
    }
    const lost = nonces.recover();
    if (lost > 0) logger.warn({ lost }, 'FROST rounds committed before the restart are lost: they will never sign');
    audit.append('frost.nonces.recovered', { lost });
  }
  audit.append('config.loaded', { file: config.configFile ?? null, sha256: config.configSha256, mode: config.mode });
  audit.append('policy.loaded', { file: config.policy, sha256: createHash('sha256').update(policyText).digest('hex') });
  // Replaceable while the node runs (SIGHUP, the admin API): every reader below asks for the policy in force.
  const policy = new NodePolicy(
    { file: config.policy, network: config.network, production: config.production, audit, logger },
    { policy: loaded, text: policyText },
  );
  audit.append('node.started', {
    nodeId: config.nodeId,
    signer: signer.address,
    keyKind: signer.kind,
    identityKey: identity.publicKeyB64,
    version: NODE_VERSION,
  });

  const crashAt = crashPointFromEnv(config.production, env);
  if (crashAt) logger.warn({ crashAt }, 'COSIGNER_CRASH_AT test hook is armed (development mode only)');
  // The policy looks a key up on the roster only when a transaction changes a signer under clusterMembers.
  // A group key this node holds a confirmed share of counts as one of its own keys: it took part in the key
  // generation of a roster its operator expected (frost/config.ts). So `clusterMembers` lets a group-key swap
  // (remove the old group's key, add the new group's) pass the policy; the swap's own checks are in frost/sign.ts.
  const holdsGroup = (key: string) => frost.signing?.store.get(key)?.status === 'confirmed';
  const members = { has: (key: string) => signer.isMember(key) || holdsGroup(key) };
  const evaluateFn: EvaluateFn = (summary, ctx) => evaluate(policy.current, { summary, ...ctx, members });
  // One review pipeline (pipeline.ts) for every kind of proposal: transactions, held ones, Soroban auth entries.
  const pipeline = new SigningPipeline({
    ledger,
    audit,
    signer,
    logger,
    metrics,
    crashAt,
    crash:
      opts.crash ??
      ((point) => {
        logger.warn({ point }, 'crash hook: SIGKILL');
        process.kill(process.pid, 'SIGKILL');
      }),
  });
  const reviewer = new Reviewer({
    network: config.network,
    get accounts() {
      return policy.accounts;
    },
    evaluate: evaluateFn,
    ledger,
    audit,
    signer,
    logger,
    pipeline,
    soroban: new SorobanReviewer({
      network: config.network,
      get policy() {
        return policy.current;
      },
      ledger,
      audit,
      signer,
      logger,
      pipeline,
    }),
  });
  const frostSigning = new FrostSigning({
    nodeId: config.nodeId,
    groups: frost.signing?.store,
    // The account weight the operator planned for a group: from the expect entry of the group's own roster.
    plannedWeight: (g) =>
      config.frost?.expect.find(
        (e) => membershipKey(e.threshold, e.participants) === membershipKey(g.threshold, g.participants),
      )?.accountWeight,
    sealer: frost.signing?.sealer,
    nonces,
    reviewer,
    pipeline,
    audit,
    logger,
    badShare: !config.production && env.COSIGNER_FROST_BAD_SHARE === '1',
  });
  if (!config.production && env.COSIGNER_FROST_BAD_SHARE === '1') {
    logger.warn('COSIGNER_FROST_BAD_SHARE test hook is armed (development mode only): FROST shares are wrong');
  }
  const session = new CoordinatorSessions({
    urls: config.coordinator.urls,
    nodeId: config.nodeId,
    identity,
    coordinatorKeys: config.coordinatorKeys,
    // Read at every handshake: after a key switch the node reconnects announcing its new key.
    get stellarKey() {
      return signer.address;
    },
    network: config.network,
    version: NODE_VERSION,
    logger,
    audit,
    metrics,
    maxSkewMs: config.limits.maxSkewMs,
    framesPerSecond: config.limits.framesPerSecond,
    frameBurst: config.limits.frameBurst,
    reconnectMaxMs: config.limits.reconnectMaxMs,
    handshakeTimeoutMs: config.limits.handshakeTimeoutMs,
    handlers: {
      onProposal: (body) => (body.kind === 'frost' ? frostSigning.review(body) : reviewer.review(body)),
      onCancel: (body) => {
        reviewer.cancel(body.proposalId, body.reason);
      },
      onFrostDkg: (body) => frost.handle(body),
      onFrostRefresh: (body) => frost.refresh(body),
    },
  });

  signer.onSwitch(() => {
    void session.stop().then(() => session.start());
  });

  let closed = false;
  return {
    config,
    identity,
    signer,
    keyring: signer,
    policy,
    ledger,
    audit,
    metrics,
    reviewer,
    session,
    frost: {
      groups: () => frost.groups(),
      retire: (address, by) => frost.retire(address, { by, dropRounds: (a) => frostSigning.retire(a) }),
    },
    frostSigning,
    adminToken,
    start: () => session.start(),
    async close() {
      if (closed) return;
      closed = true;
      await session.stop();
      await frostSigning.close();
      nonces?.close();
      await frost.close();
      await signer.close();
      ledger.close();
    },
  };
}

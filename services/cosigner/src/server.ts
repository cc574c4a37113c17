import { createLogger } from '@cosigner/runtime/logger';
import { onShutdown, writeReadyFile } from '@cosigner/runtime/ready';
import { collectDefaultMetrics } from 'prom-client';
import { build } from './app.ts';
import { type ConfigOverrides, loadConfig } from './config.ts';
import { createNode } from './node.ts';

export interface StartOptions {
  config: string;
  overrides: ConfigOverrides;
  readyFile?: string;
}

/** Listen: load the config, build the node and its admin API, write the ready file, handle signals. */
export async function start(opts: StartOptions): Promise<{ url: string; close: () => Promise<void> }> {
  const config = await loadConfig(opts.config, opts.overrides);
  // Proposal XDR is never logged (it is large, and a signed envelope must never reach a log at any level).
  const logger = createLogger({
    name: 'cosigner-node',
    level: config.logLevel,
    extraRedact: ['*.xdr', '*.authEntries'],
  });
  const node = await createNode(config, { logger });
  // The process's own figures (resident memory, heap spaces, event-loop delay, GC) on /metrics. Here and not in
  // createNode: tests build many nodes in one process, and each collector set keeps its own observers.
  collectDefaultMetrics({ register: node.metrics.registry });
  const app = build({
    reviewer: node.reviewer,
    ledger: node.ledger,
    metrics: node.metrics,
    keyHealth: () => node.signer.health(),
    sessionUp: () => node.session.isUp,
    sessions: () => node.session.status(),
    sendDecision: (d) => node.session.sendDecision(d),
    adminToken: node.adminToken,
    allowedHosts: config.admin.allowedHosts,
    listenHost: config.admin.host,
    keyring: node.keyring,
    policy: node.policy,
    frostGroups: () => node.frost.groups(),
    frostRetire: (address, by) => node.frost.retire(address, by),
    logger,
  });
  await app.listen({ host: config.admin.host, port: config.admin.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.admin.port;
  const host = config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host;
  const url = `http://${host}:${port}`;
  node.start();
  const close = async (): Promise<void> => {
    await app.close();
    await node.close();
  };
  onShutdown(close);
  // SIGHUP reloads the policy (the convention of daemons: nginx, sshd); a refusal is logged and audited by the
  // reload itself, and the old policy stays in force. The node config, coordinator URLs included, is read at start
  // only: the session set is fixed for the life of the process (session.ts CoordinatorSessions).
  process.on('SIGHUP', () => {
    node.policy.reload('signal:SIGHUP').catch(() => {});
  });
  await writeReadyFile(opts.readyFile, {
    url,
    nodeId: config.nodeId,
    identityKey: node.identity.publicKeyB64,
    stellarKey: node.signer.address,
  });
  logger.info({ url, nodeId: config.nodeId, stellarKey: node.signer.address }, 'cosigner node listening');
  return { url, close };
}

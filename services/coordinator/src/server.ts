import { createLogger } from '@cosigner/runtime/logger';
import { onShutdown, writeReadyFile } from '@cosigner/runtime/ready';
import { collectDefaultMetrics } from 'prom-client';
import { build, prepareRuntime } from './app.ts';
import { type ConfigOverrides, loadConfig } from './config.ts';

export interface StartOptions extends ConfigOverrides {
  config?: string;
  readyFile?: string;
}

/** Load the config, open the data directory, listen, write the ready file, stop cleanly on SIGTERM. */
export async function start(opts: StartOptions): Promise<void> {
  const config = await loadConfig(opts.config, {
    dataDir: opts.dataDir,
    horizonUrl: opts.horizonUrl,
    network: opts.network,
    host: opts.host,
    port: opts.port,
    allowedHosts: opts.allowedHosts,
  });
  const logger = createLogger({ name: 'coordinator', level: config.logLevel });
  const runtime = await prepareRuntime(config, logger);
  const app = await build(runtime);
  // The process's own figures (resident memory, heap spaces, event-loop delay, GC) on /metrics. Here and not in
  // build: tests build many apps in one process, and each collector set keeps its own observers.
  collectDefaultMetrics({ register: app.coordinator.metrics.registry });
  await app.listen({ host: config.host, port: config.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  onShutdown(() => app.close());
  await writeReadyFile(opts.readyFile, {
    url,
    messageKey: runtime.identity.publicKeyB64,
    adminKeyFile: config.adminKeyFile,
    network: config.network,
  });
  logger.info({ url, dataDir: config.dataDir, adminKeyFile: config.adminKeyFile }, 'coordinator listening');
}

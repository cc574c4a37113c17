import { createLogger } from '@cosigner/runtime/logger';
import { onShutdown, writeReadyFile } from '@cosigner/runtime/ready';
import { build } from './app.ts';
import type { LedgerSimConfig } from './config.ts';

/** Listen (port 0 picks a free port), write the ready file `{url, rpcUrl, pid, networkPassphrase}`, stop on SIGTERM. */
export async function start(cfg: LedgerSimConfig): Promise<{ url: string; close: () => Promise<void> }> {
  const logger = createLogger({ name: 'ledger-sim', level: process.env.LOG_LEVEL });
  const app = await build({
    networkPassphrase: cfg.networkPassphrase,
    closeMs: cfg.closeMs,
    allowedHosts: cfg.allowedHosts,
    listenHost: cfg.host,
    ...(cfg.dataDir !== undefined ? { dataDir: cfg.dataDir } : {}),
    logger,
  });
  const url = await app.listen({ port: cfg.port, host: cfg.host });
  await writeReadyFile(cfg.readyFile, { url, rpcUrl: `${url}/rpc`, networkPassphrase: cfg.networkPassphrase });
  logger.info({ url, networkPassphrase: cfg.networkPassphrase, dataDir: cfg.dataDir }, 'ledger-sim listening');
  // app.close() stops the ledger clock and writes the last snapshot.
  const close = () => app.close();
  onShutdown(close);
  return { url, close };
}

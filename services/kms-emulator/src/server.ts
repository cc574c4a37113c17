import { createLogger } from '@cosigner/runtime/logger';
import { onShutdown, writeReadyFile } from '@cosigner/runtime/ready';
import { openEmulator } from './emulator.ts';

export interface StartOptions {
  port: number;
  host: string;
  readyFile?: string;
  dataDir: string;
  config?: string;
  masterKeyFile?: string;
  accounts: number;
  /** `--allowed-host` (repeatable). */
  allowedHost?: string[];
}

/** Listen (port 0 picks a free port), write the ready file `{url, pid, accountsFile, dataDir}`, stop on SIGTERM. */
export async function start(opts: StartOptions): Promise<{ url: string; close: () => Promise<void> }> {
  const logger = createLogger({ name: 'kms-emulator', level: process.env.LOG_LEVEL });
  const emu = await openEmulator({ ...opts, allowedHosts: opts.allowedHost, logger });
  const url = await emu.app.listen({ port: opts.port, host: opts.host });
  await writeReadyFile(opts.readyFile, { url, accountsFile: emu.accountsFile, dataDir: emu.dataDir });
  logger.info({ url }, 'kms-emulator listening');
  const close = () => emu.app.close();
  onShutdown(close);
  return { url, close };
}

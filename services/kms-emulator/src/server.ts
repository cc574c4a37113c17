import { createLogger } from '@cosigner/runtime/logger';
import { onShutdown, writeReadyFile } from '@cosigner/runtime/ready';
import type { DefaultedServiceFlags } from '@cosigner/runtime/service-flags';
import { openEmulator } from './emulator.ts';

/** The `cosigner kms-emulator` flags: the common ones, the master key file and the accounts to generate. */
export interface StartOptions extends DefaultedServiceFlags {
  masterKeyFile?: string;
  accounts: number;
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

import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isProduction, refuseInProduction } from '@cosigner/runtime/mode';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type AccountsFile, ensureAccountsFile, readAccountsFile } from './accounts.ts';
import { build } from './app.ts';
import { AuditLog } from './audit.ts';
import { loadMasterKey } from './sealing.ts';
import { KeyStore } from './store.ts';

export interface EmulatorOptions {
  /** Holds accounts.json (unless `config`), master.key (unless `masterKeyFile`), keys.json and audit.jsonl. */
  dataDir: string;
  /** An accounts file (JSON or YAML) instead of the generated `<dataDir>/accounts.json`. */
  config?: string;
  masterKeyFile?: string;
  /** How many accounts the embedded defaults generate (default 3). */
  accounts?: number;
  logger: Logger;
  now?: () => number;
  env?: NodeJS.ProcessEnv;
  /** Host names served besides loopback and `localhost`, and the listen address (app.ts). */
  allowedHosts?: readonly string[];
  host?: string;
}

export interface Emulator {
  app: FastifyInstance;
  /** The accounts file in use (absolute path), for the ready file and for clients' credentials. */
  accountsFile: string;
  accounts: AccountsFile;
  dataDir: string;
}

/**
 * Prepare the emulator's files and build the app: the accounts (from `config`, or the embedded defaults
 * generated once under the data directory), the master key (from `masterKeyFile`, or a development key
 * generated once), the sealed key store and the audit log. Paths are logged; secrets never are.
 * @throws RUNTIME_DEV_BACKEND_IN_PRODUCTION, KMS_ACCOUNTS_INVALID, KMS_MASTER_KEY_INVALID,
 *   KMS_STORE_INVALID, KMS_STORE_UNSEAL_FAILED, RUNTIME_FILE_NOT_PRIVATE
 */
export async function openEmulator(o: EmulatorOptions): Promise<Emulator> {
  refuseInProduction(isProduction(undefined, o.env), 'kms-emulator');
  const dataDir = resolve(o.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  let accountsFile: string;
  let accounts: AccountsFile;
  if (o.config !== undefined) {
    accountsFile = resolve(o.config);
    accounts = await readAccountsFile(accountsFile);
    o.logger.info({ accountsFile }, 'kms-emulator accounts from the config file');
  } else {
    const got = await ensureAccountsFile(dataDir, o.accounts ?? 3);
    accountsFile = got.path;
    accounts = got.accounts;
    o.logger.info(
      { accountsFile, created: got.created },
      got.created
        ? 'kms-emulator generated development accounts and credentials (mode 0600)'
        : 'kms-emulator reuses its development accounts',
    );
  }
  o.logger.info(
    { accounts: accounts.accounts.map((a) => ({ name: a.name, accountId: a.accountId, region: a.region })) },
    'kms-emulator accounts',
  );
  const master = await loadMasterKey({ masterKeyFile: o.masterKeyFile, dataDir });
  if (master.generated) {
    o.logger.warn(
      { masterKeyFile: master.path },
      'kms-emulator generated a development master key; pass --master-key-file to use your own',
    );
  }
  const store = await KeyStore.open(dataDir, master.key);
  const audit = await AuditLog.open(join(dataDir, 'audit.jsonl'), (err) =>
    o.logger.error({ err }, 'kms-emulator cannot write its audit log'),
  );
  const app = await build({
    accounts,
    store,
    audit,
    logger: o.logger,
    now: o.now,
    env: o.env,
    allowedHosts: o.allowedHosts,
    listenHost: o.host,
  });
  return { app, accountsFile, accounts, dataDir };
}

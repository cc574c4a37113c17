import { join } from 'node:path';
import type { Command } from 'commander';
import type { PoolConfig } from 'pg';
import { loadConfig } from '../config.ts';
import { coordinatorErrors } from '../errors.ts';
import { assertSourceIdle, copySqliteToPg } from './copy.ts';
import { type PostgresStoreSettings, parseStoreSettings, poolConfig } from './settings.ts';
import { createPool, PgStore } from './store.ts';

export interface CopyFlags {
  config?: string;
  dataDir?: string;
  /** Without it: the `store` section of the config, which must then name PostgreSQL. */
  url?: string;
  passwordFile?: string;
  passwordEnv?: string;
  tlsMode?: string;
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
}

/** The flag each `store` setting comes from here, so an error names what the operator typed. */
const FLAG_OF: Record<string, string> = {
  'store.url': '--url',
  'store.passwordFile': '--password-file',
  'store.passwordEnv': '--password-env',
  'store.tls.mode': '--tls-mode',
  'store.tls.caFile': '--tls-ca-file',
  'store.tls.certFile': '--tls-cert-file',
  'store.tls.keyFile': '--tls-key-file',
};

async function asFlags<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (!coordinatorErrors.is(e, 'COORD_BAD_CONFIG')) throw e;
    const field = String(e.details?.field);
    const flag = FLAG_OF[field] ?? field;
    throw coordinatorErrors.error(
      'COORD_BAD_CONFIG',
      { ...e.details, field: flag },
      { message: e.message.replace(`Invalid coordinator config: ${field}`, flag).replace(field, flag) },
    );
  }
}

/**
 * `cosigner coordinator copy-to-postgres`: copy the coordinator's SQLite database (under the data directory of
 * --config / --data-dir) into an empty PostgreSQL database, migrating its schema first. Prints the row counts as
 * JSON. Settings are checked as the `store` section of the config is (parseStoreSettings), with the flag names.
 * @throws CosignerError COORD_BAD_CONFIG, COORD_COPY_SOURCE_LIVE, COORD_COPY_TARGET_NOT_EMPTY,
 *   COORD_NEWER_SCHEMA, COORD_STORE_UNAVAILABLE
 */
export async function copyToPostgres(
  flags: CopyFlags,
  out: (s: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const config = await loadConfig(flags.config, { dataDir: flags.dataDir }, env);
  const source = join(config.dataDir, 'coordinator.db');
  // Before connecting anywhere: a live coordinator or a wrong data directory is the likeliest mistake.
  assertSourceIdle(source);
  const tls = {
    ...(flags.tlsMode === undefined ? {} : { mode: flags.tlsMode }),
    ...(flags.tlsCaFile === undefined ? {} : { caFile: flags.tlsCaFile }),
    ...(flags.tlsCertFile === undefined ? {} : { certFile: flags.tlsCertFile }),
    ...(flags.tlsKeyFile === undefined ? {} : { keyFile: flags.tlsKeyFile }),
  };
  if (flags.url === undefined) {
    if (config.store.type !== 'postgres') {
      throw coordinatorErrors.error(
        'COORD_BAD_CONFIG',
        { field: '--url' },
        { message: '--url: give the target database, or a --config whose store is postgres.' },
      );
    }
    const target = config.store;
    return copyInto(source, await poolConfig(target, env), out);
  }
  const url = flags.url;
  const pool = await asFlags(async () => {
    const settings = parseStoreSettings(
      {
        type: 'postgres',
        url,
        ...(flags.passwordFile === undefined ? {} : { passwordFile: flags.passwordFile }),
        ...(flags.passwordEnv === undefined ? {} : { passwordEnv: flags.passwordEnv }),
        tls,
      },
      { field: 'store', production: config.production },
    );
    return poolConfig(settings as Readonly<PostgresStoreSettings>, env);
  });
  return copyInto(source, pool, out);
}

async function copyInto(source: string, pool: PoolConfig, out: (s: string) => void): Promise<void> {
  const store = await PgStore.open(createPool(pool));
  try {
    const report = await copySqliteToPg(source, store);
    out(`${JSON.stringify(report)}\n`);
  } finally {
    await store.close();
  }
}

/** Add `copy-to-postgres` under `cosigner coordinator`. */
export function registerCopyToPostgres(cmd: Command): void {
  cmd
    .command('copy-to-postgres')
    .description(
      'copy the SQLite state (proposals, events, API keys, node enrolments) into an empty PostgreSQL database; stop the coordinator first',
    )
    .option('--config <file>', 'coordinator YAML config (its dataDir holds the SQLite database)')
    .option('--data-dir <dir>', 'data directory')
    .option('--url <url>', "postgres://user@host:port/database (no password in it); default: the config's store")
    .option('--password-file <file>', 'file holding the database password (mode 0600)')
    .option('--password-env <name>', 'environment variable holding the database password')
    .option('--tls-mode <mode>', 'verify-full (default), require or disable')
    .option('--tls-ca-file <file>', 'CA bundle (PEM) the server certificate is checked against')
    .option('--tls-cert-file <file>', 'client certificate (PEM)')
    .option('--tls-key-file <file>', 'client key (PEM, mode 0600)')
    .action((o: CopyFlags, self: Command) => {
      // commander hands an option the parent command also declares (--config, --data-dir) to the parent when it
      // follows the subcommand's name, so read it from there too.
      const parent = (self.parent?.opts() ?? {}) as { config?: string; dataDir?: string };
      return copyToPostgres({ ...o, config: o.config ?? parent.config, dataDir: o.dataDir ?? parent.dataDir }, (s) => {
        process.stdout.write(s);
      });
    });
}

import { readFile } from 'node:fs/promises';
import { isProduction, refuseInProduction } from '@cosigner/runtime/mode';
import { STANDALONE_PASSPHRASE } from './app.ts';
import { ledgerErrors } from './errors.ts';

/** The `cosigner ledger-sim` flags, as commander parses them. */
export interface CommandFlags {
  port: number;
  host: string;
  readyFile?: string;
  dataDir: string;
  config?: string;
  network?: string;
  closeMs?: number;
  inMemory?: boolean;
  /** `--allowed-host` (repeatable): Host names served besides loopback and `localhost`. */
  allowedHost?: string[];
}

/** The checked, frozen configuration the server runs with. */
export interface LedgerSimConfig {
  readonly port: number;
  readonly host: string;
  readonly readyFile?: string;
  /** undefined with --in-memory: no snapshot. */
  readonly dataDir?: string;
  readonly networkPassphrase: string;
  readonly closeMs: number;
  /** Host names served besides loopback literals and `localhost` (absent: those only). */
  readonly allowedHosts?: readonly string[];
}

const FILE_KEYS = new Set(['network', 'closeMs', 'dataDir', 'host', 'port']);

/**
 * Validates flags (then an optional JSON `--config` file for values the flags left unset) once, at boot.
 * The simulator is a development tool: NODE_ENV=production refuses to start (RUNTIME_DEV_BACKEND_IN_PRODUCTION).
 * @throws LEDGER_BAD_CONFIG, RUNTIME_DEV_BACKEND_IN_PRODUCTION
 */
export async function resolveConfig(
  flags: CommandFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LedgerSimConfig> {
  refuseInProduction(isProduction(undefined, env), 'ledger-sim');
  let file: Record<string, unknown> = {};
  if (flags.config !== undefined) {
    try {
      file = JSON.parse(await readFile(flags.config, 'utf8')) as Record<string, unknown>;
    } catch (cause) {
      throw ledgerErrors.error(
        'LEDGER_BAD_CONFIG',
        { config: flags.config },
        { cause, message: `cannot read ${flags.config} as JSON` },
      );
    }
    if (file === null || typeof file !== 'object' || Array.isArray(file)) {
      throw ledgerErrors.error('LEDGER_BAD_CONFIG', { config: flags.config });
    }
    for (const k of Object.keys(file)) {
      if (!FILE_KEYS.has(k)) throw ledgerErrors.error('LEDGER_BAD_CONFIG', { unknownKey: k });
    }
  }
  const network = flags.network ?? file.network ?? STANDALONE_PASSPHRASE;
  if (typeof network !== 'string' || network.length === 0 || network.length > 256) {
    throw ledgerErrors.error(
      'LEDGER_BAD_CONFIG',
      { field: 'network' },
      { message: 'The network passphrase must be 1 to 256 characters.' },
    );
  }
  const closeMs = flags.closeMs ?? file.closeMs ?? 1000;
  if (typeof closeMs !== 'number' || !Number.isInteger(closeMs) || closeMs < 10 || closeMs > 3_600_000) {
    throw ledgerErrors.error(
      'LEDGER_BAD_CONFIG',
      { field: 'closeMs' },
      { message: 'The close interval must be 10 ms to 1 hour.' },
    );
  }
  const dataDir = flags.dataDir ?? file.dataDir;
  if (flags.inMemory !== true && (typeof dataDir !== 'string' || dataDir.length === 0)) {
    throw ledgerErrors.error('LEDGER_BAD_CONFIG', { field: 'dataDir' });
  }
  return Object.freeze({
    port: flags.port,
    host: flags.host,
    ...(flags.readyFile !== undefined ? { readyFile: flags.readyFile } : {}),
    ...(flags.inMemory === true ? {} : { dataDir: dataDir as string }),
    networkPassphrase: network,
    closeMs,
    ...(flags.allowedHost !== undefined ? { allowedHosts: Object.freeze([...flags.allowedHost]) } : {}),
  });
}

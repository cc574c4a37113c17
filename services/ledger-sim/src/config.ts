import { type ConfigProblem, deepFreeze, readConfigFile, validateConfig } from '@cosigner/runtime/config';
import { isProduction, refuseInProduction } from '@cosigner/runtime/mode';
import type { DefaultedServiceFlags } from '@cosigner/runtime/service-flags';
import { Type } from 'typebox';
import { STANDALONE_PASSPHRASE } from './app.ts';
import { ledgerErrors } from './errors.ts';

/** The `cosigner ledger-sim` flags, as commander parses them. */
export interface CommandFlags extends DefaultedServiceFlags {
  network?: string;
  closeMs?: number;
  inMemory?: boolean;
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

/**
 * What a `--config` JSON file may hold, and the flags checked with it (a flag wins over the file). The schema gives
 * the defaults: the standalone network, a 1 s close.
 */
const ConfigSchema = Type.Object(
  {
    network: Type.String({ minLength: 1, maxLength: 256, default: STANDALONE_PASSPHRASE }),
    /** The close interval: 10 ms to 1 hour. */
    closeMs: Type.Integer({ minimum: 10, maximum: 3_600_000, default: 1000 }),
    dataDir: Type.Optional(Type.String({ minLength: 1 })),
    host: Type.Optional(Type.String({ minLength: 1 })),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  },
  { additionalProperties: false },
);

/** The simulator's error for a config problem (LEDGER_BAD_CONFIG, naming the field). */
function configError({ field, problem, cause }: ConfigProblem): Error {
  return ledgerErrors.error(
    'LEDGER_BAD_CONFIG',
    { field, problem },
    { message: `Invalid ledger simulator config: ${field}: ${problem}.`, ...(cause !== undefined ? { cause } : {}) },
  );
}

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
  const file = flags.config === undefined ? {} : (await readConfigFile(flags.config, configError, 'json')).doc;
  if (file === null || typeof file !== 'object' || Array.isArray(file)) {
    throw configError({ field: '--config', problem: `${flags.config} must hold a JSON object` });
  }
  const fromFlags = {
    network: flags.network,
    closeMs: flags.closeMs,
    // With --in-memory there is no snapshot, so the directory (the flag's default) is not used or checked.
    dataDir: flags.inMemory === true ? undefined : flags.dataDir,
    host: flags.host,
    port: flags.port,
  };
  const merged: Record<string, unknown> = { ...file };
  if (flags.inMemory === true) delete merged.dataDir;
  for (const [k, v] of Object.entries(fromFlags)) if (v !== undefined) merged[k] = v;
  const cfg = validateConfig(ConfigSchema, merged, configError);
  if (flags.inMemory !== true && cfg.dataDir === undefined) {
    throw configError({ field: 'dataDir', problem: 'required unless --in-memory' });
  }
  return deepFreeze({
    port: cfg.port ?? flags.port,
    host: cfg.host ?? flags.host,
    ...(flags.readyFile !== undefined ? { readyFile: flags.readyFile } : {}),
    ...(cfg.dataDir !== undefined ? { dataDir: cfg.dataDir } : {}),
    networkPassphrase: cfg.network,
    closeMs: cfg.closeMs,
    ...(flags.allowedHost !== undefined ? { allowedHosts: [...flags.allowedHost] } : {}),
  });
}

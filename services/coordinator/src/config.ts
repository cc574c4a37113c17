import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parsePublicKeyB64 } from '@cosigner/protocol/identity';
import {
  type ConfigProblem,
  deepFreeze,
  LogLevelSchema,
  readConfigFile,
  TOP_LEVEL,
  validateConfig,
} from '@cosigner/runtime/config';
import { isProduction } from '@cosigner/runtime/mode';
import { StrKey } from '@stellar/stellar-sdk/base';
import { type Static, Type } from 'typebox';
import { destinationEntryProblem } from './destinations.ts';
import { coordinatorErrors } from './errors.ts';
import { parseStoreSettings, type StoreSettings } from './pg/settings.ts';

/**
 * The coordinator's configuration: one schema, validated once at boot, then frozen.
 * Sources in increasing precedence: defaults, the YAML file, command-line flags. Relative paths in the file
 * resolve against the file's directory. Started with no file at all, it runs on the embedded defaults.
 */

export const TESTNET_PASSPHRASE = 'Test SDF Network ; September 2015';
const ID = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' });

export const EnrolledNodeSchema = Type.Object(
  {
    id: ID,
    /** Node identity public key: base64 of the raw 32-byte ed25519 key (never a Stellar key). */
    identityKey: Type.String({ minLength: 44, maxLength: 44 }),
    /** The node's Stellar signing address. */
    stellarKey: Type.String({ pattern: '^G[A-Z2-7]{55}$' }),
  },
  { additionalProperties: false },
);
export type EnrolledNode = Static<typeof EnrolledNodeSchema>;

export const ConfigSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('development'), Type.Literal('production')], { default: 'development' }),
    dataDir: Type.String({ minLength: 1, default: '.cosigner/coordinator' }),
    /**
     * Where the state lives: `{type: sqlite}` (the default: <dataDir>/coordinator.db, nothing to install) or
     * `{type: postgres, url, passwordFile | passwordEnv, tls, ...}`, one database shared by coordinator replicas.
     * Checked by pg/settings.ts parseStoreSettings (credentials never in the config itself).
     */
    store: Type.Optional(Type.Unknown()),
    /** The network passphrase every hash is computed for. */
    network: Type.String({ minLength: 1, maxLength: 256, default: TESTNET_PASSPHRASE }),
    horizonUrl: Type.String({ pattern: '^https?://', default: 'http://127.0.0.1:8000' }),
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
    /**
     * Host names (or IP literals) the API and the node WebSocket answer for besides loopback literals and
     * `localhost` (a compose service name, the DNS name in front of it). Any other Host header is refused with
     * RUNTIME_HOST_NOT_ALLOWED (403): a page whose DNS name rebinds to this address gets nothing.
     */
    allowedHosts: Type.Array(Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:_\\[\\]-]+$' }), {
      maxItems: 64,
      default: [],
    }),
    /** Defaults: <dataDir>/message-key.pem and <dataDir>/admin.key (both created 0600 when absent). */
    messageKeyFile: Type.Optional(Type.String({ minLength: 1 })),
    adminKeyFile: Type.Optional(Type.String({ minLength: 1 })),
    nodes: Type.Array(EnrolledNodeSchema, { maxItems: 256, default: [] }),
    limits: Type.Object(
      {
        /** Largest accepted request body (413 above). */
        bodyBytes: Type.Integer({ minimum: 1024, maximum: 10 * 1024 * 1024, default: 256 * 1024 }),
        /** Requests per second per API key, and the burst allowance (429 above). */
        ratePerSecond: Type.Number({ minimum: 0.1, default: 20 }),
        rateBurst: Type.Integer({ minimum: 1, default: 40 }),
        /** Proposals open at once (pending or waiting for submission). */
        maxOpenProposals: Type.Integer({ minimum: 1, default: 1000 }),
        /** Frames per second accepted from one node, and the burst; beyond it the node is flagged. */
        nodeFramesPerSecond: Type.Number({ minimum: 1, default: 50 }),
        nodeFrameBurst: Type.Integer({ minimum: 1, default: 200 }),
      },
      { additionalProperties: false, default: {} },
    ),
    callbacks: Type.Object(
      {
        /** File holding the HMAC secret callbacks are signed with; default <dataDir>/callback.key (0600). */
        secretFile: Type.Optional(Type.String({ minLength: 1 })),
        maxAttempts: Type.Integer({ minimum: 1, maximum: 20, default: 5 }),
        initialBackoffMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 500 }),
        timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 5000 }),
        /**
         * Where callbacks may go: host names, `*.example.com`, IP literals, CIDRs. Empty: anywhere in development,
         * and in production anywhere but loopback, private, link-local and metadata addresses. Non-empty: only
         * these. Checked on the address the callback's socket connects to (destinations.ts).
         */
        allowedDestinations: Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 256, default: [] }),
      },
      { additionalProperties: false, default: {} },
    ),
    round: Type.Object(
      {
        heartbeatMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
        handshakeTimeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000 }),
        submitAttempts: Type.Integer({ minimum: 1, maximum: 20, default: 5 }),
        submitBackoffMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 500 }),
        /**
         * Longest pause between submission retries. A signed envelope with an upper time bound is retried (with
         * jittered backoff) until that bound passes; `submitAttempts` bounds only envelopes without one.
         */
        submitMaxBackoffMs: Type.Integer({ minimum: 10, maximum: 600_000, default: 30_000 }),
        /** First pause before a node that answered SIGNER_UNAVAILABLE is asked again; doubles up to the max. */
        signerRetryMs: Type.Integer({ minimum: 10, maximum: 600_000, default: 1000 }),
        signerRetryMaxMs: Type.Integer({ minimum: 10, maximum: 600_000, default: 30_000 }),
        /** After a time bound passes, the wait (a ledger close plus ingestion) before the last lookup by hash. */
        ledgerSettleMs: Type.Integer({ minimum: 0, maximum: 120_000, default: 6000 }),
        /** How long loaded signers/thresholds are reused: about one ledger close (5 s). */
        accountCacheMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 5000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Soroban proposals: limits on simulated transactions, and the protocol-27 credential form. */
    soroban: Type.Object(
      {
        /** Accept ADDRESS_V2 credentials (CAP-71, protocol 27); off until the network runs protocol 27. */
        addressV2: Type.Boolean({ default: false }),
        /** Largest resource fee (stroops) of a proposed Soroban transaction. */
        maxResourceFee: Type.Integer({ minimum: 0, default: 100_000_000 }),
        /** Most ledger entries its footprint may name (read-only + read-write). */
        maxFootprintEntries: Type.Integer({ minimum: 0, maximum: 10_000, default: 100 }),
        /**
         * How often open auth rounds are checked against the latest ledger: a round whose earliest entry expiry
         * (signatureExpirationLedger) has been reached can no longer be used, and ends `expired`.
         */
        expiryCheckMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 5000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    logLevel: LogLevelSchema,
  },
  { additionalProperties: false },
);

type RawConfig = Static<typeof ConfigSchema>;

export interface CoordinatorConfig extends Omit<RawConfig, 'store'> {
  store: Readonly<StoreSettings>;
  messageKeyFile: string;
  adminKeyFile: string;
  callbackSecretFile: string;
  production: boolean;
  configFile: string | undefined;
}

export interface ConfigOverrides {
  dataDir?: string;
  horizonUrl?: string;
  network?: string;
  host?: string;
  port?: number;
  /** Added to the file's allowedHosts (the `--allowed-host` flag). */
  allowedHosts?: string[];
}

/** The coordinator's error for a config problem (COORD_BAD_CONFIG, naming the field). */
function configError({ field, problem, cause }: ConfigProblem): Error {
  return coordinatorErrors.error(
    'COORD_BAD_CONFIG',
    { field, problem },
    { message: `Invalid coordinator config: ${field}: ${problem}.`, ...(cause !== undefined ? { cause } : {}) },
  );
}

function invalid(field: string, problem: string): never {
  throw configError({ field, problem });
}

/**
 * Validate a parsed config object, apply defaults and flags, resolve paths, freeze it.
 * @throws CosignerError COORD_BAD_CONFIG naming the first offending field
 */
export function parseConfig(
  input: unknown,
  opts: { baseDir?: string; overrides?: ConfigOverrides; configFile?: string; env?: NodeJS.ProcessEnv } = {},
): Readonly<CoordinatorConfig> {
  const source = input ?? {};
  if (typeof source !== 'object' || Array.isArray(source)) invalid(TOP_LEVEL, 'must be a YAML mapping');
  const merged = { ...source } as Record<string, unknown>;
  for (const [k, v] of Object.entries(opts.overrides ?? {})) {
    if (v === undefined) continue;
    if (k === 'allowedHosts') {
      const fromFile = Array.isArray(merged.allowedHosts) ? (merged.allowedHosts as unknown[]) : [];
      merged.allowedHosts = [...fromFile, ...(v as string[])];
    } else merged[k] = v;
  }
  const raw: RawConfig = validateConfig(ConfigSchema, merged, configError);
  const seenIds = new Set<string>();
  const seenKeys = new Set<string>();
  raw.nodes.forEach((n, i) => {
    try {
      parsePublicKeyB64(n.identityKey, `nodes.${i}.identityKey`);
    } catch {
      invalid(`nodes.${i}.identityKey`, 'not a base64 raw ed25519 public key');
    }
    if (!StrKey.isValidEd25519PublicKey(n.stellarKey)) invalid(`nodes.${i}.stellarKey`, 'not a valid G address');
    if (seenIds.has(n.id)) invalid(`nodes.${i}.id`, `duplicate node id ${n.id}`);
    if (seenKeys.has(n.stellarKey)) invalid(`nodes.${i}.stellarKey`, 'two nodes share one Stellar key');
    seenIds.add(n.id);
    seenKeys.add(n.stellarKey);
  });
  raw.callbacks.allowedDestinations.forEach((d, i) => {
    const problem = destinationEntryProblem(d);
    if (problem) invalid(`callbacks.allowedDestinations.${i}`, `${d}: ${problem}`);
  });
  const base = opts.baseDir ?? process.cwd();
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  // A --data-dir flag is relative to the working directory, not to the config file.
  const dataDir = opts.overrides?.dataDir !== undefined ? resolve(opts.overrides.dataDir) : abs(raw.dataDir);
  const production = isProduction(raw.mode, opts.env);
  const cfg: CoordinatorConfig = {
    ...raw,
    store: parseStoreSettings(raw.store, { field: 'store', baseDir: base, production }),
    dataDir,
    messageKeyFile: raw.messageKeyFile ? abs(raw.messageKeyFile) : join(dataDir, 'message-key.pem'),
    adminKeyFile: raw.adminKeyFile ? abs(raw.adminKeyFile) : join(dataDir, 'admin.key'),
    callbackSecretFile: raw.callbacks.secretFile ? abs(raw.callbacks.secretFile) : join(dataDir, 'callback.key'),
    production,
    configFile: opts.configFile,
  };
  return deepFreeze(cfg);
}

/**
 * Read the YAML file (when given) and parse it. No file: embedded defaults plus flags.
 * @throws CosignerError COORD_BAD_CONFIG (unreadable file, bad YAML, invalid field)
 */
export async function loadConfig(
  configFile: string | undefined,
  overrides: ConfigOverrides = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<Readonly<CoordinatorConfig>> {
  if (configFile === undefined) return parseConfig({}, { overrides, env });
  const { path, doc } = await readConfigFile(configFile, configError);
  return parseConfig(doc, { baseDir: dirname(path), overrides, configFile: path, env });
}

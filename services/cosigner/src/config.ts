import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { SignerConfigSchema } from '@cosigner/keys/signer';
import { parsePublicKeyB64 } from '@cosigner/protocol/identity';
import {
  type ConfigProblem,
  deepFreeze,
  LogLevelSchema,
  readConfigFile,
  validateConfig,
} from '@cosigner/runtime/config';
import { isLoopbackHost } from '@cosigner/runtime/hosts';
import { isProduction } from '@cosigner/runtime/mode';
import { type Static, Type } from 'typebox';
import { nodeErrors } from './errors.ts';
import { type FrostConfig, FrostConfigSchema, resolveFrostConfig } from './frost/config.ts';

/**
 * The node's configuration: one schema, validated once at boot, then frozen. Sources in
 * increasing precedence: defaults, the YAML file, command-line flags. Relative paths in the file are
 * resolved against the file's directory, so a config moves with its data.
 */

/** Most coordinator URLs a node dials (`coordinator.urls`). */
export const MAX_COORDINATORS = 16;

export const ConfigSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('development'), Type.Literal('production')], { default: 'development' }),
    nodeId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' }),
    dataDir: Type.String({ minLength: 1 }),
    coordinator: Type.Object(
      {
        /** The coordinator's base URL: one replica (the same as `urls: [url]`). */
        url: Type.Optional(Type.String({ pattern: '^wss?://', maxLength: 2048 })),
        /**
         * Every coordinator replica's base URL: the node holds one authenticated session with each (session.ts
         * CoordinatorSessions). At most 16: each is a socket, a metric label and an audit trail of its own.
         */
        urls: Type.Optional(
          Type.Array(Type.String({ pattern: '^wss?://', maxLength: 2048 }), {
            minItems: 1,
            maxItems: MAX_COORDINATORS,
          }),
        ),
        /** Pinned coordinator message keys, base64 raw ed25519; several during a rotation. */
        publicKeys: Type.Array(Type.String(), { minItems: 1, maxItems: 8 }),
      },
      { additionalProperties: false },
    ),
    /** Node identity key (PEM); default <dataDir>/identity.pem, created 0600 on first start. */
    identityKeyFile: Type.Optional(Type.String({ minLength: 1 })),
    /** The network passphrase this node signs for: every hash is computed with it. */
    network: Type.String({ minLength: 1, maxLength: 256 }),
    key: SignerConfigSchema,
    /** Path of the policy YAML (packages/policy). */
    policy: Type.String({ minLength: 1 }),
    admin: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
        /**
         * File holding the admin API token (mode 0600). Required in production whatever the address: a browser
         * reaches a loopback listener through DNS rebinding, so loopback alone does not authenticate anyone.
         */
        tokenFile: Type.Optional(Type.String({ minLength: 1 })),
        /**
         * Host names (or IP literals) the admin API answers for besides loopback literals and `localhost`; any
         * other Host header, and any foreign Origin, is refused (RUNTIME_HOST_NOT_ALLOWED, 403).
         */
        allowedHosts: Type.Array(Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:_\\[\\]-]+$' }), {
          maxItems: 64,
          default: [],
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    limits: Type.Object(
      {
        /** Frames per second accepted from the coordinator, and the burst allowance. */
        framesPerSecond: Type.Number({ minimum: 1, default: 200 }),
        frameBurst: Type.Integer({ minimum: 1, default: 1000 }),
        /** How long a signed slot stays held after its maxTime (clock skew between host and network). */
        slotGraceSeconds: Type.Integer({ minimum: 0, maximum: 86_400, default: 60 }),
        /** Largest clock difference accepted on a coordinator frame. */
        maxSkewMs: Type.Integer({ minimum: 1000, maximum: 300_000, default: 30_000 }),
        /** Cap of the jittered exponential reconnect backoff. */
        reconnectMaxMs: Type.Integer({ minimum: 100, maximum: 300_000, default: 10_000 }),
        /** Handshake deadline after the socket opens. */
        handshakeTimeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** FROST threshold signing: share sealing and the key generations this node may join (frost/config.ts). */
    frost: Type.Optional(FrostConfigSchema),
    logLevel: LogLevelSchema,
  },
  { additionalProperties: false },
);

type RawConfig = Static<typeof ConfigSchema>;

/** The coordinator section as the node uses it: `url` and `urls` are folded into one list. */
export interface CoordinatorConfig {
  /** Every replica's URL, as written in the config, in config order; never empty, no two alike. */
  readonly urls: readonly string[];
  readonly publicKeys: readonly string[];
  /** Which key the URLs came from, so an error names what the operator wrote. */
  readonly field: 'coordinator.url' | 'coordinator.urls';
}

export interface NodeConfig extends Omit<RawConfig, 'frost' | 'coordinator'> {
  coordinator: CoordinatorConfig;
  frost?: FrostConfig | undefined;
  identityKeyFile: string;
  /** Absolute path of the file the config came from (undefined when built in code). */
  configFile: string | undefined;
  /** sha256 hex of the config file bytes, for the audit log. */
  configSha256: string;
  /** Decoded pinned coordinator keys. */
  coordinatorKeys: readonly Buffer[];
  production: boolean;
}

export interface ConfigOverrides {
  dataDir?: string;
  host?: string;
  port?: number;
  mode?: 'development' | 'production';
}

/** The node's error for a config problem (NODE_CONFIG_INVALID, naming the field). */
function configError({ field, problem, cause }: ConfigProblem): Error {
  return nodeErrors.error(
    'NODE_CONFIG_INVALID',
    { field, problem },
    { message: `Invalid node config: ${field}: ${problem}.`, ...(cause !== undefined ? { cause } : {}) },
  );
}

/** The config field of the `i`th coordinator URL. */
export function coordinatorUrlField(c: Pick<CoordinatorConfig, 'field'>, i: number): string {
  return c.field === 'coordinator.url' ? 'coordinator.url' : `coordinator.urls.${i}`;
}

/**
 * `coordinator.url` (one replica, as before) or `coordinator.urls` (every replica), never both, never none. Each URL
 * must parse, carry no credentials (the session is authenticated by the node's identity key and the pinned
 * coordinator keys, so a password in a URL would only end up in logs and metric labels) and differ from the others
 * once normalised (WHATWG URL: scheme and host lower-cased, default port dropped, a trailing slash ignored): two
 * sessions to one coordinator would double every frame for no gain.
 */
function coordinatorUrls(raw: RawConfig['coordinator']): CoordinatorConfig {
  if (raw.url !== undefined && raw.urls !== undefined) {
    throw configError({
      field: 'coordinator.urls',
      problem: 'give coordinator.url (one coordinator) or coordinator.urls (every replica), not both',
    });
  }
  if (raw.url === undefined && raw.urls === undefined) {
    throw configError({
      field: 'coordinator.urls',
      problem: 'missing: the coordinator URL(s) this node dials (coordinator.url or coordinator.urls)',
    });
  }
  const field = raw.url !== undefined ? 'coordinator.url' : 'coordinator.urls';
  const urls = raw.url !== undefined ? [raw.url] : [...(raw.urls as string[])];
  const seen = new Map<string, number>();
  urls.forEach((u, i) => {
    const name = coordinatorUrlField({ field }, i);
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw configError({ field: name, problem: `${JSON.stringify(u)} is not a URL` });
    }
    if (parsed.username !== '' || parsed.password !== '') {
      throw configError({
        field: name,
        problem: 'must not carry a user name or password (the session is authenticated by the identity key)',
      });
    }
    const key = parsed.href.endsWith('/') ? parsed.href : `${parsed.href}/`;
    const before = seen.get(key);
    if (before !== undefined) {
      throw configError({
        field: name,
        problem: `the same coordinator as coordinator.urls.${before} (${urls[before]})`,
      });
    }
    seen.set(key, i);
  });
  return { urls, publicKeys: raw.publicKeys, field };
}

function resolvePath(base: string, p: string): string {
  return isAbsolute(p) ? p : resolve(base, p);
}

/**
 * Validate a parsed config object, apply defaults and flags, resolve paths, freeze it.
 * @throws CosignerError NODE_CONFIG_INVALID naming the first offending field
 */
export function parseConfig(
  input: unknown,
  opts: { baseDir: string; overrides?: ConfigOverrides; configFile?: string; sha256?: string; env?: NodeJS.ProcessEnv },
): NodeConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw configError({ field: '(top level)', problem: 'the node config must be a YAML mapping' });
  }
  const o = opts.overrides ?? {};
  const merged = { ...input } as Record<string, unknown>;
  if (o.dataDir !== undefined) merged.dataDir = o.dataDir;
  if (o.mode !== undefined) merged.mode = o.mode;
  if (o.host !== undefined || o.port !== undefined) {
    const admin = { ...((merged.admin as Record<string, unknown> | undefined) ?? {}) };
    if (o.host !== undefined) admin.host = o.host;
    if (o.port !== undefined) admin.port = o.port;
    merged.admin = admin;
  }
  const raw: RawConfig = validateConfig(ConfigSchema, merged, configError);
  const coordinatorKeys = raw.coordinator.publicKeys.map((k, i) => {
    try {
      return parsePublicKeyB64(k, `coordinator.publicKeys.${i}`);
    } catch {
      throw configError({ field: `coordinator.publicKeys.${i}`, problem: 'not a base64 raw ed25519 public key' });
    }
  });
  const base = opts.baseDir;
  const dataDir = resolvePath(base, raw.dataDir);
  const key = { ...raw.key };
  if (key.type === 'local') key.keyFile = resolvePath(base, key.keyFile);
  if (key.type === 'pkcs11') {
    key.module = resolvePath(base, key.module);
    if (key.pinFile) key.pinFile = resolvePath(base, key.pinFile);
  }
  const admin = { ...raw.admin, ...(raw.admin.tokenFile ? { tokenFile: resolvePath(base, raw.admin.tokenFile) } : {}) };
  const coordinator = coordinatorUrls(raw.coordinator);
  const config: NodeConfig = {
    ...raw,
    coordinator,
    dataDir,
    key,
    admin,
    policy: resolvePath(base, raw.policy),
    frost: raw.frost && resolveFrostConfig(raw.frost, base),
    identityKeyFile: raw.identityKeyFile ? resolvePath(base, raw.identityKeyFile) : join(dataDir, 'identity.pem'),
    configFile: opts.configFile,
    configSha256: opts.sha256 ?? createHash('sha256').update(JSON.stringify(input)).digest('hex'),
    coordinatorKeys,
    production: isProduction(raw.mode, opts.env ?? {}),
  };
  return deepFreeze(config);
}

/**
 * Read, validate and freeze the config file.
 * @throws CosignerError NODE_CONFIG_INVALID (unreadable, not YAML, or failing the schema)
 */
export async function loadConfig(
  path: string,
  overrides: ConfigOverrides = {},
  env = process.env,
): Promise<NodeConfig> {
  const { path: file, text, doc } = await readConfigFile(path, configError);
  return parseConfig(doc, {
    baseDir: dirname(file),
    overrides,
    configFile: file,
    sha256: createHash('sha256').update(text).digest('hex'),
    env,
  });
}

/**
 * True for addresses only this host can reach: an IP literal in 127.0.0.0/8 or ::1, or `localhost`. Any other
 * name is resolved by DNS and can point anywhere, whatever it starts with (`127.evil.example`).
 */
export function isLoopback(host: string): boolean {
  return isLoopbackHost(host);
}

async function refuseIfReadable(path: string, what: string, mask: number): Promise<string | undefined> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch {
    return undefined;
  }
  return (mode & mask) !== 0 ? `${what} ${path} is readable by others (mode ${(mode & 0o777).toString(8)})` : undefined;
}

/**
 * The production refusals that depend on the config and files (policy velocity is checked where the
 * policy is loaded). Every problem is listed at once so an operator fixes them in one pass.
 * @throws CosignerError NODE_CONFIG_UNSAFE
 */
export async function assertProductionSafe(config: NodeConfig, files: { ledger?: string } = {}): Promise<void> {
  if (!config.production) return;
  const problems: string[] = [];
  if (config.key.type === 'local') problems.push('key.type local is for development only (use aws-kms or pkcs11)');
  if (config.key.type === 'aws-kms' && config.key.credentials) {
    problems.push(
      'key.credentials (static keys in the config) are for the KMS emulator only; use the AWS credential chain',
    );
  }
  if (!config.admin.tokenFile) {
    problems.push(
      `admin.tokenFile is not set (the admin API at ${config.admin.host} approves held proposals; production requires its token on any address)`,
    );
  }
  // Each replica on its own: one plain-text session off this host is enough to expose the proposals it carries.
  config.coordinator.urls.forEach((u, i) => {
    if (u.startsWith('ws://') && !isLoopback(new URL(u).hostname)) {
      problems.push(`${coordinatorUrlField(config.coordinator, i)} must use wss:// off this host`);
    }
  });
  for (const [path, what, mask] of [
    [config.configFile, 'config file', 0o007],
    [config.identityKeyFile, 'identity key', 0o077],
    [files.ledger, 'signing ledger', 0o077],
    [config.admin.tokenFile, 'admin token file', 0o077],
  ] as const) {
    if (!path) continue;
    const p = await refuseIfReadable(path, what, mask);
    if (p) problems.push(p);
  }
  if (problems.length > 0) {
    throw nodeErrors.error(
      'NODE_CONFIG_UNSAFE',
      { problems },
      { message: `Refusing to start in production: ${problems.join('; ')}.` },
    );
  }
}

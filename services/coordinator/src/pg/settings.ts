import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import type { PoolConfig } from 'pg';
import { type Static, Type } from 'typebox';
import { Value } from 'typebox/value';
import { coordinatorErrors } from '../errors.ts';

/**
 * Where the coordinator keeps its state: the embedded SQLite file under `dataDir` (the default, nothing to
 * install), or a PostgreSQL database shared by coordinator replicas. A tagged union picked by `type`.
 *
 * PostgreSQL credentials never sit in the config: the URL names host, port, database and user only, and the
 * password comes from a file readable by its owner only (`passwordFile`, e.g. a mounted secret) or from an
 * environment variable (`passwordEnv`). A URL carrying a password, or libpq query options (`?sslmode=`,
 * `?password=`...), is refused naming the field, so a config file, a log line or a `ps` listing never shows one.
 */

const Tls = Type.Object(
  {
    /**
     * `verify-full` (default): TLS, the server certificate checked against `caFile` (or the system roots) and its
     * name against the URL's host. `require`: TLS without checking who answers (libpq's sslmode=require), for a
     * network the operator trusts. `disable`: no TLS, allowed in production only to a loopback host.
     */
    mode: Type.Union([Type.Literal('verify-full'), Type.Literal('require'), Type.Literal('disable')], {
      default: 'verify-full',
    }),
    /** PEM bundle of the CA(s) that sign the server's certificate. */
    caFile: Type.Optional(Type.String({ minLength: 1 })),
    /** Client certificate and key (PEM) for servers that authenticate clients by certificate. */
    certFile: Type.Optional(Type.String({ minLength: 1 })),
    keyFile: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false, default: {} },
);

export const SqliteStoreSettingsSchema = Type.Object({ type: Type.Literal('sqlite') }, { additionalProperties: false });

export const PostgresStoreSettingsSchema = Type.Object(
  {
    type: Type.Literal('postgres'),
    /** `postgres://user@host:port/database`, without password or query. */
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    passwordFile: Type.Optional(Type.String({ minLength: 1 })),
    passwordEnv: Type.Optional(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' })),
    tls: Tls,
    /** Connections this replica keeps open at most. */
    poolSize: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
    /** How long to wait for a connection (a new one or a free one of the pool) before answering unavailable. */
    connectTimeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 5000 }),
    /** Longest a single statement may run on the server (statement_timeout). */
    statementTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 15_000 }),
    /**
     * How long a round lease lasts unless renewed. A replica that dies is replaced after at most this long; a live
     * replica renews at a third of it.
     */
    leaseMs: Type.Integer({ minimum: 1000, maximum: 600_000, default: 10_000 }),
  },
  { additionalProperties: false },
);

export const StoreSettingsSchema = Type.Union([SqliteStoreSettingsSchema, PostgresStoreSettingsSchema], {
  default: { type: 'sqlite' },
});

export type StoreSettings = Static<typeof StoreSettingsSchema>;
export type PostgresStoreSettings = Static<typeof PostgresStoreSettingsSchema>;

function invalid(field: string, problem: string): never {
  throw coordinatorErrors.error(
    'COORD_BAD_CONFIG',
    { field, problem },
    { message: `Invalid coordinator config: ${field}: ${problem}.` },
  );
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/**
 * Validate the `store` section (defaults applied, paths resolved against `baseDir`) and freeze it. `field` is the
 * section's path in the config, for error messages.
 * @throws CosignerError COORD_BAD_CONFIG naming the offending field
 */
export function parseStoreSettings(
  input: unknown,
  opts: { field?: string; baseDir?: string; production?: boolean } = {},
): Readonly<StoreSettings> {
  const field = opts.field ?? 'store';
  const source = input ?? { type: 'sqlite' };
  const type = typeof source === 'object' ? (source as { type?: unknown }).type : undefined;
  if (type !== 'sqlite' && type !== 'postgres') invalid(`${field}.type`, 'must be sqlite or postgres');
  // The defaults of the branch `type` names (a union's defaults cannot be applied before knowing the branch).
  const schema = type === 'sqlite' ? SqliteStoreSettingsSchema : PostgresStoreSettingsSchema;
  const withDefaults = Value.Default(schema, structuredClone(source));
  if (!Value.Check(schema, withDefaults)) {
    const first = [...Value.Errors(schema, withDefaults)][0]!;
    const path = first.instancePath.slice(1).replaceAll('/', '.');
    const params = first.params as { additionalProperties?: string[]; requiredProperties?: string[] } | undefined;
    const problem =
      first.keyword === 'boolean'
        ? 'unknown field'
        : params?.additionalProperties
          ? `unknown field(s) ${params.additionalProperties.join(', ')}`
          : params?.requiredProperties
            ? `missing ${params.requiredProperties.join(', ')}`
            : first.message;
    invalid(path ? `${field}.${path}` : field, problem);
  }
  if (type === 'sqlite') return Object.freeze(withDefaults as StoreSettings);
  const s = withDefaults as PostgresStoreSettings;
  let url: URL;
  try {
    url = new URL(s.url);
  } catch {
    invalid(`${field}.url`, 'not a URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')
    invalid(`${field}.url`, 'must start with postgres:// or postgresql://');
  // Said before anything else about the URL: the one mistake here that leaks a secret.
  if (url.password !== '')
    invalid(`${field}.url`, 'carries a password: put it in passwordFile or passwordEnv, never in the config');
  if (url.search !== '')
    invalid(`${field}.url`, 'carries query options: set TLS under tls and credentials in passwordFile/passwordEnv');
  if (url.hostname === '') invalid(`${field}.url`, 'names no host');
  if (url.username === '') invalid(`${field}.url`, 'names no user (postgres://user@host/database)');
  if (url.pathname.length <= 1) invalid(`${field}.url`, 'names no database (postgres://user@host/database)');
  if (s.passwordFile !== undefined && s.passwordEnv !== undefined)
    invalid(`${field}.passwordEnv`, 'set passwordFile or passwordEnv, not both');
  if ((s.tls.certFile === undefined) !== (s.tls.keyFile === undefined))
    invalid(`${field}.tls.keyFile`, 'certFile and keyFile go together');
  if (s.tls.mode === 'disable' && (s.tls.caFile || s.tls.certFile))
    invalid(`${field}.tls.mode`, 'is disable, yet TLS files are set');
  if (opts.production && s.tls.mode === 'disable' && !LOOPBACK.has(url.hostname))
    invalid(`${field}.tls.mode`, 'disable is refused in production for a host other than loopback');
  const base = opts.baseDir ?? process.cwd();
  const abs = (p: string | undefined): string | undefined => (p === undefined || isAbsolute(p) ? p : resolve(base, p));
  const out: PostgresStoreSettings = {
    ...s,
    passwordFile: abs(s.passwordFile),
    tls: { ...s.tls, caFile: abs(s.tls.caFile), certFile: abs(s.tls.certFile), keyFile: abs(s.tls.keyFile) },
  };
  for (const k of ['passwordFile'] as const) if (out[k] === undefined) delete out[k];
  for (const k of ['caFile', 'certFile', 'keyFile'] as const) if (out.tls[k] === undefined) delete out.tls[k];
  Object.freeze(out.tls);
  return Object.freeze(out);
}

async function readPrivate(path: string, field: string, secret: boolean): Promise<string> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (e) {
    invalid(field, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (secret && (mode & 0o077) !== 0)
    invalid(field, `${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
  return readFile(path, 'utf8');
}

/**
 * The `pg` pool configuration for validated settings: the password read now from its file (which must be mode 0600
 * or stricter) or its environment variable, the TLS files read. The result holds the password: never log it.
 * @throws CosignerError COORD_BAD_CONFIG (unreadable or non-private file, unset or empty variable)
 */
export async function poolConfig(
  s: Readonly<PostgresStoreSettings>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PoolConfig> {
  const url = new URL(s.url);
  let password: string | undefined;
  if (s.passwordFile !== undefined) {
    password = (await readPrivate(s.passwordFile, 'store.passwordFile', true)).replace(/\r?\n$/, '');
    if (password === '') invalid('store.passwordFile', `${s.passwordFile} is empty`);
  } else if (s.passwordEnv !== undefined) {
    password = env[s.passwordEnv];
    if (password === undefined || password === '')
      invalid('store.passwordEnv', `the environment variable ${s.passwordEnv} is unset or empty`);
  }
  let ssl: PoolConfig['ssl'] = false;
  if (s.tls.mode !== 'disable') {
    ssl = {
      rejectUnauthorized: s.tls.mode === 'verify-full',
      ...(s.tls.caFile ? { ca: await readPrivate(s.tls.caFile, 'store.tls.caFile', false) } : {}),
      ...(s.tls.certFile ? { cert: await readPrivate(s.tls.certFile, 'store.tls.certFile', false) } : {}),
      ...(s.tls.keyFile ? { key: await readPrivate(s.tls.keyFile, 'store.tls.keyFile', true) } : {}),
    };
  }
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port === '' ? 5432 : Number(url.port),
    user: decodeURIComponent(url.username),
    database: decodeURIComponent(url.pathname.slice(1)),
    ...(password === undefined ? {} : { password }),
    ssl,
    max: s.poolSize,
    connectionTimeoutMillis: s.connectTimeoutMs,
    statement_timeout: s.statementTimeoutMs,
    application_name: 'cosigner-coordinator',
  };
}

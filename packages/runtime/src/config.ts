import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { parse as parseYaml } from 'yaml';

/**
 * Loading a service's configuration, written once for every service: read the file, parse it (YAML, or JSON for
 * the ledger simulator), validate it against the service's TypeBox schema with the defaults applied, and freeze
 * the result. Validated once, at boot, then frozen: a config that passed is never changed afterwards. Each service
 * keeps its schema and its own error code (its errors.ts); this module says which field is wrong and why, and the
 * service's `fail` turns that into its error.
 */

/** What is wrong with a config, by field: `limits.bodyBytes`, `nodes.0.stellarKey`, `(top level)`, `--config`. */
export interface ConfigProblem {
  readonly field: string;
  readonly problem: string;
  /** The underlying error (an unreadable file, a YAML syntax error). */
  readonly cause?: unknown;
}

/** Builds the service's own error (its registry code) for a problem; the loader throws what it returns. */
export type ConfigFailure = (p: ConfigProblem) => Error;

/** The top level of a config, as a field name. */
export const TOP_LEVEL = '(top level)';

/** The `logLevel` field every service config has: pino's levels, `info` by default. */
export const LogLevelSchema = Type.Union(
  ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
  { default: 'info' },
);

/** Freeze `o` and everything reachable from it (byte arrays and buffers excepted: they cannot be frozen). */
export function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !ArrayBuffer.isView(o) && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}

/** `/limits/bodyBytes` as a field name, `limits.bodyBytes`; the root as `(top level)`. */
function fieldOf(instancePath: string): string {
  return instancePath === '' ? TOP_LEVEL : instancePath.slice(1).replaceAll('/', '.');
}

interface SchemaError {
  keyword: string;
  instancePath: string;
  message: string;
  params?: unknown;
}

/**
 * The one problem to report for a failed validation. TypeBox reports an unknown property twice (a `false` schema
 * at the property and `additionalProperties` at its parent) and a union once more at its root (`anyOf`); the
 * specific errors say more, so those two are passed over when there is anything else.
 */
export function describeSchemaErrors(errors: readonly SchemaError[]): ConfigProblem {
  const first = errors.find((e) => e.keyword !== 'anyOf' && e.keyword !== 'boolean') ?? errors[0];
  if (!first) return { field: TOP_LEVEL, problem: 'invalid' };
  const params = first.params as { additionalProperties?: string[]; requiredProperties?: string[] } | undefined;
  if (params?.additionalProperties?.length) {
    const names = params.additionalProperties;
    return { field: fieldOf(`${first.instancePath}/${names[0]}`), problem: `unknown field(s) ${names.join(', ')}` };
  }
  if (params?.requiredProperties?.length) {
    return { field: fieldOf(first.instancePath), problem: `missing ${params.requiredProperties.join(', ')}` };
  }
  if (first.keyword === 'boolean') return { field: fieldOf(first.instancePath), problem: 'unknown field' };
  return { field: fieldOf(first.instancePath), problem: first.message };
}

/**
 * `input` checked against `schema` with the schema's defaults filled in (on a copy: the caller's object is left
 * as it was). Not frozen: a service resolves paths and adds derived fields first, then calls `deepFreeze`.
 * @throws what `fail` returns, for the first field that breaks the schema, or for an input that is not a mapping
 */
export function validateConfig<S extends TSchema>(schema: S, input: unknown, fail: ConfigFailure): Static<S> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw fail({ field: TOP_LEVEL, problem: 'must be a mapping of fields' });
  }
  const withDefaults = Value.Default(schema, structuredClone(input));
  if (!Value.Check(schema, withDefaults)) {
    throw fail(describeSchemaErrors([...Value.Errors(schema, withDefaults)] as SchemaError[]));
  }
  return withDefaults as Static<S>;
}

/** A config file as read: where it is, its bytes as text (for a digest), and the parsed document. */
export interface ConfigFile {
  /** Absolute path. */
  readonly path: string;
  readonly text: string;
  readonly doc: unknown;
}

/**
 * Read and parse a config file: YAML (a superset of JSON) or strict JSON.
 * @throws what `fail` returns, with field `--config`, when the file cannot be read or parsed
 */
export async function readConfigFile(
  file: string,
  fail: ConfigFailure,
  format: 'yaml' | 'json' = 'yaml',
): Promise<ConfigFile> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? 'error';
    throw fail({ field: '--config', problem: `cannot read ${path}: ${code}`, cause });
  }
  try {
    return { path, text, doc: format === 'json' ? JSON.parse(text) : parseYaml(text) };
  } catch (cause) {
    const first = ((cause as Error).message ?? '').split('\n')[0];
    throw fail({ field: '--config', problem: `${path} is not valid ${format.toUpperCase()} (${first})`, cause });
  }
}

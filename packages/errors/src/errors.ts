/**
 * The error registry every package builds on.
 *
 * Each package declares its codes once, in its own `errors.ts`, with `defineErrors()`: a code, an HTTP
 * status and a human sentence. Code throws `registry.error('CODE', details?)`; callers branch on `code`,
 * services map `status` onto HTTP, and `docs/reference/errors.md` lists every code (a test enforces it).
 */

/** What one code means: the HTTP status a service answers with and the sentence a person reads. */
export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

/** An error that carries a machine-readable code. Never wraps a secret in `details`. */
export class CosignerError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, status: number, message: string, details?: Record<string, unknown>, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'CosignerError';
    this.code = code;
    this.status = status;
    this.details = details;
  }

  /** The uniform body every HTTP API answers with: `{ code, message, details? }`. */
  toJSON(): { code: string; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export interface ErrorRegistry<C extends string> {
  /** The package this registry belongs to, for the docs. */
  readonly scope: string;
  readonly specs: Readonly<Record<C, ErrorSpec>>;
  /** Build an error; `message` overrides the registry sentence when the case needs more precision. */
  error(code: C, details?: Record<string, unknown>, opts?: { message?: string; cause?: unknown }): CosignerError;
  /** True when `e` is a CosignerError with one of this registry's codes (or exactly `code`). */
  is(e: unknown, code?: C): e is CosignerError;
}

const allRegistries: ErrorRegistry<string>[] = [];

/** Declare a package's error codes. Codes must be SCREAMING_SNAKE_CASE and unique across the product. */
export function defineErrors<C extends string>(scope: string, specs: Record<C, ErrorSpec>): ErrorRegistry<C> {
  for (const code of Object.keys(specs)) {
    if (!/^[A-Z][A-Z0-9_]+$/.test(code)) throw new TypeError(`error code ${code} is not SCREAMING_SNAKE_CASE`);
    for (const other of allRegistries) {
      if (other.scope !== scope && code in other.specs) {
        throw new TypeError(`error code ${code} is declared by both ${other.scope} and ${scope}`);
      }
    }
  }
  const registry: ErrorRegistry<C> = {
    scope,
    specs: Object.freeze({ ...specs }),
    error(code, details, opts) {
      const spec = specs[code];
      return new CosignerError(code, spec.status, opts?.message ?? spec.message, details, opts?.cause);
    },
    is(e: unknown, code?: C): e is CosignerError {
      return e instanceof CosignerError && (code === undefined ? e.code in specs : e.code === code);
    },
  };
  const existing = allRegistries.findIndex((r) => r.scope === scope);
  if (existing >= 0) allRegistries.splice(existing, 1);
  allRegistries.push(registry as unknown as ErrorRegistry<string>);
  return registry;
}

/** Every registry loaded so far in this process (the docs test imports each package's errors.ts first). */
export function registeredErrors(): readonly ErrorRegistry<string>[] {
  return allRegistries;
}

/** Narrow an unknown thrown value to a CosignerError, wrapping anything else under `fallback`. */
export function asCosignerError(
  e: unknown,
  fallback: { code: string; status: number; message: string },
): CosignerError {
  if (e instanceof CosignerError) return e;
  return new CosignerError(fallback.code, fallback.status, fallback.message, undefined, e);
}

/**
 * The error registry every package builds on.
 *
 * Each package declares its codes once, in its own `errors.ts`, with `defineErrors()`: a code, an HTTP
 * status and a human sentence. Code throws `registry.error('CODE', details?)`; callers branch on `code`,
 * services map `status` onto HTTP, and `docs/reference/errors.md` lists every code (a test enforces it).
 *
 * Decision reasons (why a node refuses or holds a proposal) are answers, not errors: `defineReasons()` declares
 * them with the outcome they force instead of a status, and the same document lists them in a section of its own.
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

/** The outcome a decision reason leads to: `reject` refuses; `hold` waits for an operator's approval. */
export type ReasonOutcome = 'reject' | 'hold';

/** What one decision reason means: the outcome it forces and the sentence a person reads. No HTTP status. */
export interface ReasonSpec {
  readonly outcome: ReasonOutcome;
  readonly message: string;
}

/** A reason as a decision carries it on the wire (packages/protocol `decision.reasons`). */
export interface DecisionReason {
  code: string;
  message: string;
  opIndex?: number;
  field?: string;
}

/**
 * The reasons a package or service gives in a decision. A refusal to sign is not an error (nothing failed): it is
 * an answer, so its codes carry an outcome instead of an HTTP status, and are documented beside the error codes.
 */
export interface ReasonRegistry<C extends string> {
  readonly scope: string;
  readonly specs: Readonly<Record<C, ReasonSpec>>;
  /** Build a reason; `message` overrides the registry sentence when the case has more to say (an id, a number). */
  reason(code: C, opts?: { message?: string; field?: string; opIndex?: number }): DecisionReason;
}

const allReasonRegistries: ReasonRegistry<string>[] = [];

/**
 * Declare the reasons a package or service gives in its decisions. Codes must be SCREAMING_SNAKE_CASE and unique
 * across every reason registry of the product: a code that crosses the wire means one thing to every reader.
 */
export function defineReasons<C extends string>(scope: string, specs: Record<C, ReasonSpec>): ReasonRegistry<C> {
  for (const [code, spec] of Object.entries(specs) as [string, ReasonSpec][]) {
    if (!/^[A-Z][A-Z0-9_]+$/.test(code)) throw new TypeError(`reason code ${code} is not SCREAMING_SNAKE_CASE`);
    if (spec.outcome !== 'reject' && spec.outcome !== 'hold') {
      throw new TypeError(`reason code ${code} has outcome ${String(spec.outcome)}, not reject or hold`);
    }
    for (const other of allReasonRegistries) {
      if (other.scope !== scope && code in other.specs) {
        throw new TypeError(`reason code ${code} is declared by both ${other.scope} and ${scope}`);
      }
    }
  }
  const registry: ReasonRegistry<C> = {
    scope,
    specs: Object.freeze({ ...specs }),
    reason(code, opts = {}) {
      const out: DecisionReason = { code, message: opts.message ?? specs[code].message };
      if (opts.opIndex !== undefined) out.opIndex = opts.opIndex;
      if (opts.field !== undefined) out.field = opts.field;
      return out;
    },
  };
  const existing = allReasonRegistries.findIndex((r) => r.scope === scope);
  if (existing >= 0) allReasonRegistries.splice(existing, 1);
  allReasonRegistries.push(registry as unknown as ReasonRegistry<string>);
  return registry;
}

/** Every reason registry loaded so far in this process (the docs test imports each declaring module first). */
export function registeredReasons(): readonly ReasonRegistry<string>[] {
  return allReasonRegistries;
}

/** `{ CODE: outcome }` of a reason registry: what a reason does to a decision, for code that branches on it. */
export function reasonOutcomes<C extends string>(registry: ReasonRegistry<C>): Readonly<Record<C, ReasonOutcome>> {
  return Object.freeze(
    Object.fromEntries(Object.entries(registry.specs).map(([c, s]) => [c, (s as ReasonSpec).outcome])),
  ) as Record<C, ReasonOutcome>;
}

/** What one record code means: the sentence a person reads. */
export interface RecordCodeSpec {
  readonly message: string;
}

/**
 * Record codes: values a service writes into its own records and events about something it observed, such as a
 * node's misbehaviour or how a submission ended. They are not errors (the service raised nothing) and not decision
 * reasons (no node gave them). They are lower_snake_case, as the network's own result codes they sit beside in
 * the same records (`tx_bad_seq`, `op_underfunded`: Horizon's, passed on verbatim).
 */
export interface RecordCodeRegistry<C extends string> {
  readonly scope: string;
  /** What the codes classify, as the document's heading says it ("misbehaviour kinds"). */
  readonly title: string;
  readonly specs: Readonly<Record<C, RecordCodeSpec>>;
}

const allRecordRegistries: RecordCodeRegistry<string>[] = [];

/** Declare a set of record codes. Codes must be lower_snake_case and unique within the scope. */
export function defineRecordCodes<C extends string>(
  scope: string,
  title: string,
  specs: Record<C, RecordCodeSpec>,
): RecordCodeRegistry<C> {
  for (const code of Object.keys(specs)) {
    if (!/^[a-z][a-z0-9_]+$/.test(code)) throw new TypeError(`record code ${code} is not lower_snake_case`);
    for (const other of allRecordRegistries) {
      if (other.scope === scope && other.title !== title && code in other.specs) {
        throw new TypeError(`record code ${code} is declared by both ${other.title} and ${title} of ${scope}`);
      }
    }
  }
  const registry: RecordCodeRegistry<C> = { scope, title, specs: Object.freeze({ ...specs }) };
  const existing = allRecordRegistries.findIndex((r) => r.scope === scope && r.title === title);
  if (existing >= 0) allRecordRegistries.splice(existing, 1);
  allRecordRegistries.push(registry as unknown as RecordCodeRegistry<string>);
  return registry;
}

/** Every record-code registry loaded so far in this process. */
export function registeredRecordCodes(): readonly RecordCodeRegistry<string>[] {
  return allRecordRegistries;
}

import { CosignerError } from '@cosigner/errors/errors';
import { keysErrors } from './errors.ts';

/**
 * Timeouts, bounded retries and a circuit breaker around calls to a remote or native key backend.
 *
 * - Every attempt has its own deadline (`timeoutMs`); the operation receives an AbortSignal so the AWS SDK can
 *   drop the socket. An attempt past its deadline is KEYS_BACKEND_TIMEOUT and is not retried: the backend may
 *   still be working on it, and piling up more requests on a slow backend makes it slower.
 * - Only KEYS_BACKEND_UNAVAILABLE (throttling, 5xx, refused connections) is retried, at most `retries` times,
 *   with exponential backoff and full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
 * - The breaker opens after `failureThreshold` consecutive failed calls and then refuses calls at once
 *   (KEYS_CIRCUIT_OPEN) for `resetAfterMs`; after that one call is let through as a probe (half-open): success
 *   closes the circuit, failure opens it again. Only failures that say the backend is unhealthy count
 *   (unavailable, timeout, unexpected error, bad signature); a healthy backend's deterministic refusals
 *   (access denied, disabled key, missing key) do not, so they keep their own code for the operator.
 */

export type CircuitState = 'closed' | 'half-open' | 'open';

export interface ResilienceOptions {
  /** Deadline of one attempt. Default 2000 ms. */
  timeoutMs?: number;
  /** Retries after the first attempt, for KEYS_BACKEND_UNAVAILABLE only. Default 2. */
  retries?: number;
  /** First backoff ceiling; doubles per retry. Default 25 ms. */
  baseDelayMs?: number;
  /** Backoff ceiling. Default 1000 ms. */
  maxDelayMs?: number;
  /** Consecutive failed calls that open the circuit. Default 5. */
  failureThreshold?: number;
  /** How long the circuit stays open before a probe is let through. Default 5000 ms. */
  resetAfterMs?: number;
  /** Injected clock, sleep and randomness (unit tests). */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** Called on every state change (metrics, logs). */
  onStateChange?: (state: CircuitState) => void;
}

const BREAKER_CODES = new Set([
  'KEYS_BACKEND_UNAVAILABLE',
  'KEYS_BACKEND_TIMEOUT',
  'KEYS_BACKEND_ERROR',
  'KEYS_BAD_SIGNATURE',
]);

function countsAsFailure(e: unknown): boolean {
  return !(e instanceof CosignerError) || BREAKER_CODES.has(e.code);
}

const defaultSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Run `op` with a deadline; the signal aborts when the deadline passes. */
export async function withTimeout<T>(op: (signal: AbortSignal) => Promise<T>, timeoutMs: number): Promise<T> {
  const ctrl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // Reject first: an operation that settles on abort must not win the race against its own deadline.
      reject(keysErrors.error('KEYS_BACKEND_TIMEOUT', { timeoutMs }));
      ctrl.abort();
    }, timeoutMs);
  });
  try {
    return await Promise.race([op(ctrl.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export class Resilience {
  private readonly o: Required<Omit<ResilienceOptions, 'onStateChange'>> & Pick<ResilienceOptions, 'onStateChange'>;
  private failures = 0;
  private openedAt = 0;
  private probing = false;
  private current: CircuitState = 'closed';
  private lastFailure: string | undefined;

  constructor(opts: ResilienceOptions = {}) {
    this.o = {
      timeoutMs: opts.timeoutMs ?? 2000,
      retries: opts.retries ?? 2,
      baseDelayMs: opts.baseDelayMs ?? 25,
      maxDelayMs: opts.maxDelayMs ?? 1000,
      failureThreshold: opts.failureThreshold ?? 5,
      resetAfterMs: opts.resetAfterMs ?? 5000,
      now: opts.now ?? Date.now,
      sleep: opts.sleep ?? defaultSleep,
      random: opts.random ?? Math.random,
      onStateChange: opts.onStateChange,
    };
  }

  /** The breaker's state now (an open circuit whose cool-down has passed reads as half-open). */
  get state(): CircuitState {
    if (this.current === 'open' && this.o.now() - this.openedAt >= this.o.resetAfterMs) return 'half-open';
    return this.current;
  }

  /**
   * Run one backend call under the policy.
   * @throws CosignerError KEYS_CIRCUIT_OPEN, KEYS_BACKEND_TIMEOUT, or the operation's own error
   */
  async run<T>(op: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.admit();
    try {
      const result = await this.attempts(op);
      this.succeeded();
      return result;
    } catch (e) {
      this.failed(e);
      throw e;
    }
  }

  private admit(): void {
    const state = this.state;
    if (state === 'closed') return;
    if (state === 'half-open' && !this.probing) {
      this.probing = true;
      this.setState('half-open');
      return;
    }
    throw keysErrors.error('KEYS_CIRCUIT_OPEN', {
      lastFailure: this.lastFailure,
      retryInMs: Math.max(0, this.openedAt + this.o.resetAfterMs - this.o.now()),
    });
  }

  private async attempts<T>(op: (signal: AbortSignal) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await withTimeout(op, this.o.timeoutMs);
      } catch (e) {
        if (attempt >= this.o.retries || !keysErrors.is(e, 'KEYS_BACKEND_UNAVAILABLE')) throw e;
        const ceiling = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** attempt);
        await this.o.sleep(Math.floor(this.o.random() * ceiling));
      }
    }
  }

  private succeeded(): void {
    this.failures = 0;
    this.probing = false;
    if (this.current !== 'closed') this.setState('closed');
  }

  private failed(e: unknown): void {
    const wasProbe = this.probing;
    this.probing = false;
    if (!countsAsFailure(e)) {
      // A deterministic refusal still proves the backend answers: a probe that gets one closes the circuit.
      if (wasProbe) this.succeeded();
      return;
    }
    this.lastFailure = e instanceof CosignerError ? e.code : 'unexpected';
    this.failures++;
    if (wasProbe || this.failures >= this.o.failureThreshold) {
      this.openedAt = this.o.now();
      this.setState('open');
    }
  }

  private setState(state: CircuitState): void {
    this.current = state;
    this.o.onStateChange?.(state);
  }
}

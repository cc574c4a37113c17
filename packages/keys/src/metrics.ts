import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { SignerKind } from './signer.ts';

/** What the key layer reports. Backends call it; services expose the registry on /metrics. */
export interface KeyMetrics {
  /** One finished sign call, successful or not, in seconds. */
  observeSign(kind: SignerKind, seconds: number, outcome: 'ok' | 'error'): void;
  /** One error by KEYS_* code (or another registry's code when it passes through). */
  countError(kind: SignerKind, code: string): void;
  /** Circuit state: 0 closed, 1 half-open, 2 open. */
  setCircuitState(kind: SignerKind, keyId: string, state: 'closed' | 'half-open' | 'open'): void;
}

const STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * Register the key metrics on `registry`. The caller owns the registry (a service's own, or a fresh one in
 * tests), so nothing lands in prom-client's global default registry and two signers in one process can share
 * one set of metrics.
 */
export function createKeyMetrics(registry: Registry): KeyMetrics {
  const latency = new Histogram({
    name: 'cosigner_keys_sign_seconds',
    help: 'Latency of Signer.sign by backend and outcome.',
    labelNames: ['backend', 'outcome'],
    // Loopback and HSM signs sit well under a millisecond; a real KMS round trip is tens of milliseconds.
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'cosigner_keys_errors_total',
    help: 'Key backend errors by backend and code.',
    labelNames: ['backend', 'code'],
    registers: [registry],
  });
  const circuit = new Gauge({
    name: 'cosigner_keys_circuit_state',
    help: 'Circuit breaker state per key: 0 closed, 1 half-open, 2 open.',
    labelNames: ['backend', 'key'],
    registers: [registry],
  });
  return {
    observeSign: (kind, seconds, outcome) => latency.observe({ backend: kind, outcome }, seconds),
    countError: (kind, code) => errors.inc({ backend: kind, code }),
    setCircuitState: (kind, keyId, state) => circuit.set({ backend: kind, key: keyId }, STATE_VALUE[state]),
  };
}

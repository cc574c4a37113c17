import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The node's Prometheus metrics, in their own registry (never the global one: tests build many nodes). */
export interface NodeMetrics {
  readonly registry: Registry;
  readonly decisions: Counter<'outcome' | 'reason'>;
  readonly signLatency: Histogram<'backend'>;
  readonly ledgerRows: Gauge<'kind'>;
  /** 1 while at least one coordinator session is up (what readiness reports). */
  readonly sessionUp: Gauge;
  /** Per coordinator URL (from the config only, so the label set is bounded): 1 while its session is up. */
  readonly coordinatorSessionUp: Gauge<'coordinator'>;
  /** Per coordinator URL: sessions opened (welcomes); a value that keeps climbing is a flapping replica. */
  readonly coordinatorSessions: Counter<'coordinator'>;
  readonly refusedFrames: Counter<'code'>;
}

export function createMetrics(): NodeMetrics {
  const registry = new Registry();
  return {
    registry,
    decisions: new Counter({
      name: 'cosigner_node_decisions_total',
      help: 'Decisions by outcome and reason code (an approval counts once with reason "none")',
      labelNames: ['outcome', 'reason'],
      registers: [registry],
    }),
    signLatency: new Histogram({
      name: 'cosigner_node_sign_seconds',
      help: 'Time the key backend took to sign one hash',
      labelNames: ['backend'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    ledgerRows: new Gauge({
      name: 'cosigner_node_ledger_rows',
      help: 'Rows in the signing ledger (signatures, signed, decisions)',
      labelNames: ['kind'],
      registers: [registry],
    }),
    sessionUp: new Gauge({
      name: 'cosigner_node_session_up',
      help: '1 while at least one authenticated coordinator session is open',
      registers: [registry],
    }),
    coordinatorSessionUp: new Gauge({
      name: 'cosigner_node_coordinator_session_up',
      help: '1 while the authenticated session with this coordinator URL (from the node config) is open',
      labelNames: ['coordinator'],
      registers: [registry],
    }),
    coordinatorSessions: new Counter({
      name: 'cosigner_node_coordinator_sessions_total',
      help: 'Authenticated sessions opened with this coordinator URL (one per welcome)',
      labelNames: ['coordinator'],
      registers: [registry],
    }),
    refusedFrames: new Counter({
      name: 'cosigner_node_refused_frames_total',
      help: 'Coordinator frames refused, by code (forgery, replay, stale, rate limit, ...)',
      labelNames: ['code'],
      registers: [registry],
    }),
  };
}

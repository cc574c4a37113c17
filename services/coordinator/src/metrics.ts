import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The coordinator's Prometheus metrics, on its own Registry (no global state shared between app instances). */
export interface Metrics {
  registry: Registry;
  proposalsCreated: Counter<'kind'>;
  /** Created -> terminal status, by final status. */
  proposalLatency: Histogram<'status'>;
  /** Created -> quorum reached (envelope assembled). */
  quorumTime: Histogram;
  /** Proposal sent -> decision received, per node. */
  nodeLatency: Histogram<'node'>;
  nodeDecisions: Counter<'node' | 'outcome'>;
  nodeMisbehaviour: Counter<'node' | 'kind'>;
  submissions: Counter<'outcome'>;
  connectedNodes: Gauge;
  httpRateLimited: Counter;
  /** Callbacks given up on (attempts exhausted or destination refused); the rows stay in the outbox as failed. */
  callbacksFailed: Counter;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const secs = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
  return {
    registry,
    proposalsCreated: new Counter({
      name: 'coordinator_proposals_created_total',
      help: 'Proposals accepted',
      labelNames: ['kind'],
      registers: [registry],
    }),
    proposalLatency: new Histogram({
      name: 'coordinator_proposal_seconds',
      help: 'Time from creation to a final status',
      labelNames: ['status'],
      buckets: secs,
      registers: [registry],
    }),
    quorumTime: new Histogram({
      name: 'coordinator_quorum_seconds',
      help: 'Time from creation to a complete signature set',
      buckets: secs,
      registers: [registry],
    }),
    nodeLatency: new Histogram({
      name: 'coordinator_node_decision_seconds',
      help: 'Time from sending a proposal to a node until its decision',
      labelNames: ['node'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300],
      registers: [registry],
    }),
    nodeDecisions: new Counter({
      name: 'coordinator_node_decisions_total',
      help: 'Decisions received, by node and outcome',
      labelNames: ['node', 'outcome'],
      registers: [registry],
    }),
    nodeMisbehaviour: new Counter({
      name: 'coordinator_node_misbehaviour_total',
      help: 'Misbehaviour flagged, by node and kind',
      labelNames: ['node', 'kind'],
      registers: [registry],
    }),
    submissions: new Counter({
      name: 'coordinator_submissions_total',
      help: 'Submission outcomes',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    connectedNodes: new Gauge({
      name: 'coordinator_connected_nodes',
      help: 'Nodes with an open authenticated session',
      registers: [registry],
    }),
    httpRateLimited: new Counter({
      name: 'coordinator_http_rate_limited_total',
      help: 'Requests refused with 429',
      registers: [registry],
    }),
    callbacksFailed: new Counter({
      name: 'coordinator_callbacks_failed_total',
      help: 'Callbacks given up on after their last attempt or a refused destination (kept in the outbox as failed)',
      registers: [registry],
    }),
  };
}

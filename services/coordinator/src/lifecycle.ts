import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { coordinatorErrors } from './errors.ts';
import type { EventBus } from './events.ts';
import type { AwaitableRepository, NodeRepository } from './store.ts';

/**
 * Operator lifecycle on the coordinator: the node registry follows a key rotation, and every step of an
 * account setup, rotation, membership or threshold change is an event on the event stream (`lifecycle.step`),
 * next to the proposals that carry the changes themselves.
 *
 * - `PUT /v1/nodes/:id/stellar-key {stellarKey}` (admin): the node's enrolled signing key becomes `stellarKey`.
 *   The node's live session keeps the key it authenticated with until it reconnects announcing the new one
 *   (hub.ts compares the announced key with the registry). Account caches are dropped so the next proposals see
 *   the signer change. A coordinator restart enrols the keys of coordinator.yaml again: the rotation runbook has
 *   the operator update that file.
 * - `POST /v1/lifecycle/events {action, step, ...}` (admin): record a step.
 *
 * Neither route can make a node sign anything: a key the coordinator lists is only where it sends proposals and
 * whose signatures it accepts; each node still decodes and reviews every transaction against its own policy.
 */

const G = Type.String({ pattern: '^G[A-Z2-7]{55}$' });
const ErrorBody = Type.Object({
  code: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});
const errs = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody };
const StepBody = Type.Object(
  {
    action: Type.Union(
      // frost-swap: `cosigner frost swap` records the old group's retirement once no account lists its key.
      ['setup', 'rotate', 'node-add', 'node-remove', 'thresholds', 'frost-swap'].map((a) => Type.Literal(a)),
    ),
    step: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9.-]+$' }),
    account: Type.Optional(G),
    nodeId: Type.Optional(Type.String({ maxLength: 128 })),
    proposalId: Type.Optional(Type.String({ maxLength: 64 })),
    detail: Type.Optional(
      Type.Record(
        Type.String({ maxLength: 64 }),
        Type.Union([Type.String({ maxLength: 512 }), Type.Number(), Type.Boolean(), Type.Null()]),
        { maxProperties: 16 },
      ),
    ),
  },
  { additionalProperties: false },
);

export interface LifecycleDeps {
  nodes: AwaitableRepository<NodeRepository>;
  events: EventBus;
  invalidateAccounts: (ids: readonly string[]) => void;
}

export function registerLifecycleRoutes(app: FastifyInstance, deps: LifecycleDeps): void {
  app.put<{ Params: { id: string }; Body: { stellarKey: string; account?: string } }>(
    '/v1/nodes/:id/stellar-key',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "Change an enrolled node's Stellar signing key (key rotation)",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }),
        body: Type.Object({ stellarKey: G, account: Type.Optional(G) }, { additionalProperties: false }),
        response: {
          200: Type.Object({ id: Type.String(), stellarKey: Type.String(), previous: Type.String() }),
          ...errs,
        },
      },
    },
    async (req) => {
      const node = await deps.nodes.getNode(req.params.id);
      if (!node) {
        throw coordinatorErrors.error(
          'COORD_NOT_FOUND',
          { nodeId: req.params.id },
          { message: `No enrolled node ${req.params.id}.` },
        );
      }
      const previous = node.stellarKey;
      if (previous !== req.body.stellarKey) {
        await deps.nodes.enrollNode(
          { id: node.id, identityKey: node.identityKey, stellarKey: req.body.stellarKey },
          Date.now(),
        );
        await deps.events.emit(null, 'node.key_changed', {
          nodeId: node.id,
          stellarKey: req.body.stellarKey,
          previous,
        });
      }
      if (req.body.account) deps.invalidateAccounts([req.body.account]);
      return { id: node.id, stellarKey: req.body.stellarKey, previous };
    },
  );

  app.post<{ Body: Record<string, unknown> & { action: string; step: string } }>(
    '/v1/lifecycle/events',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Record a step of an operator lifecycle change (setup, rotation, membership, thresholds)',
        body: StepBody,
        response: { 200: Type.Object({ seq: Type.Integer() }), ...errs },
      },
    },
    async (req) => {
      const e = await deps.events.emit(null, 'lifecycle.step', req.body);
      if (typeof req.body.account === 'string') deps.invalidateAccounts([req.body.account]);
      return { seq: e.seq };
    },
  );
}

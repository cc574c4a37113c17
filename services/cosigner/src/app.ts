import { hostCheck } from '@cosigner/runtime/hosts';
import { secretEquals } from '@cosigner/runtime/secrets';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { type Static, Type } from 'typebox';
import { registerConsoleRoutes } from './console-routes.ts';
import { nodeErrors } from './errors.ts';
import { registerFrostRoutes } from './frost/routes.ts';
import type { NodeFrostGroup } from './frost/store.ts';
import type { Keyring } from './keyring.ts';
import { registerKeyringRoutes } from './keyring-routes.ts';
import type { SigningLedger } from './ledger.ts';
import type { NodeMetrics } from './metrics.ts';
import type { NodePolicy } from './policy-reload.ts';
import { registerPolicyRoutes } from './policy-routes.ts';
import type { DecisionBody, Reviewer } from './review.ts';
import { ErrorBody, ReasonSchema } from './schemas.ts';

/**
 * The node's private admin API: health, readiness, metrics, and manual approval of held proposals.
 * It listens on 127.0.0.1 by default; production mode requires the admin token whatever the address
 * (config.ts). Every request must name a Host it serves and no foreign Origin (runtime/hosts.ts): loopback
 * alone does not stop a browser that a rebinding DNS name points at 127.0.0.1. Every route has a response schema: it is also the leak guard (only listed fields leave).
 */

export interface AppDeps {
  reviewer: Reviewer;
  ledger: SigningLedger;
  metrics: NodeMetrics;
  /** Key backend probe (Signer.health). */
  keyHealth(): Promise<{ ok: boolean; detail?: string }>;
  /** True while at least one coordinator session is up. */
  sessionUp(): boolean;
  /** Each coordinator URL of the config and its session's state (listed by /readyz when given). */
  sessions?(): readonly { url: string; state: string; up: boolean }[];
  /**
   * Deliver a decision made here (manual approval) to the coordinator sessions that asked, now or after reconnect.
   * Returns true when it left on at least one session now.
   */
  sendDecision(d: DecisionBody): boolean;
  /** When set, every /v1 route requires `authorization: Bearer <token>`. */
  adminToken?: string;
  /**
   * Host names (or IP literals) besides loopback and `localhost` this API answers for (config admin.allowedHosts).
   * Any other Host, and any foreign Origin, is refused before routing: the DNS rebinding guard.
   */
  allowedHosts?: readonly string[];
  /** The address the API listens on (a specific IP literal is served too). */
  listenHost?: string;
  /** Keyring and roster routes (keyring-routes.ts) when given. */
  keyring?: Keyring;
  /** Policy routes (policy-routes.ts) when given. */
  policy?: NodePolicy;
  /** FROST group routes (frost/routes.ts) when given. */
  frostGroups?: () => NodeFrostGroup[];
  /** The retirement of a FROST group on this node (frost/dkg.ts `retire`); without it, no retire route. */
  frostRetire?: (address: string, by: string) => Promise<{ group: NodeFrostGroup; walCleared: boolean }>;
  logger?: Logger;
}

const PendingItem = Type.Object({
  id: Type.String(),
  hash: Type.String(),
  reasons: Type.Array(ReasonSchema),
  receivedAt: Type.Integer(),
  summary: Type.Unknown(),
});
const DecisionSchema = Type.Object({
  proposalId: Type.String(),
  hash: Type.String(),
  outcome: Type.String(),
  reasons: Type.Array(ReasonSchema),
  signerKey: Type.String(),
  signature: Type.Optional(Type.String()),
  delivered: Type.Boolean(),
});
const Readiness = Type.Object({
  ready: Type.Boolean(),
  key: Type.Boolean(),
  /** At least one coordinator session is up. */
  session: Type.Boolean(),
  /** Every coordinator URL of the config and its session's state: a replica down shows here, the node stays ready. */
  sessions: Type.Optional(Type.Array(Type.Object({ url: Type.String(), state: Type.String(), up: Type.Boolean() }))),
  detail: Type.Optional(Type.String()),
});
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' }) });
const ActionBody = Type.Object(
  {
    note: Type.Optional(Type.String({ maxLength: 512 })),
    by: Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9._@:-]+$' })),
  },
  { additionalProperties: false },
);

export function build(deps: AppDeps) {
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: 16 * 1024,
    // Refuse unknown fields instead of silently dropping them (fastify's default is removeAdditional: true).
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setErrorHandler((err, _req, reply) => {
    const e = err as { statusCode?: number; message: string; validation?: unknown };
    if (nodeErrors.is(err)) return reply.status(err.status).send(err.toJSON());
    if (e.validation) return reply.status(400).send({ code: 'NODE_BAD_REQUEST', message: e.message });
    if (e.statusCode && e.statusCode < 500)
      return reply.status(e.statusCode).send({ code: 'NODE_BAD_REQUEST', message: e.message });
    // Anything else is a bug or a broken dependency: log it here, answer without internals.
    deps.logger?.error({ err }, 'admin API request failed');
    return reply.status(500).send(nodeErrors.error('NODE_INTERNAL').toJSON());
  });

  const checkHost = hostCheck({ allowedHosts: deps.allowedHosts, listenHost: deps.listenHost, checkOrigin: true });
  app.addHook('onRequest', async (req, reply) => {
    const refused = checkHost(req.headers);
    if (refused) return reply.status(refused.status).send(refused.toJSON());
  });

  const guard = async (req: FastifyRequest): Promise<void> => {
    if (deps.adminToken === undefined) return;
    const h = req.headers.authorization ?? '';
    const token = h.startsWith('Bearer ') ? h.slice(7) : '';
    if (!secretEquals(token, deps.adminToken)) throw nodeErrors.error('NODE_UNAUTHORIZED');
  };

  app.get('/healthz', { schema: { response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/readyz',
    {
      schema: {
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_req, reply) => {
      const key = await deps.keyHealth();
      const session = deps.sessionUp();
      const body = {
        ready: key.ok && session,
        key: key.ok,
        session,
        ...(deps.sessions ? { sessions: [...deps.sessions()] } : {}),
        ...(key.detail ? { detail: key.detail } : {}),
      };
      return reply.status(body.ready ? 200 : 503).send(body);
    },
  );

  app.get('/metrics', async (_req, reply) => {
    const c = deps.ledger.counts();
    deps.metrics.ledgerRows.set({ kind: 'signatures' }, c.signatures);
    deps.metrics.ledgerRows.set({ kind: 'signed' }, c.signed);
    deps.metrics.ledgerRows.set({ kind: 'decisions' }, c.decisions);
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });

  app.get(
    '/v1/pending',
    {
      preHandler: guard,
      schema: { response: { 200: Type.Object({ pending: Type.Array(PendingItem) }), 401: ErrorBody } },
    },
    async () => ({
      pending: deps.reviewer.listHeld().map((p) => ({
        id: p.proposalId,
        hash: p.hash,
        reasons: p.reasons,
        receivedAt: p.receivedAt,
        summary: p.summary,
      })),
    }),
  );

  const respond = (d: DecisionBody): Static<typeof DecisionSchema> => {
    const delivered = deps.sendDecision(d);
    return { ...d, delivered };
  };
  const by = (body: Static<typeof ActionBody> | undefined): string => `admin:${body?.by ?? 'operator'}`;

  app.post(
    '/v1/pending/:id/approve',
    {
      preHandler: guard,
      schema: {
        params: IdParams,
        body: ActionBody,
        response: { 200: DecisionSchema, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req) => respond(await deps.reviewer.approveHeld(req.params.id, by(req.body), req.body?.note)),
  );

  app.post(
    '/v1/pending/:id/reject',
    {
      preHandler: guard,
      schema: {
        params: IdParams,
        body: ActionBody,
        response: { 200: DecisionSchema, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req) => respond(deps.reviewer.rejectHeld(req.params.id, by(req.body), req.body?.note)),
  );

  if (deps.keyring) registerKeyringRoutes(app as unknown as FastifyInstance, deps.keyring, deps.adminToken);
  registerConsoleRoutes(app as unknown as FastifyInstance, deps.ledger, guard);
  if (deps.policy) registerPolicyRoutes(app as unknown as FastifyInstance, deps.policy, guard);
  if (deps.frostGroups) {
    const frost = { groups: deps.frostGroups, ...(deps.frostRetire ? { retire: deps.frostRetire } : {}) };
    registerFrostRoutes(app as unknown as FastifyInstance, frost, guard);
  }

  return app;
}

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConsole } from '@cosigner/runtime/console-static';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AuditLog, verifyAuditChain } from './audit.ts';
import type { SigningLedger } from './ledger.ts';
import { ErrorBody, ReasonSchema } from './schemas.ts';

/**
 * The node operator's web console on the private admin listener (`/console/`), and the two reads it needs:
 * - `GET /v1/decisions?limit=`: this node's recent decisions (approve, reject, hold) with their reasons;
 * - `GET /v1/audit`: the audit chain verified end to end (audit.ts verifyAuditChain) and its newest entries.
 * Both are behind the admin token like every /v1 route of the admin API. The console's files themselves are not
 * (they hold no data): the page asks the operator for the token and sends it with every call.
 */

const CONSOLE_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), '../console');
const Decision = Type.Object({
  proposalId: Type.String(),
  hash: Type.String(),
  outcome: Type.String(),
  reasons: Type.Array(ReasonSchema),
  at: Type.Integer({ description: 'unix seconds' }),
});
const AuditEntry = Type.Object({
  seq: Type.Integer(),
  at: Type.Integer({ description: 'unix milliseconds' }),
  type: Type.String(),
  data: Type.Unknown(),
  hash: Type.String(),
});
const AuditView = Type.Object({
  ok: Type.Boolean(),
  entries: Type.Integer(),
  head: Type.Optional(Type.String()),
  brokenAt: Type.Optional(Type.Integer()),
  reason: Type.Optional(Type.String()),
  recent: Type.Array(AuditEntry),
});

export function registerConsoleRoutes(
  app: FastifyInstance,
  ledger: SigningLedger,
  guard: (req: FastifyRequest) => Promise<void>,
): void {
  const file = loadConsole(CONSOLE_DIR, ['node-console.js']);
  const audit = new AuditLog(ledger.db);

  app.get('/console', async (_req, reply) => reply.redirect('/console/', 302));
  app.get('/console/', async (_req, reply) => {
    const f = file('')!;
    return reply.headers(f.headers).send(f.body);
  });
  app.get<{ Params: { name: string } }>('/console/:name', async (req, reply) => {
    const f = file(req.params.name);
    if (!f) return reply.callNotFound();
    return reply.headers(f.headers).send(f.body);
  });

  app.get(
    '/v1/decisions',
    {
      preHandler: guard,
      schema: {
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ decisions: Type.Array(Decision) }), 400: ErrorBody, 401: ErrorBody },
      },
    },
    async (req) => ({ decisions: ledger.recentDecisions((req.query as { limit: number }).limit) }),
  );

  app.get(
    '/v1/audit',
    {
      preHandler: guard,
      schema: {
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 500, default: 20 }) },
          { additionalProperties: false },
        ),
        response: { 200: AuditView, 400: ErrorBody, 401: ErrorBody },
      },
    },
    async (req) => {
      // The whole chain is walked on each call: it holds operator actions (manual decisions, key and roster
      // changes), not one row per signature, so it stays small.
      const report = verifyAuditChain(ledger.db);
      const recent = audit
        .tail((req.query as { limit: number }).limit)
        .map((e) => ({ seq: e.seq, at: e.at, type: e.type, data: e.data, hash: e.hash }));
      return { ...report, recent };
    },
  );
}

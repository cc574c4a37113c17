import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConsole } from '@cosigner/runtime/console-static';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import { describeAuthEntry, describeTransaction } from '@cosigner/stellar/describe';
import { xdr as X } from '@stellar/stellar-sdk/base';
import type { FastifyInstance } from 'fastify';
import { type TSchema, Type } from 'typebox';
import type { CoordinatorConfig } from './config.ts';
import { ProposalIdParams, proposalOr404 } from './proposal-params.ts';
import type { CoordinatorStore, ProposalRecord } from './store.ts';

/**
 * The treasury team's web console (`/console/`) and the reads it needs that the proposals API did not have:
 * - `GET /v1/session`: the presented key's id, label and scopes, so the console shows what the key allows;
 * - `POST /v1/decode`: the plain-terms decoding of an envelope BEFORE it is proposed (nothing stored, nothing
 *   sent to the nodes);
 * - `GET /v1/proposals/:id/summary`: the decoding of a stored proposal (its operations, memo, fee, time bounds,
 *   Soroban authorization entries) with the unsigned XDR it was proposed with;
 * - `GET /v1/proposals/search?q=`: proposals by transaction hash, idempotency key or signing account;
 * - `GET /v1/proposals/:id/events`: the proposal's stored events in order, for its timeline (every node decision,
 *   a hold and the approval that followed it included).
 * Every read needs the `read` scope (the console shows nothing to a key without it). The summaries are computed
 * by the same describe.ts the nodes' policies read, so the console shows what a node reviews.
 */

const CONSOLE_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), '../console');
const ERR = Type.Ref('ErrorBody');
const errors = (...codes: number[]): Record<number, TSchema> => Object.fromEntries(codes.map((c) => [c, ERR]));

/** A TransactionSummary / AuthEntrySummary (packages/stellar/src/types.ts): open-ended by design (`raw`). */
const Summary = Type.Unknown({ description: 'packages/stellar TransactionSummary (see docs/reference)' });
const SummaryView = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  xdr: Type.Union([Type.String(), Type.Null()], { description: 'The unsigned envelope as proposed (base64)' }),
  transaction: Type.Union([Summary, Type.Null()]),
  authEntries: Type.Array(Summary),
});
const SearchItem = Type.Object({
  id: Type.String(),
  status: Type.String(),
  kind: Type.String(),
  hash: Type.String(),
  idempotencyKey: Type.Union([Type.String(), Type.Null()]),
  note: Type.Union([Type.String(), Type.Null()]),
  accounts: Type.Array(Type.String()),
  createdAt: Type.String(),
});

/**
 * The decoding of a stored proposal: its transaction (when it has one) and its Soroban auth entries (`entries`,
 * base64, as the store keeps them beside a Soroban round's row; none for a transaction proposal).
 */
export function summaryOf(rec: ProposalRecord, entries: readonly string[]) {
  return {
    id: rec.id,
    kind: rec.kind,
    xdr: rec.xdr,
    transaction: rec.xdr === null ? null : describeTransaction(decodeEnvelope(rec.xdr, rec.network)),
    authEntries: entries.map((e) => describeAuthEntry(X.SorobanAuthorizationEntry.fromXDR(e, 'base64'))),
  };
}

export function registerConsoleRoutes(
  app: FastifyInstance,
  deps: { store: CoordinatorStore; config: Readonly<CoordinatorConfig> },
): void {
  const { store, config } = deps;
  const file = loadConsole(CONSOLE_DIR, ['console.js']);

  app.get('/console', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/', 302));
  app.get<{ Params: { name: string } }>('/console/:name', { schema: { hide: true } }, async (req, reply) => {
    const f = file(req.params.name);
    if (!f) return reply.callNotFound();
    return reply.headers(f.headers).send(f.body);
  });
  // `/console/` itself (find-my-way does not match an empty parameter).
  app.get('/console/', { schema: { hide: true } }, async (_req, reply) => {
    const f = file('')!;
    return reply.headers(f.headers).send(f.body);
  });

  app.get(
    '/v1/session',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'The presented API key: its id, label and scopes (what the web console may show and do)',
        response: {
          200: Type.Object({
            keyId: Type.String(),
            label: Type.Union([Type.String(), Type.Null()]),
            scopes: Type.Array(Type.String()),
            network: Type.String(),
          }),
          ...errors(401, 403, 429),
        },
      },
    },
    async (req) => {
      const k = req.apiKey!;
      return { keyId: k.id, label: k.label, scopes: k.scopes, network: config.network };
    },
  );

  app.post(
    '/v1/decode',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'Decode an envelope in plain terms without proposing it (nothing is stored or sent)',
        body: Type.Object(
          { xdr: Type.String({ minLength: 1, description: 'base64 TransactionEnvelope (v1 or fee bump)' }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ transaction: Summary }), ...errors(400, 401, 403, 413, 422, 429) },
      },
    },
    async (req) => {
      const { xdr } = req.body as { xdr: string };
      return { transaction: describeTransaction(decodeEnvelope(xdr, config.network)) };
    },
  );

  app.get(
    '/v1/proposals/search',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'Find proposals by transaction hash, idempotency key or signing account, newest first',
        querystring: Type.Object(
          {
            q: Type.String({ minLength: 1, maxLength: 128 }),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(SearchItem) }), ...errors(400, 401, 403, 429) },
      },
    },
    async (req) => {
      const { q, limit } = req.query as { q: string; limit: number };
      const term = q.trim();
      // A hash is matched as stored (lower-case hex); a person may paste it upper-case.
      const key = /^[0-9a-fA-F]{64}$/.test(term) ? term.toLowerCase() : term;
      return {
        items: (await store.searchProposals(key, limit)).map((r) => ({
          id: r.id,
          status: r.status,
          kind: r.kind,
          hash: r.hash,
          idempotencyKey: r.idempotencyKey,
          note: r.note,
          accounts: r.accounts.map((a) => a.accountId),
          createdAt: new Date(r.createdAt).toISOString(),
        })),
      };
    },
  );

  app.get(
    '/v1/proposals/:id/events',
    {
      config: { scope: 'read' },
      schema: {
        summary: "A proposal's events in order (created, each node's decisions, quorum, submission or end)",
        params: ProposalIdParams,
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 500 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            events: Type.Array(
              Type.Object({
                seq: Type.Integer(),
                type: Type.String(),
                data: Type.Record(Type.String(), Type.Unknown()),
                at: Type.String(),
              }),
            ),
          }),
          ...errors(400, 401, 403, 404, 429),
        },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      await proposalOr404(store, id);
      return {
        events: (await store.eventsOf(id, (req.query as { limit: number }).limit)).map((e) => ({
          seq: e.seq,
          type: e.type,
          data: e.data,
          at: new Date(e.createdAt).toISOString(),
        })),
      };
    },
  );

  app.get(
    '/v1/proposals/:id/summary',
    {
      config: { scope: 'read' },
      schema: {
        summary: "A proposal's decoding in plain terms (operations, memo, fee, time bounds, auth entries)",
        params: ProposalIdParams,
        response: { 200: SummaryView, ...errors(401, 403, 404, 429) },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const rec = await proposalOr404(store, id);
      return summaryOf(
        rec,
        (await store.authEntries(rec.id)).map((e) => e.entry),
      );
    },
  );
}

/** The WebSocket subprotocol the console offers first; ws answers with the first offered, so the key is not echoed. */
export const CONSOLE_SUBPROTOCOL = 'cosigner.console';

/**
 * The API key a browser presents on the `/v1/events` upgrade. A page cannot set headers on a WebSocket (WHATWG
 * WebSockets: only the URL and subprotocols), and a key in the URL would land in logs and history, so the console
 * offers two subprotocols (RFC 6455 section 4.1, Sec-WebSocket-Protocol): `cosigner.console` then the key
 * (`cak.<id>.<secret>` is a valid RFC 7230 token). Anything else yields no key.
 */
export function consoleSocketKey(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const offered = header.split(',').map((p) => p.trim());
  return offered.length === 2 && offered[0] === CONSOLE_SUBPROTOCOL ? offered[1] : undefined;
}

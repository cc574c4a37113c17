import type { FastifyInstance } from 'fastify';
import { type TSchema, Type } from 'typebox';
import type { FrostDkgRelay } from './dkg.ts';
import type { FrostRefreshRelay } from './refresh.ts';
import type { RefreshRecord } from './refresh-store.ts';
import type { DkgRecord } from './store.ts';

/**
 * The FROST group API (docs/operations/frost.md): start a key generation among enrolled, connected nodes
 * (`admin` scope: it creates a key the cluster will sign with) and read what it produced (`read` scope).
 * Only public data is ever answered: the group key, its commitment and every participant's verifying share.
 */

const ERR = Type.Ref('ErrorBody');
const errors = (...codes: number[]): Record<number, TSchema> => Object.fromEntries(codes.map((c) => [c, ERR]));
const ID = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' });
const HEX32 = Type.String({ pattern: '^[0-9a-f]{64}$' });

const CreateBody = Type.Object(
  {
    /** Node ids, in the order that gives them their participant indices 1..n. */
    participants: Type.Array(ID, { minItems: 2, maxItems: 255 }),
    threshold: Type.Integer({ minimum: 2, maximum: 255 }),
  },
  { additionalProperties: false },
);

export const GroupView = Type.Object(
  {
    id: Type.String(),
    status: Type.Union([Type.Literal('running'), Type.Literal('ready'), Type.Literal('failed')]),
    step: Type.String(),
    threshold: Type.Integer(),
    participants: Type.Array(
      Type.Object({
        index: Type.Integer(),
        nodeId: Type.String(),
        identityKey: Type.String(),
        /** share x G of this participant (hex), once ready. */
        verifyingShare: Type.Optional(HEX32),
      }),
    ),
    /** The group key as a Stellar signer, once ready. */
    address: Type.Union([Type.String(), Type.Null()]),
    groupPublicKey: Type.Union([HEX32, Type.Null()]),
    /** The group's VSS commitment (threshold points, hex), once ready. */
    commitments: Type.Union([Type.Array(HEX32), Type.Null()]),
    transcript: Type.Union([HEX32, Type.Null()]),
    error: Type.Union([
      Type.Object({
        code: Type.String(),
        message: Type.String(),
        reportedBy: Type.Optional(Type.String()),
        nodeCode: Type.Optional(Type.String()),
        culprits: Type.Array(Type.String()),
        unreachable: Type.Optional(Type.Array(Type.String())),
      }),
      Type.Null(),
    ]),
    createdAt: Type.Integer(),
    updatedAt: Type.Integer(),
  },
  { $id: 'FrostGroup' },
);

export function groupView(r: DkgRecord) {
  return {
    id: r.id,
    status: r.status,
    step: r.step,
    threshold: r.threshold,
    participants: r.participants.map((p) => ({
      ...p,
      ...(r.group ? { verifyingShare: r.group.verifyingShares[String(p.index)] } : {}),
    })),
    address: r.address,
    groupPublicKey: r.group?.groupPublicKey ?? null,
    commitments: r.group?.commitments ?? null,
    transcript: r.transcript,
    error: r.error,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

export const RefreshView = Type.Object(
  {
    id: Type.String(),
    /** The group refreshed: its key does not change. */
    address: Type.String(),
    status: Type.Union([Type.Literal('running'), Type.Literal('adopted'), Type.Literal('failed')]),
    step: Type.String(),
    threshold: Type.Integer(),
    participants: Type.Array(
      Type.Object({
        index: Type.Integer(),
        nodeId: Type.String(),
        identityKey: Type.String(),
        /** The participant's new verifying share, once adopted. */
        verifyingShare: Type.Optional(HEX32),
        /** Whether the node acknowledged the outcome (switched, or discarded its new share). */
        acknowledged: Type.Boolean(),
      }),
    ),
    /** groupDigest of the group before, and (once adopted) after the refresh. */
    oldDigest: HEX32,
    digest: Type.Union([HEX32, Type.Null()]),
    commitments: Type.Union([Type.Array(HEX32), Type.Null()]),
    transcript: Type.Union([HEX32, Type.Null()]),
    error: Type.Union([
      Type.Object({
        code: Type.String(),
        message: Type.String(),
        reportedBy: Type.Optional(Type.String()),
        nodeCode: Type.Optional(Type.String()),
        culprits: Type.Array(Type.String()),
        unreachable: Type.Optional(Type.Array(Type.String())),
        missing: Type.Optional(Type.Array(Type.String())),
        disagreeing: Type.Optional(Type.Array(Type.String())),
      }),
      Type.Null(),
    ]),
    createdAt: Type.Integer(),
    updatedAt: Type.Integer(),
  },
  { $id: 'FrostRefresh' },
);

export function refreshView(r: RefreshRecord) {
  return {
    id: r.id,
    address: r.address,
    status: r.status,
    step: r.step,
    threshold: r.threshold,
    participants: r.participants.map((p) => ({
      ...p,
      ...(r.group ? { verifyingShare: r.group.verifyingShares[String(p.index)] } : {}),
      acknowledged: r.acked.includes(p.nodeId),
    })),
    oldDigest: r.oldDigest,
    digest: r.digest,
    commitments: r.group?.commitments ?? null,
    transcript: r.transcript,
    error: r.error,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

export function registerFrostRoutes(
  app: FastifyInstance,
  deps: { relay: FrostDkgRelay; refresh?: FrostRefreshRelay },
): void {
  const { relay, refresh } = deps;
  app.addSchema(GroupView);
  const ref = Type.Ref('FrostGroup');
  if (refresh) registerRefreshRoutes(app, refresh);

  app.post<{ Body: { participants: string[]; threshold: number } }>(
    '/v1/frost/groups',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Start a FROST key generation among enrolled, connected nodes (a t-of-n group key)',
        body: CreateBody,
        response: { 202: ref, ...errors(400, 401, 403, 409, 429) },
      },
    },
    async (req, reply) => {
      const rec = await relay.start({
        participants: req.body.participants,
        threshold: req.body.threshold,
        createdBy: req.apiKey?.id ?? null,
      });
      return reply.code(202).send(groupView(rec));
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/frost/groups/:id',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'A FROST group or key generation, by its id or its group address (G...)',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }),
        response: { 200: ref, ...errors(401, 403, 404, 429) },
      },
    },
    async (req) => groupView(await relay.get(req.params.id)),
  );

  app.get(
    '/v1/frost/groups',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'FROST groups and key generations, newest first (at most 100)',
        response: { 200: Type.Object({ groups: Type.Array(ref) }), ...errors(401, 403, 429) },
      },
    },
    async () => ({ groups: (await relay.list()).map(groupView) }),
  );
}

/**
 * Share refresh (docs/operations/frost.md, "Refreshing shares"): `POST /v1/frost/groups/:id/refresh` (`admin`
 * scope: every node replaces its share) starts one among all the group's participants; `GET
 * /v1/frost/refreshes/:id` and `GET /v1/frost/groups/:id/refreshes` read the outcome (`read` scope).
 */
function registerRefreshRoutes(app: FastifyInstance, refresh: FrostRefreshRelay): void {
  app.addSchema(RefreshView);
  const ref = Type.Ref('FrostRefresh');
  const GroupParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });

  app.post<{ Params: { id: string } }>(
    '/v1/frost/groups/:id/refresh',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "Refresh a FROST group's shares among all its participants (same group key, new shares)",
        params: GroupParam,
        response: { 202: ref, ...errors(401, 403, 404, 409, 429) },
      },
    },
    async (req, reply) => {
      const rec = await refresh.start({ group: req.params.id, createdBy: req.apiKey?.id ?? null });
      return reply.code(202).send(refreshView(rec));
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/frost/refreshes/:id',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'A FROST share refresh, by its id',
        params: Type.Object({ id: ID }),
        response: { 200: ref, ...errors(400, 401, 403, 404, 429) },
      },
    },
    async (req) => refreshView(await refresh.get(req.params.id)),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/frost/groups/:id/refreshes',
    {
      config: { scope: 'read' },
      schema: {
        summary: "A FROST group's share refreshes, newest first (at most 100)",
        params: GroupParam,
        response: { 200: Type.Object({ refreshes: Type.Array(ref) }), ...errors(401, 403, 404, 429) },
      },
    },
    async (req) => ({
      refreshes: (await refresh.list(await refresh.groupAddress(req.params.id))).map(refreshView),
    }),
  );
}

import { secretEquals } from '@cosigner/runtime/secrets';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import { nodeErrors } from './errors.ts';
import type { Keyring } from './keyring.ts';
import { ErrorBody } from './schemas.ts';

/**
 * Admin API of the keyring and roster (private, like the rest of app.ts; the admin token guards it when set):
 * - `GET /v1/keyring`: keys (active, pending, retired) and the roster;
 * - `POST /v1/keyring/prepare {keyId, expectedAddress?}`: open a new key of this node's backend as pending;
 * - `POST /v1/keyring/activate {address}`: switch to the pending key (the old one is retired);
 * - `POST /v1/keyring/abandon {address}`: drop a pending key;
 * - `POST /v1/roster {address, nodeId?}` and `DELETE /v1/roster/:address`: the cluster members this operator accepts.
 * Every change is an audit entry (keyring.ts). `by` names the operator in the audit log.
 */

const G = Type.String({ pattern: '^G[A-Z2-7]{55}$' });
const By = Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9._@:-]+$' }));
const Entry = Type.Object({
  address: Type.String(),
  kind: Type.String(),
  keyId: Type.String(),
  state: Type.String(),
  createdAt: Type.Integer(),
  updatedAt: Type.Integer(),
});
const Member = Type.Object({
  address: Type.String(),
  nodeId: Type.Union([Type.String(), Type.Null()]),
  addedBy: Type.String(),
  addedAt: Type.Integer(),
});
const View = Type.Object({
  active: Type.String(),
  pending: Type.Union([Type.String(), Type.Null()]),
  keys: Type.Array(Entry),
  roster: Type.Array(Member),
});
const errors = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody };
const PrepareBody = Type.Object(
  { keyId: Type.String({ minLength: 1, maxLength: 2048 }), expectedAddress: Type.Optional(G), by: By },
  { additionalProperties: false },
);
const AddressBody = Type.Object({ address: G, by: By }, { additionalProperties: false });
const MemberBody = Type.Object(
  { address: G, nodeId: Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' })), by: By },
  { additionalProperties: false },
);

const who = (b: { by?: string } | undefined): string => `admin:${b?.by ?? 'operator'}`;

export function view(keyring: Keyring): Static<typeof View> {
  return {
    active: keyring.address,
    pending: keyring.pendingAddress ?? null,
    keys: keyring.entries(),
    roster: keyring.roster(),
  };
}

export function registerKeyringRoutes(app: FastifyInstance, keyring: Keyring, adminToken: string | undefined): void {
  const guard = async (req: FastifyRequest): Promise<void> => {
    if (adminToken === undefined) return;
    const h = req.headers.authorization ?? '';
    if (!secretEquals(h.startsWith('Bearer ') ? h.slice(7) : '', adminToken))
      throw nodeErrors.error('NODE_UNAUTHORIZED');
  };
  const ok = { 200: View, ...errors };

  app.get('/v1/keyring', { preHandler: guard, schema: { response: ok } }, async () => view(keyring));

  app.post<{ Body: Static<typeof PrepareBody> }>(
    '/v1/keyring/prepare',
    { preHandler: guard, schema: { body: PrepareBody, response: ok } },
    async (req) => {
      await keyring.prepare(req.body.keyId, {
        by: who(req.body),
        ...(req.body.expectedAddress ? { expectedAddress: req.body.expectedAddress } : {}),
      });
      return view(keyring);
    },
  );

  app.post<{ Body: Static<typeof AddressBody> }>(
    '/v1/keyring/activate',
    { preHandler: guard, schema: { body: AddressBody, response: ok } },
    async (req) => {
      await keyring.activate(req.body.address, who(req.body));
      return view(keyring);
    },
  );

  app.post<{ Body: Static<typeof AddressBody> }>(
    '/v1/keyring/abandon',
    { preHandler: guard, schema: { body: AddressBody, response: ok } },
    async (req) => {
      await keyring.abandon(req.body.address, who(req.body));
      return view(keyring);
    },
  );

  app.post<{ Body: Static<typeof MemberBody> }>(
    '/v1/roster',
    { preHandler: guard, schema: { body: MemberBody, response: ok } },
    async (req) => {
      keyring.allowMember(req.body.address, req.body.nodeId ?? null, who(req.body));
      return view(keyring);
    },
  );

  app.delete<{ Params: { address: string }; Querystring: { by?: string } }>(
    '/v1/roster/:address',
    {
      preHandler: guard,
      schema: { params: Type.Object({ address: G }), querystring: Type.Object({ by: By }), response: ok },
    },
    async (req) => {
      if (!keyring.removeMember(req.params.address, who(req.query))) {
        throw nodeErrors.error(
          'NODE_KEYRING_NOT_FOUND',
          { address: req.params.address },
          { message: `${req.params.address} is not in the roster.` },
        );
      }
      return view(keyring);
    },
  );
}

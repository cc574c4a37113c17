import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import { nodeErrors } from '../errors.ts';
import { ErrorBody } from '../schemas.ts';
import type { NodeFrostGroup } from './store.ts';

/**
 * Admin API of the node's FROST groups (private, like the rest of app.ts; the admin token guards it when set):
 * `GET /v1/frost/groups` lists the groups this node holds a share of, with their public data, so its operator can
 * compare the group address, the transcript and the verifying shares with the other operators' and with
 * `cosigner frost show`. The response schema is the leak guard: the sealed share is not among its fields.
 *
 * `POST /v1/frost/groups/:address/retire {confirm, by?}` retires one group on this node (frost/dkg.ts `retire`): its
 * sealed share is destroyed, its public data stays, and the node takes part in nothing of it any more. It is the
 * node's own operator's step (`cosigner node frost retire`): the coordinator has no way to it, since this API is
 * the node's private one and never the coordinator session. `confirm` must repeat the address: the node cannot
 * tell whether the group still signs for an account, so a mistyped or pasted-wrong address must not retire
 * another group. Answered the same when repeated.
 */

const HEX32 = Type.String({ pattern: '^[0-9a-f]{64}$' });
export const NodeGroupView = Type.Object({
  address: Type.String(),
  dkgId: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('confirmed'), Type.Literal('retired')]),
  threshold: Type.Integer(),
  myIndex: Type.Integer(),
  participants: Type.Array(Type.Object({ index: Type.Integer(), nodeId: Type.String(), identityKey: Type.String() })),
  groupPublicKey: HEX32,
  commitments: Type.Array(HEX32),
  verifyingShares: Type.Record(Type.String(), HEX32),
  transcript: HEX32,
  /** The custody that sealed this node's share: local or aws-kms. */
  sealer: Type.String(),
  createdAt: Type.Integer(),
  /** When this node's operator retired the group; null while it is not retired. */
  retiredAt: Type.Union([Type.Integer(), Type.Null()]),
});

const G = Type.String({ pattern: '^G[A-Z2-7]{55}$' });
const RetireParams = Type.Object({ address: G });
const RetireBody = Type.Object(
  {
    /** The group address again, typed by the operator: the guard against retiring the wrong group. */
    confirm: Type.String({ maxLength: 56 }),
    by: Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9._@:-]+$' })),
  },
  { additionalProperties: false },
);

export function nodeGroupView(g: NodeFrostGroup) {
  return {
    address: g.address,
    dkgId: g.dkgId,
    status: g.status,
    threshold: g.threshold,
    myIndex: g.myIndex,
    participants: g.participants,
    groupPublicKey: g.group.groupPublicKey,
    commitments: g.group.commitments,
    verifyingShares: g.group.verifyingShares,
    transcript: g.transcript,
    sealer: g.sealerKind,
    createdAt: g.createdAt,
    retiredAt: g.retiredAt,
  };
}

/** What the routes reach of the node: its groups, and the retirement (absent: no retire route). */
export interface FrostAdmin {
  groups(): NodeFrostGroup[];
  retire?(address: string, by: string): Promise<{ group: NodeFrostGroup; walCleared: boolean }>;
}

/** `guard` is the admin API's token check (app.ts). */
export function registerFrostRoutes(
  app: FastifyInstance,
  frost: FrostAdmin,
  guard: (req: FastifyRequest) => Promise<void>,
): void {
  app.get(
    '/v1/frost/groups',
    {
      onRequest: guard,
      schema: { response: { 200: Type.Object({ groups: Type.Array(NodeGroupView) }), 401: ErrorBody } },
    },
    async () => ({ groups: frost.groups().map(nodeGroupView) }),
  );
  const retire = frost.retire;
  if (!retire) return;
  app.post<{ Params: Static<typeof RetireParams>; Body: Static<typeof RetireBody> }>(
    '/v1/frost/groups/:address/retire',
    {
      onRequest: guard,
      schema: {
        params: RetireParams,
        body: RetireBody,
        response: {
          200: Type.Object({
            group: NodeGroupView,
            /**
             * False when another connection held a read of frost.sqlite, so its write-ahead log could not be copied
             * back and emptied: until it is, the main file may keep the page with the sealed share. Retire again.
             */
            walCleared: Type.Boolean(),
          }),
          400: ErrorBody,
          401: ErrorBody,
          404: ErrorBody,
          409: ErrorBody,
        },
      },
    },
    async (req) => {
      const { address } = req.params;
      if (req.body.confirm !== address) {
        throw nodeErrors.error('NODE_FROST_RETIRE_UNCONFIRMED', { address, field: 'confirm' });
      }
      const r = await retire(address, `admin:${req.body.by ?? 'operator'}`);
      return { group: nodeGroupView(r.group), walCleared: r.walCleared };
    },
  );
}

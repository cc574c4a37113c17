import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ErrorBody } from '../schemas.ts';
import type { NodeFrostGroup } from './store.ts';

/**
 * Admin API of the node's FROST groups (private, like the rest of app.ts; the admin token guards it when set):
 * `GET /v1/frost/groups` lists the groups this node holds a share of, with their public data, so its operator can
 * compare the group address, the transcript and the verifying shares with the other operators' and with
 * `cosigner frost show`. The response schema is the leak guard: the sealed share is not among its fields.
 */

const HEX32 = Type.String({ pattern: '^[0-9a-f]{64}$' });
export const NodeGroupView = Type.Object({
  address: Type.String(),
  dkgId: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('confirmed')]),
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
});

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
  };
}

/** `guard` is the admin API's token check (app.ts). */
export function registerFrostRoutes(
  app: FastifyInstance,
  groups: () => NodeFrostGroup[],
  guard: (req: FastifyRequest) => Promise<void>,
): void {
  app.get(
    '/v1/frost/groups',
    {
      onRequest: guard,
      schema: { response: { 200: Type.Object({ groups: Type.Array(NodeGroupView) }), 401: ErrorBody } },
    },
    async () => ({ groups: groups().map(nodeGroupView) }),
  );
}

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { NodePolicy } from './policy-reload.ts';
import { ErrorBody } from './schemas.ts';

/**
 * Admin API of the node's policy (private, like the rest of app.ts; the admin token guards it when set):
 * - `GET /v1/policy`: the file in force, its sha256 and when it was loaded;
 * - `POST /v1/policy/reload {by?}`: read the file again; valid, it replaces the policy in force (audit
 *   `policy.reloaded` with both hashes); invalid, 422 NODE_POLICY_REFUSED says why and the old policy stays.
 * `SIGHUP` to the node process does the same reload (server.ts). The body is JSON (`{}` at least).
 */

const State = Type.Object({ file: Type.String(), sha256: Type.String(), loadedAt: Type.Integer() });
const Reloaded = Type.Object({
  file: Type.String(),
  sha256: Type.String(),
  loadedAt: Type.Integer(),
  previous: Type.String(),
  changed: Type.Boolean(),
});
const ReloadBody = Type.Object(
  { by: Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9._@:-]+$' })) },
  { additionalProperties: false },
);

/** `guard` is the admin API's token check (app.ts), run before anything else on both routes. */
export function registerPolicyRoutes(
  app: FastifyInstance,
  policy: NodePolicy,
  guard: (req: FastifyRequest) => Promise<void>,
): void {
  app.get(
    '/v1/policy',
    { onRequest: guard, schema: { response: { 200: State, 401: ErrorBody } } },
    async () => policy.state,
  );

  app.post<{ Body: Static<typeof ReloadBody> | undefined }>(
    '/v1/policy/reload',
    {
      // The token is checked before the body is even parsed.
      onRequest: guard,
      schema: { body: ReloadBody, response: { 200: Reloaded, 400: ErrorBody, 401: ErrorBody, 422: ErrorBody } },
    },
    async (req) => policy.reload(`admin:${req.body?.by ?? 'operator'}`),
  );
}

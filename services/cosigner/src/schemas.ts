import { Type } from 'typebox';

/**
 * Response shapes every admin route of the node shares. A route's response schema is also its leak guard (only the
 * listed fields leave), so each shape is written once here and the route modules (app.ts, keyring-routes.ts,
 * policy-routes.ts, console-routes.ts) import it.
 */

/** A refusal: `{ code, message, details? }` with a registered code. */
export const ErrorBody = Type.Object({
  code: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

/** One reason of a decision (policy or slot), as the node gives it. */
export const ReasonSchema = Type.Object({
  code: Type.String(),
  message: Type.String(),
  opIndex: Type.Optional(Type.Integer()),
  field: Type.Optional(Type.String()),
});

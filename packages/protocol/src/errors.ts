import { defineErrors } from '@cosigner/errors/errors';

/** Errors of the node<->coordinator protocol. A refused frame is never acted on, and is logged by the caller. */
export const protocolErrors = defineErrors('protocol', {
  PROTOCOL_MALFORMED: { status: 400, message: 'The message is not a well-formed protocol frame.' },
  PROTOCOL_TOO_LARGE: { status: 413, message: 'The message is larger than the protocol allows.' },
  PROTOCOL_BAD_SIGNATURE: {
    status: 401,
    message: 'The message signature does not verify under any trusted key.',
  },
  PROTOCOL_STALE: { status: 401, message: 'The message timestamp is outside the allowed clock skew.' },
  PROTOCOL_REPLAY: { status: 401, message: 'The message id was already seen: a replay is refused.' },
  PROTOCOL_WRONG_RECIPIENT: { status: 401, message: 'The message is addressed to someone else.' },
  PROTOCOL_WRONG_SESSION: { status: 401, message: 'The message belongs to another session.' },
  PROTOCOL_SCHEMA: { status: 400, message: 'The message body does not match its type schema.' },
  PROTOCOL_BAD_KEY: { status: 400, message: 'An identity key is malformed or not ed25519.' },
});

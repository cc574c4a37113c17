import { defineErrors } from '@cosigner/errors/errors';

/**
 * Errors of the cosigner node (configuration, admin API, audit) and of its signing ledger (LEDGER_*).
 * A refusal to sign is not an error: it is a decision with reasons (see review.ts). These codes are for
 * things an operator must fix or a caller must handle.
 */
export const nodeErrors = defineErrors('cosigner-node', {
  NODE_CONFIG_INVALID: { status: 400, message: 'The node configuration is invalid.' },
  NODE_CONFIG_UNSAFE: {
    status: 400,
    message: 'The node configuration is not safe for production mode; refusing to start.',
  },
  NODE_BAD_REQUEST: { status: 400, message: 'The request is malformed or does not match its schema.' },
  NODE_INTERNAL: { status: 500, message: 'The node failed unexpectedly; the details are in its log.' },
  NODE_UNAUTHORIZED: { status: 401, message: 'The admin token is missing or wrong.' },
  NODE_PENDING_NOT_FOUND: { status: 404, message: 'No held proposal has this id.' },
  NODE_PENDING_CLOSED: { status: 409, message: 'This held proposal was already approved, rejected or cancelled.' },
  NODE_ADMIN_UNREACHABLE: { status: 502, message: 'The node admin API did not answer.' },
  NODE_KEYRING_CONFLICT: {
    status: 409,
    message: 'The keyring refuses this key: another key is pending, or this one was retired.',
  },
  NODE_KEYRING_NOT_FOUND: { status: 404, message: 'No pending key with this address.' },
  NODE_POLICY_REFUSED: {
    status: 422,
    message: 'The new policy file is invalid; the node keeps the policy it had.',
  },
  NODE_FROST_NOT_EXPECTED: {
    status: 403,
    message:
      "This node was not told to expect this FROST key generation (no entry of its config's frost.expect has this threshold and these participants with these identity keys, or that group exists already): it does not join.",
  },
  NODE_FROST_RELAY_TAMPERED: {
    status: 422,
    message:
      'A key-generation statement relayed by the coordinator is missing, or does not carry the signature of the participant it names: the relay forged, altered or withheld it. The session aborts.',
  },
  NODE_FROST_RESULT_MISMATCH: {
    status: 422,
    message:
      'Another participant derived a different FROST group (key, verifying shares or transcript) than this node: the group is not kept.',
  },
  NODE_FROST_BAD_STEP: {
    status: 409,
    message:
      'This key-generation step does not fit the session: an unknown or finished session, a step out of order, or a statement of the wrong kind.',
  },
  NODE_FROST_BUSY: {
    status: 429,
    message: 'This node already runs as many key generations as it allows at once; try again when one has ended.',
  },
  NODE_FROST_GROUP_UNKNOWN: {
    status: 404,
    message: 'This node holds no FROST group with this address (GET /v1/frost/groups lists those it holds).',
  },
  NODE_FROST_GROUP_PENDING: {
    status: 409,
    message:
      'This FROST group is still pending here (its key generation has not confirmed it): there is nothing to retire yet; a key generation that fails drops it by itself.',
  },
  NODE_FROST_RETIRE_UNCONFIRMED: {
    status: 400,
    message:
      "Retiring a FROST group destroys this node's share of it for good: the body must repeat the group address in `confirm`, and it does not.",
  },
  NODE_FROST_GROUP_RETIRED: {
    status: 409,
    message:
      "This node's operator retired this FROST group: its share is destroyed here, so the node takes part in no key generation, refresh or signing round of it.",
  },
  NODE_FROST_STORE_NEWER_SCHEMA: {
    status: 500,
    message: "The node's FROST group store was written by a newer version; refusing to open it.",
  },
  NODE_FROST_STORE_MIGRATION_FAILED: { status: 500, message: "The node's FROST group store could not be migrated." },
  LEDGER_MIGRATION_FAILED: { status: 500, message: 'The signing ledger schema could not be migrated.' },
  LEDGER_NEWER_SCHEMA: {
    status: 500,
    message: 'The signing ledger was written by a newer version of the node; refusing to open it.',
  },
  LEDGER_UNKNOWN_HASH: { status: 500, message: 'The signing ledger holds no intent for this hash.' },
});

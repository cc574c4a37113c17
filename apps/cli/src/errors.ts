import { defineErrors } from '@cosigner/errors/errors';

/**
 * Errors of the operator lifecycle commands (`account`, `thresholds`, `node add|remove`, `rotate`). The CLI prints
 * each as one `CODE: sentence` line naming the flag, field or call at fault, and exits 1. The HTTP status column
 * is what the refusal would be as an API answer; the CLI itself has no HTTP surface.
 */
export const cliErrors = defineErrors('cli', {
  LIFECYCLE_OPTION_REQUIRED: { status: 400, message: 'A required option is missing.' },
  LIFECYCLE_FROST_GROUP: {
    status: 409,
    message: '--frost-group names a key that is not a ready FROST group (of at least 2-of-n) at the coordinator.',
  },
  LIFECYCLE_LOCKOUT: {
    status: 409,
    message: 'Refusing the change: the resulting signer configuration could lock the account or let one key move it.',
  },
  LIFECYCLE_DISJOINT_QUORUMS: {
    status: 409,
    message:
      'Refusing the change: two disjoint sets of signers would each reach a threshold (pass --allow-disjoint-quorums to accept).',
  },
  LIFECYCLE_PROPOSAL_ENDED: {
    status: 409,
    message: 'The change was proposed but did not apply: the proposal ended rejected, expired, cancelled or failed.',
  },
  LIFECYCLE_NOT_A_SIGNER: { status: 409, message: "The node's key is not a signer of the account." },
  LIFECYCLE_ACCOUNTS_MISSING: {
    status: 409,
    message: "The node's key also signs accounts that the rotation does not name with --account.",
  },
  LIFECYCLE_ENVELOPE_REFUSED: {
    status: 400,
    message: 'The envelope holds something other than setOptions operations on this account.',
  },
  LIFECYCLE_CALL_FAILED: { status: 502, message: 'A call to the coordinator, a node or Horizon did not answer 2xx.' },
  LIFECYCLE_TIMEOUT: { status: 504, message: 'The change did not reach the expected state in time.' },
  LIFECYCLE_STATE_MISMATCH: {
    status: 409,
    message: 'The state file records another change than the options ask for; the details name the field.',
  },
});

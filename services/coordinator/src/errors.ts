import { defineErrors } from '@cosigner/errors/errors';

/**
 * Every way the coordinator refuses a request. HTTP answers carry `{ code, message, details? }` with the
 * status below; no message or detail ever carries an API key, a secret or a full signed envelope.
 */
export const coordinatorErrors = defineErrors('coordinator', {
  COORD_BAD_REQUEST: { status: 400, message: 'The request does not match the route schema.' },
  COORD_BAD_CONFIG: { status: 500, message: 'The coordinator configuration is invalid.' },
  COORD_UNAUTHENTICATED: {
    status: 401,
    message: 'An API key is required: send `authorization: Bearer <key>` or `x-api-key`.',
  },
  COORD_FORBIDDEN: { status: 403, message: 'The API key lacks the scope this route needs.' },
  COORD_RATE_LIMITED: { status: 429, message: 'Too many requests for this API key; retry later.' },
  COORD_TOO_MANY_OPEN: { status: 429, message: 'Too many proposals are open; retry when some have finished.' },
  COORD_BODY_TOO_LARGE: { status: 413, message: 'The request body is larger than the configured limit.' },
  COORD_WRONG_NETWORK: {
    status: 400,
    message: 'The proposal names a network other than the one this coordinator is pinned to.',
  },
  COORD_IDEMPOTENCY_CONFLICT: {
    status: 409,
    message: 'The idempotency key was already used for a different transaction.',
  },
  COORD_NOT_FOUND: { status: 404, message: 'No such proposal.' },
  COORD_NOT_CANCELLABLE: { status: 409, message: 'The proposal has already ended and cannot be cancelled.' },
  COORD_ACCOUNT_NOT_FOUND: {
    status: 422,
    message: 'A source account of the transaction does not exist on the ledger.',
  },
  COORD_HORIZON_UNAVAILABLE: {
    status: 503,
    message: 'Horizon could not be reached to load the source accounts; retry later.',
  },
  COORD_SOROBAN_BAD_ENTRY: {
    status: 400,
    message: 'An authorization entry cannot be signed by the cluster (credentials, address or expiration).',
  },
  COORD_SOROBAN_NO_RESOURCES: {
    status: 422,
    message: 'The Soroban transaction carries no resource data: simulate it before proposing.',
  },
  COORD_SOROBAN_LIMIT: {
    status: 422,
    message: "The Soroban transaction's resource fee or footprint is above the coordinator's limits.",
  },
  COORD_SOROBAN_V2_DISABLED: {
    status: 422,
    message: 'ADDRESS_V2 credentials (protocol 27) are not enabled on this coordinator (soroban.addressV2).',
  },
  COORD_CALLBACK_NOT_ALLOWED: {
    status: 400,
    message:
      'The callback URL names a destination the coordinator may not call (callbacks.allowedDestinations; in production no loopback, private, link-local or metadata address).',
  },
  COORD_SOROBAN_ENTRY_EXPIRED: {
    status: 422,
    message:
      "An authorization entry's signatureExpirationLedger has been reached: no transaction can use it any more, so the cluster does not sign it.",
  },
  COORD_BAD_CURSOR: { status: 400, message: 'The list cursor is malformed.' },
  // Why a round ended without a result: the `code` of `proposal.rejected`, `proposal.expired`, `proposal.cancelled`
  // and `proposal.failed` events (and callbacks), beside the sentence in `reason` and the proposal's statusReason.
  COORD_QUORUM_UNREACHABLE: {
    status: 409,
    message:
      'The proposal ended rejected: counting every node that has not refused, a required weight can no longer be reached.',
  },
  COORD_TIME_BOUND_PASSED: {
    status: 409,
    message: "The proposal ended expired: the transaction's upper time bound passed before a quorum signed.",
  },
  COORD_CANCELLED: { status: 409, message: 'The proposal ended cancelled at the request of a client.' },
  COORD_FOLLOW_UP_FAILED: {
    status: 500,
    message:
      'The entries of a Soroban transaction were signed, but the proposal that signs and submits its envelope could not be opened.',
  },
  COORD_NEWER_SCHEMA: {
    status: 500,
    message: 'The coordinator database was written by a newer version (its schema is newer than this code knows).',
  },
  COORD_MIGRATION_FAILED: { status: 500, message: 'The coordinator database schema could not be migrated.' },
  COORD_STORE_UNAVAILABLE: {
    status: 503,
    message: 'The coordinator database (PostgreSQL) cannot be reached; nothing was changed. Retry later.',
  },
  COORD_LEASE_LOST: {
    status: 409,
    message: "This replica no longer holds the round's lease: another replica drives it, so this write was refused.",
  },
  COORD_COPY_SOURCE_LIVE: {
    status: 409,
    message: 'The SQLite database is held by a running coordinator: stop it before copying its state.',
  },
  COORD_COPY_TARGET_NOT_EMPTY: {
    status: 409,
    message: 'The PostgreSQL database already holds coordinator state; the copy runs into an empty database only.',
  },
  COORD_FROST_NODE_UNAVAILABLE: {
    status: 409,
    message:
      'A FROST key generation needs every participant enrolled and connected; the details name those that are not.',
  },
  COORD_FROST_GROUP_NOT_READY: {
    status: 422,
    message: 'The proposal names a FROST group this coordinator has no ready key generation for (field group).',
  },
  COORD_FROST_GROUP_NOT_SIGNER: {
    status: 422,
    message:
      "The FROST group's key alone does not reach the weight the transaction needs of a source account (not a signer, " +
      "or its weight is below the threshold); a FROST round adds one signature, the group key's.",
  },
  COORD_FROST_UNSUPPORTED: {
    status: 422,
    message:
      'A FROST round signs a classic transaction or fee bump; a Soroban transaction with authorization entries is ' +
      'proposed without a group.',
  },
  COORD_FROST_GROUP_NOT_FOUND: { status: 404, message: 'No FROST group or key generation has this id or address.' },
  COORD_FROST_BUSY: {
    status: 429,
    message: 'As many FROST key generations as the coordinator runs at once are in progress; try again later.',
  },
  COORD_FROST_DKG_REFUSED: {
    status: 422,
    message:
      'A node refused or aborted the FROST key generation; the group records its code, its reason and the culprits it named.',
  },
  COORD_FROST_DKG_TIMEOUT: {
    status: 504,
    message: 'A FROST key-generation step did not complete in time; the participants that did not answer are named.',
  },
  COORD_FROST_RELAY_LOST: {
    status: 504,
    message:
      'The coordinator replica relaying this FROST key generation or share refresh stopped (no step for longer than a step may take): another replica recorded it failed; start a new one (a refresh leaves every node with its current share).',
  },
  COORD_FROST_DKG_BAD_STATEMENT: {
    status: 422,
    message:
      'A node answered a FROST key-generation step with statements that are not its own or not of that step: it is named.',
  },
  COORD_FROST_DKG_DISAGREE: {
    status: 422,
    message:
      'The nodes finished the FROST key generation with different group keys, verifying shares or transcripts: no group is recorded.',
  },
  COORD_FROST_REFRESH_NOT_FOUND: { status: 404, message: 'No FROST share refresh has this id.' },
  COORD_FROST_REFRESH_NOT_READY: {
    status: 409,
    message: 'The FROST group is not ready (its key generation is running or failed): there is nothing to refresh.',
  },
  COORD_FROST_REFRESH_RUNNING: {
    status: 409,
    message: 'A share refresh of this FROST group is running already; wait for its outcome.',
  },
  COORD_FROST_REFRESH_REFUSED: {
    status: 422,
    message:
      'A node refused or aborted the FROST share refresh; the refresh records its code, its reason and the culprits it named. Every node keeps its current share.',
  },
  COORD_FROST_REFRESH_TIMEOUT: {
    status: 504,
    message:
      'A FROST share-refresh step did not complete in time, or a participant lost its session (it restarted): every node keeps its current share.',
  },
  COORD_FROST_REFRESH_BAD_STATEMENT: {
    status: 422,
    message:
      'A node answered a FROST share-refresh step with statements that are not its own or not of that step: it is named.',
  },
  COORD_FROST_REFRESH_DISAGREE: {
    status: 422,
    message:
      'The nodes reported different refreshed groups (or transcripts): nobody switches; the disagreeing nodes are named.',
  },
  COORD_INTERNAL: { status: 500, message: 'An internal error occurred; it was logged.' },
});

export type CoordinatorErrorCode = keyof typeof coordinatorErrors.specs;

import { defineErrors } from '@cosigner/errors/errors';

/**
 * Errors of the FROST layer (RFC 9591 threshold Ed25519): key generation among the nodes, the two signing
 * rounds, the nonce record and share sealing. Errors that can name a participant who misbehaved carry it as
 * `details.culprits` (participant indices) so that the coordinator can report misbehaviour and retry without it.
 */
export const frostErrors = defineErrors('frost', {
  FROST_BAD_INPUT: {
    status: 400,
    message: 'A FROST input has the wrong type or shape (the details name the field).',
  },
  FROST_OUT_OF_RANGE: {
    status: 400,
    message: 'A FROST input is of the right type but out of range: a length, an index, a threshold or an encoding.',
  },
  FROST_SESSION_MISMATCH: {
    status: 409,
    message: 'The message belongs to another FROST session, participant list or group than the one in progress.',
  },
  FROST_ROUND_ORDER: {
    status: 409,
    message: 'A FROST round was asked for out of order (a round repeated, skipped or run after the session ended).',
  },
  FROST_DKG_MISSING_MESSAGE: {
    status: 422,
    message:
      'A key-generation or refresh round lacks a message from a participant, or has two from one: the session aborts.',
  },
  FROST_DKG_BAD_PROOF: {
    status: 422,
    message:
      'A participant broadcast a round-1 commitment whose proof of knowledge does not verify: the session aborts and names it.',
  },
  FROST_DKG_BAD_SHARE: {
    status: 422,
    message:
      'A participant sent a key-generation or refresh share that does not match its round-1 commitment: the session aborts and names it.',
  },
  FROST_DKG_UNAUTHENTIC: {
    status: 422,
    message:
      'A key-generation or refresh package failed authentication: its sender, or the relay between the nodes, altered it or showed different round-1 messages to different nodes.',
  },
  FROST_DKG_FAILED: {
    status: 422,
    message: 'Key generation failed in a way the protocol cannot attribute to one participant.',
  },
  FROST_COMMITMENT_MISMATCH: {
    status: 409,
    message:
      'The signing request does not carry the nonce commitment this node issued for the round: no share is released.',
  },
  FROST_NONCE_REUSED: {
    status: 409,
    message:
      'This round already has a nonce commitment, or its nonce was already used: a FROST nonce is used at most once.',
  },
  FROST_NONCE_UNKNOWN: {
    status: 409,
    message: 'This node issued no nonce commitment for the round.',
  },
  FROST_NONCE_LOST: {
    status: 409,
    message:
      'The nonce of this round did not survive a restart of the node (nonces are never written to disk): the round must start again.',
  },
  FROST_BAD_SIGNATURE_SHARE: {
    status: 422,
    message: 'A participant sent a signature share that does not verify against its verifying share: it is named.',
  },
  FROST_AGGREGATE_FAILED: {
    status: 500,
    message: 'The aggregated signature does not verify under the group key and no single share is to blame.',
  },
  FROST_NONCE_STORE_NEWER_SCHEMA: {
    status: 500,
    message: 'The nonce store file was written by a newer version; refusing to open it.',
  },
  FROST_NONCE_STORE_MIGRATION_FAILED: {
    status: 500,
    message: 'The nonce store schema could not be brought up to date.',
  },
  FROST_SEAL_FAILED: { status: 500, message: 'The share could not be sealed.' },
  FROST_UNSEAL_FAILED: {
    status: 500,
    message:
      'The sealed share does not open: wrong sealing key, another context (node, group) or a modified file. Nothing was used.',
  },
  FROST_DEV_SEALER_IN_PRODUCTION: {
    status: 500,
    message: 'The local share sealer is for development only and is refused in production mode.',
  },
  FROST_SEALER_CONFIG: { status: 500, message: 'The share sealer configuration is invalid.' },
  FROST_GROUP_CHANGE_UNSAFE: {
    status: 422,
    message:
      'The new group or the account change that installs its key would lock the account, let one party sign alone or allow two disjoint quorums: details.problems names each field to change.',
  },
  FROST_GROUP_CHANGE_MISMATCH: {
    status: 422,
    message:
      'The proposed transaction is not exactly the planned group-key change (one setOptions removing the old key, one adding the new): no share is released.',
  },
  FROST_SEALING_KEY_EXTRACTABLE: {
    status: 500,
    message:
      'The PKCS#11 sealing key is extractable, not sensitive, or was once (imported in the clear): a sealing key must never have left its HSM.',
  },
});

export type FrostErrorCode = keyof typeof frostErrors.specs;

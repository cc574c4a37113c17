import { defineErrors } from '@cosigner/errors/errors';

/**
 * Every way `@cosigner/stellar` refuses input. Services map `status` onto HTTP; callers branch on `code`.
 * No message ever carries key material or a full envelope.
 */
export const stellarErrors = defineErrors('stellar', {
  STELLAR_BAD_INPUT: {
    status: 400,
    message: 'An argument has the wrong type or shape.',
  },
  STELLAR_MALFORMED_XDR: {
    status: 400,
    message: 'The transaction envelope is not valid base64 XDR.',
  },
  STELLAR_XDR_TOO_LARGE: {
    status: 413,
    message: 'The transaction envelope is larger than the configured limit.',
  },
  STELLAR_UNSUPPORTED_ENVELOPE: {
    status: 400,
    message:
      'The envelope type is not supported: only v1 transaction (ENVELOPE_TYPE_TX) and fee-bump envelopes are accepted.',
  },
  STELLAR_BAD_NETWORK: {
    status: 400,
    message: 'The network passphrase is missing or empty.',
  },
  STELLAR_HASH_MISMATCH: {
    status: 400,
    message:
      'The transaction hash computed for the pinned network differs from the one supplied (wrong network or a different transaction).',
  },
  STELLAR_BAD_STRKEY: {
    status: 400,
    message: 'A Stellar key or address (strkey) is malformed or of the wrong kind.',
  },
  STELLAR_TOO_MANY_SIGNATURES: {
    status: 400,
    message: 'An envelope carries at most 20 signatures.',
  },
  STELLAR_ACCOUNT_UNKNOWN: {
    status: 422,
    message: 'The signers and thresholds of a source account are not known.',
  },
  STELLAR_BAD_ACCOUNT_AUTH: {
    status: 400,
    message: 'An account signing setup is invalid (weights and thresholds are 0..255).',
  },
  STELLAR_SELECTION_FAILED: {
    status: 500,
    message: 'The selected signature set did not pass the signature checker; nothing was assembled (a bug: report it).',
  },
  STELLAR_BAD_AUTH_ENTRY: {
    status: 400,
    message: 'The Soroban authorization entry cannot be used for this operation.',
  },
});

export type StellarErrorCode = keyof typeof stellarErrors.specs;

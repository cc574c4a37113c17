import { defineErrors } from '@cosigner/errors/errors';

/**
 * Errors the emulator raises about itself (start-up, configuration, its own files). Errors a KMS client sees
 * on the wire are AWS's own names (`__type`), see aws-errors.ts: the real SDK branches on those, not on these.
 */
export const kmsErrors = defineErrors('kms-emulator', {
  KMS_ACCOUNTS_INVALID: {
    status: 500,
    message: 'The accounts file is not valid; fix the field named in the details.',
  },
  KMS_MASTER_KEY_INVALID: {
    status: 500,
    message: 'The master key file must hold exactly 32 bytes: raw, 64 hex characters or base64.',
  },
  KMS_STORE_INVALID: { status: 500, message: 'The key store file is malformed.' },
  KMS_STORE_UNSEAL_FAILED: {
    status: 500,
    message:
      'A stored key cannot be unsealed: the master key is not the one it was sealed with, or the store was altered.',
  },
});

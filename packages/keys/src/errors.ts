import { defineErrors } from '@cosigner/errors/errors';

/**
 * Errors of the key-custody layer. A node never signs when one of these is raised: start-up errors (wrong key
 * spec, address mismatch, extractable key, development backend in production) stop the node, call errors
 * (unavailable, timeout, circuit open) make it answer "cannot sign now" and retry later.
 */
export const keysErrors = defineErrors('keys', {
  KEYS_BAD_PAYLOAD: {
    status: 400,
    message: 'A signer signs exactly 32 bytes (a transaction hash or an authorization payload).',
  },
  KEYS_BAD_SIGNATURE: {
    status: 502,
    message: 'The key backend returned a signature that does not verify under the key: it was not used.',
  },
  KEYS_BACKEND_UNAVAILABLE: { status: 503, message: 'The key backend is unavailable or throttling; try again later.' },
  KEYS_BACKEND_TIMEOUT: { status: 504, message: 'The key backend did not answer in time.' },
  KEYS_BACKEND_ERROR: { status: 502, message: 'The key backend failed in an unexpected way.' },
  KEYS_ACCESS_DENIED: {
    status: 502,
    message: 'The key backend refused these credentials for this key (key policy, IAM or another account).',
  },
  KEYS_KEY_DISABLED: { status: 503, message: 'The key is disabled or pending deletion in its backend.' },
  KEYS_CIRCUIT_OPEN: {
    status: 503,
    message: 'The key backend failed repeatedly; calls are paused until a probe succeeds.',
  },
  KEYS_WRONG_KEY_SPEC: {
    status: 500,
    message: 'The key is not an Ed25519 signing key (KMS: ECC_NIST_EDWARDS25519 with SIGN_VERIFY).',
  },
  KEYS_ADDRESS_MISMATCH: {
    status: 500,
    message: 'The Stellar address derived from the key differs from the configured address; refusing to start.',
  },
  KEYS_TOKEN_NOT_FOUND: { status: 500, message: 'No PKCS#11 token with this label is present.' },
  KEYS_BAD_PIN: { status: 500, message: 'The PKCS#11 token refused the user PIN.' },
  KEYS_KEY_NOT_FOUND: { status: 500, message: 'The key does not exist in its backend.' },
  KEYS_KEY_EXISTS: { status: 409, message: 'A key with this id already exists in the backend.' },
  KEYS_KEY_EXTRACTABLE: {
    status: 500,
    message: 'The private key is extractable or not sensitive; a production key must never leave its HSM.',
  },
  KEYS_DEV_BACKEND_IN_PRODUCTION: {
    status: 500,
    message: 'The local key backend is for development only and is refused in production mode.',
  },
  KEYS_BAD_CONFIG: { status: 500, message: 'The key backend configuration is invalid.' },
});

export type KeysErrorCode = keyof typeof keysErrors.specs;

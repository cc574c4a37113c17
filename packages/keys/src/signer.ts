/**
 * One Signer interface over every place a node's Stellar key can live.
 *
 * A Signer signs only 32-byte payloads: a transaction hash or a Soroban authorization payload that the
 * node computed itself from XDR it decoded itself. It never sees the transaction, and it never exposes
 * key material: only the public key.
 */

import { type Static, Type } from 'typebox';

export type SignerKind = 'aws-kms' | 'pkcs11' | 'local';

export interface Signer {
  readonly kind: SignerKind;
  /** Stable identifier of the key inside its backend (KMS key ARN, `token-label/CKA_ID hex`, or file path). */
  readonly keyId: string;
  /** Raw 32-byte ed25519 public key. */
  readonly publicKey: Buffer;
  /** The Stellar address (G...) of `publicKey`. */
  readonly address: string;
  /**
   * Sign a 32-byte payload with ed25519 (RFC 8032, pure). The result is verified against `publicKey`
   * before it is returned: a backend that returns a wrong signature raises KEYS_BAD_SIGNATURE instead.
   * @throws CosignerError KEYS_BAD_PAYLOAD, KEYS_BAD_SIGNATURE, KEYS_BACKEND_UNAVAILABLE, KEYS_BACKEND_TIMEOUT,
   *   KEYS_ACCESS_DENIED, KEYS_KEY_DISABLED, KEYS_CIRCUIT_OPEN
   */
  sign(payload: Uint8Array): Promise<Buffer>;
  /** Cheap reachability probe for /readyz (e.g. DescribeKey, C_GetSessionInfo). Never throws. */
  health(): Promise<{ ok: boolean; detail?: string }>;
  /** Release sessions and sockets. */
  close(): Promise<void>;
}

const G_ADDRESS = Type.String({ pattern: '^G[A-Z2-7]{55}$' });
/** If set, the derived G... address must equal this or the signer refuses to start. */
const ExpectedAddress = Type.Optional(G_ADDRESS);

/**
 * How a node reaches one key in AWS KMS (or the emulator): the fields every KMS key setting shares, the signing
 * key here and the share-sealing key of FROST mode alike.
 */
export const AwsKmsKeyFields = {
  /** Key id, ARN or alias. */
  keyId: Type.String({ minLength: 1, maxLength: 2048 }),
  region: Type.String({ minLength: 1, maxLength: 64 }),
  /** Custom endpoint (the KMS emulator in development and tests); omit for AWS. */
  endpoint: Type.Optional(Type.String({ pattern: '^https?://' })),
  /**
   * Optional static credentials, for the emulator only. In production leave unset: the standard AWS chain (env,
   * profile, container/instance role, web identity) is used.
   */
  credentials: Type.Optional(
    Type.Object(
      {
        accessKeyId: Type.String({ minLength: 1 }),
        secretAccessKey: Type.String({ minLength: 1 }),
        sessionToken: Type.Optional(Type.String()),
      },
      { additionalProperties: false },
    ),
  ),
};

/**
 * Backend configuration: a tagged union picked by `type`. The schema is the one definition: a node's config
 * validates its `key` field with it, and `SignerConfig` is derived from it.
 */
export const SignerConfigSchema = Type.Union([
  Type.Object(
    {
      type: Type.Literal('aws-kms'),
      ...AwsKmsKeyFields,
      expectedAddress: ExpectedAddress,
      timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('pkcs11'),
      /** Path to the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
      module: Type.String({ minLength: 1 }),
      tokenLabel: Type.String({ minLength: 1, maxLength: 32 }),
      /** CKA_ID of the key pair, hex. */
      keyIdHex: Type.String({ pattern: '^[0-9a-fA-F]+$' }),
      /** The user PIN comes from a file (preferred) or a named environment variable, never inline. */
      pinFile: Type.Optional(Type.String({ minLength: 1 })),
      pinEnv: Type.Optional(Type.String({ minLength: 1 })),
      sessions: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
      expectedAddress: ExpectedAddress,
      timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('local'),
      /** Development only: a file holding the 32-byte seed, created with mode 0600. */
      keyFile: Type.String({ minLength: 1 }),
      expectedAddress: ExpectedAddress,
    },
    { additionalProperties: false },
  ),
]);

/** Backend configuration: a tagged union picked by `type` (the static type of `SignerConfigSchema`). */
export type SignerConfig = Static<typeof SignerConfigSchema>;

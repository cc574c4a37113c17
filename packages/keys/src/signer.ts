/**
 * One Signer interface over every place a node's Stellar key can live.
 *
 * A Signer signs only 32-byte payloads: a transaction hash or a Soroban authorization payload that the
 * node computed itself from XDR it decoded itself. It never sees the transaction, and it never exposes
 * key material: only the public key.
 */

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

/** Backend configuration: a tagged union picked by `type`. */
export type SignerConfig =
  | {
      type: 'aws-kms';
      /** Key id, ARN or alias. */
      keyId: string;
      region: string;
      /** Custom endpoint (the KMS emulator in development and tests); omit for AWS. */
      endpoint?: string;
      /**
       * Optional static credentials, for the emulator only. In production leave unset: the standard AWS
       * chain (env, profile, container/instance role, web identity) is used.
       */
      credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
      /** If set, the derived G... address must equal this or the signer refuses to start. */
      expectedAddress?: string;
      timeoutMs?: number;
    }
  | {
      type: 'pkcs11';
      /** Path to the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
      module: string;
      tokenLabel: string;
      /** CKA_ID of the key pair, hex. */
      keyIdHex: string;
      /** The user PIN comes from a file (preferred) or a named environment variable, never inline. */
      pinFile?: string;
      pinEnv?: string;
      sessions?: number;
      expectedAddress?: string;
      timeoutMs?: number;
    }
  | {
      type: 'local';
      /** Development only: a file holding the 32-byte seed, created with mode 0600. */
      keyFile: string;
      expectedAddress?: string;
    };

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { frostErrors } from '../errors.ts';
import { badType, object, outOfRange, string } from '../input.ts';

/**
 * Custody of a share at rest. A share is never on disk or in the environment in the clear: it is sealed by the
 * node's own key custody and opened into memory only to sign. One interface, backends in sealing/ chosen by a
 * tagged config (`createShareSealer`):
 * - `aws-kms`: envelope encryption (AWS KMS developer guide, "Envelope encryption"): a fresh AES-256 data key per
 *   seal from GenerateDataKey on the node's symmetric KMS key, the share encrypted under it with AES-256-GCM here,
 *   only the KMS-wrapped data key kept; unsealing is one Decrypt. KMS never sees the share and never computes
 *   with it; it decides who may open it (key policy, SigV4) and logs each opening;
 * - `pkcs11`: AES-256-GCM computed by the HSM under an AES key generated in the token, sensitive and never
 *   extractable (sealing/pkcs11.ts): the key never leaves the HSM; the share passes through it to be sealed or
 *   opened and is used in the node's memory only;
 * - `local`: AES-256-GCM under a 32-byte key file (0600), for development only, refused in production.
 *
 * The context (node, group, purpose) is bound to the sealed blob: the GCM associated data, and for KMS the
 * encryption context too, so a blob copied to another node or another group does not open.
 */
export interface ShareSealer {
  readonly kind: SealerKind;
  /** The sealing key's id: the key file for local, the KMS key ARN for aws-kms, `token/CKA_ID` for pkcs11. */
  readonly keyId: string;
  /** @throws FROST_SEAL_FAILED, FROST_BAD_INPUT / FROST_OUT_OF_RANGE (context), KEYS_* (KMS unavailable, denied) */
  seal(plaintext: Uint8Array, context: SealContext): Promise<SealedBlob>;
  /** @throws FROST_UNSEAL_FAILED (wrong key, context or a modified blob), KEYS_* (KMS unavailable, denied) */
  unseal(blob: SealedBlob, context: SealContext): Promise<Uint8Array>;
  close(): Promise<void>;
}

export type SealerKind = 'local' | 'aws-kms' | 'pkcs11';

/** A few short strings naming what is sealed, e.g. `{ purpose: 'frost-share', node: 'node-a', group: 'G...' }`. */
export type SealContext = Record<string, string>;

/** What is kept at rest: JSON-safe, holds no secret in the clear. */
export interface SealedBlob {
  v: 1;
  kind: SealerKind;
  keyId: string;
  /** The KMS-wrapped data key (aws-kms only), base64. */
  wrappedKey?: string;
  /** AES-GCM IV (12 bytes), base64. */
  iv: string;
  /** Ciphertext followed by the 16-byte GCM tag, base64. */
  ciphertext: string;
}

export type SealerConfig =
  | { type: 'local'; keyFile: string }
  | {
      type: 'aws-kms';
      keyId: string;
      region: string;
      endpoint?: string | undefined;
      credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
    }
  | {
      type: 'pkcs11';
      /** The PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so). */
      module: string;
      tokenLabel: string;
      /** CKA_ID of the AES sealing key, hex. */
      keyIdHex: string;
      /** The user PIN: a private file (preferred) or the name of an environment variable; exactly one. */
      pinFile?: string | undefined;
      pinEnv?: string | undefined;
    };

const CONTEXT_KEY = /^[a-z][A-Za-z0-9]{0,31}$/;
const MAX_SEALED = 4096;

/**
 * Check a context: 1-8 entries, keys of [a-z][A-Za-z0-9]{0,31}, values of 1-256 characters.
 * @returns the context with its keys sorted (a copy)
 */
export function checkContext(value: unknown): SealContext {
  const o = object(value, 'context');
  const keys = Object.keys(o).sort();
  if (keys.length === 0 || keys.length > 8) throw outOfRange('context', 'must have 1 to 8 entries');
  const out: SealContext = {};
  for (const k of keys) {
    if (!CONTEXT_KEY.test(k)) throw outOfRange(`context.${k}`, 'is not a valid context key');
    const v = string(o[k], `context.${k}`);
    if (v.length === 0 || v.length > 256) throw outOfRange(`context.${k}`, 'must be 1-256 characters');
    out[k] = v;
  }
  return out;
}

/** Check a sealed blob read back from storage. @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE */
export function checkBlob(value: unknown, kind: SealerKind): SealedBlob {
  const o = object(value, 'sealed');
  if (o.v !== 1) throw outOfRange('sealed.v', 'must be 1');
  if (o.kind !== kind) throw outOfRange('sealed.kind', `must be ${kind}, this sealer's kind`);
  const b64 = (f: string, v: unknown) => {
    const s = string(v, `sealed.${f}`);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length > MAX_SEALED) throw outOfRange(`sealed.${f}`, 'is not base64');
    return s;
  };
  const blob: SealedBlob = {
    v: 1,
    kind,
    keyId: string(o.keyId, 'sealed.keyId'),
    iv: b64('iv', o.iv),
    ciphertext: b64('ciphertext', o.ciphertext),
  };
  if (kind === 'aws-kms') blob.wrappedKey = b64('wrappedKey', o.wrappedKey);
  else if (o.wrappedKey !== undefined) throw badType('sealed.wrappedKey', `absent for a ${kind} blob`);
  return blob;
}

/** The GCM associated data: a label, the backend, the sealing key and the sorted context. */
export function sealAad(kind: string, keyId: string, context: SealContext): Buffer {
  return Buffer.from(JSON.stringify(['cosigner-frost-seal/v1', kind, keyId, Object.entries(context)]), 'utf8');
}

/** AES-256-GCM under `key` (32 bytes) with a random IV. */
export function gcmSeal(key: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): { iv: string; ciphertext: string } {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  return { iv: iv.toString('base64'), ciphertext: ct.toString('base64') };
}

/** Open what gcmSeal sealed. @throws FROST_UNSEAL_FAILED */
export function gcmOpen(key: Uint8Array, aad: Uint8Array, blob: SealedBlob): Uint8Array {
  const iv = Buffer.from(blob.iv, 'base64');
  const ct = Buffer.from(blob.ciphertext, 'base64');
  try {
    if (iv.length !== 12 || ct.length < 16) throw new Error('short');
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAAD(aad);
    d.setAuthTag(ct.subarray(ct.length - 16));
    return new Uint8Array(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]));
  } catch (cause) {
    throw frostErrors.error('FROST_UNSEAL_FAILED', { kind: blob.kind, keyId: blob.keyId }, { cause });
  }
}

import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { StrKey } from '@stellar/stellar-sdk/base';
import { keysErrors } from './errors.ts';

/**
 * Ed25519 helpers shared by every backend: payload checks, public-key decoding from the two wire forms the
 * backends return (DER SubjectPublicKeyInfo from KMS, DER OCTET STRING CKA_EC_POINT from PKCS#11), Stellar
 * address derivation and the node:crypto verification each signature passes before it leaves a Signer.
 */

/** DER SubjectPublicKeyInfo of an Ed25519 key minus its 32 key bytes (RFC 8410 section 4). */
export const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
/** DER OCTET STRING header of a 32-byte CKA_EC_POINT (PKCS#11 v3.0 section 2.3.6, CKK_EC_EDWARDS). */
const EC_POINT_PREFIX = Buffer.from('0420', 'hex');

/**
 * Check a payload at the Signer boundary and return it as a Buffer. A wrong type and a wrong length are both
 * KEYS_BAD_PAYLOAD but say which. Nothing is signed for a refused payload.
 * @throws CosignerError KEYS_BAD_PAYLOAD
 */
export function checkPayload(payload: unknown, what = 'payload'): Buffer {
  if (!(payload instanceof Uint8Array)) {
    throw keysErrors.error(
      'KEYS_BAD_PAYLOAD',
      { field: what, type: typeof payload },
      { message: `${what} must be bytes (Uint8Array), got ${typeof payload}.` },
    );
  }
  if (payload.length !== 32) {
    throw keysErrors.error(
      'KEYS_BAD_PAYLOAD',
      { field: what, length: payload.length },
      { message: `${what} must be exactly 32 bytes, got ${payload.length}.` },
    );
  }
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

/**
 * The raw public key of an Ed25519 DER SubjectPublicKeyInfo (what KMS GetPublicKey returns: 44 bytes).
 * @throws CosignerError KEYS_WRONG_KEY_SPEC
 */
export function publicKeyFromSpki(der: Uint8Array): Buffer {
  const buf = Buffer.from(der);
  if (buf.length !== 44 || !buf.subarray(0, 12).equals(SPKI_ED25519_PREFIX)) {
    throw keysErrors.error(
      'KEYS_WRONG_KEY_SPEC',
      { publicKeyLength: buf.length },
      { message: 'The backend public key is not a DER SubjectPublicKeyInfo of an Ed25519 key.' },
    );
  }
  return Buffer.from(buf.subarray(12));
}

/**
 * The raw public key of a CKA_EC_POINT for CKK_EC_EDWARDS: a DER OCTET STRING of 32 bytes. Some modules
 * return the 32 bytes bare (PKCS#11 3.0 allows it for Edwards keys), which is accepted too.
 * @throws CosignerError KEYS_WRONG_KEY_SPEC
 */
export function publicKeyFromEcPoint(point: Uint8Array): Buffer {
  const buf = Buffer.from(point);
  if (buf.length === 34 && buf.subarray(0, 2).equals(EC_POINT_PREFIX)) return Buffer.from(buf.subarray(2));
  if (buf.length === 32) return buf;
  throw keysErrors.error(
    'KEYS_WRONG_KEY_SPEC',
    { ecPointLength: buf.length },
    { message: 'The PKCS#11 public key is not a 32-byte Ed25519 point.' },
  );
}

/** The Stellar G... address of a raw Ed25519 public key (SEP-23 strkey). */
export function addressOf(publicKey: Uint8Array): string {
  return StrKey.encodeEd25519PublicKey(Buffer.from(publicKey));
}

/** A node:crypto KeyObject for a raw Ed25519 public key. */
export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, Buffer.from(publicKey)]),
    format: 'der',
    type: 'spki',
  });
}

/** Verify an Ed25519 signature with node:crypto. Never throws on a malformed signature: returns false. */
export function verifyWith(key: KeyObject, payload: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  try {
    return cryptoVerify(null, payload, key, signature);
  } catch {
    return false;
  }
}

/**
 * Refuse to start when the configured address and the key's derived address differ: a node signing with a key
 * other than the one enrolled on the account would contribute no weight, or the wrong weight.
 * @throws CosignerError KEYS_ADDRESS_MISMATCH
 */
export function checkExpectedAddress(address: string, expected: string | undefined, keyId: string): void {
  if (expected !== undefined && expected !== address) {
    throw keysErrors.error('KEYS_ADDRESS_MISMATCH', { keyId, expected, derived: address });
  }
}

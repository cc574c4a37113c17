import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { StrKey } from '@stellar/stellar-sdk/base';
import { stellarErrors } from './errors.ts';

/**
 * Ed25519 signature checks on the hot path, with node:crypto (OpenSSL) and stellar-core's acceptance rules.
 *
 * stellar-core verifies with libsodium's `crypto_sign_verify_detached` (src/crypto/SecretKey.cpp,
 * PubKeyUtils::verifySig). OpenSSL and libsodium 1.0.18 both use the cofactorless equation
 * `encode([S]B - [h]A) == R` and both need S < L, but libsodium also refuses, before any curve math:
 *   - a public key whose y coordinate is not canonical (y >= p), `ge25519_is_canonical`;
 *   - a public key or an R of small order (7 encodings, sign bit ignored), `ge25519_has_small_order`.
 * OpenSSL does not refuse small-order keys or R, so an identity public key would verify a forged signature on
 * every message. We run libsodium's refusals first, then OpenSSL, so the result equals libsodium's on every
 * input; `test/vectors/ed25519-libsodium.json` (libsodium's own verdicts) proves it.
 *
 * The SDK's `Keypair.verify` (@noble/ed25519, `zip215: false`) uses the cofactored equation and differs from
 * core on mixed-order keys and R; see test/verify.test.ts for the measured differences.
 */

/** Ed25519 group order L (RFC 8032 section 5.1) as 32 little-endian bytes. */
const L_LE = Buffer.from('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010', 'hex');

const P = 2n ** 255n - 19n;
/** y of a point of order 8 (libsodium ed25519_ref10.c, `ge25519_has_small_order` blacklist). */
const Y_ORDER_8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022n;

function le32(n: bigint): Buffer {
  const out = Buffer.alloc(32);
  let v = n;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/**
 * The y encodings (sign bit cleared) of every small-order point, canonical or not: 0 (order 4), 1 (order 1),
 * the two order-8 y values, p-1 (order 2), p (= 0) and p+1 (= 1). Exactly libsodium's blacklist.
 */
const SMALL_ORDER_Y = [0n, 1n, Y_ORDER_8, P - Y_ORDER_8, P - 1n, P, P + 1n].map(le32);

/** libsodium `ge25519_has_small_order`: compares the 255-bit y, ignoring the sign bit. Exported for tests. */
export function hasSmallOrder(enc: Uint8Array): boolean {
  for (const bad of SMALL_ORDER_Y) {
    let diff = (enc[31]! & 0x7f) ^ bad[31]!;
    for (let i = 0; i < 31 && diff === 0; i++) diff |= enc[i]! ^ bad[i]!;
    if (diff === 0) return true;
  }
  return false;
}

/** libsodium `ge25519_is_canonical`: false when the 255-bit y is >= p (sign bit ignored). Exported for tests. */
export function isCanonicalY(enc: Uint8Array): boolean {
  if ((enc[31]! & 0x7f) !== 0x7f) return true;
  for (let i = 30; i > 0; i--) if (enc[i] !== 0xff) return true;
  return enc[0]! < 0xed;
}

/**
 * S < L, as libsodium's `sc25519_is_canonical` and RFC 8032 section 5.1.7 require. S is sig[32..64],
 * little-endian: compare from the most significant byte down. Exported for tests.
 */
export function isCanonicalS(sig: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const s = sig[32 + i]!;
    const l = L_LE[i]!;
    if (s !== l) return s < l;
  }
  return false;
}

/** RFC 8410 SubjectPublicKeyInfo prefix for a raw Ed25519 key. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** How many public keys keep a parsed KeyObject. A cluster has a handful of signers; 4096 bounds memory. */
const KEY_CACHE_MAX = 4096;
const keyCache = new Map<string, KeyObject | null>();

function keyObject(publicKey: Uint8Array): KeyObject | null {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, 32).toString('latin1');
  const hit = keyCache.get(id);
  if (hit !== undefined) {
    // Map keeps insertion order: re-inserting marks the key most recently used.
    keyCache.delete(id);
    keyCache.set(id, hit);
    return hit;
  }
  let key: KeyObject | null;
  try {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  } catch {
    // OpenSSL may refuse bytes that are not a curve point; such a key verifies nothing.
    key = null;
  }
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string);
  keyCache.set(id, key);
  return key;
}

/** Number of parsed public keys currently cached (for tests and metrics). */
export function keyCacheSize(): number {
  return keyCache.size;
}

/**
 * Signatures already found valid, by their exact bytes (public key, signature, message), most recent last.
 *
 * Why: the coordinator checks each node's signature when it arrives, then again when it chooses the minimal set
 * (selectMinimalSignatures verifies every candidate and runs checkAuth on the choice), then once more on the
 * assembled envelope (the belt-and-braces checkAuth): about 9 verifications of 3 signatures per proposal, 22% of
 * its CPU under load (bench/README.md). Every one of those checks still runs its whole logic; only the curve
 * arithmetic for a triple of bytes that already verified is not repeated. Ed25519 verification is a pure
 * function of those bytes, so a hit gives exactly the answer the arithmetic would: a changed key, signature or
 * message (a bug that put the wrong signature in an envelope) is a different entry and is verified afresh.
 * Only `true` is kept (a flood of bad signatures cannot evict good ones), only for messages of at most 64 bytes
 * (hashes and signed payloads), and at most VERIFIED_MAX entries (about 1 MB).
 */
const VERIFIED_MAX = 4096;
const VERIFIED_MSG_MAX = 64;
const verified = new Set<string>();

function verifiedId(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): string | undefined {
  if (message.length > VERIFIED_MSG_MAX) return undefined;
  const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
  // Fixed-length key and signature first, so the concatenation is unambiguous.
  return latin1(publicKey) + latin1(signature) + latin1(message);
}

/** Number of verified signatures currently remembered (tests, metrics). */
export function verifiedCacheSize(): number {
  return verified.size;
}

/**
 * True when `signature` is a valid Ed25519 signature of `message` by `publicKey` under stellar-core's rules
 * (libsodium `crypto_sign_verify_detached`). Never throws for Uint8Array input of any length: a wrong length,
 * a non-canonical or small-order key or R, S >= L or a failed equation all return false. A triple that verified
 * before is answered from memory (see `verified` above).
 */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || !(message instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
    return false;
  }
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  if (!isCanonicalS(signature)) return false;
  if (!isCanonicalY(publicKey) || hasSmallOrder(publicKey)) return false;
  if (hasSmallOrder(signature.subarray(0, 32))) return false;
  const id = verifiedId(publicKey, message, signature);
  if (id !== undefined && verified.has(id)) return true;
  const key = keyObject(publicKey);
  if (key === null) return false;
  let ok: boolean;
  try {
    ok = cryptoVerify(null, message, key, signature);
  } catch {
    return false;
  }
  if (ok && id !== undefined) {
    if (verified.size >= VERIFIED_MAX) verified.delete(verified.values().next().value as string);
    verified.add(id);
  }
  return ok;
}

/** The 4-byte signature hint stellar-core matches first: the last 4 bytes of the raw public key. */
export function signatureHint(publicKey: Uint8Array): Buffer {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'publicKey' }, { message: 'publicKey must be 32 bytes.' });
  }
  return Buffer.from(publicKey.subarray(28, 32));
}

/**
 * The raw 32-byte ed25519 key of a G... account address.
 * @throws STELLAR_BAD_STRKEY when `g` is not a valid G strkey (M..., S..., checksum errors included).
 */
export function publicKeyFromAddress(g: string): Buffer {
  if (typeof g !== 'string' || !StrKey.isValidEd25519PublicKey(g)) {
    throw stellarErrors.error('STELLAR_BAD_STRKEY', { expected: 'G...' });
  }
  return Buffer.from(StrKey.decodeEd25519PublicKey(g));
}

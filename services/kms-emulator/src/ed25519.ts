import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { eddsa } from '@noble/curves/abstract/edwards.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';

/** DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410 section 4): the 32-byte key follows. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
/** DER PKCS#8 prefix of an Ed25519 private key (RFC 8410 section 7): the 32-byte seed follows. */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * Ed25519ph (HashEdDSA, RFC 8032 section 5.1) over a caller-supplied SHA-512 digest, as KMS does for
 * ED25519_PH_SHA_512 with MessageType DIGEST: the same curve and hash as noble's `ed25519ph`, but with the
 * pre-hash step already done by the caller (identity `prehash`, phflag still 1 in dom2). node:crypto has no
 * Ed25519ph. The test checks this against RFC 8032 section 7.3's Ed25519ph vector.
 */
const ed25519phDigest = eddsa(ed25519.Point, sha512, {
  // RFC 8032 section 5.1.5 step 2: clamp the low 3 bits and the top bit, set bit 254.
  adjustScalarBytes: (b: Uint8Array) => {
    b[0]! &= 248;
    b[31]! &= 127;
    b[31]! |= 64;
    return b;
  },
  // RFC 8032 section 2, dom2(phflag=1, context=''): "SigEd25519 no Ed25519 collisions" || 1 || 0.
  domain: (data: Uint8Array, ctx: Uint8Array, phflag: boolean) =>
    Buffer.concat([
      Buffer.from('SigEd25519 no Ed25519 collisions'),
      Buffer.from([phflag ? 1 : 0, ctx.length]),
      ctx,
      data,
    ]),
  prehash: (digest: Uint8Array) => digest,
  zip215: false,
});

/** A fresh Ed25519 private key. */
export function generateEd25519(): KeyObject {
  return generateKeyPairSync('ed25519').privateKey;
}

/** The 32-byte seed of a private key (only ever sealed before it reaches disk). */
export function ed25519Seed(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
}

export function ed25519FromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** DER SPKI, 44 bytes: what KMS GetPublicKey returns for ECC_NIST_EDWARDS25519. */
export function ed25519Spki(key: KeyObject): Buffer {
  return createPublicKey(key).export({ format: 'der', type: 'spki' });
}

/** Pure Ed25519 (RFC 8032), KMS ED25519_SHA_512 with MessageType RAW. */
export function signPure(key: KeyObject, message: Buffer): Buffer {
  return sign(null, message, key);
}

export function verifyPure(spki: Buffer, message: Buffer, signature: Buffer): boolean {
  if (signature.length !== 64) return false;
  return verify(null, message, { key: spki, format: 'der', type: 'spki' }, signature);
}

/** Ed25519ph over a 64-byte SHA-512 digest, KMS ED25519_PH_SHA_512 with MessageType DIGEST. */
export function signPrehashed(key: KeyObject, digest: Buffer): Buffer {
  return Buffer.from(ed25519phDigest.sign(digest, ed25519Seed(key)));
}

export function verifyPrehashed(spki: Buffer, digest: Buffer, signature: Buffer): boolean {
  // noble throws only on malformed argument lengths, which the length checks here and in ops.ts rule out;
  // a well-formed but invalid signature (bad R point, S >= L) is `false`.
  if (signature.length !== 64 || digest.length !== 64) return false;
  return ed25519phDigest.verify(signature, digest, spki.subarray(SPKI_PREFIX.length));
}

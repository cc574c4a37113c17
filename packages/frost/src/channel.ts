import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { bytes } from './input.ts';

/**
 * The node-to-node channel of key generation: round-2 packages carry secret shares and cross the coordinator,
 * which must learn nothing from them and must not be able to alter them unnoticed.
 *
 * Construction: static-static X25519 (RFC 7748) between the sender's and the recipient's transport keys, HKDF-SHA256
 * (RFC 5869) with the session digest as salt and the direction (sender, recipient) in `info`, then AES-256-GCM
 * (NIST SP 800-38D) with a random 96-bit IV and the caller's associated data (session, transcript, sender,
 * recipient). Why this and not another AEAD or an ephemeral (ECIES) key:
 * - static-static agreement authenticates the sender: only the holder of the sender's transport secret can
 *   derive the key the recipient derives, so the relay cannot forge a package, and a valid package is the sender's
 *   word on the round-1 transcript bound into the associated data;
 * - a key per session and per direction (HKDF) means one package per key, so a random IV never repeats under it;
 * - everything is in node:crypto (OpenSSL's AES-GCM, constant time with AES-NI) and @noble/curves (x25519, which
 *   refuses low-order points), both already dependencies; nothing is written by hand.
 * What it does not give: forward secrecy against a later theft of a recipient's transport secret (recorded
 * packages to that node would open). That secret is sealed like a share, and a theft of it is no worse than a
 * theft of the node's share, which those packages produce.
 */

export const TRANSPORT_KEY_BYTES = 32;
const INFO = Buffer.from('cosigner-frost-dkg-round2/v1', 'utf8');

/** A node's transport key pair for key generation (X25519). The secret is sealed at rest like a share. */
export interface TransportKeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function createTransportKey(): TransportKeyPair {
  const { secretKey, publicKey } = x25519.keygen();
  return { secretKey, publicKey };
}

export function transportPublicKey(secretKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(bytes(secretKey, 'transportSecretKey', TRANSPORT_KEY_BYTES));
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** The AES-256 key of one direction (from -> to) of one session. Throws on a low-order public key. */
function directionKey(ourSecret: Uint8Array, theirPublic: Uint8Array, salt: Uint8Array, from: number, to: number) {
  const shared = x25519.getSharedSecret(ourSecret, theirPublic);
  try {
    return Buffer.from(hkdfSync('sha256', shared, salt, Buffer.concat([INFO, u32(from), u32(to)]), 32));
  } finally {
    shared.fill(0);
  }
}

export interface Sealed {
  iv: Uint8Array;
  ciphertext: Uint8Array;
}

/** Encrypt and authenticate `plaintext` from participant `from` to participant `to`. */
export function sealTo(p: {
  ourSecret: Uint8Array;
  theirPublic: Uint8Array;
  salt: Uint8Array;
  from: number;
  to: number;
  aad: Uint8Array;
  plaintext: Uint8Array;
}): Sealed {
  const key = directionKey(p.ourSecret, p.theirPublic, p.salt, p.from, p.to);
  try {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(p.aad);
    const ct = Buffer.concat([c.update(p.plaintext), c.final(), c.getAuthTag()]);
    return { iv, ciphertext: ct };
  } finally {
    key.fill(0);
  }
}

/** Decrypt a package sent by `from` to us (`to`). @returns undefined when it fails authentication. */
export function openFrom(p: {
  ourSecret: Uint8Array;
  theirPublic: Uint8Array;
  salt: Uint8Array;
  from: number;
  to: number;
  aad: Uint8Array;
  sealed: Sealed;
}): Uint8Array | undefined {
  if (p.sealed.iv.length !== 12 || p.sealed.ciphertext.length < 16) return undefined;
  let key: Buffer;
  try {
    key = directionKey(p.ourSecret, p.theirPublic, p.salt, p.from, p.to);
  } catch {
    return undefined;
  }
  try {
    const ct = p.sealed.ciphertext;
    const d = createDecipheriv('aes-256-gcm', key, p.sealed.iv);
    d.setAAD(p.aad);
    d.setAuthTag(ct.subarray(ct.length - 16));
    return new Uint8Array(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]));
  } catch {
    return undefined;
  } finally {
    key.fill(0);
  }
}

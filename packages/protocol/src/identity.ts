import {
  createPrivateKey,
  createPublicKey,
  sign as edSign,
  verify as edVerify,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readSecretFile, writePrivateFile } from '@cosigner/runtime/secrets';
import { protocolErrors } from './errors.ts';

/**
 * Message identity keys (ed25519, node:crypto). The coordinator signs every message it sends with its message
 * key; each node authenticates with its node identity key. These keys are NEVER Stellar signing keys: they
 * authenticate messages only, so their theft lets an attacker speak the protocol, never sign a transaction.
 */
export interface Identity {
  /** Raw 32-byte ed25519 public key. */
  readonly publicKey: Buffer;
  /** Base64 of `publicKey`: how keys are written in configs and messages. */
  readonly publicKeyB64: string;
  sign(data: Uint8Array): Buffer;
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function identityFromKeyObject(privateKey: KeyObject): Identity {
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const publicKey = Buffer.from(spki.subarray(SPKI_ED25519_PREFIX.length));
  return {
    publicKey,
    publicKeyB64: publicKey.toString('base64'),
    sign: (data) => edSign(null, data, privateKey),
  };
}

/** A fresh random identity (tests, first start). */
export function generateIdentity(): { identity: Identity; pem: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { identity: identityFromKeyObject(privateKey), pem };
}

export function identityFromPem(pem: string): Identity {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw protocolErrors.error('PROTOCOL_BAD_KEY', undefined, { cause: e });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw protocolErrors.error('PROTOCOL_BAD_KEY');
  return identityFromKeyObject(key);
}

/**
 * Load the identity PEM at `path` (it must be private: 0600), or create it there when absent.
 * Returns whether it was created so the caller can log the path (never the key).
 */
export async function loadOrCreateIdentity(path: string): Promise<{ identity: Identity; created: boolean }> {
  let pem: string | undefined;
  try {
    await readFile(path);
    pem = await readSecretFile(path, 'identity key');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (pem !== undefined) return { identity: identityFromPem(pem), created: false };
  const fresh = generateIdentity();
  await writePrivateFile(path, fresh.pem);
  return { identity: fresh.identity, created: true };
}

const verifyKeyCache = new Map<string, KeyObject>();

/** A KeyObject for a raw ed25519 public key, cached (verification is on every message). */
export function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw protocolErrors.error('PROTOCOL_BAD_KEY', { length: raw.length });
  const id = Buffer.from(raw).toString('base64');
  let key = verifyKeyCache.get(id);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
    if (verifyKeyCache.size > 1024) verifyKeyCache.clear();
    verifyKeyCache.set(id, key);
  }
  return key;
}

/** Verify an ed25519 signature; false (never a throw) for a wrong-length signature. */
export function verifyWith(raw: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  return edVerify(null, data, publicKeyObject(raw), signature);
}

/** Parse a base64 ed25519 public key from config or a message. */
export function parsePublicKeyB64(b64: string, field: string): Buffer {
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== 32 || raw.toString('base64') !== b64) {
    throw protocolErrors.error(
      'PROTOCOL_BAD_KEY',
      { field },
      { message: `${field} is not a base64 ed25519 public key.` },
    );
  }
  return raw;
}

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { assertPrivateFile, writePrivateFile } from '@cosigner/runtime/secrets';
import { kmsErrors } from './errors.ts';

/** A value sealed with AES-256-GCM: 96-bit random IV, 128-bit tag (NIST SP 800-38D), all base64. */
export interface SealedBlob {
  iv: string;
  tag: string;
  ct: string;
}

/**
 * Seal `plaintext` under the 32-byte master key. `aad` binds the blob to what it belongs to (the key ARN),
 * so a sealed blob moved onto another key record fails to unseal instead of silently swapping keys.
 */
export function seal(masterKey: Buffer, plaintext: Buffer, aad: string): SealedBlob {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', masterKey, iv);
  c.setAAD(Buffer.from(aad, 'utf8'));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return { iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), ct: ct.toString('base64') };
}

/** @throws KMS_STORE_UNSEAL_FAILED when the master key or the blob or its binding is wrong. */
export function unseal(masterKey: Buffer, blob: SealedBlob, aad: string): Buffer {
  try {
    const d = createDecipheriv('aes-256-gcm', masterKey, Buffer.from(blob.iv, 'base64'));
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(Buffer.from(blob.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(blob.ct, 'base64')), d.final()]);
  } catch (e) {
    throw kmsErrors.error('KMS_STORE_UNSEAL_FAILED', { key: aad }, { cause: e });
  }
}

/** Accept the master key as 32 raw bytes, 64 hex characters or base64 of 32 bytes. */
export function parseMasterKey(raw: Buffer): Buffer {
  if (raw.length === 32) return Buffer.from(raw);
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]{43}=$/.test(text)) return Buffer.from(text, 'base64');
  throw kmsErrors.error('KMS_MASTER_KEY_INVALID', { length: raw.length });
}

/**
 * The master key: from `masterKeyFile` (must be private) or, in development, `<dataDir>/master.key`, generated
 * (0600) on first start. `generated` tells the caller to say so in its log.
 * @throws KMS_MASTER_KEY_INVALID, RUNTIME_FILE_NOT_PRIVATE
 */
export async function loadMasterKey(opts: {
  masterKeyFile?: string;
  dataDir: string;
}): Promise<{ key: Buffer; path: string; generated: boolean }> {
  const path = opts.masterKeyFile ?? join(opts.dataDir, 'master.key');
  const exists = await stat(path).then(
    () => true,
    () => false,
  );
  if (!exists && opts.masterKeyFile === undefined) {
    const key = randomBytes(32);
    await writePrivateFile(path, `${key.toString('hex')}\n`);
    return { key, path, generated: true };
  }
  if (!exists) {
    throw kmsErrors.error(
      'KMS_MASTER_KEY_INVALID',
      { path },
      { message: `The master key file ${path} does not exist.` },
    );
  }
  await assertPrivateFile(path, 'KMS emulator master key');
  return { key: parseMasterKey(await readFile(path)), path, generated: false };
}

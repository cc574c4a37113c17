import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { runtimeErrors } from './errors.ts';

/** Constant-time equality of two secrets of any length (hashes first so lengths do not leak). */
export function secretEquals(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** A fresh random secret, base64url, `bytes` of entropy. */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** Write a file readable by its owner only (0600), creating its directory (0700). */
export async function writePrivateFile(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, data, { mode: 0o600 });
}

/** Refuse a file that group or others may read: secrets and ledgers must be private. */
export async function assertPrivateFile(path: string, what: string): Promise<void> {
  const s = await stat(path);
  if ((s.mode & 0o077) !== 0) {
    throw runtimeErrors.error('RUNTIME_FILE_NOT_PRIVATE', { path, what, mode: (s.mode & 0o777).toString(8) });
  }
}

/** Read a secret file, trimmed; it must be private. */
export async function readSecretFile(path: string, what: string): Promise<string> {
  await assertPrivateFile(path, what);
  return (await readFile(path, 'utf8')).trim();
}

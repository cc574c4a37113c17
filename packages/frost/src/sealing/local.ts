import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { assertPrivateFile } from '@cosigner/runtime/secrets';
import { frostErrors } from '../errors.ts';
import { bytes } from '../input.ts';
import {
  checkBlob,
  checkContext,
  gcmOpen,
  gcmSeal,
  type SealContext,
  type SealedBlob,
  type SealerConfig,
  type ShareSealer,
  sealAad,
} from './shared.ts';

/**
 * The development sealer: AES-256-GCM under a 32-byte key in a private file (0600), created when absent. The key
 * sits on disk beside what it seals, so it protects against nothing but accidents: refused in production.
 */
export async function createLocalSealer(
  config: Extract<SealerConfig, { type: 'local' }>,
  opts: { production: boolean; env?: NodeJS.ProcessEnv },
): Promise<ShareSealer> {
  if (opts.production || (opts.env ?? process.env).NODE_ENV === 'production') {
    throw frostErrors.error('FROST_DEV_SEALER_IN_PRODUCTION');
  }
  let key: Buffer;
  try {
    await assertPrivateFile(config.keyFile, 'local share sealing key');
    key = await readFile(config.keyFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await mkdir(dirname(config.keyFile), { recursive: true, mode: 0o700 });
    // 'wx': created here with mode 0600, never overwriting a key written meanwhile.
    await writeFile(config.keyFile, randomBytes(32), { mode: 0o600, flag: 'wx' });
    key = await readFile(config.keyFile);
  }
  if (key.length !== 32) {
    key.fill(0);
    throw frostErrors.error(
      'FROST_SEALER_CONFIG',
      { keyFile: config.keyFile, length: key.length },
      { message: `The local sealing key file must hold exactly 32 bytes, it holds ${key.length}.` },
    );
  }
  const keyId = config.keyFile;
  return {
    kind: 'local',
    keyId,
    async seal(plaintext: Uint8Array, context: SealContext): Promise<SealedBlob> {
      const p = bytes(plaintext, 'plaintext');
      const ctx = checkContext(context);
      try {
        return { v: 1, kind: 'local', keyId, ...gcmSeal(key, sealAad('local', keyId, ctx), p) };
      } finally {
        p.fill(0);
      }
    },
    async unseal(blob: SealedBlob, context: SealContext): Promise<Uint8Array> {
      const b = checkBlob(blob, 'local');
      return gcmOpen(key, sealAad('local', b.keyId, checkContext(context)), b);
    },
    async close() {
      key.fill(0);
    },
  };
}

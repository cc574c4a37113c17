import { createPrivateKey, createPublicKey, sign as edSign, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { assertPrivateFile } from '@cosigner/runtime/secrets';
import type { Logger } from 'pino';
import { addressOf, SPKI_ED25519_PREFIX } from '../ed25519.ts';
import { keysErrors } from '../errors.ts';
import { guardSigner } from '../guarded.ts';
import type { KeyMetrics } from '../metrics.ts';
import type { Signer, SignerConfig } from '../signer.ts';

/**
 * The development key backend: an Ed25519 seed in a file, signed with node:crypto.
 *
 * Never for production: the key sits on disk in the clear. It refuses to run in production mode (the
 * service's mode or NODE_ENV=production) and reads its seed only from a private file (0600), never from an
 * environment variable, so a demo configuration cannot drift into a deployment unnoticed.
 */

export type LocalSignerConfig = Extract<SignerConfig, { type: 'local' }>;

/** PKCS#8 DER of an Ed25519 private key minus its 32 seed bytes (RFC 8410 section 7). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function refuseProduction(production: boolean, env: NodeJS.ProcessEnv): void {
  if (production || env.NODE_ENV === 'production') throw keysErrors.error('KEYS_DEV_BACKEND_IN_PRODUCTION');
}

function keyFromSeed(seed: Buffer): { privateKey: ReturnType<typeof createPrivateKey>; publicKey: Buffer } {
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { privateKey, publicKey: Buffer.from(spki.subarray(SPKI_ED25519_PREFIX.length)) };
}

/**
 * Create a development key file holding a fresh 32-byte seed (mode 0600). Refuses to overwrite a file.
 * @returns the key's public key and Stellar address (never the seed)
 * @throws CosignerError KEYS_KEY_EXISTS, KEYS_DEV_BACKEND_IN_PRODUCTION
 */
export async function createLocalKey(
  path: string,
  opts: { production?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<{ keyId: string; publicKey: Buffer; address: string }> {
  refuseProduction(opts.production ?? false, opts.env ?? process.env);
  const seed = randomBytes(32);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // 'wx': created here with mode 0600 or refused, so an existing key is never overwritten.
    await writeFile(path, seed, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    seed.fill(0);
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw keysErrors.error('KEYS_KEY_EXISTS', { keyFile: path });
    throw e;
  }
  const { publicKey } = keyFromSeed(seed);
  seed.fill(0);
  return { keyId: path, publicKey, address: addressOf(publicKey) };
}

/**
 * Open the development signer. The key file is created (0600) when absent.
 * @throws CosignerError KEYS_DEV_BACKEND_IN_PRODUCTION, KEYS_BAD_CONFIG (not a 32-byte seed),
 *   KEYS_ADDRESS_MISMATCH, RUNTIME_FILE_NOT_PRIVATE (group/world readable key file)
 */
export async function createLocalSigner(
  config: LocalSignerConfig,
  opts: { production: boolean; metrics?: KeyMetrics; logger?: Logger; env?: NodeJS.ProcessEnv },
): Promise<Signer> {
  refuseProduction(opts.production, opts.env ?? process.env);
  let seed: Buffer;
  try {
    await assertPrivateFile(config.keyFile, 'local signing key');
    seed = await readFile(config.keyFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await createLocalKey(config.keyFile, { production: opts.production, env: opts.env ?? process.env });
    opts.logger?.warn({ keyFile: config.keyFile }, 'created a development signing key (local backend)');
    seed = await readFile(config.keyFile);
  }
  if (seed.length !== 32) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { keyFile: config.keyFile, length: seed.length },
      { message: `The local key file must hold exactly 32 bytes (an Ed25519 seed), it holds ${seed.length}.` },
    );
  }
  const { privateKey, publicKey } = keyFromSeed(seed);
  seed.fill(0);
  opts.logger?.warn({ keyFile: config.keyFile }, 'local key backend in use: development only');
  return guardSigner(
    {
      kind: 'local',
      keyId: config.keyFile,
      publicKey,
      rawSign: async (payload) => edSign(null, payload, privateKey),
      probe: async () => {},
      close: async () => {},
    },
    { expectedAddress: config.expectedAddress, metrics: opts.metrics, logger: opts.logger },
  );
}

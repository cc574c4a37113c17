import { frostErrors } from './errors.ts';
import type { SealerConfig, ShareSealer } from './sealing/shared.ts';

/**
 * The share sealer a node's config names (`createShareSealer`), over the backends in sealing/. What every backend
 * shares (the ShareSealer interface, the sealed blob's format and checks, AES-256-GCM) is sealing/shared.ts,
 * re-exported here: the backends import it from there, so they and this module, which loads them, import no
 * circle.
 */
export * from './sealing/shared.ts';

/**
 * Build the sealer a config names. The local backend is refused in production (the service's mode or
 * NODE_ENV=production), as the local key backend is.
 * @throws FROST_DEV_SEALER_IN_PRODUCTION, FROST_SEALER_CONFIG, FROST_SEALING_KEY_EXTRACTABLE, KEYS_* (KMS, HSM)
 */
export async function createShareSealer(
  config: SealerConfig,
  opts: { production: boolean; env?: NodeJS.ProcessEnv },
): Promise<ShareSealer> {
  switch (config?.type) {
    case 'local': {
      const { createLocalSealer } = await import('./sealing/local.ts');
      return createLocalSealer(config, opts);
    }
    case 'aws-kms': {
      const { createKmsSealer } = await import('./sealing/aws-kms.ts');
      return createKmsSealer(config);
    }
    case 'pkcs11': {
      const { createPkcs11Sealer } = await import('./sealing/pkcs11.ts');
      return createPkcs11Sealer(config, opts.env ? { env: opts.env } : {});
    }
    default:
      throw frostErrors.error('FROST_SEALER_CONFIG', {
        type: (config as { type?: unknown } | undefined)?.type ?? null,
      });
  }
}

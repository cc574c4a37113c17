import type { Logger } from 'pino';
import { keysErrors } from './errors.ts';
import type { KeyMetrics } from './metrics.ts';
import type { Signer, SignerConfig, SignerKind } from './signer.ts';

export interface CreateSignerOptions {
  /** The service's production mode; NODE_ENV=production counts too (local backend refuses either). */
  production: boolean;
  metrics?: KeyMetrics;
  logger?: Logger;
  /** Environment for pinEnv and NODE_ENV; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

type Opener<K extends SignerKind> = (
  config: Extract<SignerConfig, { type: K }>,
  opts: CreateSignerOptions,
) => Promise<Signer>;

/**
 * One opener per `type`: the tagged union is resolved here, once, and nowhere else. Each backend's module is
 * imported only when a configuration names it: the AWS SDK's KMS client alone holds about 4.7 MB of heap and 20 MB
 * of RSS in a process (bench/README.md "Memory"), and pkcs11js is a native library; a node uses one backend.
 */
const OPENERS: { [K in SignerKind]: Opener<K> } = {
  'aws-kms': async (config, opts) =>
    (await import('./aws-kms/kms-signer.ts')).createKmsSigner(config, { metrics: opts.metrics, logger: opts.logger }),
  pkcs11: async (config, opts) =>
    (await import('./pkcs11/pkcs11-signer.ts')).createPkcs11Signer(config, {
      metrics: opts.metrics,
      logger: opts.logger,
      env: opts.env ?? process.env,
    }),
  local: async (config, opts) =>
    (await import('./local/local-signer.ts')).createLocalSigner(config, {
      production: opts.production,
      env: opts.env ?? process.env,
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    }),
};

/**
 * Open the signer a node's configuration names. The derived Stellar address is checked against
 * `config.expectedAddress` when set: a mismatch stops start-up.
 * @throws CosignerError KEYS_BAD_CONFIG (unknown type), KEYS_ADDRESS_MISMATCH, KEYS_DEV_BACKEND_IN_PRODUCTION,
 *   and each backend's start-up errors
 */
export function createSigner(config: SignerConfig, opts: CreateSignerOptions): Promise<Signer> {
  const type = (config as { type?: unknown }).type;
  if (typeof type !== 'string' || !Object.hasOwn(OPENERS, type)) {
    return Promise.reject(
      keysErrors.error(
        'KEYS_BAD_CONFIG',
        { type: String(type) },
        { message: `Unknown key backend type ${String(type)}; expected aws-kms, pkcs11 or local.` },
      ),
    );
  }
  const open = OPENERS[type as SignerKind] as Opener<SignerKind>;
  return open(config, opts);
}

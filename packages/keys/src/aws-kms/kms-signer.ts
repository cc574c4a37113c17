import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  SignCommand,
} from '@aws-sdk/client-kms';
import { CosignerError } from '@cosigner/errors/errors';
import type { Logger } from 'pino';
import { addressOf, publicKeyFromSpki } from '../ed25519.ts';
import { keysErrors } from '../errors.ts';
import { guardSigner } from '../guarded.ts';
import type { KeyMetrics } from '../metrics.ts';
import { Resilience, type ResilienceOptions } from '../resilience.ts';
import type { Signer, SignerConfig } from '../signer.ts';

/**
 * The AWS KMS backend (production default). The key is a KMS key of spec ECC_NIST_EDWARDS25519 and usage
 * SIGN_VERIFY; a node signs with ED25519_SHA_512 and MessageType RAW, which is pure Ed25519 (RFC 8032) over the
 * 32 bytes, exactly what Stellar verifies. ED25519_PH_SHA_512 (HashEdDSA, MessageType DIGEST) would produce
 * signatures Stellar rejects, so it is never used. (AWS KMS Developer Guide, "Asymmetric key specs" and the
 * Sign API reference.)
 */

export type KmsSignerConfig = Extract<SignerConfig, { type: 'aws-kms' }>;

/** The user agent of every KMS call: CloudTrail records it, so an operator can tell the cluster's calls apart. */
export const KMS_USER_AGENT = 'stellar-cosigner (@aws-sdk/client-kms)';

/**
 * Steps of the SDK's default middleware stack that a cosigner's KMS client leaves out, each for a reason (a
 * test checks that they are gone, so an SDK upgrade that renames one is noticed). Measured with the SDK's own
 * work alone (no network): about 100 us per Sign with the full stack, 71 us without these (bench/README.md).
 * - `getUserAgentMiddleware` builds the user-agent string again on every call (environment, features, escaping):
 *   about 10 us. Replaced by a constant one (KMS_USER_AGENT), set once per call.
 * - `retryMiddleware`: retries are ours (resilience.ts: one policy, one count, the breaker sees throttling), and
 *   the client makes one attempt (`maxAttempts: 1`); with one attempt the step only acquires a retry token and
 *   adds two informational headers (`amz-sdk-invocation-id`, `amz-sdk-request`). The signing step is declared
 *   relative to it, so a pass-through keeps its place.
 * - `recursionDetectionMiddleware` copies AWS Lambda's trace id (`_X_AMZN_TRACE_ID`) into a header; nodes do not
 *   run in Lambda, and the header is informational.
 * - `loggerMiddleware` hands every input and output, filtered, to the client's logger, which here is the SDK's
 *   no-op logger: work for nothing, and payloads are better kept out of logs anyway.
 * Kept: serialisation, endpoint resolution, the auth scheme and identity (memoised: no per-call credential
 * resolution, for static credentials and the default chain alike), SigV4 signing (@smithy/signature-v4 caches
 * the derived signing key per day, region and credentials itself), content length, host header, deserialisation.
 */
export const REMOVED_MIDDLEWARE = [
  'getUserAgentMiddleware',
  'retryMiddleware',
  'recursionDetectionMiddleware',
  'loggerMiddleware',
] as const;

/**
 * Build a KMS client, one per signer (or per command run), tuned for many small calls: a keep-alive agent (the
 * SDK's default too, made explicit so the socket pool is ours to size), one attempt (retries are resilience.ts's),
 * and the middleware above removed. Static credentials only when given (the emulator); otherwise the SDK's
 * default chain, resolved once and refreshed by the SDK before expiry.
 */
export function createKmsClient(params: {
  region: string;
  endpoint?: string | undefined;
  credentials?: KmsSignerConfig['credentials'];
  timeoutMs?: number | undefined;
}): KMSClient {
  const timeout = params.timeoutMs ?? 2000;
  const client = new KMSClient({
    region: params.region,
    ...(params.endpoint ? { endpoint: params.endpoint } : {}),
    // A copy: the SDK writes a `$source` marker onto the credentials object it is given
    // (@aws-sdk/core setCredentialFeature), and a node's config is deep-frozen.
    ...(params.credentials ? { credentials: { ...params.credentials } } : {}),
    // Retries are ours (resilience.ts): one policy, one count of attempts, one place that decides what is
    // retryable. The SDK's own retry would multiply attempts and hide throttling from the breaker.
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: timeout,
      requestTimeout: timeout,
      // A node has a handful of Signs in flight at most; 16 sockets, kept open between calls.
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 16 }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: 16 }),
    },
  });
  const stack = client.middlewareStack;
  for (const name of REMOVED_MIDDLEWARE) stack.remove(name);
  stack.add((next) => next, { step: 'finalizeRequest', name: 'retryMiddleware', priority: 'high' });
  stack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) {
        request.headers['user-agent'] = KMS_USER_AGENT;
        request.headers['x-amz-user-agent'] = KMS_USER_AGENT;
      }
      return next(args);
    },
    { step: 'build', name: 'cosignerUserAgent', priority: 'low' },
  );
  return client;
}

/**
 * One KMS Sign, ED25519_SHA_512 over the raw payload (MessageType RAW: pure Ed25519, what Stellar verifies). The
 * signature is returned as KMS gave it; the caller verifies it (guarded.ts). Errors are the SDK's, unmapped.
 */
export async function kmsSign(
  client: KMSClient,
  keyArn: string,
  payload: Uint8Array,
  abortSignal: AbortSignal,
): Promise<Buffer> {
  const out = await client.send(
    new SignCommand({ KeyId: keyArn, Message: payload, MessageType: 'RAW', SigningAlgorithm: 'ED25519_SHA_512' }),
    { abortSignal },
  );
  return Buffer.from(out.Signature ?? new Uint8Array());
}

/** AWS error names (KMS API reference, "Errors") by what a node can do about them. */
const UNAVAILABLE = new Set([
  'ThrottlingException',
  'KMSInternalException',
  'KeyUnavailableException',
  'DependencyTimeoutException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalFailure',
  'RequestTimeout',
  'RequestTimeoutException',
]);
const ACCESS_DENIED = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'CredentialsProviderError',
]);
const DISABLED = new Set(['DisabledException', 'KMSInvalidStateException']);
const WRONG_SPEC = new Set(['InvalidKeyUsageException', 'UnsupportedOperationException']);
const NOT_FOUND = new Set(['NotFoundException', 'InvalidArnException']);
/** Node socket errors: the endpoint is down or unreachable. */
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Map anything the SDK throws to a KEYS_* error. Details carry the AWS error name, never request data. */
export function mapAwsError(e: unknown, keyId: string): CosignerError {
  if (e instanceof CosignerError) return e;
  const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const name = err.name ?? 'Error';
  const details = { keyId, awsError: name };
  if (ACCESS_DENIED.has(name)) return keysErrors.error('KEYS_ACCESS_DENIED', details, { cause: e });
  if (DISABLED.has(name)) return keysErrors.error('KEYS_KEY_DISABLED', details, { cause: e });
  if (WRONG_SPEC.has(name)) return keysErrors.error('KEYS_WRONG_KEY_SPEC', details, { cause: e });
  if (NOT_FOUND.has(name)) return keysErrors.error('KEYS_KEY_NOT_FOUND', details, { cause: e });
  if (name === 'AbortError' || name === 'TimeoutError')
    return keysErrors.error('KEYS_BACKEND_TIMEOUT', details, { cause: e });
  const status = err.$metadata?.httpStatusCode ?? 0;
  if (UNAVAILABLE.has(name) || NETWORK.has(err.code ?? '') || status >= 500) {
    return keysErrors.error('KEYS_BACKEND_UNAVAILABLE', details, { cause: e });
  }
  return keysErrors.error('KEYS_BACKEND_ERROR', details, {
    cause: e,
    message: `The key backend failed: ${name}.`,
  });
}

/**
 * Check a key's metadata before use.
 * @throws CosignerError KEYS_WRONG_KEY_SPEC, KEYS_KEY_DISABLED
 */
export function checkKeyMetadata(
  meta: { KeySpec?: string; KeyUsage?: string; Enabled?: boolean; KeyState?: string; Arn?: string } | undefined,
  keyId: string,
): void {
  if (meta?.KeySpec !== 'ECC_NIST_EDWARDS25519' || meta.KeyUsage !== 'SIGN_VERIFY') {
    throw keysErrors.error('KEYS_WRONG_KEY_SPEC', { keyId, keySpec: meta?.KeySpec, keyUsage: meta?.KeyUsage });
  }
  if (meta.Enabled !== true || meta.KeyState !== 'Enabled') {
    throw keysErrors.error('KEYS_KEY_DISABLED', { keyId, keyState: meta.KeyState });
  }
}

export interface KmsSignerOptions {
  metrics?: KeyMetrics | undefined;
  logger?: Logger | undefined;
  /** A client to reuse (tests, the CLI); otherwise one is built from the config. */
  client?: KMSClient;
  resilience?: Omit<ResilienceOptions, 'onStateChange'>;
}

/**
 * Open a KMS-backed signer: DescribeKey (spec, usage, state), GetPublicKey (SPKI -> G... address), then
 * Sign(ED25519_SHA_512, RAW) per call, each signature verified before it is returned.
 * @throws CosignerError KEYS_WRONG_KEY_SPEC, KEYS_KEY_DISABLED, KEYS_KEY_NOT_FOUND, KEYS_ACCESS_DENIED,
 *   KEYS_ADDRESS_MISMATCH, KEYS_BACKEND_UNAVAILABLE, KEYS_BACKEND_TIMEOUT
 */
export async function createKmsSigner(config: KmsSignerConfig, opts: KmsSignerOptions = {}): Promise<Signer> {
  const ownsClient = opts.client === undefined;
  const client =
    opts.client ??
    createKmsClient({
      region: config.region,
      endpoint: config.endpoint,
      credentials: config.credentials,
      timeoutMs: config.timeoutMs,
    });
  let keyArn = config.keyId;
  const resilience = new Resilience({
    timeoutMs: config.timeoutMs,
    ...opts.resilience,
    onStateChange: (state) => {
      opts.metrics?.setCircuitState('aws-kms', keyArn, state);
      opts.logger?.warn({ keyId: keyArn, state }, 'KMS circuit breaker state changed');
    },
  });
  const call = <T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> =>
    resilience.run(async (signal) => {
      try {
        return await fn(signal);
      } catch (e) {
        throw mapAwsError(e, keyArn);
      }
    });

  try {
    const described = await call((abortSignal) =>
      client.send(new DescribeKeyCommand({ KeyId: config.keyId }), { abortSignal }),
    );
    checkKeyMetadata(described.KeyMetadata, config.keyId);
    keyArn = described.KeyMetadata?.Arn ?? config.keyId;
    const pub = await call((abortSignal) => client.send(new GetPublicKeyCommand({ KeyId: keyArn }), { abortSignal }));
    const publicKey = publicKeyFromSpki(pub.PublicKey ?? new Uint8Array());
    const signer = guardSigner(
      {
        kind: 'aws-kms',
        keyId: keyArn,
        publicKey,
        rawSign: async (payload, abortSignal) => {
          try {
            return await kmsSign(client, keyArn, payload, abortSignal);
          } catch (e) {
            throw mapAwsError(e, keyArn);
          }
        },
        probe: async (abortSignal) => {
          try {
            const d = await client.send(new DescribeKeyCommand({ KeyId: keyArn }), { abortSignal });
            checkKeyMetadata(d.KeyMetadata, keyArn);
          } catch (e) {
            throw mapAwsError(e, keyArn);
          }
        },
        close: async () => {
          if (ownsClient) client.destroy();
        },
      },
      { expectedAddress: config.expectedAddress, resilience, metrics: opts.metrics, logger: opts.logger },
    );
    opts.logger?.info({ keyId: keyArn, address: signer.address }, 'KMS signer ready');
    return signer;
  } catch (e) {
    if (ownsClient) client.destroy();
    throw e;
  }
}

/**
 * Create an Ed25519 signing key in KMS (for `cosigner keys create` and key rotation), optionally with an
 * alias and tags. Needs an admin principal (kms:CreateKey, kms:CreateAlias, kms:GetPublicKey).
 * @returns the key ARN, its public key and Stellar address; never key material (KMS never releases it)
 * @throws CosignerError KEYS_ACCESS_DENIED, KEYS_BACKEND_UNAVAILABLE, KEYS_BACKEND_ERROR, KEYS_WRONG_KEY_SPEC
 */
export async function createKmsKey(
  client: KMSClient,
  params: { alias?: string; description?: string; tags?: Record<string, string> } = {},
): Promise<{ keyId: string; keyArn: string; alias?: string; publicKey: Buffer; address: string }> {
  let where = 'new key';
  try {
    const created = await client.send(
      new CreateKeyCommand({
        KeySpec: 'ECC_NIST_EDWARDS25519',
        KeyUsage: 'SIGN_VERIFY',
        Description: params.description ?? 'Stellar cosigner node signing key',
        ...(params.tags
          ? { Tags: Object.entries(params.tags).map(([TagKey, TagValue]) => ({ TagKey, TagValue })) }
          : {}),
      }),
    );
    const keyArn = created.KeyMetadata?.Arn ?? created.KeyMetadata?.KeyId ?? '';
    where = keyArn;
    let alias: string | undefined;
    if (params.alias !== undefined) {
      alias = params.alias.startsWith('alias/') ? params.alias : `alias/${params.alias}`;
      await client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyArn }));
    }
    const pub = await client.send(new GetPublicKeyCommand({ KeyId: keyArn }));
    const publicKey = publicKeyFromSpki(pub.PublicKey ?? new Uint8Array());
    return {
      keyId: created.KeyMetadata?.KeyId ?? keyArn,
      keyArn,
      ...(alias ? { alias } : {}),
      publicKey,
      address: addressOf(publicKey),
    };
  } catch (e) {
    throw mapAwsError(e, where);
  }
}

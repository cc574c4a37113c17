import { DecryptCommand, DescribeKeyCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { createKmsClient, mapAwsError } from '@cosigner/keys/aws-kms/kms-signer';
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

export type KmsSealerConfig = Extract<SealerConfig, { type: 'aws-kms' }>;

/** KMS answers that mean "this blob does not open with this key and context", not "KMS is unwell". */
const WONT_OPEN = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);

/**
 * The AWS KMS sealer: envelope encryption with the node's symmetric key (KeySpec SYMMETRIC_DEFAULT, KeyUsage
 * ENCRYPT_DECRYPT). The node's role needs kms:GenerateDataKey, kms:Decrypt and kms:DescribeKey on that key and
 * nothing else (docs/operations/aws-kms.md). At open, DescribeKey checks the key's spec, usage and state, so a
 * signing key given by mistake is refused before anything is sealed with it.
 * @throws FROST_SEALER_CONFIG (not a symmetric encryption key, or disabled), KEYS_* (unavailable, access denied)
 */
export async function createKmsSealer(
  config: KmsSealerConfig,
  opts: { client?: KMSClient } = {},
): Promise<ShareSealer> {
  const client = opts.client ?? createKmsClient(config);
  let keyId: string;
  try {
    const d = await client.send(new DescribeKeyCommand({ KeyId: config.keyId }));
    const m = d.KeyMetadata;
    if (m?.KeySpec !== 'SYMMETRIC_DEFAULT' || m.KeyUsage !== 'ENCRYPT_DECRYPT' || m.KeyState !== 'Enabled') {
      throw frostErrors.error(
        'FROST_SEALER_CONFIG',
        { keyId: config.keyId, keySpec: m?.KeySpec, keyUsage: m?.KeyUsage, keyState: m?.KeyState },
        { message: 'The sealing key must be an enabled KMS key of spec SYMMETRIC_DEFAULT and usage ENCRYPT_DECRYPT.' },
      );
    }
    keyId = m.Arn ?? config.keyId;
  } catch (e) {
    if (!opts.client) client.destroy();
    if (frostErrors.is(e)) throw e;
    throw mapAwsError(e, config.keyId);
  }
  return {
    kind: 'aws-kms',
    keyId,
    async seal(plaintext: Uint8Array, context: SealContext): Promise<SealedBlob> {
      const p = bytes(plaintext, 'plaintext');
      const ctx = checkContext(context);
      let dataKey: Uint8Array | undefined;
      try {
        const g = await client.send(
          new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: ctx }),
        );
        dataKey = g.Plaintext;
        if (dataKey?.length !== 32 || !g.CiphertextBlob) {
          throw frostErrors.error('FROST_SEAL_FAILED', { keyId, reason: 'KMS returned no 32-byte data key' });
        }
        return {
          v: 1,
          kind: 'aws-kms',
          keyId,
          wrappedKey: Buffer.from(g.CiphertextBlob).toString('base64'),
          ...gcmSeal(dataKey, sealAad('aws-kms', keyId, ctx), p),
        };
      } catch (e) {
        if (frostErrors.is(e)) throw e;
        throw mapAwsError(e, keyId);
      } finally {
        dataKey?.fill(0);
        p.fill(0);
      }
    },
    async unseal(blob: SealedBlob, context: SealContext): Promise<Uint8Array> {
      const b = checkBlob(blob, 'aws-kms');
      const ctx = checkContext(context);
      let dataKey: Uint8Array | undefined;
      try {
        // KeyId pins the key: KMS refuses (IncorrectKeyException) a blob wrapped by another key.
        const d = await client.send(
          new DecryptCommand({
            CiphertextBlob: Buffer.from(b.wrappedKey!, 'base64'),
            EncryptionContext: ctx,
            KeyId: keyId,
          }),
        );
        dataKey = d.Plaintext;
        if (dataKey?.length !== 32) {
          throw frostErrors.error('FROST_UNSEAL_FAILED', { keyId, reason: 'KMS returned no 32-byte data key' });
        }
        return gcmOpen(dataKey, sealAad('aws-kms', b.keyId, ctx), b);
      } catch (e) {
        if (frostErrors.is(e)) throw e;
        const name = (e as { name?: string }).name ?? '';
        if (WONT_OPEN.has(name))
          throw frostErrors.error('FROST_UNSEAL_FAILED', { keyId, awsError: name }, { cause: e });
        throw mapAwsError(e, keyId);
      } finally {
        dataKey?.fill(0);
      }
    },
    async close() {
      if (!opts.client) client.destroy();
    },
  };
}

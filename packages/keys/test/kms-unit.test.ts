import { sign as edSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  GetPublicKeyCommand,
  type KMSClient,
  SignCommand,
} from '@aws-sdk/client-kms';
import { describe, expect, it } from 'vitest';
import {
  checkKeyMetadata,
  createKmsClient,
  createKmsKey,
  createKmsSigner,
  mapAwsError,
} from '../src/aws-kms/kms-signer.ts';
import { keysErrors } from '../src/errors.ts';

// Unit tests of kms-signer.ts alone, with a stub client standing in for KMS where a real KMS cannot be made to
// misbehave (a wrong signature, throttling). The real SDK against the real emulator is in kms.test.ts.

const ARN = 'arn:aws:kms:us-east-1:111111111111:key/stub';
const goodMeta = {
  Arn: ARN,
  KeyId: 'stub',
  KeySpec: 'ECC_NIST_EDWARDS25519',
  KeyUsage: 'SIGN_VERIFY',
  Enabled: true,
  KeyState: 'Enabled',
};

function awsError(name: string, status = 400): Error {
  return Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
}

function stubKms(over: { sign?: (msg: Uint8Array) => Promise<Uint8Array>; meta?: object; calls?: string[] } = {}) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  let destroyed = false;
  const client = {
    send: async (cmd: unknown) => {
      over.calls?.push((cmd as object).constructor.name);
      if (cmd instanceof DescribeKeyCommand) return { KeyMetadata: over.meta ?? goodMeta };
      if (cmd instanceof GetPublicKeyCommand) return { PublicKey: new Uint8Array(spki) };
      if (cmd instanceof SignCommand) {
        const input = cmd.input;
        expect(input).toMatchObject({ KeyId: ARN, MessageType: 'RAW', SigningAlgorithm: 'ED25519_SHA_512' });
        const msg = input.Message as Uint8Array;
        return { Signature: over.sign ? await over.sign(msg) : new Uint8Array(edSign(null, msg, privateKey)) };
      }
      if (cmd instanceof CreateKeyCommand) return { KeyMetadata: goodMeta };
      if (cmd instanceof CreateAliasCommand) return {};
      throw new Error('unexpected command');
    },
    destroy: () => {
      destroyed = true;
    },
  };
  return { client: client as unknown as KMSClient, destroyed: () => destroyed, privateKey };
}

const config = { type: 'aws-kms' as const, keyId: 'alias/node', region: 'us-east-1' };

describe('mapAwsError', () => {
  it('maps AWS error names and socket errors to KEYS_* codes without request data', () => {
    const cases: [unknown, string][] = [
      [awsError('AccessDeniedException'), 'KEYS_ACCESS_DENIED'],
      [awsError('UnrecognizedClientException'), 'KEYS_ACCESS_DENIED'],
      [awsError('InvalidSignatureException'), 'KEYS_ACCESS_DENIED'],
      [awsError('DisabledException'), 'KEYS_KEY_DISABLED'],
      [awsError('KMSInvalidStateException'), 'KEYS_KEY_DISABLED'],
      [awsError('InvalidKeyUsageException'), 'KEYS_WRONG_KEY_SPEC'],
      [awsError('NotFoundException'), 'KEYS_KEY_NOT_FOUND'],
      [awsError('ThrottlingException'), 'KEYS_BACKEND_UNAVAILABLE'],
      [awsError('KMSInternalException', 500), 'KEYS_BACKEND_UNAVAILABLE'],
      [awsError('SomethingNew', 503), 'KEYS_BACKEND_UNAVAILABLE'],
      [Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }), 'KEYS_BACKEND_UNAVAILABLE'],
      [awsError('AbortError'), 'KEYS_BACKEND_TIMEOUT'],
      [awsError('ValidationException'), 'KEYS_BACKEND_ERROR'],
      ['a string', 'KEYS_BACKEND_ERROR'],
    ];
    for (const [e, code] of cases) {
      const mapped = mapAwsError(e, ARN);
      expect(mapped.code, String((e as Error).name ?? e)).toBe(code);
      expect(mapped.details?.keyId).toBe(ARN);
    }
    const already = keysErrors.error('KEYS_BAD_PAYLOAD');
    expect(mapAwsError(already, ARN)).toBe(already);
  });
});

describe('checkKeyMetadata', () => {
  it('refuses a wrong spec or usage, then a disabled or pending-deletion key', () => {
    expect(() => checkKeyMetadata(goodMeta, 'k')).not.toThrow();
    for (const meta of [
      undefined,
      { ...goodMeta, KeySpec: 'SYMMETRIC_DEFAULT' },
      { ...goodMeta, KeyUsage: 'ENCRYPT_DECRYPT' },
    ]) {
      expect(() => checkKeyMetadata(meta, 'k')).toThrow(expect.objectContaining({ code: 'KEYS_WRONG_KEY_SPEC' }));
    }
    for (const meta of [
      { ...goodMeta, Enabled: false, KeyState: 'Disabled' },
      { ...goodMeta, Enabled: false, KeyState: 'PendingDeletion' },
    ]) {
      expect(() => checkKeyMetadata(meta, 'k')).toThrow(expect.objectContaining({ code: 'KEYS_KEY_DISABLED' }));
    }
  });
});

describe('createKmsSigner with a stub KMS', () => {
  it('refuses a signature that does not verify under the key (a misbehaving KMS)', async () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    const stub = stubKms({ sign: async (m) => new Uint8Array(edSign(null, m, other)) });
    const signer = await createKmsSigner(config, { client: stub.client, resilience: { retries: 0 } });
    expect(signer.keyId).toBe(ARN);
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BAD_SIGNATURE' });
    await signer.close();
    // A client the caller passed in is the caller's to destroy.
    expect(stub.destroyed()).toBe(false);
  });

  it('retries throttling, then signs; does not retry access denied', async () => {
    let n = 0;
    const stub = stubKms({
      sign: async (m) => {
        n++;
        if (n < 3) throw awsError('ThrottlingException');
        if (n === 3) return new Uint8Array(edSign(null, m, stub.privateKey));
        throw awsError('AccessDeniedException');
      },
    });
    const signer = await createKmsSigner(config, { client: stub.client, resilience: { baseDelayMs: 1 } });
    expect(await signer.sign(randomBytes(32))).toHaveLength(64);
    expect(n).toBe(3);
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_ACCESS_DENIED' });
    expect(n).toBe(4);
  });

  it('times out a hung call with KEYS_BACKEND_TIMEOUT', async () => {
    const stub = stubKms({ sign: () => new Promise(() => {}) });
    const signer = await createKmsSigner({ ...config, timeoutMs: 20 }, { client: stub.client });
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_TIMEOUT' });
  });

  it('refuses at start-up a key whose metadata is wrong, and a bad public key', async () => {
    const wrong = stubKms({ meta: { ...goodMeta, KeySpec: 'ECC_NIST_P256' } });
    await expect(createKmsSigner(config, { client: wrong.client })).rejects.toMatchObject({
      code: 'KEYS_WRONG_KEY_SPEC',
    });
    const calls: string[] = [];
    const disabled = stubKms({ meta: { ...goodMeta, Enabled: false, KeyState: 'Disabled' }, calls });
    await expect(createKmsSigner(config, { client: disabled.client })).rejects.toMatchObject({
      code: 'KEYS_KEY_DISABLED',
    });
    // Refused before the public key is even asked for.
    expect(calls).toEqual(['DescribeKeyCommand']);
  });

  it('health fails once the key is disabled', async () => {
    const meta = { ...goodMeta };
    const stub = stubKms({ meta });
    const signer = await createKmsSigner(config, { client: stub.client });
    expect(await signer.health()).toEqual({ ok: true });
    Object.assign(meta, { Enabled: false, KeyState: 'Disabled' });
    expect(await signer.health()).toEqual({ ok: false, detail: 'KEYS_KEY_DISABLED' });
  });

  it('createKmsKey adds the alias prefix and maps failures', async () => {
    const calls: string[] = [];
    const stub = stubKms({ calls });
    const made = await createKmsKey(stub.client, { alias: 'node-a', tags: { node: 'a' } });
    expect(made).toMatchObject({ keyArn: ARN, keyId: 'stub', alias: 'alias/node-a' });
    expect(calls).toEqual(['CreateKeyCommand', 'CreateAliasCommand', 'GetPublicKeyCommand']);
    const plain = await createKmsKey(stub.client);
    expect(plain.alias).toBeUndefined();
    const denied = { send: async () => Promise.reject(awsError('AccessDeniedException')) } as unknown as KMSClient;
    await expect(createKmsKey(denied)).rejects.toMatchObject({ code: 'KEYS_ACCESS_DENIED' });
  });

  it('builds a client from config, with static credentials only when given', async () => {
    const withCreds = createKmsClient({
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
    });
    expect(await withCreds.config.region()).toBe('eu-west-1');
    expect((await withCreds.config.credentials()).accessKeyId).toBe('AKIDEXAMPLE');
    withCreds.destroy();
    // Nothing listens on port 1: the signer's start-up fails as unavailable, after its bounded retries.
    await expect(
      createKmsSigner(
        {
          ...config,
          endpoint: 'http://127.0.0.1:1',
          credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
        },
        { resilience: { baseDelayMs: 1 } },
      ),
    ).rejects.toMatchObject({ code: 'KEYS_BACKEND_UNAVAILABLE' });
  });
});

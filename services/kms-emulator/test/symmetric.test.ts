import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { b64, type Harness, harness } from './helpers.ts';

describe('kms-emulator SYMMETRIC_DEFAULT: Encrypt, Decrypt, GenerateDataKey', () => {
  let h: Harness;
  let keyId: string;
  let arn: string;
  let signKey: string;

  beforeEach(async () => {
    h = await harness();
    const r = await h.call(h.admin(), 'CreateKey', { Description: 'data' });
    const md = r.body.KeyMetadata as Record<string, unknown>;
    expect(md).toMatchObject({
      KeySpec: 'SYMMETRIC_DEFAULT',
      CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
      KeyUsage: 'ENCRYPT_DECRYPT',
      EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    });
    keyId = String(md.KeyId);
    arn = String(md.Arn);
    const s = await h.call(h.admin(), 'CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' });
    signKey = String((s.body.KeyMetadata as Record<string, unknown>).KeyId);
  });
  afterEach(() => h.close());

  it('round-trips a plaintext bound to its encryption context', async () => {
    const ctx = { purpose: 'test', node: 'a' };
    const e = await h.call(h.admin(), 'Encrypt', {
      KeyId: keyId,
      Plaintext: b64('secret data'),
      EncryptionContext: ctx,
    });
    expect(e.body).toMatchObject({ KeyId: arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
    const blob = String(e.body.CiphertextBlob);
    expect(Buffer.from(blob, 'base64').toString()).not.toContain('secret data');
    const d = await h.call(h.admin(), 'Decrypt', {
      CiphertextBlob: blob,
      EncryptionContext: { node: 'a', purpose: 'test' },
    });
    expect(d.body).toEqual({ KeyId: arn, Plaintext: b64('secret data'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
    const withKey = await h.call(h.admin(), 'Decrypt', { CiphertextBlob: blob, KeyId: arn, EncryptionContext: ctx });
    expect(withKey.status).toBe(200);
    const wrongCtx = await h.call(h.admin(), 'Decrypt', {
      CiphertextBlob: blob,
      EncryptionContext: { node: 'b', purpose: 'test' },
    });
    expect(wrongCtx.body.__type).toBe('InvalidCiphertextException');
    const other = await h.call(h.admin(), 'CreateKey', {});
    const otherId = String((other.body.KeyMetadata as Record<string, unknown>).KeyId);
    const wrongKey = await h.call(h.admin(), 'Decrypt', {
      CiphertextBlob: blob,
      KeyId: otherId,
      EncryptionContext: ctx,
    });
    expect(wrongKey.body.__type).toBe('IncorrectKeyException');
    const tampered = Buffer.from(blob, 'base64');
    tampered[tampered.length - 1]! ^= 1;
    expect(
      (await h.call(h.admin(), 'Decrypt', { CiphertextBlob: b64(tampered), EncryptionContext: ctx })).body.__type,
    ).toBe('InvalidCiphertextException');
    for (const junk of [Buffer.alloc(10), Buffer.alloc(60, 2), Buffer.concat([Buffer.from([1]), Buffer.alloc(59)])]) {
      const r = await h.call(h.admin(), 'Decrypt', { CiphertextBlob: b64(junk) });
      expect(r.body.__type).toBe('InvalidCiphertextException');
    }
    expect((await h.call(h.admin(1), 'Decrypt', { CiphertextBlob: blob, EncryptionContext: ctx })).body.__type).toBe(
      'AccessDeniedException',
    );
    // Another account's node has no grant on this key (this account's node may unseal: node-sealing.test.ts).
    expect((await h.call(h.node(1), 'Decrypt', { CiphertextBlob: blob, EncryptionContext: ctx })).body.__type).toBe(
      'AccessDeniedException',
    );
  });

  it('generates data keys by key spec or number of bytes, never both', async () => {
    const g = await h.call(h.admin(), 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' });
    expect(Buffer.from(String(g.body.Plaintext), 'base64')).toHaveLength(32);
    const d = await h.call(h.admin(), 'Decrypt', { CiphertextBlob: g.body.CiphertextBlob });
    expect(d.body.Plaintext).toBe(g.body.Plaintext);
    const g16 = await h.call(h.admin(), 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_128' });
    expect(Buffer.from(String(g16.body.Plaintext), 'base64')).toHaveLength(16);
    const n = await h.call(h.admin(), 'GenerateDataKey', { KeyId: keyId, NumberOfBytes: 7 });
    expect(Buffer.from(String(n.body.Plaintext), 'base64')).toHaveLength(7);
    for (const input of [{}, { KeySpec: 'AES_256', NumberOfBytes: 32 }, { NumberOfBytes: 1025 }]) {
      const r = await h.call(h.admin(), 'GenerateDataKey', { KeyId: keyId, ...input });
      expect(r.body.__type).toBe('ValidationException');
    }
  });

  it('keeps key usages apart and checks types and limits', async () => {
    // Usage is checked after authorization (as in AWS): let the admin call everything on both keys here, so
    // what is refused is the usage, not the least-privilege default policy.
    const everything = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: h.admin().arn }, Action: 'kms:*', Resource: '*' }],
    });
    for (const k of [keyId, signKey]) {
      expect((await h.call(h.admin(), 'PutKeyPolicy', { KeyId: k, Policy: everything })).status).toBe(200);
    }
    const cases: [string, Record<string, unknown>, string][] = [
      ['Sign', { KeyId: keyId, Message: b64('m'), SigningAlgorithm: 'ED25519_SHA_512' }, 'InvalidKeyUsageException'],
      ['GetPublicKey', { KeyId: keyId }, 'UnsupportedOperationException'],
      ['Encrypt', { KeyId: signKey, Plaintext: b64('p') }, 'InvalidKeyUsageException'],
      ['GenerateDataKey', { KeyId: signKey, KeySpec: 'AES_256' }, 'InvalidKeyUsageException'],
      [
        'Encrypt',
        { KeyId: keyId, Plaintext: b64('p'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' },
        'InvalidKeyUsageException',
      ],
      ['Encrypt', { KeyId: keyId, Plaintext: b64(Buffer.alloc(4097)) }, 'ValidationException'],
      ['Encrypt', { KeyId: keyId, Plaintext: b64('p'), EncryptionContext: { a: 1 } }, 'SerializationException'],
      ['Encrypt', { KeyId: keyId, Plaintext: b64('p'), EncryptionContext: ['a'] }, 'SerializationException'],
      ['Decrypt', {}, 'ValidationException'],
    ];
    for (const [op, input, type] of cases) {
      const r = await h.call(h.admin(), op, input);
      expect(r.body.__type, `${op} ${JSON.stringify(input).slice(0, 60)}`).toBe(type);
    }
    await h.call(h.admin(), 'DisableKey', { KeyId: keyId });
    expect((await h.call(h.admin(), 'Encrypt', { KeyId: keyId, Plaintext: b64('p') })).body.__type).toBe(
      'DisabledException',
    );
  });
});

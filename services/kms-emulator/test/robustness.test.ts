import { createHash, verify } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATIONS } from '../src/ops.ts';
import { b64, type Harness, harness, signAs } from './helpers.ts';

describe('kms-emulator robustness', () => {
  let h: Harness;
  let keyId: string;
  let spki: Buffer;
  beforeAll(async () => {
    h = await harness();
    const r = await h.call(h.admin(), 'CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' });
    keyId = String((r.body.KeyMetadata as Record<string, unknown>).KeyId);
    spki = Buffer.from(String((await h.call(h.node(), 'GetPublicKey', { KeyId: keyId })).body.PublicKey), 'base64');
  });
  afterAll(() => h.close());

  it('answers any JSON input to any operation with 200 or an AWS 4xx error, never a crash', async () => {
    const ops = Object.keys(OPERATIONS);
    const value = fc.oneof(
      fc.constant(keyId),
      fc.constant(b64('x')),
      fc.constantFrom('ED25519_SHA_512', 'ED25519_PH_SHA_512', 'RAW', 'DIGEST', 'alias/x', 'SIGN_VERIFY'),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const fields = fc.dictionary(
      fc.constantFrom(
        'KeyId',
        'Message',
        'SigningAlgorithm',
        'MessageType',
        'Signature',
        'Policy',
        'Tags',
        'Limit',
        'Marker',
        'AliasName',
        'TargetKeyId',
        'Plaintext',
        'CiphertextBlob',
        'KeySpec',
        'KeyUsage',
        'PendingWindowInDays',
        'NumberOfBytes',
        'EncryptionContext',
      ),
      value,
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ops), fields, fc.boolean(), async (op, input, asNode) => {
        // Never schedule deletion or replace the policy of the shared key: other runs rely on it.
        if (['ScheduleKeyDeletion', 'PutKeyPolicy', 'DisableKey'].includes(op) && input.KeyId === keyId) return;
        const r = await h.call(asNode ? h.node() : h.admin(), op, input);
        expect([200, 400, 412]).toContain(r.status);
        if (r.status !== 200) expect(typeof r.body.__type).toBe('string');
      }),
      { numRuns: 150 },
    );
  });

  it('signs any 1-4096 byte message so that node:crypto verifies it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4096 }), async (msg) => {
        const r = await h.call(h.node(), 'Sign', {
          KeyId: keyId,
          Message: b64(msg),
          SigningAlgorithm: 'ED25519_SHA_512',
        });
        const sig = Buffer.from(String(r.body.Signature), 'base64');
        expect(verify(null, msg, { key: spki, format: 'der', type: 'spki' }, sig)).toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it('answers a failed store write as KMSInternalException (500, which the SDK retries)', async () => {
    // A directory where the store writes its temporary file makes the write fail.
    const before = (await h.call(h.admin(), 'ListKeys', { Limit: 1000 })).body.Keys;
    await mkdir(join(h.dataDir, 'keys.json.tmp'));
    const r = await h.call(h.admin(), 'CreateKey', {});
    expect(r.status).toBe(500);
    expect(r.body).toEqual({ __type: 'KMSInternalException', message: 'The request could not be processed.' });
    // The key that could not be stored is not kept either.
    expect((await h.call(h.admin(), 'ListKeys', { Limit: 1000 })).body.Keys).toEqual(before);
    const d = createHash('sha512').update('still signs').digest();
    const s = await signAs(h, keyId, d, 'DIGEST');
    expect(s.status).toBe(200);
  });
});

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODE_SEALING_ACTIONS } from '../src/node-sealing.ts';
import { b64, type Harness, harness } from './helpers.ts';

describe('kms-emulator: a node principal seals and unseals with its account symmetric key', () => {
  let h: Harness;
  let keyId: string;
  let signKey: string;

  beforeEach(async () => {
    h = await harness();
    const r = await h.call(h.admin(), 'CreateKey', { Description: 'share sealing' });
    keyId = String((r.body.KeyMetadata as Record<string, unknown>).KeyId);
    const s = await h.call(h.admin(), 'CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' });
    signKey = String((s.body.KeyMetadata as Record<string, unknown>).KeyId);
  });
  afterEach(() => h.close());

  it('the default policy of a symmetric key grants the node GenerateDataKey, Decrypt and DescribeKey only', async () => {
    const policy = JSON.parse(String((await h.call(h.admin(), 'GetKeyPolicy', { KeyId: keyId })).body.Policy));
    const sealing = policy.Statement.find((s: { Sid: string }) => s.Sid.includes('seal'));
    expect(sealing).toMatchObject({ Effect: 'Allow', Principal: { AWS: [h.node().arn] } });
    expect(sealing.Action).toEqual([...NODE_SEALING_ACTIONS]);
    const signPolicy = String((await h.call(h.admin(), 'GetKeyPolicy', { KeyId: signKey })).body.Policy);
    expect(signPolicy).not.toContain('kms:Decrypt');
    expect(signPolicy).not.toContain('kms:GenerateDataKey');

    const ctx = { purpose: 'frost-share', node: 'node-a' };
    const g = await h.call(h.node(), 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: ctx });
    expect(g.status).toBe(200);
    const d = await h.call(h.node(), 'Decrypt', {
      CiphertextBlob: g.body.CiphertextBlob,
      EncryptionContext: ctx,
      KeyId: keyId,
    });
    expect(d.body.Plaintext).toBe(g.body.Plaintext);
    expect((await h.call(h.node(), 'DescribeKey', { KeyId: keyId })).status).toBe(200);

    // Not Encrypt of arbitrary data, not management, not another account's node, not a signing key.
    const denied: [number, string, Record<string, unknown>][] = [
      [0, 'Encrypt', { KeyId: keyId, Plaintext: b64('x') }],
      [0, 'DisableKey', { KeyId: keyId }],
      [0, 'PutKeyPolicy', { KeyId: keyId, PolicyName: 'default', Policy: '{}' }],
      [0, 'CreateKey', {}],
      [1, 'GenerateDataKey', { KeyId: `arn:aws:kms:us-east-1:111111111111:key/${keyId}`, KeySpec: 'AES_256' }],
      [1, 'Decrypt', { CiphertextBlob: g.body.CiphertextBlob, EncryptionContext: ctx }],
    ];
    for (const [account, op, input] of denied) {
      const r = await h.call(h.node(account), op, input);
      expect(r.body.__type, `${op} by node ${account}`).toBe('AccessDeniedException');
    }
    // A signing key: the node can sign with it, and still not decrypt (its policy has no sealing grant).
    expect((await h.call(h.node(), 'GenerateDataKey', { KeyId: signKey, KeySpec: 'AES_256' })).body.__type).toBe(
      'AccessDeniedException',
    );
  });

  it('a key created with an explicit policy gets no added grant', async () => {
    const own = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: h.admin().arn }, Action: 'kms:*', Resource: '*' }],
    });
    const r = await h.call(h.admin(), 'CreateKey', { Policy: own });
    const id = String((r.body.KeyMetadata as Record<string, unknown>).KeyId);
    expect((await h.call(h.admin(), 'GetKeyPolicy', { KeyId: id })).body.Policy).toBe(own);
    expect((await h.call(h.node(), 'GenerateDataKey', { KeyId: id, KeySpec: 'AES_256' })).body.__type).toBe(
      'AccessDeniedException',
    );
  });
});

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { b64, type Harness, harness } from './helpers.ts';

const SIGN = (KeyId: string) => ({ KeyId, Message: b64('hash'), SigningAlgorithm: 'ED25519_SHA_512' });

describe('kms-emulator key management, aliases and key policies', () => {
  let h: Harness;
  let keyId: string;
  let arn: string;

  beforeEach(async () => {
    h = await harness();
    const r = await h.call(h.admin(), 'CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' });
    const md = r.body.KeyMetadata as Record<string, string>;
    keyId = md.KeyId!;
    arn = md.Arn!;
  });
  afterEach(() => h.close());

  it('lets a node principal only Sign, Verify, GetPublicKey and DescribeKey', async () => {
    expect((await h.call(h.node(), 'Sign', SIGN(keyId))).status).toBe(200);
    expect((await h.call(h.node(), 'DescribeKey', { KeyId: keyId })).status).toBe(200);
    const denied: [string, Record<string, unknown>][] = [
      ['CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }],
      ['ScheduleKeyDeletion', { KeyId: keyId }],
      ['CancelKeyDeletion', { KeyId: keyId }],
      ['PutKeyPolicy', { KeyId: keyId, Policy: '{}' }],
      ['GetKeyPolicy', { KeyId: keyId }],
      ['DisableKey', { KeyId: keyId }],
      ['EnableKey', { KeyId: keyId }],
      ['TagResource', { KeyId: keyId, Tags: [{ TagKey: 'a', TagValue: 'b' }] }],
      ['CreateAlias', { AliasName: 'alias/mine', TargetKeyId: keyId }],
      ['ListKeys', {}],
      ['ListAliases', {}],
    ];
    for (const [op, input] of denied) {
      const r = await h.call(h.node(), op, input);
      expect(r.status, op).toBe(400);
      expect(r.body.__type, op).toBe('AccessDeniedException');
      expect(String(r.body.message)).toContain(
        `User: arn:aws:iam::111111111111:role/cosigner-node is not authorized to perform: kms:${op}`,
      );
    }
    expect((await h.call(h.node(), 'DescribeKey', { KeyId: keyId })).body.KeyMetadata).toMatchObject({
      KeyState: 'Enabled',
    });
  });

  it('the default key policy refuses Sign to the admin that created the key (separation of duties)', async () => {
    const denied = await h.call(h.admin(), 'Sign', SIGN(keyId));
    expect(denied.status).toBe(400);
    expect(denied.body.__type).toBe('AccessDeniedException');
    const policy = JSON.parse(String((await h.call(h.admin(), 'GetKeyPolicy', { KeyId: keyId })).body.Policy));
    expect(JSON.stringify(policy)).not.toContain('kms:*');
    // The admin still manages it and reads its public key; the node signs.
    expect((await h.call(h.admin(), 'GetPublicKey', { KeyId: keyId })).status).toBe(200);
    expect((await h.call(h.admin(), 'DisableKey', { KeyId: keyId })).status).toBe(200);
    expect((await h.call(h.admin(), 'EnableKey', { KeyId: keyId })).status).toBe(200);
    expect((await h.call(h.node(), 'Sign', SIGN(keyId))).status).toBe(200);
  });

  it("refuses another account's key: AccessDenied by ARN, NotFound by bare id (ids resolve in the caller's account)", async () => {
    for (const who of [h.admin(1), h.node(1)]) {
      const r = await h.call(who, 'Sign', SIGN(arn));
      expect(r.body.__type).toBe('AccessDeniedException');
      expect(String(r.body.message)).toContain(`on resource: ${arn}`);
      const g = await h.call(who, 'GetPublicKey', { KeyId: arn });
      expect(g.body.__type).toBe('AccessDeniedException');
    }
    const bare = await h.call(h.admin(1), 'DescribeKey', { KeyId: keyId });
    expect(bare.body).toEqual({
      __type: 'NotFoundException',
      message: `Key 'arn:aws:kms:us-east-1:222222222222:key/${keyId}' does not exist`,
    });
    const other = await h.call(h.admin(), 'ScheduleKeyDeletion', {
      KeyId: arn.replace('111111111111', '222222222222'),
    });
    expect(other.body.__type).toBe('NotFoundException');
    const region = await h.call(h.admin(), 'DescribeKey', { KeyId: keyId }, { region: 'eu-west-1' });
    expect(region.body.__type).toBe('NotFoundException');
  });

  it('grants another account through the key policy, still bounded by that principal identity policy', async () => {
    const policy = JSON.parse(String((await h.call(h.admin(), 'GetKeyPolicy', { KeyId: keyId })).body.Policy));
    policy.Statement.push({
      Effect: 'Allow',
      Principal: { AWS: h.node(1).arn },
      Action: ['kms:Sign', 'kms:DisableKey'],
      Resource: '*',
    });
    expect((await h.call(h.admin(), 'PutKeyPolicy', { KeyId: keyId, Policy: JSON.stringify(policy) })).status).toBe(
      200,
    );
    expect((await h.call(h.node(1), 'Sign', SIGN(arn))).status).toBe(200);
    // The key policy allows DisableKey, but a node role's own identity policy does not.
    expect((await h.call(h.node(1), 'DisableKey', { KeyId: arn })).body.__type).toBe('AccessDeniedException');
    expect((await h.call(h.node(2), 'Sign', SIGN(arn))).body.__type).toBe('AccessDeniedException');
  });

  it('evaluates account-root delegation, * principals, wildcards and explicit Deny', async () => {
    const put = (Statement: unknown[], bypass = true) =>
      h.call(h.admin(), 'PutKeyPolicy', {
        KeyId: keyId,
        Policy: JSON.stringify({ Version: '2012-10-17', Statement }),
        BypassPolicyLockoutSafetyCheck: bypass,
      });
    // Root delegation: the node's identity policy (sign only) then decides.
    expect(
      (
        await put([
          { Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::111111111111:root' }, Action: 'kms:*', Resource: '*' },
        ])
      ).status,
    ).toBe(200);
    expect((await h.call(h.node(), 'Sign', SIGN(keyId))).status).toBe(200);
    expect((await h.call(h.node(), 'DisableKey', { KeyId: keyId })).body.__type).toBe('AccessDeniedException');
    expect((await h.call(h.admin(), 'DisableKey', { KeyId: keyId })).status).toBe(200);
    expect((await h.call(h.admin(), 'EnableKey', { KeyId: keyId })).status).toBe(200);
    // An explicit Deny beats every Allow.
    await put([
      { Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*' },
      { Effect: 'Deny', Principal: { AWS: [h.node().arn] }, Action: 'kms:Si?n', Resource: '*' },
    ]);
    expect((await h.call(h.node(), 'Sign', SIGN(keyId))).body.__type).toBe('AccessDeniedException');
    expect((await h.call(h.node(), 'GetPublicKey', { KeyId: keyId })).status).toBe(200);
    // "*" reaches other accounts too, bounded by their identity policy.
    expect((await h.call(h.admin(2), 'Sign', SIGN(arn))).status).toBe(200);
    // A bare account id is the account root.
    await put([{ Effect: 'Allow', Principal: { AWS: ['111111111111'] }, Action: ['kms:Get*', 'kms:PutKeyPolicy'] }]);
    expect((await h.call(h.node(), 'GetPublicKey', { KeyId: keyId })).status).toBe(200);
    expect((await h.call(h.node(), 'Sign', SIGN(keyId))).body.__type).toBe('AccessDeniedException');
  });

  it('keeps the lockout safety check and refuses malformed or unsupported policy documents', async () => {
    const lockout = await h.call(h.admin(), 'PutKeyPolicy', {
      KeyId: keyId,
      Policy: JSON.stringify({ Statement: { Effect: 'Allow', Principal: { AWS: h.node().arn }, Action: 'kms:Sign' } }),
    });
    expect(lockout.body).toEqual({
      __type: 'MalformedPolicyDocumentException',
      message: 'The new key policy will not allow you to update the key policy in the future.',
    });
    const bad = [
      'not json',
      '[]',
      '{"Version":"2020-01-01","Statement":[]}',
      '{"Statement":[]}',
      '{"Statement":["x"]}',
      '{"Statement":{"Effect":"Maybe","Principal":"*","Action":"kms:*"}}',
      '{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}}',
      '{"Statement":{"Effect":"Allow","Principal":"*","Action":[]}}',
      '{"Statement":{"Effect":"Allow","Action":"kms:*"}}',
      '{"Statement":{"Effect":"Allow","Principal":{"Federated":"x"},"Action":"kms:*"}}',
      '{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Condition":{}}}',
      '{"Statement":{"Effect":"Allow","Principal":"*","NotAction":"kms:Sign","Action":"kms:*"}}',
    ];
    for (const Policy of bad) {
      const r = await h.call(h.admin(), 'PutKeyPolicy', { KeyId: keyId, Policy, BypassPolicyLockoutSafetyCheck: true });
      expect(r.body.__type, Policy).toBe('MalformedPolicyDocumentException');
    }
    const service =
      '{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*","Service":"cloudtrail.amazonaws.com"},"Action":"kms:*"}]}';
    expect((await h.call(h.admin(), 'PutKeyPolicy', { KeyId: keyId, Policy: service })).status).toBe(200);
    const name = await h.call(h.admin(), 'PutKeyPolicy', { KeyId: keyId, Policy: service, PolicyName: 'other' });
    expect(name.body.__type).toBe('NotFoundException');
    const get = await h.call(h.admin(), 'GetKeyPolicy', { KeyId: keyId, PolicyName: 'other' });
    expect(get.body).toEqual({ __type: 'NotFoundException', message: 'No such policy exists' });
    const ok = await h.call(h.admin(), 'GetKeyPolicy', { KeyId: keyId });
    expect(ok.body).toEqual({ Policy: service, PolicyName: 'default' });
  });

  it('creates a key with a caller-supplied policy, checked for lockout', async () => {
    const own = JSON.stringify({
      Statement: [{ Effect: 'Allow', Principal: { AWS: h.admin().arn }, Action: 'kms:*' }],
    });
    const r = await h.call(h.admin(), 'CreateKey', {
      KeySpec: 'ECC_NIST_EDWARDS25519',
      KeyUsage: 'SIGN_VERIFY',
      Policy: own,
    });
    const id = (r.body.KeyMetadata as Record<string, string>).KeyId!;
    expect((await h.call(h.admin(), 'GetKeyPolicy', { KeyId: id })).body.Policy).toBe(own);
    expect((await h.call(h.node(), 'Sign', SIGN(id))).body.__type).toBe('AccessDeniedException');
    const locked = JSON.stringify({
      Statement: [{ Effect: 'Allow', Principal: { AWS: h.node().arn }, Action: 'kms:Sign' }],
    });
    const bad = await h.call(h.admin(), 'CreateKey', {
      KeySpec: 'ECC_NIST_EDWARDS25519',
      KeyUsage: 'SIGN_VERIFY',
      Policy: locked,
    });
    expect(bad.body.__type).toBe('MalformedPolicyDocumentException');
  });

  it('answers CreateKey errors as AWS does', async () => {
    const cases: [Record<string, unknown>, string, RegExp?][] = [
      [{ KeySpec: 'ECC_NIST_EDWARDS25519' }, 'ValidationException', /KeyUsage ENCRYPT_DECRYPT is not compatible/],
      [{ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'SIGN_VERIFY' }, 'ValidationException'],
      [{ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }, 'UnsupportedOperationException'],
      [{ CustomerMasterKeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }, 'UnsupportedOperationException'],
      [{ KeySpec: 'ECC_NIST_EDWARDS25519', CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT' }, 'ValidationException'],
      [{ KeySpec: 'ED448' }, 'ValidationException', /Member must satisfy enum value set/],
      [{ Origin: 'EXTERNAL' }, 'UnsupportedOperationException'],
      [{ MultiRegion: true }, 'UnsupportedOperationException'],
      [{ MultiRegion: 'yes' }, 'SerializationException'],
      [{ Tags: [{ TagKey: 'aws:x', TagValue: '' }] }, 'TagException'],
      [{ Tags: [{ TagKey: '', TagValue: '' }] }, 'ValidationException', /at 'tagKey'/],
      [{ Tags: 'x' }, 'SerializationException'],
      [{ Tags: ['x'] }, 'SerializationException'],
      [{ Description: 'x'.repeat(8193) }, 'ValidationException'],
    ];
    for (const [input, type, re] of cases) {
      const r = await h.call(h.admin(), 'CreateKey', input);
      expect(r.body.__type, JSON.stringify(input).slice(0, 60)).toBe(type);
      if (re) expect(String(r.body.message)).toMatch(re);
    }
  });

  it('creates, resolves, lists and pages aliases', async () => {
    for (const name of ['alias/b-node', 'alias/a-node']) {
      const r = await h.call(h.admin(), 'CreateAlias', { AliasName: name, TargetKeyId: keyId });
      expect(r.status).toBe(200);
      expect(r.raw).toBe('');
    }
    expect((await h.call(h.node(), 'Sign', SIGN('alias/a-node'))).status).toBe(200);
    const aliasArn = 'arn:aws:kms:us-east-1:111111111111:alias/a-node';
    expect((await h.call(h.node(), 'GetPublicKey', { KeyId: aliasArn })).body.KeyId).toBe(arn);
    const missing = await h.call(h.node(), 'DescribeKey', { KeyId: 'alias/nope' });
    expect(missing.body).toEqual({
      __type: 'NotFoundException',
      message: 'Alias arn:aws:kms:us-east-1:111111111111:alias/nope is not found.',
    });
    // Key-management operations take a key id or ARN, never an alias.
    expect((await h.call(h.admin(), 'DisableKey', { KeyId: 'alias/a-node' })).body.__type).toBe('NotFoundException');
    expect((await h.call(h.admin(), 'DisableKey', { KeyId: 'not-a-key' })).body.__type).toBe('NotFoundException');
    const dup = await h.call(h.admin(), 'CreateAlias', { AliasName: 'alias/a-node', TargetKeyId: keyId });
    expect(dup.body).toEqual({
      __type: 'AlreadyExistsException',
      message: `An alias with the name ${aliasArn} already exists`,
    });
    for (const AliasName of ['node', 'alias/aws/x', 'alias/sp ace']) {
      const r = await h.call(h.admin(), 'CreateAlias', { AliasName, TargetKeyId: keyId });
      expect(r.body.__type, AliasName).toBe('InvalidAliasNameException');
    }
    expect((await h.call(h.admin(1), 'CreateAlias', { AliasName: 'alias/x', TargetKeyId: arn })).body.__type).toBe(
      'AccessDeniedException',
    );
    const page1 = await h.call(h.admin(), 'ListAliases', { Limit: 1 });
    expect(page1.body).toMatchObject({ Truncated: true, NextMarker: 'alias/a-node' });
    expect(page1.body.Aliases).toEqual([
      {
        AliasName: 'alias/a-node',
        AliasArn: aliasArn,
        TargetKeyId: keyId,
        CreationDate: h.clock.now / 1000,
        LastUpdatedDate: h.clock.now / 1000,
      },
    ]);
    const page2 = await h.call(h.admin(), 'ListAliases', { Limit: 1, Marker: 'alias/a-node' });
    expect(page2.body).toMatchObject({ Truncated: false, Aliases: [{ AliasName: 'alias/b-node' }] });
    expect(page2.body.NextMarker).toBeUndefined();
    const bad = await h.call(h.admin(), 'ListAliases', { Marker: 'zzz' });
    expect(bad.body.__type).toBe('InvalidMarkerException');
    const other = await h.call(h.admin(), 'CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' });
    const otherId = (other.body.KeyMetadata as Record<string, string>).KeyId!;
    expect((await h.call(h.admin(), 'ListAliases', { KeyId: otherId })).body.Aliases).toEqual([]);
    expect(((await h.call(h.admin(), 'ListAliases', { KeyId: keyId })).body.Aliases as unknown[]).length).toBe(2);
    expect((await h.call(h.admin(1), 'ListAliases', {})).body.Aliases).toEqual([]);
    await h.call(h.admin(), 'ScheduleKeyDeletion', { KeyId: otherId });
    const pending = await h.call(h.admin(), 'CreateAlias', { AliasName: 'alias/late', TargetKeyId: otherId });
    expect(pending.body.__type).toBe('KMSInvalidStateException');
  });

  it('lists and pages keys of the caller account and region only', async () => {
    const second = await h.call(h.admin(), 'CreateKey', {});
    const id2 = (second.body.KeyMetadata as Record<string, string>).KeyId!;
    const all = await h.call(h.admin(), 'ListKeys', {});
    expect(all.body).toEqual({
      Keys: [
        { KeyId: keyId, KeyArn: arn },
        { KeyId: id2, KeyArn: `arn:aws:kms:us-east-1:111111111111:key/${id2}` },
      ].sort((a, b) => (a.KeyId < b.KeyId ? -1 : 1)),
      Truncated: false,
    });
    const p1 = await h.call(h.admin(), 'ListKeys', { Limit: 1 });
    expect(p1.body.Truncated).toBe(true);
    const p2 = await h.call(h.admin(), 'ListKeys', { Limit: 1, Marker: p1.body.NextMarker });
    expect(p2.body.Truncated).toBe(false);
    expect([...(p1.body.Keys as unknown[]), ...(p2.body.Keys as unknown[])]).toHaveLength(2);
    expect((await h.call(h.admin(), 'ListKeys', { Limit: 0 })).body.__type).toBe('ValidationException');
    expect((await h.call(h.admin(), 'ListKeys', { Limit: 1.5 })).body.__type).toBe('SerializationException');
    expect((await h.call(h.admin(), 'ListKeys', { Limit: 1001 })).body.__type).toBe('ValidationException');
    expect((await h.call(h.admin(1), 'ListKeys', {})).body.Keys).toEqual([]);
    expect((await h.call(h.admin(), 'ListKeys', {}, { region: 'eu-west-1' })).body.Keys).toEqual([]);
  });

  it('tags keys and lists the tags', async () => {
    const t = await h.call(h.admin(), 'TagResource', {
      KeyId: keyId,
      Tags: [
        { TagKey: 'node', TagValue: 'a' },
        { TagKey: 'env', TagValue: 'dev' },
      ],
    });
    expect(t.status).toBe(200);
    await h.call(h.admin(), 'TagResource', { KeyId: keyId, Tags: [{ TagKey: 'env', TagValue: 'test' }] });
    const l = await h.call(h.admin(), 'ListResourceTags', { KeyId: keyId });
    expect(l.body).toEqual({
      Tags: [
        { TagKey: 'node', TagValue: 'a' },
        { TagKey: 'env', TagValue: 'test' },
      ],
      Truncated: false,
    });
    expect((await h.call(h.admin(), 'TagResource', { KeyId: keyId })).body.__type).toBe('ValidationException');
    const reserved = await h.call(h.admin(), 'TagResource', {
      KeyId: keyId,
      Tags: [{ TagKey: 'AWS:x', TagValue: '' }],
    });
    expect(reserved.body.__type).toBe('TagException');
  });
});

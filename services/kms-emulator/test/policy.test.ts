import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateAccounts } from '../src/accounts.ts';
import { ed25519FromSeed, ed25519Spki, signPrehashed, signPure, verifyPrehashed, verifyPure } from '../src/ed25519.ts';
import { actionMatches, type Caller, defaultPolicy, isAuthorized, parsePolicy } from '../src/policy.ts';

describe('key policy evaluation', () => {
  it('matches IAM action wildcards case-insensitively', () => {
    expect(actionMatches('kms:*', 'kms:Sign')).toBe(true);
    expect(actionMatches('*', 'kms:Sign')).toBe(true);
    expect(actionMatches('kms:sign', 'kms:Sign')).toBe(true);
    expect(actionMatches('kms:Get*', 'kms:GetPublicKey')).toBe(true);
    expect(actionMatches('kms:Get*', 'kms:Sign')).toBe(false);
    expect(actionMatches('kms:Si?n', 'kms:Sign')).toBe(true);
    expect(actionMatches('kms:Si?n', 'kms:Siign')).toBe(false);
    expect(actionMatches('kms:Sign', 'kms:SignX')).toBe(false);
  });

  it('keeps matching the same way once more patterns were seen than it keeps compiled', () => {
    // Past the bound the compiled patterns are dropped and compiled again; the answers must not change.
    for (let i = 0; i < 1500; i++)
      expect(actionMatches(`kms:Get${'?'.repeat(i % 40)}Key${i}*`, 'kms:Sign')).toBe(false);
    expect(actionMatches('kms:Si?n', 'kms:Sign')).toBe(true);
    expect(actionMatches('kms:Si?n', 'kms:Siign')).toBe(false);
    expect(actionMatches('kms:*Key', 'kms:Sign')).toBe(false);
    expect(actionMatches('kms:*Key', 'kms:DisableKey')).toBe(true);
  });

  it('gives the least-privilege default policy: the admin manages a signing key and cannot sign, the node only signs and reads it', () => {
    const { accounts } = generateAccounts(2);
    const a = accounts[0]!;
    const policy = parsePolicy(defaultPolicy(a));
    const caller = (acct: typeof a, role: 'admin' | 'node'): Caller => {
      const p = acct.principals.find((x) => x.role === role)!;
      return { accountId: acct.accountId, arn: p.arn, role, accessKeyId: p.accessKeyId };
    };
    for (const action of [
      'kms:CreateAlias',
      'kms:ScheduleKeyDeletion',
      'kms:CancelKeyDeletion',
      'kms:PutKeyPolicy',
      'kms:GetKeyPolicy',
      'kms:DisableKey',
      'kms:EnableKey',
      'kms:TagResource',
      'kms:DescribeKey',
      'kms:GetPublicKey',
    ]) {
      expect(isAuthorized(policy, caller(a, 'admin'), a.accountId, action), action).toBe(true);
    }
    // Separation of duties (docs/operations/aws-kms.md): the administrator can disable or delete the key but
    // cannot make it sign, nor get a grant that would.
    for (const action of ['kms:Sign', 'kms:Verify', 'kms:CreateGrant', 'kms:Decrypt']) {
      expect(isAuthorized(policy, caller(a, 'admin'), a.accountId, action), action).toBe(false);
    }
    expect(defaultPolicy(a)).not.toContain('kms:*');
    for (const action of ['kms:Sign', 'kms:Verify', 'kms:GetPublicKey', 'kms:DescribeKey']) {
      expect(isAuthorized(policy, caller(a, 'node'), a.accountId, action)).toBe(true);
    }
    for (const action of ['kms:ScheduleKeyDeletion', 'kms:PutKeyPolicy', 'kms:DisableKey', 'kms:Decrypt']) {
      expect(isAuthorized(policy, caller(a, 'node'), a.accountId, action)).toBe(false);
    }
    expect(isAuthorized(policy, caller(accounts[1]!, 'admin'), a.accountId, 'kms:Sign')).toBe(false);
    // An account without node principals gets an admin-only policy.
    const adminOnly = { ...a, principals: a.principals.filter((p) => p.role === 'admin') };
    expect(parsePolicy(defaultPolicy(adminOnly))).toHaveLength(1);
    // A symmetric (ENCRYPT_DECRYPT) key is data protection, not a signer: its admin may also use it.
    const sym = parsePolicy(defaultPolicy(a, 'ENCRYPT_DECRYPT'));
    for (const action of ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey']) {
      expect(isAuthorized(sym, caller(a, 'admin'), a.accountId, action), action).toBe(true);
    }
    expect(isAuthorized(sym, caller(a, 'admin'), a.accountId, 'kms:Sign')).toBe(false);
  });
});

describe('Ed25519 primitives', () => {
  // RFC 8032 section 7.1, TEST 1 (pure Ed25519, empty message).
  it('matches RFC 8032 7.1 TEST 1', () => {
    const key = ed25519FromSeed(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
    const spki = ed25519Spki(key);
    expect(spki.subarray(12).toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    const sig = signPure(key, Buffer.alloc(0));
    expect(sig.toString('hex')).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    expect(verifyPure(spki, Buffer.alloc(0), sig)).toBe(true);
    expect(verifyPure(spki, Buffer.alloc(0), sig.subarray(1))).toBe(false);
  });

  // RFC 8032 section 7.3, TEST abc (Ed25519ph): KMS DIGEST mode takes SHA-512("abc") as its message.
  it('matches RFC 8032 7.3 Ed25519ph over the SHA-512 digest', () => {
    const key = ed25519FromSeed(Buffer.from('833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42', 'hex'));
    const spki = ed25519Spki(key);
    expect(spki.subarray(12).toString('hex')).toBe('ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf');
    const digest = createHash('sha512').update('abc').digest();
    const sig = signPrehashed(key, digest);
    expect(sig.toString('hex')).toBe(
      '98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406',
    );
    expect(verifyPrehashed(spki, digest, sig)).toBe(true);
    expect(verifyPrehashed(spki, Buffer.alloc(64), sig)).toBe(false);
    expect(verifyPrehashed(spki, digest, sig.subarray(2))).toBe(false);
    // Well-formed but invalid encodings (R not a point, S >= L) are just false.
    expect(verifyPrehashed(spki, digest, Buffer.alloc(64, 0xff))).toBe(false);
    expect(verifyPrehashed(spki, digest.subarray(1), sig)).toBe(false);
  });
});

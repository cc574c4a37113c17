import { randomBytes, verify } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CancelKeyDeletionCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  GetKeyPolicyCommand,
  GetPublicKeyCommand,
  KMSClient,
  PutKeyPolicyCommand,
  ScheduleKeyDeletionCommand,
  SignCommand,
} from '@aws-sdk/client-kms';
import { REPO_ROOT, type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * docs/operations/aws-kms.md shows the policies an operator pastes into AWS. Every JSON block there must parse,
 * carry an `Id` this test knows, and behave as the page says: the node key policy is loaded, unchanged but for
 * the account id, into a real `cosigner kms-emulator` process and exercised with the real @aws-sdk/client-kms.
 */
const DOC = join(REPO_ROOT, 'docs/operations/aws-kms.md');
const DOC_ACCOUNT = '111122223333';
const OTHER_ACCOUNT = '444455556666';
const REGION = 'eu-west-1';

interface Statement {
  Sid?: string;
  Effect: string;
  Principal?: { AWS: string | string[] };
  Action: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, string>>;
}
interface PolicyDoc {
  Version: string;
  Id: string;
  Statement: Statement[];
}

function jsonBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

const list = (x: string | string[] | undefined): string[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

interface Principal {
  name: string;
  role: 'admin' | 'node';
  arn: string;
  accessKeyId: string;
  secretAccessKey: string;
}

function principal(accountId: string, name: string, role: 'admin' | 'node'): Principal {
  return {
    name,
    role,
    arn: `arn:aws:iam::${accountId}:role/${name}`,
    accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64'),
  };
}

async function fails(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).name;
  }
  throw new Error('the call succeeded');
}

describe('docs/operations/aws-kms.md policies', () => {
  let docs: Map<string, PolicyDoc>;
  let dir: string;
  let proc: RunningProcess;
  const accounts = [DOC_ACCOUNT, OTHER_ACCOUNT].map((accountId) => ({
    accountId,
    admin: principal(accountId, 'cosigner-key-admin', 'admin'),
    node: principal(accountId, 'cosigner-node', 'node'),
  }));
  const client = (p: Principal) =>
    new KMSClient({
      endpoint: proc.url,
      region: REGION,
      credentials: { accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey },
      maxAttempts: 1,
    });
  const policyFor = (accountId: string): string =>
    JSON.stringify(docs.get('cosigner-node-key')).replaceAll(DOC_ACCOUNT, accountId);

  beforeAll(async () => {
    const blocks = jsonBlocks(await readFile(DOC, 'utf8'));
    docs = new Map(
      blocks.map((b) => {
        const d = JSON.parse(b) as PolicyDoc;
        return [d.Id, d];
      }),
    );
    dir = await tempDir('aws-kms-doc-');
    const accountsFile = join(dir, 'accounts.json');
    await writeFile(
      accountsFile,
      JSON.stringify({
        accounts: accounts.map((a, i) => ({
          name: `operator-${i}`,
          accountId: a.accountId,
          region: REGION,
          principals: [a.admin, a.node],
        })),
      }),
      { mode: 0o600 },
    );
    proc = await startCosignerProcess({
      args: ['kms-emulator', '--data-dir', join(dir, 'kms'), '--config', accountsFile],
      env: { NODE_ENV: 'development' },
    });
  });
  afterAll(async () => {
    await proc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('every JSON block parses and is one of the documents this test checks', async () => {
    const blocks = jsonBlocks(await readFile(DOC, 'utf8'));
    expect(blocks.length).toBe(4);
    for (const b of blocks) {
      const d = JSON.parse(b) as PolicyDoc;
      expect(d.Version).toBe('2012-10-17');
      expect([
        'cosigner-node-key',
        'cosigner-node-key-hardened',
        'cosigner-node-identity',
        'cosigner-key-admin-trust',
      ]).toContain(d.Id);
    }
    expect(docs.size).toBe(blocks.length);
  });

  it('the key policy names only the two roles of the key account: never a root, *, or another account', () => {
    const policy = docs.get('cosigner-node-key')!;
    const principals = policy.Statement.flatMap((s) => list(s.Principal?.AWS));
    expect(new Set(principals)).toEqual(
      new Set([
        `arn:aws:iam::${DOC_ACCOUNT}:role/cosigner-key-admin`,
        `arn:aws:iam::${DOC_ACCOUNT}:role/cosigner-node`,
      ]),
    );
    for (const s of policy.Statement) expect(s.Effect).toBe('Allow');
    const nodeActions = policy.Statement.filter((s) =>
      list(s.Principal?.AWS)[0]?.endsWith('role/cosigner-node'),
    ).flatMap((s) => list(s.Action));
    expect(new Set(nodeActions)).toEqual(new Set(['kms:Sign', 'kms:GetPublicKey', 'kms:DescribeKey']));
    const adminActions = policy.Statement.filter((s) =>
      list(s.Principal?.AWS)[0]?.endsWith('role/cosigner-key-admin'),
    ).flatMap((s) => list(s.Action));
    expect(adminActions).toEqual(expect.arrayContaining(['kms:PutKeyPolicy', 'kms:ScheduleKeyDeletion']));
    expect(adminActions.some((a) => a === 'kms:*' || /sign|decrypt|grant/i.test(a))).toBe(false);
  });

  it('node role: signs with its own key and reads its public key; may not delete, re-policy or disable it', async () => {
    const [a] = accounts;
    const admin = client(a!.admin);
    const node = client(a!.node);
    const created = await admin.send(
      new CreateKeyCommand({
        KeySpec: 'ECC_NIST_EDWARDS25519',
        KeyUsage: 'SIGN_VERIFY',
        Policy: policyFor(a!.accountId),
      }),
    );
    const keyId = created.KeyMetadata!.Arn!;
    const pub = await node.send(new GetPublicKeyCommand({ KeyId: keyId }));
    const hash = randomBytes(32);
    const signed = await node.send(
      new SignCommand({ KeyId: keyId, Message: hash, MessageType: 'RAW', SigningAlgorithm: 'ED25519_SHA_512' }),
    );
    const spki = { key: Buffer.from(pub.PublicKey!), format: 'der' as const, type: 'spki' as const };
    expect(verify(null, hash, spki, Buffer.from(signed.Signature!))).toBe(true);
    expect((await node.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyState).toBe('Enabled');

    expect(await fails(node.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 })))).toBe(
      'AccessDeniedException',
    );
    expect(await fails(node.send(new PutKeyPolicyCommand({ KeyId: keyId, Policy: policyFor(a!.accountId) })))).toBe(
      'AccessDeniedException',
    );
    expect(await fails(node.send(new DisableKeyCommand({ KeyId: keyId })))).toBe('AccessDeniedException');
    expect(await fails(node.send(new GetKeyPolicyCommand({ KeyId: keyId })))).toBe('AccessDeniedException');
    expect(
      await fails(node.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }))),
    ).toBe('AccessDeniedException');
    // Still usable: nothing the node tried changed the key.
    expect((await node.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyState).toBe('Enabled');
  });

  it('admin role: manages the key (policy, disable, deletion) and cannot sign with it', async () => {
    const [a] = accounts;
    const admin = client(a!.admin);
    const created = await admin.send(
      new CreateKeyCommand({
        KeySpec: 'ECC_NIST_EDWARDS25519',
        KeyUsage: 'SIGN_VERIFY',
        Policy: policyFor(a!.accountId),
      }),
    );
    const keyId = created.KeyMetadata!.Arn!;
    expect(
      await fails(
        admin.send(
          new SignCommand({
            KeyId: keyId,
            Message: randomBytes(32),
            MessageType: 'RAW',
            SigningAlgorithm: 'ED25519_SHA_512',
          }),
        ),
      ),
    ).toBe('AccessDeniedException');
    expect(JSON.parse((await admin.send(new GetKeyPolicyCommand({ KeyId: keyId }))).Policy!)).toEqual(
      JSON.parse(policyFor(a!.accountId)),
    );
    await admin.send(new PutKeyPolicyCommand({ KeyId: keyId, Policy: policyFor(a!.accountId) }));
    await admin.send(new DisableKeyCommand({ KeyId: keyId }));
    expect((await admin.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyState).toBe('Disabled');
    await admin.send(new EnableKeyCommand({ KeyId: keyId }));
    const scheduled = await admin.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    expect(scheduled.KeyState).toBe('PendingDeletion');
    await admin.send(new CancelKeyDeletionCommand({ KeyId: keyId }));
  });

  it("neither role of one account can use or manage the other account's key", async () => {
    const [a, b] = accounts;
    const otherKey = (
      await client(b!.admin).send(
        new CreateKeyCommand({
          KeySpec: 'ECC_NIST_EDWARDS25519',
          KeyUsage: 'SIGN_VERIFY',
          Policy: policyFor(b!.accountId),
        }),
      )
    ).KeyMetadata!.Arn!;
    expect(otherKey).toContain(`:${b!.accountId}:key/`);
    const nodeA = client(a!.node);
    const adminA = client(a!.admin);
    const sign = new SignCommand({
      KeyId: otherKey,
      Message: randomBytes(32),
      MessageType: 'RAW',
      SigningAlgorithm: 'ED25519_SHA_512',
    });
    expect(await fails(nodeA.send(sign))).toBe('AccessDeniedException');
    expect(await fails(nodeA.send(new GetPublicKeyCommand({ KeyId: otherKey })))).toBe('AccessDeniedException');
    expect(await fails(adminA.send(new DisableKeyCommand({ KeyId: otherKey })))).toBe('AccessDeniedException');
    expect(await fails(adminA.send(new ScheduleKeyDeletionCommand({ KeyId: otherKey, PendingWindowInDays: 7 })))).toBe(
      'AccessDeniedException',
    );
    // The owner's node still signs with it.
    await client(b!.node).send(sign);
  });

  it('the hardened statement is NodeSigns plus exactly the signing conditions, and the emulator refuses rather than ignores it', async () => {
    const base = docs.get('cosigner-node-key')!.Statement.find((s) => s.Sid === 'NodeSigns')!;
    const hardened = docs.get('cosigner-node-key-hardened')!;
    expect(hardened.Statement).toHaveLength(1);
    const { Condition, ...rest } = hardened.Statement[0]!;
    expect(rest).toEqual(base);
    expect(Condition).toEqual({
      StringEquals: { 'kms:SigningAlgorithm': 'ED25519_SHA_512', 'kms:MessageType': 'RAW' },
    });
    const withCondition = JSON.parse(policyFor(DOC_ACCOUNT)) as PolicyDoc;
    withCondition.Statement = withCondition.Statement.map((s) => (s.Sid === 'NodeSigns' ? { ...s, Condition } : s));
    expect(
      await fails(
        client(accounts[0]!.admin).send(
          new CreateKeyCommand({
            KeySpec: 'ECC_NIST_EDWARDS25519',
            KeyUsage: 'SIGN_VERIFY',
            Policy: JSON.stringify(withCondition),
          }),
        ),
      ),
    ).toBe('MalformedPolicyDocumentException');
  });

  it('the node IAM policy allows the three sign-side actions on one key of its own account, nothing else', () => {
    const identity = docs.get('cosigner-node-identity')!;
    expect(identity.Statement).toHaveLength(1);
    const s = identity.Statement[0]!;
    expect(s.Effect).toBe('Allow');
    expect(s.Principal).toBeUndefined();
    expect(new Set(list(s.Action))).toEqual(new Set(['kms:Sign', 'kms:GetPublicKey', 'kms:DescribeKey']));
    expect(list(s.Resource)).toHaveLength(1);
    expect(list(s.Resource)[0]).toMatch(new RegExp(`^arn:aws:kms:[a-z0-9-]+:${DOC_ACCOUNT}:key/[^*?]+$`));
  });

  it('the admin role can only be assumed with MFA, from its own account', () => {
    const trust = docs.get('cosigner-key-admin-trust')!;
    expect(trust.Statement).toHaveLength(1);
    const s = trust.Statement[0]!;
    expect(s.Effect).toBe('Allow');
    expect(list(s.Action)).toEqual(['sts:AssumeRole']);
    expect(list(s.Principal?.AWS)).toEqual([`arn:aws:iam::${DOC_ACCOUNT}:root`]);
    expect(s.Condition).toEqual({ Bool: { 'aws:MultiFactorAuthPresent': 'true' } });
  });
});

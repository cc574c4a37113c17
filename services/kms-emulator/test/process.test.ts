import { createHash, verify } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  ScheduleKeyDeletionCommand,
  SignCommand,
  VerifyCommand,
} from '@aws-sdk/client-kms';
import { rawRequest } from '@cosigner/testkit/http';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccountPrincipal, AccountsFile } from '../src/accounts.ts';

// The real `cosigner kms-emulator` process, driven by the real @aws-sdk/client-kms over HTTP.
describe('cosigner kms-emulator as a real process with the real AWS SDK', () => {
  let dir: string;
  let proc: RunningProcess;
  let accounts: AccountsFile;

  const client = (p: AccountPrincipal, secret = p.secretAccessKey) =>
    new KMSClient({
      endpoint: proc.url,
      region: 'us-east-1',
      credentials: { accessKeyId: p.accessKeyId, secretAccessKey: secret },
      maxAttempts: 1,
    });
  const who = (i: number, role: 'admin' | 'node') => accounts.accounts[i]!.principals.find((p) => p.role === role)!;
  const fails = async (p: Promise<unknown>): Promise<{ name: string; status?: number }> => {
    try {
      await p;
    } catch (e) {
      const err = e as { name: string; $metadata?: { httpStatusCode?: number } };
      return { name: err.name, status: err.$metadata?.httpStatusCode };
    }
    throw new Error('the call succeeded');
  };

  beforeAll(async () => {
    dir = await tempDir('kms-emu-proc-');
    proc = await startCosignerProcess({
      args: ['kms-emulator', '--data-dir', join(dir, 'kms'), '--allowed-host', 'kms-0'],
    });
    expect(proc.ready.accountsFile).toBe(join(dir, 'kms', 'accounts.json'));
    accounts = JSON.parse(await readFile(String(proc.ready.accountsFile), 'utf8')) as AccountsFile;
  });
  afterAll(async () => {
    await proc?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers only loopback, localhost and its --allowed-host names, and no web origin (DNS rebinding)', async () => {
    const port = new URL(proc.url).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `kms-0:${port}`]) {
      expect((await rawRequest(proc.url, { path: '/healthz', headers: { host } })).status, host).toBe(200);
    }
    for (const host of ['rebind.attacker.example', `127.evil.example:${port}`, 'kms-1']) {
      const r = await rawRequest(proc.url, { method: 'POST', path: '/', headers: { host }, body: '{}' });
      expect(r.status, host).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'RUNTIME_HOST_NOT_ALLOWED' });
    }
    const foreign = await rawRequest(proc.url, {
      method: 'POST',
      path: '/',
      headers: { host: `127.0.0.1:${port}`, origin: 'http://rebind.attacker.example' },
      body: '{}',
    });
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body)).toMatchObject({ code: 'RUNTIME_ORIGIN_NOT_ALLOWED' });
  });

  it('creates a key as admin, signs as node, survives a restart, and audits without message bytes', async () => {
    const admin = client(who(0, 'admin'));
    const node = client(who(0, 'node'));
    const created = await admin.send(
      new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }),
    );
    const keyId = created.KeyMetadata!.KeyId!;
    const arn = created.KeyMetadata!.Arn!;
    expect(created.KeyMetadata!.CreationDate).toBeInstanceOf(Date);
    await admin.send(new CreateAliasCommand({ AliasName: 'alias/node-a', TargetKeyId: keyId }));

    const pk = await node.send(new GetPublicKeyCommand({ KeyId: 'alias/node-a' }));
    const spki = Buffer.from(pk.PublicKey!);
    expect(spki).toHaveLength(44);
    const hash = createHash('sha256').update('tx envelope').digest();
    const signed = await node.send(
      new SignCommand({ KeyId: keyId, Message: hash, SigningAlgorithm: 'ED25519_SHA_512', MessageType: 'RAW' }),
    );
    expect(signed.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const sig = Buffer.from(signed.Signature!);
    expect(verify(null, hash, { key: spki, format: 'der', type: 'spki' }, sig)).toBe(true);
    const v = await node.send(
      new VerifyCommand({
        KeyId: keyId,
        Message: hash,
        Signature: sig,
        SigningAlgorithm: 'ED25519_SHA_512',
        MessageType: 'RAW',
      }),
    );
    expect(v.SignatureValid).toBe(true);
    sig[5]! ^= 0x10;
    expect(
      await fails(
        node.send(
          new VerifyCommand({ KeyId: keyId, Message: hash, Signature: sig, SigningAlgorithm: 'ED25519_SHA_512' }),
        ),
      ),
    ).toEqual({
      name: 'KMSInvalidSignatureException',
      status: 400,
    });

    // Least privilege: the node's credentials cannot create or delete keys.
    expect(await fails(node.send(new CreateKeyCommand({})))).toEqual({ name: 'AccessDeniedException', status: 400 });
    expect(await fails(node.send(new ScheduleKeyDeletionCommand({ KeyId: keyId })))).toEqual({
      name: 'AccessDeniedException',
      status: 400,
    });
    // Another account: no grant.
    const b = client(who(1, 'admin'));
    expect(
      await fails(b.send(new SignCommand({ KeyId: arn, Message: hash, SigningAlgorithm: 'ED25519_SHA_512' }))),
    ).toEqual({
      name: 'AccessDeniedException',
      status: 400,
    });
    // Wrong secret; unknown access key.
    const wrong = client(who(0, 'node'), 'x'.repeat(40));
    expect(await fails(wrong.send(new DescribeKeyCommand({ KeyId: keyId })))).toEqual({
      name: 'InvalidSignatureException',
      status: 400,
    });
    const stranger = client({ ...who(0, 'node'), accessKeyId: 'AKIAAAAAAAAAAAAAAAAA' });
    expect((await fails(stranger.send(new DescribeKeyCommand({ KeyId: keyId })))).name).toBe(
      'UnrecognizedClientException',
    );

    // A real restart keeps keys, aliases and accounts.
    expect(await proc.stop()).toBe(0);
    proc = await startCosignerProcess({ args: ['kms-emulator', '--data-dir', join(dir, 'kms')] });
    expect(JSON.parse(await readFile(String(proc.ready.accountsFile), 'utf8'))).toEqual(accounts);
    const again = client(who(0, 'node'));
    const pk2 = await again.send(new GetPublicKeyCommand({ KeyId: 'alias/node-a' }));
    expect(Buffer.from(pk2.PublicKey!)).toEqual(spki);
    const signed2 = await again.send(
      new SignCommand({ KeyId: keyId, Message: hash, SigningAlgorithm: 'ED25519_SHA_512' }),
    );
    expect(verify(null, hash, { key: spki, format: 'der', type: 'spki' }, Buffer.from(signed2.Signature!))).toBe(true);

    // Audit trail: one line per call, no message, signature or key bytes; keys.json holds no plaintext key.
    // Every line is in the file before its call is answered (audit.ts), so it is read once, with no wait.
    const text = await readFile(join(dir, 'kms', 'audit.jsonl'), 'utf8');
    const parsed = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const read = { text, parsed, signs: parsed.filter((l) => l.eventName === 'Sign' && !l.errorCode).length };
    const { text: audit, parsed: lines } = read;
    expect(read.signs).toBe(2);
    expect(lines.some((l) => l.eventName === 'CreateKey' && l.errorCode === 'AccessDeniedException')).toBe(true);
    expect(lines.some((l) => l.errorCode === 'InvalidSignatureException' && l.accessKeyId === undefined)).toBe(true);
    for (const bytes of [hash, Buffer.from(signed.Signature!), spki.subarray(12)]) {
      expect(audit).not.toContain(bytes.toString('base64'));
      expect(audit).not.toContain(bytes.toString('hex'));
    }
    expect(proc.output()).not.toContain(who(0, 'node').secretAccessKey);
  });
});

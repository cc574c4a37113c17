import { randomBytes } from 'node:crypto';
import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, DisableKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { emulatorCredentials, readEmulatorAccounts } from '@cosigner/keys/aws-kms/emulator-accounts';
import { createKmsClient } from '@cosigner/keys/aws-kms/kms-signer';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBlob, checkContext, createShareSealer, type SealerConfig } from '../src/sealer.ts';
import { createKmsSealer } from '../src/sealing/aws-kms.ts';
import { CTX, code, conformance } from './sealer-conformance.ts';

let dir: string;
let emulator: RunningProcess;
let admin: KMSClient;
let nodeConfig: (keyId: string, account?: string) => SealerConfig;
let sealingKey: string;
let signingKey: string;

beforeAll(async () => {
  dir = await tempDir('frost-sealer-');
  emulator = await startCosignerProcess({
    args: ['kms-emulator', '--data-dir', join(dir, 'kms')],
    readyTimeoutMs: 60_000,
  });
  const accounts = await readEmulatorAccounts(String(emulator.ready.accountsFile));
  const a = emulatorCredentials(accounts, 'node-a', 'admin');
  admin = createKmsClient({ region: a.region, endpoint: emulator.url, credentials: a.credentials });
  nodeConfig = (keyId, account = 'node-a') => {
    const n = emulatorCredentials(accounts, account, 'node');
    return { type: 'aws-kms', keyId, region: n.region, endpoint: emulator.url, credentials: n.credentials };
  };
  sealingKey = (await admin.send(new CreateKeyCommand({ Description: 'node-a share sealing' }))).KeyMetadata!.Arn!;
  signingKey = (await admin.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' })))
    .KeyMetadata!.Arn!;
}, 90_000);
afterAll(async () => {
  admin?.destroy();
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('share sealing: local development backend', () => {
  it('seals with AES-256-GCM under a private key file, bound to its context', async () => {
    const keyFile = join(dir, 'local', 'seal.key');
    const sealer = await createShareSealer({ type: 'local', keyFile }, { production: false, env: {} });
    expect(sealer.kind).toBe('local');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const blob = await conformance(sealer);
    await expect(sealer.unseal({ ...blob, kind: 'aws-kms' } as never, CTX)).rejects.toThrow(code('FROST_OUT_OF_RANGE'));
    await expect(sealer.unseal({ ...blob, wrappedKey: 'AAAA' }, CTX)).rejects.toThrow(code('FROST_BAD_INPUT'));
    await sealer.close();
    // Reopened from the same file: opens what the first instance sealed.
    const reopened = await createShareSealer({ type: 'local', keyFile }, { production: false, env: {} });
    expect((await reopened.unseal(blob, CTX)).length).toBe(32);
    // Another key file does not.
    const other = await createShareSealer(
      { type: 'local', keyFile: join(dir, 'local', 'other.key') },
      { production: false, env: {} },
    );
    await expect(other.unseal(blob, CTX)).rejects.toThrow(code('FROST_UNSEAL_FAILED'));
  });

  it('is refused in production, with a readable key file or a key of the wrong size', async () => {
    const keyFile = join(dir, 'local', 'prod.key');
    await expect(createShareSealer({ type: 'local', keyFile }, { production: true, env: {} })).rejects.toThrow(
      code('FROST_DEV_SEALER_IN_PRODUCTION'),
    );
    await expect(
      createShareSealer({ type: 'local', keyFile }, { production: false, env: { NODE_ENV: 'production' } }),
    ).rejects.toThrow(code('FROST_DEV_SEALER_IN_PRODUCTION'));
    const loose = join(dir, 'local', 'loose.key');
    await writeFile(loose, randomBytes(32), { mode: 0o644 });
    await chmod(loose, 0o644);
    await expect(createShareSealer({ type: 'local', keyFile: loose }, { production: false, env: {} })).rejects.toThrow(
      code('RUNTIME_FILE_NOT_PRIVATE'),
    );
    const short = join(dir, 'local', 'short.key');
    await writeFile(short, randomBytes(16), { mode: 0o600 });
    await expect(createShareSealer({ type: 'local', keyFile: short }, { production: false, env: {} })).rejects.toThrow(
      code('FROST_SEALER_CONFIG', { length: 16 }),
    );
    await expect(createShareSealer({ type: 'vault' } as never, { production: false })).rejects.toThrow(
      code('FROST_SEALER_CONFIG', { type: 'vault' }),
    );
    await expect(createShareSealer(undefined as never, { production: false })).rejects.toThrow(
      code('FROST_SEALER_CONFIG'),
    );
  });

  it('checks contexts and blobs', () => {
    expect(checkContext({ b: '2', a: '1' })).toEqual({ a: '1', b: '2' });
    expect(Object.keys(checkContext({ b: '2', a: '1' }))).toEqual(['a', 'b']);
    for (const bad of [
      { 'Bad-Key': 'x' },
      { a: '' },
      { a: 'x'.repeat(257) },
      Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, 'v'])),
    ]) {
      expect(() => checkContext(bad)).toThrow(code('FROST_OUT_OF_RANGE'));
    }
    expect(() => checkContext({ a: 1 })).toThrow(code('FROST_BAD_INPUT'));
    expect(() => checkContext('x')).toThrow(code('FROST_BAD_INPUT'));
    expect(() => checkBlob(null, 'local')).toThrow(code('FROST_BAD_INPUT'));
    expect(() => checkBlob({ v: 1, kind: 'aws-kms', keyId: 'k', iv: '', ciphertext: '' }, 'aws-kms')).toThrow(
      code('FROST_BAD_INPUT'),
    );
  });
});

describe('share sealing: AWS KMS envelope encryption against the emulator (node credentials, real SDK, HTTP)', () => {
  it('seals with a data key from GenerateDataKey and opens with Decrypt, bound to the encryption context', async () => {
    const sealer = await createShareSealer(nodeConfig(sealingKey), { production: true });
    expect(sealer.kind).toBe('aws-kms');
    expect(sealer.keyId).toBe(sealingKey);
    const blob = await conformance(sealer);
    expect(blob.wrappedKey).toBeDefined();
    await expect(sealer.unseal({ ...blob, wrappedKey: Buffer.alloc(60, 1).toString('base64') }, CTX)).rejects.toThrow(
      code('FROST_UNSEAL_FAILED'),
    );
    // A blob sealed under another symmetric key of the account: KMS refuses it for this key.
    const otherKey = (await admin.send(new CreateKeyCommand({}))).KeyMetadata!.Arn!;
    const otherSealer = await createKmsSealer(nodeConfig(otherKey) as never);
    const foreign = await otherSealer.seal(randomBytes(32), CTX);
    await expect(sealer.unseal(foreign, CTX)).rejects.toThrow(
      code('FROST_UNSEAL_FAILED', { awsError: 'IncorrectKeyException' }),
    );
    // The emulator's audit log shows the node's GenerateDataKey and Decrypt calls on the key.
    const audit = (await readFile(join(dir, 'kms', 'audit.jsonl'), 'utf8')).split('\n').filter(Boolean);
    const ops = audit.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.keyArn === sealingKey);
    expect(ops.map((e) => JSON.stringify(e)).join('\n')).toMatch(/GenerateDataKey/);
    expect(ops.map((e) => JSON.stringify(e)).join('\n')).toMatch(/Decrypt/);
    await otherSealer.close();
    await sealer.close();
  });

  it('refuses a signing key, a disabled key, another account and an unreachable endpoint with KEYS_* codes', async () => {
    await expect(createShareSealer(nodeConfig(signingKey), { production: true })).rejects.toThrow(
      code('FROST_SEALER_CONFIG', { keySpec: 'ECC_NIST_EDWARDS25519' }),
    );
    await expect(createShareSealer(nodeConfig(sealingKey, 'node-b'), { production: true })).rejects.toThrow(
      code('KEYS_ACCESS_DENIED'),
    );
    const live = await createShareSealer(nodeConfig(sealingKey), { production: true });
    const blob = await live.seal(randomBytes(32), CTX);
    const disabled = (await admin.send(new CreateKeyCommand({}))).KeyMetadata!.Arn!;
    const soon = await createShareSealer(nodeConfig(disabled), { production: true });
    const sealedThere = await soon.seal(randomBytes(32), CTX);
    await admin.send(new DisableKeyCommand({ KeyId: disabled }));
    await expect(soon.seal(randomBytes(32), CTX)).rejects.toThrow(code('KEYS_KEY_DISABLED'));
    await expect(soon.unseal(sealedThere, CTX)).rejects.toThrow(code('KEYS_KEY_DISABLED'));
    await expect(createShareSealer(nodeConfig(disabled), { production: true })).rejects.toThrow(
      code('FROST_SEALER_CONFIG', { keyState: 'Disabled' }),
    );
    const down = { ...nodeConfig(sealingKey), endpoint: 'http://127.0.0.1:9' } as SealerConfig;
    await expect(createShareSealer(down, { production: true })).rejects.toThrow(code('KEYS_BACKEND_UNAVAILABLE'));
    expect((await live.unseal(blob, CTX)).length).toBe(32);
    await live.close();
    await soon.close();
  });
});

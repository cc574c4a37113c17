import { execFile } from 'node:child_process';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { emulatorCredentials, readEmulatorAccounts } from '@cosigner/keys/aws-kms/emulator-accounts';
import { COSIGNER_BIN, type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { keysCreate, keysShow } from '../src/commands/keys.ts';
import { main } from '../src/main.ts';

// `cosigner keys create|show` as real processes (local, and aws-kms against a real emulator process through the
// standard AWS credential chain), plus the same functions in-process for the error matrix.

const exec = promisify(execFile);

async function cosigner(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [COSIGNER_BIN, ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

let dir: string;
let emulator: RunningProcess;
let adminEnv: NodeJS.ProcessEnv;
let nodeEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = await tempDir('cosigner-cli-keys-');
  emulator = await startCosignerProcess({
    args: ['kms-emulator', '--data-dir', join(dir, 'kms')],
    readyTimeoutMs: 60_000,
  });
  const accounts = await readEmulatorAccounts(String(emulator.ready.accountsFile));
  const asEnv = (role: 'admin' | 'node'): NodeJS.ProcessEnv => {
    const c = emulatorCredentials(accounts, 'node-a', role);
    return {
      AWS_ACCESS_KEY_ID: c.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: c.credentials.secretAccessKey,
      AWS_REGION: c.region,
    };
  };
  adminEnv = asEnv('admin');
  nodeEnv = asEnv('node');
});
afterAll(async () => {
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('cosigner keys (real processes)', () => {
  it('creates a KMS key with the admin credentials from the environment and shows it with the node credentials', async () => {
    const created = await cosigner(
      [
        'keys',
        'create',
        '--backend',
        'aws-kms',
        '--endpoint',
        emulator.url,
        '--alias',
        'cli-node-a',
        '--tag',
        'node=a',
      ],
      adminEnv,
    );
    // stderr may carry the AWS SDK's Node-version notice; the command itself writes nothing there.
    expect(created.stderr).not.toMatch(/^cosigner:/m);
    expect(created.code).toBe(0);
    const out = JSON.parse(created.stdout) as Record<string, string>;
    expect(Object.keys(out).sort()).toEqual(['address', 'alias', 'backend', 'keyId', 'publicKey']);
    expect(out).toMatchObject({ backend: 'aws-kms', alias: 'alias/cli-node-a' });
    expect(out.keyId).toMatch(/^arn:aws:kms:us-east-1:111111111111:key\//);
    expect(Buffer.from(Keypair.fromPublicKey(out.address!).rawPublicKey()).toString('hex')).toBe(out.publicKey);

    const shown = await cosigner(
      ['keys', 'show', '--backend', 'aws-kms', '--endpoint', emulator.url, '--key-id', 'alias/cli-node-a'],
      nodeEnv,
    );
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual({
      backend: 'aws-kms',
      keyId: out.keyId,
      address: out.address,
      publicKey: out.publicKey,
    });
  });

  it('fails with the KEYS_* code and exit 1 when the credentials may not create keys', async () => {
    const r = await cosigner(['keys', 'create', '--backend', 'aws-kms', '--endpoint', emulator.url], nodeEnv);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^cosigner: KEYS_ACCESS_DENIED: /m);
    // Never echoes a credential.
    expect(r.stderr).not.toContain(String(nodeEnv.AWS_SECRET_ACCESS_KEY));
  });

  it('creates and shows a local development key; the file is 0600 and nothing secret is printed', async () => {
    const keyFile = join(dir, 'dev.key');
    const created = await cosigner(['keys', 'create', '--backend', 'local', '--key-file', keyFile]);
    expect(created.code).toBe(0);
    const out = JSON.parse(created.stdout) as Record<string, string>;
    const seed = await readFile(keyFile);
    expect(out.address).toBe(Keypair.fromRawEd25519Seed(seed).publicKey());
    expect(created.stdout).not.toContain(seed.toString('hex'));
    expect(created.stdout).not.toContain(Keypair.fromRawEd25519Seed(seed).secret());
    expect(((await stat(keyFile)).mode & 0o777).toString(8)).toBe('600');
    const shown = await cosigner(['keys', 'show', '--backend', 'local', '--key-file', keyFile]);
    expect(JSON.parse(shown.stdout)).toEqual(out);
  });

  it('refuses a local key in production and requires --backend', async () => {
    const prod = await cosigner(['keys', 'create', '--backend', 'local', '--key-file', join(dir, 'p.key')], {
      NODE_ENV: 'production',
    });
    expect(prod.code).toBe(1);
    expect(prod.stderr).toMatch(/KEYS_DEV_BACKEND_IN_PRODUCTION/);
    const none = await cosigner(['keys', 'create']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/--backend/);
  });
});

describe('keys create/show in-process', () => {
  it('needs the flags of its backend', async () => {
    const cases: [Parameters<typeof keysCreate>[0], RegExp][] = [
      [{ backend: 'local' }, /--key-file is required/],
      [{ backend: 'pkcs11', tokenLabel: 't', pinEnv: 'X' }, /--module is required/],
      [{ backend: 'pkcs11', module: '/m.so', pinEnv: 'X' }, /--token-label is required/],
      [{ backend: 'aws-kms', endpoint: 'http://127.0.0.1:1' }, /--region \(or AWS_REGION\) is required/],
    ];
    for (const [flags, message] of cases) await expect(keysCreate(flags, {})).rejects.toThrow(message);
    await expect(keysShow({ backend: 'aws-kms', region: 'us-east-1' }, {})).rejects.toThrow(/--key-id is required/);
    await expect(keysShow({ backend: 'pkcs11', module: '/m.so', tokenLabel: 't' }, {})).rejects.toThrow(/--key-id/);
    await expect(
      keysCreate({ backend: 'aws-kms', region: 'us-east-1', endpoint: emulator.url, tag: ['novalue'] }, adminEnv),
    ).rejects.toMatchObject({ code: 'KEYS_BAD_CONFIG' });
  });

  it('show never creates a local key file', async () => {
    const keyFile = join(dir, 'absent.key');
    await expect(keysShow({ backend: 'local', keyFile }, {})).rejects.toMatchObject({ code: 'KEYS_KEY_NOT_FOUND' });
    await expect(stat(keyFile)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('creates and shows through the functions, credentials and region from the standard chain', async () => {
    // The SDK's default credential chain reads process.env of this (forked) test process.
    const saved = { ...process.env };
    const use = (env: NodeJS.ProcessEnv): void => {
      Object.assign(process.env, env);
    };
    try {
      use(adminEnv);
      const made = await keysCreate({
        backend: 'aws-kms',
        endpoint: emulator.url,
        description: 'in-process',
        tag: ['node=a', 'purpose=test'],
      });
      expect(made.alias).toBeUndefined();
      use(nodeEnv);
      const shown = await keysShow({ backend: 'aws-kms', endpoint: emulator.url, keyId: made.keyId });
      expect(shown.address).toBe(made.address);
    } finally {
      for (const k of Object.keys(adminEnv)) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });
});

describe('keys commands through the CLI entry point, in-process', () => {
  afterEach(() => {
    process.exitCode = undefined;
    vi.restoreAllMocks();
  });

  it('prints one JSON line for create and show, and a coded one-line error', async () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const keyFile = join(dir, 'inproc.key');
    await main(['node', 'cosigner', 'keys', 'create', '--backend', 'local', '--key-file', keyFile]);
    await main(['node', 'cosigner', 'keys', 'show', '--backend', 'local', '--key-id', keyFile]);
    const lines = out.mock.calls.map((c) => String(c[0]));
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0]!)).toEqual(JSON.parse(lines[1]!));
    expect(process.exitCode).toBeUndefined();
    await main(['node', 'cosigner', 'keys', 'show', '--backend', 'local', '--key-file', join(dir, 'none.key')]);
    expect(process.exitCode).toBe(1);
    expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(/^cosigner: KEYS_KEY_NOT_FOUND: /);
  });
});

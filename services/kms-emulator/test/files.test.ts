import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runtimeErrors } from '@cosigner/runtime/errors';
import { intOption } from '@cosigner/runtime/service-flags';
import { tempDir } from '@cosigner/testkit/process';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ensureAccountsFile, generateAccounts, parseAccounts, readAccountsFile } from '../src/accounts.ts';
import { register } from '../src/command.ts';
import { ed25519Seed } from '../src/ed25519.ts';
import { kmsErrors } from '../src/errors.ts';
import { loadMasterKey, parseMasterKey, seal, unseal } from '../src/sealing.ts';
import { KeyStore } from '../src/store.ts';

let dir: string;
beforeEach(async () => {
  dir = await tempDir('kms-emu-files-');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const mode = async (p: string) => (await stat(p)).mode & 0o777;

describe('accounts file', () => {
  it('generates node-a/b/c with an admin and a node principal and AWS-shaped credentials', () => {
    const { accounts } = generateAccounts(3);
    expect(accounts.map((a) => [a.name, a.accountId, a.region])).toEqual([
      ['node-a', '111111111111', 'us-east-1'],
      ['node-b', '222222222222', 'us-east-1'],
      ['node-c', '333333333333', 'us-east-1'],
    ]);
    expect(accounts[0]!.principals.map((p) => [p.name, p.role, p.arn])).toEqual([
      ['admin', 'admin', 'arn:aws:iam::111111111111:user/admin'],
      ['node', 'node', 'arn:aws:iam::111111111111:role/cosigner-node'],
    ]);
    const ids = accounts.flatMap((a) => a.principals.map((p) => p.accessKeyId));
    for (const id of ids) expect(id).toMatch(/^AKIA[A-Z2-7]{16}$/);
    expect(new Set(ids).size).toBe(6);
    for (const p of accounts.flatMap((a) => a.principals)) expect(p.secretAccessKey).toHaveLength(40);
    expect(generateAccounts(12).accounts[10]!.accountId).toBe('100000000010');
    for (const n of [0, 27, 1.5]) expect(() => generateAccounts(n)).toThrow(/--accounts must be 1 to 26/);
  });

  it('writes <data-dir>/accounts.json with mode 0600 once and reuses it', async () => {
    const first = await ensureAccountsFile(dir, 2);
    expect(first.created).toBe(true);
    expect(first.path).toBe(join(dir, 'accounts.json'));
    expect(await mode(first.path)).toBe(0o600);
    const again = await ensureAccountsFile(dir, 3);
    expect(again.created).toBe(false);
    expect(again.accounts).toEqual(first.accounts);
    expect(await readAccountsFile(first.path)).toEqual(first.accounts);
  });

  it('reads YAML and refuses a file others can read', async () => {
    const file = join(dir, 'accounts.yaml');
    const accounts = generateAccounts(1);
    await writeFile(file, stringify(accounts), { mode: 0o600 });
    expect(await readAccountsFile(file)).toEqual(accounts);
    await chmod(file, 0o644);
    await expect(readAccountsFile(file)).rejects.toSatisfy((e) => runtimeErrors.is(e, 'RUNTIME_FILE_NOT_PRIVATE'));
    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{', { mode: 0o600 });
    await expect(readAccountsFile(broken)).rejects.toThrow(/is not parseable JSON or YAML/);
  });

  it('names the first bad field of an invalid accounts document', () => {
    const good = () => generateAccounts(2) as unknown as { accounts: Record<string, unknown>[] };
    const principal = (d: { accounts: Record<string, unknown>[] }, i = 0, j = 0): Record<string, unknown> =>
      (d.accounts[i]!.principals as Record<string, unknown>[])[j]!;
    type Doc = { accounts: Record<string, unknown>[] };
    // Each case edits a fresh valid document in place, or returns a replacement document.
    const cases: [(d: Doc) => unknown, RegExp][] = [
      [() => null, /\(root\) must be an object/],
      [() => ({ accounts: [] }), /accounts must be a non-empty array/],
      [() => ({ accounts: [1] }), /accounts\[0\] must be an object/],
      [
        (d) => {
          d.accounts[0]!.accountId = '12';
        },
        /accounts\[0\]\.accountId does not match/,
      ],
      [
        (d) => {
          d.accounts[1]!.accountId = '111111111111';
        },
        /accounts\[1\]\.accountId is used twice/,
      ],
      [
        (d) => {
          d.accounts[0]!.principals = [];
        },
        /principals must be a non-empty array/,
      ],
      [
        (d) => {
          principal(d).role = 'root';
        },
        /role must be "admin" or "node"/,
      ],
      [
        (d) => {
          principal(d).arn = 'arn:aws:iam::222222222222:user/admin';
        },
        /arn belongs to another account/,
      ],
      [
        (d) => {
          principal(d).arn = 'arn:aws:s3:::bucket';
        },
        /arn does not match/,
      ],
      [
        (d) => {
          principal(d).accessKeyId = 'akia-lower';
        },
        /accessKeyId does not match/,
      ],
      [
        (d) => {
          principal(d, 1).accessKeyId = principal(d, 0).accessKeyId as string;
        },
        /accessKeyId is used twice/,
      ],
      [
        (d) => {
          principal(d).secretAccessKey = 'short';
        },
        /secretAccessKey is shorter than 16/,
      ],
      [
        (d) => {
          principal(d).name = '';
        },
        /name must be a non-empty string/,
      ],
      [
        (d) => {
          principal(d).role = 'node';
        },
        /principals has no admin/,
      ],
      [
        (d) => {
          d.accounts[0]!.region = 'Mars';
        },
        /region does not match/,
      ],
      [
        (d) => {
          d.accounts[0]!.principals = [5];
        },
        /must be an object/,
      ],
    ];
    for (const [mutate, re] of cases) {
      let err: unknown;
      try {
        const d = good();
        const replaced = mutate(d);
        parseAccounts(replaced === undefined ? d : replaced, 'test.json');
      } catch (e) {
        err = e;
      }
      expect(kmsErrors.is(err, 'KMS_ACCOUNTS_INVALID'), re.source).toBe(true);
      expect((err as Error).message).toMatch(re);
    }
  });
});

describe('master key and sealing', () => {
  it('accepts 32 raw bytes, 64 hex characters or base64, and nothing else', () => {
    const k = Buffer.alloc(32, 3);
    expect(parseMasterKey(k)).toEqual(k);
    expect(parseMasterKey(Buffer.from(`${k.toString('hex')}\n`))).toEqual(k);
    expect(parseMasterKey(Buffer.from(k.toString('base64')))).toEqual(k);
    for (const bad of [Buffer.alloc(31), Buffer.from('zz'.repeat(32)), Buffer.from('abc')]) {
      expect(() => parseMasterKey(bad)).toThrow(/exactly 32 bytes/);
    }
  });

  it('generates <data-dir>/master.key (0600) in development and reuses it; a given file must exist and be private', async () => {
    const a = await loadMasterKey({ dataDir: dir });
    expect(a.generated).toBe(true);
    expect(a.path).toBe(join(dir, 'master.key'));
    expect(await mode(a.path)).toBe(0o600);
    const b = await loadMasterKey({ dataDir: dir });
    expect(b.generated).toBe(false);
    expect(b.key).toEqual(a.key);
    const own = join(dir, 'own.key');
    await expect(loadMasterKey({ dataDir: dir, masterKeyFile: own })).rejects.toThrow(/does not exist/);
    await writeFile(own, Buffer.alloc(32, 1), { mode: 0o644 });
    await expect(loadMasterKey({ dataDir: dir, masterKeyFile: own })).rejects.toSatisfy((e) =>
      runtimeErrors.is(e, 'RUNTIME_FILE_NOT_PRIVATE'),
    );
    await chmod(own, 0o600);
    expect((await loadMasterKey({ dataDir: dir, masterKeyFile: own })).key).toEqual(Buffer.alloc(32, 1));
  });

  it('binds a sealed blob to its key ARN and master key', () => {
    const k = Buffer.alloc(32, 9);
    const blob = seal(k, Buffer.from('material'), 'arn:a');
    expect(unseal(k, blob, 'arn:a').toString()).toBe('material');
    expect(() => unseal(k, blob, 'arn:b')).toThrow(/cannot be unsealed/);
    expect(() => unseal(Buffer.alloc(32, 8), blob, 'arn:a')).toThrow(/cannot be unsealed/);
  });
});

describe('key store at rest', () => {
  it('keeps keys across reopen, sealed: the file never holds the seed, and another master key cannot open it', async () => {
    const master = Buffer.alloc(32, 5);
    const store = await KeyStore.open(dir, master);
    const base = {
      accountId: '111111111111',
      region: 'us-east-1',
      createdAt: 1,
      description: '',
      state: 'Enabled' as const,
      policy: '{}',
      tags: [],
    };
    const ed = store.create({ ...base, keySpec: 'ECC_NIST_EDWARDS25519', keyUsage: 'SIGN_VERIFY' });
    const aes = store.create({ ...base, keySpec: 'SYMMETRIC_DEFAULT', keyUsage: 'ENCRYPT_DECRYPT' });
    store.putAlias({
      aliasName: 'alias/x',
      accountId: base.accountId,
      region: base.region,
      targetKeyId: ed.keyId,
      createdAt: 1,
      updatedAt: 1,
    });
    await Promise.all([store.persist(), store.persist()]);
    const path = join(dir, 'keys.json');
    expect(await mode(path)).toBe(0o600);
    const text = await readFile(path, 'utf8');
    const seed = ed25519Seed(ed.privateKey!);
    for (const form of [
      seed.toString('hex'),
      seed.toString('base64'),
      aes.symmetricKey!.toString('base64'),
      aes.symmetricKey!.toString('hex'),
    ]) {
      expect(text).not.toContain(form);
    }
    const again = await KeyStore.open(dir, master);
    expect(again.keys.get(ed.keyId)!.publicKeyDer).toEqual(ed.publicKeyDer);
    expect(ed25519Seed(again.keys.get(ed.keyId)!.privateKey!)).toEqual(seed);
    expect(again.keys.get(aes.keyId)!.symmetricKey).toEqual(aes.symmetricKey);
    expect(again.alias(base.accountId, base.region, 'alias/x')!.targetKeyId).toBe(ed.keyId);
    await expect(KeyStore.open(dir, Buffer.alloc(32, 6))).rejects.toSatisfy((e) =>
      kmsErrors.is(e, 'KMS_STORE_UNSEAL_FAILED'),
    );
    again.purge(ed.keyId);
    expect(again.alias(base.accountId, base.region, 'alias/x')).toBeUndefined();
    for (const bad of ['nope', '{"version":2,"keys":[],"aliases":[]}']) {
      await writeFile(path, bad);
      await expect(KeyStore.open(dir, master)).rejects.toSatisfy((e) => kmsErrors.is(e, 'KMS_STORE_INVALID'));
    }
  });
});

describe('cosigner kms-emulator command', () => {
  it('declares its flags with the documented defaults', () => {
    const program = new Command();
    register(program);
    const cmd = program.commands.find((c) => c.name() === 'kms-emulator')!;
    expect(cmd.opts()).toEqual({ port: 4566, host: '127.0.0.1', dataDir: '.cosigner/kms-emulator', accounts: 3 });
    for (const flag of [
      '--port',
      '--host',
      '--ready-file',
      '--data-dir',
      '--config',
      '--master-key-file',
      '--accounts',
    ]) {
      expect(cmd.helpInformation()).toContain(flag);
    }
    expect(intOption('--port', 0, 65535)('0')).toBe(0);
    for (const bad of ['-1', '65536', 'x', '1.5'])
      expect(() => intOption('--port', 0, 65535)(bad)).toThrow(/--port must be 0 to 65535/);
  });
});

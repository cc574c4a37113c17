import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSigner } from '../src/factory.ts';
import { createLocalKey, createLocalSigner } from '../src/local/local-signer.ts';
import { runSignerConformance } from './conformance.ts';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('cosigner-keys-local-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

runSignerConformance(
  'local',
  ({ metrics }) =>
    createSigner({ type: 'local', keyFile: join(dir, 'conformance.key') }, { production: false, metrics, env: {} }),
  { kind: 'local' },
);

describe('local backend', () => {
  it('creates a missing key file with mode 0600 holding a 32-byte seed, and reuses it', async () => {
    const keyFile = join(dir, 'sub', 'node.key');
    const first = await createLocalSigner({ type: 'local', keyFile }, { production: false, env: {} });
    expect(((await stat(keyFile)).mode & 0o777).toString(8)).toBe('600');
    const seed = await readFile(keyFile);
    expect(seed).toHaveLength(32);
    expect(first.address).toBe(Keypair.fromRawEd25519Seed(seed).publicKey());
    const again = await createLocalSigner({ type: 'local', keyFile }, { production: false, env: {} });
    expect(again.address).toBe(first.address);
    expect(first.keyId).toBe(keyFile);
  });

  it('createLocalKey writes a fresh key and never overwrites one', async () => {
    const keyFile = join(dir, 'created.key');
    const made = await createLocalKey(keyFile, { env: {} });
    expect(made.address).toBe(Keypair.fromRawEd25519Seed(await readFile(keyFile)).publicKey());
    expect(made.keyId).toBe(keyFile);
    await expect(createLocalKey(keyFile, { env: {} })).rejects.toMatchObject({ code: 'KEYS_KEY_EXISTS' });
    await expect(createLocalKey(join(dir, 'no-such-dir-file\0'), { env: {} })).rejects.toThrow();
  });

  it('refuses production mode and NODE_ENV=production', async () => {
    const keyFile = join(dir, 'prod.key');
    await expect(createSigner({ type: 'local', keyFile }, { production: true, env: {} })).rejects.toMatchObject({
      code: 'KEYS_DEV_BACKEND_IN_PRODUCTION',
    });
    await expect(
      createSigner({ type: 'local', keyFile }, { production: false, env: { NODE_ENV: 'production' } }),
    ).rejects.toMatchObject({ code: 'KEYS_DEV_BACKEND_IN_PRODUCTION' });
    await expect(createLocalKey(keyFile, { production: true })).rejects.toMatchObject({
      code: 'KEYS_DEV_BACKEND_IN_PRODUCTION',
    });
    // Nothing was created on the way to the refusal.
    await expect(stat(keyFile)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a key file that group or others can read', async () => {
    const keyFile = join(dir, 'open.key');
    await createLocalKey(keyFile, { env: {} });
    await chmod(keyFile, 0o644);
    await expect(createLocalSigner({ type: 'local', keyFile }, { production: false, env: {} })).rejects.toMatchObject({
      code: 'RUNTIME_FILE_NOT_PRIVATE',
    });
  });

  it('refuses a key file that is not a 32-byte seed', async () => {
    const keyFile = join(dir, 'short.key');
    await writeFile(keyFile, Buffer.alloc(31), { mode: 0o600 });
    await expect(createLocalSigner({ type: 'local', keyFile }, { production: false, env: {} })).rejects.toMatchObject({
      code: 'KEYS_BAD_CONFIG',
    });
  });

  it('stops start-up when the derived address is not the expected one, and accepts the right one', async () => {
    const keyFile = join(dir, 'addr.key');
    const made = await createLocalKey(keyFile, { env: {} });
    const other = Keypair.random().publicKey();
    await expect(
      createSigner({ type: 'local', keyFile, expectedAddress: other }, { production: false, env: {} }),
    ).rejects.toMatchObject({ code: 'KEYS_ADDRESS_MISMATCH', details: { expected: other, derived: made.address } });
    const ok = await createSigner({ type: 'local', keyFile, expectedAddress: made.address }, { production: false });
    expect(ok.address).toBe(made.address);
  });
});

describe('createSigner', () => {
  it('refuses an unknown backend type with KEYS_BAD_CONFIG', async () => {
    for (const type of ['gcp-kms', undefined, 7, 'toString', '__proto__']) {
      await expect(
        createSigner({ type } as unknown as Parameters<typeof createSigner>[0], { production: false }),
      ).rejects.toMatchObject({ code: 'KEYS_BAD_CONFIG' });
    }
  });
});

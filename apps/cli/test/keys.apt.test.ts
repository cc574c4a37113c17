import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createSoftHsmStore, initSoftHsmToken, SOFTHSM_MODULE } from '@cosigner/keys/pkcs11/softhsm';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keysCreate, keysShow } from '../src/commands/keys.ts';

// `cosigner keys create|show --backend pkcs11` as real processes against a SoftHSM2 token in a temp dir.
// Needs softhsm2 from apt: without softhsm2-util, beforeAll throws and the suite fails (never skips).

const exec = promisify(execFile);
const PIN = randomBytes(6).toString('hex');
let dir: string;
let env: NodeJS.ProcessEnv;
let pinFile: string;

async function cosigner(args: string[], extra: NodeJS.ProcessEnv = {}) {
  try {
    const { stdout, stderr } = await exec(process.execPath, [COSIGNER_BIN, ...args], {
      env: { ...process.env, ...env, ...extra },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  dir = await tempDir('cosigner-cli-hsm-');
  const conf = await createSoftHsmStore(dir);
  await initSoftHsmToken(conf, { label: 'cli-token', pin: PIN });
  env = { SOFTHSM2_CONF: conf };
  pinFile = join(dir, 'pin');
  await writeFile(pinFile, PIN, { mode: 0o600 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('cosigner keys --backend pkcs11 (real processes, SoftHSM2)', () => {
  const hsm = ['--backend', 'pkcs11', '--module', SOFTHSM_MODULE, '--token-label', 'cli-token'];

  it('creates a non-extractable key and shows the same address by CKA_ID', async () => {
    const created = await cosigner(['keys', 'create', ...hsm, '--pin-file', pinFile, '--key-id-hex', 'c0ffee']);
    expect(created.code).toBe(0);
    const out = JSON.parse(created.stdout) as Record<string, string>;
    expect(out).toMatchObject({ backend: 'pkcs11', keyId: 'cli-token/c0ffee' });
    expect(Buffer.from(Keypair.fromPublicKey(out.address!).rawPublicKey()).toString('hex')).toBe(out.publicKey);
    expect(created.stdout).not.toContain(PIN);

    const shown = await cosigner(['keys', 'show', ...hsm, '--pin-env', 'HSM_PIN', '--key-id', 'c0ffee'], {
      HSM_PIN: PIN,
    });
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual(out);
  });

  it('fails with KEYS_BAD_PIN on a wrong PIN, and KEYS_KEY_NOT_FOUND on an unknown id', async () => {
    const bad = await cosigner(['keys', 'show', ...hsm, '--pin-env', 'HSM_PIN', '--key-id', 'c0ffee'], {
      HSM_PIN: 'wrong',
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^cosigner: KEYS_BAD_PIN: /m);
    expect(bad.stderr).not.toContain('wrong');
    const missing = await cosigner(['keys', 'show', ...hsm, '--pin-file', pinFile, '--key-id', 'abcd']);
    expect(missing.stderr).toMatch(/^cosigner: KEYS_KEY_NOT_FOUND: /m);
  });
});

describe('keysCreate/keysShow with pkcs11, in-process', () => {
  it('creates with a PIN from the environment and shows by CKA_ID with a PIN file', async () => {
    // SoftHSM2 reads SOFTHSM2_CONF when this process first initialises the module.
    process.env.SOFTHSM2_CONF = env.SOFTHSM2_CONF;
    try {
      const hsm = { backend: 'pkcs11' as const, module: SOFTHSM_MODULE, tokenLabel: 'cli-token' };
      const made = await keysCreate({ ...hsm, pinEnv: 'P', label: 'in-process' }, { P: PIN });
      const shown = await keysShow({ ...hsm, pinFile, keyIdHex: made.keyId.split('/')[1]! }, {});
      expect(shown).toEqual(made);
    } finally {
      delete process.env.SOFTHSM2_CONF;
    }
  });
});

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesSecret, filesUnder, leaks, pemSeed, textSecret } from './scan.ts';
import { runStandaloneNode } from './standalone-node.ts';

// Key hygiene for the HSM backend: a node process on a SoftHSM2 token (apt package softhsm2; without
// softhsm2-util beforeAll fails, the suite never skips). The private key cannot leave the token, so what is
// checked is everything else: the PIN only in its PIN file, the SO PIN nowhere, no key material in the node's
// data directory, output or environment.

const exec = promisify(execFile);
const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const PIN = randomBytes(8).toString('hex');
const SO_PIN = randomBytes(8).toString('hex');
let hsmDir: string;
let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  hsmDir = await tempDir('cosigner-hygiene-hsm-');
  await mkdir(join(hsmDir, 'tokens'));
  const conf = join(hsmDir, 'softhsm2.conf');
  await writeFile(conf, `directories.tokendir = ${join(hsmDir, 'tokens')}\nobjectstore.backend = file\n`);
  env = { SOFTHSM2_CONF: conf };
  await exec('softhsm2-util', ['--init-token', '--free', '--label', 'hygiene', '--so-pin', SO_PIN, '--pin', PIN], {
    env: { ...process.env, ...env },
  });
  dir = await tempDir('cosigner-hygiene-pkcs11-');
  await writeFile(join(dir, 'pin'), PIN, { mode: 0o600 });
});
afterAll(async () => {
  for (const d of [dir, hsmDir]) if (d) await rm(d, { recursive: true, force: true });
});

describe('key hygiene: a node with the pkcs11 backend (SoftHSM2)', () => {
  it('keeps the PIN in its file only and no key material in the data directory, output or environment', async () => {
    const created = await exec(
      process.execPath,
      [COSIGNER_BIN, 'keys', 'create', '--backend', 'pkcs11', '--module', MODULE, '--token-label', 'hygiene'].concat([
        '--pin-file',
        join(dir, 'pin'),
        '--key-id-hex',
        'a1b2',
      ]),
      { env: { ...process.env, ...env } },
    );
    const address = (JSON.parse(created.stdout) as { address: string }).address;
    const node = await runStandaloneNode({
      dir,
      key: {
        type: 'pkcs11',
        module: MODULE,
        tokenLabel: 'hygiene',
        keyIdHex: 'a1b2',
        pinFile: join(dir, 'pin'),
        expectedAddress: address,
      },
      env,
    });
    // The node started on the HSM key: it logged the address the token's public key gives.
    expect(node.output).toContain(address);
    const identity = await readFile(join(node.dataDir, 'identity.pem'), 'utf8');
    const secrets = [
      textSecret('user PIN', PIN, ['pin']),
      textSecret('SO PIN', SO_PIN, []),
      textSecret('identity PEM', identity.trim(), ['data/identity.pem']),
      bytesSecret('identity seed', pemSeed(identity), ['data/identity.pem'], false),
    ];
    const files = new Map<string, Buffer>();
    for (const f of await filesUnder(dir)) files.set(relative(dir, f), await readFile(f));
    expect([...files.keys()].some((f) => f.startsWith('data/') && /\.(db|sqlite)/.test(f))).toBe(true);
    files.set('(process output)', Buffer.from(node.output));
    files.set('(process environment)', node.environ);
    files.set('(keys create output)', Buffer.from(created.stdout + created.stderr));
    expect(leaks(files, secrets)).toEqual([]);
  }, 120_000);
});

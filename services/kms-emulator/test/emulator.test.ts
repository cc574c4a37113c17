import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { runtimeErrors } from '@cosigner/runtime/errors';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateAccounts } from '../src/accounts.ts';
import { build } from '../src/app.ts';
import { AuditLog } from '../src/audit.ts';
import { openEmulator } from '../src/emulator.ts';
import { KeyStore } from '../src/store.ts';

let dir: string;
let logged: string;
const logger = () => {
  logged = '';
  return createLogger({
    name: 'kms-test',
    destination: new Writable({
      write(chunk, _enc, cb) {
        logged += chunk.toString();
        cb();
      },
    }),
  });
};
beforeEach(async () => {
  dir = await tempDir('kms-emu-open-');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('openEmulator', () => {
  it('creates the embedded defaults once, logs their paths and never a secret', async () => {
    const emu = await openEmulator({ dataDir: join(dir, 'd'), logger: logger() });
    expect(emu.accountsFile).toBe(join(dir, 'd', 'accounts.json'));
    expect(emu.accounts.accounts).toHaveLength(3);
    expect(logged).toContain(emu.accountsFile);
    expect(logged).toContain('generated a development master key');
    expect(logged).toContain(join(dir, 'd', 'master.key'));
    const master = (await readFile(join(dir, 'd', 'master.key'), 'utf8')).trim();
    for (const p of emu.accounts.accounts.flatMap((a) => a.principals)) expect(logged).not.toContain(p.secretAccessKey);
    expect(logged).not.toContain(master);
    expect((await emu.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    await emu.app.close();
    const again = await openEmulator({ dataDir: join(dir, 'd'), logger: logger(), accounts: 1 });
    expect(again.accounts).toEqual(emu.accounts);
    expect(logged).toContain('reuses its development accounts');
    expect(logged).not.toContain('generated a development master key');
    await again.app.close();
  });

  it('uses --config and --master-key-file when given', async () => {
    const config = join(dir, 'accounts.json');
    const accounts = generateAccounts(1);
    await writeFile(config, JSON.stringify(accounts), { mode: 0o600 });
    const mk = join(dir, 'mk');
    await writeFile(mk, Buffer.alloc(32, 4), { mode: 0o600 });
    const emu = await openEmulator({ dataDir: join(dir, 'd'), config, masterKeyFile: mk, logger: logger() });
    expect(emu.accountsFile).toBe(config);
    expect(emu.accounts).toEqual(accounts);
    expect(logged).toContain('accounts from the config file');
    await emu.app.close();
  });

  it('refuses to start with NODE_ENV=production', async () => {
    const env = { NODE_ENV: 'production' };
    await expect(openEmulator({ dataDir: dir, logger: logger(), env })).rejects.toSatisfy((e) =>
      runtimeErrors.is(e, 'RUNTIME_DEV_BACKEND_IN_PRODUCTION'),
    );
    const store = await KeyStore.open(dir, Buffer.alloc(32));
    const audit = await AuditLog.open(join(dir, 'audit.jsonl'));
    await expect(build({ accounts: generateAccounts(1), store, audit, env })).rejects.toThrow(/refused in production/);
    await audit.close();
  });
});

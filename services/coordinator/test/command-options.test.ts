import { spawn } from 'node:child_process';
import { access, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateIdentity } from '@cosigner/protocol/identity';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../src/store.ts';

/**
 * `cosigner coordinator enroll` and `cosigner coordinator api-key create` through the real CLI binary: --data-dir
 * and --config work wherever they are written, before or after the subcommand's name. The process runs in an
 * empty directory, so a flag that went missing would show as the default data directory (.cosigner/coordinator)
 * appearing there instead of the database named.
 */

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dir(): Promise<string> {
  const d = await tempDir('cosigner-coord-cli-');
  dirs.push(d);
  return d;
}

function cosigner(cwd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [COSIGNER_BIN, ...args], {
      cwd,
      env: { ...process.env, NODE_ENV: 'development' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.once('exit', (code) => res({ code, out }));
  });
}

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );

function enrolled(dataDir: string): string[] {
  const store = openSqliteStore(dataDir);
  try {
    return store.listNodes().map((n) => n.id);
  } finally {
    store.close();
  }
}

function hasKey(dataDir: string, id: string): boolean {
  const store = openSqliteStore(dataDir);
  try {
    return store.getApiKey(id) !== undefined;
  } finally {
    store.close();
  }
}

describe('cosigner coordinator enroll / api-key create options', () => {
  it('take --data-dir and --config before or after the subcommand', { timeout: 180_000 }, async () => {
    const cwd = await dir();
    const node = (id: string): string[] => [
      ...['--node-id', id, '--identity-key', generateIdentity().identity.publicKeyB64],
      ...['--stellar-key', Keypair.random().publicKey()],
    ];
    const after = join(cwd, 'after');
    const before = join(cwd, 'before');
    const fromConfig = join(cwd, 'from-config');
    const config = join(cwd, 'coordinator.yaml');
    await writeFile(config, `dataDir: ${fromConfig}\n`, { mode: 0o600 });

    const runs = await Promise.all([
      cosigner(cwd, ['coordinator', 'enroll', ...node('n-after'), '--data-dir', after]),
      cosigner(cwd, ['coordinator', '--data-dir', before, 'enroll', ...node('n-before')]),
      cosigner(cwd, ['coordinator', 'enroll', '--config', config, ...node('n-config')]),
    ]);
    for (const r of runs) expect(r, r.out).toMatchObject({ code: 0 });
    expect(enrolled(after)).toEqual(['n-after']);
    expect(enrolled(before)).toEqual(['n-before']);
    expect(enrolled(fromConfig)).toEqual(['n-config']);

    const keys = await Promise.all([
      cosigner(cwd, ['coordinator', 'api-key', 'create', '--scopes', 'read', '--data-dir', after]),
      cosigner(cwd, ['coordinator', 'api-key', 'create', '--config', config, '--scopes', 'propose,read']),
      cosigner(cwd, ['coordinator', '--data-dir', before, 'api-key', 'create', '--scopes', 'admin']),
    ]);
    for (const r of keys) expect(r, r.out).toMatchObject({ code: 0 });
    const ids = keys.map((r) => (JSON.parse(r.out.trim().split('\n').at(-1)!) as { id: string }).id);
    expect(hasKey(after, ids[0]!)).toBe(true);
    expect(hasKey(fromConfig, ids[1]!)).toBe(true);
    expect(hasKey(before, ids[2]!)).toBe(true);
    // Nothing fell back to the default data directory under the working directory.
    expect(await exists(join(cwd, '.cosigner'))).toBe(false);
  });
});

import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.ts';
import { isProduction, refuseInProduction } from '../src/mode.ts';
import { onShutdown, writeReadyFile } from '../src/ready.ts';
import { assertPrivateFile, newSecret, readSecretFile, secretEquals, writePrivateFile } from '../src/secrets.ts';

const dirs: string[] = [];
async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'runtime-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('ready file', () => {
  it('writes url and pid atomically, private', async () => {
    const path = join(await dir(), 'ready.json');
    await writeReadyFile(path, { url: 'http://127.0.0.1:1', extra: 1 });
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ url: 'http://127.0.0.1:1', extra: 1, pid: process.pid });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });
  it('does nothing without a path', async () => {
    await expect(writeReadyFile(undefined, { url: 'x' })).resolves.toBeUndefined();
  });
});

describe('shutdown', () => {
  it('closes once on a signal and exits 0, or 1 when close fails', async () => {
    const codes: number[] = [];
    let closes = 0;
    const off = onShutdown(
      async () => {
        closes++;
      },
      (c) => codes.push(c),
    );
    process.emit('SIGTERM');
    process.emit('SIGINT');
    await new Promise((r) => setTimeout(r, 10));
    off();
    expect(closes).toBe(1);
    expect(codes).toEqual([0]);
    const off2 = onShutdown(
      async () => {
        throw new Error('x');
      },
      (c) => codes.push(c),
    );
    process.emit('SIGINT');
    await new Promise((r) => setTimeout(r, 10));
    off2();
    expect(codes).toEqual([0, 1]);
  });
});

describe('logger', () => {
  it('redacts secrets and auth headers', () => {
    let out = '';
    const dest = new Writable({
      write(chunk, _e, cb) {
        out += chunk.toString();
        cb();
      },
    });
    const log = createLogger({ name: 't', destination: dest, extraRedact: ['custom.token'] });
    log.info(
      {
        creds: { secretAccessKey: 'AAAA-not-a-real-secret' },
        custom: { token: 'tok' },
        req: { headers: { authorization: 'Bearer zzz' } },
      },
      'hi',
    );
    expect(out).not.toContain('AAAA-not-a-real-secret');
    expect(out).not.toContain('tok"');
    expect(out).not.toContain('Bearer zzz');
    expect(out).toContain('[redacted]');
    expect(createLogger({ name: 'stdout', level: 'silent' }).level).toBe('silent');
  });
});

describe('secrets', () => {
  it('compares in constant time, whatever the lengths', () => {
    expect(secretEquals('abc', 'abc')).toBe(true);
    expect(secretEquals('abc', 'abd')).toBe(false);
    expect(secretEquals('abc', 'abcd')).toBe(false);
    expect(newSecret().length).toBeGreaterThanOrEqual(43);
    expect(newSecret()).not.toBe(newSecret());
  });
  it('writes private files and refuses readable ones', async () => {
    const d = await dir();
    const path = join(d, 'nested', 'secret');
    await writePrivateFile(path, 'value\n');
    expect(await readSecretFile(path, 'test secret')).toBe('value');
    const open = join(d, 'open');
    await writeFile(open, 'x');
    await chmod(open, 0o644);
    await expect(assertPrivateFile(open, 'open file')).rejects.toMatchObject({ code: 'RUNTIME_FILE_NOT_PRIVATE' });
  });
});

describe('mode', () => {
  it('detects production from config or NODE_ENV and refuses dev components', () => {
    expect(isProduction('production', {})).toBe(true);
    expect(isProduction('development', { NODE_ENV: 'production' })).toBe(true);
    expect(isProduction(undefined, {})).toBe(false);
    expect(() => refuseInProduction(true, 'the local key backend')).toThrow(/development only/);
    expect(() => refuseInProduction(false, 'x')).not.toThrow();
  });
});

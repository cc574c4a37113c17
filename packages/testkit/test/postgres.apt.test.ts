import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { POSTGRES_BIN_DIR, startPostgres } from '../src/postgres.ts';

const run = promisify(execFile);

async function query(url: string, password: string, sql: string): Promise<string> {
  const { stdout } = await run(`${POSTGRES_BIN_DIR}/psql`, ['-X', '-A', '-t', '-c', sql, url], {
    env: { ...process.env, PGPASSWORD: password },
  });
  return stdout.trim();
}

describe('startPostgres', () => {
  it('serves on loopback with a password, survives a crash (immediate stop) and a clean restart', async () => {
    const pg = await startPostgres();
    try {
      expect(pg.url()).toBe(`postgres://cosigner@127.0.0.1:${pg.port}/postgres`);
      const url = await pg.createDatabase('kept');
      expect(await query(url, pg.password, 'SHOW listen_addresses')).toBe('127.0.0.1');
      await query(url, pg.password, 'CREATE TABLE t (x int); INSERT INTO t VALUES (42)');
      await pg.stop('immediate');
      expect(pg.running).toBe(false);
      await pg.stop();
      await pg.start();
      expect(await query(url, pg.password, 'SELECT x FROM t')).toBe('42');
      await pg.stop('fast');
      await pg.start();
      await expect(query(url, 'wrong', 'SELECT 1')).rejects.toThrow(/password authentication failed/);
      await expect(pg.createDatabase('Bad-Name')).rejects.toThrow(/bad database name/);
    } finally {
      await pg.close();
    }
    expect(existsSync(pg.dir)).toBe(false);
  });

  it('without the server binaries, says what to install', async () => {
    vi.resetModules();
    process.env.COSIGNER_POSTGRES_BIN = '/nonexistent/bin';
    try {
      const fresh = await import('../src/postgres.ts');
      await expect(fresh.startPostgres()).rejects.toThrow(/apt-get install postgresql/);
    } finally {
      delete process.env.COSIGNER_POSTGRES_BIN;
      vi.resetModules();
    }
  });

  it('a server that cannot start is reported with the reason pg_ctl gave', async () => {
    await expect(startPostgres({ settings: { shared_buffers: 'nonsense' } })).rejects.toThrow(/pg_ctl start .*failed/s);
  });
});

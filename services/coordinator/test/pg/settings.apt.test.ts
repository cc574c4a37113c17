import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type PostgresServer, startPostgres } from '@cosigner/testkit/postgres';
import { tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { openStore } from '../../src/open-store.ts';
import { parseStoreSettings, poolConfig } from '../../src/pg/settings.ts';
import { createPool, PgStore } from '../../src/pg/store.ts';
import { makeTlsFiles } from './helpers.ts';

// The settings as an operator writes them, against a real server that serves TLS with a certificate of a
// throw-away CA: the password from a 0600 file or the environment, the server verified against the CA file.
let dir = '';
let server: PostgresServer;
let tls: Awaited<ReturnType<typeof makeTlsFiles>>;
beforeAll(async () => {
  dir = await tempDir('coord-pgtls-');
  tls = await makeTlsFiles(dir);
  server = await startPostgres({ tls: { certFile: tls.cert, keyFile: tls.key } });
  await writeFile(join(dir, 'pg.pw'), `${server.password}\n`, { mode: 0o600 });
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

async function connect(store: unknown, env: NodeJS.ProcessEnv = {}) {
  const settings = parseStoreSettings(store, { baseDir: dir });
  if (settings.type !== 'postgres') throw new Error('postgres expected');
  return PgStore.open(createPool(await poolConfig(settings, env)));
}

describe('store settings against a real server', () => {
  it('verify-full with the CA file: TLS in use, password from the file', async () => {
    const s = await connect({
      type: 'postgres',
      url: server.url(),
      passwordFile: 'pg.pw',
      tls: { mode: 'verify-full', caFile: 'ca.pem' },
    });
    try {
      const { rows } = await s.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      expect(rows).toEqual([{ ssl: true }]);
    } finally {
      await s.close();
    }
  });

  it('require: TLS without verification; disable: plain; password from the environment', async () => {
    for (const [mode, ssl] of [
      ['require', true],
      ['disable', false],
    ] as const) {
      const s = await connect(
        { type: 'postgres', url: server.url(), passwordEnv: 'PG_PASSWORD', tls: { mode } },
        { PG_PASSWORD: server.password },
      );
      try {
        const { rows } = await s.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
        expect(rows).toEqual([{ ssl }]);
      } finally {
        await s.close();
      }
    }
  });

  it('refuses a server whose certificate another CA signed, and a wrong password', async () => {
    await expect(
      connect({ type: 'postgres', url: server.url(), passwordFile: 'pg.pw', tls: { caFile: 'other-ca.pem' } }),
    ).rejects.toThrow(/certificate/);
    await expect(
      connect(
        { type: 'postgres', url: server.url(), passwordEnv: 'PG_PASSWORD', tls: { caFile: 'ca.pem' } },
        { PG_PASSWORD: 'wrong' },
      ),
    ).rejects.toThrow(/password authentication failed/);
  });

  it('openStore: the configured PostgreSQL store; an idle connection the server ends is logged, not fatal', async () => {
    const config = parseConfig(
      {
        dataDir: join(dir, 'data'),
        store: {
          type: 'postgres',
          url: server.url(),
          passwordFile: 'pg.pw',
          tls: { mode: 'verify-full', caFile: 'ca.pem' },
        },
      },
      { baseDir: dir },
    );
    const warned: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => warned.push(msg) } as unknown as Parameters<
      typeof openStore
    >[1];
    const store = await openStore(config, logger);
    try {
      expect(store).toBeInstanceOf(PgStore);
      expect(await store.ping()).toBe(true);
      // The server ends the pool's idle connection (as a restart does): the pool reports it, the process lives on.
      const admin = createPool(await poolConfig(config.store as Parameters<typeof poolConfig>[0]));
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cosigner-coordinator' AND pid <> pg_backend_pid()",
      );
      await admin.end();
      await expect.poll(() => warned, { timeout: 5000 }).toContain('an idle PostgreSQL connection was lost');
      expect(await store.ping()).toBe(true);
    } finally {
      await store.close();
    }
  });
});

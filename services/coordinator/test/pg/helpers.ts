import { randomBytes } from 'node:crypto';
import { type PostgresServer, startPostgres } from '@cosigner/testkit/postgres';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { createPool } from '../../src/pg/store.ts';

/** One real PostgreSQL server per test file, started before its tests and removed after them. */
export function usePostgres(): { server: () => PostgresServer } {
  let server: PostgresServer | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.close();
  });
  return { server: () => server! };
}

/** A fresh, empty database on `server`; its name. */
export async function freshDatabase(server: PostgresServer): Promise<string> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  await server.createDatabase(name);
  return name;
}

/** A pool on `database` (the password passed as production does: not in the URL). One pool = one "replica". */
export function poolOn(server: PostgresServer, database: string, config: pg.PoolConfig = {}): pg.Pool {
  return createPool({
    host: '127.0.0.1',
    port: server.port,
    user: server.user,
    database,
    password: server.password,
    max: 10,
    ...config,
  });
}

/** A pool on a fresh, empty database. */
export async function freshPool(server: PostgresServer, config: pg.PoolConfig = {}): Promise<pg.Pool> {
  return poolOn(server, await freshDatabase(server), config);
}

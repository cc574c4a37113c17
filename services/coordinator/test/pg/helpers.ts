import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
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

const execFileP = promisify(execFile);

/**
 * A throw-away CA and a server certificate it signed for 127.0.0.1 (subjectAltName IP), made with the openssl CLI
 * at run time (never committed), in `dir`: ca.pem, server.crt, server.key, plus other-ca.pem (a CA that signed
 * nothing here, for the refusal case).
 */
export async function makeTlsFiles(dir: string): Promise<{ ca: string; otherCa: string; cert: string; key: string }> {
  const f = (n: string) => join(dir, n);
  const ssl = (args: string[]) => execFileP('openssl', args, { cwd: dir });
  for (const ca of ['ca', 'other-ca'])
    await ssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=test ${ca}`,
      '-keyout',
      f(`${ca}.key`),
      '-out',
      f(`${ca}.pem`),
    ]);
  await ssl([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  ]);
  await writeFile(f('ext.cnf'), 'subjectAltName = IP:127.0.0.1\n');
  await ssl([
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    f('ext.cnf'),
    '-out',
    f('server.crt'),
  ]);
  return { ca: f('ca.pem'), otherCa: f('other-ca.pem'), cert: f('server.crt'), key: f('server.key') };
}

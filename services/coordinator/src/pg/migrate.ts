import { fileURLToPath } from 'node:url';
import { listMigrations } from '@cosigner/runtime/sqlite';
import type pg from 'pg';
import { coordinatorErrors } from '../errors.ts';
import { storeError } from './errors.ts';

/**
 * Versioned migrations of the coordinator's PostgreSQL schema: files `NNN_name.sql` in pg/migrations, applied in
 * order, each in its own transaction together with its row in `coordinator_schema`, so a crash leaves the
 * database at the last whole version.
 *
 * Several replicas starting at once migrate once: the runner holds a session-level advisory lock
 * (pg_advisory_lock, PostgreSQL manual 9.27.10) while it reads the version and applies what is missing; the others
 * wait on the lock, then find nothing left to do. The lock is the connection's, so a runner that dies releases it
 * with its connection. A schema newer than this code is refused before anything is written: older code must not
 * write to a layout it does not know.
 */

export const PG_MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/** The advisory lock key of coordinator migrations (any constant; it only has to differ from other users' keys). */
export const MIGRATION_LOCK_KEY = 0x636f6f72; // "coor"

/** The schema version this code writes: the number of its newest migration. */
export function latestPgVersion(dir = PG_MIGRATIONS_DIR): number {
  return listMigrations(dir).at(-1)?.version ?? 0;
}

/**
 * Bring the schema up to date, under the advisory lock. Returns the versions applied by this call (empty when
 * another replica did it, or nothing was pending).
 * @throws CosignerError COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED, COORD_STORE_UNAVAILABLE
 */
export async function migratePg(pool: pg.Pool, dir = PG_MIGRATIONS_DIR): Promise<number[]> {
  const migrations = listMigrations(dir);
  const latest = migrations.at(-1)?.version ?? 0;
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    throw storeError(e);
  }
  const applied: number[] = [];
  let broken = false;
  // See PgStore.atomically: a connection lost between two queries emits 'error' on the checked-out client.
  const onError = (): void => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS coordinator_schema (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM coordinator_schema');
    const current = rows[0]?.v ?? 0;
    if (current > latest) throw coordinatorErrors.error('COORD_NEWER_SCHEMA', { version: current, supported: latest });
    for (const m of migrations) {
      if (m.version <= current) continue;
      try {
        await client.query('BEGIN');
        await client.query(m.sql);
        await client.query('INSERT INTO coordinator_schema (version, name) VALUES ($1, $2)', [m.version, m.name]);
        await client.query('COMMIT');
      } catch (cause) {
        await client.query('ROLLBACK').catch(() => undefined);
        const err = storeError(cause);
        if (coordinatorErrors.is(err, 'COORD_STORE_UNAVAILABLE')) throw err;
        throw coordinatorErrors.error('COORD_MIGRATION_FAILED', { migration: m.name }, { cause });
      }
      applied.push(m.version);
    }
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
  } catch (e) {
    broken = true;
    throw coordinatorErrors.is(e) ? e : storeError(e);
  } finally {
    // A connection that failed mid-way may still hold the session lock: destroy it rather than return it to the pool.
    client.off('error', onError);
    client.release(broken);
  }
  return applied;
}

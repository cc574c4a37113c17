import type { Logger } from '@cosigner/runtime/logger';
import type { CoordinatorConfig } from './config.ts';
import { poolConfig } from './pg/settings.ts';
import { createPool, PgStore } from './pg/store.ts';
import { type CoordinatorStore, openSqliteStore } from './store.ts';

/**
 * The store the config names (`store`): the embedded SQLite file under `dataDir` (the default), or the PostgreSQL
 * database, its schema brought up to date first. Used by the service and by every command that writes state
 * (`enroll`, `api-key create`), so they all act on the same database.
 * @throws CosignerError COORD_BAD_CONFIG (password or TLS file), COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED,
 *   COORD_STORE_UNAVAILABLE (PostgreSQL not reachable at start)
 */
export async function openStore(config: Readonly<CoordinatorConfig>, logger?: Logger): Promise<CoordinatorStore> {
  if (config.store.type === 'sqlite') return openSqliteStore(config.dataDir);
  const pool = createPool(await poolConfig(config.store), (e) =>
    // An idle connection dropped (server restarted): the pool opens a new one at the next query.
    logger?.warn({ err: e.message }, 'an idle PostgreSQL connection was lost'),
  );
  return PgStore.open(pool);
}

import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@cosigner/runtime/logger';
import { openMigratedDatabase } from '@cosigner/runtime/sqlite';
import type Database from 'better-sqlite3';
import { coordinatorErrors } from '../errors.ts';
import type { AwaitableRepository, FrostRecords, FrostRepository } from '../store.ts';
import { type RefreshRow, refreshFromRow } from './refresh-store.ts';
import { type DkgRow, dkgFromRow } from './store.ts';

/**
 * The import of an older coordinator's FROST files (docs/architecture.md "Where FROST records live"). Before
 * SQLite migration 008 / PostgreSQL migration 004, a coordinator kept its FROST records in two SQLite files of its
 * data directory: `frost.sqlite` (key generations, groups, proposal bindings) and `frost-refresh.sqlite` (share
 * refreshes). At start, when either is there and the store holds no FROST record, both are read (their schema
 * brought up to date with the migrations they were written with, kept in legacy-migrations/ and
 * legacy-refresh-migrations/), written into the store in one transaction, and renamed `*.imported` (never
 * deleted: they are the operator's evidence). When the store holds FROST records already, the files are left
 * where they are and a warning says so: two sets of groups are never merged.
 */

export const LEGACY_DKG_FILE = 'frost.sqlite';
export const LEGACY_REFRESH_FILE = 'frost-refresh.sqlite';

const DKG_MIGRATIONS = fileURLToPath(new URL('./legacy-migrations/', import.meta.url));
const REFRESH_MIGRATIONS = fileURLToPath(new URL('./legacy-refresh-migrations/', import.meta.url));

function open(path: string, migrationsDir: string): Database.Database {
  return openMigratedDatabase(path, {
    migrationsDir,
    newerSchema: (d) => coordinatorErrors.error('COORD_NEWER_SCHEMA', d),
    migrationFailed: (d, cause) => coordinatorErrors.error('COORD_MIGRATION_FAILED', d, { cause }),
  });
}

/** A record a stopped coordinator left running ends failed, as that coordinator would have recorded it at start. */
function failIfRunning<R extends { status: string; error: unknown; updatedAt: number }>(
  r: R,
  now: number,
  code: string,
  message: string,
): R {
  return r.status === 'running'
    ? { ...r, status: 'failed', error: { code, message, culprits: [] }, updatedAt: now }
    : r;
}

/**
 * The records of the old files in `dataDir` (undefined when there are none). A session the old coordinator left
 * running could not go on after its stop (it would have recorded it failed at its next start): it is recorded
 * failed here, as that coordinator would have.
 * @throws COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED (a file that is not one of these databases)
 */
export function readLegacyFrostFiles(dataDir: string): FrostRecords | undefined {
  const dkgPath = join(dataDir, LEGACY_DKG_FILE);
  const refreshPath = join(dataDir, LEGACY_REFRESH_FILE);
  if (!existsSync(dkgPath) && !existsSync(refreshPath)) return undefined;
  const records: FrostRecords = { dkgs: [], proposals: [], refreshes: [] };
  const now = Date.now();
  if (existsSync(dkgPath)) {
    const db = open(dkgPath, DKG_MIGRATIONS);
    try {
      records.dkgs = (db.prepare('SELECT * FROM frost_dkg ORDER BY created_at, id').all() as DkgRow[])
        .map(dkgFromRow)
        .map((r) =>
          failIfRunning(
            r,
            now,
            'COORD_FROST_DKG_TIMEOUT',
            'The coordinator stopped during this key generation; start a new one.',
          ),
        );
      records.proposals = (
        db.prepare('SELECT * FROM frost_proposals ORDER BY created_at, proposal_id').all() as {
          proposal_id: string;
          address: string;
          created_at: number;
        }[]
      ).map((r) => ({ proposalId: r.proposal_id, address: r.address, createdAt: r.created_at }));
    } finally {
      db.close();
    }
  }
  if (existsSync(refreshPath)) {
    const db = open(refreshPath, REFRESH_MIGRATIONS);
    try {
      records.refreshes = (db.prepare('SELECT * FROM frost_refresh ORDER BY created_at, id').all() as RefreshRow[])
        .map(refreshFromRow)
        .map((r) =>
          failIfRunning(
            r,
            now,
            'COORD_FROST_REFRESH_TIMEOUT',
            'The coordinator stopped during this share refresh; every node keeps its current share.',
          ),
        );
    } finally {
      db.close();
    }
  }
  return records;
}

/** Rename an imported file and its WAL companions to `*.imported`. */
function retire(path: string): void {
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(path + suffix)) renameSync(path + suffix, `${path}.imported${suffix}`);
  }
}

/**
 * Import the old files of `dataDir` into `store` once (see above). Returns what happened: `none` (no old file),
 * `imported` (with the counts), `kept` (the store holds FROST records already; the files stay, unread).
 * @throws COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED, COORD_STORE_UNAVAILABLE
 */
export async function importLegacyFrostFiles(
  dataDir: string,
  store: AwaitableRepository<Pick<FrostRepository, 'importFrostRecords'>>,
  logger?: Logger,
): Promise<{ outcome: 'none' | 'kept' } | { outcome: 'imported'; dkgs: number; proposals: number; refreshes: number }> {
  const records = readLegacyFrostFiles(dataDir);
  if (!records) return { outcome: 'none' };
  // An older coordinator created both files at every start, FROST used or not: empty ones are retired unasked.
  const empty = records.dkgs.length + records.proposals.length + records.refreshes.length === 0;
  if (!empty && !(await store.importFrostRecords(records))) {
    logger?.warn(
      { dataDir, files: [LEGACY_DKG_FILE, LEGACY_REFRESH_FILE] },
      'old FROST files left unread: the store holds FROST records already (they were imported before, or by another replica)',
    );
    return { outcome: 'kept' };
  }
  // Renamed only once the import committed: a crash in between imports nothing twice (the store is not empty then)
  // and leaves the files for the operator.
  retire(join(dataDir, LEGACY_DKG_FILE));
  retire(join(dataDir, LEGACY_REFRESH_FILE));
  const counts = {
    dkgs: records.dkgs.length,
    proposals: records.proposals.length,
    refreshes: records.refreshes.length,
  };
  logger?.info({ dataDir, ...counts }, 'FROST records of the old per-process files imported into the store');
  return { outcome: 'imported', ...counts };
}

import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { coordinatorErrors } from '../errors.ts';
import { importLegacyFrostFiles } from '../frost/legacy.ts';
import { REFRESH_COLUMNS } from '../frost/refresh-store.ts';
import { DKG_COLUMNS } from '../frost/store.ts';
import { openCoordinatorDb, openSqliteStoreFile } from '../store.ts';
import type { PgStore } from './store.ts';

/**
 * Copy a coordinator's embedded SQLite database into an empty PostgreSQL database: proposals with their
 * signatures, decisions and auth-entry signatures, the event stream, enrolled nodes with their counters and
 * misbehaviour records, API keys (their hashes: keys are never stored), and the FROST records (key generations
 * and groups, proposal bindings, share refreshes; the old per-process FROST files of the data directory, if still
 * there, are imported into the SQLite file first, as a coordinator does at start). Row numbers (`n`, event `seq`) are
 * kept, so list cursors and event-stream positions that clients hold stay valid, and the identity sequences
 * continue after them.
 *
 * It refuses to run while a coordinator holds the SQLite file: a coordinator keeps its database open for its whole
 * life, and in WAL mode every open connection holds a shared lock on the file (SQLite "File Locking And
 * Concurrency", wal.html section 8), so an exclusive lock (locking_mode=EXCLUSIVE, BEGIN EXCLUSIVE, no busy wait)
 * is granted only when no coordinator, CLI or other reader has it open. The copy keeps that lock to its end, so a
 * coordinator started meanwhile cannot open the file (it fails after its busy timeout) and nothing changes under
 * the copy. Everything goes into PostgreSQL in one transaction: a failure leaves the target empty.
 */

export interface CopyReport {
  proposals: number;
  signatures: number;
  decisions: number;
  authEntries: number;
  authSignatures: number;
  events: number;
  nodes: number;
  misbehaviours: number;
  apiKeys: number;
  /** Callbacks still to deliver or given up on (the outbox). */
  callbacks: number;
  /** FROST key generations (with the groups they made), proposal bindings and share refreshes. */
  frostGroups: number;
  frostProposals: number;
  frostRefreshes: number;
}

/** Source table -> target table, the columns copied (same names on both sides), and the order rows are read in. */
export const COPIED_TABLES: readonly {
  key: keyof CopyReport;
  table: string;
  columns: string[];
  order: string;
  identity?: string;
}[] = [
  {
    key: 'proposals',
    table: 'proposals',
    columns: [
      'n',
      'id',
      'idempotency_key',
      'api_key_id',
      'kind',
      'xdr',
      'hash',
      'network',
      'status',
      'status_reason',
      'requirements',
      'accounts',
      'submit',
      'submit_follow_up',
      'callback_url',
      'note',
      'max_time',
      'envelope',
      'result',
      'created_at',
      'updated_at',
      'signed_at',
      'follow_up_due',
    ],
    order: 'n',
    identity: 'n',
  },
  {
    key: 'signatures',
    table: 'signatures',
    columns: ['proposal_id', 'signer_key', 'node_id', 'signature', 'created_at'],
    order: 'rowid',
  },
  {
    key: 'decisions',
    table: 'decisions',
    columns: ['proposal_id', 'node_id', 'outcome', 'reasons', 'created_at'],
    order: 'rowid',
  },
  {
    key: 'authEntries',
    table: 'auth_entries',
    columns: ['proposal_id', 'entry_index', 'entry', 'signed'],
    order: 'proposal_id, entry_index',
  },
  {
    key: 'authSignatures',
    table: 'auth_signatures',
    columns: ['proposal_id', 'entry_index', 'signer_key', 'node_id', 'payload', 'signature', 'created_at'],
    order: 'rowid',
  },
  {
    key: 'events',
    table: 'events',
    columns: ['seq', 'proposal_id', 'type', 'data', 'created_at'],
    order: 'seq',
    identity: 'seq',
  },
  {
    key: 'callbacks',
    table: 'callback_outbox',
    columns: ['id', 'event_seq', 'url', 'state', 'attempts', 'next_at', 'claimed_by', 'claimed_until', 'last_error'],
    order: 'id',
    identity: 'id',
  },
  {
    key: 'nodes',
    table: 'nodes',
    columns: [
      'id',
      'identity_key',
      'stellar_key',
      'enrolled_at',
      'last_seen',
      'last_latency_ms',
      'approvals',
      'rejections',
      'misbehaviours',
    ],
    order: 'id',
  },
  {
    key: 'misbehaviours',
    table: 'misbehaviours',
    columns: ['seq', 'node_id', 'proposal_id', 'kind', 'detail', 'created_at'],
    order: 'seq',
    identity: 'seq',
  },
  {
    key: 'apiKeys',
    table: 'api_keys',
    columns: ['id', 'hash', 'scopes', 'label', 'created_at', 'revoked_at'],
    order: 'id',
  },
  { key: 'frostGroups', table: 'frost_dkg', columns: [...DKG_COLUMNS], order: 'created_at, id' },
  {
    key: 'frostProposals',
    table: 'frost_proposals',
    columns: ['proposal_id', 'address', 'created_at'],
    order: 'created_at, proposal_id',
  },
  { key: 'frostRefreshes', table: 'frost_refresh', columns: [...REFRESH_COLUMNS], order: 'created_at, id' },
];

/** Rows per INSERT: one statement carries a JSON array of rows (json_populate_recordset). */
const BATCH = 500;

/**
 * Hold the SQLite file exclusively, or refuse: the file is open elsewhere (a live coordinator).
 * @throws CosignerError COORD_COPY_SOURCE_LIVE
 */
function lockExclusive(path: string): Database.Database {
  const db = new Database(path, { fileMustExist: true, timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    return db;
  } catch (cause) {
    db.close();
    if ((cause as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
      throw coordinatorErrors.error('COORD_COPY_SOURCE_LIVE', { path }, { cause });
    }
    throw cause;
  }
}

/**
 * Check, without changing anything, that the SQLite file exists and no process has it open (see above).
 * @throws CosignerError COORD_BAD_CONFIG (no such file), COORD_COPY_SOURCE_LIVE
 */
export function assertSourceIdle(sqlitePath: string): void {
  if (!existsSync(sqlitePath)) {
    throw coordinatorErrors.error(
      'COORD_BAD_CONFIG',
      { field: 'dataDir', path: sqlitePath },
      { message: `No coordinator database at ${sqlitePath}.` },
    );
  }
  lockExclusive(sqlitePath).close();
}

/**
 * Copy the coordinator state in the SQLite file at `sqlitePath` (schema brought up to date first) into the empty
 * PostgreSQL database behind `target`. Returns how many rows of each kind were copied.
 * @throws CosignerError COORD_BAD_CONFIG (no such file), COORD_COPY_SOURCE_LIVE, COORD_COPY_TARGET_NOT_EMPTY,
 *   COORD_NEWER_SCHEMA (a file from a newer coordinator), COORD_STORE_UNAVAILABLE
 */
export async function copySqliteToPg(sqlitePath: string, target: PgStore): Promise<CopyReport> {
  // Refuse a live coordinator before touching the file; then bring an older file's schema up to date (the same
  // migrations the coordinator runs at start) and take the lock for the copy itself.
  assertSourceIdle(sqlitePath);
  openCoordinatorDb(sqlitePath).close();
  const lite = openSqliteStoreFile(sqlitePath);
  try {
    await importLegacyFrostFiles(dirname(sqlitePath), lite);
  } finally {
    lite.close();
  }
  const source = lockExclusive(sqlitePath);
  try {
    return await target.atomically(async (tx) => {
      const counts = (
        await tx.query<{ n: number }>(
          `SELECT (SELECT count(*) FROM proposals) + (SELECT count(*) FROM events) + (SELECT count(*) FROM nodes)
             + (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM misbehaviours)
             + (SELECT count(*) FROM frost_dkg) + (SELECT count(*) FROM frost_refresh) AS n`,
        )
      ).rows[0]!.n;
      if (counts > 0) throw coordinatorErrors.error('COORD_COPY_TARGET_NOT_EMPTY', { rows: counts });
      const report = {} as CopyReport;
      for (const t of COPIED_TABLES) {
        let copied = 0;
        let batch: Record<string, unknown>[] = [];
        const flush = async (): Promise<void> => {
          if (batch.length === 0) return;
          const cols = t.columns.join(', ');
          await tx.query(
            `INSERT INTO ${t.table} (${cols}) OVERRIDING SYSTEM VALUE
               SELECT ${cols} FROM json_populate_recordset(NULL::${t.table}, $1::json)`,
            [JSON.stringify(batch)],
          );
          copied += batch.length;
          batch = [];
        };
        const rows = source.prepare(`SELECT ${t.columns.join(', ')} FROM ${t.table} ORDER BY ${t.order}`);
        for (const row of rows.iterate() as IterableIterator<Record<string, unknown>>) {
          // SQLite keeps booleans as 0/1.
          if (t.table === 'proposals') row.submit = row.submit === 1;
          batch.push(row);
          if (batch.length >= BATCH) await flush();
        }
        await flush();
        if (t.identity) {
          // Continue the identity after the copied numbers (setval's third argument: whether max was used).
          await tx.query(
            `SELECT setval(pg_get_serial_sequence('${t.table}', '${t.identity}'),
               COALESCE((SELECT max(${t.identity}) FROM ${t.table}), 1),
               (SELECT max(${t.identity}) FROM ${t.table}) IS NOT NULL)`,
          );
        }
        report[t.key] = copied;
      }
      return report;
    });
  } finally {
    source.close();
  }
}

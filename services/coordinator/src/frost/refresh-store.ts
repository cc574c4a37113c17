import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GroupPublic } from '@cosigner/frost/suite';
import type { DkgRosterEntry, SignedStatement } from '@cosigner/protocol/frost-dkg';
import { openMigratedDatabase } from '@cosigner/runtime/sqlite';
import type Database from 'better-sqlite3';
import { coordinatorErrors } from '../errors.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./refresh-migrations/', import.meta.url));

export type RefreshStatus = 'running' | 'adopted' | 'failed';
export type RefreshStep = 'start' | 'round1' | 'round2' | 'round3' | 'adopt';

export interface RefreshError {
  code: string;
  message: string;
  reportedBy?: string;
  culprits: string[];
  nodeCode?: string;
  unreachable?: string[];
  /** decideRefresh: participants that did not report, and those whose report differs from the most common one. */
  missing?: string[];
  disagreeing?: string[];
}

export interface RefreshRecord {
  id: string;
  address: string;
  threshold: number;
  participants: DkgRosterEntry[];
  roster: string;
  status: RefreshStatus;
  step: RefreshStep;
  oldDigest: string;
  digest: string | null;
  group: GroupPublic | null;
  transcript: string | null;
  /** Every participant's signed report, once adopted: relayed with `adopt`, so each node sees that all agreed. */
  reports: SignedStatement[] | null;
  error: RefreshError | null;
  /** Participants that acknowledged the outcome. */
  acked: string[];
  createdBy: string | null;
  createdAt: number;
  updatedAt: number;
}

interface Row {
  id: string;
  address: string;
  threshold: number;
  participants: string;
  roster: string;
  status: RefreshStatus;
  step: RefreshStep;
  old_digest: string;
  digest: string | null;
  group_public: string | null;
  transcript: string | null;
  reports: string | null;
  error: string | null;
  acked: string;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

/**
 * The coordinator's record of FROST share refreshes (frost-refresh.sqlite in the data directory). Every write
 * commits and syncs alone: the adoption in particular is durable before any node is told to switch.
 * @throws COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED
 */
export class FrostRefreshStore {
  readonly #db: Database.Database;

  constructor(path: string) {
    this.#db = openMigratedDatabase(path, {
      migrationsDir: MIGRATIONS_DIR,
      newerSchema: (d) => coordinatorErrors.error('COORD_NEWER_SCHEMA', d),
      migrationFailed: (d, cause) => coordinatorErrors.error('COORD_MIGRATION_FAILED', d, { cause }),
    });
  }

  static at(dataDir: string): FrostRefreshStore {
    return new FrostRefreshStore(join(dataDir, 'frost-refresh.sqlite'));
  }

  insert(r: RefreshRecord): void {
    this.#db
      .prepare(
        `INSERT INTO frost_refresh (id, address, threshold, participants, roster, status, step, old_digest, digest,
           group_public, transcript, reports, error, acked, created_by, created_at, updated_at)
         VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
      )
      .run(
        r.id,
        r.address,
        r.threshold,
        JSON.stringify(r.participants),
        r.roster,
        r.status,
        r.step,
        r.oldDigest,
        r.digest,
        r.group && JSON.stringify(r.group),
        r.transcript,
        r.reports && JSON.stringify(r.reports),
        r.error && JSON.stringify(r.error),
        JSON.stringify(r.acked),
        r.createdBy,
        r.createdAt,
        r.updatedAt,
      );
  }

  setStep(id: string, step: RefreshStep, at = Date.now()): void {
    this.#db
      .prepare(`UPDATE frost_refresh SET step = ?, updated_at = ? WHERE id = ? AND status = 'running'`)
      .run(step, at, id);
  }

  /** The decision to switch: durable before any node hears it. */
  adopt(
    id: string,
    v: { digest: string; group: GroupPublic; transcript: string; reports: SignedStatement[] },
    at = Date.now(),
  ): void {
    this.#db
      .prepare(
        `UPDATE frost_refresh SET status = 'adopted', step = 'adopt', digest = ?, group_public = ?, transcript = ?,
           reports = ?, updated_at = ? WHERE id = ? AND status = 'running'`,
      )
      .run(v.digest, JSON.stringify(v.group), v.transcript, JSON.stringify(v.reports), at, id);
  }

  fail(id: string, error: RefreshError, at = Date.now()): void {
    this.#db
      .prepare(
        `UPDATE frost_refresh SET status = 'failed', error = ?, updated_at = ? WHERE id = ? AND status = 'running'`,
      )
      .run(JSON.stringify(error), at, id);
  }

  /** A participant acknowledged the outcome (idempotent). */
  ack(id: string, nodeId: string, at = Date.now()): void {
    this.#db.transaction(() => {
      const r = this.get(id);
      if (!r || r.acked.includes(nodeId)) return;
      this.#db
        .prepare('UPDATE frost_refresh SET acked = ?, updated_at = ? WHERE id = ?')
        .run(JSON.stringify([...r.acked, nodeId].sort()), at, id);
    })();
  }

  get(id: string): RefreshRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM frost_refresh WHERE id = ?').get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** Newest first; of one group when `address` is given. */
  list(address?: string, limit = 100): RefreshRecord[] {
    const rows = (
      address === undefined
        ? this.#db.prepare('SELECT * FROM frost_refresh ORDER BY created_at DESC LIMIT ?').all(limit)
        : this.#db
            .prepare('SELECT * FROM frost_refresh WHERE address = ? ORDER BY created_at DESC LIMIT ?')
            .all(address, limit)
    ) as Row[];
    return rows.map(fromRow);
  }

  running(): RefreshRecord[] {
    return (this.#db.prepare(`SELECT * FROM frost_refresh WHERE status = 'running'`).all() as Row[]).map(fromRow);
  }

  /** Decided refreshes some participant has not acknowledged yet: what a node is told again when it syncs. */
  unacknowledged(): RefreshRecord[] {
    return (
      this.#db
        .prepare(`SELECT * FROM frost_refresh WHERE status != 'running' ORDER BY created_at DESC LIMIT 256`)
        .all() as Row[]
    )
      .map(fromRow)
      .filter((r) => r.acked.length < r.participants.length);
  }

  close(): void {
    this.#db.close();
  }
}

function fromRow(r: Row): RefreshRecord {
  return {
    id: r.id,
    address: r.address,
    threshold: r.threshold,
    participants: JSON.parse(r.participants) as DkgRosterEntry[],
    roster: r.roster,
    status: r.status,
    step: r.step,
    oldDigest: r.old_digest,
    digest: r.digest,
    group: r.group_public === null ? null : (JSON.parse(r.group_public) as GroupPublic),
    transcript: r.transcript,
    reports: r.reports === null ? null : (JSON.parse(r.reports) as SignedStatement[]),
    error: r.error === null ? null : (JSON.parse(r.error) as RefreshError),
    acked: JSON.parse(r.acked) as string[],
    createdBy: r.created_by,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GroupPublic } from '@cosigner/frost/suite';
import type { DkgRosterEntry } from '@cosigner/protocol/frost-dkg';
import { openMigratedDatabase } from '@cosigner/runtime/sqlite';
import type Database from 'better-sqlite3';
import { coordinatorErrors } from '../errors.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

export type DkgStatus = 'running' | 'ready' | 'failed';
export type DkgStep = 'start' | 'round1' | 'round2' | 'round3' | 'confirm';

export interface DkgError {
  code: string;
  message: string;
  /** The node whose reply ended the session, when one did. */
  reportedBy?: string;
  /** Who is to blame, as far as the protocol can tell: node ids, or `coordinator` when a node blamed the relay. */
  culprits: string[];
  /** The node's own error code, when a node ended the session (e.g. FROST_DKG_BAD_SHARE). */
  nodeCode?: string;
  /** Participants the coordinator could not reach at a step (not blamed: a node may be restarting). */
  unreachable?: string[];
}

export interface DkgRecord {
  id: string;
  threshold: number;
  participants: DkgRosterEntry[];
  roster: string;
  status: DkgStatus;
  step: DkgStep;
  address: string | null;
  group: GroupPublic | null;
  transcript: string | null;
  error: DkgError | null;
  createdBy: string | null;
  createdAt: number;
  updatedAt: number;
}

interface Row {
  id: string;
  threshold: number;
  participants: string;
  roster: string;
  status: DkgStatus;
  step: DkgStep;
  address: string | null;
  group_public: string | null;
  transcript: string | null;
  error: string | null;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

/**
 * The coordinator's record of FROST key generations (its own SQLite file in the data directory, so this feature
 * adds no migration to the proposal store). Every write commits and syncs alone: key generation is rare.
 * @throws COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED
 */
export class FrostDkgStore {
  readonly #db: Database.Database;

  constructor(path: string) {
    this.#db = openMigratedDatabase(path, {
      migrationsDir: MIGRATIONS_DIR,
      newerSchema: (d) => coordinatorErrors.error('COORD_NEWER_SCHEMA', d),
      migrationFailed: (d, cause) => coordinatorErrors.error('COORD_MIGRATION_FAILED', d, { cause }),
    });
  }

  static at(dataDir: string): FrostDkgStore {
    return new FrostDkgStore(join(dataDir, 'frost.sqlite'));
  }

  insert(r: DkgRecord): void {
    this.#db
      .prepare(
        `INSERT INTO frost_dkg (id, threshold, participants, roster, status, step, address, group_public, transcript,
           error, created_by, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
      )
      .run(
        r.id,
        r.threshold,
        JSON.stringify(r.participants),
        r.roster,
        r.status,
        r.step,
        r.address,
        r.group && JSON.stringify(r.group),
        r.transcript,
        r.error && JSON.stringify(r.error),
        r.createdBy,
        r.createdAt,
        r.updatedAt,
      );
  }

  /** Record the step sent (running sessions only). */
  setStep(id: string, step: DkgStep, at = Date.now()): void {
    this.#db
      .prepare(`UPDATE frost_dkg SET step = ?, updated_at = ? WHERE id = ? AND status = 'running'`)
      .run(step, at, id);
  }

  ready(id: string, v: { address: string; group: GroupPublic; transcript: string }, at = Date.now()): void {
    this.#db
      .prepare(
        `UPDATE frost_dkg SET status = 'ready', address = ?, group_public = ?, transcript = ?, updated_at = ?
         WHERE id = ? AND status = 'running'`,
      )
      .run(v.address, JSON.stringify(v.group), v.transcript, at, id);
  }

  /**
   * A share refresh of the ready group `address` was adopted: the same key, a new commitment and new verifying
   * shares (and the refresh's transcript), replacing the old public data.
   */
  refreshed(address: string, v: { group: GroupPublic; transcript: string }, at = Date.now()): void {
    this.#db
      .prepare(
        `UPDATE frost_dkg SET group_public = ?, transcript = ?, updated_at = ? WHERE address = ? AND status = 'ready'`,
      )
      .run(JSON.stringify(v.group), v.transcript, at, address);
  }

  fail(id: string, error: DkgError, at = Date.now()): void {
    this.#db
      .prepare(`UPDATE frost_dkg SET status = 'failed', error = ?, updated_at = ? WHERE id = ? AND status = 'running'`)
      .run(JSON.stringify(error), at, id);
  }

  /** By session id or by group address. */
  get(idOrAddress: string): DkgRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM frost_dkg WHERE id = ? OR address = ?').get(idOrAddress, idOrAddress) as
      | Row
      | undefined;
    return row && fromRow(row);
  }

  list(limit = 100): DkgRecord[] {
    return (this.#db.prepare('SELECT * FROM frost_dkg ORDER BY created_at DESC LIMIT ?').all(limit) as Row[]).map(
      fromRow,
    );
  }

  /** Record which group signs a FROST proposal (before the proposal row is inserted). */
  bindProposal(proposalId: string, address: string, at = Date.now()): void {
    this.#db
      .prepare('INSERT OR REPLACE INTO frost_proposals (proposal_id, address, created_at) VALUES (?, ?, ?)')
      .run(proposalId, address, at);
  }

  /** The group address a FROST proposal names, if any. */
  proposalGroup(proposalId: string): string | undefined {
    const row = this.#db.prepare('SELECT address FROM frost_proposals WHERE proposal_id = ?').get(proposalId) as
      | { address: string }
      | undefined;
    return row?.address;
  }

  running(): DkgRecord[] {
    return (this.#db.prepare(`SELECT * FROM frost_dkg WHERE status = 'running'`).all() as Row[]).map(fromRow);
  }

  close(): void {
    this.#db.close();
  }
}

function fromRow(r: Row): DkgRecord {
  return {
    id: r.id,
    threshold: r.threshold,
    participants: JSON.parse(r.participants) as DkgRosterEntry[],
    roster: r.roster,
    status: r.status,
    step: r.step,
    address: r.address,
    group: r.group_public === null ? null : (JSON.parse(r.group_public) as GroupPublic),
    transcript: r.transcript,
    error: r.error === null ? null : (JSON.parse(r.error) as DkgError),
    createdBy: r.created_by,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GroupPublic } from '@cosigner/frost/suite';
import type { SignedStatement } from '@cosigner/protocol/frost-dkg';
import { GroupCommit } from '@cosigner/runtime/group-commit';
import { openMigratedDatabase } from '@cosigner/runtime/sqlite';
import type Database from 'better-sqlite3';
import { coordinatorErrors } from './errors.ts';
import type { RefreshError, RefreshRecord, RefreshRow, RefreshStep } from './frost/refresh-store.ts';
import { REFRESH_COLUMNS, refreshFromRow, refreshParams } from './frost/refresh-store.ts';
import type { DkgError, DkgRecord, DkgRow, DkgStep, FrostProposalBinding } from './frost/store.ts';
import { DKG_COLUMNS, dkgFromRow, dkgParams } from './frost/store.ts';
import type {
  ApiKeyRecord,
  AuthEntryRecord,
  AuthSignatureRecord,
  CallbackRecord,
  DecisionRecord,
  EventRecord,
  MisbehaviourRecord,
  NodeRecord,
  ProposalRecord,
  ProposalStatus,
  SignatureRecord,
  SubmissionResult,
} from './records.ts';
import * as dbRows from './rows.ts';

export type * from './records.ts';

/**
 * The coordinator's durable state behind repository interfaces, so a PostgreSQL implementation can serve
 * several coordinator replicas later (docs/architecture.md "State"). The SQLite implementation below is the
 * embedded default: WAL journal, synchronous=FULL (an accepted proposal survives power loss, not only a
 * process crash), numbered migrations, files readable by their owner only.
 */

export const OPEN_STATUSES: readonly ProposalStatus[] = ['pending', 'signed'];
export const TERMINAL_STATUSES: readonly ProposalStatus[] = ['submitted', 'failed', 'rejected', 'expired', 'cancelled'];

export interface ProposalPatch {
  statusReason?: string | null;
  envelope?: string;
  result?: SubmissionResult;
  signedAt?: number;
  /** A Soroban round's entries with their signatures, in entry order (written in the same transaction). */
  signedEntries?: readonly string[];
  /** A follow-up proposal is still to be opened for this row (kinds/soroban-tx.ts); cleared by `followUpDone`. */
  followUpDue?: true;
}

/** What a verified approval leaves: its signature over the hash, or its signatures over auth entry payloads. */
export interface ApprovalRows {
  signatures?: readonly SignatureRecord[];
  authSignatures?: readonly AuthSignatureRecord[];
}

export interface ProposalRepository {
  /**
   * Insert unless the idempotency key exists; returns the stored row and whether it is new. One transaction.
   * `authEntries`: a Soroban round's entries (base64), kept in order beside the row.
   */
  insertProposal(rec: ProposalRecord, authEntries?: readonly string[]): { proposal: ProposalRecord; created: boolean };
  /** A Soroban round's entries in order (empty for a transaction proposal). */
  authEntries(proposalId: string): AuthEntryRecord[];
  getProposal(id: string): ProposalRecord | undefined;
  getByIdempotencyKey(key: string): ProposalRecord | undefined;
  listProposals(q: { status?: ProposalStatus; limit: number; before?: number }): {
    items: ProposalRecord[];
    next: number | null;
  };
  /**
   * Proposals matching one search term, newest first: an exact transaction hash (64 hex), an exact idempotency
   * key, or an account (G...) that must sign. A full scan over the table; meant for a person's console search.
   */
  searchProposals(term: string, limit: number): ProposalRecord[];
  /** Pending proposals, and signed ones still to be submitted or whose follow-up is still to be opened. */
  openProposals(): ProposalRecord[];
  countOpen(): number;
  /** Compare-and-set on the status: false when the row was not in one of `from` (someone else moved it). */
  transition(id: string, from: readonly ProposalStatus[], to: ProposalStatus, patch?: ProposalPatch): boolean;
  setResult(id: string, result: SubmissionResult): void;
  /** The follow-up of a signed row exists, was found unneeded or its failure was reported: the row is closed. */
  followUpDone(id: string): void;
  /** Keeps the first signature per (proposal, signer): adding twice is harmless. */
  addSignature(rec: SignatureRecord): boolean;
  signatures(proposalId: string): SignatureRecord[];
  recordDecision(rec: DecisionRecord): void;
  decisions(proposalId: string): DecisionRecord[];
  /** Keep a verified auth-entry signature; false when that signer already signed that entry. */
  addAuthSignature(rec: AuthSignatureRecord): boolean;
  authSignatures(proposalId: string): AuthSignatureRecord[];
  /**
   * A node's approval: its decision, the verified rows it carries and, when one of them is new, the node's
   * approval counter. The round engine calls it inside the decision's grouped commit.
   */
  recordApproval(decision: DecisionRecord, rows: ApprovalRows): boolean;
  /** A node's decision that carries no signature (reject, hold, unavailable) and, for a reject, its counter. */
  recordRefusal(decision: DecisionRecord): void;
}

/** How a delivery try ended: gone (2xx), tried again at `nextAt`, or given up (kept as failed). */
export type CallbackOutcome =
  | { state: 'delivered' }
  | { state: 'retry'; attempts: number; nextAt: number; error: string }
  | { state: 'failed'; attempts: number; error: string };

export interface EventRepository {
  /**
   * Store an event; with `callbackUrl`, also its callback in the outbox, in the same commit (one transaction), so a
   * callback is never lost with the process that emitted its event.
   */
  appendEvent(
    proposalId: string | null,
    type: string,
    data: Record<string, unknown>,
    at: number,
    callbackUrl?: string | null,
  ): EventRecord;
  eventsSince(seq: number, limit: number): EventRecord[];
  /** One proposal's events in order, at most `limit` (index events_proposal). */
  eventsOf(proposalId: string, limit: number): EventRecord[];
  /**
   * Pending callbacks due at `now`, oldest first, that no other holder's claim covers, claimed by `holder` until
   * `now + claimMs`. SQLite: one process owns the file, so nothing is written (the caller keeps its own in-flight
   * set); PostgreSQL: claimed with FOR UPDATE SKIP LOCKED, so two replicas never take the same row at once.
   */
  claimCallbacks(holder: string, now: number, claimMs: number, limit: number): CallbackRecord[];
  /** Record a try's outcome; a row another holder claimed since (our claim lapsed) is left alone. */
  settleCallback(id: number, holder: string, outcome: CallbackOutcome): void;
  /** Callbacks given up on (state failed), newest first. */
  failedCallbacks(limit: number): (CallbackRecord & { error: string | null })[];
}

export interface NodeRepository {
  /** Insert or replace an enrolment (same id: new keys; the counters are kept). */
  enrollNode(n: { id: string; identityKey: string; stellarKey: string }, at: number): void;
  getNode(id: string): NodeRecord | undefined;
  listNodes(): NodeRecord[];
  touchNode(id: string, at: number, latencyMs?: number): void;
  countNode(id: string, field: 'approvals' | 'rejections' | 'misbehaviours'): void;
  recordMisbehaviour(rec: MisbehaviourRecord): void;
  misbehaviours(nodeId: string, limit: number): MisbehaviourRecord[];
}

export interface ApiKeyRepository {
  insertApiKey(rec: ApiKeyRecord): void;
  getApiKey(id: string): ApiKeyRecord | undefined;
  countApiKeys(): number;
}

/** Every FROST record at once: what the import of the old per-process files and copy-to-postgres move. */
export interface FrostRecords {
  dkgs: DkgRecord[];
  proposals: FrostProposalBinding[];
  refreshes: RefreshRecord[];
}

/**
 * The coordinator's FROST records (docs/architecture.md "Where FROST records live"): key generations and the groups
 * they made, the group each FROST proposal is bound to, share refreshes and their adoption record. In the one store,
 * so every replica on a shared PostgreSQL sees every group.
 *
 * A relay (a key generation, a refresh) is driven by the replica that started it; its outcome is written by a
 * compare-and-set on `status = 'running'` (`readyFrostDkg`, `failFrostDkg`, `adoptFrostRefresh`,
 * `failFrostRefresh`), so when two writers race (the driving replica deciding, another replica failing the session
 * it found abandoned) exactly one outcome is recorded and the loser learns it lost (false) and reads the winner's.
 */
export interface FrostRepository {
  insertFrostDkg(r: DkgRecord): void;
  /** Record the step sent (running sessions only); its `updated_at` is the driving relay's heartbeat. */
  setFrostDkgStep(id: string, step: DkgStep, at: number): void;
  /** running -> ready with the agreed group; false when the session was no longer running. */
  readyFrostDkg(id: string, v: { address: string; group: GroupPublic; transcript: string }, at: number): boolean;
  /**
   * running -> failed; false when it was no longer running. With `staleBefore`, only when its last step was sent
   * before that time (an abandoned session: a step sent meanwhile by its driving replica keeps it alive).
   */
  failFrostDkg(id: string, error: DkgError, at: number, staleBefore?: number): boolean;
  /** By session id or by group address. */
  getFrostDkg(idOrAddress: string): DkgRecord | undefined;
  /** Newest first. */
  listFrostDkgs(limit: number): DkgRecord[];
  runningFrostDkgs(): DkgRecord[];
  /** Record which group signs a FROST proposal (before the proposal row is inserted). */
  bindFrostProposal(proposalId: string, address: string, at: number): void;
  /** The group address a FROST proposal names, if any. */
  frostProposalGroup(proposalId: string): string | undefined;
  /** Insert a running refresh; false when a refresh of that group is running already (one per group, any replica). */
  insertFrostRefresh(r: RefreshRecord): boolean;
  setFrostRefreshStep(id: string, step: RefreshStep, at: number): void;
  /**
   * The decision to switch, in one transaction: running -> adopted, and the group's public data in frost_dkg
   * replaced (same key, new commitment and verifying shares). False, writing nothing, when it was no longer running.
   */
  adoptFrostRefresh(
    id: string,
    v: { digest: string; group: GroupPublic; transcript: string; reports: SignedStatement[] },
    at: number,
  ): boolean;
  /** running -> failed (see failFrostDkg for `staleBefore`); false when it was no longer running. */
  failFrostRefresh(id: string, error: RefreshError, at: number, staleBefore?: number): boolean;
  /** A participant acknowledged the outcome (idempotent; two replicas acknowledging at once both count). */
  ackFrostRefresh(id: string, nodeId: string, at: number): void;
  getFrostRefresh(id: string): RefreshRecord | undefined;
  /** Newest first; of one group when `address` is given. */
  listFrostRefreshes(address: string | undefined, limit: number): RefreshRecord[];
  runningFrostRefreshes(): RefreshRecord[];
  /** Decided refreshes some participant has not acknowledged yet (the newest 256 decided ones looked at). */
  unacknowledgedFrostRefreshes(): RefreshRecord[];
  /** Every FROST record (the copy to PostgreSQL reads them so). */
  frostRecords(): FrostRecords;
  /**
   * Write `records` in one transaction when the store holds no FROST record yet; false (nothing written) otherwise.
   * The import of the old per-process files (frost/legacy.ts): several replicas starting at once import once.
   */
  importFrostRecords(records: FrostRecords): boolean;
}

export interface Store extends ProposalRepository, EventRepository, NodeRepository, ApiKeyRepository, FrostRepository {
  ping(): boolean;
  /**
   * Run `fn` as one SQLite transaction (one commit, one fsync under synchronous=FULL); nested calls join it.
   * Everything or nothing is written: a throw rolls back and is rethrown.
   */
  atomically<T>(fn: () => T): T;
  /**
   * Run `fn` (synchronous) like `atomically`, but in one commit with every other unit queued in this turn of the
   * event loop (group commit, @cosigner/runtime group-commit); resolves once that commit returned.
   */
  grouped<T>(fn: () => Awaitable<T>): Promise<T>;
  /** Run `fn` after the commit of the grouped unit running now, or at once outside one. */
  afterCommit(fn: () => void): void;
  close(): void;
}

/** A value, or a promise of it: what a store operation returns (SQLite: the value; PostgreSQL: a promise). */
export type Awaitable<T> = T | Promise<T>;

/**
 * Continue with `fn` on `v` without a turn of the event loop when `v` is already a value. Used inside grouped units
 * of work, which must stay synchronous on SQLite (one better-sqlite3 transaction cannot span an await) and become
 * asynchronous on PostgreSQL. No allocation on the synchronous path.
 */
export function step<T, R>(v: Awaitable<T>, fn: (value: T) => Awaitable<R>): Awaitable<R> {
  return v instanceof Promise ? v.then(fn) : fn(v);
}

/** The repository `T` with every operation returning a value or a promise, always awaited by its callers. */
export type AwaitableRepository<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Awaitable<Awaited<R>> : T[K];
};

/**
 * The store as the coordinator uses it, implemented by the synchronous SQLite store (the default, `Store`) and by
 * the PostgreSQL store (pg/store.ts). Every call is awaited; a unit of work (`grouped`) is one transaction: on
 * SQLite one share of the turn's group commit (its function must then return synchronously, which it does when
 * every store call in it returned a value: write it with `step`), on PostgreSQL a transaction of its own.
 */
export interface CoordinatorStore
  extends AwaitableRepository<
    ProposalRepository & EventRepository & NodeRepository & ApiKeyRepository & FrostRepository
  > {
  ping(): Awaitable<boolean>;
  grouped<T>(fn: () => Awaitable<T>): Promise<T>;
  /** Run `fn` after the commit of the unit of work running now, or at once outside one. */
  afterCommit(fn: () => void): void;
  close(): Awaitable<void>;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/**
 * Open (creating and migrating) the coordinator database at `<dataDir>/coordinator.db`: 0600, WAL,
 * synchronous=FULL, a schema newer than this code refused, each migration under BEGIN IMMEDIATE.
 * @throws CosignerError COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED
 */
export function openSqliteStore(dataDir: string): Store {
  return openSqliteStoreFile(join(dataDir, 'coordinator.db'));
}

/** The store on the coordinator database file at `path` (see openSqliteStore). */
export function openSqliteStoreFile(path: string): Store {
  return new SqliteStore(openCoordinatorDb(path));
}

/** The coordinator's database file, opened and migrated (see openSqliteStore). */
export function openCoordinatorDb(path: string, migrationsDir = MIGRATIONS_DIR): Database.Database {
  return openMigratedDatabase(path, {
    migrationsDir,
    newerSchema: (details) => coordinatorErrors.error('COORD_NEWER_SCHEMA', details),
    migrationFailed: (details, cause) => coordinatorErrors.error('COORD_MIGRATION_FAILED', details, { cause }),
  });
}

class SqliteStore implements Store {
  readonly #group: GroupCommit;
  constructor(private readonly db: Database.Database) {
    this.#group = new GroupCommit(db);
  }
  /**
   * Statements compiled once per SQL text and reused: preparing on every call was 8% of the coordinator's busy
   * time under load (bench/README.md, profile findings). The SQL texts are a fixed set written in this file.
   */
  readonly #statements = new Map<string, Database.Statement>();

  #prepare(sql: string): Database.Statement {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  ping(): boolean {
    try {
      return (this.#prepare('SELECT 1 AS ok').get() as { ok: number }).ok === 1;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  atomically<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  grouped<T>(fn: () => Awaitable<T>): Promise<T> {
    return this.#group.run(() => {
      const v = fn();
      // A promise here would commit before its writes ran: a unit must be synchronous on this store.
      if (v instanceof Promise) throw new TypeError('a grouped unit of work on SQLite must not be asynchronous');
      return v;
    });
  }

  afterCommit(fn: () => void): void {
    this.#group.afterCommit(fn);
  }

  insertProposal(
    rec: ProposalRecord,
    authEntries: readonly string[] = [],
  ): { proposal: ProposalRecord; created: boolean } {
    return this.db.transaction(() => {
      if (rec.idempotencyKey !== null) {
        const existing = this.getByIdempotencyKey(rec.idempotencyKey);
        if (existing) return { proposal: existing, created: false };
      }
      this.#prepare(
        `INSERT INTO proposals (id, idempotency_key, api_key_id, kind, xdr, hash, network, status, status_reason,
            requirements, accounts, submit, submit_follow_up, callback_url, note, max_time, envelope, result, created_at,
            updated_at, signed_at)
           VALUES (@id, @idempotencyKey, @apiKeyId, @kind, @xdr, @hash, @network, @status, @statusReason,
            @requirements, @accounts, @submit, @submitFollowUp, @callbackUrl, @note, @maxTime, @envelope, @result,
            @createdAt, @updatedAt, @signedAt)`,
      ).run({
        ...rec,
        xdr: rec.xdr ?? '',
        submitFollowUp: rec.submitFollowUp ? 1 : 0,
        requirements: JSON.stringify(rec.requirements),
        accounts: JSON.stringify(rec.accounts),
        submit: rec.submit ? 1 : 0,
        result: rec.result === null ? null : JSON.stringify(rec.result),
      });
      const entry = this.#prepare('INSERT INTO auth_entries (proposal_id, entry_index, entry) VALUES (?, ?, ?)');
      for (const [i, e] of authEntries.entries()) entry.run(rec.id, i, e);
      return { proposal: rec, created: true };
    })();
  }

  authEntries(proposalId: string): AuthEntryRecord[] {
    return (
      this.#prepare(
        'SELECT entry_index, entry, signed FROM auth_entries WHERE proposal_id = ? ORDER BY entry_index',
      ).all(proposalId) as { entry_index: number; entry: string; signed: string | null }[]
    ).map((r) => ({ index: r.entry_index, entry: r.entry, signed: r.signed }));
  }

  getProposal(id: string): ProposalRecord | undefined {
    const r = this.#prepare('SELECT * FROM proposals WHERE id = ?').get(id) as dbRows.ProposalRow | undefined;
    return r && dbRows.proposalFromRow(r);
  }

  getByIdempotencyKey(key: string): ProposalRecord | undefined {
    const r = this.#prepare('SELECT * FROM proposals WHERE idempotency_key = ?').get(key) as
      | dbRows.ProposalRow
      | undefined;
    return r && dbRows.proposalFromRow(r);
  }

  listProposals(q: { status?: ProposalStatus; limit: number; before?: number }): {
    items: ProposalRecord[];
    next: number | null;
  } {
    const rows = this.#prepare(
      `SELECT * FROM proposals WHERE (@status IS NULL OR status = @status) AND (@before IS NULL OR n < @before)
         ORDER BY n DESC LIMIT @limit`,
    ).all({ status: q.status ?? null, before: q.before ?? null, limit: q.limit + 1 }) as dbRows.ProposalRow[];
    const more = rows.length > q.limit;
    const page = rows.slice(0, q.limit);
    return { items: page.map(dbRows.proposalFromRow), next: more ? page.at(-1)!.n : null };
  }

  searchProposals(term: string, limit: number): ProposalRecord[] {
    // A hash or an idempotency key is found through its index. An account is a scan: accounts holds AccountAuth[] as
    // JSON, so instr() skips the rows that cannot match before json_each checks that the term is an accountId, never
    // a signer key inside it.
    const account = /^G[A-Z2-7]{55}$/.test(term);
    const rows = this.#prepare(
      account
        ? `SELECT * FROM proposals WHERE idempotency_key = @term OR instr(accounts, @term) > 0
             AND EXISTS (SELECT 1 FROM json_each(proposals.accounts) j WHERE json_extract(j.value, '$.accountId') = @term)
             ORDER BY n DESC LIMIT @limit`
        : `SELECT * FROM proposals WHERE n IN (SELECT n FROM proposals WHERE hash = @term
             UNION SELECT n FROM proposals WHERE idempotency_key = @term) ORDER BY n DESC LIMIT @limit`,
    ).all({ term, limit }) as dbRows.ProposalRow[];
    return rows.map(dbRows.proposalFromRow);
  }

  openProposals(): ProposalRecord[] {
    const rows = this.#prepare(
      `SELECT * FROM proposals INDEXED BY proposals_open WHERE status = 'pending' OR (status = 'signed' AND ((submit = 1 AND result IS NULL) OR follow_up_due = 1))
         ORDER BY n`,
    ).all() as dbRows.ProposalRow[];
    return rows.map(dbRows.proposalFromRow);
  }

  countOpen(): number {
    return (
      this.#prepare(
        `SELECT count(*) AS c FROM proposals INDEXED BY proposals_open WHERE status = 'pending' OR (status = 'signed' AND ((submit = 1 AND result IS NULL) OR follow_up_due = 1))`,
      ).get() as {
        c: number;
      }
    ).c;
  }

  transition(id: string, from: readonly ProposalStatus[], to: ProposalStatus, patch: ProposalPatch = {}): boolean {
    const signed = patch.signedEntries;
    if (signed === undefined) return this.#transition(id, from, to, patch);
    return this.atomically(() => {
      if (!this.#transition(id, from, to, patch)) return false;
      const set = this.#prepare('UPDATE auth_entries SET signed = ? WHERE proposal_id = ? AND entry_index = ?');
      for (const [i, e] of signed.entries()) set.run(e, id, i);
      return true;
    });
  }

  #transition(id: string, from: readonly ProposalStatus[], to: ProposalStatus, patch: ProposalPatch): boolean {
    const placeholders = from.map(() => '?').join(', ');
    const info = this.#prepare(
      `UPDATE proposals SET status = ?, updated_at = ?,
           status_reason = CASE WHEN ? THEN ? ELSE status_reason END,
           envelope = COALESCE(?, envelope), result = COALESCE(?, result), signed_at = COALESCE(?, signed_at),
           follow_up_due = COALESCE(?, follow_up_due)
         WHERE id = ? AND status IN (${placeholders})`,
    ).run(
      to,
      Date.now(),
      patch.statusReason !== undefined ? 1 : 0,
      patch.statusReason ?? null,
      patch.envelope ?? null,
      patch.result ? JSON.stringify(patch.result) : null,
      patch.signedAt ?? null,
      patch.followUpDue ? 1 : null,
      id,
      ...from,
    );
    return info.changes === 1;
  }

  setResult(id: string, result: SubmissionResult): void {
    this.#prepare('UPDATE proposals SET result = ?, updated_at = ? WHERE id = ?').run(
      JSON.stringify(result),
      Date.now(),
      id,
    );
  }

  followUpDone(id: string): void {
    this.#prepare('UPDATE proposals SET follow_up_due = 0 WHERE id = ?').run(id);
  }

  addSignature(rec: SignatureRecord): boolean {
    const info = this.#prepare(
      `INSERT OR IGNORE INTO signatures (proposal_id, signer_key, node_id, signature, created_at)
         VALUES (?, ?, ?, ?, ?)`,
    ).run(rec.proposalId, rec.signerKey, rec.nodeId, rec.signature, rec.createdAt);
    return info.changes === 1;
  }

  signatures(proposalId: string): SignatureRecord[] {
    return (
      this.#prepare('SELECT * FROM signatures WHERE proposal_id = ? ORDER BY created_at, signer_key').all(
        proposalId,
      ) as dbRows.SignatureRow[]
    ).map(dbRows.signatureFromRow);
  }

  addAuthSignature(rec: AuthSignatureRecord): boolean {
    const info = this.#prepare(
      `INSERT OR IGNORE INTO auth_signatures (proposal_id, entry_index, signer_key, node_id, payload, signature, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(rec.proposalId, rec.entryIndex, rec.signerKey, rec.nodeId, rec.payload, rec.signature, rec.createdAt);
    return info.changes === 1;
  }

  authSignatures(proposalId: string): AuthSignatureRecord[] {
    return (
      this.#prepare(
        'SELECT * FROM auth_signatures WHERE proposal_id = ? ORDER BY entry_index, created_at, signer_key',
      ).all(proposalId) as dbRows.AuthSignatureRow[]
    ).map(dbRows.authSignatureFromRow);
  }

  recordApproval(decision: DecisionRecord, rows: ApprovalRows): boolean {
    return this.atomically(() => {
      this.recordDecision(decision);
      let added = false;
      for (const s of rows.signatures ?? []) added = this.addSignature(s) || added;
      for (const s of rows.authSignatures ?? []) added = this.addAuthSignature(s) || added;
      if (added) this.countNode(decision.nodeId, 'approvals');
      return added;
    });
  }

  recordRefusal(decision: DecisionRecord): void {
    this.atomically(() => {
      this.recordDecision(decision);
      if (decision.outcome === 'reject') this.countNode(decision.nodeId, 'rejections');
    });
  }

  recordDecision(rec: DecisionRecord): void {
    this.#prepare(
      `INSERT INTO decisions (proposal_id, node_id, outcome, reasons, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (proposal_id, node_id) DO UPDATE SET outcome = excluded.outcome, reasons = excluded.reasons,
           created_at = excluded.created_at`,
    ).run(rec.proposalId, rec.nodeId, rec.outcome, JSON.stringify(rec.reasons), rec.createdAt);
  }

  decisions(proposalId: string): DecisionRecord[] {
    return (
      this.#prepare('SELECT * FROM decisions WHERE proposal_id = ? ORDER BY created_at, node_id').all(
        proposalId,
      ) as dbRows.DecisionRow[]
    ).map(dbRows.decisionFromRow);
  }

  appendEvent(
    proposalId: string | null,
    type: string,
    data: Record<string, unknown>,
    at: number,
    callbackUrl?: string | null,
  ): EventRecord {
    const insert = (): EventRecord => {
      const info = this.#prepare('INSERT INTO events (proposal_id, type, data, created_at) VALUES (?, ?, ?, ?)').run(
        proposalId,
        type,
        JSON.stringify(data),
        at,
      );
      const seq = Number(info.lastInsertRowid);
      if (callbackUrl) {
        this.#prepare('INSERT INTO callback_outbox (event_seq, url, next_at) VALUES (?, ?, ?)').run(
          seq,
          callbackUrl,
          at,
        );
      }
      return { seq, proposalId, type, data, createdAt: at };
    };
    // Inside a grouped unit this joins its transaction (a savepoint); alone, event and outbox row share a commit.
    return callbackUrl ? this.atomically(insert) : insert();
  }

  claimCallbacks(_holder: string, now: number, _claimMs: number, limit: number): CallbackRecord[] {
    return (
      this.#prepare(
        `SELECT c.id, c.url, c.attempts, e.seq, e.proposal_id, e.type, e.data, e.created_at
           FROM callback_outbox c JOIN events e ON e.seq = c.event_seq
           WHERE c.state = 'pending' AND c.next_at <= ? ORDER BY c.next_at, c.id LIMIT ?`,
      ).all(now, limit) as dbRows.CallbackRow[]
    ).map(dbRows.callbackFromRow);
  }

  settleCallback(id: number, _holder: string, outcome: CallbackOutcome): void {
    if (outcome.state === 'delivered') {
      this.#prepare('DELETE FROM callback_outbox WHERE id = ?').run(id);
      return;
    }
    this.#prepare('UPDATE callback_outbox SET state = ?, attempts = ?, next_at = ?, last_error = ? WHERE id = ?').run(
      outcome.state === 'retry' ? 'pending' : 'failed',
      outcome.attempts,
      outcome.state === 'retry' ? outcome.nextAt : 0,
      outcome.error,
      id,
    );
  }

  failedCallbacks(limit: number): (CallbackRecord & { error: string | null })[] {
    return (
      this.#prepare(
        `SELECT c.id, c.url, c.attempts, c.last_error, e.seq, e.proposal_id, e.type, e.data, e.created_at
           FROM callback_outbox c JOIN events e ON e.seq = c.event_seq
           WHERE c.state = 'failed' ORDER BY c.id DESC LIMIT ?`,
      ).all(limit) as dbRows.CallbackRow[]
    ).map((r) => ({ ...dbRows.callbackFromRow(r), error: r.last_error ?? null }));
  }

  eventsSince(seq: number, limit: number): EventRecord[] {
    return this.#events(this.#prepare('SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit));
  }

  eventsOf(proposalId: string, limit: number): EventRecord[] {
    return this.#events(
      this.#prepare('SELECT * FROM events WHERE proposal_id = ? ORDER BY seq LIMIT ?').all(proposalId, limit),
    );
  }

  #events(rows: unknown[]): EventRecord[] {
    return (rows as dbRows.EventRow[]).map(dbRows.eventFromRow);
  }

  enrollNode(n: { id: string; identityKey: string; stellarKey: string }, at: number): void {
    this.db.transaction(() => {
      // A Stellar key belongs to one node: a re-enrolment under another id takes it over.
      this.#prepare('DELETE FROM nodes WHERE stellar_key = ? AND id <> ?').run(n.stellarKey, n.id);
      this.#prepare(
        `INSERT INTO nodes (id, identity_key, stellar_key, enrolled_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET identity_key = excluded.identity_key, stellar_key = excluded.stellar_key,
             enrolled_at = CASE WHEN nodes.identity_key = excluded.identity_key AND nodes.stellar_key = excluded.stellar_key
               THEN nodes.enrolled_at ELSE excluded.enrolled_at END`,
      ).run(n.id, n.identityKey, n.stellarKey, at);
    })();
  }

  getNode(id: string): NodeRecord | undefined {
    const r = this.#prepare('SELECT * FROM nodes WHERE id = ?').get(id) as dbRows.NodeRow | undefined;
    return r && dbRows.nodeFromRow(r);
  }

  listNodes(): NodeRecord[] {
    return (this.#prepare('SELECT * FROM nodes ORDER BY id').all() as dbRows.NodeRow[]).map(dbRows.nodeFromRow);
  }

  touchNode(id: string, at: number, latencyMs?: number): void {
    this.#prepare('UPDATE nodes SET last_seen = ?, last_latency_ms = COALESCE(?, last_latency_ms) WHERE id = ?').run(
      at,
      latencyMs ?? null,
      id,
    );
  }

  countNode(id: string, field: 'approvals' | 'rejections' | 'misbehaviours'): void {
    this.#prepare(`UPDATE nodes SET ${field} = ${field} + 1 WHERE id = ?`).run(id);
  }

  recordMisbehaviour(rec: MisbehaviourRecord): void {
    this.db.transaction(() => {
      this.#prepare(
        'INSERT INTO misbehaviours (node_id, proposal_id, kind, detail, created_at) VALUES (?, ?, ?, ?, ?)',
      ).run(rec.nodeId, rec.proposalId, rec.kind, rec.detail, rec.createdAt);
      this.countNode(rec.nodeId, 'misbehaviours');
    })();
  }

  misbehaviours(nodeId: string, limit: number): MisbehaviourRecord[] {
    return (
      this.#prepare('SELECT * FROM misbehaviours WHERE node_id = ? ORDER BY seq DESC LIMIT ?').all(
        nodeId,
        limit,
      ) as dbRows.MisbehaviourRow[]
    ).map(dbRows.misbehaviourFromRow);
  }

  insertApiKey(rec: ApiKeyRecord): void {
    this.#prepare(
      'INSERT INTO api_keys (id, hash, scopes, label, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(rec.id, rec.hash, rec.scopes.join(','), rec.label, rec.createdAt, rec.revokedAt);
  }

  getApiKey(id: string): ApiKeyRecord | undefined {
    const r = this.#prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as dbRows.ApiKeyRow | undefined;
    return r && dbRows.apiKeyFromRow(r);
  }

  countApiKeys(): number {
    return (this.#prepare('SELECT count(*) AS c FROM api_keys').get() as { c: number }).c;
  }

  insertFrostDkg(r: DkgRecord): void {
    this.#prepare(
      `INSERT INTO frost_dkg (${DKG_COLUMNS.join(', ')}) VALUES (${DKG_COLUMNS.map(() => '?').join(', ')})`,
    ).run(...dkgParams(r));
  }

  setFrostDkgStep(id: string, step: DkgStep, at: number): void {
    this.#prepare(`UPDATE frost_dkg SET step = ?, updated_at = ? WHERE id = ? AND status = 'running'`).run(
      step,
      at,
      id,
    );
  }

  readyFrostDkg(id: string, v: { address: string; group: GroupPublic; transcript: string }, at: number): boolean {
    return (
      this.#prepare(
        `UPDATE frost_dkg SET status = 'ready', address = ?, group_public = ?, transcript = ?, updated_at = ?
           WHERE id = ? AND status = 'running'`,
      ).run(v.address, JSON.stringify(v.group), v.transcript, at, id).changes === 1
    );
  }

  failFrostDkg(id: string, error: DkgError, at: number, staleBefore?: number): boolean {
    return (
      this.#prepare(
        `UPDATE frost_dkg SET status = 'failed', error = ?, updated_at = ?
           WHERE id = ? AND status = 'running' AND (? IS NULL OR updated_at < ?)`,
      ).run(JSON.stringify(error), at, id, staleBefore ?? null, staleBefore ?? null).changes === 1
    );
  }

  getFrostDkg(idOrAddress: string): DkgRecord | undefined {
    const row = this.#prepare('SELECT * FROM frost_dkg WHERE id = ? OR address = ?').get(idOrAddress, idOrAddress) as
      | DkgRow
      | undefined;
    return row && dkgFromRow(row);
  }

  listFrostDkgs(limit: number): DkgRecord[] {
    return (this.#prepare('SELECT * FROM frost_dkg ORDER BY created_at DESC, id LIMIT ?').all(limit) as DkgRow[]).map(
      dkgFromRow,
    );
  }

  runningFrostDkgs(): DkgRecord[] {
    return (this.#prepare(`SELECT * FROM frost_dkg WHERE status = 'running'`).all() as DkgRow[]).map(dkgFromRow);
  }

  bindFrostProposal(proposalId: string, address: string, at: number): void {
    this.#prepare(
      `INSERT INTO frost_proposals (proposal_id, address, created_at) VALUES (?, ?, ?)
         ON CONFLICT (proposal_id) DO UPDATE SET address = excluded.address, created_at = excluded.created_at`,
    ).run(proposalId, address, at);
  }

  frostProposalGroup(proposalId: string): string | undefined {
    const row = this.#prepare('SELECT address FROM frost_proposals WHERE proposal_id = ?').get(proposalId) as
      | { address: string }
      | undefined;
    return row?.address;
  }

  insertFrostRefresh(r: RefreshRecord): boolean {
    // OR IGNORE: the partial unique index frost_refresh_one_running (one running refresh per group) refuses it.
    return (
      this.#prepare(
        `INSERT OR IGNORE INTO frost_refresh (${REFRESH_COLUMNS.join(', ')})
           VALUES (${REFRESH_COLUMNS.map(() => '?').join(', ')})`,
      ).run(...refreshParams(r)).changes === 1
    );
  }

  setFrostRefreshStep(id: string, step: RefreshStep, at: number): void {
    this.#prepare(`UPDATE frost_refresh SET step = ?, updated_at = ? WHERE id = ? AND status = 'running'`).run(
      step,
      at,
      id,
    );
  }

  adoptFrostRefresh(
    id: string,
    v: { digest: string; group: GroupPublic; transcript: string; reports: SignedStatement[] },
    at: number,
  ): boolean {
    return this.atomically(() => {
      const adopted = this.#prepare(
        `UPDATE frost_refresh SET status = 'adopted', step = 'adopt', digest = ?, group_public = ?, transcript = ?,
           reports = ?, updated_at = ? WHERE id = ? AND status = 'running'`,
      ).run(v.digest, JSON.stringify(v.group), v.transcript, JSON.stringify(v.reports), at, id);
      if (adopted.changes !== 1) return false;
      this.#prepare(
        `UPDATE frost_dkg SET group_public = ?, transcript = ?, updated_at = ?
           WHERE address = (SELECT address FROM frost_refresh WHERE id = ?) AND status = 'ready'`,
      ).run(JSON.stringify(v.group), v.transcript, at, id);
      return true;
    });
  }

  failFrostRefresh(id: string, error: RefreshError, at: number, staleBefore?: number): boolean {
    return (
      this.#prepare(
        `UPDATE frost_refresh SET status = 'failed', error = ?, updated_at = ?
           WHERE id = ? AND status = 'running' AND (? IS NULL OR updated_at < ?)`,
      ).run(JSON.stringify(error), at, id, staleBefore ?? null, staleBefore ?? null).changes === 1
    );
  }

  ackFrostRefresh(id: string, nodeId: string, at: number): void {
    this.atomically(() => {
      const r = this.getFrostRefresh(id);
      if (!r || r.acked.includes(nodeId)) return;
      this.#prepare('UPDATE frost_refresh SET acked = ?, updated_at = ? WHERE id = ?').run(
        JSON.stringify([...r.acked, nodeId].sort()),
        at,
        id,
      );
    });
  }

  getFrostRefresh(id: string): RefreshRecord | undefined {
    const row = this.#prepare('SELECT * FROM frost_refresh WHERE id = ?').get(id) as RefreshRow | undefined;
    return row && refreshFromRow(row);
  }

  listFrostRefreshes(address: string | undefined, limit: number): RefreshRecord[] {
    return (
      this.#prepare(
        'SELECT * FROM frost_refresh WHERE (? IS NULL OR address = ?) ORDER BY created_at DESC, id LIMIT ?',
      ).all(address ?? null, address ?? null, limit) as RefreshRow[]
    ).map(refreshFromRow);
  }

  runningFrostRefreshes(): RefreshRecord[] {
    return (this.#prepare(`SELECT * FROM frost_refresh WHERE status = 'running'`).all() as RefreshRow[]).map(
      refreshFromRow,
    );
  }

  unacknowledgedFrostRefreshes(): RefreshRecord[] {
    return (
      this.#prepare(
        `SELECT * FROM frost_refresh WHERE status != 'running' ORDER BY created_at DESC, id LIMIT 256`,
      ).all() as RefreshRow[]
    )
      .map(refreshFromRow)
      .filter((r) => r.acked.length < r.participants.length);
  }

  frostRecords(): FrostRecords {
    return {
      dkgs: (this.#prepare('SELECT * FROM frost_dkg ORDER BY created_at, id').all() as DkgRow[]).map(dkgFromRow),
      proposals: (
        this.#prepare('SELECT * FROM frost_proposals ORDER BY created_at, proposal_id').all() as {
          proposal_id: string;
          address: string;
          created_at: number;
        }[]
      ).map((r) => ({ proposalId: r.proposal_id, address: r.address, createdAt: r.created_at })),
      refreshes: (this.#prepare('SELECT * FROM frost_refresh ORDER BY created_at, id').all() as RefreshRow[]).map(
        refreshFromRow,
      ),
    };
  }

  importFrostRecords(records: FrostRecords): boolean {
    return this.atomically(() => {
      const held = this.#prepare(
        `SELECT (SELECT count(*) FROM frost_dkg) + (SELECT count(*) FROM frost_proposals)
           + (SELECT count(*) FROM frost_refresh) AS n`,
      ).get() as { n: number };
      if (held.n > 0) return false;
      for (const d of records.dkgs) this.insertFrostDkg(d);
      for (const b of records.proposals) this.bindFrostProposal(b.proposalId, b.address, b.createdAt);
      const insert = this.#prepare(
        `INSERT INTO frost_refresh (${REFRESH_COLUMNS.join(', ')}) VALUES (${REFRESH_COLUMNS.map(() => '?').join(', ')})`,
      );
      for (const r of records.refreshes) insert.run(...refreshParams(r));
      return true;
    });
  }
}

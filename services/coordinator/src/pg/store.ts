import { AsyncLocalStorage } from 'node:async_hooks';
import type { GroupPublic } from '@cosigner/frost/suite';
import type { SignedStatement } from '@cosigner/protocol/frost-dkg';
import pg from 'pg';
import type { RefreshError, RefreshRecord, RefreshRow, RefreshStep } from '../frost/refresh-store.ts';
import { REFRESH_COLUMNS, refreshFromRow, refreshParams } from '../frost/refresh-store.ts';
import type { DkgError, DkgRecord, DkgRow, DkgStep } from '../frost/store.ts';
import { DKG_COLUMNS, dkgFromRow, dkgParams } from '../frost/store.ts';
import * as dbRows from '../rows.ts';
import type {
  ApiKeyRecord,
  ApiKeyRepository,
  ApprovalRows,
  AuthEntryRecord,
  AuthSignatureRecord,
  Awaitable,
  CallbackOutcome,
  CallbackRecord,
  CoordinatorStore,
  DecisionRecord,
  EventRecord,
  EventRepository,
  FrostRecords,
  FrostRepository,
  MisbehaviourRecord,
  NodeRecord,
  NodeRepository,
  ProposalPatch,
  ProposalRecord,
  ProposalRepository,
  ProposalStatus,
  SignatureRecord,
  SubmissionResult,
} from '../store.ts';
import { storeError } from './errors.ts';
import { migratePg } from './migrate.ts';

/**
 * The coordinator's state on PostgreSQL: the same operations as the SQLite store (store.ts), each returning a
 * promise, so that several coordinator replicas can share one database. The SQLite store stays the default.
 *
 * - Every call that cannot reach the database raises COORD_STORE_UNAVAILABLE (503); the pool replaces broken
 *   connections by itself, so calls succeed again as soon as the server is back. A call that raised it may or may
 *   not have committed (the connection can drop during COMMIT): callers answer 503 and never acknowledge it, and a
 *   client's retry with its idempotency key finds the proposal if it was kept.
 * - Idempotency keys are UNIQUE in the database, not in a replica's memory: `INSERT ... ON CONFLICT DO NOTHING`
 *   waits for a concurrent insert of the same key to commit or roll back (PostgreSQL manual, INSERT "ON CONFLICT
 *   Clause"), so the same key sent to two replicas at once yields one proposal and both answer with it.
 * - FROST records (frost_dkg, frost_proposals, frost_refresh): an outcome is a compare-and-set on
 *   `status = 'running'` (an UPDATE's WHERE is re-checked on the row's newest version after a concurrent update
 *   committed: READ COMMITTED, PostgreSQL manual 13.2.1), so two replicas deciding the same session record one
 *   outcome; adopting a refresh and replacing its group's public data are one transaction.
 * - Events are numbered in commit order: an event insert takes a transaction-level advisory lock held until its
 *   commit, so a reader tailing `seq > last` from any replica never skips an event that commits after a later one
 *   (identity values are handed out at insert, not at commit).
 */

type Asyncify<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

/** The repositories of store.ts with every operation made asynchronous. */
export type AsyncRepositories = Asyncify<
  ProposalRepository & EventRepository & NodeRepository & ApiKeyRepository & FrostRepository
>;

/**
 * The transaction of the unit of work running now (`atomically`, `grouped`), carried along its async calls: a
 * store call made inside a unit on the root store joins the unit's transaction, as nested calls do on SQLite, so
 * code written for the store interface (a round kind reading the signatures it just wrote) reads its own writes.
 */
const current = new AsyncLocalStorage<PgStore>();

/** Advisory lock key that orders event inserts by commit (see above). */
export const EVENTS_LOCK_KEY = 0x65766e74; // "evnt"
/** The LISTEN/NOTIFY channel every event commit notifies (a wake-up for the event tails; no payload). */
export const EVENTS_CHANNEL = 'coordinator_events';

interface Queryable {
  query<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * BIGINT (int8, OID 20) as a JavaScript number instead of node-postgres's default string: every BIGINT here is a
 * millisecond timestamp, a counter or a sequence number, all far below 2^53.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * A pool for the store: BIGINTs as numbers, and an `error` listener, without which a connection dropped while idle
 * (server restarted) would be an unhandled 'error' event and end the process. The pool discards that connection
 * and the next query opens a new one.
 */
export function createPool(config: pg.PoolConfig, onIdleError?: (e: Error) => void): pg.Pool {
  const pool = new pg.Pool({ ...config, types });
  pool.on('error', (e) => onIdleError?.(e));
  return pool;
}

const PROPOSAL_COLUMNS = `id, idempotency_key, api_key_id, kind, xdr, hash, network, status, status_reason,
  requirements, accounts, submit, submit_follow_up, callback_url, note, max_time, envelope, result, created_at,
  updated_at, signed_at`;

export function proposalParams(rec: ProposalRecord): unknown[] {
  return [
    rec.id,
    rec.idempotencyKey,
    rec.apiKeyId,
    rec.kind,
    rec.xdr ?? '',
    rec.hash,
    rec.network,
    rec.status,
    rec.statusReason,
    JSON.stringify(rec.requirements),
    JSON.stringify(rec.accounts),
    rec.submit,
    rec.submitFollowUp,
    rec.callbackUrl,
    rec.note,
    rec.maxTime,
    rec.envelope,
    rec.result === null ? null : JSON.stringify(rec.result),
    rec.createdAt,
    rec.updatedAt,
    rec.signedAt,
  ];
}

export class PgStore implements AsyncRepositories, CoordinatorStore {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly db: Queryable,
    private readonly inTransaction: boolean,
  ) {}

  /** Effects to run once this transaction committed (`afterCommit`), dropped when it rolls back. */
  readonly #after: Array<() => void> = [];

  /** The unit of work of this store's pool running in this async context, if any. */
  #unit(): PgStore | undefined {
    if (this.inTransaction) return this;
    const tx = current.getStore();
    return tx !== undefined && tx.pool === this.pool ? tx : undefined;
  }

  /**
   * Open a store on `pool` and bring the schema up to date (migratePg: under an advisory lock, refusing a newer
   * schema). The store owns the pool: `close()` ends it, and so does a failed open.
   * @throws CosignerError COORD_NEWER_SCHEMA, COORD_MIGRATION_FAILED, COORD_STORE_UNAVAILABLE; the driver's error
   *   for a refused login or TLS handshake (a configuration problem, not an outage)
   */
  static async open(pool: pg.Pool, opts: { migrate?: boolean } = {}): Promise<PgStore> {
    try {
      if (opts.migrate !== false) await migratePg(pool);
    } catch (e) {
      await pool.end();
      throw e;
    }
    return new PgStore(pool, pool, false);
  }

  async #q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await (this.#unit() ?? this).db.query<R>(sql, params);
    } catch (e) {
      throw storeError(e);
    }
  }

  /** True when a round trip to the database works now. */
  async ping(): Promise<boolean> {
    try {
      return (await this.#q<{ ok: number }>('SELECT 1 AS ok')).rows[0]?.ok === 1;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    // A listening connection is checked out for good: pool.end() would wait for it.
    await Promise.all([...this.#listeners].map((stop) => stop()));
    if (!this.pool.ended && !this.pool.ending) await this.pool.end();
  }

  /** The stop functions of `listenEvents` calls still listening. */
  readonly #listeners = new Set<() => Promise<void>>();

  /**
   * Run `fn` in one transaction on one connection (READ COMMITTED); nested calls join it. A throw rolls back
   * and is rethrown; a connection lost on the way raises COORD_STORE_UNAVAILABLE and the connection is discarded.
   * @throws CosignerError COORD_STORE_UNAVAILABLE
   */
  async atomically<T>(fn: (tx: PgStore) => Awaitable<T>): Promise<T> {
    const unit = this.#unit();
    if (unit) return fn(unit);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw storeError(e);
    }
    // A connection that drops while checked out but between two queries emits 'error' on the client, which would
    // end the process without a listener (the pool listens on idle clients only). Keep it, to discard the client.
    let broken: Error | undefined;
    const onError = (e: Error): void => {
      broken = e;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const tx = new PgStore(this.pool, client, true);
      const result = await current.run(tx, () => fn(tx));
      await client.query('COMMIT');
      for (const effect of tx.#after) {
        try {
          effect();
        } catch {
          // An effect's failure (a subscriber) cannot undo the commit; the effects log their own errors.
        }
      }
      return result;
    } catch (e) {
      const err = storeError(e);
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError as Error;
      }
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /**
   * A unit of work: one transaction (the SQLite store shares one commit among the units of a turn; here each unit
   * commits alone, and concurrent units run on separate connections of the pool).
   * @throws CosignerError COORD_STORE_UNAVAILABLE
   */
  grouped<T>(fn: () => Awaitable<T>): Promise<T> {
    return this.atomically(() => fn());
  }

  /** Run `fn` once the unit of work running now committed (never when it rolls back), or at once outside one. */
  afterCommit(fn: () => void): void {
    const unit = this.#unit();
    if (unit) unit.#after.push(fn);
    else fn();
  }

  async insertProposal(
    rec: ProposalRecord,
    authEntries: readonly string[] = [],
  ): Promise<{ proposal: ProposalRecord; created: boolean }> {
    return this.atomically(async (tx) => {
      const params = proposalParams(rec);
      const placeholders = params.map((_, i) => `$${i + 1}`).join(', ');
      const inserted = await tx.#q(
        `INSERT INTO proposals (${PROPOSAL_COLUMNS}) VALUES (${placeholders}) ON CONFLICT (idempotency_key) DO NOTHING`,
        params,
      );
      if (inserted.rowCount === 1) {
        if (authEntries.length > 0) {
          await tx.#q(
            `INSERT INTO auth_entries (proposal_id, entry_index, entry)
               SELECT $1, e.i - 1, e.entry FROM unnest($2::text[]) WITH ORDINALITY AS e(entry, i)`,
            [rec.id, [...authEntries]],
          );
        }
        return { proposal: rec, created: true };
      }
      // The key's row committed before ours (or while ours waited on it): it is visible to this next statement.
      const existing = await tx.getByIdempotencyKey(rec.idempotencyKey!);
      return { proposal: existing!, created: false };
    });
  }

  async authEntries(proposalId: string): Promise<AuthEntryRecord[]> {
    const rows = (
      await this.#q<{ entry_index: number; entry: string; signed: string | null }>(
        'SELECT entry_index, entry, signed FROM auth_entries WHERE proposal_id = $1 ORDER BY entry_index',
        [proposalId],
      )
    ).rows;
    return rows.map((r) => ({ index: r.entry_index, entry: r.entry, signed: r.signed }));
  }

  async getProposal(id: string): Promise<ProposalRecord | undefined> {
    const r = (await this.#q<dbRows.ProposalRow>('SELECT * FROM proposals WHERE id = $1', [id])).rows[0];
    return r && dbRows.proposalFromRow(r);
  }

  async getByIdempotencyKey(key: string): Promise<ProposalRecord | undefined> {
    const r = (await this.#q<dbRows.ProposalRow>('SELECT * FROM proposals WHERE idempotency_key = $1', [key])).rows[0];
    return r && dbRows.proposalFromRow(r);
  }

  async listProposals(q: {
    status?: ProposalStatus;
    limit: number;
    before?: number;
  }): Promise<{ items: ProposalRecord[]; next: number | null }> {
    const rows = (
      await this.#q<dbRows.ProposalRow>(
        `SELECT * FROM proposals WHERE ($1::text IS NULL OR status = $1) AND ($2::bigint IS NULL OR n < $2)
           ORDER BY n DESC LIMIT $3`,
        [q.status ?? null, q.before ?? null, q.limit + 1],
      )
    ).rows;
    const more = rows.length > q.limit;
    const page = rows.slice(0, q.limit);
    return { items: page.map(dbRows.proposalFromRow), next: more ? page.at(-1)!.n : null };
  }

  async searchProposals(term: string, limit: number): Promise<ProposalRecord[]> {
    // As in the SQLite store: a hash or an idempotency key through its index; an account by a scan where strpos()
    // skips the rows that cannot match before the JSON check that the term is an accountId, never a signer key.
    const account = /^G[A-Z2-7]{55}$/.test(term);
    const rows = (
      await this.#q<dbRows.ProposalRow>(
        account
          ? `SELECT * FROM proposals WHERE idempotency_key = $1 OR (strpos(accounts, $1) > 0
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(accounts::jsonb) j WHERE j->>'accountId' = $1))
               ORDER BY n DESC LIMIT $2`
          : 'SELECT * FROM proposals WHERE hash = $1 OR idempotency_key = $1 ORDER BY n DESC LIMIT $2',
        [term, limit],
      )
    ).rows;
    return rows.map(dbRows.proposalFromRow);
  }

  async openProposals(): Promise<ProposalRecord[]> {
    const rows = (
      await this.#q<dbRows.ProposalRow>(
        `SELECT * FROM proposals WHERE status = 'pending' OR (status = 'signed' AND ((submit AND result IS NULL) OR follow_up_due))
           ORDER BY n`,
      )
    ).rows;
    return rows.map(dbRows.proposalFromRow);
  }

  async countOpen(): Promise<number> {
    return (
      await this.#q<{ c: number }>(
        `SELECT count(*) AS c FROM proposals WHERE status = 'pending' OR (status = 'signed' AND ((submit AND result IS NULL) OR follow_up_due))`,
      )
    ).rows[0]!.c;
  }

  async transition(
    id: string,
    from: readonly ProposalStatus[],
    to: ProposalStatus,
    patch: ProposalPatch = {},
  ): Promise<boolean> {
    const signed = patch.signedEntries;
    if (signed === undefined) return this.#transition(id, from, to, patch);
    return this.atomically(async (tx) => {
      if (!(await tx.#transition(id, from, to, patch))) return false;
      await tx.#q(
        `UPDATE auth_entries a SET signed = e.signed
           FROM unnest($2::text[]) WITH ORDINALITY AS e(signed, i)
           WHERE a.proposal_id = $1 AND a.entry_index = e.i - 1`,
        [id, [...signed]],
      );
      return true;
    });
  }

  async #transition(id: string, from: readonly ProposalStatus[], to: ProposalStatus, patch: ProposalPatch) {
    const res = await this.#q(
      `UPDATE proposals SET status = $1, updated_at = $2,
           status_reason = CASE WHEN $3 THEN $4 ELSE status_reason END,
           envelope = COALESCE($5, envelope), result = COALESCE($6, result), signed_at = COALESCE($7, signed_at),
           follow_up_due = COALESCE($10, follow_up_due)
         WHERE id = $8 AND status = ANY($9::text[])`,
      [
        to,
        Date.now(),
        patch.statusReason !== undefined,
        patch.statusReason ?? null,
        patch.envelope ?? null,
        patch.result ? JSON.stringify(patch.result) : null,
        patch.signedAt ?? null,
        id,
        [...from],
        patch.followUpDue ? true : null,
      ],
    );
    return res.rowCount === 1;
  }

  async followUpDone(id: string): Promise<void> {
    await this.#q('UPDATE proposals SET follow_up_due = false WHERE id = $1', [id]);
  }

  async setResult(id: string, result: SubmissionResult): Promise<void> {
    await this.#q('UPDATE proposals SET result = $1, updated_at = $2 WHERE id = $3', [
      JSON.stringify(result),
      Date.now(),
      id,
    ]);
  }

  async addSignature(rec: SignatureRecord): Promise<boolean> {
    const res = await this.#q(
      `INSERT INTO signatures (proposal_id, signer_key, node_id, signature, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING`,
      [rec.proposalId, rec.signerKey, rec.nodeId, rec.signature, rec.createdAt],
    );
    return res.rowCount === 1;
  }

  async signatures(proposalId: string): Promise<SignatureRecord[]> {
    const rows = (
      await this.#q<dbRows.SignatureRow>(
        'SELECT * FROM signatures WHERE proposal_id = $1 ORDER BY created_at, signer_key',
        [proposalId],
      )
    ).rows;
    return rows.map(dbRows.signatureFromRow);
  }

  async addAuthSignature(rec: AuthSignatureRecord): Promise<boolean> {
    const res = await this.#q(
      `INSERT INTO auth_signatures (proposal_id, entry_index, signer_key, node_id, payload, signature, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
      [rec.proposalId, rec.entryIndex, rec.signerKey, rec.nodeId, rec.payload, rec.signature, rec.createdAt],
    );
    return res.rowCount === 1;
  }

  async authSignatures(proposalId: string): Promise<AuthSignatureRecord[]> {
    const rows = (
      await this.#q<dbRows.AuthSignatureRow>(
        'SELECT * FROM auth_signatures WHERE proposal_id = $1 ORDER BY entry_index, created_at, signer_key',
        [proposalId],
      )
    ).rows;
    return rows.map(dbRows.authSignatureFromRow);
  }

  async recordApproval(decision: DecisionRecord, rows: ApprovalRows): Promise<boolean> {
    return this.atomically(async (tx) => {
      await tx.recordDecision(decision);
      let added = false;
      for (const s of rows.signatures ?? []) added = (await tx.addSignature(s)) || added;
      for (const s of rows.authSignatures ?? []) added = (await tx.addAuthSignature(s)) || added;
      if (added) await tx.countNode(decision.nodeId, 'approvals');
      return added;
    });
  }

  async recordRefusal(decision: DecisionRecord): Promise<void> {
    await this.atomically(async (tx) => {
      await tx.recordDecision(decision);
      if (decision.outcome === 'reject') await tx.countNode(decision.nodeId, 'rejections');
    });
  }

  async recordDecision(rec: DecisionRecord): Promise<void> {
    await this.#q(
      `INSERT INTO decisions (proposal_id, node_id, outcome, reasons, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (proposal_id, node_id) DO UPDATE SET outcome = excluded.outcome, reasons = excluded.reasons,
           created_at = excluded.created_at`,
      [rec.proposalId, rec.nodeId, rec.outcome, JSON.stringify(rec.reasons), rec.createdAt],
    );
  }

  async decisions(proposalId: string): Promise<DecisionRecord[]> {
    const rows = (
      await this.#q<dbRows.DecisionRow>('SELECT * FROM decisions WHERE proposal_id = $1 ORDER BY created_at, node_id', [
        proposalId,
      ])
    ).rows;
    return rows.map(dbRows.decisionFromRow);
  }

  async appendEvent(
    proposalId: string | null,
    type: string,
    data: Record<string, unknown>,
    at: number,
    callbackUrl?: string | null,
  ): Promise<EventRecord> {
    return this.atomically(async (tx) => {
      // The notification goes out at commit (never for a rolled-back event): the tails of the other replicas wake.
      await tx.#q('SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)', [EVENTS_LOCK_KEY, EVENTS_CHANNEL, '']);
      const seq = (
        await tx.#q<{ seq: number }>(
          'INSERT INTO events (proposal_id, type, data, created_at) VALUES ($1, $2, $3, $4) RETURNING seq',
          [proposalId, type, JSON.stringify(data), at],
        )
      ).rows[0]!.seq;
      if (callbackUrl) {
        await tx.#q('INSERT INTO callback_outbox (event_seq, url, next_at) VALUES ($1, $2, $3)', [
          seq,
          callbackUrl,
          at,
        ]);
      }
      return { seq, proposalId, type, data, createdAt: at };
    });
  }

  async claimCallbacks(holder: string, now: number, claimMs: number, limit: number): Promise<CallbackRecord[]> {
    // SKIP LOCKED: a row another replica is claiming right now is passed over, not waited for; a claim that
    // lapsed (its replica died mid-delivery) is taken again.
    const { rows } = await this.#q<dbRows.CallbackRow>(
      `WITH due AS (
         SELECT id FROM callback_outbox
           WHERE state = 'pending' AND next_at <= $2 AND claimed_until <= $2
           ORDER BY next_at, id LIMIT $4 FOR UPDATE SKIP LOCKED),
       claimed AS (
         UPDATE callback_outbox c SET claimed_by = $1, claimed_until = $2 + $3 FROM due WHERE c.id = due.id
           RETURNING c.id, c.url, c.attempts, c.event_seq, c.next_at)
       SELECT claimed.id, claimed.url, claimed.attempts, e.seq, e.proposal_id, e.type, e.data, e.created_at
         FROM claimed JOIN events e ON e.seq = claimed.event_seq ORDER BY claimed.next_at, claimed.id`,
      [holder, now, claimMs, limit],
    );
    return rows.map(dbRows.callbackFromRow);
  }

  async settleCallback(id: number, holder: string, outcome: CallbackOutcome): Promise<void> {
    if (outcome.state === 'delivered') {
      await this.#q('DELETE FROM callback_outbox WHERE id = $1 AND claimed_by = $2', [id, holder]);
      return;
    }
    await this.#q(
      `UPDATE callback_outbox SET state = $3, attempts = $4, next_at = $5, last_error = $6, claimed_until = 0
         WHERE id = $1 AND claimed_by = $2`,
      [
        id,
        holder,
        outcome.state === 'retry' ? 'pending' : 'failed',
        outcome.attempts,
        outcome.state === 'retry' ? outcome.nextAt : 0,
        outcome.error,
      ],
    );
  }

  async failedCallbacks(limit: number): Promise<(CallbackRecord & { error: string | null })[]> {
    const { rows } = await this.#q<dbRows.CallbackRow>(
      `SELECT c.id, c.url, c.attempts, c.last_error, e.seq, e.proposal_id, e.type, e.data, e.created_at
         FROM callback_outbox c JOIN events e ON e.seq = c.event_seq
         WHERE c.state = 'failed' ORDER BY c.id DESC LIMIT $1`,
      [limit],
    );
    return rows.map((r) => ({ ...dbRows.callbackFromRow(r), error: r.last_error ?? null }));
  }

  async eventsSince(seq: number, limit: number): Promise<EventRecord[]> {
    return this.#events(
      (await this.#q('SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2', [seq, limit])).rows,
    );
  }

  /** The highest event number committed (0 when none): where a replica's event tail starts. */
  /**
   * Call `onNotify` whenever an event commits on any replica (LISTEN on one connection of the pool, held while
   * listening), and once each time listening (re)starts, to catch up. A notification is lost with its connection,
   * so a dropped listener is reconnected after `retryMs` and the caller keeps polling as the fallback. Returns stop.
   */
  listenEvents(onNotify: () => void, retryMs = 1000): () => Promise<void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let current: { client: pg.PoolClient; drop: (e?: Error) => void } | undefined;
    const retry = (): void => {
      if (!stopped) timer = setTimeout(() => void connect(), retryMs);
    };
    const connect = async (): Promise<void> => {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch {
        retry();
        return;
      }
      let dropped = false;
      const drop = (e?: Error): void => {
        if (dropped) return;
        dropped = true;
        if (current?.client === client) current = undefined;
        client.off('notification', onNotification);
        // Destroyed, never back in the pool: it is still LISTENing.
        client.release(e ?? true);
        retry();
      };
      const onNotification = (): void => onNotify();
      client.on('notification', onNotification);
      client.once('error', drop);
      client.once('end', () => drop());
      try {
        await client.query(`LISTEN ${EVENTS_CHANNEL}`);
      } catch (e) {
        drop(e as Error);
        return;
      }
      if (stopped) {
        drop();
        return;
      }
      current = { client, drop };
      onNotify();
    };
    void connect();
    const stop = async (): Promise<void> => {
      stopped = true;
      this.#listeners.delete(stop);
      clearTimeout(timer);
      current?.drop();
    };
    this.#listeners.add(stop);
    return stop;
  }

  async latestEventSeq(): Promise<number> {
    return (await this.#q<{ s: number }>('SELECT COALESCE(max(seq), 0)::bigint AS s FROM events')).rows[0]!.s;
  }

  async eventsOf(proposalId: string, limit: number): Promise<EventRecord[]> {
    return this.#events(
      (await this.#q('SELECT * FROM events WHERE proposal_id = $1 ORDER BY seq LIMIT $2', [proposalId, limit])).rows,
    );
  }

  #events(rows: unknown[]): EventRecord[] {
    return (rows as dbRows.EventRow[]).map(dbRows.eventFromRow);
  }

  async enrollNode(n: { id: string; identityKey: string; stellarKey: string }, at: number): Promise<void> {
    await this.atomically(async (tx) => {
      // A Stellar key belongs to one node: a re-enrolment under another id takes it over.
      await tx.#q('DELETE FROM nodes WHERE stellar_key = $1 AND id <> $2', [n.stellarKey, n.id]);
      await tx.#q(
        `INSERT INTO nodes (id, identity_key, stellar_key, enrolled_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET identity_key = excluded.identity_key, stellar_key = excluded.stellar_key,
             enrolled_at = CASE WHEN nodes.identity_key = excluded.identity_key AND nodes.stellar_key = excluded.stellar_key
               THEN nodes.enrolled_at ELSE excluded.enrolled_at END`,
        [n.id, n.identityKey, n.stellarKey, at],
      );
    });
  }

  async getNode(id: string): Promise<NodeRecord | undefined> {
    const r = (await this.#q<dbRows.NodeRow>('SELECT * FROM nodes WHERE id = $1', [id])).rows[0];
    return r && dbRows.nodeFromRow(r);
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (await this.#q<dbRows.NodeRow>('SELECT * FROM nodes ORDER BY id')).rows.map(dbRows.nodeFromRow);
  }

  async touchNode(id: string, at: number, latencyMs?: number): Promise<void> {
    await this.#q('UPDATE nodes SET last_seen = $1, last_latency_ms = COALESCE($2, last_latency_ms) WHERE id = $3', [
      at,
      latencyMs ?? null,
      id,
    ]);
  }

  async countNode(id: string, field: 'approvals' | 'rejections' | 'misbehaviours'): Promise<void> {
    // `field` is one of three literals (the type says so; checked again because it is spliced into the SQL).
    if (!['approvals', 'rejections', 'misbehaviours'].includes(field)) throw new TypeError(`bad counter ${field}`);
    await this.#q(`UPDATE nodes SET ${field} = ${field} + 1 WHERE id = $1`, [id]);
  }

  async recordMisbehaviour(rec: MisbehaviourRecord): Promise<void> {
    await this.atomically(async (tx) => {
      await tx.#q(
        'INSERT INTO misbehaviours (node_id, proposal_id, kind, detail, created_at) VALUES ($1, $2, $3, $4, $5)',
        [rec.nodeId, rec.proposalId, rec.kind, rec.detail, rec.createdAt],
      );
      await tx.countNode(rec.nodeId, 'misbehaviours');
    });
  }

  async misbehaviours(nodeId: string, limit: number): Promise<MisbehaviourRecord[]> {
    const rows = (
      await this.#q<dbRows.MisbehaviourRow>(
        'SELECT * FROM misbehaviours WHERE node_id = $1 ORDER BY seq DESC LIMIT $2',
        [nodeId, limit],
      )
    ).rows;
    return rows.map(dbRows.misbehaviourFromRow);
  }

  async insertApiKey(rec: ApiKeyRecord): Promise<void> {
    await this.#q(
      'INSERT INTO api_keys (id, hash, scopes, label, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)',
      [rec.id, rec.hash, rec.scopes.join(','), rec.label, rec.createdAt, rec.revokedAt],
    );
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const r = (await this.#q<dbRows.ApiKeyRow>('SELECT * FROM api_keys WHERE id = $1', [id])).rows[0];
    return r && dbRows.apiKeyFromRow(r);
  }

  async countApiKeys(): Promise<number> {
    return (await this.#q<{ c: number }>('SELECT count(*) AS c FROM api_keys')).rows[0]!.c;
  }

  async insertFrostDkg(r: DkgRecord): Promise<void> {
    await this.#q(
      `INSERT INTO frost_dkg (${DKG_COLUMNS.join(', ')}) VALUES (${DKG_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
      dkgParams(r),
    );
  }

  async setFrostDkgStep(id: string, step: DkgStep, at: number): Promise<void> {
    await this.#q(`UPDATE frost_dkg SET step = $1, updated_at = $2 WHERE id = $3 AND status = 'running'`, [
      step,
      at,
      id,
    ]);
  }

  async readyFrostDkg(
    id: string,
    v: { address: string; group: GroupPublic; transcript: string },
    at: number,
  ): Promise<boolean> {
    const res = await this.#q(
      `UPDATE frost_dkg SET status = 'ready', address = $1, group_public = $2, transcript = $3, updated_at = $4
         WHERE id = $5 AND status = 'running'`,
      [v.address, JSON.stringify(v.group), v.transcript, at, id],
    );
    return res.rowCount === 1;
  }

  async failFrostDkg(id: string, error: DkgError, at: number, staleBefore?: number): Promise<boolean> {
    const res = await this.#q(
      `UPDATE frost_dkg SET status = 'failed', error = $1, updated_at = $2
         WHERE id = $3 AND status = 'running' AND ($4::bigint IS NULL OR updated_at < $4)`,
      [JSON.stringify(error), at, id, staleBefore ?? null],
    );
    return res.rowCount === 1;
  }

  async getFrostDkg(idOrAddress: string): Promise<DkgRecord | undefined> {
    const r = (await this.#q<DkgRow>('SELECT * FROM frost_dkg WHERE id = $1 OR address = $1', [idOrAddress])).rows[0];
    return r && dkgFromRow(r);
  }

  async listFrostDkgs(limit: number): Promise<DkgRecord[]> {
    const { rows } = await this.#q<DkgRow>('SELECT * FROM frost_dkg ORDER BY created_at DESC, id LIMIT $1', [limit]);
    return rows.map(dkgFromRow);
  }

  async runningFrostDkgs(): Promise<DkgRecord[]> {
    return (await this.#q<DkgRow>(`SELECT * FROM frost_dkg WHERE status = 'running'`)).rows.map(dkgFromRow);
  }

  async bindFrostProposal(proposalId: string, address: string, at: number): Promise<void> {
    await this.#q(
      `INSERT INTO frost_proposals (proposal_id, address, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (proposal_id) DO UPDATE SET address = excluded.address, created_at = excluded.created_at`,
      [proposalId, address, at],
    );
  }

  async frostProposalGroup(proposalId: string): Promise<string | undefined> {
    const r = (
      await this.#q<{ address: string }>('SELECT address FROM frost_proposals WHERE proposal_id = $1', [proposalId])
    ).rows[0];
    return r?.address;
  }

  async insertFrostRefresh(r: RefreshRecord): Promise<boolean> {
    // DO NOTHING covers the partial unique index frost_refresh_one_running: a concurrent insert of a running refresh
    // of the same group waits for the other to commit, then conflicts (one running refresh per group).
    const res = await this.#q(
      `INSERT INTO frost_refresh (${REFRESH_COLUMNS.join(', ')})
         VALUES (${REFRESH_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT DO NOTHING`,
      refreshParams(r),
    );
    return res.rowCount === 1;
  }

  async setFrostRefreshStep(id: string, step: RefreshStep, at: number): Promise<void> {
    await this.#q(`UPDATE frost_refresh SET step = $1, updated_at = $2 WHERE id = $3 AND status = 'running'`, [
      step,
      at,
      id,
    ]);
  }

  async adoptFrostRefresh(
    id: string,
    v: { digest: string; group: GroupPublic; transcript: string; reports: SignedStatement[] },
    at: number,
  ): Promise<boolean> {
    return this.atomically(async (tx) => {
      const adopted = await tx.#q<{ address: string }>(
        `UPDATE frost_refresh SET status = 'adopted', step = 'adopt', digest = $1, group_public = $2, transcript = $3,
           reports = $4, updated_at = $5 WHERE id = $6 AND status = 'running' RETURNING address`,
        [v.digest, JSON.stringify(v.group), v.transcript, JSON.stringify(v.reports), at, id],
      );
      const address = adopted.rows[0]?.address;
      if (address === undefined) return false;
      await tx.#q(
        `UPDATE frost_dkg SET group_public = $1, transcript = $2, updated_at = $3 WHERE address = $4 AND status = 'ready'`,
        [JSON.stringify(v.group), v.transcript, at, address],
      );
      return true;
    });
  }

  async failFrostRefresh(id: string, error: RefreshError, at: number, staleBefore?: number): Promise<boolean> {
    const res = await this.#q(
      `UPDATE frost_refresh SET status = 'failed', error = $1, updated_at = $2
         WHERE id = $3 AND status = 'running' AND ($4::bigint IS NULL OR updated_at < $4)`,
      [JSON.stringify(error), at, id, staleBefore ?? null],
    );
    return res.rowCount === 1;
  }

  async ackFrostRefresh(id: string, nodeId: string, at: number): Promise<void> {
    // One statement: the row is locked by the UPDATE and the condition re-read on its newest version, so two
    // replicas acknowledging two nodes at once keep both.
    await this.#q(
      `UPDATE frost_refresh SET updated_at = $3, acked = (
           SELECT json_agg(x ORDER BY x)::text FROM (
             SELECT json_array_elements_text(acked::json) AS x UNION SELECT $2::text) AS a)
         WHERE id = $1 AND NOT (acked::jsonb ? $2::text)`,
      [id, nodeId, at],
    );
  }

  async getFrostRefresh(id: string): Promise<RefreshRecord | undefined> {
    const r = (await this.#q<RefreshRow>('SELECT * FROM frost_refresh WHERE id = $1', [id])).rows[0];
    return r && refreshFromRow(r);
  }

  async listFrostRefreshes(address: string | undefined, limit: number): Promise<RefreshRecord[]> {
    const { rows } = await this.#q<RefreshRow>(
      'SELECT * FROM frost_refresh WHERE ($1::text IS NULL OR address = $1) ORDER BY created_at DESC, id LIMIT $2',
      [address ?? null, limit],
    );
    return rows.map(refreshFromRow);
  }

  async runningFrostRefreshes(): Promise<RefreshRecord[]> {
    return (await this.#q<RefreshRow>(`SELECT * FROM frost_refresh WHERE status = 'running'`)).rows.map(refreshFromRow);
  }

  async unacknowledgedFrostRefreshes(): Promise<RefreshRecord[]> {
    const { rows } = await this.#q<RefreshRow>(
      `SELECT * FROM frost_refresh WHERE status != 'running' ORDER BY created_at DESC, id LIMIT 256`,
    );
    return rows.map(refreshFromRow).filter((r) => r.acked.length < r.participants.length);
  }

  async frostRecords(): Promise<FrostRecords> {
    const [dkgs, proposals, refreshes] = [
      await this.#q<DkgRow>('SELECT * FROM frost_dkg ORDER BY created_at, id'),
      await this.#q<{ proposal_id: string; address: string; created_at: number }>(
        'SELECT * FROM frost_proposals ORDER BY created_at, proposal_id',
      ),
      await this.#q<RefreshRow>('SELECT * FROM frost_refresh ORDER BY created_at, id'),
    ];
    return {
      dkgs: dkgs.rows.map(dkgFromRow),
      proposals: proposals.rows.map((r) => ({
        proposalId: r.proposal_id,
        address: r.address,
        createdAt: r.created_at,
      })),
      refreshes: refreshes.rows.map(refreshFromRow),
    };
  }

  async importFrostRecords(records: FrostRecords): Promise<boolean> {
    return this.atomically(async (tx) => {
      // Replicas starting at once: the first takes the lock and imports; the others wait, then find rows and stop.
      await tx.#q('LOCK TABLE frost_dkg, frost_proposals, frost_refresh IN SHARE ROW EXCLUSIVE MODE');
      const held = (
        await tx.#q<{ n: number }>(
          `SELECT (SELECT count(*) FROM frost_dkg) + (SELECT count(*) FROM frost_proposals)
             + (SELECT count(*) FROM frost_refresh) AS n`,
        )
      ).rows[0]!.n;
      if (held > 0) return false;
      for (const d of records.dkgs) await tx.insertFrostDkg(d);
      for (const b of records.proposals) await tx.bindFrostProposal(b.proposalId, b.address, b.createdAt);
      for (const r of records.refreshes) {
        await tx.#q(
          `INSERT INTO frost_refresh (${REFRESH_COLUMNS.join(', ')})
             VALUES (${REFRESH_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
          refreshParams(r),
        );
      }
      return true;
    });
  }

  /** Run raw SQL on this store's connection (the lease module and the copy use it inside `atomically`). */
  query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.#q<R>(sql, params);
  }
}

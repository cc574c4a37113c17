import { fileURLToPath } from 'node:url';
import { openMigratedDatabase } from '@cosigner/runtime/sqlite';
import type Database from 'better-sqlite3';
import { frostErrors } from './errors.ts';

/**
 * The record that makes a FROST nonce single-use, across crashes and restarts.
 *
 * A signature share z = d + e*rho + lambda*s*c reveals the share s to anyone who knows the nonces (d, e), and two
 * shares made with the same nonces over different messages reveal it to anyone at all (RFC 9591 section 7.1,
 * "Nonce reuse attacks"). So:
 * - nonces live in process memory only, never on disk: a copy of the store (a backup, a stolen file) holds no
 *   nonce, and restoring an old copy cannot make an old nonce usable again;
 * - before a commitment leaves the node, its round is recorded durably (`issue`: a committed, synced row);
 * - before a share leaves, the round is marked used durably (`use`), and only a round in state 'issued' can be;
 * - after a restart, every round still 'issued' has lost its nonces: `recover` marks them 'lost'; a later request
 *   for such a round is refused, and so is a second commitment for any round id already seen.
 */
export interface NonceStore {
  /**
   * Record that this node issued `commitment` for `roundId`. Durable when it returns.
   * @throws FROST_NONCE_REUSED when the round id was seen before (in any state)
   */
  issue(entry: { roundId: string; groupKey: string; participant: number; commitment: string }): void;
  /**
   * Mark the round's nonce used, durably, if it is 'issued' with this commitment.
   * @throws FROST_NONCE_UNKNOWN (no such round), FROST_NONCE_REUSED (already used), FROST_NONCE_LOST (lost in a
   *   restart), FROST_COMMITMENT_MISMATCH (another commitment than the one issued)
   */
  use(roundId: string, commitment: string): void;
  /** Mark every round still 'issued' as 'lost' (call once at start-up, before any commit). @returns how many */
  recover(): number;
  state(roundId: string): 'issued' | 'used' | 'lost' | undefined;
  close(): void;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/**
 * The SQLite nonce store: one file (0600), WAL with synchronous=FULL so a row is on disk (the WAL fsynced)
 * before `issue` or `use` returns, as the signing ledger does.
 */
export class SqliteNonceStore implements NonceStore {
  readonly db: Database.Database;
  readonly #now: () => number;
  readonly #stmts;

  private constructor(db: Database.Database, now: () => number) {
    this.db = db;
    this.#now = now;
    this.#stmts = {
      insert: db.prepare(
        `INSERT INTO frost_nonces (round_id, group_key, participant, commitment, state, issued_at)
         VALUES (?, ?, ?, ?, 'issued', ?)`,
      ),
      get: db.prepare('SELECT state, commitment FROM frost_nonces WHERE round_id = ?'),
      use: db.prepare(
        `UPDATE frost_nonces SET state = 'used', closed_at = ? WHERE round_id = ? AND state = 'issued' AND commitment = ?`,
      ),
      lose: db.prepare(`UPDATE frost_nonces SET state = 'lost', closed_at = ? WHERE state = 'issued'`),
    };
  }

  /**
   * Open (creating, mode 0600) the store at `path` and bring its schema up to date. Does not call `recover`:
   * the caller does, once, when it knows no nonce of this process is outstanding (at start-up).
   * @throws FROST_NONCE_STORE_NEWER_SCHEMA, FROST_NONCE_STORE_MIGRATION_FAILED
   */
  static open(path: string, opts: { now?: () => number; migrationsDir?: string } = {}): SqliteNonceStore {
    const db = openMigratedDatabase(path, {
      migrationsDir: opts.migrationsDir ?? MIGRATIONS_DIR,
      newerSchema: (details) => frostErrors.error('FROST_NONCE_STORE_NEWER_SCHEMA', details),
      migrationFailed: (details, cause) => frostErrors.error('FROST_NONCE_STORE_MIGRATION_FAILED', details, { cause }),
    });
    return new SqliteNonceStore(db, opts.now ?? Date.now);
  }

  issue(entry: { roundId: string; groupKey: string; participant: number; commitment: string }): void {
    try {
      this.#stmts.insert.run(entry.roundId, entry.groupKey, entry.participant, entry.commitment, this.#now());
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw frostErrors.error('FROST_NONCE_REUSED', { roundId: entry.roundId, reason: 'round already committed' });
      }
      throw e;
    }
  }

  use(roundId: string, commitment: string): void {
    const done = this.db
      .transaction(() => {
        const row = this.#stmts.get.get(roundId) as { state: string; commitment: string } | undefined;
        if (!row) return frostErrors.error('FROST_NONCE_UNKNOWN', { roundId });
        if (row.state === 'used') return frostErrors.error('FROST_NONCE_REUSED', { roundId, reason: 'nonce used' });
        if (row.state === 'lost') return frostErrors.error('FROST_NONCE_LOST', { roundId });
        if (row.commitment !== commitment) return frostErrors.error('FROST_COMMITMENT_MISMATCH', { roundId });
        this.#stmts.use.run(this.#now(), roundId, commitment);
        return undefined;
      })
      .immediate();
    if (done) throw done;
  }

  recover(): number {
    return this.#stmts.lose.run(this.#now()).changes;
  }

  state(roundId: string): 'issued' | 'used' | 'lost' | undefined {
    const row = this.#stmts.get.get(roundId) as { state: 'issued' | 'used' | 'lost' } | undefined;
    return row?.state;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DecisionReason } from '@cosigner/errors/errors';
import { GroupCommit, type RunOptions } from '@cosigner/runtime/group-commit';
import { listMigrations as listMigrationsIn, type Migration, openMigratedDatabase } from '@cosigner/runtime/sqlite';
import { durableExit, type WalSync, walSyncFor } from '@cosigner/runtime/wal-sync';
import Database from 'better-sqlite3';
import { nodeErrors } from './errors.ts';

/**
 * The signing ledger: the node's durable memory of what it decided and what it signed.
 *
 * Invariant (docs/architecture.md "A proposal's life", step 4): a node never holds two live signatures for one
 * (source account, sequence number) slot. stellar-core accepts a transaction only when its seqNum is the
 * account's sequence + 1 (TransactionFrame::isBadSeq), so two transactions with the same slot are mutually
 * exclusive; signing both would let whoever holds them choose which one happens. A slot stays held until
 * the signed transaction's maxTime (plus a grace period for clock skew between this host and the network's
 * close time) has passed; a transaction without a maxTime holds its slot forever.
 *
 * Order (web3signer DbSlashingProtection): in ONE SQLite transaction check the slot and
 * record the intent (with its velocity spend), then sign, then store the signature, then reply. An intent
 * already holds the slot, so a crash between record and sign cannot open a window for a different hash;
 * a re-ask for the same hash signs again (ed25519 is deterministic, RFC 8032 section 5.1.6: same key, same
 * message, same signature) and completes the row.
 */

export interface SpendEntry {
  assetKey: string;
  amount: bigint;
}

export interface SlotIntent {
  proposalId: string;
  /** Hex of the hash the key signs. */
  signHash: string;
  /** Hex of the transaction that consumes the slot: the inner transaction for a fee bump, else signHash. */
  txHash: string;
  source: string;
  seq: string;
  /** Unix seconds; 0 = no upper time bound. */
  maxTime: number;
  /** G... address of the signing key. */
  signer: string;
  spend: readonly SpendEntry[];
  manual: boolean;
}

export interface SignatureRecord {
  signHash: string;
  txHash: string;
  source: string;
  seq: string;
  maxTime: number;
  proposalId: string;
  signer: string;
  state: 'intent' | 'signed';
  signature: string | null;
  manual: boolean;
  createdAt: number;
  signedAt: number | null;
}

/** A reason in a decision, as the reason registries build it (packages/errors defineReasons). */
export type Reason = DecisionReason;

export type Outcome = 'approve' | 'reject' | 'hold';

export interface DecisionRecord {
  proposalId: string;
  hash: string;
  outcome: Outcome;
  reasons: Reason[];
  at: number;
}

export interface PendingRecord {
  proposalId: string;
  hash: string;
  xdr: string;
  network: string;
  reasons: Reason[];
  summary: unknown;
  state: 'held' | 'approved' | 'rejected' | 'cancelled';
  receivedAt: number;
  closedAt: number | null;
  closedBy: string | null;
}

export type ReserveResult =
  | { status: 'reserved'; record: SignatureRecord }
  | { status: 'existing'; record: SignatureRecord }
  | { status: 'slot-taken'; holder: SignatureRecord };

/** The start of the minute holding `t` (unix seconds): the key of spend_minute. */
function minuteOf(t: number): number {
  return Math.floor(t / 60) * 60;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

interface SignatureRow {
  sign_hash: string;
  tx_hash: string;
  source: string;
  seq: string;
  max_time: number;
  proposal_id: string;
  signer: string;
  state: 'intent' | 'signed';
  signature: string | null;
  manual: number;
  created_at: number;
  signed_at: number | null;
}

interface PendingRow {
  proposal_id: string;
  hash: string;
  xdr: string;
  network: string;
  reasons: string;
  summary: string;
  state: PendingRecord['state'];
  received_at: number;
  closed_at: number | null;
  closed_by: string | null;
}

function toRecord(r: SignatureRow): SignatureRecord {
  return {
    signHash: r.sign_hash,
    txHash: r.tx_hash,
    source: r.source,
    seq: r.seq,
    maxTime: r.max_time,
    proposalId: r.proposal_id,
    signer: r.signer,
    state: r.state,
    signature: r.signature,
    manual: r.manual === 1,
    createdAt: r.created_at,
    signedAt: r.signed_at,
  };
}

function toPending(r: PendingRow): PendingRecord {
  return {
    proposalId: r.proposal_id,
    hash: r.hash,
    xdr: r.xdr,
    network: r.network,
    reasons: JSON.parse(r.reasons) as Reason[],
    summary: JSON.parse(r.summary) as unknown,
    state: r.state,
    receivedAt: r.received_at,
    closedAt: r.closed_at,
    closedBy: r.closed_by,
  };
}

/** The numbered migrations shipped with this version, in order: `001_init.sql` is version 1. */
/** The signing ledger's migrations, in version order. */
export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return listMigrationsIn(dir);
}

/** Path of the ledger file inside a data directory. */
export function ledgerPath(dataDir: string): string {
  return join(dataDir, 'ledger.sqlite');
}

/**
 * Open (creating if needed, mode 0600) a SQLite file with the durability settings the ledger needs and
 * bring its schema up to date. WAL lets the admin API read while a decision commits; synchronous=FULL makes
 * every commit durable (fsync of the WAL) before the signature can leave the process, so a power cut
 * cannot lose an intent that was followed by a released signature.
 * @throws CosignerError LEDGER_NEWER_SCHEMA, LEDGER_MIGRATION_FAILED
 */
export function openLedgerDb(
  path: string,
  opts: { migrationsDir?: string; readonly?: boolean } = {},
): Database.Database {
  if (opts.readonly) return new Database(path, { readonly: true, fileMustExist: true });
  return openMigratedDatabase(path, {
    migrationsDir: opts.migrationsDir ?? MIGRATIONS_DIR,
    newerSchema: (details) => nodeErrors.error('LEDGER_NEWER_SCHEMA', details),
    migrationFailed: (details, cause) => nodeErrors.error('LEDGER_MIGRATION_FAILED', details, { cause }),
  });
}

/** The signing ledger over one SQLite file. All methods are synchronous: better-sqlite3 commits before returning. */
export class SigningLedger {
  readonly db: Database.Database;
  readonly #graceSeconds: number;
  readonly #stmts;
  readonly #group: GroupCommit;
  readonly #wal: WalSync | undefined;

  /**
   * @param graceSeconds how long after a signed transaction's maxTime its slot stays held: covers the
   *   difference between this host's clock and the ledger close time the network checks maxTime against.
   */
  constructor(
    db: Database.Database,
    opts: { graceSeconds?: number; onDurabilityError?: (error: unknown) => void } = {},
  ) {
    this.db = db;
    this.#graceSeconds = opts.graceSeconds ?? 60;
    // Grouped commits sync the WAL themselves (wal-sync.ts), so that a review may defer its sync to the
    // signature's commit (review.ts); every other unit is on disk when its caller resumes, as under FULL.
    this.#wal = walSyncFor(db);
    this.#group = new GroupCommit(db, {
      immediate: true,
      ...(this.#wal ? { durability: this.#wal } : {}),
      onDurabilityError: opts.onDurabilityError ?? durableExit,
    });
    this.#stmts = {
      byHash: db.prepare<[string], SignatureRow>('SELECT * FROM signatures WHERE sign_hash = ?'),
      slot: db.prepare<[string, string], SignatureRow>(
        'SELECT * FROM signatures WHERE source = ? AND seq = ? ORDER BY created_at, rowid',
      ),
      insertSig: db.prepare(
        `INSERT INTO signatures (sign_hash, tx_hash, source, seq, max_time, proposal_id, signer, state, manual, created_at)
         VALUES (@signHash, @txHash, @source, @seq, @maxTime, @proposalId, @signer, 'intent', @manual, @now)`,
      ),
      insertSpend: db.prepare('INSERT INTO spend (sign_hash, asset_key, amount, at) VALUES (?, ?, ?, ?)'),
      sign: db.prepare(
        "UPDATE signatures SET state = 'signed', signature = ?, signed_at = ? WHERE sign_hash = ? AND state = 'intent'",
      ),
      spentEdge: db.prepare<[string, number, number], { amount: string }>(
        'SELECT amount FROM spend WHERE asset_key = ? AND at > ? AND at < ?',
      ),
      spentMinutes: db.prepare<[string, number], { total: string }>(
        'SELECT total FROM spend_minute WHERE asset_key = ? AND minute > ?',
      ),
      minuteGet: db.prepare<[string, number], { total: string }>(
        'SELECT total FROM spend_minute WHERE asset_key = ? AND minute = ?',
      ),
      minutePut: db.prepare(
        `INSERT INTO spend_minute (asset_key, minute, total) VALUES (?, ?, ?)
         ON CONFLICT (asset_key, minute) DO UPDATE SET total = excluded.total`,
      ),
      decision: db.prepare('INSERT INTO decisions (proposal_id, hash, outcome, reasons, at) VALUES (?, ?, ?, ?, ?)'),
      hold: db.prepare(
        `INSERT INTO pending (proposal_id, hash, xdr, network, reasons, summary, state, received_at)
         VALUES (?, ?, ?, ?, ?, ?, 'held', ?) ON CONFLICT (proposal_id) DO NOTHING`,
      ),
      pending: db.prepare<[string], PendingRow>('SELECT * FROM pending WHERE proposal_id = ?'),
      held: db.prepare<[], PendingRow>("SELECT * FROM pending WHERE state = 'held' ORDER BY received_at, proposal_id"),
      closePending: db.prepare(
        "UPDATE pending SET state = ?, closed_at = ?, closed_by = ? WHERE proposal_id = ? AND state = 'held'",
      ),
      counts: db.prepare<[], { signatures: number; signed: number; decisions: number }>(
        `SELECT (SELECT count(*) FROM signatures) AS signatures,
                (SELECT count(*) FROM signatures WHERE state = 'signed') AS signed,
                (SELECT count(*) FROM decisions) AS decisions`,
      ),
    };
  }

  get graceSeconds(): number {
    return this.#graceSeconds;
  }

  /** Run `fn` in one write transaction (BEGIN IMMEDIATE: no other writer, even another process, interleaves). */
  atomically<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /**
   * Run `fn` (synchronous) as if in `atomically`, but sharing one commit (one fsync) with the other units queued
   * in this turn of the event loop; resolves once that commit returned (@cosigner/runtime group-commit). The
   * hot path (review, signature) uses it; rare paths keep `atomically`.
   */
  grouped<T>(fn: () => T, opts?: RunOptions<T>): Promise<T> {
    return this.#group.run(fn, opts);
  }

  /** fdatasync calls the group commit made on the WAL so far (tests, metrics); 0 without a WAL file. */
  get walSyncs(): number {
    return this.#wal?.syncs ?? 0;
  }

  byHash(signHash: string): SignatureRecord | undefined {
    const row = this.#stmts.byHash.get(signHash);
    return row ? toRecord(row) : undefined;
  }

  /** Every record for a slot, oldest first. */
  slot(source: string, seq: string): SignatureRecord[] {
    return this.#stmts.slot.all(source, seq).map(toRecord);
  }

  /** True while a record still holds its slot at `now` (unix seconds). */
  isLive(r: Pick<SignatureRecord, 'maxTime'>, now: number): boolean {
    return r.maxTime === 0 || r.maxTime + this.#graceSeconds >= now;
  }

  /** A live record of this slot for a DIFFERENT transaction, if any: the reason to refuse. */
  liveConflict(source: string, seq: string, txHash: string, now: number): SignatureRecord | undefined {
    return this.slot(source, seq).find((r) => r.txHash !== txHash && this.isLive(r, now));
  }

  /**
   * Check the slot and record the intent to sign, atomically. Same hash again: the existing record (no
   * second spend). Different transaction for a live slot: `slot-taken`, nothing written.
   */
  reserve(intent: SlotIntent, now: number): ReserveResult {
    return this.atomically(() => this.reserveInTransaction(intent, now));
  }

  /** `reserve` for callers already inside `atomically` (the reviewer evaluates policy in the same transaction). */
  reserveInTransaction(intent: SlotIntent, now: number): ReserveResult {
    const existing = this.byHash(intent.signHash);
    if (existing) return { status: 'existing', record: existing };
    const holder = this.liveConflict(intent.source, intent.seq, intent.txHash, now);
    if (holder) return { status: 'slot-taken', holder };
    this.#stmts.insertSig.run({ ...intent, manual: intent.manual ? 1 : 0, now });
    const minute = minuteOf(now);
    for (const s of intent.spend) {
      if (s.amount <= 0n) continue;
      this.#stmts.insertSpend.run(intent.signHash, s.assetKey, s.amount.toString(), now);
      // Its minute's total, in the same transaction (migrations/003): exact bigint arithmetic, not SQLite's.
      const prev = this.#stmts.minuteGet.get(s.assetKey, minute);
      this.#stmts.minutePut.run(s.assetKey, minute, (BigInt(prev?.total ?? '0') + s.amount).toString());
    }
    return { status: 'reserved', record: this.byHash(intent.signHash) as SignatureRecord };
  }

  /**
   * Store the signature for a recorded intent. Idempotent for the same signature; an intent must exist.
   * @throws CosignerError LEDGER_UNKNOWN_HASH
   */
  storeSignature(signHash: string, signatureB64: string, now: number): SignatureRecord {
    return this.atomically(() => {
      const r = this.byHash(signHash);
      if (!r) throw nodeErrors.error('LEDGER_UNKNOWN_HASH', { hash: signHash });
      if (r.state === 'intent') this.#stmts.sign.run(signatureB64, now, signHash);
      return this.byHash(signHash) as SignatureRecord;
    });
  }

  /**
   * Sum of amounts recorded for `assetKey` after `now - windowSeconds` (policy velocity). Read as the totals of
   * the minutes that start inside the window plus the exact rows of the minute its start cuts (migrations/003):
   * at most `windowSeconds / 60 + 1` totals and one minute of rows, however many spends the window holds.
   */
  spent(assetKey: string, windowSeconds: number, now: number): bigint {
    const from = now - windowSeconds;
    const edge = minuteOf(from);
    let total = 0n;
    for (const row of this.#stmts.spentMinutes.all(assetKey, from)) total += BigInt(row.total);
    for (const row of this.#stmts.spentEdge.all(assetKey, from, edge + 60)) total += BigInt(row.amount);
    return total;
  }

  recordDecision(proposalId: string, hash: string, outcome: Outcome, reasons: readonly Reason[], now: number): void {
    this.#stmts.decision.run(proposalId, hash, outcome, JSON.stringify(reasons), now);
  }

  /** Keep a held proposal for manual approval; a second hold for the same proposal id keeps the first. */
  hold(
    p: { proposalId: string; hash: string; xdr: string; network: string; reasons: readonly Reason[]; summary: unknown },
    now: number,
  ): PendingRecord {
    this.#stmts.hold.run(
      p.proposalId,
      p.hash,
      p.xdr,
      p.network,
      JSON.stringify(p.reasons),
      JSON.stringify(p.summary),
      now,
    );
    return this.pending(p.proposalId) as PendingRecord;
  }

  pending(proposalId: string): PendingRecord | undefined {
    const row = this.#stmts.pending.get(proposalId);
    return row ? toPending(row) : undefined;
  }

  listHeld(): PendingRecord[] {
    return this.#stmts.held.all().map(toPending);
  }

  /** The newest decisions first (every review's outcome and reasons, `at` in unix seconds), at most `limit`. */
  recentDecisions(limit: number): DecisionRecord[] {
    return this.db
      .prepare<[number], { proposal_id: string; hash: string; outcome: Outcome; reasons: string; at: number }>(
        'SELECT proposal_id, hash, outcome, reasons, at FROM decisions ORDER BY id DESC LIMIT ?',
      )
      .all(limit)
      .map((r) => ({
        proposalId: r.proposal_id,
        hash: r.hash,
        outcome: r.outcome,
        reasons: JSON.parse(r.reasons) as Reason[],
        at: r.at,
      }));
  }

  /** Close a held proposal; false when it was not held (already closed or unknown). */
  closePending(proposalId: string, state: 'approved' | 'rejected' | 'cancelled', by: string, now: number): boolean {
    return this.#stmts.closePending.run(state, now, by, proposalId).changes === 1;
  }

  counts(): { signatures: number; signed: number; decisions: number } {
    return this.#stmts.counts.get() as { signatures: number; signed: number; decisions: number };
  }

  close(): void {
    this.#wal?.close();
    if (this.db.open) this.db.close();
  }
}

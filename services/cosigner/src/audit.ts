import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';

/**
 * Append-only, hash-chained audit log, kept in the signing ledger's SQLite file so that a decision and
 * its audit entry commit in the same transaction (an entry can never be missing for a recorded decision).
 *
 * Entry n: hash_n = sha256( prevHash_n (32 bytes) || canonical_n ), where canonical_n is the UTF-8 JSON
 * array [seq, at, type, data] and data is the entry's JSON exactly as stored. prevHash_1 is 32 zero bytes.
 * Editing, deleting or reordering any entry breaks every later link; SQLite triggers also refuse UPDATE and
 * DELETE on the table (migrations/001_init.sql), so the node itself can only append.
 *
 * What goes in: proposals seen (id, hash, kind), decisions with reasons, signatures released (hash, signer
 * address AND the signature: a signature is public by design: it is sent to the coordinator and published
 * on chain inside the envelope; keeping it lets an auditor check offline that the node released exactly
 * this signature over exactly this hash with its key), manual approvals, config/policy loads (their
 * sha256), session events. Never in: private keys, credentials, admin tokens, full signed envelopes.
 */

export type AuditType =
  | 'node.started'
  | 'config.loaded'
  | 'policy.loaded'
  | 'policy.reloaded'
  | 'policy.reload_refused'
  | 'proposal.seen'
  | 'decision'
  | 'signature.released'
  | 'manual.approved'
  | 'manual.rejected'
  | 'proposal.cancelled'
  | 'session.up'
  | 'session.down'
  | 'frame.refused'
  | 'keyring.loaded'
  | 'keyring.prepared'
  | 'keyring.activated'
  | 'keyring.abandoned'
  | 'roster.allowed'
  | 'roster.removed'
  | 'frost.dkg.joined'
  | 'frost.dkg.aborted'
  | 'frost.group.created'
  | 'frost.group.retired'
  | 'frost.group.dropped'
  | 'frost.nonces.recovered'
  | 'frost.share.released'
  | 'frost.refresh.joined'
  | 'frost.refresh.aborted'
  | 'frost.refresh.kept'
  | 'frost.refresh.adopted'
  | 'frost.refresh.discarded'
  | 'frost.refresh.mismatch';

export interface AuditEntry {
  seq: number;
  at: number;
  type: string;
  data: unknown;
  prevHash: string;
  hash: string;
}

const ZERO = '0'.repeat(64);

/** The hash of one entry given its predecessor's (hex). */
export function entryHash(prevHash: string, seq: number, at: number, type: string, dataJson: string): string {
  const canonical = JSON.stringify([seq, at, type, dataJson]);
  return createHash('sha256').update(Buffer.from(prevHash, 'hex')).update(canonical, 'utf8').digest('hex');
}

interface Row {
  seq: number;
  at: number;
  type: string;
  data: string;
  prev_hash: string;
  hash: string;
}

export class AuditLog {
  readonly #db: Database.Database;
  readonly #last;
  readonly #insert;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#last = db.prepare<[], Row>('SELECT * FROM audit ORDER BY seq DESC LIMIT 1');
    this.#insert = db.prepare('INSERT INTO audit (seq, at, type, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)');
  }

  /** Append one entry. Inside a ledger transaction it commits with it; outside, it is its own transaction. */
  append(type: AuditType, data: Record<string, unknown>, at = Date.now()): AuditEntry {
    const run = (): AuditEntry => {
      const last = this.#last.get();
      const seq = (last?.seq ?? 0) + 1;
      const prevHash = last?.hash ?? ZERO;
      const dataJson = JSON.stringify(data);
      const hash = entryHash(prevHash, seq, at, type, dataJson);
      this.#insert.run(seq, at, type, dataJson, prevHash, hash);
      return { seq, at, type, data, prevHash, hash };
    };
    return this.#db.inTransaction ? run() : this.#db.transaction(run).immediate();
  }

  /** The newest entries first, at most `limit`. */
  tail(limit = 100): AuditEntry[] {
    return this.#db
      .prepare<[number], Row>('SELECT * FROM audit ORDER BY seq DESC LIMIT ?')
      .all(limit)
      .map((r) => ({
        seq: r.seq,
        at: r.at,
        type: r.type,
        data: JSON.parse(r.data),
        prevHash: r.prev_hash,
        hash: r.hash,
      }));
  }
}

export type ChainReport =
  | { ok: true; entries: number; head: string }
  | { ok: false; entries: number; brokenAt: number; reason: string };

/**
 * Walk the whole chain and report the first broken link: a gap in seq, a prevHash that is not the
 * previous entry's hash, or a hash that does not match the entry's content.
 */
export function verifyAuditChain(db: Database.Database): ChainReport {
  let prev = ZERO;
  let expectedSeq = 1;
  let n = 0;
  for (const r of db.prepare<[], Row>('SELECT * FROM audit ORDER BY seq').iterate()) {
    if (r.seq !== expectedSeq) {
      return { ok: false, entries: n, brokenAt: expectedSeq, reason: `entry ${expectedSeq} is missing` };
    }
    if (r.prev_hash !== prev) {
      return { ok: false, entries: n, brokenAt: r.seq, reason: `entry ${r.seq} does not link to entry ${r.seq - 1}` };
    }
    if (entryHash(r.prev_hash, r.seq, r.at, r.type, r.data) !== r.hash) {
      return { ok: false, entries: n, brokenAt: r.seq, reason: `entry ${r.seq} was altered (its hash does not match)` };
    }
    prev = r.hash;
    expectedSeq += 1;
    n += 1;
  }
  return { ok: true, entries: n, head: prev };
}

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SealedBlob } from '@cosigner/frost/sealer';
import type { GroupPublic } from '@cosigner/frost/suite';
import type { DkgRosterEntry } from '@cosigner/protocol/frost-dkg';
import { openMigratedDatabase } from '@cosigner/runtime/sqlite';
import type Database from 'better-sqlite3';
import { nodeErrors } from '../errors.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/** A FROST group this node belongs to, as recorded after a successful key generation. */
export interface NodeFrostGroup {
  address: string;
  dkgId: string;
  roster: string;
  threshold: number;
  participants: DkgRosterEntry[];
  myIndex: number;
  group: GroupPublic;
  transcript: string;
  /** The share sealed by the node's custody; opened into memory only to sign. Null once the group is retired. */
  sealedShare: SealedBlob | null;
  sealerKind: string;
  status: 'pending' | 'confirmed' | 'retired';
  createdAt: number;
  /** When this node's operator retired the group (ms since the epoch); null while it is not retired. */
  retiredAt: number | null;
}

/** What `retire` did: the group's record as it now is, and whether this call retired it (false: it was already). */
export interface Retirement {
  group: NodeFrostGroup;
  changed: boolean;
  /**
   * The file was rewritten and its write-ahead log emptied after the change (false: another connection kept a read
   * open, or held a lock; retry, since until then an old page may still be in the main file).
   */
  walCleared: boolean;
}

/** A refresh's new share, sealed, kept beside the group's current one until the refresh is adopted or discarded. */
export interface PendingRefresh {
  refreshId: string;
  address: string;
  /** groupDigest of `group` (hex). */
  digest: string;
  group: GroupPublic;
  transcript: string;
  sealedShare: SealedBlob;
  createdAt: number;
}

/** A row as SELECT_GROUP names its columns: the record's own names, with its JSON fields still text. */
type Row = Omit<NodeFrostGroup, 'participants' | 'group' | 'sealedShare'> & {
  participants: string;
  groupPublic: string;
  sealedShare: string | null;
};

/** The columns under the record's names, so a row needs only its JSON fields parsed (fromRow). */
const SELECT_GROUP = `SELECT address, dkg_id AS dkgId, roster, threshold, participants, my_index AS myIndex,
  group_public AS groupPublic, transcript, sealed_share AS sealedShare, sealer_kind AS sealerKind, status,
  created_at AS createdAt, retired_at AS retiredAt FROM frost_groups`;

/** The file, beside the signing ledger in the data directory (0600 in a 0700 directory, synchronous=FULL). */
export function frostStorePath(dataDir: string): string {
  return join(dataDir, 'frost.sqlite');
}

/**
 * The node's record of its FROST groups (its own SQLite file, so key generation adds no migration to the signing
 * ledger). A group is written once, in one synced transaction, after its share is sealed and the sealed copy was
 * checked to open to the share that matches this node's verifying share; it is pending until every participant's
 * result agreed, then confirmed. Its operator may retire it (`retire`): the sealed share is overwritten, the public
 * data stays.
 *
 * The connection runs with `secure_delete` on (sqlite.org/pragma.html#pragma_secure_delete): whatever a write frees
 * (an adopted refresh's old sealed share, a retired group's, a discarded pending one) is overwritten with zeros in
 * the file instead of lingering in a free page or a free block of a page.
 * @throws NODE_FROST_STORE_NEWER_SCHEMA, NODE_FROST_STORE_MIGRATION_FAILED
 */
export class FrostGroupStore {
  readonly #db: Database.Database;

  constructor(path: string, opts: { migrationsDir?: string } = {}) {
    this.#db = openMigratedDatabase(path, {
      migrationsDir: opts.migrationsDir ?? MIGRATIONS_DIR,
      newerSchema: (d) => nodeErrors.error('NODE_FROST_STORE_NEWER_SCHEMA', d),
      migrationFailed: (d, cause) => nodeErrors.error('NODE_FROST_STORE_MIGRATION_FAILED', d, { cause }),
    });
    this.#db.pragma('secure_delete = ON');
  }

  insert(g: Omit<NodeFrostGroup, 'retiredAt'>): void {
    this.#db
      .prepare(
        `INSERT INTO frost_groups (address, dkg_id, roster, threshold, participants, my_index, group_public,
           transcript, sealed_share, sealer_kind, status, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
      )
      .run(
        g.address,
        g.dkgId,
        g.roster,
        g.threshold,
        JSON.stringify(g.participants),
        g.myIndex,
        JSON.stringify(g.group),
        g.transcript,
        JSON.stringify(g.sealedShare),
        g.sealerKind,
        g.status,
        g.createdAt,
      );
  }

  /** Every participant's result agreed: the group is this node's. */
  confirm(address: string): void {
    this.#db
      .prepare(`UPDATE frost_groups SET status = 'confirmed' WHERE address = ? AND status = 'pending'`)
      .run(address);
  }

  /** The session aborted before every result agreed: its group is not kept (its sealed share goes with it). */
  deletePending(address: string): void {
    this.#db.prepare(`DELETE FROM frost_groups WHERE address = ? AND status = 'pending'`).run(address);
  }

  /** Forget a group (its key generation failed elsewhere after this node confirmed it). */
  delete(address: string): void {
    this.#db.prepare('DELETE FROM frost_groups WHERE address = ?').run(address);
  }

  /**
   * The confirmed and retired groups whose roster (threshold, participants, identity keys; not the session id)
   * equals `key`: a retired group still used its roster's expectation.
   */
  byMembership(key: string): NodeFrostGroup[] {
    return this.list().filter((g) => g.status !== 'pending' && membershipKey(g.threshold, g.participants) === key);
  }

  /**
   * Retire a confirmed group: in one synced transaction its sealed share is overwritten with NULL (status
   * `retired`, `retiredAt` set) and a pending refresh's sealed share of it is deleted. With secure_delete on, the
   * bytes of both are zeroed in the pages the transaction writes. Then the file is rewritten (VACUUM: no free page
   * or free block keeps an older copy, e.g. the share a refresh replaced before secure_delete was on) and the
   * write-ahead log checkpointed and truncated, so no frame of the log still holds a page with the sealed share.
   * Idempotent: a retired group is answered as it is (the file is rewritten and the log cleared again, in case a
   * reader or a lock blocked it the first time).
   * @returns undefined when this store holds no such group, or only a pending one (`get` tells which)
   */
  retire(address: string, at: number): Retirement | undefined {
    const changed = this.#db.transaction((): boolean | undefined => {
      const g = this.get(address);
      if (g?.status !== 'confirmed') return g?.status === 'retired' ? false : undefined;
      this.#db
        .prepare(
          `UPDATE frost_groups SET status = 'retired', sealed_share = NULL, retired_at = ?
           WHERE address = ? AND status = 'confirmed'`,
        )
        .run(at, address);
      this.#db.prepare('DELETE FROM frost_refresh_pending WHERE address = ?').run(address);
      return true;
    })();
    if (changed === undefined) return undefined;
    return { group: this.get(address)!, changed, walCleared: this.#scrub() };
  }

  /**
   * Rewrite the file and empty its write-ahead log (retire). Never throws: the retirement is committed already, and
   * what follows it (the share in memory dropped, the audit entry) must still run; false says to try again.
   */
  #scrub(): boolean {
    try {
      this.#db.exec('VACUUM');
      const [ckpt] = this.#db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      return ckpt?.busy === 0;
    } catch {
      /* v8 ignore next -- VACUUM fails only on a lock another process holds past busy_timeout, or a full disk */
      return false;
    }
  }

  /**
   * Keep a refresh's new share beside the group's current one (frost_refresh_pending): the old share keeps signing
   * until adoptRefresh. One refresh per group: a leftover row of an earlier refresh of the group is replaced.
   */
  insertRefresh(r: PendingRefresh): void {
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM frost_refresh_pending WHERE address = ?').run(r.address);
      this.#db
        .prepare(
          `INSERT INTO frost_refresh_pending (refresh_id, address, digest, group_public, transcript, sealed_share,
             created_at) VALUES (?,?,?,?,?,?,?)`,
        )
        .run(
          r.refreshId,
          r.address,
          r.digest,
          JSON.stringify(r.group),
          r.transcript,
          JSON.stringify(r.sealedShare),
          r.createdAt,
        );
    })();
  }

  refresh(refreshId: string): PendingRefresh | undefined {
    const row = this.#db
      .prepare(
        `SELECT refresh_id AS refreshId, address, digest, group_public AS groupPublic, transcript,
           sealed_share AS sealedShare, created_at AS createdAt FROM frost_refresh_pending WHERE refresh_id = ?`,
      )
      .get(refreshId) as
      | (Omit<PendingRefresh, 'group' | 'sealedShare'> & { groupPublic: string; sealedShare: string })
      | undefined;
    if (!row) return undefined;
    const { groupPublic, sealedShare, ...rest } = row;
    return {
      ...rest,
      group: JSON.parse(groupPublic) as GroupPublic,
      sealedShare: JSON.parse(sealedShare) as SealedBlob,
    };
  }

  /** Refreshes whose new share is kept but not yet adopted or discarded (a node restarted between the phases). */
  pendingRefreshes(): string[] {
    return (this.#db.prepare('SELECT refresh_id AS id FROM frost_refresh_pending').all() as { id: string }[]).map(
      (r) => r.id,
    );
  }

  /**
   * Adopt a refresh: in one synced transaction the group's row takes the new sealed share, public data and
   * transcript (the old sealed share is overwritten: gone), and the pending row is deleted.
   * @returns false when no such pending refresh is kept (adopted already, or never kept here)
   */
  adoptRefresh(refreshId: string): boolean {
    return this.#db.transaction(() => {
      const r = this.refresh(refreshId);
      if (!r) return false;
      this.#db
        .prepare('UPDATE frost_groups SET group_public = ?, transcript = ?, sealed_share = ? WHERE address = ?')
        .run(JSON.stringify(r.group), r.transcript, JSON.stringify(r.sealedShare), r.address);
      this.#db.prepare('DELETE FROM frost_refresh_pending WHERE refresh_id = ?').run(refreshId);
      return true;
    })();
  }

  /** Discard a refresh's new share (the refresh failed or was not adopted): the old share stays. */
  discardRefresh(refreshId: string): boolean {
    return this.#db.prepare('DELETE FROM frost_refresh_pending WHERE refresh_id = ?').run(refreshId).changes > 0;
  }

  get(address: string): NodeFrostGroup | undefined {
    const row = this.#db.prepare(`${SELECT_GROUP} WHERE address = ?`).get(address) as Row | undefined;
    return row && fromRow(row);
  }

  list(): NodeFrostGroup[] {
    return (this.#db.prepare(`${SELECT_GROUP} ORDER BY created_at`).all() as Row[]).map(fromRow);
  }

  close(): void {
    this.#db.close();
  }
}

/** Threshold and participants (node id and identity key), independent of indices and session: what `expect` says. */
export function membershipKey(
  threshold: number,
  participants: readonly { nodeId: string; identityKey: string }[],
): string {
  const members = participants.map((p) => `${p.nodeId}=${p.identityKey}`).sort();
  return JSON.stringify([threshold, members]);
}

function fromRow({ participants, groupPublic, sealedShare, ...columns }: Row): NodeFrostGroup {
  return {
    ...columns,
    participants: JSON.parse(participants) as DkgRosterEntry[],
    group: JSON.parse(groupPublic) as GroupPublic,
    sealedShare: sealedShare === null ? null : (JSON.parse(sealedShare) as SealedBlob),
  };
}

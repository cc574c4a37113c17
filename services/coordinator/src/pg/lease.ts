import { coordinatorErrors } from '../errors.ts';
import type { PgStore } from './store.ts';

/**
 * Round leases with fencing tokens, in PostgreSQL (table `round_leases`): exactly one replica drives a round at a
 * time, and a replica that lost its lease cannot write over the one that took the round over.
 *
 * The rules (docs/architecture.md "Coordinator replicas on PostgreSQL"):
 * 1. A lease is (round, holder, token, expiry). `acquire` succeeds only when the round has no lease or its lease
 *    has expired; the new lease's token is the previous token + 1 (1 for the first), so tokens of one round only
 *    grow and are never handed out twice. Two replicas acquiring at once: one wins, the row lock orders them.
 * 2. `renew` extends the expiry, only while the caller still holds the lease (same token, not expired). A holder
 *    renews well within the lease time; one that fails to renew stops driving the round.
 * 3. Every write a driver makes for a round goes through `fenced`: one transaction that first takes a share lock
 *    on the lease row and checks that the row still carries the caller's token and has not expired, then writes.
 *    A takeover updates that row, so it waits for a fenced write in progress to commit, and a fenced write that
 *    starts after a takeover sees the new token and is refused (COORD_LEASE_LOST) with nothing written. A holder
 *    whose connection dies loses the writes in flight (rolled back with the connection) and, once its lease has
 *    expired, every later one.
 * 4. Time is the database's clock (`clock_timestamp()`, ms), one clock for all replicas, so a replica's own clock
 *    skew cannot stretch a lease. Tests inject `now` instead.
 * 5. `release` ends a lease at once (a replica shutting down cleanly), so another replica need not wait.
 */

export interface Lease {
  proposalId: string;
  holder: string;
  token: number;
  /** ms since epoch, database clock. */
  expiresAt: number;
}

/** The database clock in ms, or the injected `now`. */
const NOW = (i: number): string => `COALESCE($${i}::bigint, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)`;

interface LeaseRow {
  proposal_id: string;
  holder: string;
  token: number;
  expires_at: number;
}

const toLease = (r: LeaseRow): Lease => ({
  proposalId: r.proposal_id,
  holder: r.holder,
  token: r.token,
  expiresAt: r.expires_at,
});

/**
 * Take the round's lease for `ttlMs` when it is free or expired. Null when another lease (this holder's included)
 * is still valid.
 * @throws CosignerError COORD_STORE_UNAVAILABLE
 */
export async function acquireLease(
  store: PgStore,
  proposalId: string,
  holder: string,
  ttlMs: number,
  now?: number,
): Promise<Lease | null> {
  const { rows } = await store.query<LeaseRow>(
    `WITH t AS (SELECT ${NOW(4)} AS now)
     INSERT INTO round_leases (proposal_id, holder, token, acquired_at, expires_at)
       SELECT $1, $2, 1, t.now, t.now + $3 FROM t
     ON CONFLICT (proposal_id) DO UPDATE SET holder = excluded.holder, token = round_leases.token + 1,
       acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
       WHERE round_leases.expires_at <= excluded.acquired_at
     RETURNING proposal_id, holder, token, expires_at`,
    [proposalId, holder, ttlMs, now ?? null],
  );
  return rows[0] ? toLease(rows[0]) : null;
}

/**
 * Extend a lease this holder still holds to now + `ttlMs`. Null when it was lost (expired or taken over): the
 * caller must stop driving the round.
 * @throws CosignerError COORD_STORE_UNAVAILABLE
 */
export async function renewLease(store: PgStore, lease: Lease, ttlMs: number, now?: number): Promise<Lease | null> {
  const { rows } = await store.query<LeaseRow>(
    `WITH t AS (SELECT ${NOW(5)} AS now)
     UPDATE round_leases SET expires_at = t.now + $4 FROM t
       WHERE proposal_id = $1 AND holder = $2 AND token = $3 AND expires_at > t.now
     RETURNING proposal_id, holder, token, expires_at`,
    [lease.proposalId, lease.holder, lease.token, ttlMs, now ?? null],
  );
  return rows[0] ? toLease(rows[0]) : null;
}

/**
 * Rule 2 for many leases of one holder in one statement (a replica renews every round it drives at once): each
 * lease is extended exactly when `renewLease` would extend it alone (same holder, same token, not expired, on the
 * database clock), the others are left as they are. Returns the renewed ones by round; a lease missing from the
 * map was lost.
 * @throws CosignerError COORD_STORE_UNAVAILABLE
 */
export async function renewLeases(
  store: PgStore,
  holder: string,
  leases: readonly Lease[],
  ttlMs: number,
  now?: number,
): Promise<Map<string, Lease>> {
  if (leases.length === 0) return new Map();
  const { rows } = await store.query<LeaseRow>(
    `WITH t AS (SELECT ${NOW(5)} AS now)
     UPDATE round_leases l SET expires_at = t.now + $4
       FROM t, unnest($2::text[], $3::bigint[]) AS m(proposal_id, token)
       WHERE l.proposal_id = m.proposal_id AND l.token = m.token AND l.holder = $1 AND l.expires_at > t.now
     RETURNING l.proposal_id, l.holder, l.token, l.expires_at`,
    [holder, leases.map((l) => l.proposalId), leases.map((l) => l.token), ttlMs, now ?? null],
  );
  return new Map(rows.map((r) => [r.proposal_id, toLease(r)]));
}

/**
 * End a lease now, so another replica can take the round at once. False when the lease was no longer this one.
 * @throws CosignerError COORD_STORE_UNAVAILABLE
 */
export async function releaseLease(store: PgStore, lease: Lease, now?: number): Promise<boolean> {
  const res = await store.query(
    `WITH t AS (SELECT ${NOW(4)} AS now)
     UPDATE round_leases SET expires_at = LEAST(expires_at, t.now) FROM t
       WHERE proposal_id = $1 AND holder = $2 AND token = $3`,
    [lease.proposalId, lease.holder, lease.token, now ?? null],
  );
  return res.rowCount === 1;
}

/** The round's lease row as stored (possibly expired), or undefined when the round was never leased. */
export async function currentLease(store: PgStore, proposalId: string): Promise<Lease | undefined> {
  const { rows } = await store.query<LeaseRow>(
    'SELECT proposal_id, holder, token, expires_at FROM round_leases WHERE proposal_id = $1',
    [proposalId],
  );
  return rows[0] && toLease(rows[0]);
}

/**
 * Open proposals that no replica drives now (never leased, or lease expired), oldest first: what a replica
 * looks for to take rounds over.
 * @throws CosignerError COORD_STORE_UNAVAILABLE
 */
export async function unleasedOpenProposals(store: PgStore, limit: number, now?: number): Promise<string[]> {
  const { rows } = await store.query<{ id: string }>(
    `SELECT p.id FROM proposals p LEFT JOIN round_leases l ON l.proposal_id = p.id
       WHERE (p.status = 'pending' OR (p.status = 'signed' AND ((p.submit AND p.result IS NULL) OR p.follow_up_due)))
         AND (l.proposal_id IS NULL OR l.expires_at <= ${NOW(2)})
       ORDER BY p.n LIMIT $1`,
    [limit, now ?? null],
  );
  return rows.map((r) => r.id);
}

/**
 * Run `fn` as one transaction that writes for the lease's round only while the lease is still this one (rule 3).
 * @throws CosignerError COORD_LEASE_LOST (nothing written), COORD_STORE_UNAVAILABLE (nothing known written)
 */
export async function fenced<T>(
  store: PgStore,
  lease: Lease,
  fn: (tx: PgStore) => Promise<T>,
  now?: number,
): Promise<T> {
  return store.atomically(async (tx) => {
    const { rows } = await tx.query<{ holder: string; token: number; live: boolean }>(
      `SELECT holder, token, expires_at > ${NOW(2)} AS live FROM round_leases WHERE proposal_id = $1 FOR SHARE`,
      [lease.proposalId, now ?? null],
    );
    const row = rows[0];
    if (!row || row.token !== lease.token || row.holder !== lease.holder || !row.live) {
      throw coordinatorErrors.error('COORD_LEASE_LOST', {
        proposalId: lease.proposalId,
        token: lease.token,
        currentToken: row?.token ?? null,
      });
    }
    return fn(tx);
  });
}

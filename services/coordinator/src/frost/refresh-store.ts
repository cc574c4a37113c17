import type { GroupPublic } from '@cosigner/frost/suite';
import type { DkgRosterEntry, SignedStatement } from '@cosigner/protocol/frost-dkg';

/**
 * The coordinator's FROST share refreshes and their two-phase adoption record: their shapes, and how a row of table
 * frost_refresh (SQLite migration 008, PostgreSQL migration 004) reads. They live in the coordinator's one store
 * (store.ts FrostRepository), shared by every replica on PostgreSQL.
 */

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

/** A row of frost_refresh as both stores return it. */
export interface RefreshRow {
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

/** The columns of an INSERT INTO frost_refresh, in the order of refreshParams. */
export const REFRESH_COLUMNS = [
  'id',
  'address',
  'threshold',
  'participants',
  'roster',
  'status',
  'step',
  'old_digest',
  'digest',
  'group_public',
  'transcript',
  'reports',
  'error',
  'acked',
  'created_by',
  'created_at',
  'updated_at',
] as const;

export function refreshParams(r: RefreshRecord): unknown[] {
  return [
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
  ];
}

export function refreshFromRow(r: RefreshRow): RefreshRecord {
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

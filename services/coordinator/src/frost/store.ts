import type { GroupPublic } from '@cosigner/frost/suite';
import type { DkgRosterEntry } from '@cosigner/protocol/frost-dkg';

/**
 * The coordinator's FROST records of key generations, the groups they made and the group each FROST proposal is
 * bound to: their shapes, and how a row of table frost_dkg (SQLite migration 008, PostgreSQL migration 004) reads.
 * They live in the coordinator's one store (store.ts FrostRepository), shared by every replica on PostgreSQL.
 */

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

/** A row of frost_dkg as both stores return it. */
export interface DkgRow {
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

/** The parameters of an INSERT INTO frost_dkg, in column order (DKG_COLUMNS). */
export const DKG_COLUMNS = [
  'id',
  'threshold',
  'participants',
  'roster',
  'status',
  'step',
  'address',
  'group_public',
  'transcript',
  'error',
  'created_by',
  'created_at',
  'updated_at',
] as const;

export function dkgParams(r: DkgRecord): unknown[] {
  return [
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
  ];
}

/** A FROST proposal's binding to the group that signs it (table frost_proposals). */
export interface FrostProposalBinding {
  proposalId: string;
  address: string;
  createdAt: number;
}

export function dkgFromRow(r: DkgRow): DkgRecord {
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

import type { AccountAuth, Requirement } from '@cosigner/stellar/types';
import type {
  ApiKeyRecord,
  AuthSignatureRecord,
  CallbackRecord,
  DecisionReasonRecord,
  DecisionRecord,
  EventRecord,
  MisbehaviourRecord,
  NodeRecord,
  ProposalRecord,
  ProposalStatus,
  SignatureRecord,
  SubmissionResult,
} from './records.ts';

/**
 * The row shapes of the coordinator's tables and their mapping to records, shared by the SQLite store
 * (store.ts) and the PostgreSQL store (pg/store.ts): both schemas hold the same columns, so one mapping keeps the
 * two stores from drifting apart. The one dialect difference is normalised here, at the edge: SQLite has no
 * boolean type and returns flags as 0/1, PostgreSQL returns BOOLEAN columns as booleans.
 */

/** A flag column as either driver returns it: 0/1 from better-sqlite3, true/false from node-postgres. */
export type FlagColumn = number | boolean;

/** A flag column as a boolean, whichever driver read it. */
export function flag(v: FlagColumn): boolean {
  return v === true || v === 1;
}

export interface ProposalRow {
  /** The insertion sequence number, the page cursor of `list`. */
  n: number;
  id: string;
  idempotency_key: string | null;
  api_key_id: string | null;
  kind: string;
  xdr: string;
  hash: string;
  network: string;
  status: string;
  status_reason: string | null;
  requirements: string;
  accounts: string;
  submit: FlagColumn;
  submit_follow_up: FlagColumn;
  callback_url: string | null;
  note: string | null;
  max_time: number;
  envelope: string | null;
  result: string | null;
  created_at: number;
  updated_at: number;
  signed_at: number | null;
  follow_up_due: FlagColumn;
}

export function proposalFromRow(r: ProposalRow): ProposalRecord {
  return {
    id: r.id,
    idempotencyKey: r.idempotency_key,
    apiKeyId: r.api_key_id,
    kind: r.kind as ProposalRecord['kind'],
    xdr: r.xdr === '' ? null : r.xdr,
    hash: r.hash,
    network: r.network,
    status: r.status as ProposalStatus,
    statusReason: r.status_reason,
    requirements: JSON.parse(r.requirements) as Requirement[],
    accounts: JSON.parse(r.accounts) as AccountAuth[],
    submit: flag(r.submit),
    submitFollowUp: flag(r.submit_follow_up),
    callbackUrl: r.callback_url,
    note: r.note,
    maxTime: r.max_time,
    envelope: r.envelope,
    result: r.result === null ? null : (JSON.parse(r.result) as SubmissionResult),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    signedAt: r.signed_at,
    ...(flag(r.follow_up_due) ? { followUpDue: true } : {}),
  };
}

export interface NodeRow {
  id: string;
  identity_key: string;
  stellar_key: string;
  enrolled_at: number;
  last_seen: number | null;
  last_latency_ms: number | null;
  approvals: number;
  rejections: number;
  misbehaviours: number;
}

export function nodeFromRow(r: NodeRow): NodeRecord {
  return {
    id: r.id,
    identityKey: r.identity_key,
    stellarKey: r.stellar_key,
    enrolledAt: r.enrolled_at,
    lastSeen: r.last_seen,
    lastLatencyMs: r.last_latency_ms,
    approvals: r.approvals,
    rejections: r.rejections,
    misbehaviours: r.misbehaviours,
  };
}

export interface SignatureRow {
  proposal_id: string;
  signer_key: string;
  node_id: string;
  signature: string;
  created_at: number;
}

export function signatureFromRow(r: SignatureRow): SignatureRecord {
  return {
    proposalId: r.proposal_id,
    signerKey: r.signer_key,
    nodeId: r.node_id,
    signature: r.signature,
    createdAt: r.created_at,
  };
}

export interface AuthSignatureRow extends SignatureRow {
  entry_index: number;
  payload: string;
}

export function authSignatureFromRow(r: AuthSignatureRow): AuthSignatureRecord {
  return {
    proposalId: r.proposal_id,
    entryIndex: r.entry_index,
    signerKey: r.signer_key,
    nodeId: r.node_id,
    payload: r.payload,
    signature: r.signature,
    createdAt: r.created_at,
  };
}

export interface DecisionRow {
  proposal_id: string;
  node_id: string;
  outcome: string;
  reasons: string;
  created_at: number;
}

export function decisionFromRow(r: DecisionRow): DecisionRecord {
  return {
    proposalId: r.proposal_id,
    nodeId: r.node_id,
    outcome: r.outcome as DecisionRecord['outcome'],
    reasons: JSON.parse(r.reasons) as DecisionReasonRecord[],
    createdAt: r.created_at,
  };
}

export interface EventRow {
  seq: number;
  proposal_id: string | null;
  type: string;
  data: string;
  created_at: number;
}

export function eventFromRow(r: EventRow): EventRecord {
  return {
    seq: r.seq,
    proposalId: r.proposal_id,
    type: r.type,
    data: JSON.parse(r.data) as Record<string, unknown>,
    createdAt: r.created_at,
  };
}

export interface MisbehaviourRow {
  node_id: string;
  proposal_id: string | null;
  kind: string;
  detail: string;
  created_at: number;
}

export function misbehaviourFromRow(r: MisbehaviourRow): MisbehaviourRecord {
  return {
    nodeId: r.node_id,
    proposalId: r.proposal_id,
    kind: r.kind,
    detail: r.detail,
    createdAt: r.created_at,
  };
}

export interface ApiKeyRow {
  id: string;
  hash: string;
  /** Comma-separated; an empty string is no scope. */
  scopes: string;
  label: string | null;
  created_at: number;
  revoked_at: number | null;
}

export function apiKeyFromRow(r: ApiKeyRow): ApiKeyRecord {
  return {
    id: r.id,
    hash: r.hash,
    scopes: r.scopes.split(',').filter((s) => s.length > 0),
    label: r.label,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

/** A callback_outbox row joined with its event. */
export interface CallbackRow {
  id: number;
  url: string;
  attempts: number;
  last_error?: string | null;
  seq: number;
  proposal_id: string | null;
  type: string;
  data: string;
  created_at: number;
}

export function callbackFromRow(r: CallbackRow): CallbackRecord {
  return { id: r.id, url: r.url, attempts: r.attempts, event: eventFromRow(r) };
}

import type { AccountAuth, Requirement } from '@cosigner/stellar/types';

/**
 * The records the coordinator's stores keep and return (store.ts: the repository interfaces and the SQLite store;
 * pg/store.ts: PostgreSQL), a module of their own so that the row mapping (rows.ts), which both stores use, and
 * the store that imports it do not import each other. store.ts re-exports them.
 */

export type ProposalStatus = 'pending' | 'signed' | 'submitted' | 'failed' | 'rejected' | 'expired' | 'cancelled';

export interface SubmissionResult {
  outcome: 'accepted' | 'failed';
  /** Horizon's transaction result code (tx_bad_auth, ...) or a transport code. */
  code: string | null;
  message: string;
  operationCodes: string[];
  ledger: number | null;
  attempts: number;
}

export interface ProposalRecord {
  id: string;
  idempotencyKey: string | null;
  apiKeyId: string | null;
  /** Which round module runs it (src/kinds/): `authEntries` / `sorobanTx` are Soroban authorization rounds. */
  kind: ProposalKind;
  /**
   * The transaction envelope as proposed (base64): a `sorobanTx` row's invokeHostFunction transaction; null for
   * `authEntries`, which has no transaction (its entries are in `authEntries(id)`).
   */
  xdr: string | null;
  hash: string;
  network: string;
  status: ProposalStatus;
  statusReason: string | null;
  requirements: Requirement[];
  /** The signers and thresholds the requirements were computed from (a snapshot, so a restart resumes). */
  accounts: AccountAuth[];
  submit: boolean;
  /** `sorobanTx`: submit the transaction proposal that follows the signed entries (the client's `submit`). */
  submitFollowUp: boolean;
  callbackUrl: string | null;
  note: string | null;
  /** Unix seconds of the transaction's upper time bound; 0 = none. */
  maxTime: number;
  envelope: string | null;
  result: SubmissionResult | null;
  createdAt: number;
  updatedAt: number;
  signedAt: number | null;
  /**
   * `sorobanTx`, signed: the transaction proposal that follows it is still to be opened (set in the `signed`
   * commit, cleared by `followUpDone`). Absent otherwise.
   */
  followUpDue?: boolean;
}

export type ProposalKind = 'transaction' | 'feeBump' | 'authEntries' | 'sorobanTx' | 'frostTx';

/** One authorization entry of a Soroban round, as proposed and, once the round is signed, with its signatures. */
export interface AuthEntryRecord {
  index: number;
  /** base64 SorobanAuthorizationEntry. */
  entry: string;
  signed: string | null;
}

export interface SignatureRecord {
  proposalId: string;
  signerKey: string;
  nodeId: string;
  /** base64 of the 64-byte ed25519 signature over the proposal hash. */
  signature: string;
  createdAt: number;
}

/** A verified node signature over one Soroban auth entry's payload. */
export interface AuthSignatureRecord {
  proposalId: string;
  entryIndex: number;
  signerKey: string;
  nodeId: string;
  /** Hex of the 32-byte payload the coordinator computed and the signature verified over. */
  payload: string;
  signature: string;
  createdAt: number;
}

export interface DecisionReasonRecord {
  code: string;
  message: string;
  opIndex?: number;
  field?: string;
}

export interface DecisionRecord {
  proposalId: string;
  nodeId: string;
  /** `unavailable`: the node's key backend could not sign (SIGNER_UNAVAILABLE); it is asked again later. */
  outcome: 'approve' | 'reject' | 'hold' | 'invalid' | 'unavailable';
  reasons: DecisionReasonRecord[];
  createdAt: number;
}

export interface EventRecord {
  seq: number;
  proposalId: string | null;
  type: string;
  data: Record<string, unknown>;
  createdAt: number;
}

export interface NodeRecord {
  id: string;
  identityKey: string;
  stellarKey: string;
  enrolledAt: number;
  lastSeen: number | null;
  lastLatencyMs: number | null;
  approvals: number;
  rejections: number;
  misbehaviours: number;
}

export interface MisbehaviourRecord {
  nodeId: string;
  proposalId: string | null;
  kind: string;
  detail: string;
  createdAt: number;
}

export interface ApiKeyRecord {
  id: string;
  /** sha256 hex of the whole key: the key itself is never stored. */
  hash: string;
  scopes: string[];
  label: string | null;
  createdAt: number;
  revokedAt: number | null;
}

/** A callback still to deliver (the outbox, events.ts): the event and where it goes. */
export interface CallbackRecord {
  id: number;
  url: string;
  /** Tries made so far. */
  attempts: number;
  event: EventRecord;
}

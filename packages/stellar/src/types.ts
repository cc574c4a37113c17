/**
 * The plain-terms view of a transaction that reviewers, policies and the coordinator read.
 *
 * Every amount is an exact decimal string in asset units (7 decimal places, as Horizon prints them),
 * never a float. Every 64-bit integer (sequence numbers, fees in stroops, time bounds) is a decimal
 * string, so that JSON carries it without loss.
 */

/** Threshold level an operation needs from its source account (stellar-core getThresholdLevel). */
export type ThresholdLevel = 'low' | 'medium' | 'high';

/** `native` or a credit asset. Liquidity pool shares appear as `{ type: 'pool', poolId }`. */
export type AssetRef =
  | { type: 'native' }
  | { type: 'credit'; code: string; issuer: string }
  | { type: 'pool'; poolId: string };

export interface TimeBoundsSummary {
  /** Unix seconds as a decimal string; '0' means no lower bound. */
  minTime: string;
  /** Unix seconds as a decimal string; '0' means no upper bound (unbounded). */
  maxTime: string;
}

export interface PreconditionsSummary {
  timeBounds: TimeBoundsSummary | null;
  ledgerBounds: { minLedger: number; maxLedger: number } | null;
  minSeqNum: string | null;
  minSeqAge: string | null;
  minSeqLedgerGap: number | null;
  /** Signer keys as strkeys (G..., T..., X..., P...). */
  extraSigners: string[];
}

export type MemoSummary =
  | { type: 'none' }
  | { type: 'text'; value: string }
  | { type: 'id'; value: string }
  | { type: 'hash' | 'return'; value: string /* hex */ };

/** A signer change requested by setOptions. `weight: 0` removes the signer. */
export interface SignerChange {
  key: string;
  weight: number;
}

/** One Soroban invocation node, decoded (contract call or contract creation). */
export interface InvocationSummary {
  kind: 'contract' | 'createContract' | 'createContractV2' | 'other';
  /** C... strkey for contract calls. */
  contractId?: string;
  functionName?: string;
  /** Arguments rendered with scValToNative, bigint as decimal strings, bytes as hex. */
  args?: unknown[];
  /** createContract: the contract id preimage and executable (XDR JSON); uploadContractWasm: wasm sha256 and size. */
  details?: Record<string, unknown>;
  subInvocations: InvocationSummary[];
}

/** One operation in plain terms. Fields that do not apply to the type are absent. */
export interface OperationSummary {
  index: number;
  /** The SDK's operation type name, e.g. 'payment', 'setOptions', 'invokeHostFunction'; 'unknown' if not understood. */
  type: string;
  /** The operation's effective source: its own source if set, else the transaction's source (G... or M...). */
  source: string;
  /** True when the operation set its own source account. */
  explicitSource: boolean;
  thresholdLevel: ThresholdLevel;
  asset?: AssetRef;
  /** Exact decimal amount in units of `asset`. */
  amount?: string;
  destination?: string;
  /** For path payments: send/dest assets and max/min amounts. */
  sendAsset?: AssetRef;
  sendMax?: string;
  sendAmount?: string;
  destAsset?: AssetRef;
  destMin?: string;
  /** pathPaymentStrictReceive: the exact amount the destination receives (in `destAsset`). */
  destAmount?: string;
  path?: AssetRef[];
  /** changeTrust limit. */
  limit?: string;
  /** For offers: selling/buying/price. */
  selling?: AssetRef;
  buying?: AssetRef;
  price?: string;
  offerId?: string;
  startingBalance?: string;
  /** setOptions: what it changes; only fields present in the op appear. */
  setOptions?: {
    masterWeight?: number;
    lowThreshold?: number;
    medThreshold?: number;
    highThreshold?: number;
    signer?: SignerChange;
    homeDomain?: string;
    inflationDest?: string;
    setFlags?: number;
    clearFlags?: number;
  };
  /** manageData. */
  dataName?: string;
  dataValue?: string | null;
  bumpTo?: string;
  /** invokeHostFunction: the root invocation and the auth entries attached to the op. */
  invocation?: InvocationSummary;
  authEntries?: AuthEntrySummary[];
  /** Anything else the SDK reports for this op, rendered JSON-safe, so nothing is silently dropped. */
  raw?: Record<string, unknown>;
}

export interface AuthEntrySummary {
  credentials: 'sourceAccount' | 'address' | 'addressV2' | 'other';
  /** The address that authorizes (G... or C...) for address credentials. */
  address?: string;
  nonce?: string;
  signatureExpirationLedger?: number;
  invocation: InvocationSummary;
}

export interface TransactionSummary {
  kind: 'transaction' | 'feeBump';
  /** Hex of the hash that signers sign, for the pinned network. */
  hash: string;
  networkPassphrase: string;
  source: string;
  /** Total fee in stroops (decimal string). For a fee bump: the outer fee. */
  fee: string;
  seqNum: string;
  memo: MemoSummary;
  preconditions: PreconditionsSummary;
  operations: OperationSummary[];
  /** For fee bumps: the fee source and the inner transaction's summary. */
  feeSource?: string;
  inner?: TransactionSummary;
  /** Soroban resource fee in stroops, when the transaction carries Soroban data. */
  sorobanResourceFee?: string;
}

/** An account's signing setup as Horizon reports it (and the ledger simulator stores it). */
export interface AccountAuth {
  accountId: string;
  /** Master key weight (thresholds[0]); 0 means the master key cannot sign. */
  masterWeight: number;
  thresholds: { low: number; medium: number; high: number };
  /** Added signers (not the master key). Keys as strkeys: G (ed25519), T (pre-auth tx), X (hashX), P (signed payload). */
  signers: { key: string; weight: number }[];
}

/** What one account must provide for a transaction: the highest level needed and the weight it takes. */
export interface Requirement {
  accountId: string;
  level: ThresholdLevel;
  /** Weight needed (the threshold at `level`, but at least 1: even threshold 0 needs one signature). */
  weight: number;
}

/** A signature as it sits in an envelope: the 4-byte hint and the 64-byte signature. */
export interface DecoratedSig {
  hint: Buffer;
  signature: Buffer;
}

/** The outcome of stellar-core's signature checks, in the order core runs them. */
export type AuthCheckResult =
  | { ok: true }
  | {
      ok: false;
      code: 'txBAD_AUTH';
      reason: string /** The account short of weight (absent for extra signers). */;
      accountId?: string;
    }
  | {
      ok: false;
      code: 'txFAILED';
      opIndex: number;
      opCode: 'opBAD_AUTH';
      reason: string;
      /** The operation's source account that is short of weight. */
      accountId?: string;
    }
  | {
      ok: false;
      code: 'txBAD_AUTH_EXTRA';
      reason: string /** Indexes of the signatures no check used. */;
      unusedSignatures?: number[];
    };

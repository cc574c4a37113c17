import type {
  AssetRef,
  AuthEntrySummary,
  InvocationSummary,
  OperationSummary,
  ThresholdLevel,
  TransactionSummary,
} from '@cosigner/stellar/types';

/**
 * Builders of TransactionSummary values shaped exactly as packages/stellar describeTransaction renders them
 * (amounts as 7-decimal strings, 64-bit integers as decimal strings). Used by the vector generator and the
 * property tests; the policy never sees XDR.
 */

export const TESTNET = 'Test SDF Network ; September 2015';
export const PUBNET = 'Public Global Stellar Network ; September 2015';
/** A fixed "now" for vectors (unix seconds, 2026-05-28). */
export const NOW = 1_780_000_000;

const LOW = new Set([
  'allowTrust',
  'setTrustLineFlags',
  'bumpSequence',
  'claimClaimableBalance',
  'extendFootprintTtl',
  'restoreFootprint',
  'inflation',
]);

function level(type: string, fields: Partial<OperationSummary>): ThresholdLevel {
  if (LOW.has(type)) return 'low';
  if (type === 'accountMerge') return 'high';
  const so = fields.setOptions;
  if (type === 'setOptions' && so) {
    const high = ['masterWeight', 'lowThreshold', 'medThreshold', 'highThreshold', 'signer'].some((k) => k in so);
    if (high) return 'high';
  }
  return 'medium';
}

export type OpInput = Partial<OperationSummary> & { type: string };

export function op(input: OpInput): Omit<OperationSummary, 'index' | 'source'> & { source?: string } {
  const { type, ...fields } = input;
  return { type, explicitSource: input.source !== undefined, thresholdLevel: level(type, fields), raw: {}, ...fields };
}

export const native: AssetRef = { type: 'native' };
export const credit = (code: string, issuer: string): AssetRef => ({ type: 'credit', code, issuer });

export function payment(destination: string, amount: string, asset: AssetRef = native, source?: string) {
  return op({ type: 'payment', destination, amount, asset, ...(source ? { source } : {}) });
}

export interface TxInput {
  source: string;
  ops: ReturnType<typeof op>[];
  network?: string;
  fee?: string;
  memo?: TransactionSummary['memo'];
  timeBounds?: { minTime: string; maxTime: string } | null;
  sorobanResourceFee?: string;
  hash?: string;
}

let counter = 0;
function hash(): string {
  counter += 1;
  return counter.toString(16).padStart(64, 'a');
}

export function tx(t: TxInput): TransactionSummary {
  const operations = t.ops.map((o, index) => ({ ...o, index, source: o.source ?? t.source }) as OperationSummary);
  const out: TransactionSummary = {
    kind: 'transaction',
    hash: t.hash ?? hash(),
    networkPassphrase: t.network ?? TESTNET,
    source: t.source,
    fee: t.fee ?? String(100 * Math.max(1, operations.length)),
    seqNum: '4294967297',
    memo: t.memo ?? { type: 'none' },
    preconditions: {
      timeBounds: t.timeBounds === undefined ? { minTime: '0', maxTime: String(NOW + 120) } : t.timeBounds,
      ledgerBounds: null,
      minSeqNum: null,
      minSeqAge: null,
      minSeqLedgerGap: null,
      extraSigners: [],
    },
    operations,
  };
  if (t.sorobanResourceFee !== undefined) out.sorobanResourceFee = t.sorobanResourceFee;
  return out;
}

/** A fee bump around `inner`, shaped as describeTransaction renders it (inner fields repeated at the top). */
export function feeBump(
  inner: TransactionSummary,
  feeSource: string,
  fee: string,
  network?: string,
): TransactionSummary {
  return {
    ...inner,
    kind: 'feeBump',
    hash: hash(),
    networkPassphrase: network ?? inner.networkPassphrase,
    fee,
    feeSource,
    inner,
  };
}

export function call(
  contractId: string,
  functionName: string,
  args: unknown[],
  subInvocations: InvocationSummary[] = [],
): InvocationSummary {
  return { kind: 'contract', contractId, functionName, args, subInvocations };
}

export function addressEntry(
  address: string,
  invocation: InvocationSummary,
  signatureExpirationLedger: number,
  credentials: AuthEntrySummary['credentials'] = 'address',
): AuthEntrySummary {
  return { credentials, address, nonce: '12345', signatureExpirationLedger, invocation };
}

export function invoke(invocation: InvocationSummary, authEntries: AuthEntrySummary[] = [], source?: string) {
  return op({ type: 'invokeHostFunction', invocation, authEntries, ...(source ? { source } : {}) });
}

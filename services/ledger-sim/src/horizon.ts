import { StrKey, xdr } from '@stellar/stellar-sdk/base';
import { type AnyOutcome, resultCodes } from './results.ts';
import {
  type AccountState,
  AUTH_CLAWBACK_ENABLED_FLAG,
  AUTH_IMMUTABLE_FLAG,
  AUTH_REQUIRED_FLAG,
  AUTH_REVOCABLE_FLAG,
  BASE_FEE,
  BASE_RESERVE,
  type LedgerHeader,
  type LedgerState,
  MAX_TX_SET_SIZE,
  numSubEntries,
  PROTOCOL_VERSION,
  type TxRecord,
} from './state.ts';

/**
 * Horizon's JSON shapes for the resources the SDK's Horizon.Server reads (stellar/go services/horizon/internal/
 * resourceadapter and protocols/horizon; js-stellar-sdk src/horizon/horizon_api.ts and server_api.ts).
 */

export const HORIZON_VERSION = 'ledger-sim-1.0.0';

/** Stroops as Horizon's 7-decimal amount string: 10000000n -> "1.0000000". */
export function amount(stroops: bigint): string {
  const neg = stroops < 0n;
  const v = neg ? -stroops : stroops;
  const s = `${v / 10_000_000n}.${(v % 10_000_000n).toString().padStart(7, '0')}`;
  return neg ? `-${s}` : s;
}

function iso(sec: number | bigint): string {
  return new Date(Number(sec) * 1000).toISOString().replace('.000Z', 'Z');
}

function link(href: string, templated = false): { href: string; templated?: boolean } {
  return templated ? { href, templated } : { href };
}

/** The paged sub-collections of a resource, as Horizon links them: `<self>/<name>{?cursor,limit,order}`, templated. */
function pagedLinks(self: string, names: readonly string[]): Record<string, { href: string; templated?: boolean }> {
  return Object.fromEntries(names.map((n) => [n, link(`${self}/${n}{?cursor,limit,order}`, true)]));
}

/** Horizon's signer type names (protocols/horizon: MustKeyTypeFromAddress). */
function signerType(key: string): string {
  switch (key[0]) {
    case 'T':
      return 'preauth_tx';
    case 'X':
      return 'sha256_hash';
    case 'P':
      return 'ed25519_signed_payload';
    default:
      return 'ed25519_public_key';
  }
}

/**
 * The account resource (GET /accounts/:id). `signers` is what Horizon stores in its accounts_signers table, which
 * stellar/go fills from `xdr.AccountEntry.SignerSummary()`: the added signers, and the master key only while its
 * weight is above 0 (a master weight of 0 removes the master key, SetOptionsOpFrame). The master key is listed last.
 */
export function accountJson(a: AccountState, base: string): Record<string, unknown> {
  const self = `${base}/accounts/${a.id}`;
  const balances: Record<string, unknown>[] = [...a.trustlines.values()].map((t) => ({
    balance: amount(t.balance),
    limit: amount(t.limit),
    buying_liabilities: '0.0000000',
    selling_liabilities: '0.0000000',
    last_modified_ledger: t.lastModifiedLedger,
    is_authorized: true,
    is_authorized_to_maintain_liabilities: true,
    is_clawback_enabled: false,
    asset_type: t.code.length <= 4 ? 'credit_alphanum4' : 'credit_alphanum12',
    asset_code: t.code,
    asset_issuer: t.issuer,
  }));
  balances.push({
    balance: amount(a.balance),
    buying_liabilities: '0.0000000',
    selling_liabilities: '0.0000000',
    asset_type: 'native',
  });
  return {
    _links: {
      self: link(self),
      ...pagedLinks(self, ['transactions', 'operations', 'payments', 'effects', 'offers', 'trades']),
      data: link(`${self}/data/{key}`, true),
    },
    id: a.id,
    account_id: a.id,
    sequence: a.seq.toString(),
    sequence_ledger: a.seqLedger,
    sequence_time: a.seqTime.toString(),
    subentry_count: numSubEntries(a),
    ...(a.homeDomain !== '' ? { home_domain: a.homeDomain } : {}),
    ...(a.inflationDest !== null ? { inflation_destination: a.inflationDest } : {}),
    last_modified_ledger: a.lastModifiedLedger,
    last_modified_time: iso(a.lastModifiedTime),
    thresholds: {
      low_threshold: a.thresholds.low,
      med_threshold: a.thresholds.medium,
      high_threshold: a.thresholds.high,
    },
    flags: {
      auth_required: (a.flags & AUTH_REQUIRED_FLAG) !== 0,
      auth_revocable: (a.flags & AUTH_REVOCABLE_FLAG) !== 0,
      auth_immutable: (a.flags & AUTH_IMMUTABLE_FLAG) !== 0,
      auth_clawback_enabled: (a.flags & AUTH_CLAWBACK_ENABLED_FLAG) !== 0,
    },
    balances,
    signers: [
      ...a.signers.map((s) => ({ weight: s.weight, key: s.key, type: signerType(s.key) })),
      ...(a.masterWeight > 0 ? [{ weight: a.masterWeight, key: a.id, type: 'ed25519_public_key' }] : []),
    ],
    data: Object.fromEntries([...a.data].map(([k, v]) => [k, v.toString('base64')])),
    num_sponsoring: 0,
    num_sponsored: 0,
    paging_token: a.id,
  };
}

function memoJson(m: xdr.Memo): Record<string, unknown> {
  switch (m.type) {
    case 'memoText':
      return { memo_type: 'text', memo: m.text.toString(), memo_bytes: Buffer.from(m.text.bytes).toString('base64') };
    case 'memoId':
      return { memo_type: 'id', memo: m.id.toString() };
    case 'memoHash':
      return { memo_type: 'hash', memo: Buffer.from(m.hash.value).toString('base64') };
    case 'memoReturn':
      return { memo_type: 'return', memo: Buffer.from(m.retHash.value).toString('base64') };
    default:
      return { memo_type: 'none' };
  }
}

function sigsJson(list: readonly xdr.DecoratedSignature[]): string[] {
  return list.map((s) => Buffer.from(s.signature.value).toString('base64'));
}

function preconditionsJson(tx: xdr.Transaction): Record<string, unknown> {
  const c = tx.cond;
  const tb = c.type === 'precondTime' ? c.timeBounds : c.type === 'precondV2' ? c.v2.timeBounds : null;
  const out: Record<string, unknown> = {};
  const pre: Record<string, unknown> = {};
  if (tb !== null) {
    out.valid_after = iso(tb.minTime);
    if (tb.maxTime !== 0n) out.valid_before = iso(tb.maxTime);
    pre.timebounds = {
      min_time: tb.minTime.toString(),
      ...(tb.maxTime !== 0n ? { max_time: tb.maxTime.toString() } : {}),
    };
  }
  if (c.type === 'precondV2') {
    const v2 = c.v2;
    if (v2.ledgerBounds !== null) {
      pre.ledgerbounds = { min_ledger: v2.ledgerBounds.minLedger, max_ledger: v2.ledgerBounds.maxLedger };
    }
    if (v2.minSeqNum !== null) pre.min_account_sequence = v2.minSeqNum.toString();
    if (v2.minSeqAge !== 0n) pre.min_account_sequence_age = v2.minSeqAge.toString();
    if (v2.minSeqLedgerGap !== 0) pre.min_account_sequence_ledger_gap = v2.minSeqLedgerGap;
  }
  if (Object.keys(pre).length > 0) out.preconditions = pre;
  return out;
}

/** An empty TransactionMeta (v0, no operation changes): the simulator does not produce ledger-entry changes. */
const EMPTY_META = 'AAAAAAAAAAA=';

/** The transaction resource (GET /transactions/:hash and the body of a successful POST /transactions). */
export function transactionJson(r: TxRecord, base: string): Record<string, unknown> {
  const env = xdr.TransactionEnvelope.fromXdr(r.envelopeXdr, 'base64');
  const self = `${base}/transactions/${r.hash}`;
  let tx: xdr.Transaction;
  let signatures: string[];
  let feeBump: Record<string, unknown> = {};
  if (env.type === 'envelopeTypeTxFeeBump') {
    const innerEnv = env.feeBump.tx.innerTx.v1;
    tx = innerEnv.tx;
    signatures = sigsJson(env.feeBump.signatures);
    feeBump = {
      fee_bump_transaction: { hash: r.hash, signatures },
      inner_transaction: { hash: r.innerHash, signatures: sigsJson(innerEnv.signatures), max_fee: String(tx.fee) },
    };
  } else {
    // decodeEnvelope refused v0 envelopes before anything was recorded.
    const v1 = (env as xdr.TransactionEnvelope & { type: 'envelopeTypeTx' }).v1;
    tx = v1.tx;
    signatures = sigsJson(v1.signatures);
  }
  return {
    _links: {
      self: link(self),
      account: link(`${base}/accounts/${r.sourceAccount}`),
      ledger: link(`${base}/ledgers/${r.ledger}`),
      ...pagedLinks(self, ['operations', 'effects']),
      precedes: link(`${base}/transactions?order=asc&cursor=${r.order}`),
      succeeds: link(`${base}/transactions?order=desc&cursor=${r.order}`),
      transaction: link(self),
    },
    id: r.hash,
    paging_token: String(r.order),
    successful: r.successful,
    hash: r.hash,
    ledger: r.ledger,
    created_at: iso(r.createdAt),
    source_account: r.sourceAccount,
    source_account_sequence: r.sourceAccountSequence,
    fee_account: r.feeAccount,
    fee_charged: r.feeCharged.toString(),
    max_fee: r.maxFee.toString(),
    operation_count: r.operationCount,
    envelope_xdr: r.envelopeXdr,
    result_xdr: r.resultXdr,
    result_meta_xdr: EMPTY_META,
    fee_meta_xdr: '',
    ...memoJson(tx.memo),
    signatures,
    ...preconditionsJson(tx),
    ...feeBump,
    // The simulator's addition: why a Soroban invocation failed (core reports it as diagnostic events).
    ...(r.diagnostic !== undefined ? { diagnostic: r.diagnostic } : {}),
  };
}

/** The ledger resource. */
export function ledgerJson(l: LedgerHeader, base: string): Record<string, unknown> {
  const self = `${base}/ledgers/${l.sequence}`;
  return {
    _links: {
      self: link(self),
      ...pagedLinks(self, ['transactions', 'operations', 'payments', 'effects']),
    },
    id: l.hash,
    paging_token: String(BigInt(l.sequence) << 32n),
    hash: l.hash,
    ...(l.sequence > 1 ? { prev_hash: l.prevHash } : {}),
    sequence: l.sequence,
    successful_transaction_count: l.successfulTxCount,
    failed_transaction_count: l.failedTxCount,
    operation_count: l.operationCount,
    tx_set_operation_count: l.txSetOperationCount,
    closed_at: iso(l.closedAt),
    total_coins: amount(l.totalCoins),
    fee_pool: amount(l.feePool),
    base_fee_in_stroops: Number(BASE_FEE),
    base_reserve_in_stroops: Number(BASE_RESERVE),
    max_tx_set_size: MAX_TX_SET_SIZE,
    protocol_version: PROTOCOL_VERSION,
    header_xdr: '',
  };
}

/** GET /: Horizon's root resource. */
export function rootJson(state: LedgerState, base: string): Record<string, unknown> {
  const last = state.lastClosed;
  return {
    _links: {
      account: link(`${base}/accounts/{account_id}`, true),
      fee_stats: link(`${base}/fee_stats`),
      friendbot: link(`${base}/friendbot{?addr}`, true),
      ledger: link(`${base}/ledgers/{sequence}`, true),
      ledgers: link(`${base}/ledgers{?cursor,limit,order}`, true),
      self: link(`${base}/`),
      transaction: link(`${base}/transactions/{hash}`, true),
      transactions: link(`${base}/transactions{?cursor,limit,order}`, true),
    },
    horizon_version: HORIZON_VERSION,
    core_version: `stellar-core (simulated by ${HORIZON_VERSION})`,
    ingest_latest_ledger: last.sequence,
    history_latest_ledger: last.sequence,
    history_latest_ledger_closed_at: iso(last.closedAt),
    history_elder_ledger: state.ledgers[0]!.sequence,
    core_latest_ledger: last.sequence,
    network_passphrase: state.networkPassphrase,
    current_protocol_version: PROTOCOL_VERSION,
    supported_protocol_version: PROTOCOL_VERSION,
    core_supported_protocol_version: PROTOCOL_VERSION,
  };
}

/** GET /fee_stats: no surge pricing here, so every percentile is the base fee. */
export function feeStatsJson(state: LedgerState): Record<string, unknown> {
  const fee = BASE_FEE.toString();
  const dist = Object.fromEntries(
    ['max', 'min', 'mode', 'p10', 'p20', 'p30', 'p40', 'p50', 'p60', 'p70', 'p80', 'p90', 'p95', 'p99'].map((k) => [
      k,
      fee,
    ]),
  );
  return {
    last_ledger: String(state.lastClosed.sequence),
    last_ledger_base_fee: fee,
    ledger_capacity_usage: '0.00',
    fee_charged: dist,
    max_fee: dist,
  };
}

/** A collection page: `_embedded.records` with self/next/prev links, as Horizon pages them. */
export function page(
  records: Record<string, unknown>[],
  selfUrl: string,
  q: { order: 'asc' | 'desc'; limit: number },
): Record<string, unknown> {
  const at = (cursor: string, order: string): { href: string } =>
    link(`${selfUrl}?cursor=${cursor}&limit=${q.limit}&order=${order}`);
  const first = records[0]?.paging_token;
  const last = records[records.length - 1]?.paging_token;
  const reverse = q.order === 'asc' ? 'desc' : 'asc';
  return {
    _links: {
      self: at('', q.order),
      next: at(String(last ?? ''), q.order),
      prev: at(String(first ?? ''), reverse),
    },
    _embedded: { records },
  };
}

/** A Horizon problem document (RFC 7807 with Horizon's types under https://stellar.org/horizon-errors/). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  extras?: Record<string, unknown>;
}

const HORIZON_ERRORS = 'https://stellar.org/horizon-errors';

export function notFound(): Problem {
  return {
    type: `${HORIZON_ERRORS}/not_found`,
    title: 'Resource Missing',
    status: 404,
    detail:
      'The resource at the url requested was not found.  This usually occurs for one of two reasons:  The url requested is not valid, or no data in our database could be found with the parameters provided.',
  };
}

export function badRequest(field: string, reason: string): Problem {
  return {
    type: `${HORIZON_ERRORS}/bad_request`,
    title: 'Bad Request',
    status: 400,
    detail: 'The request you sent was invalid in some way.',
    extras: { invalid_field: field, reason },
  };
}

export function transactionMalformed(envelopeXdr: string, reason: string): Problem {
  return {
    type: `${HORIZON_ERRORS}/transaction_malformed`,
    title: 'Transaction Malformed',
    status: 400,
    detail:
      'Horizon could not decode the transaction envelope in this request. A transaction should be an XDR-encoded `TransactionEnvelope` struct, base64-encoded.',
    // Horizon echoes the envelope it could not decode; bounded by the body limit, and never logged.
    extras: { envelope_xdr: envelopeXdr, error: reason },
  };
}

/**
 * Horizon's transaction_failed problem. `diagnostic` (Soroban refusals and failures) is the simulator's addition:
 * core reports the same thing as diagnostic events, which Horizon does not relay.
 */
export function transactionFailed(
  outcome: AnyOutcome,
  envelopeXdr: string,
  resultXdr: string,
  hash: string,
  diagnostic?: string,
): Problem {
  return {
    type: `${HORIZON_ERRORS}/transaction_failed`,
    title: 'Transaction Failed',
    status: 400,
    detail:
      'The transaction failed when submitted to the stellar network. The `extras.result_codes` field on this response contains further details.',
    extras: {
      envelope_xdr: envelopeXdr,
      result_codes: resultCodes(outcome),
      result_xdr: resultXdr,
      hash,
      ...(diagnostic !== undefined ? { diagnostic } : {}),
    },
  };
}

export function tooLarge(limit: number): Problem {
  return {
    type: `${HORIZON_ERRORS}/payload_too_large`,
    title: 'Payload Too Large',
    status: 413,
    detail: `The request body is larger than ${limit} bytes.`,
  };
}

export function serverError(): Problem {
  return {
    type: `${HORIZON_ERRORS}/server_error`,
    title: 'Internal Server Error',
    status: 500,
    detail: 'An error occurred while processing this request.',
  };
}

/** Is `s` a valid G... account id? */
export function isAccountId(s: unknown): s is string {
  return typeof s === 'string' && StrKey.isValidEd25519PublicKey(s);
}

import type { AccountAuth } from '@cosigner/stellar/types';
import { coordinatorErrors } from './errors.ts';

/**
 * What the coordinator needs from the network: account signing setups, submission, and a transaction's fate
 * by hash. Implemented over Horizon's HTTP API with fetch (the ledger simulator serves the same API).
 */
export type SubmitAttempt =
  | { kind: 'accepted'; ledger: number | null }
  /** Horizon refused the envelope for good (400 with result codes): resubmitting the same bytes cannot help. */
  | { kind: 'rejected'; code: string; operationCodes: string[]; message: string }
  /** Transport failure, 5xx or Horizon's 504 submission timeout: the fate is unknown, retry the same bytes. */
  | { kind: 'transient'; message: string };

export interface LedgerClient {
  /** @throws COORD_ACCOUNT_NOT_FOUND, COORD_HORIZON_UNAVAILABLE */
  loadAccount(accountId: string): Promise<AccountAuth>;
  submit(envelopeXdr: string, networkPassphrase: string): Promise<SubmitAttempt>;
  /** 'success' / 'failed' when the network has the transaction, 'missing' when not, 'unknown' when unreachable. */
  transactionStatus(hashHex: string): Promise<'success' | 'failed' | 'missing' | 'unknown'>;
  reachable(): Promise<boolean>;
  /** The sequence of the latest closed ledger, or null when the network cannot be asked. */
  latestLedger(): Promise<number | null>;
}

/** Horizon's problem document (RFC 7807) for a refused submission, `extras.result_codes` from stellar-core. */
interface HttpishErrorData {
  title?: string;
  detail?: string;
  extras?: { result_codes?: { transaction?: string; operations?: string[] } };
}

interface HttpishError {
  response?: { status?: number; data?: HttpishErrorData };
  message?: string;
}

/** Horizon's AccountResponse -> AccountAuth: the master key appears among `signers` with its weight. */
export function accountAuthFromHorizon(a: {
  account_id: string;
  thresholds: { low_threshold: number; med_threshold: number; high_threshold: number };
  signers: { key: string; weight: number }[];
}): AccountAuth {
  const master = a.signers.find((s) => s.key === a.account_id);
  return {
    accountId: a.account_id,
    masterWeight: master?.weight ?? 0,
    thresholds: {
      low: a.thresholds.low_threshold,
      medium: a.thresholds.med_threshold,
      high: a.thresholds.high_threshold,
    },
    signers: a.signers.filter((s) => s.key !== a.account_id).map((s) => ({ key: s.key, weight: s.weight })),
  };
}

/**
 * Bounds on a Horizon request. A submission waits as long as the SDK's Horizon client did (its
 * SUBMIT_TRANSACTION_TIMEOUT, 60 s: Horizon itself answers 504 after about 30 s of waiting for the ledger); an
 * account or transaction look-up, which the SDK left unbounded, gives up after 30 s and counts as "unreachable".
 */
export const HORIZON_SUBMIT_TIMEOUT_MS = 60_000;
export const HORIZON_READ_TIMEOUT_MS = 30_000;
const PROBE_TIMEOUT_MS = 2000;

/** Horizon's JSON body, or undefined when it sent none or not JSON (a proxy's HTML error page, say). */
async function jsonBody(r: Response): Promise<unknown> {
  // Always read the body: undici returns the keep-alive socket to its pool only once the body is consumed.
  const text = await r.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isAccountResponse(v: unknown): v is Parameters<typeof accountAuthFromHorizon>[0] {
  const a = v as Parameters<typeof accountAuthFromHorizon>[0] | undefined;
  return (
    typeof a?.account_id === 'string' &&
    typeof a.thresholds === 'object' &&
    a.thresholds !== null &&
    Array.isArray(a.signers)
  );
}

/**
 * The three Horizon calls the coordinator makes, as plain `fetch` (Node's undici, keep-alive by default) on
 * Horizon's documented JSON: GET /accounts/{id}, POST /transactions (form field `tx`, the base64 envelope), and
 * GET /transactions/{hash}. It replaces the SDK's Horizon.Server so that a coordinator process never loads the
 * SDK's root entry (the Horizon and RPC clients and their HTTP stack: about 90 modules, 1.4 MB of heap); the
 * errors map as they did through the SDK (classifySubmitError takes the same {response: {status, data}} shape).
 */
export function createHorizonClient(url: string): LedgerClient {
  const base = url.replace(/\/+$/, '');
  const get = (path: string, timeoutMs: number) =>
    fetch(`${base}/${path}`, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  return {
    async loadAccount(accountId) {
      let status: number | undefined;
      let cause: unknown;
      try {
        const r = await get(`accounts/${encodeURIComponent(accountId)}`, HORIZON_READ_TIMEOUT_MS);
        status = r.status;
        const body = await jsonBody(r);
        if (r.ok && isAccountResponse(body)) return accountAuthFromHorizon(body);
        cause = new Error(
          r.ok ? 'Horizon answered an account without signers or thresholds' : `Horizon answered ${r.status}`,
        );
      } catch (e) {
        cause = e;
      }
      if (status === 404) throw coordinatorErrors.error('COORD_ACCOUNT_NOT_FOUND', { accountId });
      throw coordinatorErrors.error('COORD_HORIZON_UNAVAILABLE', { accountId }, { cause });
    },
    async submit(envelopeXdr, _networkPassphrase) {
      // The stored envelope's own bytes, not a decode and re-encode of them. No SEP-29 memo check either (the
      // SDK's skipMemoRequiredCheck): it would load every destination first, and the nodes' policies own that.
      try {
        const r = await fetch(`${base}/transactions`, {
          method: 'POST',
          signal: AbortSignal.timeout(HORIZON_SUBMIT_TIMEOUT_MS),
          headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ tx: envelopeXdr }).toString(),
        });
        const body = await jsonBody(r);
        if (r.ok) {
          const ledger = (body as { ledger?: unknown } | undefined)?.ledger;
          return { kind: 'accepted', ledger: typeof ledger === 'number' ? ledger : null };
        }
        return classifySubmitError({ response: { status: r.status, data: body as HttpishErrorData | undefined } });
      } catch (e) {
        return classifySubmitError(e);
      }
    },
    async transactionStatus(hashHex) {
      try {
        const r = await get(`transactions/${encodeURIComponent(hashHex)}`, HORIZON_READ_TIMEOUT_MS);
        const body = await jsonBody(r);
        if (r.status === 404) return 'missing';
        const successful = (body as { successful?: unknown } | undefined)?.successful;
        if (!r.ok || typeof successful !== 'boolean') return 'unknown';
        return successful ? 'success' : 'failed';
      } catch {
        return 'unknown';
      }
    },
    async latestLedger() {
      // Horizon's root document names the latest ledger it ingested (the ledger simulator serves the same field).
      try {
        const r = await fetch(url, {
          signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
          headers: { accept: 'application/json' },
        });
        const body = await jsonBody(r);
        if (!r.ok) return null;
        const seq = Number((body as { history_latest_ledger?: unknown } | undefined)?.history_latest_ledger);
        return Number.isSafeInteger(seq) && seq > 0 ? seq : null;
      } catch {
        return null;
      }
    },
    async reachable() {
      // Any HTTP answer means Horizon is up; only a transport failure (or timeout) means it is not.
      try {
        const r = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
        await r.body?.cancel();
        return true;
      } catch {
        return false;
      }
    },
  };
}

/**
 * Horizon answers a refused transaction with 400 and `extras.result_codes` (Horizon API "Transaction Failed"
 * problem); a 504 means its wait for the ledger timed out and the transaction may still apply; 5xx and
 * transport errors leave the fate unknown. Only the first kind is final.
 */
export function classifySubmitError(e: unknown): SubmitAttempt {
  const err = e as HttpishError;
  const status = err.response?.status;
  const codes = err.response?.data?.extras?.result_codes;
  if (status !== undefined && status >= 400 && status < 500 && status !== 429) {
    return {
      kind: 'rejected',
      code: codes?.transaction ?? `http_${status}`,
      operationCodes: codes?.operations ?? [],
      message: err.response?.data?.title ?? err.response?.data?.detail ?? `Horizon answered ${status}`,
    };
  }
  return {
    kind: 'transient',
    message: status !== undefined ? `Horizon answered ${status}` : (err.message ?? 'network error'),
  };
}

/** Plain-words meaning of the result codes operators meet most (stellar-core TransactionResultCode). */
export function explainResultCode(code: string, operationCodes: readonly string[]): string {
  if (operationCodes.includes('op_bad_auth'))
    return 'an operation source lacked the signature weight its threshold needs (op_bad_auth)';
  switch (code) {
    case 'tx_bad_auth':
      return 'the signatures do not reach the source account threshold (tx_bad_auth): its signers may have changed';
    case 'tx_bad_auth_extra':
      return 'the envelope carried a signature no check used (tx_bad_auth_extra)';
    case 'tx_bad_seq':
      return 'the sequence number is not the account sequence + 1 (tx_bad_seq): another transaction used the slot';
    case 'tx_too_late':
      return 'the transaction time bound passed before it reached the ledger (tx_too_late)';
    case 'tx_too_early':
      return 'the transaction time bound has not started yet (tx_too_early)';
    case 'tx_insufficient_fee':
      return 'the fee is below the network minimum (tx_insufficient_fee)';
    case 'tx_insufficient_balance':
      return 'the fee would take the account below its reserve (tx_insufficient_balance)';
    case 'tx_no_source_account':
      return 'the source account does not exist (tx_no_source_account)';
    case 'tx_failed':
      return `an operation failed (${operationCodes.filter((c) => c !== 'op_success').join(', ') || 'tx_failed'})`;
    default:
      return `the network refused the transaction (${code})`;
  }
}

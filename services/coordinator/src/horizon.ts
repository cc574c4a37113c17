import type { AccountAuth } from '@cosigner/stellar/types';
import { Horizon, TransactionBuilder } from '@stellar/stellar-sdk';
import { coordinatorErrors } from './errors.ts';

/**
 * What the coordinator needs from the network: account signing setups, submission, and a transaction's fate
 * by hash. Implemented over Horizon with the SDK's own client (the ledger simulator serves the same API).
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

interface HttpishError {
  response?: {
    status?: number;
    data?: {
      title?: string;
      detail?: string;
      extras?: { result_codes?: { transaction?: string; operations?: string[] } };
    };
  };
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

export function createHorizonClient(url: string): LedgerClient {
  const server = new Horizon.Server(url, { allowHttp: true });
  return {
    async loadAccount(accountId) {
      try {
        const a = await server.loadAccount(accountId);
        return accountAuthFromHorizon(a);
      } catch (e) {
        if ((e as HttpishError).response?.status === 404)
          throw coordinatorErrors.error('COORD_ACCOUNT_NOT_FOUND', { accountId });
        throw coordinatorErrors.error('COORD_HORIZON_UNAVAILABLE', { accountId }, { cause: e });
      }
    },
    async submit(envelopeXdr, networkPassphrase) {
      const tx = TransactionBuilder.fromXDR(envelopeXdr, networkPassphrase);
      try {
        // SEP-29's memo check would load every destination first: the nodes' policies own that decision.
        const r = await server.submitTransaction(tx, { skipMemoRequiredCheck: true });
        return { kind: 'accepted', ledger: typeof r.ledger === 'number' ? r.ledger : null };
      } catch (e) {
        return classifySubmitError(e);
      }
    },
    async transactionStatus(hashHex) {
      try {
        const r = await server.transactions().transaction(hashHex).call();
        return r.successful ? 'success' : 'failed';
      } catch (e) {
        return (e as HttpishError).response?.status === 404 ? 'missing' : 'unknown';
      }
    },
    async latestLedger() {
      // Horizon's root document names the latest ledger it ingested (the ledger simulator serves the same field).
      try {
        const r = await fetch(url, { signal: AbortSignal.timeout(2000), headers: { accept: 'application/json' } });
        if (!r.ok) return null;
        const seq = Number(((await r.json()) as { history_latest_ledger?: unknown }).history_latest_ledger);
        return Number.isSafeInteger(seq) && seq > 0 ? seq : null;
      } catch {
        return null;
      }
    },
    async reachable() {
      // Any HTTP answer means Horizon is up; only a transport failure (or timeout) means it is not.
      try {
        await fetch(url, { signal: AbortSignal.timeout(2000) });
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

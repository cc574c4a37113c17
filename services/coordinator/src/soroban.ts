import type { DecodedTransaction } from '@cosigner/stellar/decode';
import { xdrTransactionOf } from '@cosigner/stellar/decode';
import { authCredentials, sorobanShape } from '@cosigner/stellar/soroban';
import type { AccountAuth } from '@cosigner/stellar/types';
import type { xdr } from '@stellar/stellar-sdk/base';
import type { CoordinatorConfig } from './config.ts';
import { coordinatorErrors } from './errors.ts';

/**
 * Soroban rules the coordinator applies before and around its authorization rounds (src/kinds/auth.ts): the
 * shape and limits of a Soroban transaction, which account an entry's credentials name, when an entry is still
 * usable, and the minimal signer set of an entry's credential.
 */

export type SorobanLimits = CoordinatorConfig['soroban'];

/**
 * Refuse a Soroban transaction without SorobanTransactionData or above the coordinator's limits; answer its auth
 * entries (or null for a classic transaction). The shape rules are stellar-core's (packages/stellar sorobanShape);
 * the limits are the coordinator's own (config `soroban`).
 * @throws COORD_SOROBAN_NO_RESOURCES, COORD_SOROBAN_LIMIT, COORD_BAD_REQUEST
 */
export function checkSorobanTransaction(
  d: DecodedTransaction,
  limits: SorobanLimits,
): xdr.SorobanAuthorizationEntry[] | null {
  const shape = sorobanShape(xdrTransactionOf(d.kind === 'feeBump' && d.inner ? d.inner : d) as xdr.Transaction);
  if (shape.kind === 'classic') return null;
  if (shape.kind === 'malformed') {
    if (shape.problem === 'noResources') throw coordinatorErrors.error('COORD_SOROBAN_NO_RESOURCES');
    throw coordinatorErrors.error(
      'COORD_BAD_REQUEST',
      { field: 'xdr' },
      { message: 'A Soroban transaction holds exactly one operation.' },
    );
  }
  const { resourceFee, footprintEntries } = shape.resources;
  if (resourceFee > BigInt(limits.maxResourceFee) || footprintEntries > limits.maxFootprintEntries) {
    throw coordinatorErrors.error('COORD_SOROBAN_LIMIT', {
      resourceFee: resourceFee.toString(),
      maxResourceFee: limits.maxResourceFee,
      footprintEntries,
      maxFootprintEntries: limits.maxFootprintEntries,
    });
  }
  return shape.auth;
}

/** The G account an entry's address credentials name, or null (source-account credentials, contract address). */
export function entryAccount(
  e: xdr.SorobanAuthorizationEntry,
  limits: SorobanLimits,
  index: number,
): { account: string | null; creds: xdr.SorobanAddressCredentials | null } {
  const a = authCredentials(e);
  switch (a.credentials) {
    case 'sourceAccount':
      return { account: null, creds: null };
    case 'addressV2':
      // The CAP-71 form exists on protocol-27 networks only, hence behind soroban.addressV2.
      if (!limits.addressV2) throw coordinatorErrors.error('COORD_SOROBAN_V2_DISABLED', { entry: index });
      break;
    case 'addressWithDelegates':
      throw coordinatorErrors.error(
        'COORD_SOROBAN_BAD_ENTRY',
        { entry: index },
        { message: `Entry ${index}: delegated credentials are not signed by the cluster.` },
      );
  }
  return { account: a.address.startsWith('G') ? a.address : null, creds: a.creds };
}

/**
 * Whether an entry expiring at `expiration` can still be used after ledger `latest` closed: the host refuses an
 * entry once the ledger sequence is above its signatureExpirationLedger (inclusive bound; soroban-env-host
 * auth.rs), and the next ledger, `latest + 1`, is the earliest one a transaction can reach.
 */
export function usableAt(expiration: number, latest: number): boolean {
  return latest + 1 <= expiration;
}

/** The weight an entry's account must reach: soroban-env-host account_contract.rs compares the sum with MEDIUM. */
export function medium(a: AccountAuth): number {
  // A 0 threshold still needs a signer here, since the cluster only ever answers with at least one signature.
  return Math.max(1, a.thresholds.medium);
}

/**
 * The smallest-by-count, then minimal, set of signers reaching `need`: heaviest first until reached, then drop
 * any signer whose removal keeps the weight (so no signature in the vector is superfluous). null if unreachable.
 */
export function chooseMinimal<T extends { weight: number }>(candidates: readonly T[], need: number): T[] | null {
  const sorted = [...candidates].filter((c) => c.weight > 0).sort((a, b) => b.weight - a.weight);
  const chosen: T[] = [];
  let total = 0;
  for (const c of sorted) {
    if (total >= need) break;
    chosen.push(c);
    total += c.weight;
  }
  if (total < need) return null;
  for (let i = chosen.length - 1; i >= 0; i--) {
    const w = (chosen[i] as T).weight;
    if (total - w >= need) {
      total -= w;
      chosen.splice(i, 1);
    }
  }
  return chosen;
}

/**
 * The network's latest ledger, kept as the newest answer seen: ledgers only move forward, so a Horizon that lags
 * or does not answer never moves it back. null until the network has answered once. Concurrent asks share one
 * request.
 */
export class LedgerClock {
  #latest: number | null = null;
  #asking: Promise<number | null> | undefined;

  constructor(private readonly ask: () => Promise<number | null>) {}

  /** The newest ledger seen so far, without asking. */
  get latest(): number | null {
    return this.#latest;
  }

  /** Ask the network, then answer the newest ledger seen (the previous one when it does not answer). */
  refresh(): Promise<number | null> {
    this.#asking ??= this.ask()
      .catch(() => null)
      .then((l) => {
        this.#asking = undefined;
        if (l !== null && (this.#latest === null || l > this.#latest)) this.#latest = l;
        return this.#latest;
      });
    return this.#asking;
  }
}

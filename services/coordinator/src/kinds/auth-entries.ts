import { decodeAuthEntry } from '@cosigner/stellar/soroban';
import { coordinatorErrors } from '../errors.ts';
import { entryAccount } from '../soroban.ts';
import { type AuthDeps, type AuthState, authRound, type PreparedAuthRound, prepareAuthRound } from './auth.ts';
import type { RoundKind } from './kind.ts';

/**
 * Standalone SorobanAuthorizationEntry values a client wants signed for a transaction someone else submits
 * (`POST /v1/proposals` with `kind: 'authEntries'`). Every entry must name a G account by address credentials;
 * the result is the signed entries (GET shows them in `authEntries`); nothing is submitted.
 */

/**
 * @throws STELLAR_* decode errors, COORD_SOROBAN_BAD_ENTRY, COORD_SOROBAN_V2_DISABLED, COORD_SOROBAN_ENTRY_EXPIRED,
 *   COORD_ACCOUNT_NOT_FOUND
 */
export async function prepareAuthEntries(
  o: AuthDeps,
  entriesB64: readonly string[],
  account?: string,
): Promise<PreparedAuthRound> {
  const entries = entriesB64.map((b) => decodeAuthEntry(b));
  for (const [i, e] of entries.entries()) {
    const { account: a } = entryAccount(e, o.limits, i);
    if (a === null) {
      throw coordinatorErrors.error(
        'COORD_SOROBAN_BAD_ENTRY',
        { entry: i },
        { message: `Entry ${i} has no address credentials of a G account: the cluster has nothing to sign.` },
      );
    }
    if (account !== undefined && a !== account) {
      throw coordinatorErrors.error(
        'COORD_SOROBAN_BAD_ENTRY',
        { entry: i },
        { message: `Entry ${i} names ${a}, not the proposal's account ${account}.` },
      );
    }
  }
  const prepared = await prepareAuthRound(
    o,
    { kind: 'authEntries', tx: null, submitFollowUp: false, maxTime: 0 },
    entries,
    false,
  );
  // Kept as the client sent them: an idempotent retry is compared with these very strings.
  return { ...prepared, authEntries: [...entriesB64] };
}

export function authEntriesKind(o: AuthDeps): RoundKind<AuthState> {
  return authRound(o, {
    kind: 'authEntries',
    // The result is the signed entries themselves (stored with the row's entries): no envelope.
    envelope: () => null,
    afterSigned: () => false,
  });
}

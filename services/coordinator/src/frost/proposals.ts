import { xdrTransactionOf } from '@cosigner/stellar/decode';
import { sorobanShape } from '@cosigner/stellar/soroban';
import type { xdr } from '@stellar/stellar-sdk';
import { coordinatorErrors } from '../errors.ts';
import type { Prepared } from '../kinds/kind.ts';
import type { PreparedTransaction } from '../kinds/transaction.ts';
import { ed25519Weights } from '../quorum.ts';
import type { FrostDkgRelay } from './dkg.ts';

/**
 * A transaction proposed with `group` (POST /v1/proposals): refused unless the coordinator holds that group ready
 * and its key alone reaches the weight every requirement needs (a FROST round adds one signature, the group key's;
 * mixed rounds of group and native signers are a later change), and unless it is a classic transaction (a Soroban
 * transaction's address-credential entries would need their own FROST signatures). The row is the transaction's,
 * of stored kind `frostTx`, run by kinds/frost.ts.
 * @throws COORD_FROST_GROUP_NOT_READY, COORD_FROST_GROUP_NOT_SIGNER, COORD_FROST_UNSUPPORTED
 */
export async function prepareFrost(
  relay: Pick<FrostDkgRelay, 'readyGroup'>,
  tx: PreparedTransaction,
  address: string,
  base: Prepared,
): Promise<Prepared> {
  // Read from the coordinator's store, which every replica shares: a group made through any replica is found.
  const g = await relay.readyGroup(address);
  if (!g) {
    throw coordinatorErrors.error(
      'COORD_FROST_GROUP_NOT_READY',
      { field: 'group', group: address },
      { message: `group ${address} is not a ready FROST group of this cluster (see GET /v1/frost/groups).` },
    );
  }
  const d = tx.decoded;
  const shape = sorobanShape(xdrTransactionOf(d.kind === 'feeBump' && d.inner ? d.inner : d) as xdr.Transaction);
  if (shape.kind !== 'classic') {
    throw coordinatorErrors.error('COORD_FROST_UNSUPPORTED', { field: 'xdr' });
  }
  for (const r of tx.requirements) {
    const account = tx.accounts.find((a) => a.accountId === r.accountId)!;
    const weight = ed25519Weights(account).get(address) ?? 0;
    if (weight < r.weight) {
      throw coordinatorErrors.error(
        'COORD_FROST_GROUP_NOT_SIGNER',
        { field: 'group', account: r.accountId, level: r.level, weight, needed: r.weight },
        {
          message: `group ${address} has weight ${weight} on ${r.accountId}; the transaction needs ${r.weight} (${r.level}).`,
        },
      );
    }
  }
  return { ...base, fields: { ...base.fields, kind: 'frostTx' } };
}

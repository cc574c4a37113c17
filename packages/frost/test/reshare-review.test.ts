import {
  Account,
  Asset,
  Keypair,
  Networks,
  Operation,
  StrKey,
  type Transaction,
  TransactionBuilder,
  type xdr,
} from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { reviewGroupKeyChange } from '../src/reshare.ts';

/**
 * reviewGroupKeyChange: what a node decides, from its own records only, about a transaction that names a group key
 * as a signer. The node's side among real processes: services/cosigner/test/frost-swap-review.test.ts and
 * test/e2e/frost-refresh-new-group.test.ts.
 */

const account = Keypair.random().publicKey();
const oldKey = Keypair.random().publicKey();
const newKey = Keypair.random().publicKey();
const stranger = Keypair.random().publicKey();
const other = Keypair.random().publicKey();

function tx(ops: xdr.Operation[], source = account): Transaction {
  const b = new TransactionBuilder(new Account(source, '41'), { fee: '200', networkPassphrase: Networks.TESTNET });
  for (const op of ops) b.addOperation(op);
  return b.setTimeout(300).build();
}
const remove = (key = oldKey) => Operation.setOptions({ signer: { ed25519PublicKey: key, weight: 0 } });
const add = (key = newKey, weight = 1) => Operation.setOptions({ signer: { ed25519PublicKey: key, weight } });
const review = (t: Transaction, weights: Record<string, number> = { [newKey]: 1 }) =>
  reviewGroupKeyChange(t, {
    signingGroup: oldKey,
    heldGroups: new Set([oldKey, newKey]),
    plannedWeight: (g) => weights[g],
  });

describe('reviewGroupKeyChange', () => {
  it('passes exactly the planned swap from the signing group to a held group', () => {
    expect(review(tx([remove(), add()]))).toEqual({
      kind: 'checked',
      change: { account, oldKey, newKey, weight: 1 },
    });
    expect(review(tx([remove(), add(newKey, 3)]), { [newKey]: 3 })).toMatchObject({ kind: 'checked' });
  });

  it('leaves a transaction that names no known group key to the policy', () => {
    const pay = Operation.payment({ destination: other, asset: Asset.native(), amount: '1' });
    expect(review(tx([pay]))).toEqual({ kind: 'none' });
    // A native signer change, and a setOptions without a signer, are not group-key changes.
    expect(review(tx([add(other), Operation.setOptions({ homeDomain: 'example.com' })]))).toEqual({ kind: 'none' });
  });

  it('refuses a swap to a key the node holds no group of, or from the group to itself', () => {
    expect(review(tx([remove(), add(stranger)]))).toMatchObject({
      kind: 'refused',
      code: 'UNKNOWN_GROUP',
      field: 'operations[1].signer',
      message: expect.stringContaining(stranger),
    });
    // Moving the account off the group onto a native key is no swap between groups either.
    expect(review(tx([remove(), add(other)]))).toMatchObject({ code: 'UNKNOWN_GROUP' });
    expect(review(tx([remove(), add(oldKey)]))).toMatchObject({ code: 'MISMATCH', field: 'operations[1].signer' });
  });

  it("refuses a held group without a weight planned by the node's operator", () => {
    expect(review(tx([remove(), add()]), {})).toMatchObject({
      code: 'WEIGHT_UNPLANNED',
      field: 'operations[1].signer.weight',
    });
  });

  it('refuses every other difference from the planned swap, naming the first one', () => {
    const pay = Operation.payment({ destination: other, asset: Asset.native(), amount: '1' });
    const cases: [Transaction, string][] = [
      [tx([remove(), add(newKey, 2)]), 'operations[1].signer'],
      [tx([remove(), add(), pay]), 'operations'],
      [tx([remove()]), 'operations'],
      [tx([add(), remove()]), 'operations[1].signer'],
      [
        tx([Operation.setOptions({ signer: { ed25519PublicKey: oldKey, weight: 0 }, source: other }), add()]),
        'operations[0].source',
      ],
      [
        tx([remove(), Operation.setOptions({ signer: { ed25519PublicKey: newKey, weight: 1 }, homeDomain: 'x' })]),
        'operations[1].homeDomain',
      ],
      [tx([remove(newKey), add()]), 'operations[0].signer'],
      // The group's key raised or lowered in place (no second group): a change of a group key, not a swap.
      [tx([add(oldKey, 5)]), 'operations'],
    ];
    for (const [t, field] of cases) {
      expect(review(t), field).toMatchObject({ kind: 'refused', code: 'MISMATCH', field });
    }
  });

  it('sees a group key inside a signed-payload signer (CAP-40) and refuses it', () => {
    const payload = StrKey.encodeSignedPayload(
      Buffer.concat([StrKey.decodeEd25519PublicKey(oldKey), Buffer.from([0, 0, 0, 4]), Buffer.from('abcd')]),
    );
    const t = tx([Operation.setOptions({ signer: { ed25519SignedPayload: payload, weight: 1 } })]);
    expect(review(t)).toMatchObject({ kind: 'refused', code: 'MISMATCH', field: 'operations' });
    // One on another key is left to the policy.
    const foreign = StrKey.encodeSignedPayload(
      Buffer.concat([StrKey.decodeEd25519PublicKey(other), Buffer.from([0, 0, 0, 4]), Buffer.from('abcd')]),
    );
    expect(review(tx([Operation.setOptions({ signer: { ed25519SignedPayload: foreign, weight: 1 } })]))).toEqual({
      kind: 'none',
    });
  });
});

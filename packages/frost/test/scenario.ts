import { join } from 'node:path';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import { checkAuth } from '@cosigner/stellar/quorum';
import { Account, Asset, Keypair, Networks, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { expect } from 'vitest';
import { SqliteNonceStore } from '../src/nonce-store.ts';
import { aggregate } from '../src/rounds.ts';
import { FrostSigner } from '../src/signer.ts';
import { type GroupPublic, verifyEd25519 } from '../src/suite.ts';
import { makeSession, opensslVerify, runDkg } from './helpers.ts';

/** A payment from the group's account, as the cluster would be asked to sign it. */
function payment(source: string) {
  return new TransactionBuilder(new Account(source, '100'), { fee: '100', networkPassphrase: Networks.TESTNET })
    .addOperation(
      Operation.payment({ destination: Keypair.random().publicKey(), asset: Asset.native(), amount: '12.5' }),
    )
    .setTimeout(300)
    .build();
}

/** Sign `tx` with the first `t` signers (each with its own nonce store) and aggregate. */
export function signWith(signers: FrostSigner[], group: GroupPublic, message: Uint8Array, roundId: string) {
  const commitments = signers.map((s) => s.commit(roundId));
  const shares = Object.fromEntries(signers.map((s) => [String(s.index), s.sign(roundId, commitments, message)]));
  return { commitments, shares, signature: aggregate(group, commitments, message, shares) };
}

export function groupOf(n: number, t: number, id: string) {
  const { session, secrets } = makeSession(n, t, id);
  const { outputs } = runDkg(session, secrets);
  return outputs;
}

/**
 * A t-of-n group from an in-memory key generation signs two payments, each with a different subset of t
 * signers (each with its own SQLite nonce store under `dir`): one from an account whose only signer is the group
 * key, one from an account where the group is one weighted signer beside a recovery key. The envelopes carry one
 * signature each and pass Keypair.verify, node:crypto and the stellar-core-style authorization check.
 */
export function groupSignsPayments(n: number, t: number, dir: string): void {
  const outputs = groupOf(n, t, `group-${t}-of-${n}`);
  const { group, address } = outputs[0]!;
  expect(group.participants).toHaveLength(n);
  const stores = outputs.map((o) => SqliteNonceStore.open(join(dir, `${n}-${o.share.index}.sqlite`)));
  const signers = outputs.map((o, i) => new FrostSigner({ group: o.group, share: o.share, store: stores[i]! }));
  const tx = payment(address);
  const hash = tx.hash();
  // Any t of the n: the last t here, so the first n - t being down changes nothing.
  const { signature } = signWith(signers.slice(n - t), group, hash, `round-${n}-1`);
  expect(signature).toHaveLength(64);
  expect(Keypair.fromPublicKey(address).verify(hash, Buffer.from(signature))).toBe(true);
  expect(verifyEd25519(Buffer.from(group.groupPublicKey, 'hex'), hash, signature)).toBe(true);
  expect(opensslVerify(Buffer.from(group.groupPublicKey, 'hex'), hash, signature)).toBe(true);
  // The envelope carries one signature; the account's only signer is the group key at weight 1.
  tx.addSignature(address, Buffer.from(signature).toString('base64'));
  expect(tx.signatures).toHaveLength(1);
  const decoded = decodeEnvelope(tx.toEnvelope().toXDR('base64'), Networks.TESTNET);
  const accounts = new Map([
    [address, { accountId: address, masterWeight: 1, thresholds: { low: 1, medium: 1, high: 1 }, signers: [] }],
  ]);
  expect(checkAuth(decoded, accounts)).toEqual({ ok: true });
  // Mixed mode: the group as one weighted signer beside a recovery key, on another account.
  const owner = Keypair.random().publicKey();
  const mixed = new Map([
    [
      owner,
      {
        accountId: owner,
        masterWeight: 0,
        thresholds: { low: 2, medium: 2, high: 3 },
        signers: [
          { key: address, weight: 2 },
          { key: Keypair.random().publicKey(), weight: 1 },
        ],
      },
    ],
  ]);
  const tx2 = payment(owner);
  const { signature: sig2 } = signWith(signers.slice(0, t), group, tx2.hash(), `round-${n}-2`);
  tx2.addSignature(address, Buffer.from(sig2).toString('base64'));
  expect(checkAuth(decodeEnvelope(tx2.toEnvelope().toXDR('base64'), Networks.TESTNET), mixed)).toEqual({ ok: true });
  for (const s of signers) s.close();
  for (const s of stores) s.close();
}

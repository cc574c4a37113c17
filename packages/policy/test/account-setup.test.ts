import { decodeEnvelope } from '@cosigner/stellar/decode';
import { Account, Keypair, Networks, TransactionBuilder } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import {
  buildChangeTransaction,
  checkSetupSafety,
  freshAccount,
  multisigChanges,
  setOptionsOps,
  signedFreshSetup,
} from '../src/account-setup.ts';
import { applyChanges } from '../src/lockout.ts';

const keys = Array.from({ length: 4 }, () => Keypair.random().publicKey());
const nodes = (n: number) => keys.slice(0, n).map((key, i) => ({ key, weight: 1, node: `node-${i}` }));
const t = (x: number) => ({ low: x, med: x, high: x });

describe('account setup', () => {
  it('plans listed signers, removes the others, sets master weight 0 and the thresholds', () => {
    const account = Keypair.random().publicKey();
    const current = { ...freshAccount(account), signers: [{ key: keys[3]!, weight: 1 }] };
    expect(freshAccount(account)).toEqual({ account, masterWeight: 1, thresholds: t(0), signers: [] });
    const changes = multisigChanges(current, { signers: nodes(3), thresholds: t(2) });
    expect(changes).toEqual({
      signers: [...nodes(3), { key: keys[3], weight: 0 }],
      masterWeight: 0,
      thresholds: t(2),
    });
    const after = applyChanges(current, changes);
    expect(after.signers.map((s) => s.key)).toEqual(keys.slice(0, 3));
    expect(after.masterWeight).toBe(0);
  });

  it('judges the result by the lock-out and the quorum-intersection checks', () => {
    const account = Keypair.random().publicKey();
    const of = (n: number, x: number) => ({ account, masterWeight: 0, thresholds: t(x), signers: nodes(n) });
    expect(checkSetupSafety(of(3, 2)).ok).toBe(true);
    const single = checkSetupSafety(of(3, 1));
    expect(single.ok).toBe(false);
    expect(single.lockout.problems.map((p) => p.code)).toContain('LOCKOUT_SINGLE_PARTY');
    const disjoint = checkSetupSafety(of(4, 2));
    expect(disjoint).toMatchObject({ ok: false, lockout: { ok: true }, quorums: { ok: false } });
    expect(disjoint.quorums.disjoint.map((d) => d.level)).toEqual(['low', 'medium', 'high']);
    const unreachable = checkSetupSafety(of(2, 3));
    expect(unreachable.lockout.problems.map((p) => p.code)).toContain('LOCKOUT_UNREACHABLE');
  });

  it('writes one setOptions per signer, then one for master weight and thresholds, each sourced by the account', () => {
    const a = keys[3]!;
    const ops = setOptionsOps(a, { signers: nodes(2), masterWeight: 0, thresholds: t(2) });
    expect(ops).toHaveLength(3);
    expect(setOptionsOps(a, { signers: nodes(1) })).toHaveLength(1);
    expect(setOptionsOps(a, { thresholds: { high: 3 } })).toHaveLength(1);
    expect(setOptionsOps(a, {})).toHaveLength(0);
  });

  it('builds and signs a fresh account setup the network would apply as one transaction', () => {
    const master = Keypair.random();
    const source = new Account(master.publicKey(), '41');
    const { tx, after, safety } = signedFreshSetup(
      source,
      master,
      { signers: nodes(3), thresholds: t(2) },
      {
        networkPassphrase: Networks.TESTNET,
        fee: '100',
        timeoutSeconds: 60,
      },
    );
    expect(safety.ok).toBe(true);
    expect(after).toMatchObject({ masterWeight: 0, thresholds: t(2) });
    expect(tx.sequence).toBe('42');
    expect(tx.fee).toBe('400');
    expect(tx.operations.map((o) => o.type)).toEqual(['setOptions', 'setOptions', 'setOptions', 'setOptions']);
    expect(tx.operations.at(-1)).toMatchObject({ masterWeight: 0, lowThreshold: 2, medThreshold: 2, highThreshold: 2 });
    expect(Number(tx.timeBounds?.maxTime) - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(60);
    expect(tx.signatures).toHaveLength(1);
    const [sig] = decodeEnvelope(tx.toEnvelope().toXdr('base64'), Networks.TESTNET).signatures;
    expect(sig!.hint.equals(Buffer.from(master.signatureHint()))).toBe(true);
    expect(master.verify(Buffer.from(tx.hash()), sig!.signature)).toBe(true);
    const back = TransactionBuilder.fromXDR(tx.toXDR(), Networks.TESTNET);
    expect(Buffer.from(back.hash()).equals(Buffer.from(tx.hash()))).toBe(true);
  });

  it('builds one transaction for several accounts, its sequence from the source, with the default fee', () => {
    const src = new Account(keys[0]!, '7');
    const tx = buildChangeTransaction(src, {
      networkPassphrase: Networks.TESTNET,
      accounts: [keys[1]!, keys[2]!],
      changes: { thresholds: { high: 2 } },
    });
    expect(tx.source).toBe(keys[0]);
    expect(tx.operations.map((o) => o.source)).toEqual([keys[1], keys[2]]);
    expect(tx.fee).toBe('2000');
  });
});

import { decodeEnvelope } from '@cosigner/stellar/decode';
import { describeTransaction } from '@cosigner/stellar/describe';
import {
  Account,
  Address,
  Asset,
  Claimant,
  Keypair,
  Memo,
  nativeToScVal,
  Operation,
  StrKey,
  TransactionBuilder,
  xdr,
} from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { formatAmount } from '../src/amount.ts';
import { type Decision, evaluate } from '../src/evaluate.ts';
import { parsePolicy } from '../src/schema.ts';
import { TESTNET } from './builders.ts';

/**
 * The contract between packages/stellar and this package, checked on real envelopes: transactions built with
 * the SDK, decoded and described by packages/stellar, evaluated here. If the describer renders a field
 * differently from what the policy reads (claimants, offer prices, i128 arguments, auth entries), this fails.
 */

const ops = Keypair.random().publicKey();
const alice = Keypair.random().publicKey();
const issuer = Keypair.random().publicKey();
const newSigner = Keypair.random().publicKey();
const token = StrKey.encodeContract(Buffer.alloc(32, 11));
const usdc = new Asset('USDC', issuer);

const policy = parsePolicy({
  network: TESTNET,
  accounts: [ops],
  operations: [
    'payment',
    'createClaimableBalance',
    'manageBuyOffer',
    'setOptions',
    'invokeHostFunction',
    'pathPaymentStrictReceive',
  ],
  assets: [
    { asset: 'native', maxPerTx: '1000', velocity: [{ window: '24h', max: '5000' }] },
    { asset: `USDC:${issuer}`, maxPerTx: '1000', velocity: [{ window: '24h', max: '5000' }] },
    { asset: token, maxPerTx: '1000', velocity: [{ window: '24h', max: '5000' }] },
  ],
  destinations: { deny: [Keypair.random().publicKey()] },
  contracts: [
    { id: token, functions: [{ name: 'transfer', token: { asset: token }, maxAmount: '100', recipients: [alice] }] },
  ],
  signerChanges: { accounts: [ops], addKeys: [newSigner], maxWeight: 1 },
  memo: { types: ['text'] },
});

const now = Math.floor(Date.now() / 1000);

function review(build: (b: TransactionBuilder) => TransactionBuilder, currentLedger?: number): Decision {
  const builder = new TransactionBuilder(new Account(ops, '100'), {
    fee: '100',
    networkPassphrase: TESTNET,
  }).setTimeout(120);
  const envelope = build(builder).build().toEnvelope().toXDR('base64');
  const summary = describeTransaction(decodeEnvelope(envelope, TESTNET));
  return evaluate(policy, { summary, now, spent: () => 0n, ...(currentLedger === undefined ? {} : { currentLedger }) });
}

const spendOf = (d: Decision) => Object.fromEntries(d.spend.map((s) => [s.assetKey, formatAmount(s.amount)]));

function transferCall(from: string, to: string, stroops: bigint): xdr.InvokeContractArgs {
  return new xdr.InvokeContractArgs({
    contractAddress: new Address(token).toScAddress(),
    functionName: 'transfer',
    args: [new Address(from).toScVal(), new Address(to).toScVal(), nativeToScVal(stroops, { type: 'i128' })],
  });
}

function authEntry(from: string, call: xdr.InvokeContractArgs, expiration: number): xdr.SorobanAuthorizationEntry {
  return new xdr.SorobanAuthorizationEntry({
    credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
      new xdr.SorobanAddressCredentials({
        address: new Address(from).toScAddress(),
        nonce: xdr.Int64.fromString('7'),
        signatureExpirationLedger: expiration,
        signature: xdr.ScVal.scvVoid(),
      }),
    ),
    rootInvocation: new xdr.SorobanAuthorizedInvocation({
      function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(call),
      subInvocations: [],
    }),
  });
}

describe('policy on summaries from packages/stellar describeTransaction', () => {
  it('sums a payment and a claimable balance of the same asset and checks every claimant', () => {
    const d = review((b) =>
      b.addOperation(Operation.payment({ destination: alice, asset: usdc, amount: '600' })).addOperation(
        Operation.createClaimableBalance({
          asset: usdc,
          amount: '400.0000001',
          claimants: [new Claimant(alice), new Claimant(ops)],
        }),
      ),
    );
    expect(spendOf(d)).toEqual({ [`USDC:${issuer}`]: '1000.0000001' });
    expect(d.reasons.map((r) => r.code)).toEqual(['AMOUNT_OVER_TX_LIMIT']);
  });

  it('counts a buy offer at amount x price in the selling asset', () => {
    const d = review((b) =>
      b.addOperation(
        Operation.manageBuyOffer({ selling: Asset.native(), buying: usdc, buyAmount: '100', price: '2.5' }),
      ),
    );
    expect(spendOf(d)).toEqual({ native: '250' });
    expect(d.outcome).toBe('approve');
  });

  it('counts sendMax of a path payment', () => {
    const d = review((b) =>
      b.addOperation(
        Operation.pathPaymentStrictReceive({
          sendAsset: Asset.native(),
          sendMax: '1000.5',
          destination: alice,
          destAsset: usdc,
          destAmount: '10',
          path: [],
        }),
      ),
    );
    expect(spendOf(d)).toEqual({ native: '1000.5' });
    expect(d.reasons.map((r) => r.code)).toEqual(['AMOUNT_OVER_TX_LIMIT']);
  });

  it('reads setOptions signer changes and the memo type', () => {
    const ok = review((b) =>
      b
        .addOperation(Operation.setOptions({ signer: { ed25519PublicKey: newSigner, weight: 1 } }))
        .addMemo(Memo.text('rotate')),
    );
    expect(ok.outcome).toBe('approve');
    const bad = review((b) =>
      b.addOperation(Operation.setOptions({ signer: { ed25519PublicKey: alice, weight: 2 } })).addMemo(Memo.id('5')),
    );
    expect(bad.reasons.map((r) => r.code).sort()).toEqual([
      'MEMO_TYPE_NOT_ALLOWED',
      'SIGNER_KEY_NOT_ALLOWED',
      'SIGNER_WEIGHT_TOO_HIGH',
    ]);
  });

  it('reads a token transfer and its address auth entry (i128 amount, recipients, expiration)', () => {
    const call = transferCall(ops, alice, 500_000_000n);
    const invoke = (expiration: number) => (b: TransactionBuilder) =>
      b.addOperation(
        Operation.invokeHostFunction({
          func: xdr.HostFunction.hostFunctionTypeInvokeContract(call),
          auth: [authEntry(ops, call, expiration)],
        }),
      );
    const ok = review(invoke(1100), 1000);
    expect(ok.outcome).toBe('approve');
    expect(spendOf(ok)).toEqual({ [token]: '50' });
    expect(review(invoke(5000), 1000).reasons.map((r) => r.code)).toEqual(['AUTH_EXPIRATION_TOO_FAR']);

    const tooMuch = transferCall(ops, Keypair.random().publicKey(), 1_000_000_001n);
    const d = review((b) =>
      b.addOperation(
        Operation.invokeHostFunction({ func: xdr.HostFunction.hostFunctionTypeInvokeContract(tooMuch), auth: [] }),
      ),
    );
    expect(d.reasons.map((r) => r.code).sort()).toEqual(['AMOUNT_OVER_CALL_LIMIT', 'RECIPIENT_NOT_ALLOWED']);
  });
});

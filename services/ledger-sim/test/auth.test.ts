import { Asset, type FeeBumpTransaction, type Keypair, Operation, TransactionBuilder, xdr } from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fund, keys, multisig, signed, sim, tx, verdict } from './helpers.ts';

/** The same fee bump with another outer fee, unsigned (the SDK's builder refuses fees below the inner rate). */
function withOuterFee(bump: FeeBumpTransaction, fee: bigint): FeeBumpTransaction {
  const wire = bump.toEnvelope().toXdrObject() as { feeBump: { tx: { fee: bigint }; signatures: unknown[] } };
  wire.feeBump.tx.fee = fee;
  wire.feeBump.signatures = [];
  const env = xdr.TransactionEnvelope.fromXdrObject(wire as never);
  return TransactionBuilder.fromXDR(env.toXdr('base64'), bump.networkPassphrase) as FeeBumpTransaction;
}

/**
 * The table: stellar-core's signature rules (SignatureChecker.cpp, TransactionFrame.cpp checkValid,
 * FeeBumpTransactionFrame.cpp) as the simulator enforces them, through POST /transactions.
 */
describe('signature checking, as stellar-core does it', () => {
  let app: FastifyInstance;
  beforeEach(async () => {
    app = await sim();
  });
  afterEach(async () => {
    await app.close();
  });

  const pay = (to: string) => Operation.payment({ destination: to, asset: Asset.native(), amount: '1' });

  it('2-of-3 passes, 1-of-3 fails with op_bad_auth, 3-of-3 on 2-of-3 fails with tx_bad_auth_extra', async () => {
    const [owner, a, b, c, dest] = keys(5);
    await multisig(
      app,
      owner!,
      [a, b, c].map((kp) => ({ kp: kp!, weight: 1 })),
      { master: 0, low: 1, med: 2, high: 2 },
    );
    await fund(app, dest!);
    const o = owner!.publicKey();
    expect(await verdict(app, signed(tx(app, o, [pay(dest!.publicKey())]), a!))).toBe('tx_failed:op_bad_auth');
    expect(await verdict(app, signed(tx(app, o, [pay(dest!.publicKey())]), a!, b!, c!))).toBe('tx_bad_auth_extra');
    expect(await verdict(app, signed(tx(app, o, [pay(dest!.publicKey())]), c!, a!))).toBe('ok');
  });

  it('is order-dependent: weights A=1, B=2, medium 2: [B,A] fails tx_bad_auth_extra, [A,B] passes', async () => {
    const [owner, a, b, dest] = keys(4);
    await multisig(
      app,
      owner!,
      [
        { kp: a!, weight: 1 },
        { kp: b!, weight: 2 },
      ],
      { master: 0, low: 1, med: 2, high: 3 },
    );
    await fund(app, dest!);
    const o = owner!.publicKey();
    expect(await verdict(app, signed(tx(app, o, [pay(dest!.publicKey())]), b!, a!))).toBe('tx_bad_auth_extra');
    expect(await verdict(app, signed(tx(app, o, [pay(dest!.publicKey())]), a!, b!))).toBe('ok');
  });

  it('a master key of weight 0 cannot sign, not even at threshold 0', async () => {
    const [owner, a, dest] = keys(3);
    await multisig(app, owner!, [{ kp: a!, weight: 1 }], { master: 0, low: 0, med: 0, high: 0 });
    await fund(app, dest!);
    const o = owner!.publicKey();
    expect(await verdict(app, signed(tx(app, o, [pay(dest!.publicKey())]), owner!))).toBe('tx_bad_auth');
    expect(await verdict(app, signed(tx(app, o, [pay(dest!.publicKey())]), a!))).toBe('ok');
  });

  it('setOptions changing a signer needs HIGH, a home domain only MEDIUM', async () => {
    const [owner, a, b, c, x] = keys(5);
    await multisig(
      app,
      owner!,
      [a, b, c].map((kp) => ({ kp: kp!, weight: 1 })),
      { master: 0, low: 1, med: 2, high: 3 },
    );
    const o = owner!.publicKey();
    const addSigner = Operation.setOptions({ signer: { ed25519PublicKey: x!.publicKey(), weight: 1 } });
    expect(await verdict(app, signed(tx(app, o, [addSigner]), a!, b!))).toBe('tx_failed:op_bad_auth');
    const zeroMaster = Operation.setOptions({ masterWeight: 0 });
    expect(await verdict(app, signed(tx(app, o, [zeroMaster]), a!, b!))).toBe('tx_failed:op_bad_auth');
    expect(await verdict(app, signed(tx(app, o, [Operation.setOptions({ homeDomain: 'example.com' })]), a!, b!))).toBe(
      'ok',
    );
    expect(await verdict(app, signed(tx(app, o, [addSigner]), a!, b!, c!))).toBe('ok');
    expect(app.ledger.state.accounts.get(o)!.signers.map((s) => s.key)).toContain(x!.publicKey());
  });

  /** An owner that needs both a and b (master weight 0), and a funded fee source and destination. */
  async function feeBumpParties() {
    const [owner, a, b, sponsor, dest] = keys(5) as [Keypair, Keypair, Keypair, Keypair, Keypair];
    await multisig(
      app,
      owner,
      [
        { kp: a, weight: 1 },
        { kp: b, weight: 1 },
      ],
      { master: 0, low: 1, med: 2, high: 2 },
    );
    await fund(app, sponsor, dest);
    return { owner, a, b, sponsor, dest };
  }

  it('accepts a fee bump signed only by the fee source over a fully signed inner transaction', async () => {
    const { owner, a, b, sponsor, dest } = await feeBumpParties();
    const inner = signed(tx(app, owner!.publicKey(), [pay(dest!.publicKey())]), a!, b!);
    const bump = TransactionBuilder.buildFeeBumpTransaction(sponsor!, '200', inner, inner.networkPassphrase);
    const ownerBefore = app.ledger.state.accounts.get(owner!.publicKey())!.balance;
    const sponsorBefore = app.ledger.state.accounts.get(sponsor!.publicKey())!.balance;
    expect(await verdict(app, signed(bump, sponsor!))).toBe('ok');
    // The fee source pays baseFee * (ops + 1); the inner source pays only the payment.
    expect(app.ledger.state.accounts.get(sponsor!.publicKey())!.balance).toBe(sponsorBefore - 200n);
    expect(app.ledger.state.accounts.get(owner!.publicKey())!.balance).toBe(ownerBefore - 10_000_000n);
  });

  it('refuses a fee bump without the fee source signature, or over an under-signed inner transaction', async () => {
    const { owner, a, b, sponsor, dest } = await feeBumpParties();
    const good = signed(tx(app, owner!.publicKey(), [pay(dest!.publicKey())]), a!, b!);
    const unsignedBump = TransactionBuilder.buildFeeBumpTransaction(sponsor!, '200', good, good.networkPassphrase);
    expect(await verdict(app, unsignedBump)).toBe('tx_bad_auth');
    expect(await verdict(app, signed(unsignedBump, a!))).toBe('tx_bad_auth');
    const extra = TransactionBuilder.buildFeeBumpTransaction(sponsor!, '200', good, good.networkPassphrase);
    expect(await verdict(app, signed(extra, sponsor!, a!))).toBe('tx_bad_auth_extra');
    const short = signed(tx(app, owner!.publicKey(), [pay(dest!.publicKey())]), a!);
    const bumpShort = TransactionBuilder.buildFeeBumpTransaction(sponsor!, '200', short, short.networkPassphrase);
    expect(await verdict(app, signed(bumpShort, sponsor!))).toBe('tx_fee_bump_inner_failed/tx_failed:op_bad_auth');
    // Outer fee 150 < baseFee * (ops + 1) = 200; the SDK's builder refuses it, so edit the XDR.
    expect(await verdict(app, signed(withOuterFee(unsignedBump, 150n), sponsor!))).toBe('tx_insufficient_fee');
    // A higher total yet a lower rate than the inner one: inner 2 ops at 300 each; outer 800 / 3 < 300.
    const dear = signed(
      tx(app, owner!.publicKey(), [pay(dest!.publicKey()), pay(dest!.publicKey())], { fee: 300 }),
      a!,
      b!,
    );
    const cheap = TransactionBuilder.buildFeeBumpTransaction(sponsor!, '300', dear, dear.networkPassphrase);
    expect(await verdict(app, signed(withOuterFee(cheap, 800n), sponsor!))).toBe('tx_insufficient_fee');
    expect(await verdict(app, signed(withOuterFee(cheap, 900n), sponsor!))).toBe('ok');
    const ghost = keys(1)[0]!;
    const noPayer = TransactionBuilder.buildFeeBumpTransaction(ghost, '200', good, good.networkPassphrase);
    expect(await verdict(app, signed(noPayer, ghost))).toBe('tx_no_source_account');
  });

  it('a transaction signed for another network fails authentication', async () => {
    const [a, dest] = keys(2);
    await fund(app, a!, dest!);
    const other = signed(
      tx(app, a!.publicKey(), [pay(dest!.publicKey())], { network: 'Test SDF Network ; September 2015' }),
      a!,
    );
    expect(await verdict(app, other)).toBe('tx_bad_auth');
  });

  it('checks every operation source at its own level and each extra signer', async () => {
    const [a, b, dest, extra] = keys(4);
    await fund(app, a!, b!, dest!);
    const fromB = Operation.payment({
      destination: dest!.publicKey(),
      asset: Asset.native(),
      amount: '1',
      source: b!.publicKey(),
    });
    expect(await verdict(app, signed(tx(app, a!.publicKey(), [pay(dest!.publicKey()), fromB]), a!))).toBe(
      'tx_failed:op_success,op_bad_auth',
    );
    expect(await verdict(app, signed(tx(app, a!.publicKey(), [pay(dest!.publicKey()), fromB]), a!, b!))).toBe('ok');
    const withExtra = () => tx(app, a!.publicKey(), [pay(dest!.publicKey())], { extraSigners: [extra!.publicKey()] });
    expect(await verdict(app, signed(withExtra(), a!))).toBe('tx_bad_auth');
    expect(await verdict(app, signed(withExtra(), a!, extra!))).toBe('ok');
  });
});

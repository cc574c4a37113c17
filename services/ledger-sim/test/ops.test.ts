import { Asset, type Keypair, Operation, StrKey, xdr } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { BASE_RESERVE } from '../src/state.ts';
import { account, fund, keys, post, signed, simPerTest, tx, verdict } from './helpers.ts';

/** Sequence numbers, preconditions, fees and the seven applied operations (stellar-core *OpFrame.cpp). */
describe('ledger-sim transactions', () => {
  const ctx = simPerTest();

  const xlm = (to: string, amount = '1') => Operation.payment({ destination: to, asset: Asset.native(), amount });
  const run = (source: Keypair, ops: xdr.Operation[], o = {}) =>
    verdict(ctx.app, signed(tx(ctx.app, source.publicKey(), ops, o), source));

  describe('sequence numbers and preconditions (TransactionFrame::isBadSeq, isTooEarly, isTooLate)', () => {
    it('refuses the same sequence twice, a gap, and honours minSeqNum', async () => {
      const [a, b] = keys(2);
      await fund(ctx.app, a!, b!);
      const seq0 = account(ctx.app, a!.publicKey()).seq;
      const t = signed(tx(ctx.app, a!.publicKey(), [xlm(b!.publicKey())]), a!);
      const first = await post(ctx.app, t);
      expect(first.status).toBe(200);
      // Another transaction with the same sequence number is refused.
      expect(await run(a!, [xlm(b!.publicKey(), '2')], { seq: seq0 })).toBe('tx_bad_seq');
      // The same bytes again: Horizon answers from history with the stored result; nothing is applied twice.
      const balance = account(ctx.app, b!.publicKey()).balance;
      const again = await post(ctx.app, t);
      expect(again).toEqual(first);
      expect(account(ctx.app, b!.publicKey()).balance).toBe(balance);
      const failed = signed(tx(ctx.app, a!.publicKey(), [xlm(b!.publicKey(), '99999')]), a!);
      const f1 = await post(ctx.app, failed);
      expect(f1.body.extras?.result_codes).toEqual({ transaction: 'tx_failed', operations: ['op_underfunded'] });
      expect(await post(ctx.app, failed)).toEqual(f1);
      const seq = account(ctx.app, a!.publicKey()).seq;
      expect(await run(a!, [xlm(b!.publicKey())], { seq: seq + 1n })).toBe('tx_bad_seq');
      expect(await run(a!, [xlm(b!.publicKey())], { seq: seq + 5n, minAccountSequence: seq.toString() })).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).seq).toBe(seq + 6n);
      expect(await run(a!, [xlm(b!.publicKey())], { seq: seq + 2n, minAccountSequence: seq.toString() })).toBe(
        'tx_bad_seq',
      );
    });

    it('checks time bounds against the close time and ledger bounds against the open ledger', async () => {
      const [a, b] = keys(2);
      await fund(ctx.app, a!, b!);
      const now = Math.floor(ctx.clock / 1000);
      expect(await run(a!, [xlm(b!.publicKey())], { timebounds: { minTime: 0, maxTime: now - 1 } })).toBe(
        'tx_too_late',
      );
      expect(await run(a!, [xlm(b!.publicKey())], { timebounds: { minTime: now + 60, maxTime: 0 } })).toBe(
        'tx_too_early',
      );
      const open = ctx.app.ledger.state.openSequence;
      const tb = { minTime: 0, maxTime: 0 };
      expect(
        await run(a!, [xlm(b!.publicKey())], { timebounds: tb, ledgerbounds: { minLedger: open + 1, maxLedger: 0 } }),
      ).toBe('tx_too_early');
      // maxLedger is exclusive.
      expect(
        await run(a!, [xlm(b!.publicKey())], { timebounds: tb, ledgerbounds: { minLedger: 0, maxLedger: open } }),
      ).toBe('tx_too_late');
      expect(
        await run(a!, [xlm(b!.publicKey())], {
          timebounds: tb,
          ledgerbounds: { minLedger: open, maxLedger: open + 1 },
        }),
      ).toBe('ok');
      ctx.clock += 120_000;
      expect(await run(a!, [xlm(b!.publicKey())], { timebounds: { minTime: now + 60, maxTime: 0 } })).toBe('ok');
    });

    it('enforces minSeqAge and minSeqLedgerGap (CAP-21)', async () => {
      const [a, b] = keys(2);
      await fund(ctx.app, a!, b!);
      expect(await run(a!, [xlm(b!.publicKey())])).toBe('ok');
      expect(await run(a!, [xlm(b!.publicKey())], { minAccountSequenceAge: 30n })).toBe('tx_bad_minseq_age_or_gap');
      expect(await run(a!, [xlm(b!.publicKey())], { minAccountSequenceLedgerGap: 2 })).toBe('tx_bad_minseq_age_or_gap');
      ctx.clock += 31_000;
      await ctx.app.ledger.close();
      await ctx.app.ledger.close();
      expect(await run(a!, [xlm(b!.publicKey())], { minAccountSequenceAge: 30n, minAccountSequenceLedgerGap: 2 })).toBe(
        'ok',
      );
    });

    it('charges baseFee per operation, refuses a lower bid and a fee the balance cannot pay', async () => {
      const [a, b] = keys(2);
      await fund(ctx.app, a!, b!);
      expect(await run(a!, [xlm(b!.publicKey()), xlm(b!.publicKey())], { fee: 49 })).toBe('tx_insufficient_fee');
      const before = account(ctx.app, a!.publicKey()).balance;
      // A bid above the base fee is charged only baseFee * ops (no surge pricing).
      expect(await run(a!, [xlm(b!.publicKey()), xlm(b!.publicKey())], { fee: 1000 })).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).balance).toBe(before - 20_000_000n - 200n);
      const r = ctx.app.ledger.state.txs.at(-1)!;
      expect([r.feeCharged, r.maxFee]).toEqual([200n, 2000n]);
      // Leave exactly the reserve: the next fee cannot be paid from the balance above it.
      const spare = account(ctx.app, a!.publicKey()).balance - 2n * BASE_RESERVE - 100n;
      expect(await run(a!, [xlm(b!.publicKey(), (Number(spare) / 1e7).toFixed(7))])).toBe('ok');
      expect(await run(a!, [xlm(b!.publicKey())])).toBe('tx_insufficient_balance');
    });

    it('refuses a source account that does not exist', async () => {
      const [ghost, b] = keys(2);
      await fund(ctx.app, b!);
      expect(await run(ghost!, [xlm(b!.publicKey())], { seq: 1n })).toBe('tx_no_source_account');
    });
  });

  describe('operations', () => {
    it('createAccount: low reserve, underfunded, already exists, malformed', async () => {
      const [a, n1, n2] = keys(3);
      await fund(ctx.app, a!);
      const create = (d: Keypair, amount: string) =>
        Operation.createAccount({ destination: d.publicKey(), startingBalance: amount });
      expect(await run(a!, [create(n1!, '0.9999999')])).toBe('tx_failed:op_low_reserve');
      expect(await run(a!, [create(n1!, '9999')])).toBe('tx_failed:op_underfunded');
      expect(await run(a!, [create(a!, '5')])).toBe('tx_failed:op_malformed');
      expect(await run(a!, [create(n1!, '1')])).toBe('ok');
      expect(await run(a!, [create(n1!, '1')])).toBe('tx_failed:op_already_exists');
      // A failed operation rolls back the ones before it; the fee and the sequence number stay spent.
      const seq = account(ctx.app, a!.publicKey()).seq;
      expect(await run(a!, [create(n2!, '2'), create(n1!, '1')])).toBe('tx_failed:op_success,op_already_exists');
      expect(ctx.app.ledger.state.accounts.has(n2!.publicKey())).toBe(false);
      expect(account(ctx.app, a!.publicKey()).seq).toBe(seq + 1n);
      // New accounts start at ledger << 32 (getStartingSequenceNumber).
      expect(account(ctx.app, n1!.publicKey()).seq).toBe(
        BigInt(account(ctx.app, n1!.publicKey()).lastModifiedLedger) << 32n,
      );
    });

    it('payment: native and credit, with trustlines', async () => {
      const [issuer, a, b, ghost] = keys(4);
      await fund(ctx.app, issuer!, a!, b!);
      const usd = new Asset('USD', issuer!.publicKey());
      const pay = (to: Keypair, amount: string, asset = usd) =>
        Operation.payment({ destination: to.publicKey(), asset, amount });
      const trust = (limit?: string) => Operation.changeTrust({ asset: usd, ...(limit ? { limit } : {}) });
      expect(await run(a!, [pay(ghost!, '1', Asset.native())])).toBe('tx_failed:op_no_destination');
      expect(await run(a!, [pay(b!, '20000', Asset.native())])).toBe('tx_failed:op_underfunded');
      expect(await run(issuer!, [pay(a!, '5')])).toBe('tx_failed:op_no_trust');
      expect(await run(a!, [trust('10')])).toBe('ok');
      expect(await run(issuer!, [pay(a!, '11')])).toBe('tx_failed:op_line_full');
      expect(await run(issuer!, [pay(a!, '10')])).toBe('ok');
      expect(await run(a!, [pay(b!, '1')])).toBe('tx_failed:op_no_trust');
      expect(await run(b!, [trust()])).toBe('ok');
      // Core credits the destination first: a's full line answers before b's empty one.
      expect(await run(b!, [pay(a!, '1')])).toBe('tx_failed:op_line_full');
      expect(await run(b!, [pay(issuer!, '1')])).toBe('tx_failed:op_underfunded');
      expect(await run(a!, [pay(b!, '4')])).toBe('ok');
      // Paying the issuer burns; paying yourself XLM is a no-op.
      expect(await run(a!, [pay(issuer!, '1')])).toBe('ok');
      expect(await run(a!, [pay(a!, '1', Asset.native())])).toBe('ok');
      const eur = new Asset('EUR', issuer!.publicKey());
      expect(await run(a!, [pay(b!, '1', eur)])).toBe('tx_failed:op_no_trust');
      expect(await run(b!, [Operation.changeTrust({ asset: eur })])).toBe('ok');
      expect(await run(a!, [pay(b!, '1', eur)])).toBe('tx_failed:op_src_no_trust');
      expect(await run(a!, [withAmount(pay(b!, '1'), 0n)])).toBe('tx_failed:op_malformed');
      const tl = (k: Keypair) => account(ctx.app, k.publicKey()).trustlines.get(`USD:${issuer!.publicKey()}`)!.balance;
      expect([tl(a!), tl(b!)]).toEqual([50_000_000n, 40_000_000n]);
      const res = await ctx.app.inject({ url: `/accounts/${b!.publicKey()}` });
      const balances = res.json().balances as { asset_code?: string; balance: string; limit?: string }[];
      expect(balances.find((x) => x.asset_code === 'USD')).toMatchObject({
        balance: '4.0000000',
        asset_type: 'credit_alphanum4',
      });
    });

    it('changeTrust: reserve, limits, removal, no issuer, malformed', async () => {
      const [issuer, a, poor] = keys(3);
      await fund(ctx.app, issuer!, a!);
      const usd = new Asset('USD', issuer!.publicKey());
      const long = new Asset('LONGCODE', issuer!.publicKey());
      const ghostAsset = new Asset('GHO', keys(1)[0]!.publicKey());
      expect(await run(a!, [Operation.changeTrust({ asset: ghostAsset })])).toBe('tx_failed:op_no_issuer');
      expect(await run(a!, [Operation.changeTrust({ asset: usd, limit: '0' })])).toBe('tx_failed:op_invalid_limit');
      expect(await run(issuer!, [Operation.changeTrust({ asset: usd })])).toBe('tx_failed:op_malformed');
      expect(
        await run(a!, [Operation.changeTrust({ asset: usd, limit: '5' }), Operation.changeTrust({ asset: long })]),
      ).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).trustlines.size).toBe(2);
      expect(await run(issuer!, [Operation.payment({ destination: a!.publicKey(), asset: usd, amount: '3' })])).toBe(
        'ok',
      );
      expect(await run(a!, [Operation.changeTrust({ asset: usd, limit: '2' })])).toBe('tx_failed:op_invalid_limit');
      expect(await run(a!, [Operation.changeTrust({ asset: usd, limit: '0' })])).toBe('tx_failed:op_invalid_limit');
      expect(await run(a!, [Operation.changeTrust({ asset: long, limit: '0' })])).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).trustlines.size).toBe(1);
      // An account holding exactly its reserve cannot take a subentry.
      await fund(ctx.app, poor!);
      const spare = account(ctx.app, poor!.publicKey()).balance - 2n * BASE_RESERVE - 100n;
      expect(await run(poor!, [xlmTo(a!, spare)])).toBe('ok');
      expect(await run(poor!, [Operation.changeTrust({ asset: usd })])).toBe('tx_insufficient_balance');
      const res = await ctx.app.inject({ url: `/accounts/${a!.publicKey()}` });
      expect(res.json().subentry_count).toBe(1);
    });

    it('setOptions: signers, weights, thresholds, flags, home domain, inflation', async () => {
      const [a, s1, s2] = keys(3);
      await fund(ctx.app, a!);
      const so = (o: Parameters<typeof Operation.setOptions>[0]) => Operation.setOptions(o);
      expect(await run(a!, [so({ signer: { ed25519PublicKey: a!.publicKey(), weight: 1 } })])).toBe(
        'tx_failed:op_bad_signer',
      );
      expect(await run(a!, [so({ setFlags: 1, clearFlags: 1 } as never)])).toBe('tx_failed:op_bad_flags');
      expect(await run(a!, [so({ setFlags: 16 } as never)])).toBe('tx_failed:op_unknown_flag');
      expect(await run(a!, [so({ setFlags: 8 } as never)])).toBe('tx_failed:op_auth_revocable_required');
      expect(await run(a!, [so({ inflationDest: keys(1)[0]!.publicKey() })])).toBe('tx_failed:op_invalid_inflation');
      expect(
        await run(a!, [
          so({ signer: { ed25519PublicKey: s1!.publicKey(), weight: 2 } }),
          so({ signer: { ed25519PublicKey: s2!.publicKey(), weight: 1 } }),
          so({ homeDomain: 'example.com', setFlags: 3 } as never),
          so({ inflationDest: a!.publicKey() }),
        ]),
      ).toBe('ok');
      const hash = Buffer.alloc(32, 7);
      expect(
        await run(a!, [
          so({ signer: { sha256Hash: hash, weight: 1 } }),
          so({ signer: { ed25519PublicKey: s1!.publicKey(), weight: 3 } }),
        ]),
      ).toBe('ok');
      let acc = (await ctx.app.inject({ url: `/accounts/${a!.publicKey()}` })).json();
      expect(acc.home_domain).toBe('example.com');
      expect(acc.flags).toMatchObject({ auth_required: true, auth_revocable: true, auth_immutable: false });
      expect(acc.subentry_count).toBe(3);
      expect(acc.signers).toContainEqual({ key: s1!.publicKey(), weight: 3, type: 'ed25519_public_key' });
      expect(acc.signers).toContainEqual({ key: StrKey.encodeSha256Hash(hash), weight: 1, type: 'sha256_hash' });
      expect(acc.signers.at(-1)).toEqual({ key: a!.publicKey(), weight: 1, type: 'ed25519_public_key' });
      expect(
        await run(a!, [
          so({ signer: { ed25519PublicKey: s2!.publicKey(), weight: 0 } }),
          so({ masterWeight: 0, lowThreshold: 1, medThreshold: 2, highThreshold: 3, setFlags: 4 } as never),
        ]),
      ).toBe('ok');
      acc = (await ctx.app.inject({ url: `/accounts/${a!.publicKey()}` })).json();
      expect(acc.thresholds).toEqual({ low_threshold: 1, med_threshold: 2, high_threshold: 3 });
      // A master weight of 0 removes the master key: Horizon no longer lists it (AccountEntry.SignerSummary).
      expect(acc.signers.map((s: { key: string }) => s.key)).not.toContain(a!.publicKey());
      expect(acc.signers).toHaveLength(2);
      // Immutable: flags can no longer change. s1 alone reaches the medium threshold (weight 3).
      expect(await verdict(ctx.app, signed(tx(ctx.app, a!.publicKey(), [so({ clearFlags: 1 } as never)]), s1!))).toBe(
        'tx_failed:op_cant_change',
      );
    });

    it('setOptions: at most 20 signers, each one locks a reserve', async () => {
      const [a] = keys(1);
      await fund(ctx.app, a!);
      const ops = keys(20).map((k) => Operation.setOptions({ signer: { ed25519PublicKey: k.publicKey(), weight: 1 } }));
      expect(await run(a!, ops)).toBe('ok');
      expect(
        await run(a!, [Operation.setOptions({ signer: { ed25519PublicKey: keys(1)[0]!.publicKey(), weight: 1 } })]),
      ).toBe('tx_failed:op_too_many_signers');
      const [b] = keys(1);
      await fund(ctx.app, b!);
      const spare = account(ctx.app, b!.publicKey()).balance - 2n * BASE_RESERVE - 100n;
      expect(await run(b!, [xlmTo(a!, spare)])).toBe('ok');
      const c = keys(1)[0]!;
      // The fee is paid from above the reserve, so give one fee back first.
      expect(await run(a!, [xlmTo(b!, 100n)])).toBe('ok');
      expect(await run(b!, [Operation.setOptions({ signer: { ed25519PublicKey: c.publicKey(), weight: 1 } })])).toBe(
        'tx_failed:op_low_reserve',
      );
    });

    it('accountMerge: moves the balance, refuses subentries, missing or same destination', async () => {
      const [issuer, a, b, c] = keys(4);
      await fund(ctx.app, issuer!, a!, b!);
      expect(await run(a!, [Operation.accountMerge({ destination: c!.publicKey() })])).toBe('tx_failed:op_no_account');
      expect(await run(a!, [Operation.accountMerge({ destination: a!.publicKey() })])).toBe('tx_failed:op_malformed');
      expect(await run(a!, [Operation.changeTrust({ asset: new Asset('USD', issuer!.publicKey()) })])).toBe('ok');
      expect(await run(a!, [Operation.accountMerge({ destination: b!.publicKey() })])).toBe(
        'tx_failed:op_has_sub_entries',
      );
      expect(await run(a!, [Operation.changeTrust({ asset: new Asset('USD', issuer!.publicKey()), limit: '0' })])).toBe(
        'ok',
      );
      const total = account(ctx.app, a!.publicKey()).balance + account(ctx.app, b!.publicKey()).balance;
      expect(await run(a!, [Operation.accountMerge({ destination: b!.publicKey() })])).toBe('ok');
      expect(ctx.app.ledger.state.accounts.has(a!.publicKey())).toBe(false);
      expect(account(ctx.app, b!.publicKey()).balance).toBe(total - 100n);
      expect((await ctx.app.inject({ url: `/accounts/${a!.publicKey()}` })).statusCode).toBe(404);
      // A merged account's operations afterwards fail with op_no_source_account.
      await fund(ctx.app, a!);
      expect(
        await verdict(
          ctx.app,
          signed(
            tx(ctx.app, b!.publicKey(), [
              Operation.accountMerge({ destination: issuer!.publicKey(), source: a!.publicKey() }),
              Operation.bumpSequence({ bumpTo: '1', source: a!.publicKey() }),
            ]),
            b!,
            a!,
          ),
        ),
      ).toBe('tx_failed:op_success,op_no_source_account');
    });

    it('accountMerge refuses an account whose sequence is too far ahead', async () => {
      const [a, b] = keys(2);
      await fund(ctx.app, a!, b!);
      expect(
        await run(a!, [
          Operation.bumpSequence({ bumpTo: (BigInt(ctx.app.ledger.state.openSequence + 5) << 32n).toString() }),
        ]),
      ).toBe('ok');
      expect(await run(a!, [Operation.accountMerge({ destination: b!.publicKey() })])).toBe(
        'tx_failed:op_seq_num_too_far',
      );
    });

    it('manageData: set, replace, delete, missing name, invalid name', async () => {
      const [a] = keys(1);
      await fund(ctx.app, a!);
      expect(await run(a!, [Operation.manageData({ name: 'k', value: null })])).toBe(
        'tx_failed:op_data_name_not_found',
      );
      expect(await run(a!, [Operation.manageData({ name: 'bad\u0001', value: 'x' })])).toBe(
        'tx_failed:op_data_invalid_name',
      );
      expect(
        await run(a!, [
          Operation.manageData({ name: 'k', value: 'v1' }),
          Operation.manageData({ name: 'k', value: 'v2' }),
        ]),
      ).toBe('ok');
      const acc = (await ctx.app.inject({ url: `/accounts/${a!.publicKey()}` })).json();
      expect(acc.data).toEqual({ k: Buffer.from('v2').toString('base64') });
      expect(acc.subentry_count).toBe(1);
      expect(await run(a!, [Operation.manageData({ name: 'k', value: null })])).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).data.size).toBe(0);
    });

    it('bumpSequence moves the sequence forward only', async () => {
      const [a] = keys(1);
      await fund(ctx.app, a!);
      const seq = account(ctx.app, a!.publicKey()).seq;
      expect(await run(a!, [Operation.bumpSequence({ bumpTo: (seq + 100n).toString() })])).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).seq).toBe(seq + 100n);
      expect(await run(a!, [Operation.bumpSequence({ bumpTo: '5' })])).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).seq).toBe(seq + 101n);
    });

    it('refuses other operation types with op_not_supported (the simulator applies seven types)', async () => {
      const [a, b] = keys(2);
      await fund(ctx.app, a!, b!);
      const offer = Operation.manageSellOffer({
        selling: Asset.native(),
        buying: new Asset('USD', b!.publicKey()),
        amount: '1',
        price: '1',
      });
      const before = account(ctx.app, a!.publicKey());
      expect(await run(a!, [xlm(b!.publicKey()), offer])).toBe('tx_failed:op_success,op_not_supported');
      // Refused at validation: no fee, no sequence number.
      expect(account(ctx.app, a!.publicKey()).seq).toBe(before.seq);
      expect(account(ctx.app, a!.publicKey()).balance).toBe(before.balance);
      expect(await run(a!, [Operation.inflation()])).toBe('tx_failed:op_not_supported');
    });

    it('spends a pre-authorized transaction signer once its transaction is applied', async () => {
      const [a, b] = keys(2);
      await fund(ctx.app, a!, b!);
      const seq = account(ctx.app, a!.publicKey()).seq;
      const later = tx(ctx.app, a!.publicKey(), [xlm(b!.publicKey())], { seq: seq + 1n });
      expect(await run(a!, [Operation.setOptions({ signer: { preAuthTx: later.hash(), weight: 1 } })])).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).signers).toHaveLength(1);
      expect(await verdict(ctx.app, later)).toBe('ok');
      expect(account(ctx.app, a!.publicKey()).signers).toHaveLength(0);
    });
  });

  /** The same payment with another amount (the SDK's builder refuses non-positive ones). */
  function withAmount(op: xdr.Operation, amount: bigint): xdr.Operation {
    const wire = op.toXdrObject() as unknown as { body: { paymentOp: { amount: bigint } } };
    wire.body.paymentOp.amount = amount;
    return xdr.Operation.fromXdrObject(wire as never);
  }

  function xlmTo(to: Keypair, stroops: bigint): xdr.Operation {
    return Operation.payment({
      destination: to.publicKey(),
      asset: Asset.native(),
      amount: (Number(stroops) / 1e7).toFixed(7),
    });
  }

  it('records failed transactions with their fee and lists them per account', async () => {
    const [a, b] = keys(2);
    await fund(ctx.app, a!, b!);
    const r = await post(ctx.app, signed(tx(ctx.app, a!.publicKey(), [xlm(b!.publicKey(), '20000')]), a!));
    expect(r.status).toBe(400);
    expect(r.body.extras?.result_codes).toEqual({ transaction: 'tx_failed', operations: ['op_underfunded'] });
    const hash = (r.body.extras as { hash: string }).hash;
    const got = (await ctx.app.inject({ url: `/transactions/${hash}` })).json();
    // Horizon answers once the transaction's ledger has closed: the ledger it names is the last closed one.
    expect(got).toMatchObject({
      successful: false,
      fee_charged: '100',
      ledger: ctx.app.ledger.state.lastClosed.sequence,
    });
    const list = (await ctx.app.inject({ url: `/accounts/${b!.publicKey()}/transactions?order=desc&limit=1` })).json();
    expect(list._embedded.records[0].hash).toBe(hash);
  });
});

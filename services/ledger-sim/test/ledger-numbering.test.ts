import { Asset, Operation } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { account, fund, keys, post, signed, simPerTest, tx, verdict } from './helpers.ts';

/**
 * The ledger a submission is applied in, against the one Horizon reports. On the network, POST /transactions is
 * answered once the ledger holding the transaction has closed, so the client's next transaction lands in a later
 * ledger. Every rule that reads the ledger sequence depends on that: MergeOpFrame's SEQNUM_TOO_FAR (source
 * seqNum >= ledgerSeq << 32, protocol >= 10), minSeqLedgerGap and ledger bounds (TransactionFrame
 * isTooEarlyForAccount, isTooEarly, isTooLate), and minSeqAge against the close time of that ledger.
 */
describe('ledger-sim ledger numbering of synchronous submissions', () => {
  const ctx = simPerTest();

  it('answers once the ledger holding the transaction has closed, and the next one lands in a later ledger', async () => {
    const [a, b] = keys(2);
    await fund(ctx.app, a!, b!);
    const first = await post(
      ctx.app,
      signed(tx(ctx.app, a!.publicKey(), [Operation.bumpSequence({ bumpTo: '0' })]), a!),
    );
    expect(first.status).toBe(200);
    const ledger = first.body.ledger as number;
    // The ledger the answer names is closed: Horizon serves it, and it is the latest one.
    expect((await ctx.app.inject({ url: `/ledgers/${ledger}` })).statusCode).toBe(200);
    expect((await ctx.app.inject({ url: '/' })).json().history_latest_ledger).toBe(ledger);
    const second = await post(
      ctx.app,
      signed(tx(ctx.app, a!.publicKey(), [Operation.bumpSequence({ bumpTo: '0' })]), a!),
    );
    expect(second.body.ledger).toBe(ledger + 1);
    // The account's sequence ledger and time are those of the ledger that applied it (CAP-21 seqLedger, seqTime).
    const acc = (await ctx.app.inject({ url: `/accounts/${a!.publicKey()}` })).json();
    const closed = (await ctx.app.inject({ url: `/ledgers/${ledger + 1}` })).json();
    expect(acc.sequence_ledger).toBe(ledger + 1);
    expect(new Date(Number(acc.sequence_time) * 1000).toISOString().replace('.000Z', 'Z')).toBe(closed.closed_at);
  });

  it('merges an account created by the previous submission (MergeOpFrame SEQNUM_TOO_FAR reads the applying ledger)', async () => {
    const [creator, fresh] = keys(2);
    await fund(ctx.app, creator!);
    expect(
      await verdict(
        ctx.app,
        signed(
          tx(ctx.app, creator!.publicKey(), [
            Operation.createAccount({ destination: fresh!.publicKey(), startingBalance: '5' }),
          ]),
          creator!,
        ),
      ),
    ).toBe('ok');
    const created = account(ctx.app, fresh!.publicKey());
    expect(created.seq).toBe(BigInt(ctx.app.ledger.state.lastClosed.sequence) << 32n);
    const before = account(ctx.app, creator!.publicKey()).balance;
    expect(
      await verdict(
        ctx.app,
        signed(
          tx(ctx.app, fresh!.publicKey(), [Operation.accountMerge({ destination: creator!.publicKey() })]),
          fresh!,
        ),
      ),
    ).toBe('ok');
    expect(ctx.app.ledger.state.accounts.has(fresh!.publicKey())).toBe(false);
    expect(account(ctx.app, creator!.publicKey()).balance).toBe(before + 5n * 10_000_000n - 100n);
  });

  it('friendbot answers after its ledger closed too: a funded account can merge at once', async () => {
    const [a, b] = keys(2);
    await fund(ctx.app, a!, b!);
    expect(
      await verdict(
        ctx.app,
        signed(tx(ctx.app, a!.publicKey(), [Operation.accountMerge({ destination: b!.publicKey() })]), a!),
      ),
    ).toBe('ok');
  });

  it('counts minSeqLedgerGap from the ledger that applied the previous transaction', async () => {
    const [a, b] = keys(2);
    await fund(ctx.app, a!, b!);
    const pay = () => Operation.payment({ destination: b!.publicKey(), asset: Asset.native(), amount: '1' });
    expect(await verdict(ctx.app, signed(tx(ctx.app, a!.publicKey(), [pay()]), a!))).toBe('ok');
    // Gap 1: the next ledger is one after the account's sequence ledger. Gap 2 needs one more ledger.
    expect(
      await verdict(ctx.app, signed(tx(ctx.app, a!.publicKey(), [pay()], { minAccountSequenceLedgerGap: 2 }), a!)),
    ).toBe('tx_bad_minseq_age_or_gap');
    expect(
      await verdict(ctx.app, signed(tx(ctx.app, a!.publicKey(), [pay()], { minAccountSequenceLedgerGap: 1 }), a!)),
    ).toBe('ok');
  });

  it('checks ledger bounds against the ledger after the one the last answer named', async () => {
    const [a, b] = keys(2);
    await fund(ctx.app, a!, b!);
    const pay = () => Operation.payment({ destination: b!.publicKey(), asset: Asset.native(), amount: '1' });
    const r = await post(ctx.app, signed(tx(ctx.app, a!.publicKey(), [pay()]), a!));
    const next = (r.body.ledger as number) + 1;
    // maxLedger is exclusive: a transaction valid only up to the answered ledger is too late.
    expect(
      await verdict(
        ctx.app,
        signed(tx(ctx.app, a!.publicKey(), [pay()], { ledgerbounds: { minLedger: 0, maxLedger: next } }), a!),
      ),
    ).toBe('tx_too_late');
    expect(
      await verdict(
        ctx.app,
        signed(tx(ctx.app, a!.publicKey(), [pay()], { ledgerbounds: { minLedger: next + 1, maxLedger: 0 } }), a!),
      ),
    ).toBe('tx_too_early');
    expect(
      await verdict(
        ctx.app,
        signed(tx(ctx.app, a!.publicKey(), [pay()], { ledgerbounds: { minLedger: next, maxLedger: next + 1 } }), a!),
      ),
    ).toBe('ok');
  });

  it('counts minSeqAge from the close time of the ledger that applied the previous transaction', async () => {
    const [a, b] = keys(2);
    await fund(ctx.app, a!, b!);
    const pay = () => Operation.payment({ destination: b!.publicKey(), asset: Asset.native(), amount: '1' });
    expect(await verdict(ctx.app, signed(tx(ctx.app, a!.publicKey(), [pay()]), a!))).toBe('ok');
    const age = (s: bigint) => signed(tx(ctx.app, a!.publicKey(), [pay()], { minAccountSequenceAge: s }), a!);
    ctx.clock += 4_000;
    expect(await verdict(ctx.app, age(5n))).toBe('tx_bad_minseq_age_or_gap');
    ctx.clock += 1_000;
    expect(await verdict(ctx.app, age(5n))).toBe('ok');
  });

  it('an asynchronous submission stays in the open ledger until it closes', async () => {
    const [a, b] = keys(2);
    await fund(ctx.app, a!, b!);
    const open = ctx.app.ledger.state.openSequence;
    const t = signed(
      tx(ctx.app, a!.publicKey(), [
        Operation.payment({ destination: b!.publicKey(), asset: Asset.native(), amount: '1' }),
      ]),
      a!,
    );
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/transactions_async',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `tx=${encodeURIComponent(t.toEnvelope().toXdr('base64'))}`,
    });
    expect(res.statusCode).toBe(201);
    expect(ctx.app.ledger.state.openSequence).toBe(open);
    await ctx.app.ledger.close();
    expect(ctx.app.ledger.state.lastClosed.sequence).toBe(open);
    expect(ctx.app.ledger.state.lastClosed.successfulTxCount).toBe(1);
  });
});

import { Asset, type Keypair, Operation, type xdr } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { minBalance, TOTAL_COINS } from '../src/state.ts';
import { fund, keys, signed, sim, tx } from './helpers.ts';

/**
 * Random operation sequences never crash the simulator, never drive a balance below zero (or below the
 * reserve), never break a trustline limit, and never make or lose a lumen: balances + fee pool = genesis total.
 */
type Step = {
  source: number;
  signer: number;
  ops: { kind: number; to: number; amount: bigint; flag: boolean }[];
  garbage?: Uint8Array;
};

const step: fc.Arbitrary<Step> = fc.record(
  {
    source: fc.nat(5),
    signer: fc.nat(6),
    ops: fc.array(
      fc.record({
        kind: fc.nat(9),
        to: fc.nat(6),
        amount: fc.oneof(fc.bigInt(1n, 100_000_000n), fc.bigInt(1n, 200_000_000_000n), fc.constant(2n ** 62n)),
        flag: fc.boolean(),
      }),
      { minLength: 1, maxLength: 4 },
    ),
    garbage: fc.uint8Array({ minLength: 0, maxLength: 120 }),
  },
  { requiredKeys: ['source', 'signer', 'ops'] },
);

function amountStr(stroops: bigint): string {
  return `${stroops / 10_000_000n}.${(stroops % 10_000_000n).toString().padStart(7, '0')}`;
}

describe('ledger-sim invariants under random operations', () => {
  it('never crashes, never goes negative, conserves lumens', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
        const app = await sim();
        try {
          // 0..3 funded accounts, 4 the issuer, 5 and 6 not created yet.
          const kps = keys(7);
          await fund(app, ...kps.slice(0, 5));
          const usd = new Asset('USD', kps[4]!.publicKey());
          const opFor = (o: Step['ops'][number], source: Keypair): xdr.Operation => {
            const to = kps[o.to]!.publicKey();
            const amount = amountStr(o.amount);
            switch (o.kind) {
              case 0:
                return Operation.payment({ destination: to, asset: Asset.native(), amount });
              case 1:
                return Operation.payment({ destination: to, asset: usd, amount });
              case 2:
                return Operation.changeTrust({
                  asset: usd,
                  ...(o.flag ? { limit: amountStr(o.amount % 1_000_000_000n) } : {}),
                });
              case 3:
                return Operation.createAccount({ destination: to, startingBalance: amount });
              case 4:
                return Operation.accountMerge({ destination: to });
              case 5:
                return Operation.manageData({ name: `k${o.to}`, value: o.flag ? null : 'v' });
              case 6:
                return Operation.bumpSequence({ bumpTo: (o.amount % 1000n).toString() });
              case 7:
                return Operation.setOptions({
                  signer: {
                    ed25519PublicKey: to === source.publicKey() ? kps[6]!.publicKey() : to,
                    weight: o.flag ? 0 : 1,
                  },
                });
              case 8:
                return Operation.setOptions({ homeDomain: o.flag ? 'a.b' : '' });
              default:
                return Operation.inflation();
            }
          };
          for (const s of steps) {
            const source = kps[s.source]!;
            if (s.garbage !== undefined) {
              const out = app.ledger.submit(Buffer.from(s.garbage).toString('base64'));
              expect('malformed' in out).toBe(true);
            }
            if (!app.ledger.state.accounts.has(source.publicKey())) continue;
            const t = tx(
              app,
              source.publicKey(),
              s.ops.map((o) => opFor(o, source)),
            );
            // Mostly the source signs; sometimes someone else, sometimes both.
            const signers = s.signer === s.source ? [source] : s.signer === 6 ? [source, kps[0]!] : [kps[s.signer]!];
            const out = app.ledger.submit(
              signed(t, ...signers)
                .toEnvelope()
                .toXdr('base64'),
            );
            expect('malformed' in out).toBe(false);
            if (s.signer === 3) await app.ledger.close();
          }
          const st = app.ledger.state;
          let fees = 0n;
          for (const r of st.txs) fees += r.feeCharged;
          expect(st.feePool).toBe(fees);
          expect(st.totalLumens()).toBe(TOTAL_COINS);
          for (const a of st.accounts.values()) {
            expect(a.balance >= minBalance(a)).toBe(true);
            for (const tl of a.trustlines.values()) {
              expect(tl.balance >= 0n && tl.balance <= tl.limit).toBe(true);
            }
          }
          expect((await app.inject({ url: '/' })).statusCode).toBe(200);
        } finally {
          await app.close();
        }
      }),
      { numRuns: 30 },
    );
  });
});

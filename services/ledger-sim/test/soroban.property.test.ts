import { Keypair } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fund, multisig, post, sim } from './helpers.ts';
import { addr, i128, prepare, signEntry } from './soroban-helpers.ts';

/**
 * Any set of signatures, in any order, on an escrow deposit's authorization entry: the simulator accepts exactly
 * when the host's rule holds (account_contract.rs `check_account_authentication`): public keys strictly ascending,
 * every key a signer with weight > 0, total weight >= the medium threshold. Account: master 1, three signers
 * weighing 1, 1 and 2, medium threshold 3; a fifth key belongs to nobody.
 */
describe('escrow authorization verdicts match the host rule', () => {
  const owner = Keypair.random();
  const payer = Keypair.random();
  const s = [Keypair.random(), Keypair.random(), Keypair.random()] as const;
  const outsider = Keypair.random();
  const pool: { kp: Keypair; weight: number }[] = [
    { kp: owner, weight: 1 },
    { kp: s[0], weight: 1 },
    { kp: s[1], weight: 1 },
    { kp: s[2], weight: 2 },
    { kp: outsider, weight: 0 },
  ];
  let app: Awaited<ReturnType<typeof sim>>;

  beforeAll(async () => {
    app = await sim();
    await fund(app, payer);
    await multisig(
      app,
      owner,
      [
        { kp: s[0], weight: 1 },
        { kp: s[1], weight: 1 },
        { kp: s[2], weight: 2 },
      ],
      { master: 1, low: 1, med: 3, high: 3 },
    );
  });
  afterAll(async () => {
    await app.close();
  });

  it('accepts iff ascending, all weights > 0, total >= medium', async () => {
    let accepted = 0;
    let refused = 0;
    await fc.assert(
      // Half the runs sort the chosen keys ascending (a random order of k keys is ascending only 1 time in k!, so
      // without this 40 runs can miss the accepting verdict altogether), and two examples pin one of each verdict.
      fc.asyncProperty(fc.shuffledSubarray(pool, { minLength: 1 }), fc.boolean(), async (picked, sortAscending) => {
        const chosen = sortAscending
          ? [...picked].sort((a, b) =>
              Buffer.compare(Buffer.from(a.kp.rawPublicKey()), Buffer.from(b.kp.rawPublicKey())),
            )
          : picked;
        const keysInOrder = chosen.map((c) => Buffer.from(c.kp.rawPublicKey()));
        const ascending = keysInOrder.every((k, i) => i === 0 || Buffer.compare(keysInOrder[i - 1]!, k) < 0);
        const weights = chosen.map((c) => c.weight);
        const expected = ascending && weights.every((w) => w > 0) && weights.reduce((a, b) => a + b, 0) >= 3;
        const before = app.ledger.state.escrow.get(owner.publicKey()) ?? 0n;
        const exp = app.ledger.state.openSequence + 5;
        const { tx } = await prepare(app, payer, 'deposit', [addr(owner), i128(1n)], (es) =>
          es.map((e) =>
            signEntry(
              e,
              exp,
              chosen.map((c) => c.kp),
              { order: 'given' },
            ),
          ),
        );
        const r = await post(app, tx);
        const after = app.ledger.state.escrow.get(owner.publicKey()) ?? 0n;
        if (expected) accepted++;
        else refused++;
        expect(r.status === 200, JSON.stringify(r.body.extras ?? {})).toBe(expected);
        expect(after - before).toBe(expected ? 1n : 0n);
      }),
      {
        numRuns: 40,
        examples: [
          [pool.slice(0, 4), true],
          [[pool[4]!], false],
        ],
      },
    );
    // Both verdicts were exercised.
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });
});

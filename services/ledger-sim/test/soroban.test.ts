import { Keypair, type Transaction, xdr } from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_ENTRY_TTL, nonceId } from '../src/soroban.ts';
import { account, fund, keys, multisig, NETWORK, post, sim, tx } from './helpers.ts';
import { addr, call, ESCROW, i128, nonceOf, prepare, signEntry } from './soroban-helpers.ts';

/**
 * The escrow contract with a 2-of-3 classic multisig account (master weight 0, medium threshold 2) as `from`,
 * authorizing through ADDRESS credentials; a separate single-key account submits and pays. Every refusal must come
 * back as core reports it (txFAILED + function_trapped for auth) with the reason in extras.diagnostic.
 */
describe('escrow with a 2-of-3 multisig account', () => {
  let app: FastifyInstance;
  let owner: Keypair;
  let payer: Keypair;
  let signers: Keypair[];
  let dest: Keypair;

  beforeEach(async () => {
    app = await sim();
    owner = Keypair.random();
    payer = Keypair.random();
    dest = Keypair.random();
    signers = keys(3);
    await multisig(
      app,
      owner,
      signers.map((kp) => ({ kp, weight: 1 })),
      { master: 0, low: 1, med: 2, high: 2 },
    );
    await fund(app, payer, dest);
  });
  afterEach(async () => {
    await app.close();
  });

  const ledger = () => app.ledger.state.openSequence;
  const escrowed = (id: string) => app.ledger.state.escrow.get(id) ?? 0n;

  /** The deposit transaction with the entry signed by `by` (default: two of the three, ascending). */
  const deposit = (amount: bigint, sign: (e: xdr.SorobanAuthorizationEntry) => xdr.SorobanAuthorizationEntry) =>
    prepare(app, payer, 'deposit', [addr(owner), i128(amount)], (es) => es.map(sign));

  const refusal = async (t: Transaction) => {
    const r = await post(app, t);
    expect(r.status).toBe(400);
    const extras = r.body.extras as {
      result_codes: { transaction: string; operations?: string[] };
      diagnostic?: string;
    };
    return { codes: extras.result_codes, diagnostic: extras.diagnostic };
  };

  it('deposits and releases with two of three signatures, ascending', async () => {
    const before = account(app, owner.publicKey()).balance;
    const payerBefore = account(app, payer.publicKey()).balance;
    const { tx: t, sim: s } = await deposit(500_000_000n, (e) => signEntry(e, ledger() + 10, signers.slice(0, 2)));
    const r = await post(app, t);
    expect(r.status).toBe(200);
    expect(r.body.successful).toBe(true);
    expect(escrowed(owner.publicKey())).toBe(500_000_000n);
    expect(account(app, owner.publicKey()).balance).toBe(before - 500_000_000n);
    // The payer pays the inclusion fee (100) plus the resource fee its declared resources cost.
    expect(account(app, payer.publicKey()).balance).toBe(payerBefore - 100n - BigInt(s.minResourceFee!));
    expect(r.body.fee_charged).toBe(String(100n + BigInt(s.minResourceFee!)));
    expect(app.ledger.state.totalLumens()).toBe(1_000_000_000_000_000_000n);

    const destBefore = account(app, dest.publicKey()).balance;
    const rel = await prepare(app, payer, 'release', [addr(owner), addr(dest), i128(200_000_000n)], (es) =>
      es.map((e) => signEntry(e, ledger() + 10, [signers[2]!, signers[0]!])),
    );
    const r2 = await post(app, rel.tx);
    expect(r2.status).toBe(200);
    expect(escrowed(owner.publicKey())).toBe(300_000_000n);
    expect(account(app, dest.publicKey()).balance).toBe(destBefore + 200_000_000n);
    expect(app.ledger.state.totalLumens()).toBe(1_000_000_000_000_000_000n);
    // The destination sees the release among its transactions.
    const list = await app.inject({ method: 'GET', url: `/accounts/${dest.publicKey()}/transactions` });
    expect(list.json()._embedded.records.map((x: { hash: string }) => x.hash)).toContain(r2.body.hash);
  });

  it('refuses each broken authorization with the reason, charging the fee and keeping the nonce unused', async () => {
    const [a, b, c] = signers as [Keypair, Keypair, Keypair];
    const other = Keypair.random();
    const cases: [string, (e: xdr.SorobanAuthorizationEntry) => xdr.SorobanAuthorizationEntry, RegExp][] = [
      [
        'reversed order',
        (e) => signEntry(e, ledger() + 10, [a, b], { order: 'reverse' }),
        /^auth: G[A-Z2-7]{55}: public keys are not ordered$/,
      ],
      [
        'one signature',
        (e) => signEntry(e, ledger() + 10, [c]),
        /signature weight 1 is lower than the medium threshold 2$/,
      ],
      [
        'a zero-weight key (the master key, weight 0)',
        (e) => signEntry(e, ledger() + 10, [owner, a]),
        new RegExp(`signer ${owner.publicKey()} does not belong to the account$`),
      ],
      [
        'a key that is not a signer',
        (e) => signEntry(e, ledger() + 10, [other, b]),
        new RegExp(`signer ${other.publicKey()} does not belong to the account$`),
      ],
      [
        'a bad signature',
        (e) => signEntry(e, ledger() + 10, [a, b], { payload: Buffer.alloc(32, 7) }),
        /invalid signature by G/,
      ],
      [
        'a wrong network',
        (e) => signEntry(e, ledger() + 10, [a, b], { network: 'Test SDF Network ; September 2015' }),
        /invalid signature by G/,
      ],
      ['an expired entry', (e) => signEntry(e, ledger() - 1, [a, b]), /entry expired at ledger \d+ \(current \d+\)$/],
      [
        'an expiration beyond the network maximum',
        (e) => signEntry(e, ledger() + MAX_ENTRY_TTL, [a, b]),
        /signature expiration ledger \d+ is beyond the maximum \d+$/,
      ],
    ];
    for (const [name, sign, reason] of cases) {
      const seq = account(app, payer.publicKey()).seq;
      const { tx: t, entries } = await deposit(100n, sign);
      const { codes, diagnostic } = await refusal(t);
      expect(codes, name).toEqual({ transaction: 'tx_failed', operations: ['function_trapped'] });
      expect(diagnostic, name).toMatch(reason);
      // The failed transaction is in history, and its resource says why.
      const got = await app.inject({ method: 'GET', url: `/transactions/${Buffer.from(t.hash()).toString('hex')}` });
      expect(got.json().successful, name).toBe(false);
      expect(got.json().diagnostic, name).toBe(diagnostic);
      // Applied and failed: the sequence number is spent, nothing moved, the nonce stays unused.
      expect(account(app, payer.publicKey()).seq, name).toBe(seq + 1n);
      expect(escrowed(owner.publicKey()), name).toBe(0n);
      const nonce = nonceOf(entries[0]!);
      expect(app.ledger.state.nonces.has(nonceId(owner.publicKey(), nonce)), name).toBe(false);
    }
  });

  it('accepts the expiration bounds inclusively: the current ledger and current + MAX_ENTRY_TTL - 1', async () => {
    const [a, b] = signers as [Keypair, Keypair];
    for (const exp of [ledger(), ledger() + MAX_ENTRY_TTL - 1]) {
      const { tx: t } = await deposit(10n, (e) => signEntry(e, exp, [a, b]));
      expect((await post(app, t)).status).toBe(200);
    }
    expect(escrowed(owner.publicKey())).toBe(20n);
  });

  it('refuses address-with-delegates credentials (CAP-71), which the sim does not run', async () => {
    const [a, b] = signers as [Keypair, Keypair];
    const t = await deposit(100n, (e) => {
      const signed = signEntry(e, ledger() + 10, [a, b]);
      const c = signed.credentials as xdr.SorobanCredentialsAddress;
      return new xdr.SorobanAuthorizationEntry({
        credentials: xdr.SorobanCredentials.sorobanCredentialsAddressWithDelegates(
          new xdr.SorobanAddressCredentialsWithDelegates({ addressCredentials: c.address, delegates: [] }),
        ),
        rootInvocation: signed.rootInvocation,
      });
    });
    const { codes, diagnostic } = await refusal(t.tx);
    expect(codes.operations).toEqual(['function_trapped']);
    expect(diagnostic).toMatch(/address-with-delegates credentials \(CAP-71\) are not supported/);
  });

  it('refuses a reused nonce', async () => {
    const [a, b] = signers as [Keypair, Keypair];
    const first = await deposit(100n, (e) => signEntry(e, ledger() + 10, [a, b]));
    expect((await post(app, first.tx)).status).toBe(200);
    // The same signed entry (same nonce) in a new transaction: a replay.
    const replay = await prepare(app, payer, 'deposit', [addr(owner), i128(100n)], () => first.entries);
    const { codes, diagnostic } = await refusal(replay.tx);
    expect(codes.operations).toEqual(['function_trapped']);
    expect(diagnostic).toMatch(/nonce \d+ already used$/);
    expect(escrowed(owner.publicKey())).toBe(100n);
  });

  it('refuses an entry whose invocation does not match the call', async () => {
    const [a, b] = signers as [Keypair, Keypair];
    // Signed for 100, submitted calling deposit(owner, 200).
    const signed = await deposit(100n, (e) => signEntry(e, ledger() + 10, [a, b]));
    const t = await prepare(app, payer, 'deposit', [addr(owner), i128(200n)], () => signed.entries);
    const { codes, diagnostic } = await refusal(t.tx);
    expect(codes.operations).toEqual(['function_trapped']);
    expect(diagnostic).toBe(
      `auth: no authorization entry for ${owner.publicKey()} matches escrow.deposit(${owner.publicKey()}, 200)`,
    );
  });

  it('refuses a release beyond the escrowed balance, and keeps ESCROW stable per network', async () => {
    const [a, b] = signers as [Keypair, Keypair];
    const d = await deposit(100n, (e) => signEntry(e, ledger() + 10, [a, b]));
    expect((await post(app, d.tx)).status).toBe(200);
    // Simulation already sees the trap.
    const res = await app.inject({
      method: 'POST',
      url: '/rpc',
      payload: {
        jsonrpc: '2.0',
        id: 1,
        method: 'simulateTransaction',
        params: {
          transaction: tx(app, payer.publicKey(), [call('release', [addr(owner), addr(dest), i128(101n)])]).toXdr(),
        },
      },
    });
    expect(res.json().result.error).toBe(
      `escrow: release: ${owner.publicKey()} has 100 stroops in escrow, below the 101 to release`,
    );
    expect(ESCROW).toMatch(/^C[A-Z2-7]{55}$/);
    expect(NETWORK).toBe('Standalone Network ; February 2017');
  });
});

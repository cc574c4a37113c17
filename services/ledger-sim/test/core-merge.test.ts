import { Asset, type Keypair, Operation, type xdr } from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BASE_RESERVE, rootKeypair, TOTAL_COINS } from '../src/state.ts';
import { account, keys, NETWORK, post, signed, sim, tx, verdict } from './helpers.ts';

/**
 * stellar-core src/transactions/test/MergeTests.cpp, TEST_CASE "merge", ported section by section at the current
 * protocol (the for_versions_from branch of each section). Setup as in core: A with 2 * minBalance, B and the
 * gateway with minBalance, where minBalance = getLastMinBalance(5) + 20 * txfee; then a ledger closes so that
 * they can be merged (each synchronous submission here is answered once its ledger has closed, as on the
 * network). Sections that need offers or liabilities ("account has offer", "destination with native buying
 * liabilities") and the tx-set fee ordering of "success, invalidates dependent tx" are not ported: see the
 * fidelity table in the README.
 */

const FEE = 100n;
/** core getLastMinBalance(n): (2 + n) base reserves. */
const minBal = (n: number): bigint => BigInt(2 + n) * BASE_RESERVE;
const MIN_BALANCE = minBal(5) + 20n * FEE;

function amountOf(stroops: bigint): string {
  return `${stroops / 10_000_000n}.${(stroops % 10_000_000n).toString().padStart(7, '0')}`;
}

describe('MergeTests.cpp TEST_CASE "merge"', () => {
  let app: FastifyInstance;
  let a1: Keypair;
  let b1: Keypair;
  let gateway: Keypair;
  const root = rootKeypair(NETWORK);

  /** root.create(name, balance): a createAccount from the network root. */
  async function create(kp: Keypair, stroops: bigint): Promise<void> {
    const t = tx(app, root.publicKey(), [
      Operation.createAccount({ destination: kp.publicKey(), startingBalance: amountOf(stroops) }),
    ]);
    expect(await verdict(app, signed(t, root))).toBe('ok');
  }
  const merge = (dest: Keypair | string, source?: Keypair): xdr.Operation =>
    Operation.accountMerge({
      destination: typeof dest === 'string' ? dest : dest.publicKey(),
      ...(source ? { source: source.publicKey() } : {}),
    });
  const bal = (kp: Keypair): bigint => account(app, kp.publicKey()).balance;
  const exists = (kp: Keypair | string): boolean =>
    app.ledger.state.accounts.has(typeof kp === 'string' ? kp : kp.publicKey());
  const run = (source: Keypair, ops: xdr.Operation[], ...extra: Keypair[]): Promise<string> =>
    verdict(app, signed(tx(app, source.publicKey(), ops), source, ...extra));

  beforeEach(async () => {
    app = await sim();
    [a1, b1, gateway] = keys(3) as [Keypair, Keypair, Keypair];
    await create(a1, 2n * MIN_BALANCE);
    await create(b1, MIN_BALANCE);
    await create(gateway, MIN_BALANCE);
  });
  afterEach(async () => {
    expect(app.ledger.state.totalLumens()).toBe(TOTAL_COINS);
    await app.close();
  });

  it('SECTION "merge into self": ACCOUNT_MERGE_MALFORMED', async () => {
    expect(await run(a1, [merge(a1)])).toBe('tx_failed:op_malformed');
  });

  it('SECTION "merge into non existent account": ACCOUNT_MERGE_NO_ACCOUNT', async () => {
    expect(await run(a1, [merge(keys(1)[0]!)])).toBe('tx_failed:op_no_account');
  });

  /** A merged into B, A created again by B (its minimum balance), then `last`: the "create" sections' operations. */
  const mergeRecreate = (last: xdr.Operation) => [
    merge(b1, a1),
    Operation.createAccount({
      destination: a1.publicKey(),
      startingBalance: amountOf(minBal(1)),
      source: b1.publicKey(),
    }),
    last,
  ];

  it('SECTION "with create" (from protocol 10): an account just created cannot be merged, ACCOUNT_MERGE_SEQNUM_TOO_FAR', async () => {
    const a1Balance = bal(a1);
    const b1Balance = bal(b1);
    const ops = mergeRecreate(merge(b1, a1));
    expect(await run(a1, ops, b1)).toBe('tx_failed:op_success,op_success,op_seq_num_too_far');
    // The operations roll back; the fee (3 operations) and the sequence number are spent.
    expect(bal(a1)).toBe(a1Balance - 3n * FEE);
    expect(bal(b1)).toBe(b1Balance);
  });

  it('SECTION "merge, create, merge back": A is re-created with a sequence number from the current ledger', async () => {
    const a1Balance = bal(a1);
    const b1Balance = bal(b1);
    const ops = mergeRecreate(merge(a1, b1));
    const r = await post(app, signed(tx(app, a1.publicKey(), ops), a1, b1));
    expect(r.status).toBe(200);
    expect(bal(a1)).toBe(a1Balance + b1Balance - 3n * FEE);
    expect(exists(b1)).toBe(false);
    expect(account(app, a1.publicKey()).seq).toBe(BigInt(r.body.ledger as number) << 32n);
  });

  it('SECTION "merge, create, merge into the same" (from protocol 8): opNO_ACCOUNT for the merged source', async () => {
    const a1Balance = bal(a1);
    const b1Balance = bal(b1);
    const seq = account(app, a1.publicKey()).seq;
    const ops = [
      merge(b1),
      Operation.createAccount({ destination: b1.publicKey(), startingBalance: amountOf(minBal(1)) }),
      merge(b1),
    ];
    expect(await run(a1, ops)).toBe('tx_failed:op_success,op_no_source_account,op_no_source_account');
    expect(bal(a1)).toBe(a1Balance - 3n * FEE);
    expect(bal(b1)).toBe(b1Balance);
    expect(account(app, a1.publicKey()).seq).toBe(seq + 1n);
  });

  it('SECTION "merge, create different, merge into the same" (from protocol 8)', async () => {
    const c1 = keys(1)[0]!;
    const a1Balance = bal(a1);
    const b1Balance = bal(b1);
    const ops = [
      merge(b1),
      Operation.createAccount({ destination: c1.publicKey(), startingBalance: amountOf(minBal(1)) }),
      merge(b1),
    ];
    expect(await run(a1, ops)).toBe('tx_failed:op_success,op_no_source_account,op_no_source_account');
    expect(exists(c1)).toBe(false);
    expect(bal(a1)).toBe(a1Balance - 3n * FEE);
    expect(bal(b1)).toBe(b1Balance);
  });

  it('SECTION "merge account twice" (from protocol 8): the second merge has no source account', async () => {
    const a1Balance = bal(a1);
    const b1Balance = bal(b1);
    expect(await run(a1, [merge(b1), merge(b1)])).toBe('tx_failed:op_success,op_no_source_account');
    expect(bal(b1)).toBe(b1Balance);
    expect(bal(a1)).toBe(a1Balance - 2n * FEE);
  });

  it('SECTION "merge account twice to non existing account": ACCOUNT_MERGE_NO_ACCOUNT twice', async () => {
    const missing = keys(1)[0]!;
    const a1Balance = bal(a1);
    expect(await run(a1, [merge(missing), merge(missing)])).toBe('tx_failed:op_no_account,op_no_account');
    expect(bal(a1)).toBe(a1Balance - 2n * FEE);
    expect(exists(a1)).toBe(true);
  });

  it('SECTION "create, merge, create" (from protocol 8): the merged source cannot create', async () => {
    const [c, d] = keys(2) as [Keypair, Keypair];
    const a1Balance = bal(a1);
    const ops = [
      Operation.createAccount({ destination: c.publicKey(), startingBalance: amountOf(minBal(0)) }),
      merge(c),
      Operation.createAccount({ destination: d.publicKey(), startingBalance: amountOf(minBal(0)) }),
    ];
    expect(await run(a1, ops)).toBe('tx_failed:op_success,op_success,op_no_source_account');
    expect(exists(a1)).toBe(true);
    expect(exists(c)).toBe(false);
    expect(exists(d)).toBe(false);
    expect(bal(a1)).toBe(a1Balance - 3n * FEE);
  });

  it('SECTION "Account has static auth flag set": ACCOUNT_MERGE_IMMUTABLE_SET', async () => {
    expect(await run(a1, [Operation.setOptions({ setFlags: 4 as never })])).toBe('ok');
    expect(await run(a1, [merge(b1)])).toBe('tx_failed:op_immutable_set');
  });

  describe('SECTION "With sub entries"', () => {
    it('SECTION "with trustline" > SECTION "account has trust line": ACCOUNT_MERGE_HAS_SUB_ENTRIES', async () => {
      const usd = new Asset('USD', gateway.publicKey());
      expect(await run(a1, [Operation.changeTrust({ asset: usd, limit: '100' })])).toBe('ok');
      expect(await run(a1, [merge(b1)])).toBe('tx_failed:op_has_sub_entries');
    });

    it('SECTION "account has data": ACCOUNT_MERGE_HAS_SUB_ENTRIES', async () => {
      const value = Buffer.from(Array.from({ length: 20 }, (_, n) => n));
      expect(await run(a1, [Operation.manageData({ name: 'test', value })])).toBe('ok');
      expect(await run(a1, [merge(b1)])).toBe('tx_failed:op_has_sub_entries');
    });

    it('SECTION "account has signer": signers do not stop a merge', async () => {
      expect(
        await run(a1, [Operation.setOptions({ signer: { ed25519PublicKey: gateway.publicKey(), weight: 5 } })]),
      ).toBe('ok');
      expect(await run(a1, [merge(b1)])).toBe('ok');
      expect(exists(a1)).toBe(false);
    });
  });

  it('SECTION "success" > SECTION "success - basic"', async () => {
    const total = bal(a1) + bal(b1);
    expect(await run(a1, [merge(b1)])).toBe('ok');
    expect(exists(a1)).toBe(false);
    expect(bal(b1)).toBe(total - FEE);
    expect((await app.inject({ url: `/accounts/${a1.publicKey()}` })).statusCode).toBe(404);
  });

  describe('the source balance against the reserve and the fee (txINSUFFICIENT_BALANCE; from protocol 9 the fee may come out of the balance above the reserve)', () => {
    it.each([
      ['account has only base reserve', 0n, 'tx_insufficient_balance'],
      ['account has only base reserve + one stroop', 1n, 'tx_insufficient_balance'],
      ['account has only base reserve + one operation fee - one stroop', FEE - 1n, 'tx_insufficient_balance'],
      ['account has only base reserve + one operation fee', FEE, 'ok'],
      ['account has only base reserve + one operation fee + one stroop', FEE + 1n, 'ok'],
      ['account has only base reserve + two operation fees - one stroop', 2n * FEE - 1n, 'ok'],
      ['account has only base reserve + two operation fees', 2n * FEE, 'ok'],
    ])('SECTION "%s"', async (_name, extra, expected) => {
      const mergeFrom = keys(1)[0]!;
      await create(mergeFrom, minBal(0) + extra);
      expect(await run(mergeFrom, [merge(root.publicKey())])).toBe(expected);
      expect(exists(mergeFrom)).toBe(expected !== 'ok');
    });
  });

  describe('SECTION "merge too far" (from protocol 10): the source sequence against the applying ledger start', () => {
    // The bump applies in the open ledger O and is answered once O has closed; the merge then applies in O + 1,
    // whose starting sequence is (O + 1) << 32.
    const mergeFromRoot = async (bumpTo: (applyingLedgerStart: bigint) => bigint): Promise<string> => {
      const start = BigInt(app.ledger.state.openSequence + 1) << 32n;
      expect(await run(a1, [Operation.bumpSequence({ bumpTo: bumpTo(start).toString() })])).toBe('ok');
      expect(account(app, a1.publicKey()).seq).toBe(bumpTo(start));
      return verdict(app, signed(tx(app, root.publicKey(), [merge(b1, a1)]), root, a1));
    };

    it('SECTION "at max = success"', async () => {
      expect(await mergeFromRoot((start) => start - 1n)).toBe('ok');
      expect(exists(a1)).toBe(false);
    });

    it('SECTION "passed max = failure": ACCOUNT_MERGE_SEQNUM_TOO_FAR', async () => {
      expect(await mergeFromRoot((start) => start)).toBe('tx_failed:op_seq_num_too_far');
      expect(exists(a1)).toBe(true);
    });
  });
});

import {
  Account,
  type FeeBumpTransaction,
  Keypair,
  Operation,
  type Transaction,
  TransactionBuilder,
  type xdr,
} from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, expect } from 'vitest';
import { build, type LedgerSimOptions, STANDALONE_PASSPHRASE } from '../src/app.ts';
import { TOTAL_COINS } from '../src/state.ts';

export const NETWORK = STANDALONE_PASSPHRASE;

/** A simulator app whose ledger closes only when the test says so. */
export function sim(opts: LedgerSimOptions = {}): Promise<FastifyInstance> {
  return build({ closeMs: 0, ...opts });
}

/** What `simPerTest` hands the tests of a `describe`: this test's simulator and the clock it reads (ms). */
export interface SimPerTest {
  app: FastifyInstance;
  clock: number;
}

/**
 * A fresh simulator for every test of the calling `describe`, on a clock the test moves (`ctx.clock += ms`) from
 * 2026-01-01. After each test it checks that lumens were neither made nor lost (balances plus the fee pool stay the
 * genesis total), then closes it.
 */
export function simPerTest(): SimPerTest {
  const ctx = { clock: 0 } as SimPerTest;
  beforeEach(async () => {
    ctx.clock = Date.UTC(2026, 0, 1);
    ctx.app = await sim({ now: () => ctx.clock });
  });
  afterEach(async () => {
    expect(ctx.app.ledger.state.totalLumens()).toBe(TOTAL_COINS);
    await ctx.app.close();
  });
  return ctx;
}

export interface Posted {
  status: number;
  body: Record<string, unknown> & {
    extras?: {
      result_codes?: { transaction: string; inner_transaction?: string; operations?: string[] };
      result_xdr?: string;
    };
  };
}

/** POST /transactions with the form field tx, as the SDK sends it. */
export async function post(app: FastifyInstance, tx: Transaction | FeeBumpTransaction | string): Promise<Posted> {
  const xdrB64 = typeof tx === 'string' ? tx : tx.toEnvelope().toXdr('base64');
  const res = await app.inject({
    method: 'POST',
    url: '/transactions',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `tx=${encodeURIComponent(xdrB64)}`,
  });
  return { status: res.statusCode, body: res.json() };
}

/** result_codes of a refused submission, or 'ok' when it was applied successfully. */
export async function verdict(app: FastifyInstance, tx: Transaction | FeeBumpTransaction): Promise<string> {
  const r = await post(app, tx);
  if (r.status === 200) return 'ok';
  const c = r.body.extras?.result_codes;
  if (c === undefined) return `http ${r.status}`;
  const inner = c.inner_transaction === undefined ? '' : `/${c.inner_transaction}`;
  return c.operations === undefined ? `${c.transaction}${inner}` : `${c.transaction}${inner}:${c.operations.join(',')}`;
}

/** Creates and funds `kp` with friendbot (10000 XLM). */
export async function fund(app: FastifyInstance, ...kps: Keypair[]): Promise<void> {
  for (const kp of kps) {
    const res = await app.inject({ method: 'GET', url: `/friendbot?addr=${kp.publicKey()}` });
    if (res.statusCode !== 200) throw new Error(`friendbot: ${res.body}`);
  }
}

export function account(app: FastifyInstance, id: string) {
  const a = app.ledger.state.accounts.get(id);
  if (a === undefined) throw new Error(`no account ${id}`);
  return a;
}

export interface TxOptions {
  fee?: number;
  seq?: bigint;
  network?: string;
  timeout?: number;
  timebounds?: { minTime: number; maxTime: number };
  ledgerbounds?: { minLedger: number; maxLedger: number };
  minAccountSequence?: string;
  minAccountSequenceAge?: bigint;
  minAccountSequenceLedgerGap?: number;
  extraSigners?: string[];
}

/** An unsigned transaction from `source` with `ops`, at the account's next sequence number unless `seq` is given. */
export function tx(app: FastifyInstance, source: string, ops: xdr.Operation[], o: TxOptions = {}): Transaction {
  const seq = o.seq ?? account(app, source).seq;
  const b = new TransactionBuilder(new Account(source, seq.toString()), {
    fee: String(o.fee ?? 100),
    networkPassphrase: o.network ?? NETWORK,
    ...(o.timebounds ? { timebounds: o.timebounds } : {}),
    ...(o.ledgerbounds ? { ledgerbounds: o.ledgerbounds } : {}),
    ...(o.minAccountSequence ? { minAccountSequence: o.minAccountSequence } : {}),
    ...(o.minAccountSequenceAge !== undefined ? { minAccountSequenceAge: o.minAccountSequenceAge } : {}),
    ...(o.minAccountSequenceLedgerGap !== undefined
      ? { minAccountSequenceLedgerGap: o.minAccountSequenceLedgerGap }
      : {}),
    ...(o.extraSigners ? { extraSigners: o.extraSigners } : {}),
  });
  for (const op of ops) b.addOperation(op);
  if (!o.timebounds) b.setTimeout(o.timeout ?? 300);
  return b.build();
}

/** Signs in the order given (the order stellar-core's greedy checker walks). */
export function signed<T extends Transaction | FeeBumpTransaction>(t: T, ...kps: Keypair[]): T {
  for (const kp of kps) t.sign(kp);
  return t;
}

/**
 * Funds `owner` and turns it into a multisig account: `signers` added with `weights`, the master key's weight and
 * the thresholds set, all in one setOptions transaction signed by the master key.
 */
export async function multisig(
  app: FastifyInstance,
  owner: Keypair,
  signers: { kp: Keypair; weight: number }[],
  t: { master: number; low: number; med: number; high: number },
): Promise<void> {
  await fund(app, owner);
  const ops = signers.map((s) =>
    Operation.setOptions({ signer: { ed25519PublicKey: s.kp.publicKey(), weight: s.weight } }),
  );
  ops.push(
    Operation.setOptions({ masterWeight: t.master, lowThreshold: t.low, medThreshold: t.med, highThreshold: t.high }),
  );
  const r = await post(app, signed(tx(app, owner.publicKey(), ops), owner));
  if (r.status !== 200) throw new Error(`multisig setup: ${JSON.stringify(r.body)}`);
}

export function keys(n: number): Keypair[] {
  return Array.from({ length: n }, () => Keypair.random());
}

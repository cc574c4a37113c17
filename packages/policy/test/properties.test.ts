import type {
  AssetRef,
  AuthEntrySummary,
  InvocationSummary,
  OperationSummary,
  TransactionSummary,
} from '@cosigner/stellar/types';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatAmount } from '../src/amount.ts';
import { evaluate, evaluateAuthEntries, REASON_CODES } from '../src/evaluate.ts';
import { OPERATION_TYPES, parsePolicy } from '../src/schema.ts';
import { NOW, payment, TESTNET, tx } from './builders.ts';

const OPS = Keypair.random().publicKey();
const ALICE = Keypair.random().publicKey();
const BOB = Keypair.random().publicKey();
const MALLORY = Keypair.random().publicKey();
const STRANGER = Keypair.random().publicKey();
const ISSUER = Keypair.random().publicKey();
const TOKEN = StrKey.encodeContract(Buffer.alloc(32, 1));
const ESCROW = StrKey.encodeContract(Buffer.alloc(32, 2));

/** A policy that uses every rule family, so the properties exercise all of them. */
const policy = parsePolicy({
  network: TESTNET,
  accounts: [OPS],
  operations: [
    'payment',
    'pathPaymentStrictSend',
    'createAccount',
    'manageSellOffer',
    'setOptions',
    'invokeHostFunction',
    'manageData',
  ],
  assets: [
    { asset: 'native', maxPerTx: '1000', velocity: [{ window: '24h', max: '5000' }] },
    { asset: `USDC:${ISSUER}`, maxPerTx: '300', velocity: [{ window: '1h', max: '900' }] },
    { asset: TOKEN, maxPerTx: '300', velocity: [{ window: '1h', max: '900' }] },
  ],
  destinations: { deny: [MALLORY] },
  contracts: [
    { id: TOKEN, functions: [{ name: 'transfer', token: { asset: TOKEN }, maxAmount: '250' }] },
    { id: ESCROW, functions: [{ name: 'release' }] },
  ],
  fees: { maxFee: '100000', maxFeePerOp: '10000' },
  memo: { requiredForDestinations: [BOB] },
  signerChanges: { accounts: [OPS], addKeys: [ALICE] },
  manualApproval: {
    amountAbove: [{ asset: 'native', amount: '800' }],
    unknownDestination: true,
    knownDestinations: [ALICE],
  },
});

const address = fc.constantFrom(OPS, ALICE, BOB, MALLORY, STRANGER);
const asset: fc.Arbitrary<AssetRef> = fc.constantFrom<AssetRef>(
  { type: 'native' },
  { type: 'credit', code: 'USDC', issuer: ISSUER },
  { type: 'credit', code: 'EURC', issuer: ISSUER },
);
/** Amounts as describeTransaction prints them: up to 7 decimals. */
const amount = fc.bigInt({ min: 1n, max: 20_000_000_000n }).map((s) => formatAmount(s));

/** Invocation trees to a bounded depth (the describer renders XDR, itself depth-limited). */
const invocationAt = (depth: number): fc.Arbitrary<InvocationSummary> =>
  fc.record({
    kind: fc.constantFrom<InvocationSummary['kind']>('contract', 'contract', 'contract', 'createContract', 'other'),
    contractId: fc.constantFrom(TOKEN, ESCROW, StrKey.encodeContract(Buffer.alloc(32, 9))),
    functionName: fc.constantFrom('transfer', 'release', 'mint'),
    args: fc.tuple(address, address, fc.bigInt({ min: 0n, max: 5_000_000_000n }).map(String)),
    subInvocations: depth === 0 ? fc.constant([]) : fc.array(invocationAt(depth - 1), { maxLength: 2 }),
  });
const invocation = invocationAt(2);

const authEntry: fc.Arbitrary<AuthEntrySummary> = fc.record({
  credentials: fc.constantFrom<AuthEntrySummary['credentials']>('address', 'addressV2', 'sourceAccount', 'other'),
  address,
  nonce: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }).map(String),
  signatureExpirationLedger: fc.integer({ min: 0, max: 3000 }),
  invocation,
});

type Op = Omit<OperationSummary, 'index'>;
const operation: fc.Arbitrary<Op> = fc
  .oneof(
    fc.record({
      type: fc.constant('payment'),
      source: fc.constantFrom(OPS, OPS, STRANGER),
      destination: address,
      asset,
      amount,
    }),
    fc.record({
      type: fc.constant('pathPaymentStrictSend'),
      source: fc.constant(OPS),
      destination: address,
      sendAsset: asset,
      sendAmount: amount,
      destAsset: asset,
      destMin: amount,
      path: fc.constant<AssetRef[]>([]),
    }),
    fc.record({
      type: fc.constant('createAccount'),
      source: fc.constant(OPS),
      destination: address,
      startingBalance: amount,
    }),
    fc.record({
      type: fc.constant('manageSellOffer'),
      source: fc.constant(OPS),
      selling: asset,
      buying: asset,
      amount,
      price: fc.constant('1.5'),
    }),
    fc.record({
      type: fc.constant('setOptions'),
      source: address,
      setOptions: fc.record(
        {
          masterWeight: fc.integer({ min: 0, max: 255 }),
          medThreshold: fc.integer({ min: 0, max: 255 }),
          signer: fc.record({ key: address, weight: fc.integer({ min: 0, max: 255 }) }),
        },
        { requiredKeys: [] },
      ),
    }),
    fc.record({
      type: fc.constant('invokeHostFunction'),
      source: fc.constant(OPS),
      invocation,
      authEntries: fc.array(authEntry, { maxLength: 2 }),
    }),
    fc.record({ type: fc.constantFrom(...OPERATION_TYPES, 'unknown', 'futureOperation'), source: address }),
  )
  .map((o) => ({ explicitSource: false, thresholdLevel: 'medium' as const, raw: {}, ...o }));

const summary: fc.Arbitrary<TransactionSummary> = fc
  .record({
    source: fc.constantFrom(OPS, OPS, OPS, STRANGER),
    ops: fc.array(operation, { minLength: 1, maxLength: 6 }),
    network: fc.constantFrom(TESTNET, TESTNET, 'Public Global Stellar Network ; September 2015'),
    feePerOp: fc.integer({ min: 100, max: 20_000 }),
    memo: fc.constantFrom<TransactionSummary['memo']>({ type: 'none' }, { type: 'id', value: '7' }),
    maxTime: fc.constantFrom(0, NOW - 1, NOW + 60, NOW + 299, NOW + 10_000),
    feeBump: fc.boolean(),
  })
  .map((r) => {
    const inner = tx({
      source: r.source,
      network: r.network,
      ops: r.ops,
      fee: String(r.feePerOp * r.ops.length),
      memo: r.memo,
      timeBounds: { minTime: '0', maxTime: String(r.maxTime) },
    });
    if (!r.feeBump) return inner;
    return {
      ...inner,
      kind: 'feeBump' as const,
      fee: String(r.feePerOp * (r.ops.length + 1)),
      feeSource: STRANGER,
      inner,
    };
  });

const noSpend = () => 0n;

describe('policy properties', () => {
  it('evaluation never throws and never fails internally on any well-typed summary', () => {
    fc.assert(
      fc.property(summary, fc.integer({ min: 0, max: 3000 }), (s, ledger) => {
        const d = evaluate(policy, { summary: s, now: NOW, spent: noSpend, currentLedger: ledger });
        expect(['approve', 'reject', 'hold']).toContain(d.outcome);
        for (const r of d.reasons) expect(Object.keys(REASON_CODES)).toContain(r.code);
        expect(d.reasons.map((r) => r.code)).not.toContain('EVALUATION_FAILED');
        // Reject beats hold beats approve.
        const kinds = new Set(d.reasons.map((r) => REASON_CODES[r.code as keyof typeof REASON_CODES]));
        expect(d.outcome).toBe(kinds.has('reject') ? 'reject' : kinds.has('hold') ? 'hold' : 'approve');
      }),
      { numRuns: 400 },
    );
  });

  it('evaluateAuthEntries never throws and never fails internally', () => {
    fc.assert(
      fc.property(fc.array(authEntry, { maxLength: 4 }), fc.integer({ min: 0, max: 3000 }), (entries, ledger) => {
        const d = evaluateAuthEntries(policy, { entries, now: NOW, currentLedger: ledger, spent: noSpend });
        expect(d.reasons.map((r) => r.code)).not.toContain('EVALUATION_FAILED');
        if (d.outcome === 'approve') expect(entries.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  it('is deterministic and leaves the summary untouched', () => {
    fc.assert(
      fc.property(summary, (s) => {
        const before = JSON.stringify(s);
        const a = evaluate(policy, { summary: s, now: NOW, spent: noSpend });
        const b = evaluate(policy, { summary: structuredClone(s), now: NOW, spent: noSpend });
        expect(b).toEqual(a);
        expect(JSON.stringify(s)).toBe(before);
      }),
      { numRuns: 100 },
    );
  });

  it('adding an operation never turns a reject into an approve', () => {
    fc.assert(
      fc.property(summary, operation, fc.nat(), (s, extra, at) => {
        const before = evaluate(policy, { summary: s, now: NOW, spent: noSpend });
        fc.pre(before.outcome === 'reject');
        const inner = s.inner ?? s;
        const ops = [...inner.operations];
        ops.splice(at % (ops.length + 1), 0, { ...extra, index: 0 });
        const reindexed = ops.map((o, index) => ({ ...o, index }));
        // Builders pay the same fee per operation, so the fee grows with the operation count (ceil).
        const scale = (fee: string, n: number) => String((BigInt(fee) * BigInt(n + 1) + BigInt(n) - 1n) / BigInt(n));
        const grown: TransactionSummary = {
          ...inner,
          operations: reindexed,
          fee: scale(inner.fee, inner.operations.length),
        };
        const candidate: TransactionSummary =
          s.kind === 'feeBump'
            ? {
                ...grown,
                kind: 'feeBump',
                fee: scale(s.fee, inner.operations.length + 1),
                feeSource: s.feeSource!,
                inner: grown,
              }
            : grown;
        const after = evaluate(policy, { summary: candidate, now: NOW, spent: noSpend });
        expect(after.outcome).toBe('reject');
      }),
      { numRuns: 400 },
    );
  });

  it('splitting an over-velocity amount into many small payments still rejects once the window sum is exceeded', () => {
    const VELOCITY = 5_000n * 10_000_000n;
    fc.assert(
      fc.property(
        fc.bigInt({ min: VELOCITY + 1n, max: 3n * VELOCITY }),
        fc.integer({ min: 2, max: 60 }),
        fc.integer({ min: 1, max: 5 }),
        (total, parts, perTx) => {
          // `parts` payments (the last takes the remainder) grouped `perTx` to a transaction.
          const each = total / BigInt(parts);
          const amounts = Array.from({ length: parts }, (_, i) =>
            i === parts - 1 ? total - each * BigInt(parts - 1) : each,
          );
          let signed = 0n; // the node's ledger for this window
          let rejected = 0;
          for (let i = 0; i < amounts.length; i += perTx) {
            const chunk = amounts.slice(i, i + perTx);
            const s = tx({ source: OPS, ops: chunk.map((a) => payment(ALICE, formatAmount(a))) });
            const d = evaluate(policy, { summary: s, now: NOW, spent: (key) => (key === 'native' ? signed : 0n) });
            if (d.outcome === 'reject') {
              rejected += 1;
              continue;
            }
            // approve or hold: a held proposal that a person approves is signed and counted the same way.
            signed += d.spend.find((x) => x.assetKey === 'native')?.amount ?? 0n;
          }
          expect(signed).toBeLessThanOrEqual(VELOCITY);
          expect(rejected).toBeGreaterThan(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});

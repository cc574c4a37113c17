import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AuthEntrySummary, InvocationSummary, TransactionSummary } from '@cosigner/stellar/types';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { assetKey, baseAccount, isDestination, isPolicyAssetKey, isSignerKey } from '../src/address.ts';
import { formatAmount, parseAmount, parseInteger, parseRatio } from '../src/amount.ts';
import { type Decision, evaluate, evaluateAuthEntries, REASON_CODES } from '../src/evaluate.ts';
import { parsePolicy } from '../src/schema.ts';
import { addressEntry, call, credit, feeBump, invoke, NOW, native, op, payment, TESTNET, tx } from './builders.ts';

const OPS = Keypair.random().publicKey();
const ALICE = Keypair.random().publicKey();
const ISSUER = Keypair.random().publicKey();
const TOKEN = StrKey.encodeContract(Buffer.alloc(32, 3));
const TOKEN18 = StrKey.encodeContract(Buffer.alloc(32, 4));
const TOKEN2 = StrKey.encodeContract(Buffer.alloc(32, 5));

const doc = {
  network: TESTNET,
  accounts: [OPS],
  operations: [
    'payment',
    'invokeHostFunction',
    'liquidityPoolDeposit',
    'accountMerge',
    'createClaimableBalance',
    'pathPaymentStrictReceive',
    'manageBuyOffer',
    'manageSellOffer',
    'setOptions',
  ],
  assets: [
    { asset: 'native', velocity: [{ window: '24h', max: '100' }] },
    { asset: TOKEN, velocity: [{ window: '24h', max: '100' }] },
    { asset: TOKEN18, velocity: [{ window: '24h', max: '100' }] },
    { asset: TOKEN2, velocity: [{ window: '24h', max: '100' }] },
  ],
  contracts: [
    {
      id: TOKEN,
      functions: [
        { name: 'transfer', token: { asset: TOKEN }, args: [{ index: 3, oneOf: [7, 'x', true] }] },
        { name: 'pay', token: { asset: TOKEN, from: 1, to: 0, amount: 2 } },
      ],
    },
    { id: TOKEN18, functions: [{ name: 'transfer', token: { asset: TOKEN18, decimals: 18 } }] },
    { id: TOKEN2, functions: [{ name: 'transfer', token: { asset: TOKEN2, decimals: 2 } }] },
  ],
};
const policy = parsePolicy(doc);
const zero = () => 0n;

function run(summary: TransactionSummary, p = policy, extra: { currentLedger?: number } = {}): Decision {
  return evaluate(p, { summary, now: NOW, spent: zero, ...extra });
}
const codes = (d: Decision) => d.reasons.map((r) => r.code);
const ours = (ops: ReturnType<typeof op>[]) => tx({ source: OPS, ops });

describe('evaluate: reasons carry where they come from', () => {
  it('names the operation index and the field', () => {
    const d = run(ours([payment(ALICE, '1'), payment(ALICE, '1', credit('EURC', ISSUER)), op({ type: 'clawback' })]));
    expect(d.outcome).toBe('reject');
    expect(d.reasons).toContainEqual(
      expect.objectContaining({ code: 'OP_NOT_ALLOWED', opIndex: 2, field: 'operations[2].type' }),
    );
    expect(d.reasons).toContainEqual(expect.objectContaining({ code: 'ASSET_NOT_ALLOWED', field: 'assets' }));
    expect(d.spend).toEqual([
      { assetKey: `EURC:${ISSUER}`, amount: 10_000_000n },
      { assetKey: 'native', amount: 10_000_000n },
    ]);
  });

  it('collects every reason, not only the first', () => {
    const s = tx({
      source: OPS,
      network: 'other',
      ops: [op({ type: 'unknown' }), op({ type: 'clawback' })],
      timeBounds: null,
    });
    expect(codes(run(s)).sort()).toEqual([
      'OP_NOT_ALLOWED',
      'UNBOUNDED_VALIDITY',
      'UNKNOWN_OPERATION',
      'WRONG_NETWORK',
    ]);
  });
});

describe('evaluate: malformed summaries are rejected, never thrown', () => {
  const cases: [string, TransactionSummary, string][] = [
    ['payment without asset', ours([op({ type: 'payment', destination: ALICE, amount: '1' })]), 'MALFORMED_SUMMARY'],
    ['payment without destination', ours([op({ type: 'payment', asset: native, amount: '1' })]), 'MALFORMED_SUMMARY'],
    ['payment without amount', ours([op({ type: 'payment', asset: native, destination: ALICE })]), 'AMOUNT_INVALID'],
    [
      'path payment without send asset',
      ours([op({ type: 'pathPaymentStrictReceive', destination: ALICE, sendMax: '1' })]),
      'MALFORMED_SUMMARY',
    ],
    [
      'claimable balance without asset',
      ours([op({ type: 'createClaimableBalance', amount: '1' })]),
      'MALFORMED_SUMMARY',
    ],
    [
      'claimable balance without claimants',
      ours([op({ type: 'createClaimableBalance', asset: native, amount: '1' })]),
      'MALFORMED_SUMMARY',
    ],
    [
      'claimant that is not an object',
      ours([op({ type: 'createClaimableBalance', asset: native, amount: '1', raw: { claimants: [null] } })]),
      'MALFORMED_SUMMARY',
    ],
    ['sell offer without selling', ours([op({ type: 'manageSellOffer', amount: '1' })]), 'MALFORMED_SUMMARY'],
    ['buy offer without selling', ours([op({ type: 'manageBuyOffer', amount: '1', price: '1' })]), 'MALFORMED_SUMMARY'],
    [
      'buy offer with a bad price',
      ours([op({ type: 'manageBuyOffer', selling: native, amount: '1', price: '1/2' })]),
      'AMOUNT_INVALID',
    ],
    ['setOptions without its fields', ours([op({ type: 'setOptions' })]), 'MALFORMED_SUMMARY'],
    ['invokeHostFunction without invocation', ours([op({ type: 'invokeHostFunction' })]), 'MALFORMED_SUMMARY'],
    ['fee that is not a string', { ...ours([payment(ALICE, '1')]), fee: 100 as unknown as string }, 'FEE_INVALID'],
    ['resource fee not a number', { ...ours([payment(ALICE, '1')]), sorobanResourceFee: 'x' }, 'FEE_INVALID'],
    ['time bounds not digits', ours([payment(ALICE, '1')]), 'MALFORMED_SUMMARY'],
  ];
  cases[cases.length - 1]![1].preconditions.timeBounds = { minTime: '-1', maxTime: 'soon' };

  it.each(cases)('%s', (_name, s, code) => {
    const d = run(s);
    expect(d.outcome).toBe('reject');
    expect(codes(d)).toContain(code);
  });

  it('a summary that is not an object', () => {
    expect(codes(run(null as unknown as TransactionSummary))).toEqual(['MALFORMED_SUMMARY']);
  });

  it('a fee bump without its inner transaction', () => {
    const s = { ...ours([payment(ALICE, '1')]), kind: 'feeBump' as const };
    expect(codes(run(s))).toEqual(['MALFORMED_SUMMARY']);
  });

  it('a shape no rule foresaw becomes EVALUATION_FAILED', () => {
    const s = ours([invoke(call(TOKEN, 'transfer', [OPS, ALICE, '1', 7n]))]);
    const d = run(s);
    expect(d).toMatchObject({ outcome: 'reject', spend: [] });
    expect(codes(d)).toEqual(['EVALUATION_FAILED']);
    const e = evaluateAuthEntries(policy, {
      entries: [null as unknown as AuthEntrySummary],
      now: NOW,
      currentLedger: 1,
      spent: zero,
    });
    expect(codes(e)).toEqual(['EVALUATION_FAILED']);
  });

  it('operations that are not a list count as none', () => {
    const s = { ...ours([]), operations: 'x' as unknown as [] };
    expect(codes(run(s))).toContain('NO_OPERATIONS');
  });
});

describe('evaluate: velocity source', () => {
  it('a ledger that cannot be read rejects', () => {
    const d = evaluate(policy, {
      summary: ours([payment(ALICE, '1')]),
      now: NOW,
      spent: () => {
        throw new Error('database is locked');
      },
    });
    expect(codes(d)).toEqual(['VELOCITY_UNAVAILABLE']);
  });

  it('a ledger answering a number instead of a bigint rejects', () => {
    const d = evaluate(policy, { summary: ours([payment(ALICE, '1')]), now: NOW, spent: () => 0 as unknown as bigint });
    expect(codes(d)).toEqual(['VELOCITY_UNAVAILABLE']);
  });

  it('asks the ledger for the asset key and the window in seconds', () => {
    const asked: [string, number][] = [];
    evaluate(policy, {
      summary: ours([payment(ALICE, '1')]),
      now: NOW,
      spent: (k, w) => {
        asked.push([k, w]);
        return 0n;
      },
    });
    expect(asked).toEqual([['native', 86_400]]);
  });
});

describe('evaluate: unbounded outflows', () => {
  it('liquidityPoolDeposit is refused unless allowed', () => {
    expect(codes(run(ours([op({ type: 'liquidityPoolDeposit' })])))).toEqual(['UNBOUNDED_OUTFLOW']);
    const allowed = parsePolicy({ ...doc, allowUnboundedOutflows: ['liquidityPoolDeposit'] });
    expect(run(ours([op({ type: 'liquidityPoolDeposit' })]), allowed).outcome).toBe('approve');
  });

  it('a merge sourced by another account is refused as well', () => {
    const stranger = Keypair.random().publicKey();
    expect(codes(run(ours([op({ type: 'accountMerge', source: stranger, destination: OPS })])))).toEqual([
      'ACCOUNT_NOT_COSIGNED',
      'UNBOUNDED_OUTFLOW',
    ]);
  });
});

describe('evaluate: contract token amounts', () => {
  const transfer = (contract: string, amount: unknown, extra: unknown[] = [7]) =>
    ours([invoke(call(contract, 'transfer', [OPS, ALICE, amount, ...extra]))]);

  it('scales 18-decimal tokens to 7 decimals, rounding up', () => {
    expect(run(transfer(TOKEN18, '1000000000000000001')).spend).toEqual([{ assetKey: TOKEN18, amount: 10_000_001n }]);
  });

  it('scales 2-decimal tokens to 7 decimals', () => {
    expect(run(transfer(TOKEN2, 150)).spend).toEqual([{ assetKey: TOKEN2, amount: 15_000_000n }]);
  });

  it('refuses an amount argument that is not an integer', () => {
    expect(codes(run(transfer(TOKEN, 1.5)))).toEqual(['AMOUNT_INVALID']);
    expect(codes(run(transfer(TOKEN, '-5')))).toEqual(['AMOUNT_INVALID']);
  });

  it('matches argument rules by value, with YAML numbers matching digit strings', () => {
    expect(run(transfer(TOKEN, '1', ['7'])).outcome).toBe('approve');
    expect(run(transfer(TOKEN, '1', [true])).outcome).toBe('approve');
    expect(codes(run(transfer(TOKEN, '1', [8])))).toEqual(['ARGUMENT_NOT_ALLOWED']);
    expect(codes(run(transfer(TOKEN, '1', [])))).toEqual(['ARGUMENT_NOT_ALLOWED']);
  });

  it('a recipient rule refuses a call whose recipient argument is missing', () => {
    const p = parsePolicy({
      ...doc,
      contracts: [
        { id: TOKEN, functions: [{ name: 'transfer', token: { asset: TOKEN, to: 5 }, recipients: [ALICE] }] },
      ],
    });
    const d = run(ours([invoke(call(TOKEN, 'transfer', [OPS, ALICE, '1']))]), p);
    expect(d.reasons).toContainEqual(
      expect.objectContaining({ code: 'RECIPIENT_NOT_ALLOWED', field: 'operations[0].invocation.args[5]' }),
    );
    const muxedAlice = StrKey.encodeMed25519PublicKey(
      Buffer.concat([StrKey.decodeEd25519PublicKey(ALICE), Buffer.alloc(8)]),
    );
    const okP = parsePolicy({
      ...doc,
      contracts: [{ id: TOKEN, functions: [{ name: 'transfer', token: { asset: TOKEN }, recipients: [ALICE] }] }],
    });
    expect(run(ours([invoke(call(TOKEN, 'transfer', [OPS, muxedAlice, '1']))]), okP).outcome).toBe('approve');
  });

  it('uses the argument positions the rule names', () => {
    const s = ours([invoke(call(TOKEN, 'pay', [ALICE, OPS, '30000000']))]);
    expect(run(s).spend).toEqual([{ assetKey: TOKEN, amount: 30_000_000n }]);
  });

  it('counts a call and its auth entry once, two entries for the same transfer twice, two transfers twice', () => {
    const t = call(TOKEN, 'transfer', [OPS, ALICE, '10000000', 7]);
    const once = ours([invoke(t, [addressEntry(OPS, t, 10)])]);
    expect(run(once, policy, { currentLedger: 5 }).spend).toEqual([{ assetKey: TOKEN, amount: 10_000_000n }]);
    const sourceOnce = ours([invoke(t, [{ credentials: 'sourceAccount', invocation: t }])]);
    expect(run(sourceOnce).spend).toEqual([{ assetKey: TOKEN, amount: 10_000_000n }]);
    // Two authorizations of the same transfer can each be consumed by a call: counted twice.
    const doubled = ours([invoke(t, [addressEntry(OPS, t, 10), { credentials: 'sourceAccount', invocation: t }])]);
    expect(run(doubled, policy, { currentLedger: 5 }).spend).toEqual([{ assetKey: TOKEN, amount: 20_000_000n }]);
    const twice = ours([invoke(call(TOKEN, 'transfer', [OPS, ALICE, '10000000', 7], [t]))]);
    expect(run(twice).spend).toEqual([{ assetKey: TOKEN, amount: 20_000_000n }]);
  });

  it('a contract call without a contract id or function name is not allowed', () => {
    const inv = { kind: 'contract', subInvocations: [] } as InvocationSummary;
    expect(codes(run(ours([invoke(inv)])))).toEqual(['CONTRACT_NOT_ALLOWED']);
    const noFn = { kind: 'contract', contractId: TOKEN, subInvocations: [] } as InvocationSummary;
    expect(codes(run(ours([invoke(noFn)])))).toEqual(['FUNCTION_NOT_ALLOWED']);
  });

  it('refuses invocation trees deeper than the bound instead of recursing without end', () => {
    let inv: InvocationSummary = call(TOKEN, 'transfer', [OPS, ALICE, '1', 7]);
    for (let i = 0; i < 80; i++) inv = call(TOKEN, 'transfer', [OPS, ALICE, '1', 7], [inv]);
    expect(codes(run(ours([invoke(inv)])))).toContain('INVOCATION_TOO_DEEP');
  });

  it('tolerates missing args and sub-invocation lists', () => {
    const inv = { kind: 'contract', contractId: TOKEN, functionName: 'transfer' } as InvocationSummary;
    expect(codes(run(ours([invoke(inv)])))).toEqual(['ARGUMENT_NOT_ALLOWED', 'AMOUNT_INVALID']);
  });

  it('checks the expiration of our auth entries only when the current ledger is known', () => {
    const t = call(TOKEN, 'transfer', [OPS, ALICE, '1', 7]);
    const s = ours([invoke(t, [addressEntry(OPS, t, 5000)])]);
    expect(run(s).outcome).toBe('approve');
    expect(codes(run(s, policy, { currentLedger: 10 }))).toEqual(['AUTH_EXPIRATION_TOO_FAR']);
    const missing = ours([invoke(t, [{ credentials: 'address', address: OPS, invocation: t }])]);
    expect(codes(run(missing, policy, { currentLedger: 10 }))).toEqual(['MALFORMED_SUMMARY']);
  });
});

describe('evaluate: memo and manual approval options not covered by vectors', () => {
  it('memo.forbidden', () => {
    const p = parsePolicy({ ...doc, memo: { forbidden: true } });
    const s = tx({ source: OPS, ops: [payment(ALICE, '1')], memo: { type: 'text', value: 'x' } });
    expect(codes(run(s, p))).toEqual(['MEMO_FORBIDDEN']);
  });

  it('manualApproval.contractCalls holds contract calls and standalone entries', () => {
    const p = parsePolicy({ ...doc, manualApproval: { contractCalls: true } });
    const t = call(TOKEN, 'transfer', [OPS, ALICE, '1', 7]);
    expect(run(ours([invoke(t)]), p)).toMatchObject({ outcome: 'hold', reasons: [{ code: 'HOLD_CONTRACT_CALL' }] });
    const d = evaluateAuthEntries(p, { entries: [addressEntry(OPS, t, 20)], now: NOW, currentLedger: 10, spent: zero });
    expect(d).toMatchObject({ outcome: 'hold', reasons: [{ code: 'HOLD_CONTRACT_CALL' }] });
  });

  it('an allow list counts as known destinations for manual approval', () => {
    const p = parsePolicy({ ...doc, destinations: { allow: [ALICE] }, manualApproval: { unknownDestination: true } });
    expect(run(ours([payment(ALICE, '1')]), p).outcome).toBe('approve');
  });

  it('a setOptions without signer fields is not a signer change', () => {
    expect(run(ours([op({ type: 'setOptions', setOptions: { homeDomain: 'x.example' } })])).outcome).toBe('approve');
  });
});

describe('evaluateAuthEntries: inputs', () => {
  it('an entry without an address', () => {
    const e = {
      credentials: 'address',
      signatureExpirationLedger: 5,
      invocation: call(TOKEN, 'transfer', [OPS, ALICE, '1', 7]),
    } as AuthEntrySummary;
    const d = evaluateAuthEntries(policy, { entries: [e], now: NOW, currentLedger: 1, spent: zero });
    expect(codes(d)).toEqual(['ACCOUNT_NOT_COSIGNED']);
  });

  it('entries that are not a list count as none', () => {
    const d = evaluateAuthEntries(policy, { entries: 'x' as unknown as [], now: NOW, currentLedger: 1, spent: zero });
    expect(codes(d)).toEqual(['NO_AUTH_ENTRIES']);
  });
});

describe('amount and address helpers', () => {
  it('parses exact amounts strictly', () => {
    expect(parseAmount('0')).toBe(0n);
    expect(parseAmount('922337203685.4775807')).toBe(9_223_372_036_854_775_807n);
    for (const bad of ['', '01', '1.', '.5', '+1', '1e2', ' 1', '1.00000001', '922337203685.4775808', '0x10']) {
      expect(parseAmount(bad)).toBeUndefined();
    }
    expect(parseAmount('1.5', 2)).toBe(150n);
    expect(parseInteger('10', 9n)).toBeUndefined();
    expect(parseInteger('007')).toBeUndefined();
  });

  it('formats amounts', () => {
    expect(formatAmount(10_000_000n)).toBe('1');
    expect(formatAmount(12_345_000n)).toBe('1.2345');
    expect(formatAmount(-5n)).toBe('-0.0000005');
    expect(formatAmount(150n, 2)).toBe('1.5');
  });

  it('parses prices as exact ratios', () => {
    expect(parseRatio('0.25')).toEqual({ num: 25n, den: 100n });
    expect(parseRatio('3')).toEqual({ num: 3n, den: 1n });
    expect(parseRatio('1/3')).toBeUndefined();
    expect(parseRatio('1'.repeat(65))).toBeUndefined();
  });

  it('recognises signer keys of every kind', () => {
    const hash = Buffer.alloc(32, 1);
    expect(isSignerKey(StrKey.encodePreAuthTx(hash))).toBe(true);
    expect(isSignerKey(StrKey.encodeSha256Hash(hash))).toBe(true);
    expect(
      isSignerKey(
        StrKey.encodeSignedPayload(
          Buffer.concat([StrKey.decodeEd25519PublicKey(OPS), Buffer.from([0, 0, 0, 4, 1, 2, 3, 4])]),
        ),
      ),
    ).toBe(true);
    expect(isSignerKey(OPS)).toBe(true);
    expect(isSignerKey('TNOPE')).toBe(false);
    expect(isSignerKey('XNOPE')).toBe(false);
    expect(isSignerKey('Q')).toBe(false);
  });

  it('maps muxed accounts to their base account and names asset keys', () => {
    const raw = Buffer.concat([StrKey.decodeEd25519PublicKey(OPS), Buffer.alloc(8, 1)]);
    const m = StrKey.encodeMed25519PublicKey(raw);
    expect(baseAccount(m)).toBe(OPS);
    expect(baseAccount('MNOTVALID')).toBe('MNOTVALID');
    expect(isDestination(m)).toBe(true);
    expect(assetKey({ type: 'pool', poolId: 'ab' })).toBe('pool:ab');
    expect(isPolicyAssetKey(`USDC:${ISSUER}`)).toBe(true);
    expect(isPolicyAssetKey(':x')).toBe(false);
  });
});

describe('README', () => {
  it('documents every reason code with its outcome', () => {
    const readme = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');
    const documented = new Map(
      [...readme.matchAll(/^\| `([A-Z_]+)` +\| (reject|hold) +\|/gm)].map((m) => [m[1], m[2]]),
    );
    expect(Object.fromEntries(documented)).toEqual(REASON_CODES);
  });
});

describe('evaluate: fees', () => {
  it('a policy without native still signs fees (bounded by fees.*) and reports them for velocity', () => {
    const usdcOnly = parsePolicy({
      network: TESTNET,
      accounts: [OPS],
      operations: ['payment'],
      assets: [{ asset: `USDC:${ISSUER}`, velocity: [{ window: '24h', max: '100' }] }],
      fees: { maxFee: 1000, maxFeeBump: 2000 },
    });
    const d = run(tx({ source: OPS, fee: '300', ops: [payment(ALICE, '5', credit('USDC', ISSUER))] }), usdcOnly);
    expect(d).toMatchObject({ outcome: 'approve', reasons: [], fee: 300n });
    expect(d.spend).toEqual([{ assetKey: `USDC:${ISSUER}`, amount: 50_000_000n }]);
    // A native payment is still not allowed: the fee exception covers fees only.
    expect(codes(run(tx({ source: OPS, ops: [payment(ALICE, '1')] }), usdcOnly))).toEqual(['ASSET_NOT_ALLOWED']);
  });

  it('a fee bump with a 10,000,000 XLM maximum fee around a 1 XLM payment is refused, not signed', () => {
    const capped = parsePolicy({ ...doc, fees: { maxFee: 1000, maxFeeBump: 2000 } });
    const bump = feeBump(tx({ source: OPS, ops: [payment(ALICE, '1')] }), OPS, '100000000000000');
    const d = run(bump, capped);
    expect(d.outcome).toBe('reject');
    expect(codes(d)).toEqual(expect.arrayContaining(['FEE_TOO_HIGH', 'VELOCITY_EXCEEDED']));
    expect(d.reasons.find((r) => r.code === 'FEE_TOO_HIGH')?.message).toContain('fees.maxFeeBump');
    expect(d.fee).toBe(100_000_000_000_000n);
    // Without fees.maxFeeBump, fees.maxFee caps the outer fee too.
    const maxFeeOnly = parsePolicy({ ...doc, fees: { maxFee: 1000 } });
    expect(codes(run(bump, maxFeeOnly))).toContain('FEE_TOO_HIGH');
  });

  it('names the cap a fee is above, and counts the fee in the velocity message', () => {
    const capped = parsePolicy({ ...doc, fees: { maxFee: 1000, maxFeeBump: 2000 } });
    const big = run(tx({ source: OPS, fee: '1001', ops: [payment(ALICE, '1')] }), capped);
    expect(big.reasons[0]?.message).toContain('fees.maxFee');
    const over = evaluate(capped, {
      summary: tx({ source: OPS, fee: '1000', ops: [payment(ALICE, '1')] }),
      now: NOW,
      spent: () => 990_000_000n, // 99 XLM: with the 1 XLM payment exactly at the limit, the fee tips it over
    });
    expect(codes(over)).toEqual(['VELOCITY_EXCEEDED']);
    expect(over.reasons[0]?.message).toContain('fee 0.0001 included');
  });
});

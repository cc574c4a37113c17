import { Keypair } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { checkSorobanResources, ledgerLowerBound, REASON_CODES } from '../src/evaluate.ts';
import { parsePolicy } from '../src/schema.ts';
import { TESTNET } from './builders.ts';

const OPS = Keypair.random().publicKey();
const base = { network: TESTNET, accounts: [OPS], operations: ['invokeHostFunction'] };
const within = { resourceFee: 100n, instructions: 1000, readOnlyEntries: 2, readWriteEntries: 1 };

describe('Soroban resource limits', () => {
  it('without limits every resource passes', () => {
    const p = parsePolicy(base);
    expect(checkSorobanResources(p, { ...within, resourceFee: 10n ** 12n, instructions: 4e9 })).toEqual([]);
    expect(p.soroban.ledgerClock).toBeUndefined();
  });

  it('each limit refuses only what is above it, naming the field', () => {
    const p = parsePolicy({
      ...base,
      soroban: { maxResourceFee: '100', maxFootprintEntries: 3, maxWriteEntries: 1, maxInstructions: 1000 },
    });
    expect(checkSorobanResources(p, within)).toEqual([]);
    const r = checkSorobanResources(p, {
      resourceFee: 101n,
      instructions: 1001,
      readOnlyEntries: 2,
      readWriteEntries: 2,
    });
    expect(r.map((x) => x.code)).toEqual([
      'RESOURCE_FEE_TOO_HIGH',
      'FOOTPRINT_TOO_LARGE',
      'FOOTPRINT_TOO_LARGE',
      'INSTRUCTIONS_TOO_HIGH',
    ]);
    expect(r.map((x) => x.field)).toEqual([
      'sorobanData.resourceFee',
      'sorobanData.resources.footprint',
      'sorobanData.resources.footprint.readWrite',
      'sorobanData.resources.instructions',
    ]);
    for (const x of r) expect(REASON_CODES[x.code as keyof typeof REASON_CODES]).toBe('reject');
  });

  it('the ledger clock gives a lower bound that never goes below the anchor', () => {
    const p = parsePolicy({ ...base, soroban: { ledgerClock: { ledger: 100, closedAt: 1_000 } } });
    expect(p.soroban.ledgerClock).toEqual({ ledger: 100, closedAt: 1_000, maxCloseSeconds: 6 });
    expect(ledgerLowerBound(p, 1_000)).toBe(100);
    expect(ledgerLowerBound(p, 1_059)).toBe(109);
    expect(ledgerLowerBound(p, 500)).toBe(100);
    expect(ledgerLowerBound(parsePolicy(base), 1_000)).toBeUndefined();
  });

  it('refuses malformed limits and clocks by field', () => {
    expect(() => parsePolicy({ ...base, soroban: { maxFootprintEntries: -1 } })).toThrow(/maxFootprintEntries/);
    expect(() => parsePolicy({ ...base, soroban: { ledgerClock: { ledger: 0, closedAt: 1 } } })).toThrow(/ledger/);
    expect(() => parsePolicy({ ...base, soroban: { ledgerClock: { ledger: 5, closedAt: 1, x: 1 } } })).toThrow();
  });
});

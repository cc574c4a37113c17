import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuthEntrySummary, TransactionSummary } from '@cosigner/stellar/types';
import { describe, expect, it } from 'vitest';
import { formatAmount, parseAmount } from '../src/amount.ts';
import { type Decision, evaluate, evaluateAuthEntries } from '../src/evaluate.ts';
import { loadPolicy } from '../src/schema.ts';

/** test/vectors/*.json: one file per rule family, written by test/vectors/generate.ts with hand-written expectations. */
interface VectorCase {
  name: string;
  summary?: TransactionSummary;
  entries?: AuthEntrySummary[];
  now: number;
  currentLedger?: number;
  spent: Record<string, Record<string, string>>;
  expect: { outcome: string; reasonCodes: string[]; spend?: Record<string, string>; fee?: string };
}
interface VectorFile {
  source: string;
  policy: Record<string, unknown>;
  cases: VectorCase[];
}

const dir = join(fileURLToPath(new URL('.', import.meta.url)), 'vectors');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

function spentFrom(table: VectorCase['spent']) {
  return (assetKey: string, windowSeconds: number): bigint => {
    const amount = table[assetKey]?.[String(windowSeconds)];
    return amount === undefined ? 0n : parseAmount(amount)!;
  };
}

describe('policy vectors', () => {
  it('has one file per rule family', () => {
    expect(files.length).toBeGreaterThanOrEqual(12);
  });

  for (const file of files) {
    const vectors = JSON.parse(readFileSync(join(dir, file), 'utf8')) as VectorFile;
    describe(`${file}: ${vectors.source}`, () => {
      // JSON is YAML: the vector's policy goes through the same loader as a node's policy file.
      const policy = loadPolicy(JSON.stringify(vectors.policy));
      for (const c of vectors.cases) {
        it(c.name, () => {
          let d: Decision;
          if (c.entries) {
            d = evaluateAuthEntries(policy, {
              entries: c.entries,
              now: c.now,
              currentLedger: c.currentLedger ?? 0,
              spent: spentFrom(c.spent),
            });
          } else {
            d = evaluate(policy, {
              summary: c.summary!,
              now: c.now,
              spent: spentFrom(c.spent),
              ...(c.currentLedger === undefined ? {} : { currentLedger: c.currentLedger }),
            });
          }
          const codes = [...new Set(d.reasons.map((r) => r.code))].sort();
          expect({ outcome: d.outcome, codes }).toEqual({ outcome: c.expect.outcome, codes: c.expect.reasonCodes });
          if (c.expect.spend) {
            const spend = Object.fromEntries(d.spend.map((s) => [s.assetKey, formatAmount(s.amount)]));
            expect(spend).toEqual(c.expect.spend);
          }
          if (c.expect.fee !== undefined) expect(d.fee).toBe(BigInt(c.expect.fee));
          for (const r of d.reasons) expect(r.message.length).toBeGreaterThan(0);
        });
      }
    });
  }
});

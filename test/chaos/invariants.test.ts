import { describe, expect, it } from 'vitest';
import { notSubmitted, quantile, type StreamRecord, slotViolations } from './scenarios.ts';

// The invariant checks themselves must be able to fail: fed a violating ledger or stream, they say so.

const row = (tx: string, seq: string, maxTime: number, createdAt: number) => ({
  tx_hash: tx,
  source: 'GSRC',
  seq,
  max_time: maxTime,
  created_at: createdAt,
});

describe('slotViolations', () => {
  it('flags a second transaction for a slot while the first is live (maxTime + grace)', () => {
    const v = slotViolations('node-0', [row('aa', '7', 1000, 900), row('bb', '7', 1100, 1050)], 60);
    expect(v).toEqual(['node-0 holds two live signatures for slot GSRC:7: aa and bb']);
    expect(slotViolations('node-0', [row('aa', '7', 1000, 900), row('bb', '7', 1100, 1060)], 60)).toHaveLength(1);
  });

  it('flags any second transaction after one without an upper time bound (live forever)', () => {
    expect(slotViolations('n', [row('aa', '7', 0, 1), row('bb', '7', 0, 999_999)], 60)).toHaveLength(1);
  });

  it('accepts one slot reused after the first signature expired, the same hash twice, and other slots', () => {
    expect(slotViolations('n', [row('aa', '7', 1000, 900), row('bb', '7', 2000, 1061)], 60)).toEqual([]);
    expect(slotViolations('n', [row('aa', '7', 1000, 900), row('aa', '7', 1000, 950)], 60)).toEqual([]);
    expect(slotViolations('n', [row('aa', '7', 1000, 900), row('bb', '8', 1000, 900)], 60)).toEqual([]);
  });
});

const rec = (p: Partial<StreamRecord>): StreamRecord => ({
  id: 'p',
  lane: 0,
  account: 'GA',
  seq: '1',
  hash: 'h',
  idempotencyKey: 'k',
  status: 'submitted',
  statusReason: null,
  resultCode: null,
  attempts: 0,
  createdAt: 0,
  signedAt: null,
  doneAt: null,
  faulted: [],
  retryOf: null,
  ...p,
});

describe('notSubmitted', () => {
  it('names every proposal that did not end submitted', () => {
    const out = notSubmitted([rec({ id: 'a' }), rec({ id: 'b', hash: 'x', status: 'rejected', statusReason: 'why' })]);
    expect(out).toEqual(["proposal b (lane 0, seq 1) ended 'rejected': why"]);
  });

  it('excuses a lost submission only when the same XDR was submitted by a later proposal', () => {
    const lost = rec({ id: 'a', hash: 'x', status: 'failed', resultCode: 'submission_unavailable' });
    expect(notSubmitted([lost, rec({ id: 'b', hash: 'x', retryOf: 'a' })])).toEqual([]);
    expect(notSubmitted([lost])).toHaveLength(1);
    expect(notSubmitted([{ ...lost, resultCode: 'tx_bad_seq' }, rec({ id: 'b', hash: 'x' })])).toHaveLength(1);
  });
});

describe('quantile', () => {
  it('is the nearest-rank quantile, null for no values', () => {
    expect(quantile([], 0.5)).toBeNull();
    expect(quantile([5, 1, 3], 0.5)).toBe(3);
    expect(quantile([5, 1, 3], 1)).toBe(5);
    expect(quantile([5, 1, 3], 0)).toBe(1);
    expect(
      quantile(
        Array.from({ length: 100 }, (_, i) => i + 1),
        0.99,
      ),
    ).toBe(99);
  });
});

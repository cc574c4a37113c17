import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkQuorumIntersection, findDisjointQuorums, type Party } from '../src/intersection.ts';

const parties = (...weights: number[]): Party[] => weights.map((weight, i) => ({ id: `node-${i}`, weight }));
const sum = (ps: readonly Party[], ids: readonly string[]): number =>
  ids.reduce((s, id) => s + ps.find((p) => p.id === id)!.weight, 0);

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

/**
 * Brute force, written apart from the dynamic program: every assignment of each party to the first set, the
 * second set or neither (3^n), looking for two sets that each reach max(t, 1).
 */
function bruteDisjoint(ps: readonly Party[], threshold: number): boolean {
  const t = Math.max(threshold, 1);
  const n = ps.length;
  const total = 3 ** n;
  for (let code = 0; code < total; code++) {
    let a = 0;
    let b = 0;
    let c = code;
    for (let i = 0; i < n; i++) {
      const side = c % 3;
      c = Math.floor(c / 3);
      if (side === 1) a += ps[i]!.weight;
      if (side === 2) b += ps[i]!.weight;
    }
    if (a >= t && b >= t) return true;
  }
  return false;
}

describe('findDisjointQuorums', () => {
  it('2-of-4 with equal weights: two disjoint pairs each reach the threshold', () => {
    const ps = parties(1, 1, 1, 1);
    const found = findDisjointQuorums(ps, 2);
    expect(found).not.toBeNull();
    const [a, b] = found!;
    expect(a.filter((x) => b.includes(x))).toEqual([]);
    expect(sum(ps, a)).toBeGreaterThanOrEqual(2);
    expect(sum(ps, b)).toBeGreaterThanOrEqual(2);
  });

  it('a strict majority always intersects: 2-of-3, 3-of-4, 3-of-5', () => {
    expect(findDisjointQuorums(parties(1, 1, 1), 2)).toBeNull();
    expect(findDisjointQuorums(parties(1, 1, 1, 1), 3)).toBeNull();
    expect(findDisjointQuorums(parties(1, 1, 1, 1, 1), 3)).toBeNull();
  });

  it('weights count, not heads: 2+1+1 with threshold 2 has {0} and {1,2}', () => {
    const found = findDisjointQuorums(parties(2, 1, 1), 2);
    expect(found).toEqual([['node-0'], ['node-1', 'node-2']]);
  });

  it('threshold 0 needs one signature, like 1: two signers are two disjoint quorums', () => {
    expect(findDisjointQuorums(parties(1, 1), 0)).not.toBeNull();
    expect(findDisjointQuorums(parties(1), 0)).toBeNull();
  });

  it('a party of weight 0 cannot sign and is never in a witness', () => {
    expect(findDisjointQuorums(parties(0, 0, 1), 1)).toBeNull();
    const found = findDisjointQuorums([...parties(1, 1), { id: 'idle', weight: 0 }], 1)!;
    expect([...found[0], ...found[1]]).not.toContain('idle');
  });

  it('no parties, or weights too small: nothing reaches the threshold, so nothing is disjoint', () => {
    expect(findDisjointQuorums([], 1)).toBeNull();
    expect(findDisjointQuorums(parties(1, 1, 1), 255)).toBeNull();
  });

  it('21 parties at the largest threshold stay fast (the most an account holds: 20 signers and the master key)', () => {
    const ps = parties(...Array.from({ length: 21 }, () => 255));
    const started = performance.now();
    expect(findDisjointQuorums(ps, 255)).not.toBeNull();
    expect(findDisjointQuorums(parties(...Array.from({ length: 21 }, (_, i) => (i === 0 ? 255 : 12))), 255)).toBeNull();
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it.each([
    ['not an array', () => findDisjointQuorums('x' as never, 1), 'STELLAR_BAD_INPUT'],
    ['a duplicate id', () => findDisjointQuorums([...parties(1), ...parties(1)], 1), 'STELLAR_BAD_INPUT'],
    ['a negative weight', () => findDisjointQuorums(parties(-1), 1), 'STELLAR_BAD_INPUT'],
    ['a fractional weight', () => findDisjointQuorums(parties(1.5), 1), 'STELLAR_BAD_INPUT'],
    ['a missing party', () => findDisjointQuorums([undefined as never], 1), 'STELLAR_BAD_INPUT'],
    ['a threshold above 255', () => findDisjointQuorums(parties(1), 256), 'STELLAR_BAD_INPUT'],
    ['a negative threshold', () => findDisjointQuorums(parties(1), -1), 'STELLAR_BAD_INPUT'],
  ])('refuses %s', (_name, f, code) => {
    expect(codeOf(f)).toBe(code);
  });
});

describe('checkQuorumIntersection', () => {
  it('reports each level whose sets do not intersect, with a witness', () => {
    const r = checkQuorumIntersection(parties(1, 1, 1, 1), { low: 2, medium: 2, high: 3 });
    expect(r.ok).toBe(false);
    expect(r.disjoint.map((d) => [d.level, d.threshold])).toEqual([
      ['low', 2],
      ['medium', 2],
    ]);
    for (const d of r.disjoint) expect(d.first.filter((x) => d.second.includes(x))).toEqual([]);
  });

  it('passes 2-of-3 at every level', () => {
    expect(checkQuorumIntersection(parties(1, 1, 1), { low: 2, medium: 2, high: 2 })).toEqual({
      ok: true,
      disjoint: [],
    });
  });

  it('refuses thresholds that are missing or out of range', () => {
    expect(codeOf(() => checkQuorumIntersection(parties(1), undefined as never))).toBe('STELLAR_BAD_INPUT');
    expect(codeOf(() => checkQuorumIntersection(parties(1), { low: 1, medium: 300, high: 1 }))).toBe(
      'STELLAR_BAD_INPUT',
    );
  });

  it('property: agrees with a brute-force search, and every witness is two disjoint sets reaching the threshold', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 8 }),
        fc.integer({ min: 0, max: 40 }),
        (weights, threshold) => {
          const ps = parties(...weights);
          const found = findDisjointQuorums(ps, threshold);
          expect(found !== null).toBe(bruteDisjoint(ps, threshold));
          if (found !== null) {
            const [a, b] = found;
            const t = Math.max(threshold, 1);
            expect(a.filter((x) => b.includes(x))).toEqual([]);
            expect(new Set(a).size).toBe(a.length);
            expect(sum(ps, a)).toBeGreaterThanOrEqual(t);
            expect(sum(ps, b)).toBeGreaterThanOrEqual(t);
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('property: each level is judged as findDisjointQuorums judges its threshold, and ok means none is disjoint', () => {
    const byte = fc.integer({ min: 0, max: 30 });
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 7 }),
        byte,
        byte,
        byte,
        (weights, low, medium, high) => {
          const ps = parties(...weights);
          const r = checkQuorumIntersection(ps, { low, medium, high });
          const expected = (['low', 'medium', 'high'] as const).filter((l) =>
            bruteDisjoint(ps, { low, medium, high }[l]),
          );
          expect(r.disjoint.map((d) => d.level)).toEqual(expected);
          expect(r.ok).toBe(expected.length === 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});

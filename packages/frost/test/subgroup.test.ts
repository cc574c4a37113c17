import { randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inPrimeOrderSubgroup } from '../src/subgroup.ts';
import { decodePoint } from '../src/suite.ts';

type Point = InstanceType<typeof ed25519.Point>;
const { Point } = ed25519;
const L = Point.Fn.ORDER;

/** A point of order 8 (RFC 8032's small-order list), and so the eight torsion points as its multiples. */
const ORDER8 = Point.fromHex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a');
const TORSION: Point[] = Array.from({ length: 8 }, (_, j) => (j === 0 ? Point.ZERO : ORDER8.multiplyUnsafe(BigInt(j))));

/** A uniformly random point of the prime-order subgroup other than the identity. */
const primeOrder = (k: bigint): Point => Point.BASE.multiply((k % (L - 1n)) + 1n);

describe('prime-order subgroup membership ([L]P == O) against @noble/curves isTorsionFree', () => {
  it('the torsion points are distinct and of the expected orders', () => {
    expect(new Set(TORSION.map((t) => t.toHex())).size).toBe(8);
    for (const t of TORSION) expect(t.multiplyUnsafe(8n).is0()).toBe(true);
    expect(ORDER8.multiplyUnsafe(4n).is0()).toBe(false);
  });

  it('accepts every point with no torsion component and refuses each of the seven torsion components', () => {
    for (let i = 0; i < 6; i++) {
      const p0 = primeOrder(BigInt(`0x${randomBytes(32).toString('hex')}`));
      for (const [j, t] of TORSION.entries()) {
        const q = p0.add(t);
        // Through an encoding as well: what a participant receives, with Z = 1.
        const decoded = Point.fromBytes(q.toBytes());
        expect(inPrimeOrderSubgroup(q)).toBe(j === 0);
        expect(inPrimeOrderSubgroup(decoded)).toBe(j === 0);
        expect(inPrimeOrderSubgroup(q)).toBe(q.isTorsionFree());
      }
    }
  });

  it('answers as isTorsionFree on every small-order point, the identity, and the base point', () => {
    for (const t of TORSION) expect(inPrimeOrderSubgroup(t)).toBe(t.isTorsionFree());
    expect(inPrimeOrderSubgroup(Point.ZERO)).toBe(true);
    expect(inPrimeOrderSubgroup(Point.BASE)).toBe(true);
    expect(inPrimeOrderSubgroup(Point.BASE.negate())).toBe(true);
  });

  it('answers as isTorsionFree on random encodings that decode (about 7 in 8 outside the subgroup)', () => {
    let inside = 0;
    let outside = 0;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        let p: Point;
        try {
          p = Point.fromBytes(bytes);
        } catch {
          return; // not an encoding of a point of the curve
        }
        const expected = p.isTorsionFree();
        if (expected) inside++;
        else outside++;
        expect(inPrimeOrderSubgroup(p)).toBe(expected);
      }),
      { numRuns: 200 },
    );
    expect(outside).toBeGreaterThan(0);
    // And points of the subgroup mixed with random torsion, by a random scalar.
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: L - 1n }), fc.integer({ min: 0, max: 7 }), (k, j) => {
        const q = Point.BASE.multiply(k).add(TORSION[j]!);
        expect(inPrimeOrderSubgroup(q)).toBe(j === 0);
        inside += j === 0 ? 1 : 0;
      }),
      { numRuns: 100 },
    );
    expect(inside).toBeGreaterThan(0);
  });

  it('decodePoint refuses a point with a torsion component and the identity, naming the field', () => {
    const p0 = primeOrder(12345n);
    expect(decodePoint(p0.toBytes(), 'x').equals(p0)).toBe(true);
    for (const t of TORSION.slice(1)) {
      expect(() => decodePoint(p0.add(t).toBytes(), 'commitment.hiding')).toThrow(
        expect.objectContaining({
          code: 'FROST_OUT_OF_RANGE',
          details: expect.objectContaining({ field: 'commitment.hiding' }),
        }),
      );
    }
    expect(() => decodePoint(Point.ZERO.toBytes(), 'x')).toThrow(
      expect.objectContaining({ code: 'FROST_OUT_OF_RANGE' }),
    );
  });
});

import { ed25519 } from '@noble/curves/ed25519.js';

/**
 * Prime-order subgroup membership of an edwards25519 point: [L]P == O, the check RFC 9591 section 6.1 asks of
 * every element a FROST(Ed25519, SHA-512) participant receives (DeserializeElement), with the same answer as
 * @noble/curves' `Point.isTorsionFree()` for every point of the curve, with 1.2-1.6x less CPU (bench/README.md).
 *
 * Why a second implementation of one multiplication: the subgroup check was about half of the CPU a node spends
 * on a FROST signing round (2t - 2 received points) and most of the coordinator's (2t), and noble's generic
 * multiplication pays for a generic field: each product is reduced with a 512-bit BigInt `%`. Here the
 * multiplier is the constant L, and the field is p = 2^255 - 19, whose reduction is a shift, a mask and a
 * multiplication by 19 (2^255 = 19 mod p), about half the cost of `%` measured on Node 24. The doublings skip
 * the T coordinate when an addition does not follow. Everything is public (the point is received, L is a
 * constant), so the variable-time BigInt arithmetic leaks nothing: the same reason noble uses `multiplyUnsafe`
 * for this check.
 *
 * Formulas: the extended twisted Edwards coordinates of Hisil, Wong, Carter and Dawson (2008), "Twisted Edwards
 * curves revisited", with a = -1: doubling dbl-2008-hwcd, addition add-2008-hwcd (the ones noble's Point uses;
 * complete on edwards25519, since a = -1 is a square and d is not a square modulo p). The result is the
 * identity iff X = 0 and Y = Z. test/subgroup.test.ts compares it with `isTorsionFree` on points with each of the
 * eight torsion components, on every small-order point, and on random encodings.
 */

const P = 2n ** 255n - 19n;
const MASK = (1n << 255n) - 1n;
const D = ed25519.Point.CURVE().d;
/** 4p: added before a subtraction so that the difference of two loosely reduced values stays positive. */
const P4 = 4n * P;

/**
 * x mod p, loosely: congruent to x, non-negative, below 2^255 + 2^21 for any non-negative x below 2^530 (two
 * folds of the bits above 2^255, each times 19). Inputs here are products of two values below 2^258.
 */
function red(x: bigint): bigint {
  x = (x & MASK) + 19n * (x >> 255n);
  return (x & MASK) + 19n * (x >> 255n);
}

/** The signed binary digits (NAF) of L, most significant first: one doubling per digit after the first. */
const L_NAF: readonly number[] = (() => {
  let n = ed25519.Point.Fn.ORDER;
  const out: number[] = [];
  while (n > 0n) {
    let digit = 0;
    if (n & 1n) {
      digit = 2 - Number(n & 3n);
      n -= BigInt(digit);
    }
    out.push(digit);
    n >>= 1n;
  }
  return out.reverse();
})();

/** Extended coordinates (X : Y : Z : T), x = X/Z, y = Y/Z, xy = T/Z, each loosely reduced. */
interface Ext {
  X: bigint;
  Y: bigint;
  Z: bigint;
  T: bigint;
}

/** 2Q (dbl-2008-hwcd, a = -1); T is computed only when `withT` (an addition follows). */
function double(q: Ext, withT: boolean): Ext {
  const A = red(q.X * q.X);
  const B = red(q.Y * q.Y);
  const C = red(2n * q.Z * q.Z);
  const s = q.X + q.Y;
  const E = red(s * s + P4 - A + P4 - B);
  const G = B + P4 - A; // D + B with D = aA = -A
  const F = G + P4 - C;
  const H = P4 - A + P4 - B; // D - B
  return {
    X: red(E * F),
    Y: red(G * H),
    Z: red(F * G),
    T: withT ? red(E * H) : 0n,
  };
}

/** Q + R (add-2008-hwcd, a = -1). */
function add(q: Ext, r: Ext): Ext {
  const A = red(q.X * r.X);
  const B = red(q.Y * r.Y);
  const C = red(red(q.T * D) * r.T);
  const Dz = red(q.Z * r.Z);
  const E = red((q.X + q.Y) * (r.X + r.Y) + P4 - A + P4 - B);
  const F = Dz + P4 - C;
  const G = Dz + C;
  const H = B + A; // B - aA
  return { X: red(E * F), Y: red(G * H), Z: red(F * G), T: red(E * H) };
}

/**
 * Whether `point` is in the prime-order subgroup of edwards25519 ([L]P is the identity). The identity itself is
 * (L times itself is the identity); callers that refuse it check `is0()` separately, as decodePoint does.
 */
export function inPrimeOrderSubgroup(point: InstanceType<typeof ed25519.Point>): boolean {
  const p: Ext = { X: point.X, Y: point.Y, Z: point.Z, T: point.T };
  const neg: Ext = { X: P - p.X, Y: p.Y, Z: p.Z, T: P - p.T };
  // L's NAF starts with a 1: the accumulator starts at P.
  let acc = p;
  for (let i = 1; i < L_NAF.length; i++) {
    const digit = L_NAF[i]!;
    acc = double(acc, digit !== 0);
    if (digit === 1) acc = add(acc, p);
    else if (digit === -1) acc = add(acc, neg);
  }
  return acc.X % P === 0n && (acc.Y - acc.Z) % P === 0n;
}

import { frostErrors } from './errors.ts';

/**
 * Checks at the package boundary. Each returns the checked value; a wrong type raises FROST_BAD_INPUT, a value of
 * the right type that is out of range raises FROST_OUT_OF_RANGE, both naming the field.
 */

const HEX = /^(?:[0-9a-f]{2})*$/;

export function badType(field: string, expected: string): Error {
  return frostErrors.error('FROST_BAD_INPUT', { field, expected }, { message: `${field} must be ${expected}.` });
}

export function outOfRange(field: string, why: string): Error {
  return frostErrors.error('FROST_OUT_OF_RANGE', { field }, { message: `${field} ${why}.` });
}

export function object(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badType(field, 'an object');
  return v as Record<string, unknown>;
}

export function array(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) throw badType(field, 'an array');
  return v;
}

export function string(v: unknown, field: string): string {
  if (typeof v !== 'string') throw badType(field, 'a string');
  return v;
}

/** A safe integer in [min, max]. */
export function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw badType(field, 'an integer');
  if (v < min || v > max) throw outOfRange(field, `must be between ${min} and ${max}, not ${v}`);
  return v;
}

/** Bytes: a Uint8Array of exactly `length` bytes (any length when omitted); a copy, never the caller's array. */
export function bytes(v: unknown, field: string, length?: number): Uint8Array {
  if (!(v instanceof Uint8Array)) throw badType(field, 'a Uint8Array');
  if (length !== undefined && v.length !== length) {
    throw outOfRange(field, `must be ${length} bytes, not ${v.length}`);
  }
  return Uint8Array.from(v);
}

/** Lower-case hex of exactly `length` bytes (any even length when omitted), decoded. */
export function hex(v: unknown, field: string, length?: number): Uint8Array {
  const s = string(v, field);
  if (!HEX.test(s)) throw outOfRange(field, 'must be lower-case hex of whole bytes');
  if (length !== undefined && s.length !== length * 2) {
    throw outOfRange(field, `must be ${length} bytes (${length * 2} hex digits), not ${s.length / 2}`);
  }
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

/** An identifier-like string: 1-64 characters of [A-Za-z0-9._:-]. */
export function name(v: unknown, field: string): string {
  const s = string(v, field);
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(s)) throw outOfRange(field, 'must be 1-64 characters of A-Z a-z 0-9 . _ : -');
  return s;
}

export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * Exact amounts. Stellar amounts are int64 counts of stroops (1 unit = 10^7 stroops; stellar-core
 * `Stellar-ledger-entries.x` Int64, Horizon prints them with 7 decimals). Policies compare them as bigint and
 * never as floats: 0.1 + 0.2 must not be how a spending limit is decided.
 */

/** Stroops per unit of a classic asset. */
export const STROOPS_PER_UNIT = 10_000_000n;

/** Largest int64: the largest amount the ledger can hold in one balance or operation. */
export const INT64_MAX = 9_223_372_036_854_775_807n;

const DECIMAL = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;
const INTEGER = /^(0|[1-9][0-9]*)$/;

/**
 * Parse an exact decimal string with at most `decimals` fractional digits into base units (stroops for
 * decimals = 7). Strict: no sign, no exponent, no spaces, no leading zeros, no empty fraction, not above
 * int64. Returns undefined when the text is not such an amount; callers decide whether that is a config
 * error or a reject reason.
 */
export function parseAmount(text: string, decimals = 7): bigint | undefined {
  const m = DECIMAL.exec(text);
  if (!m) return undefined;
  const fraction = m[2] ?? '';
  if (fraction.length > decimals) return undefined;
  const value = BigInt(m[1]!) * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, '0') || '0');
  return value > INT64_MAX ? undefined : value;
}

/** Parse a non-negative int64 written as decimal digits (fees in stroops, unix times, raw token units). */
export function parseInteger(text: string, max = INT64_MAX): bigint | undefined {
  if (!INTEGER.test(text)) return undefined;
  const value = BigInt(text);
  return value > max ? undefined : value;
}

/** Format base units as a decimal string with `decimals` places, trailing zeros trimmed ("12.5", "3"). */
export function formatAmount(units: bigint, decimals = 7): string {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const scale = 10n ** BigInt(decimals);
  const whole = abs / scale;
  const fraction = (abs % scale).toString().padStart(decimals, '0').replace(/0+$/, '');
  return (negative ? '-' : '') + whole.toString() + (fraction ? `.${fraction}` : '');
}

/**
 * Parse a non-negative decimal number of any precision (an offer price as the SDK prints it) into an exact
 * fraction `num / den`. Returns undefined for anything else.
 */
export function parseRatio(text: string): { num: bigint; den: bigint } | undefined {
  const m = /^([0-9]+)(?:\.([0-9]+))?$/.exec(text);
  if (!m || text.length > 64) return undefined;
  const fraction = m[2] ?? '';
  return { num: BigInt(m[1]! + fraction), den: 10n ** BigInt(fraction.length) };
}

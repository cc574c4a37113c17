import { coordinatorErrors } from '../errors.ts';

/**
 * Which failures of the `pg` client mean "the database cannot be reached now" (answer 503, retry later) rather
 * than a bug. The pool drops a broken connection and opens a new one on the next query, so once the server is back
 * the next call succeeds without any reconnect logic of ours.
 */

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/**
 * SQLSTATE codes (PostgreSQL manual, appendix A): class 08 connection exceptions; 57P01 admin_shutdown,
 * 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or in recovery); 53300 too_many_connections.
 */
function unavailableSqlState(code: string): boolean {
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300';
}

/** node-postgres reports a lost or never-made connection with these messages and no code. */
const CLIENT_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error',
  'Client was closed and is not queryable',
  'Cannot use a pool after calling end',
];

export function isUnavailable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || unavailableSqlState(code))) return true;
  if (e instanceof AggregateError) return e.errors.some(isUnavailable);
  return CLIENT_MESSAGES.some((m) => e.message.includes(m));
}

/**
 * The error a store call raises for `e`: COORD_STORE_UNAVAILABLE (503) for a connection failure, with the driver's
 * error as cause (its message names no password: node-postgres never puts it in one); any other error unchanged.
 */
export function storeError(e: unknown): Error {
  if (coordinatorErrors.is(e)) return e;
  if (isUnavailable(e)) {
    const reason = (e as { code?: string }).code ?? (e as Error).message;
    return coordinatorErrors.error('COORD_STORE_UNAVAILABLE', { reason }, { cause: e });
  }
  return e instanceof Error ? e : new Error(String(e));
}

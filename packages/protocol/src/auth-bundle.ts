import { createHash } from 'node:crypto';

/**
 * The digest a decision about Soroban auth entries names: sha256 over the concatenated 32-byte payloads of every
 * entry with address credentials, in entry order. A node computes it from the entries it decoded itself, the
 * coordinator from the entries it sent, and the coordinator refuses a decision whose digest differs, so both sides
 * provably reviewed the same entries. One definition for both ends of the wire.
 */
export function authBundleHash(payloads: readonly Uint8Array[]): string {
  const h = createHash('sha256');
  for (const p of payloads) h.update(p);
  return h.digest('hex');
}

import { createHash } from 'node:crypto';
import type { Identity } from './identity.ts';
import { verifyWith } from './identity.ts';

/**
 * Statements of a FROST key generation relayed by the coordinator (docs/architecture.md, "FROST key generation").
 *
 * The coordinator carries every key-generation message between the nodes, so each message a node writes for the
 * others is a statement signed with that node's identity key: `{p, s}`, `p` the JSON text, `s` an ed25519 signature
 * over `"stellar-cosigner/frost-dkg/v1\n" || p`. The domain differs from protocol frames' (frame.ts), so a
 * statement can never pass for a frame or the reverse. The recipients verify it with the identity key their own
 * operator wrote in the node's configuration for that participant, not with one the coordinator supplies: a
 * coordinator that substitutes a key, forges a commitment or alters a package is caught by the signature.
 *
 * Every statement names the session (`dkgId`) and the roster digest (threshold and the ordered participant list
 * with their identity keys), so it cannot be moved to another session or another participant list.
 */

export const DKG_STATEMENT_DOMAIN = Buffer.from('stellar-cosigner/frost-dkg/v1\n');

/** One participant of a key generation, as the coordinator announces it and the node's operator expects it. */
export interface DkgRosterEntry {
  index: number;
  nodeId: string;
  /** base64 raw ed25519 identity key. */
  identityKey: string;
}

/** What a statement says; `kind` tells the step. */
export type DkgStatementBody =
  | { kind: 'transport-key'; transportKey: string }
  | { kind: 'round1'; message: unknown }
  | { kind: 'round2'; to: number; message: unknown }
  | { kind: 'result'; group: unknown; address: string; transcript: string }
  | { kind: 'confirmed'; address: string }
  // A share refresh (its own kinds, so no key-generation statement passes for one; `dkgId` holds the refresh id):
  | { kind: 'refresh-transport-key'; transportKey: string }
  | { kind: 'refresh-round1'; message: unknown }
  | { kind: 'refresh-round2'; to: number; message: unknown }
  | { kind: 'refresh-report'; transcript: string; digest: string; group: unknown }
  | { kind: 'refresh-adopted'; digest: string };

export type DkgStatementPayload = DkgStatementBody & {
  dkgId: string;
  /** rosterDigest(...) hex. */
  roster: string;
  /** The author's participant index and node id. */
  from: number;
  nodeId: string;
};

export interface SignedStatement {
  p: string;
  s: string;
}

/**
 * SHA-256 of the canonical roster: a label, the session id, the threshold and the participants by ascending index
 * with their node ids and identity keys.
 */
export function rosterDigest(dkgId: string, threshold: number, participants: readonly DkgRosterEntry[]): string {
  const members = [...participants].sort((a, b) => a.index - b.index).map((m) => [m.index, m.nodeId, m.identityKey]);
  return createHash('sha256')
    .update(JSON.stringify(['cosigner-frost-dkg-roster/v1', dkgId, threshold, members]), 'utf8')
    .digest('hex');
}

/** Sign a statement with this node's identity key. */
export function signStatement(identity: Identity, payload: DkgStatementPayload): SignedStatement {
  const p = JSON.stringify(payload);
  return { p, s: identity.sign(Buffer.concat([DKG_STATEMENT_DOMAIN, Buffer.from(p)])).toString('base64') };
}

/**
 * Verify a statement under `identityKey` (raw 32 bytes) and parse it.
 * @returns the payload, or undefined when the signature does not verify or the text is not a JSON object
 *   (never throws on bad input: the caller decides whom to blame)
 */
export function openStatement(identityKey: Uint8Array, st: SignedStatement): DkgStatementPayload | undefined {
  if (typeof st?.p !== 'string' || typeof st.s !== 'string') return undefined;
  const sig = Buffer.from(st.s, 'base64');
  if (!verifyWith(identityKey, Buffer.concat([DKG_STATEMENT_DOMAIN, Buffer.from(st.p)]), sig)) return undefined;
  try {
    const v = JSON.parse(st.p) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as DkgStatementPayload) : undefined;
  } catch {
    return undefined;
  }
}

/** The author a statement claims, read WITHOUT verifying it: only to pick the key to verify it with. */
export function peekStatementAuthor(st: SignedStatement): string | undefined {
  try {
    const v = JSON.parse(st.p) as { nodeId?: unknown };
    return typeof v?.nodeId === 'string' ? v.nodeId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The roster digest of a share refresh of group `address`: the key-generation roster under a label naming the
 * refresh and the group, so a refresh statement is bound to its session, its group and its participant list.
 */
export function refreshRosterDigest(
  refreshId: string,
  address: string,
  threshold: number,
  participants: readonly DkgRosterEntry[],
): string {
  return rosterDigest(`refresh/${address}/${refreshId}`, threshold, participants);
}

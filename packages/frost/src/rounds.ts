import type { NonceCommitments, Nonces, RNG } from '@noble/curves/abstract/frost.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { frostErrors } from './errors.ts';
import { array, bytes, hex, int, object, outOfRange, toHex } from './input.ts';
import {
  checkPoint,
  frost,
  type GroupPublic,
  identifierOf,
  indexOf,
  type KeyShare,
  MAX_PARTICIPANTS,
  noblePublic,
  verifyEd25519,
} from './suite.ts';

/**
 * The two signing rounds of RFC 9591 section 5 over a checked group, as pure functions: no state, no I/O. The
 * participant side that records nonces durably and refuses reuse is signer.ts; these are its building blocks
 * and the coordinator's (aggregate, verifyShare).
 */

/** A participant's round-one output (RFC 9591 section 5.1): its two nonce commitments. JSON-safe. */
export interface Commitment {
  index: number;
  hiding: string;
  binding: string;
}

/** The secret nonces behind a Commitment. Used once, then zeroed (signShare does it). */
export interface SigningNonces {
  hiding: Uint8Array;
  binding: Uint8Array;
}

/** Messages are what a node signs: a 32-byte transaction hash in the cluster; up to 1 KiB is accepted here. */
const MAX_MESSAGE = 1024;

export function checkMessage(v: unknown): Uint8Array {
  const m = bytes(v, 'message');
  if (m.length === 0 || m.length > MAX_MESSAGE) throw outOfRange('message', `must be 1-${MAX_MESSAGE} bytes`);
  return m;
}

/**
 * Check a commitment list against the group: t..n entries, distinct participants of the group, 32-byte points,
 * sorted by index (RFC 9591 section 4.3 encodes the list in ascending identifier order). A copy.
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE
 */
export function checkCommitments(group: GroupPublic, value: unknown): Commitment[] {
  const list = array(value, 'commitments').map((c, i): Commitment => {
    const o = object(c, `commitments[${i}]`);
    const index = int(o.index, `commitments[${i}].index`, 1, MAX_PARTICIPANTS);
    if (!group.participants.includes(index)) {
      throw outOfRange(`commitments[${i}].index`, `names ${index}, not a participant of the group`);
    }
    const hiding = hex(o.hiding, `commitments[${i}].hiding`, 32);
    const binding = hex(o.binding, `commitments[${i}].binding`, 32);
    // Checked here, before a participant marks its nonce used: a bad point from the coordinator is refused
    // without costing the round (RFC 9591 section 3.1, DeserializeElement).
    checkPoint(hiding, `commitments[${i}].hiding`);
    checkPoint(binding, `commitments[${i}].binding`);
    return { index, hiding: toHex(hiding), binding: toHex(binding) };
  });
  if (list.length < group.threshold || list.length > group.participants.length) {
    throw outOfRange('commitments', `must hold ${group.threshold} to ${group.participants.length} entries`);
  }
  list.sort((a, b) => a.index - b.index);
  for (let i = 1; i < list.length; i++) {
    if (list[i]!.index === list[i - 1]!.index) throw outOfRange('commitments', `name ${list[i]!.index} twice`);
  }
  return list;
}

function nobleCommitments(list: Commitment[]): NonceCommitments[] {
  return list.map(
    (c) =>
      ({
        identifier: identifierOf(c.index),
        hiding: Uint8Array.from(Buffer.from(c.hiding, 'hex')),
        binding: Uint8Array.from(Buffer.from(c.binding, 'hex')),
      }) as NonceCommitments,
  );
}

/**
 * Round one (RFC 9591 section 5.1, nonce_generate of section 4.1): fresh hiding and binding nonces from 32 random
 * bytes each, hashed with the share, and their commitments. `rng` is for the RFC test vectors only.
 */
export function commitNonces(share: KeyShare, rng?: RNG): { nonces: SigningNonces; commitment: Commitment } {
  const g = frost.commit({ identifier: identifierOf(share.index), signingShare: share.signingShare }, rng);
  return {
    nonces: { hiding: g.nonces.hiding, binding: g.nonces.binding },
    commitment: { index: share.index, hiding: toHex(g.commitments.hiding), binding: toHex(g.commitments.binding) },
  };
}

/**
 * Round two (RFC 9591 section 5.2): this participant's signature share. Refuses a list that does not carry this
 * participant's own commitment for these nonces (section 5.2: "the commitment in the list must be the one it
 * published"), and zeroes `nonces` once used, so the same object cannot sign twice.
 * @throws FROST_COMMITMENT_MISMATCH, FROST_NONCE_REUSED (zeroed nonces), FROST_BAD_INPUT, FROST_OUT_OF_RANGE
 */
export function signShare(
  group: GroupPublic,
  share: KeyShare,
  nonces: SigningNonces,
  commitments: Commitment[],
  message: Uint8Array,
): Uint8Array {
  const list = checkCommitments(group, commitments);
  const msg = checkMessage(message);
  const mine = list.find((c) => c.index === share.index);
  if (!mine) throw frostErrors.error('FROST_COMMITMENT_MISMATCH', { index: share.index, reason: 'absent' });
  if (nonces.hiding.every((b) => b === 0) || nonces.binding.every((b) => b === 0)) {
    throw frostErrors.error('FROST_NONCE_REUSED', { index: share.index });
  }
  const expected = commitFromNonces(share.index, nonces);
  if (expected.hiding !== mine.hiding || expected.binding !== mine.binding) {
    throw frostErrors.error('FROST_COMMITMENT_MISMATCH', { index: share.index, reason: 'different' });
  }
  const out = frost.signShare(
    { identifier: identifierOf(share.index), signingShare: share.signingShare },
    noblePublic(group),
    nonces as Nonces,
    nobleCommitments(list),
    msg,
  );
  return out;
}

/** The commitment of a nonce pair: each nonce x G (RFC 9591 section 5.1, commit). */
function commitFromNonces(index: number, nonces: SigningNonces): Commitment {
  const point = (n: Uint8Array) => toHex(ed25519.Point.BASE.multiply(frost.utils.Fn.fromBytes(n)).toBytes());
  return { index, hiding: point(nonces.hiding), binding: point(nonces.binding) };
}

/**
 * Verify one participant's signature share (RFC 9591 section 5.4). Returns false, never throws, for a bad share.
 */
export function verifyShare(
  group: GroupPublic,
  commitments: Commitment[],
  message: Uint8Array,
  index: number,
  sigShare: Uint8Array,
): boolean {
  return shareVerifies(group, checkCommitments(group, commitments), checkMessage(message), index, sigShare);
}

/** verifyShare over an already checked list and message (the aggregator's loop checks them once). */
function shareVerifies(
  group: GroupPublic,
  list: Commitment[],
  msg: Uint8Array,
  index: number,
  sigShare: Uint8Array,
): boolean {
  if (!list.some((c) => c.index === index) || !(sigShare instanceof Uint8Array) || sigShare.length !== 32) return false;
  try {
    return frost.verifyShare(noblePublic(group), nobleCommitments(list), msg, identifierOf(index), sigShare);
  } catch {
    return false;
  }
}

/**
 * Aggregate (RFC 9591 section 5.3) the shares of the participants in `commitments`, then verify the result as
 * a plain Ed25519 signature under the group key with node:crypto. When the sum does not verify, every share is
 * verified (section 5.4) and those that fail are named.
 * @returns the 64-byte Ed25519 signature
 * @throws FROST_BAD_SIGNATURE_SHARE (details.culprits: indices), FROST_OUT_OF_RANGE (a share missing or extra),
 *   FROST_AGGREGATE_FAILED
 */
export function aggregate(
  group: GroupPublic,
  commitments: Commitment[],
  message: Uint8Array,
  shares: Record<string, Uint8Array>,
): Uint8Array {
  const list = checkCommitments(group, commitments);
  const msg = checkMessage(message);
  const sh = object(shares, 'shares');
  const keys = Object.keys(sh);
  for (const c of list) {
    if (!(String(c.index) in sh)) throw outOfRange('shares', `lack the share of participant ${c.index}`);
  }
  if (keys.length !== list.length) throw outOfRange('shares', 'name a participant without a commitment');
  const byId: Record<string, Uint8Array> = {};
  const malformed: number[] = [];
  for (const c of list) {
    const s = sh[String(c.index)];
    if (!(s instanceof Uint8Array) || s.length !== 32) malformed.push(c.index);
    else byId[identifierOf(c.index)] = s;
  }
  if (malformed.length > 0) {
    throw frostErrors.error('FROST_BAD_SIGNATURE_SHARE', { culprits: malformed, reason: 'malformed' });
  }
  let signature: Uint8Array;
  try {
    signature = frost.aggregate(noblePublic(group), nobleCommitments(list), msg, byId);
  } catch (e) {
    const cheaters = ((e as { cheaters?: string[] }).cheaters ?? []).map(indexOf);
    // noble verifies the shares itself when the sum fails; verify again here so the culprit list never depends
    // on the shape of a library error.
    const bad = list.filter((c) => !shareVerifies(group, list, msg, c.index, byId[identifierOf(c.index)]!));
    const culprits = [...new Set([...cheaters, ...bad.map((c) => c.index)])].sort((a, b) => a - b);
    if (culprits.length > 0) throw frostErrors.error('FROST_BAD_SIGNATURE_SHARE', { culprits });
    throw frostErrors.error('FROST_AGGREGATE_FAILED', {}, { cause: e });
  }
  if (!verifyEd25519(Buffer.from(group.groupPublicKey, 'hex'), msg, signature)) {
    throw frostErrors.error('FROST_AGGREGATE_FAILED', { reason: 'plain Ed25519 verification failed' });
  }
  return signature;
}

import { verifyEd25519 as stellarVerify } from '@cosigner/stellar/verify';
import type { FrostPublic } from '@noble/curves/abstract/frost.js';
import { ed25519, ed25519_FROST } from '@noble/curves/ed25519.js';
import { StrKey } from '@stellar/stellar-sdk/base';
import { array, badType, hex, int, object, outOfRange, toHex } from './input.ts';

/**
 * The ciphersuite: FROST(Ed25519, SHA-512), RFC 9591 section 6.1, as implemented by @noble/curves
 * (`ed25519_FROST`, context string "FROST-ED25519-SHA512-v1"). Its signatures are ordinary RFC 8032 Ed25519
 * signatures (RFC 9591 section 6.1 keeps H2 undecorated for that reason), so a group public key is an ordinary
 * Stellar signer: a `G...` address that stellar-core verifies with libsodium like any other.
 */
export const SUITE = 'FROST-ED25519-SHA512-v1';
export const frost = ed25519_FROST;

/**
 * Participants are numbered 1..n: the number is the RFC 9591 identifier (section 3.1: a non-zero scalar;
 * `Identifier.fromNumber`). 255 is far beyond any cluster and keeps every list small.
 */
export const MAX_PARTICIPANTS = 255;

/** The public result of key generation, the same at every participant and at the coordinator. JSON-safe. */
export interface GroupPublic {
  /** t: how many participants sign. RFC 9591 MIN_PARTICIPANTS; at least 2 (1-of-n is a plain key). */
  threshold: number;
  /** The participants' indices, ascending (1..n for a group from `runDkg`). */
  participants: number[];
  /** The group public key, 32 bytes hex (RFC 8032 encoding). */
  groupPublicKey: string;
  /** The group's VSS commitment, t points hex; `commitments[0]` is the group public key. */
  commitments: string[];
  /** Each participant's verifying share (share x G), by index. */
  verifyingShares: Record<string, string>;
}

/** One participant's secret share. Only in memory while signing; sealed at rest (sealer.ts). */
export interface KeyShare {
  index: number;
  /** 32-byte scalar, little-endian (RFC 9591 SerializeScalar). */
  signingShare: Uint8Array;
}

/** The RFC 9591 identifier (hex scalar) of participant `index`. */
export function identifierOf(index: number): string {
  return frost.Identifier.fromNumber(int(index, 'index', 1, MAX_PARTICIPANTS));
}

/** A decoded point of the curve (edwards25519, extended coordinates). */
export type Point = InstanceType<typeof ed25519.Point>;

/**
 * Decode a 32-byte point and refuse what RFC 9591 section 3.1 (DeserializeElement) refuses: a non-canonical or
 * invalid encoding (`fromBytes` without ZIP 215 follows RFC 8032 section 5.1.3: y < p, no "negative zero"), the
 * identity, and points outside the prime-order subgroup (section 6.1). The subgroup check, a multiplication by
 * the group order, is most of the cost; callers decode each point once per round and pass the point on.
 * @returns the point, valid for use as a public element of the group
 * @throws FROST_OUT_OF_RANGE naming the field
 */
export function decodePoint(b: Uint8Array, field: string): Point {
  let p: Point | undefined;
  try {
    p = ed25519.Point.fromBytes(b);
    if (p.is0() || !p.isTorsionFree()) p = undefined;
  } catch {
    p = undefined;
  }
  if (!p) throw outOfRange(field, 'is not a valid point of the prime-order group');
  return p;
}

/** decodePoint, for callers that only need the check. @throws FROST_OUT_OF_RANGE naming the field */
export function checkPoint(b: Uint8Array, field: string): void {
  decodePoint(b, field);
}

/**
 * The group's own public points (the group key, the verifying shares) are the same in every round, so they are
 * decoded and checked once per process and kept by their encoding: the key of the cache is the hex of the bytes
 * that were checked, so a caller that changes its GroupPublic object gets its new points checked, never an old
 * point. Bounded: emptied when full (a node serves a handful of groups).
 */
const groupPoints = new Map<string, Point>();
const GROUP_POINTS_MAX = 4096;

/** The checked point of a group's public element given as hex. @throws FROST_OUT_OF_RANGE naming the field */
export function groupPoint(hexPoint: string, field: string): Point {
  const hit = groupPoints.get(hexPoint);
  if (hit) return hit;
  const p = decodePoint(hex(hexPoint, field, 32), field);
  if (groupPoints.size >= GROUP_POINTS_MAX) groupPoints.clear();
  groupPoints.set(hexPoint, p);
  return p;
}

/** The participant index of an identifier built by identifierOf. */
export function indexOf(identifier: string): number {
  const b = Buffer.from(identifier, 'hex');
  // Little-endian scalar: small indices sit in the first byte(s), the rest is zero.
  const n = b.readUInt16LE(0);
  if (identifierOf(n) !== identifier) throw outOfRange('identifier', 'is not a participant index');
  return n;
}

/** The Stellar address (StrKey `G...`) of a 32-byte Ed25519 public key. */
export function addressOf(publicKey: Uint8Array): string {
  return StrKey.encodeEd25519PublicKey(Buffer.from(publicKey));
}

/**
 * Ed25519 verification under stellar-core's rules (libsodium `crypto_sign_verify_detached`, via
 * `@cosigner/stellar/verify`): the check the network makes of the group's signature, knowing nothing of FROST.
 * Stricter than plain OpenSSL 3.0, which accepts forgeries under small-order keys. Returns false, never throws.
 */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return stellarVerify(publicKey, message, signature);
}

/**
 * Check a GroupPublic from the wire: shapes, lengths, indices, t <= n, one verifying share per participant,
 * and that `commitments[0]` is the group key. @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE
 */
export function checkGroup(value: unknown): GroupPublic {
  const g = object(value, 'group');
  const participants = array(g.participants, 'group.participants').map((p, i) =>
    int(p, `group.participants[${i}]`, 1, MAX_PARTICIPANTS),
  );
  if (participants.length < 2) throw outOfRange('group.participants', 'must list at least 2 participants');
  for (let i = 1; i < participants.length; i++) {
    if (participants[i]! <= participants[i - 1]!) {
      throw outOfRange('group.participants', 'must be distinct and ascending');
    }
  }
  const threshold = int(g.threshold, 'group.threshold', 2, participants.length);
  const groupPublicKey = toHex(hex(g.groupPublicKey, 'group.groupPublicKey', 32));
  const commitments = array(g.commitments, 'group.commitments').map((c, i) => {
    const b = toHex(hex(c, `group.commitments[${i}]`, 32));
    groupPoint(b, `group.commitments[${i}]`);
    return b;
  });
  if (commitments.length !== threshold) throw outOfRange('group.commitments', `must hold ${threshold} points`);
  if (commitments[0] !== groupPublicKey) throw outOfRange('group.commitments', 'must start with the group key');
  const vs = object(g.verifyingShares, 'group.verifyingShares');
  const verifyingShares: Record<string, string> = {};
  for (const p of participants) {
    const v = vs[String(p)];
    if (v === undefined) throw outOfRange('group.verifyingShares', `lacks participant ${p}`);
    const b = toHex(hex(v, `group.verifyingShares.${p}`, 32));
    groupPoint(b, `group.verifyingShares.${p}`);
    verifyingShares[String(p)] = b;
  }
  if (Object.keys(vs).length !== participants.length) {
    throw outOfRange('group.verifyingShares', 'names a participant outside the group');
  }
  return { threshold, participants, groupPublicKey, commitments, verifyingShares };
}

/** Check a KeyShare against the group: a participant of it, 32 bytes, and share x G equal to its verifying share. */
export function checkShare(group: GroupPublic, value: unknown): KeyShare {
  const s = object(value, 'share');
  const index = int(s.index, 'share.index', 1, MAX_PARTICIPANTS);
  if (!group.participants.includes(index)) throw outOfRange('share.index', `is not a participant of the group`);
  const signingShare = s.signingShare;
  if (!(signingShare instanceof Uint8Array)) throw badType('share.signingShare', 'a Uint8Array');
  if (signingShare.length !== 32) throw outOfRange('share.signingShare', 'must be 32 bytes');
  try {
    // RFC 9591 Appendix C.2 vss_verify against the group's commitment.
    frost.validateSecret({ identifier: identifierOf(index), signingShare }, noblePublic(group));
  } catch {
    throw outOfRange('share.signingShare', 'does not match the group commitment (wrong share or wrong group)');
  }
  return { index, signingShare };
}

/** The @noble/curves form of a checked GroupPublic. */
export function noblePublic(group: GroupPublic): FrostPublic {
  return {
    signers: { min: group.threshold, max: group.participants.length },
    commitments: group.commitments.map((c) => Uint8Array.from(Buffer.from(c, 'hex'))),
    verifyingShares: Object.fromEntries(
      group.participants.map((p) => [
        identifierOf(p),
        Uint8Array.from(Buffer.from(group.verifyingShares[String(p)]!, 'hex')),
      ]),
    ),
  } as FrostPublic;
}

/** The group's Stellar address. */
export function groupAddress(group: GroupPublic): string {
  return addressOf(Buffer.from(group.groupPublicKey, 'hex'));
}

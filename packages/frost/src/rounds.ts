import { createHash } from 'node:crypto';
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js';
import type { RNG } from '@noble/curves/abstract/frost.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { frostErrors } from './errors.ts';
import { array, bytes, hex, int, object, outOfRange, toHex } from './input.ts';
import {
  decodePoint,
  frost,
  type GroupPublic,
  groupPoint,
  identifierOf,
  type KeyShare,
  MAX_PARTICIPANTS,
  type Point,
  SUITE,
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
  return decodeCommitments(group, value).map((e) => e.commitment);
}

/** One entry of a checked commitment list: the JSON form and its two points, decoded and checked once. */
interface Entry {
  commitment: Commitment;
  hiding: Point;
  binding: Point;
}

/**
 * Commitments checked by `checkCommitment`: only objects made here are in it, so a look-alike built elsewhere (a
 * JSON object with `hiding` and `binding` points, say) is never taken for a checked one and gets every check.
 */
const checkedEntries = new WeakSet<object>();

/** A participant's commitment with its two points decoded and checked (RFC 9591 section 3.1), once. Immutable. */
export type CheckedCommitment = Readonly<Entry>;

/**
 * Check one participant's commitment against the group when it arrives (its index a participant, two valid points
 * of the prime-order group, RFC 9591 section 3.1 DeserializeElement) and keep the decoded points: the coordinator
 * checks each commitment as it comes in round one, and passes the checked commitments to `aggregate` rather than
 * having it decode and subgroup-check the same points again (a multiplication by the group order each).
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE naming the field
 */
export function checkCommitment(group: GroupPublic, value: unknown, field = 'commitment'): CheckedCommitment {
  const d = decodeEntry(group, value, field, undefined);
  const e = Object.freeze({ ...d, commitment: Object.freeze({ ...d.commitment }) });
  checkedEntries.add(e);
  return e;
}

function decodeEntry(group: GroupPublic, c: unknown, field: string, own: Commitment | undefined): Entry {
  if (checkedEntries.has(c as object)) {
    // Decoded and checked by checkCommitment: only the group membership of its index is checked again (it was
    // checked against a group object that may not be this one).
    const e = c as Entry;
    if (!group.participants.includes(e.commitment.index)) {
      throw outOfRange(`${field}.index`, `names ${e.commitment.index}, not a participant of the group`);
    }
    return e;
  }
  const o = object(c, field);
  const index = int(o.index, `${field}.index`, 1, MAX_PARTICIPANTS);
  if (!group.participants.includes(index)) {
    throw outOfRange(`${field}.index`, `names ${index}, not a participant of the group`);
  }
  const hiding = hex(o.hiding, `${field}.hiding`, 32);
  const binding = hex(o.binding, `${field}.binding`, 32);
  // Checked here, before a participant marks its nonce used: a bad point from the coordinator is refused
  // without costing the round (RFC 9591 section 3.1, DeserializeElement). The only check of these points in
  // the round: the decoded points are what the binding factors and the group commitment are computed from.
  const commitment = { index, hiding: toHex(hiding), binding: toHex(binding) };
  if (own && own.index === index && own.hiding === commitment.hiding && own.binding === commitment.binding) {
    return { commitment, hiding: ed25519.Point.fromBytes(hiding), binding: ed25519.Point.fromBytes(binding) };
  }
  return {
    commitment,
    hiding: decodePoint(hiding, `${field}.hiding`),
    binding: decodePoint(binding, `${field}.binding`),
  };
}

/**
 * checkCommitments, keeping the decoded points. `own`, when given, is a commitment this process computed itself
 * in round one as nonce x G (FrostSigner holds it beside its nonces): an entry equal to it byte for byte is a
 * multiple of the base point, so in the prime-order subgroup and not the identity (the nonces are non-zero
 * scalars), and is decoded without the subgroup check. An entry made by `checkCommitment` is taken with its
 * points as checked then. Any other entry, including one under the same index that differs, gets every check.
 */
function decodeCommitments(group: GroupPublic, value: unknown, own?: Commitment): Entry[] {
  const list = array(value, 'commitments').map((c, i) => decodeEntry(group, c, `commitments[${i}]`, own));
  if (list.length < group.threshold || list.length > group.participants.length) {
    throw outOfRange('commitments', `must hold ${group.threshold} to ${group.participants.length} entries`);
  }
  list.sort((a, b) => a.commitment.index - b.commitment.index);
  for (let i = 1; i < list.length; i++) {
    const index = list[i]!.commitment.index;
    if (index === list[i - 1]!.commitment.index) throw outOfRange('commitments', `name ${index} twice`);
  }
  return list;
}

/*
 * RFC 9591 sections 4.2-4.6 (binding factors, group commitment, challenge, Lagrange coefficients) and the
 * round-two and aggregation formulas of sections 5.2-5.4, computed here on @noble/curves' point and scalar
 * primitives instead of through `ed25519_FROST.signShare` / `verifyShare` / `aggregate`. Why: those functions take
 * the commitment list as bytes and decode and subgroup-check every point again on each call (and the group key,
 * and each verifying share), which was most of the cost of a round (each check is a multiplication by the group
 * order); the aggregate also ran a pure-JavaScript Schnorr check before the node:crypto one. Here each point is
 * checked once per round (decodeCommitments), the group's own points once per process (suite.ts groupPoint),
 * and the binding factors, group commitment and challenge once per round (Round.derive). The RFC 9591
 * Appendix E.1 vectors (test/vectors.test.ts) pass through these functions byte for byte.
 */

const Fn = frost.utils.Fn;
const G = ed25519.Point.BASE;
const CONTEXT = Buffer.from(SUITE, 'utf8');
const RHO = Buffer.concat([CONTEXT, Buffer.from('rho')]);
const MSG = Buffer.concat([CONTEXT, Buffer.from('msg')]);
const COM = Buffer.concat([CONTEXT, Buffer.from('com')]);

function sha512(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** A 64-byte digest as a scalar: little-endian integer mod L (RFC 9591 section 6.1, H1 and H2). */
function scalarOf(digest: Buffer): bigint {
  return Fn.create(BigInt(`0x${Buffer.from(digest).reverse().toString('hex')}`));
}

/** SerializeScalar of participant `index`'s identifier (the scalar `index`, RFC 9591 section 3.1). */
const idBytes = (index: number): Uint8Array => Fn.toBytes(BigInt(index));

/** What every role computes from a checked list and message, once per round. */
interface Derived {
  /** SerializeElement(group commitment R): the first half of the signature. */
  commitmentBytes: Uint8Array;
  /** The challenge c = H2(R || group key || message) (section 4.6). */
  challenge: bigint;
  /** Binding factor rho_i by index (section 4.4). */
  bindingFactors: Map<number, bigint>;
}

/** A checked signing round: the group, the commitment list with its decoded points, and the message. */
class Round {
  readonly #entries: Entry[];
  #derived: Derived | undefined;

  constructor(
    readonly group: GroupPublic,
    entries: Entry[],
    readonly message: Uint8Array,
  ) {
    this.#entries = entries;
  }

  get list(): Commitment[] {
    return this.#entries.map((e) => e.commitment);
  }

  entry(index: number): Entry | undefined {
    return this.#entries.find((e) => e.commitment.index === index);
  }

  derive(): Derived {
    if (this.#derived) return this.#derived;
    // The group key as a checked point (once per process), serialized as its checked encoding.
    groupPoint(this.group.groupPublicKey, 'group.groupPublicKey');
    const key = Buffer.from(this.group.groupPublicKey, 'hex');
    // Section 4.3 encode_group_commitment_list: the decoded encodings are canonical (RFC 8032 section 5.1.3),
    // so they are SerializeElement of their points.
    const encoded: Uint8Array[] = [];
    for (const e of this.#entries) {
      const c = e.commitment;
      encoded.push(idBytes(c.index), Buffer.from(c.hiding, 'hex'), Buffer.from(c.binding, 'hex'));
    }
    // Section 4.4 compute_binding_factors: rho_input_prefix = group key || H4(msg) || H5(encoded list).
    const prefix = Buffer.concat([key, sha512(MSG, this.message), sha512(COM, ...encoded)]);
    const bindingFactors = new Map<number, bigint>();
    for (const e of this.#entries) {
      const index = e.commitment.index;
      bindingFactors.set(index, scalarOf(sha512(RHO, prefix, idBytes(index))));
    }
    // Section 4.5 compute_group_commitment: sum of hiding_i + rho_i * binding_i. Every point and scalar here is
    // public (the commitments are published, the binding factors are hashes of public values), so the
    // variable-time multi-scalar multiplication is safe; the hiding points carry the scalar 1 and are added.
    let hidingSum = ed25519.Point.ZERO;
    for (const e of this.#entries) hidingSum = hidingSum.add(e.hiding);
    const bound = mulAddUnsafe(
      ed25519.Point,
      this.#entries.map((e) => e.binding),
      this.#entries.map((e) => bindingFactors.get(e.commitment.index)!),
    );
    const commitmentBytes = hidingSum.add(bound).toBytes();
    // Section 4.6 compute_challenge; section 6.1 keeps H2 undecorated (plain Ed25519).
    const challenge = scalarOf(sha512(commitmentBytes, key, this.message));
    this.#derived = { commitmentBytes, challenge, bindingFactors };
    return this.#derived;
  }

  /** Section 4.2 derive_interpolating_value: lambda_i over the participants of this list. */
  lambda(index: number): bigint {
    const xi = BigInt(index);
    let num = Fn.ONE;
    let den = Fn.ONE;
    for (const e of this.#entries) {
      const x = BigInt(e.commitment.index);
      if (x === xi) continue;
      num = Fn.mul(num, x);
      den = Fn.mul(den, Fn.sub(x, xi));
    }
    return Fn.div(num, den);
  }

  /**
   * Section 5.4 verify_signature_share: z_i * G == hiding_i + rho_i * binding_i + (c * lambda_i) * Y_i. Every
   * input is public (the share is sent to the coordinator), so the variable-time multiplications are safe.
   */
  shareVerifies(index: number, sigShare: Uint8Array): boolean {
    const e = this.entry(index);
    if (!e || !(sigShare instanceof Uint8Array) || sigShare.length !== 32) return false;
    let z: bigint;
    try {
      z = Fn.fromBytes(sigShare);
    } catch {
      return false;
    }
    const { challenge, bindingFactors } = this.derive();
    const share = groupPoint(this.group.verifyingShares[String(index)]!, `group.verifyingShares.${index}`);
    const rhs = e.hiding.add(
      mulAddUnsafe(
        ed25519.Point,
        [e.binding, share],
        [bindingFactors.get(index)!, Fn.mul(challenge, this.lambda(index))],
      ),
    );
    return G.multiplyUnsafe(z).equals(rhs);
  }
}

/**
 * Check a signing round once: the commitment list against the group (every point decoded and checked, but for
 * `own`: see decodeCommitments) and the message. The result is what signRound, aggregate and verifyShare work from.
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE
 */
export function checkRound(group: GroupPublic, commitments: unknown, message: unknown, own?: Commitment): Round {
  const entries = decodeCommitments(group, commitments, own);
  return new Round(group, entries, checkMessage(message));
}

export type { Round };

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
  return signRound(checkRound(group, commitments, message), share, nonces);
}

/**
 * signShare over a checked round. `published`, when the caller holds it, is the commitment this participant
 * issued for these nonces in round one (FrostSigner keeps it beside them): the list's entry is compared with it.
 * Without it the commitment is derived again from the nonces (two constant-time base-point multiplications).
 */
export function signRound(round: Round, share: KeyShare, nonces: SigningNonces, published?: Commitment): Uint8Array {
  const mine = round.entry(share.index)?.commitment;
  if (!mine) throw frostErrors.error('FROST_COMMITMENT_MISMATCH', { index: share.index, reason: 'absent' });
  if (nonces.hiding.every((b) => b === 0) || nonces.binding.every((b) => b === 0)) {
    throw frostErrors.error('FROST_NONCE_REUSED', { index: share.index });
  }
  const expected = published ?? commitFromNonces(share.index, nonces);
  if (expected.index !== share.index || expected.hiding !== mine.hiding || expected.binding !== mine.binding) {
    throw frostErrors.error('FROST_COMMITMENT_MISMATCH', { index: share.index, reason: 'different' });
  }
  const { challenge, bindingFactors } = round.derive();
  // Section 5.2 sign: z_i = d_i + e_i * rho_i + lambda_i * s_i * c (mod L). Scalar arithmetic only: the secret
  // nonces and share are never multiplied with a point here.
  const d = Fn.fromBytes(nonces.hiding);
  const e = Fn.fromBytes(nonces.binding);
  const s = Fn.fromBytes(share.signingShare);
  const z = Fn.add(
    Fn.add(d, Fn.mul(e, bindingFactors.get(share.index)!)),
    Fn.mul(Fn.mul(round.lambda(share.index), s), challenge),
  );
  nonces.hiding.fill(0);
  nonces.binding.fill(0);
  return Fn.toBytes(z);
}

/**
 * The commitment of a nonce pair: each nonce x G (RFC 9591 section 5.1, commit). The nonces are secret: the
 * constant-time `multiply` (noble's precomputed base-point table), never `multiplyUnsafe`.
 */
function commitFromNonces(index: number, nonces: SigningNonces): Commitment {
  const point = (n: Uint8Array) => toHex(G.multiply(Fn.fromBytes(n)).toBytes());
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
  return checkRound(group, commitments, message).shareVerifies(index, sigShare);
}

/**
 * Aggregate (RFC 9591 section 5.3) the shares of the participants in `commitments`, then verify the result as
 * a plain Ed25519 signature under the group key with node:crypto (under stellar-core's rules: what the network
 * checks). When the sum does not verify, every share is verified (section 5.4) and those that fail are named.
 * Entries of `commitments` made by `checkCommitment` are used with the points checked then; any other entry is
 * decoded and checked here.
 * @returns the 64-byte Ed25519 signature
 * @throws FROST_BAD_SIGNATURE_SHARE (details.culprits: indices), FROST_OUT_OF_RANGE (a share missing or extra),
 *   FROST_AGGREGATE_FAILED
 */
export function aggregate(
  group: GroupPublic,
  commitments: readonly (Commitment | CheckedCommitment)[],
  message: Uint8Array,
  shares: Record<string, Uint8Array>,
): Uint8Array {
  const round = checkRound(group, commitments, message);
  const list = round.list;
  const sh = object(shares, 'shares');
  const keys = Object.keys(sh);
  for (const c of list) {
    if (!(String(c.index) in sh)) throw outOfRange('shares', `lack the share of participant ${c.index}`);
  }
  if (keys.length !== list.length) throw outOfRange('shares', 'name a participant without a commitment');
  const byIndex = new Map<number, Uint8Array>();
  const malformed: number[] = [];
  let z = Fn.ZERO;
  for (const c of list) {
    const s = sh[String(c.index)];
    let zi: bigint | undefined;
    try {
      // SerializeScalar is canonical: a share of 32 bytes that is not below L is refused, not reduced.
      if (s instanceof Uint8Array && s.length === 32) zi = Fn.fromBytes(s);
    } catch {
      zi = undefined;
    }
    if (zi === undefined) malformed.push(c.index);
    else {
      byIndex.set(c.index, s as Uint8Array);
      z = Fn.add(z, zi);
    }
  }
  if (malformed.length > 0) {
    throw frostErrors.error('FROST_BAD_SIGNATURE_SHARE', { culprits: malformed, reason: 'malformed' });
  }
  const signature = Buffer.concat([round.derive().commitmentBytes, Fn.toBytes(z)]);
  if (!verifyEd25519(Buffer.from(group.groupPublicKey, 'hex'), round.message, signature)) {
    const culprits = list.filter((c) => !round.shareVerifies(c.index, byIndex.get(c.index)!)).map((c) => c.index);
    if (culprits.length > 0) throw frostErrors.error('FROST_BAD_SIGNATURE_SHARE', { culprits });
    throw frostErrors.error('FROST_AGGREGATE_FAILED', { reason: 'plain Ed25519 verification failed' });
  }
  return new Uint8Array(signature);
}

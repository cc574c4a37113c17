import { createHash } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { openFrom, sealTo } from './channel.ts';
import {
  checkComplete,
  checkEnvelope,
  checkSession,
  type DkgMember,
  memberKeys,
  round2Aad,
  type SessionContext,
} from './dkg.ts';
import { frostErrors } from './errors.ts';
import { array, hex, int, object, outOfRange, toHex } from './input.ts';
import {
  addressOf,
  checkGroup,
  checkPoint,
  checkShare,
  frost,
  type GroupPublic,
  type KeyShare,
  MAX_PARTICIPANTS,
  SUITE,
} from './suite.ts';

/**
 * Proactive share refresh (Herzberg, Jarecki, Krawczyk and Yung, "Proactive Secret Sharing", CRYPTO 1995, section
 * 3.2; the same construction as frost-rs's `keys::refresh` DKG variant): the same participants replace their
 * shares with new ones of the same group key. Each participant deals a random sharing of zero, a polynomial
 * f_j of degree t-1 with f_j(0) = 0, commits to its coefficients a_1..a_{t-1} (the constant term is zero by
 * construction, so it is not sent), and sends f_j(i) to every other participant i; a participant's new share
 * is its old share plus f_j(i) summed over every participant j, itself included. The sum of sharings of zero is a
 * sharing of zero: the group key (the constant term) is unchanged, while the other coefficients, and so every
 * share, are new. A share stolen before the refresh combines with none taken after it: fewer than t shares of
 * one epoch, and any number of another, reveal nothing (the attacker must gather t shares within one epoch).
 *
 * Why built here: @noble/curves 2.4.0's `ed25519_FROST` offers key generation with a dealer and without
 * (`trustedDealer`, `DKG`), signing and `combineSecret`, and no refresh or repair (abstract/frost.js). The DKG
 * functions cannot be reused for a zero sharing: `DKG.round1` draws a non-zero constant term (its polynomial
 * sampler refuses zero scalars) and `DKG.round3` adds the constant-term commitments into a new group key. So
 * this module uses the curve (`ed25519.Point`), the field (`frost.utils.Fn`) and the package's own primitives:
 * the node-to-node channel (channel.ts), the message checks and culprit naming of the DKG (dkg.ts), and
 * `checkShare` (RFC 9591 Appendix C.2 vss_verify) for the result.
 *
 * No proof of knowledge is needed (the DKG's is there to stop a rogue constant term choosing the group key; here
 * every constant term is zero). A participant that sends a share off its own commitment is named
 * (FROST_DKG_BAD_SHARE) by the recipient, which checks f_j(i)·G = Σ_k i^k·C_{j,k} for every sender.
 *
 * Adoption is two-phase, and this module is the first: every participant computes its new share and the new
 * group (`groupDigest`), and keeps its old sealed share until every participant reported the same digest;
 * only then do they switch (an old share and a new one do not sign together).
 */

const Point = ed25519.Point;
const Fn = frost.utils.Fn;

export interface RefreshSession {
  /** Unique per refresh: 1-64 characters of [A-Za-z0-9._:-]. */
  sessionId: string;
  /** The group as it is now (before this refresh). */
  group: GroupPublic;
  /** Every participant of the group, each with its transport key: a refresh keeps the same participants. */
  members: DkgMember[];
}

export interface RefreshRound1Message {
  type: 'frost-refresh-1';
  sessionId: string;
  /** The session digest, hex. */
  session: string;
  from: number;
  /** Commitments to the coefficients a_1..a_{t-1} of the sender's sharing of zero: t-1 points, hex. */
  commitment: string[];
}

export interface RefreshRound2Message {
  type: 'frost-refresh-2';
  sessionId: string;
  session: string;
  from: number;
  to: number;
  /** AES-GCM IV (12 bytes) and ciphertext with its tag, hex (channel.ts). */
  iv: string;
  ciphertext: string;
}

export interface RefreshOutput {
  /** The group after the refresh: the same key and participants, new commitments and verifying shares. */
  group: GroupPublic;
  /** The group public key as a Stellar signer: the same as before. */
  address: string;
  /** This participant's new share: seal it; keep the old sealed share until every participant has the same group. */
  share: KeyShare;
  /** Digest of the round-1 transcript (hex): equal at every participant of a successful refresh. */
  transcript: string;
}

/**
 * Check a refresh session: a valid group, a valid member list (checkSession) naming exactly the group's
 * participants. @returns a copy, members ascending @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE
 */
export function checkRefreshSession(value: unknown): RefreshSession {
  const s = object(value, 'session');
  const group = checkGroup(s.group);
  const { sessionId, members } = checkSession({
    sessionId: s.sessionId,
    threshold: group.threshold,
    members: s.members,
  });
  if (members.map((m) => m.index).join(',') !== group.participants.join(',')) {
    throw outOfRange('session.members', "must be exactly the group's participants (a refresh keeps them)");
  }
  return { sessionId, group, members };
}

/** SHA-256 of a group's public data: what every participant compares after a refresh before adopting it. */
export function groupDigest(group: GroupPublic): string {
  const canonical = JSON.stringify([
    SUITE,
    'group/v1',
    group.threshold,
    group.participants,
    group.commitments,
    group.participants.map((p) => group.verifyingShares[String(p)]),
  ]);
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** What each participant reports after round 3, before anyone adopts the new share. */
export interface RefreshReport {
  index: number;
  /** RefreshOutput.transcript */
  transcript: string;
  /** groupDigest(RefreshOutput.group) */
  group: string;
}

/**
 * The adoption decision of a refresh (its second phase): adopt only when every participant reported the same
 * transcript and group, since an old share and a new one do not sign together. Otherwise every participant keeps
 * its old share, and the answer names who did not report and whose report differs from the most common one (a
 * participant that saw a different round 1, or lies about its result).
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE (a malformed report, or one from outside the session)
 */
export function decideRefresh(
  session: RefreshSession,
  reports: RefreshReport[],
): { adopt: true; group: string; transcript: string } | { adopt: false; missing: number[]; disagreeing: number[] } {
  const s = checkRefreshSession(session);
  const byIndex = new Map<number, string>();
  array(reports, 'reports').forEach((raw, i) => {
    const r = object(raw, `reports[${i}]`);
    const index = int(r.index, `reports[${i}].index`, 1, MAX_PARTICIPANTS);
    if (!s.group.participants.includes(index)) throw outOfRange(`reports[${i}].index`, 'is not a participant');
    if (byIndex.has(index)) throw outOfRange(`reports[${i}].index`, `repeats participant ${index}`);
    const transcript = toHex(hex(r.transcript, `reports[${i}].transcript`, 32));
    const group = toHex(hex(r.group, `reports[${i}].group`, 32));
    byIndex.set(index, `${transcript}:${group}`);
  });
  const missing = s.group.participants.filter((p) => !byIndex.has(p));
  const counts = new Map<string, number>();
  for (const v of byIndex.values()) counts.set(v, (counts.get(v) ?? 0) + 1);
  const common = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  const disagreeing = [...byIndex.entries()]
    .filter(([, v]) => v !== common)
    .map(([i]) => i)
    .sort((a, b) => a - b);
  if (missing.length > 0 || disagreeing.length > 0 || common === undefined)
    return { adopt: false, missing, disagreeing };
  const [transcript, group] = common.split(':') as [string, string];
  return { adopt: true, group, transcript };
}

/** SHA-256 of the canonical refresh session: its own domain, so no DKG message or key is valid here. */
export function refreshDigest(session: RefreshSession): Uint8Array {
  const canonical = JSON.stringify([
    SUITE,
    'refresh/v1',
    session.sessionId,
    groupDigest(session.group),
    session.members.map((m) => [m.index, m.nodeId, m.transportKey]),
  ]);
  return createHash('sha256').update(canonical, 'utf8').digest();
}

/** Σ_{k=1}^{t-1} a_k·x^k: a sharing of zero evaluated at participant x. */
function evalZero(coefficients: bigint[], x: number): bigint {
  const X = BigInt(x);
  let acc = Fn.ZERO;
  let power = Fn.ONE;
  for (const a of coefficients) {
    power = Fn.mul(power, X);
    acc = Fn.add(acc, Fn.mul(a, power));
  }
  return acc;
}

/** Σ_k x^k·C_k over commitments C_1..C_{t-1} (public: variable time is fine). */
function evalCommitment(commitment: InstanceType<typeof Point>[], x: number): InstanceType<typeof Point> {
  const X = BigInt(x);
  let acc = Point.ZERO;
  let power = Fn.ONE;
  for (const c of commitment) {
    power = Fn.mul(power, X);
    acc = acc.add(c.multiplyUnsafe(power));
  }
  return acc;
}

/** A random non-zero scalar from the library's sampler (its non-zero policy keeps the polynomial's degree). */
function randomScalar(): bigint {
  return Fn.fromBytes(frost.utils.randomScalar());
}

type State = 'new' | 'round1' | 'round2' | 'done' | 'failed';

/** One participant's side of a refresh session. Not reusable: one instance, one session. */
export class RefreshParticipant {
  readonly session: RefreshSession;
  readonly index: number;
  readonly #digest: Uint8Array;
  readonly #ctx: SessionContext;
  readonly #transportSecret: Uint8Array;
  #state: State = 'new';
  #coefficients: bigint[] = [];
  #commitments: Map<number, InstanceType<typeof Point>[]> = new Map();
  #transcript: Uint8Array | undefined;

  /**
   * @param transportSecretKey this node's X25519 secret; its public key must be this member's `transportKey`
   * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE (not a member, or a transport key that is not this member's)
   */
  constructor(p: { session: RefreshSession; index: number; transportSecretKey: Uint8Array }) {
    this.session = checkRefreshSession(p.session);
    ({ index: this.index, transportSecret: this.#transportSecret } = memberKeys(this.session, p));
    this.#digest = refreshDigest(this.session);
    this.#ctx = {
      sessionId: this.session.sessionId,
      digest: toHex(this.#digest),
      members: this.session.members.map((m) => m.index),
      self: this.index,
    };
  }

  get state(): State {
    return this.#state;
  }

  /** The round-1 transcript digest (hex) once round 2 ran: equal at every member who saw the same round 1. */
  get transcript(): string | undefined {
    return this.#transcript && toHex(this.#transcript);
  }

  #expect(state: State, round: number): void {
    if (this.#state !== state) {
      throw frostErrors.error('FROST_ROUND_ORDER', { round, state: this.#state, sessionId: this.session.sessionId });
    }
  }

  #wipe(): void {
    // Best effort, as the DKG does: JavaScript may keep copies of big integers.
    for (let i = 0; i < this.#coefficients.length; i++) this.#coefficients[i]! -= this.#coefficients[i]!;
    this.#coefficients = [];
  }

  #fail(e: Error): Error {
    this.#state = 'failed';
    this.#wipe();
    return e;
  }

  /** Abort the session and erase its secret state. */
  abort(): void {
    this.#state = 'failed';
    this.#wipe();
  }

  #member(index: number): DkgMember {
    return this.session.members.find((m) => m.index === index)!;
  }

  #aad(from: number, to: number): Uint8Array {
    return round2Aad(this.#digest, this.#transcript!, from, to);
  }

  /** Round 1: commit to this participant's sharing of zero, for every other participant. */
  round1(): RefreshRound1Message {
    this.#expect('new', 1);
    this.#coefficients = Array.from({ length: this.session.group.threshold - 1 }, randomScalar);
    const commitment = this.#coefficients.map((a) => Point.BASE.multiply(a));
    this.#commitments.set(this.index, commitment);
    this.#state = 'round1';
    return {
      type: 'frost-refresh-1',
      sessionId: this.session.sessionId,
      session: this.#ctx.digest,
      from: this.index,
      commitment: commitment.map((c) => toHex(c.toBytes())),
    };
  }

  /**
   * Round 2: check every other member's commitment, then encrypt this participant's f(to) for each of them.
   * @throws FROST_ROUND_ORDER, FROST_SESSION_MISMATCH, FROST_DKG_MISSING_MESSAGE, FROST_OUT_OF_RANGE (a commitment
   *   of the wrong length or with a bad point: `details.culprits` names its sender)
   */
  round2(received: RefreshRound1Message[]): RefreshRound2Message[] {
    this.#expect('round1', 2);
    try {
      const t = this.session.group.threshold;
      const froms: number[] = [];
      const parsed: [number, InstanceType<typeof Point>[]][] = [];
      array(received, 'round1').forEach((raw, i) => {
        const field = `round1[${i}]`;
        const m = object(raw, field);
        const from = checkEnvelope(this.#ctx, m, 'frost-refresh-1', field);
        froms.push(from);
        try {
          const commitment = array(m.commitment, `${field}.commitment`);
          if (commitment.length !== t - 1) {
            throw outOfRange(
              `${field}.commitment`,
              `must hold ${t - 1} points (threshold - 1), not ${commitment.length}`,
            );
          }
          parsed.push([
            from,
            commitment.map((c, j) => {
              const b = hex(c, `${field}.commitment[${j}]`, 32);
              checkPoint(b, `${field}.commitment[${j}]`);
              return Point.fromBytes(b);
            }),
          ]);
        } catch (e) {
          const f = e as { details?: Record<string, unknown> };
          if (f.details) f.details.culprits = [from];
          throw e;
        }
      });
      checkComplete(this.#ctx, froms, 1);
      for (const [from, c] of parsed) this.#commitments.set(from, c);
      this.#transcript = this.#transcriptDigest();
      const out: RefreshRound2Message[] = [];
      for (const m of this.session.members) {
        if (m.index === this.index) continue;
        const share = Fn.toBytes(evalZero(this.#coefficients, m.index));
        let sealed: ReturnType<typeof sealTo>;
        try {
          sealed = sealTo({
            ourSecret: this.#transportSecret,
            theirPublic: Buffer.from(m.transportKey, 'hex'),
            salt: this.#digest,
            from: this.index,
            to: m.index,
            aad: this.#aad(this.index, m.index),
            plaintext: share,
          });
        } catch (cause) {
          throw frostErrors.error(
            'FROST_OUT_OF_RANGE',
            { field: 'session.members.transportKey', culprits: [m.index] },
            { message: `The transport key of member ${m.index} is not a usable X25519 public key.`, cause },
          );
        } finally {
          share.fill(0);
        }
        out.push({
          type: 'frost-refresh-2',
          sessionId: this.session.sessionId,
          session: this.#ctx.digest,
          from: this.index,
          to: m.index,
          iv: toHex(sealed.iv),
          ciphertext: toHex(sealed.ciphertext),
        });
      }
      this.#state = 'round2';
      return out;
    } catch (e) {
      throw this.#fail(e as Error);
    }
  }

  /** SHA-256 over the session digest and every member's commitment in index order. */
  #transcriptDigest(): Uint8Array {
    const h = createHash('sha256').update(this.#digest);
    for (const m of this.session.members) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(m.index);
      h.update(b);
      for (const c of this.#commitments.get(m.index)!) h.update(c.toBytes());
    }
    return h.digest();
  }

  /**
   * Round 3: open the zero-share every other member sent, check each against its sender's commitment, and add
   * them all (own included) to the old share. The old share comes in only now, unsealed for this step.
   * @param received the round-2 messages addressed to this participant, one from every other member
   * @param share this participant's current share (checked against the session's group)
   * @throws FROST_ROUND_ORDER, FROST_SESSION_MISMATCH, FROST_DKG_MISSING_MESSAGE, FROST_DKG_UNAUTHENTIC (suspects),
   *   FROST_DKG_BAD_SHARE (culprits), FROST_OUT_OF_RANGE (a share that is not this participant's in the group)
   */
  round3(received: RefreshRound2Message[], share: KeyShare): RefreshOutput {
    this.#expect('round2', 3);
    try {
      const old = checkShare(this.session.group, share);
      if (old.index !== this.index) throw outOfRange('share.index', `must be ${this.index}, this participant`);
      const froms: number[] = [];
      const packages: { from: number; iv: Uint8Array; ciphertext: Uint8Array }[] = [];
      array(received, 'round2').forEach((raw, i) => {
        const field = `round2[${i}]`;
        const m = object(raw, field);
        const from = checkEnvelope(this.#ctx, m, 'frost-refresh-2', field);
        if (int(m.to, `${field}.to`, 1, MAX_PARTICIPANTS) !== this.index) {
          throw frostErrors.error('FROST_SESSION_MISMATCH', { field, to: m.to, reason: 'addressed to another member' });
        }
        froms.push(from);
        packages.push({
          from,
          iv: hex(m.iv, `${field}.iv`, 12),
          ciphertext: hex(m.ciphertext, `${field}.ciphertext`, 48),
        });
      });
      checkComplete(this.#ctx, froms, 2);
      const unauthentic: number[] = [];
      const bad: number[] = [];
      let sum = evalZero(this.#coefficients, this.index);
      for (const p of packages) {
        const opened = openFrom({
          ourSecret: this.#transportSecret,
          theirPublic: Buffer.from(this.#member(p.from).transportKey, 'hex'),
          salt: this.#digest,
          from: p.from,
          to: this.index,
          aad: this.#aad(p.from, this.index),
          sealed: { iv: p.iv, ciphertext: p.ciphertext },
        });
        if (!opened) {
          unauthentic.push(p.from);
          continue;
        }
        // Fn.fromBytes refuses a non-canonical scalar (>= the group order): that is a bad share too.
        let z: bigint | undefined;
        try {
          z = Fn.fromBytes(opened);
        } catch {
          z = undefined;
        } finally {
          opened.fill(0);
        }
        const expected = evalCommitment(this.#commitments.get(p.from)!, this.index);
        if (z === undefined || !(z === Fn.ZERO ? Point.ZERO : Point.BASE.multiply(z)).equals(expected)) {
          bad.push(p.from);
          continue;
        }
        sum = Fn.add(sum, z);
      }
      if (unauthentic.length > 0) {
        throw frostErrors.error('FROST_DKG_UNAUTHENTIC', { suspects: unauthentic, culprits: unauthentic });
      }
      if (bad.length > 0) throw frostErrors.error('FROST_DKG_BAD_SHARE', { culprits: bad });
      const signingShare = Fn.toBytes(Fn.add(Fn.fromBytes(old.signingShare), sum));
      sum -= sum;
      this.#wipe();
      const group = this.#newGroup();
      // The result must be a share of the same key under the new commitments (vss_verify, RFC 9591 C.2).
      const next = checkShare(group, { index: this.index, signingShare });
      this.#state = 'done';
      return {
        group,
        address: addressOf(Buffer.from(group.groupPublicKey, 'hex')),
        share: next,
        transcript: toHex(this.#transcript!),
      };
    } catch (e) {
      throw this.#fail(e as Error);
    }
  }

  /** The old commitments plus every participant's zero-sharing commitments; the constant term stays. */
  #newGroup(): GroupPublic {
    const old = this.session.group;
    const commitments = old.commitments.map((c) => Point.fromBytes(Buffer.from(c, 'hex')));
    for (const c of this.#commitments.values()) {
      for (let k = 0; k < c.length; k++) commitments[k + 1] = commitments[k + 1]!.add(c[k]!);
    }
    const verifyingShares: Record<string, string> = {};
    for (const p of old.participants) {
      verifyingShares[String(p)] = toHex(commitments[0]!.add(evalCommitment(commitments.slice(1), p)).toBytes());
    }
    // checkGroup refuses an identity point (a sum that cancelled): the refresh fails rather than weaken the group.
    return checkGroup({
      threshold: old.threshold,
      participants: [...old.participants],
      groupPublicKey: old.groupPublicKey,
      commitments: commitments.map((c) => toHex(c.toBytes())),
      verifyingShares,
    });
  }
}

import { createHash } from 'node:crypto';
import type { DKG_Round1, DKG_Round2, DKG_Secret } from '@noble/curves/abstract/frost.js';
import { openFrom, sealTo, TRANSPORT_KEY_BYTES, transportPublicKey } from './channel.ts';
import { frostErrors } from './errors.ts';
import { array, bytes, hex, int, name, object, outOfRange, string, toHex } from './input.ts';
import {
  addressOf,
  frost,
  type GroupPublic,
  identifierOf,
  indexOf,
  type KeyShare,
  MAX_PARTICIPANTS,
  SUITE,
} from './suite.ts';

/**
 * Distributed key generation without a dealer: the three rounds of the Pedersen DKG with proofs of knowledge
 * (FROST paper, Komlo and Goldberg 2020, figure 1; RFC 9591 leaves key generation out of scope, and @noble/curves
 * implements this split-round form, as frost-rs does), with what a relayed deployment needs around it:
 *
 * - every message names its session and carries the session digest: a hash of the suite, the session id, the
 *   threshold and the ordered participant list with each participant's transport key; a message of another
 *   session or another list is refused (FROST_SESSION_MISMATCH);
 * - round-2 packages (the secret shares) are encrypted and authenticated from node to node (channel.ts): the
 *   associated data binds the session digest, the digest of the round-1 transcript as the sender saw it, the
 *   sender and the recipient. The relay (the coordinator) can neither read nor alter them, and if it showed
 *   different round-1 messages to different nodes, their packages fail authentication and the session aborts;
 * - failures name the culprit where the protocol can: a round-1 proof that does not verify (FROST_DKG_BAD_PROOF),
 *   a round-2 share that does not match its sender's commitment (FROST_DKG_BAD_SHARE), a missing or duplicated
 *   message (FROST_DKG_MISSING_MESSAGE). A package that fails authentication (FROST_DKG_UNAUTHENTIC) names its
 *   sender as a suspect: the sender or the relay altered it, and the protocol cannot tell which.
 *
 * The result is the group's public data (GroupPublic, the same at every participant: compare `transcript` and
 * `group`), and this participant's share, which the caller seals at once (sealer.ts) and keeps nowhere else.
 */

export interface DkgMember {
  /** RFC 9591 identifier number, 1..255, unique in the session. */
  index: number;
  /** The node's id in the cluster, for messages and culprits. */
  nodeId: string;
  /** The node's X25519 transport public key, 32 bytes hex (channel.ts). */
  transportKey: string;
}

export interface DkgSession {
  /** Unique per key generation: 1-64 characters of [A-Za-z0-9._:-]. */
  sessionId: string;
  threshold: number;
  /** The participants; the order given does not matter, the digest uses ascending index. */
  members: DkgMember[];
}

export interface DkgRound1Message {
  type: 'frost-dkg-1';
  sessionId: string;
  /** The session digest, hex. */
  session: string;
  from: number;
  /** The sender's VSS commitment: `threshold` points, hex. */
  commitment: string[];
  /** Schnorr proof of knowledge of the sender's constant term, 64 bytes hex. */
  proofOfKnowledge: string;
}

export interface DkgRound2Message {
  type: 'frost-dkg-2';
  sessionId: string;
  session: string;
  from: number;
  to: number;
  /** AES-GCM IV (12 bytes) and ciphertext with its tag, hex. */
  iv: string;
  ciphertext: string;
}

export interface DkgOutput {
  group: GroupPublic;
  /** The group public key as a Stellar signer (`G...`). */
  address: string;
  /** This participant's share: seal it, never write it in the clear. */
  share: KeyShare;
  /** Digest of the round-1 transcript (hex): equal at every participant of a successful session. */
  transcript: string;
}

/**
 * Check a session description: 2..255 members with distinct indices, node ids and transport keys, 2 <= t <= n.
 * @returns a copy with members in ascending index order
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE
 */
export function checkSession(value: unknown): DkgSession {
  const s = object(value, 'session');
  const sessionId = name(s.sessionId, 'session.sessionId');
  const members = array(s.members, 'session.members').map((m, i): DkgMember => {
    const o = object(m, `session.members[${i}]`);
    return {
      index: int(o.index, `session.members[${i}].index`, 1, MAX_PARTICIPANTS),
      nodeId: name(o.nodeId, `session.members[${i}].nodeId`),
      transportKey: toHex(hex(o.transportKey, `session.members[${i}].transportKey`, TRANSPORT_KEY_BYTES)),
    };
  });
  if (members.length < 2) throw outOfRange('session.members', 'must list at least 2 participants');
  members.sort((a, b) => a.index - b.index);
  for (const key of ['index', 'nodeId', 'transportKey'] as const) {
    if (new Set(members.map((m) => m[key])).size !== members.length) {
      throw outOfRange('session.members', `must not repeat a ${key}`);
    }
  }
  const threshold = int(s.threshold, 'session.threshold', 2, members.length);
  return { sessionId, threshold, members };
}

/** SHA-256 of the canonical session description (suite, id, threshold, members by index). */
export function sessionDigest(session: DkgSession): Uint8Array {
  const canonical = JSON.stringify([
    SUITE,
    'dkg/v1',
    session.sessionId,
    session.threshold,
    session.members.map((m) => [m.index, m.nodeId, m.transportKey]),
  ]);
  return createHash('sha256').update(canonical, 'utf8').digest();
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

const AAD_LABEL = Buffer.from('cosigner-frost-dkg-round2/v1', 'utf8');

/**
 * The associated data of a round-2 package: a label, the session digest, the sender's round-1 transcript digest,
 * the sender and the recipient. A package moved to another session, recipient or transcript fails to open.
 */
export function round2Aad(session: Uint8Array, transcript: Uint8Array, from: number, to: number): Uint8Array {
  return Buffer.concat([AAD_LABEL, session, transcript, u32(from), u32(to)]);
}

/** What the message checks of a session need: shared by key generation and refresh (refresh.ts). */
export interface SessionContext {
  sessionId: string;
  /** The session digest, hex. */
  digest: string;
  /** Every member's index. */
  members: number[];
  /** This participant's index. */
  self: number;
}

/**
 * Common checks of a message's envelope: type, session (id and digest) and sender (another member).
 * @returns the sender index
 * @throws FROST_OUT_OF_RANGE (type), FROST_BAD_INPUT, FROST_SESSION_MISMATCH (suspects: the claimed sender)
 */
export function checkEnvelope(ctx: SessionContext, m: Record<string, unknown>, type: string, field: string): number {
  if (m.type !== type) throw outOfRange(`${field}.type`, `must be ${type}`);
  const from = int(m.from, `${field}.from`, 1, MAX_PARTICIPANTS);
  const sessionId = string(m.sessionId, `${field}.sessionId`);
  const digest = string(m.session, `${field}.session`);
  if (sessionId !== ctx.sessionId || digest !== ctx.digest) {
    throw frostErrors.error('FROST_SESSION_MISMATCH', { sessionId: ctx.sessionId, field, from, suspects: [from] });
  }
  if (!ctx.members.includes(from) || from === ctx.self) {
    throw frostErrors.error('FROST_SESSION_MISMATCH', { field, from, reason: 'sender is not another member' });
  }
  return from;
}

/** Exactly one message from every other member, or FROST_DKG_MISSING_MESSAGE naming who is missing or repeated. */
export function checkComplete(ctx: SessionContext, froms: number[], round: number): void {
  const others = ctx.members.filter((i) => i !== ctx.self);
  const missing = others.filter((i) => !froms.includes(i));
  const repeated = [...new Set(froms.filter((f, i) => froms.indexOf(f) !== i))];
  if (missing.length > 0 || repeated.length > 0) {
    throw frostErrors.error('FROST_DKG_MISSING_MESSAGE', {
      round,
      missing,
      repeated,
      culprits: [...missing, ...repeated].sort((a, b) => a - b),
    });
  }
}

type State = 'new' | 'round1' | 'round2' | 'done' | 'failed';

/** One participant's side of a key generation session. Not reusable: one instance, one session. */

/**
 * A member's own index and transport secret, checked against the session: the index is a member's, and the secret's
 * public key is the transport key the session lists for it (key generation and refresh alike).
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE
 */
export function memberKeys(
  session: { members: readonly { index: number; transportKey: string }[] },
  p: { index: number; transportSecretKey: Uint8Array },
): { index: number; transportSecret: Uint8Array } {
  const index = int(p.index, 'index', 1, MAX_PARTICIPANTS);
  const me = session.members.find((m) => m.index === index);
  if (!me) throw outOfRange('index', 'is not a member of the session');
  const transportSecret = bytes(p.transportSecretKey, 'transportSecretKey', TRANSPORT_KEY_BYTES);
  if (toHex(transportPublicKey(transportSecret)) !== me.transportKey) {
    throw outOfRange('transportSecretKey', "does not match this member's transport key in the session");
  }
  return { index, transportSecret };
}

export class DkgParticipant {
  readonly session: DkgSession;
  readonly index: number;
  readonly #digest: Uint8Array;
  readonly #digestHex: string;
  readonly #transportSecret: Uint8Array;
  #state: State = 'new';
  #secret: DKG_Secret | undefined;
  #round1: Map<number, DKG_Round1> = new Map();
  #transcript: Uint8Array | undefined;

  /**
   * @param transportSecretKey this node's X25519 secret; its public key must be this member's `transportKey`
   * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE (not a member, or a transport key that is not this member's)
   */
  constructor(p: { session: DkgSession; index: number; transportSecretKey: Uint8Array }) {
    this.session = checkSession(p.session);
    ({ index: this.index, transportSecret: this.#transportSecret } = memberKeys(this.session, p));
    this.#digest = sessionDigest(this.session);
    this.#digestHex = toHex(this.#digest);
  }

  get state(): State {
    return this.#state;
  }

  /** The round-1 transcript digest (hex) once round 2 ran: equal at every member who saw the same round 1. */
  get transcript(): string | undefined {
    return this.#transcript && toHex(this.#transcript);
  }

  #member(index: number): DkgMember {
    return this.session.members.find((m) => m.index === index)!;
  }

  #expect(state: State, round: number): void {
    if (this.#state !== state) {
      throw frostErrors.error('FROST_ROUND_ORDER', { round, state: this.#state, sessionId: this.session.sessionId });
    }
  }

  #fail(e: Error): Error {
    this.#state = 'failed';
    this.#wipe();
    return e;
  }

  #wipe(): void {
    if (this.#secret) frost.DKG.clean(this.#secret);
    this.#secret = undefined;
  }

  /** Abort the session and erase its secret state (best effort: JavaScript may keep copies of big integers). */
  abort(): void {
    this.#state = 'failed';
    this.#wipe();
  }

  /** Round 1: this participant's commitment and proof of knowledge, for every other participant. */
  round1(): DkgRound1Message {
    this.#expect('new', 1);
    const r = frost.DKG.round1(identifierOf(this.index), {
      min: this.session.threshold,
      max: this.session.members.length,
    });
    this.#secret = r.secret;
    this.#round1.set(this.index, r.public);
    this.#state = 'round1';
    return {
      type: 'frost-dkg-1',
      sessionId: this.session.sessionId,
      session: this.#digestHex,
      from: this.index,
      commitment: r.public.commitment.map(toHex),
      proofOfKnowledge: toHex(r.public.proofOfKnowledge),
    };
  }

  #envelope(m: Record<string, unknown>, type: string, field: string): number {
    return checkEnvelope(this.#context(), m, type, field);
  }

  #complete(froms: number[], round: number): void {
    checkComplete(this.#context(), froms, round);
  }

  #context(): SessionContext {
    return {
      sessionId: this.session.sessionId,
      digest: this.#digestHex,
      members: this.session.members.map((m) => m.index),
      self: this.index,
    };
  }

  /**
   * Round 2: check every other member's round-1 message, then encrypt this participant's share for each of them.
   * @param received the round-1 messages of all other members
   * @throws FROST_ROUND_ORDER, FROST_SESSION_MISMATCH, FROST_DKG_MISSING_MESSAGE, FROST_DKG_BAD_PROOF (culprits),
   *   FROST_BAD_INPUT / FROST_OUT_OF_RANGE (a malformed message: details.field names it, and so its sender)
   */
  round2(received: DkgRound1Message[]): DkgRound2Message[] {
    this.#expect('round1', 2);
    try {
      const list = array(received, 'round1');
      const t = this.session.threshold;
      const parsed: DKG_Round1[] = [];
      const froms: number[] = [];
      list.forEach((raw, i) => {
        const field = `round1[${i}]`;
        const m = object(raw, field);
        const from = this.#envelope(m, 'frost-dkg-1', field);
        froms.push(from);
        const commitment = array(m.commitment, `${field}.commitment`);
        if (commitment.length !== t) {
          throw frostErrors.error('FROST_DKG_BAD_PROOF', {
            culprits: [from],
            reason: `commitment holds ${commitment.length} points, not ${t}`,
          });
        }
        parsed.push({
          identifier: identifierOf(from),
          commitment: commitment.map((c, j) => hex(c, `${field}.commitment[${j}]`, 32)),
          proofOfKnowledge: hex(m.proofOfKnowledge, `${field}.proofOfKnowledge`, 64),
        } as DKG_Round1);
      });
      this.#complete(froms, 1);
      let shares: Record<string, DKG_Round2>;
      try {
        shares = frost.DKG.round2(this.#secret!, parsed);
      } catch (cause) {
        const culprits = badRound1(parsed, this.index, t, this.session.members.length);
        throw frostErrors.error(
          culprits.length > 0 ? 'FROST_DKG_BAD_PROOF' : 'FROST_DKG_FAILED',
          { culprits },
          { cause },
        );
      }
      for (const p of parsed) this.#round1.set(indexOf(p.identifier), p);
      this.#transcript = this.#transcriptDigest();
      const out: DkgRound2Message[] = [];
      for (const [id, pkg] of Object.entries(shares)) {
        const to = indexOf(id);
        const sealed = this.#sealTo(to, pkg.signingShare);
        pkg.signingShare.fill(0);
        out.push({
          type: 'frost-dkg-2',
          sessionId: this.session.sessionId,
          session: this.#digestHex,
          from: this.index,
          to,
          iv: toHex(sealed.iv),
          ciphertext: toHex(sealed.ciphertext),
        });
      }
      this.#state = 'round2';
      return out.sort((a, b) => a.to - b.to);
    } catch (e) {
      throw this.#fail(e as Error);
    }
  }

  /** Encrypt one round-2 share for member `to`. A low-order transport key (X25519 refuses it) names that member. */
  #sealTo(to: number, share: Uint8Array) {
    try {
      return sealTo({
        ourSecret: this.#transportSecret,
        theirPublic: Buffer.from(this.#member(to).transportKey, 'hex'),
        salt: this.#digest,
        from: this.index,
        to,
        aad: this.#aad(this.index, to),
        plaintext: share,
      });
    } catch (cause) {
      throw frostErrors.error(
        'FROST_OUT_OF_RANGE',
        { field: 'session.members.transportKey', culprits: [to] },
        { message: `The transport key of member ${to} is not a usable X25519 public key.`, cause },
      );
    }
  }

  /** The senders whose round-2 share does not match their round-1 commitment (vss_verify, RFC 9591 C.2). */
  #badShares(round2: DKG_Round2[]): number[] {
    const bad: number[] = [];
    for (const r of round2) {
      const from = indexOf(r.identifier);
      try {
        frost.validateSecret(
          { identifier: identifierOf(this.index), signingShare: r.signingShare },
          {
            signers: { min: this.session.threshold, max: this.session.members.length },
            commitments: this.#round1.get(from)!.commitment,
            verifyingShares: {},
          },
        );
      } catch {
        bad.push(from);
      }
    }
    return bad;
  }

  /** SHA-256 over the session digest and every member's round-1 message in index order. */
  #transcriptDigest(): Uint8Array {
    const h = createHash('sha256').update(this.#digest);
    for (const m of this.session.members) {
      const r = this.#round1.get(m.index)!;
      h.update(u32(m.index));
      for (const c of r.commitment) h.update(c);
      h.update(r.proofOfKnowledge);
    }
    return h.digest();
  }

  #aad(from: number, to: number): Uint8Array {
    return round2Aad(this.#digest, this.#transcript!, from, to);
  }

  /**
   * Round 3: open the share every other member sent to this participant, check each against its sender's
   * commitment, and compute this participant's share and the group's public data.
   * @param received the round-2 messages addressed to this participant, one from every other member
   * @throws FROST_ROUND_ORDER, FROST_SESSION_MISMATCH, FROST_DKG_MISSING_MESSAGE, FROST_DKG_UNAUTHENTIC (suspects),
   *   FROST_DKG_BAD_SHARE (culprits), FROST_DKG_FAILED
   */
  round3(received: DkgRound2Message[]): DkgOutput {
    this.#expect('round2', 3);
    try {
      const list = array(received, 'round2');
      const froms: number[] = [];
      const packages: { from: number; iv: Uint8Array; ciphertext: Uint8Array }[] = [];
      list.forEach((raw, i) => {
        const field = `round2[${i}]`;
        const m = object(raw, field);
        const from = this.#envelope(m, 'frost-dkg-2', field);
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
      this.#complete(froms, 2);
      const unauthentic: number[] = [];
      const round2: DKG_Round2[] = [];
      for (const p of packages) {
        const share = openFrom({
          ourSecret: this.#transportSecret,
          theirPublic: Buffer.from(this.#member(p.from).transportKey, 'hex'),
          salt: this.#digest,
          from: p.from,
          to: this.index,
          aad: this.#aad(p.from, this.index),
          sealed: { iv: p.iv, ciphertext: p.ciphertext },
        });
        if (!share) {
          unauthentic.push(p.from);
          continue;
        }
        round2.push({ identifier: identifierOf(p.from), signingShare: share } as DKG_Round2);
      }
      if (unauthentic.length > 0) {
        for (const r of round2) r.signingShare.fill(0);
        throw frostErrors.error('FROST_DKG_UNAUTHENTIC', { suspects: unauthentic, culprits: unauthentic });
      }
      const others = [...this.#round1.entries()].filter(([i]) => i !== this.index).map(([, r]) => r);
      let key: ReturnType<typeof frost.DKG.round3>;
      try {
        // The library checks every received share against its sender's commitment (RFC 9591 Appendix C.2
        // vss_verify) and fails as a whole; only then is each checked alone, to name the sender.
        key = frost.DKG.round3(this.#secret!, others, round2);
      } catch (cause) {
        const culprits = this.#badShares(round2);
        throw frostErrors.error(
          culprits.length > 0 ? 'FROST_DKG_BAD_SHARE' : 'FROST_DKG_FAILED',
          { culprits },
          { cause },
        );
      } finally {
        for (const r of round2) r.signingShare.fill(0);
      }
      this.#wipe();
      const verifyingShares: Record<string, string> = {};
      for (const [id, v] of Object.entries(key.public.verifyingShares)) verifyingShares[String(indexOf(id))] = toHex(v);
      const group: GroupPublic = {
        threshold: this.session.threshold,
        participants: this.session.members.map((m) => m.index),
        groupPublicKey: toHex(key.public.commitments[0]!),
        commitments: key.public.commitments.map(toHex),
        verifyingShares,
      };
      this.#state = 'done';
      return {
        group,
        address: addressOf(key.public.commitments[0]!),
        share: { index: this.index, signingShare: key.secret.signingShare },
        transcript: toHex(this.#transcript!),
      };
    } catch (e) {
      throw this.#fail(e as Error);
    }
  }
}

/**
 * Which round-1 packages carry a bad proof of knowledge or a bad point? The library checks the whole set at
 * once; to name the culprit, each package is checked alone by the same library code: a throwaway round-2 over
 * that package and valid stand-ins (fresh round-1 packages of identifiers outside the group). Only run after a
 * failure, so its cost (one throwaway key generation per package) is paid only when someone misbehaved.
 */
function badRound1(packages: DKG_Round1[], self: number, t: number, n: number): number[] {
  const signers = { min: t, max: n };
  const standIns = Array.from(
    { length: n - 2 },
    (_, i) => frost.DKG.round1(frost.Identifier.derive(`cosigner-frost-probe-${i}`), signers).public,
  );
  const bad: number[] = [];
  for (const p of packages) {
    const probe = frost.DKG.round1(identifierOf(self), signers).secret;
    try {
      frost.DKG.round2(probe, [p, ...standIns]);
    } catch {
      bad.push(indexOf(p.identifier));
    } finally {
      frost.DKG.clean(probe);
    }
  }
  return bad;
}

import { randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sealTo } from '../src/channel.ts';
import { round2Aad } from '../src/dkg.ts';
import { toHex } from '../src/input.ts';
import {
  checkRefreshSession,
  decideRefresh,
  groupDigest,
  type RefreshOutput,
  RefreshParticipant,
  type RefreshRound1Message,
  type RefreshRound2Message,
  type RefreshSession,
  refreshDigest,
} from '../src/refresh.ts';
import { aggregate, commitNonces, signShare } from '../src/rounds.ts';
import { frost, type GroupPublic, identifierOf, type KeyShare, verifyEd25519 } from '../src/suite.ts';
import { makeSession, opensslVerify, runDkg } from './helpers.ts';

const code = (c: string, details?: Record<string, unknown>) =>
  expect.objectContaining(details ? { code: c, details: expect.objectContaining(details) } : { code: c });

/** A t-of-n group from a key generation, with what a refresh needs: the members' transport keys and the shares. */
function group(n: number, t: number, id: string) {
  const { session, secrets } = makeSession(n, t, id);
  const { outputs } = runDkg(session, secrets);
  return { members: session.members, secrets, group: outputs[0]!.group, shares: outputs.map((o) => o.share) };
}

interface RefreshRelay {
  round1?: (to: number, msgs: RefreshRound1Message[]) => RefreshRound1Message[];
  round2?: (to: number, msgs: RefreshRound2Message[]) => RefreshRound2Message[];
}

/** Run a refresh in memory, relaying like a coordinator would (which `relay` may make misbehave). */
function runRefresh(
  g: ReturnType<typeof group>,
  sessionId: string,
  relay: RefreshRelay = {},
  current: { group: GroupPublic; shares: KeyShare[] } = g,
) {
  const session: RefreshSession = { sessionId, group: current.group, members: g.members };
  const parts = g.members.map(
    (m) => new RefreshParticipant({ session, index: m.index, transportSecretKey: g.secrets.get(m.index)! }),
  );
  const r1 = parts.map((p) => p.round1());
  const r2 = parts.flatMap((p) => {
    const mine = r1.filter((m) => m.from !== p.index);
    return p.round2(relay.round1 ? relay.round1(p.index, mine) : mine);
  });
  const outputs: RefreshOutput[] = parts.map((p, i) => {
    const mine = r2.filter((m) => m.to === p.index);
    return p.round3(relay.round2 ? relay.round2(p.index, mine) : mine, current.shares[i]!);
  });
  return { session, parts, r1, r2, outputs };
}

/** Both signing rounds and aggregation with the given shares (RFC 9591 section 5). @throws what aggregate throws */
function sign(g: GroupPublic, shares: KeyShare[], message: Uint8Array): Uint8Array {
  const commits = shares.map((s) => commitNonces(s));
  const commitments = commits.map((c) => c.commitment);
  const sigShares = Object.fromEntries(
    shares.map((s, i) => [String(s.index), signShare(g, s, commits[i]!.nonces, commitments, message)]),
  );
  return aggregate(g, commitments, message, sigShares);
}

function publicOf(shares: KeyShare[], g: GroupPublic): string {
  const secret = frost.combineSecret(
    shares.map((s) => ({ identifier: identifierOf(s.index), signingShare: s.signingShare })),
    { min: g.threshold, max: g.participants.length },
  );
  return toHex(ed25519.Point.BASE.multiply(frost.utils.Fn.fromBytes(secret)).toBytes());
}

describe('proactive share refresh', () => {
  it('2-of-3: new shares and verifying shares of the same key; every t of them sign; old and new do not mix', () => {
    const g = group(3, 2, 'refresh-dkg');
    const { outputs, parts } = runRefresh(g, 'refresh-1');
    const after = outputs[0]!.group;
    for (const o of outputs) {
      expect(o.group).toEqual(after);
      expect(o.transcript).toBe(outputs[0]!.transcript);
      expect(o.address).toBe(outputs[0]!.address);
    }
    expect(parts.every((p) => p.state === 'done' && p.transcript === outputs[0]!.transcript)).toBe(true);
    expect(after.groupPublicKey).toBe(g.group.groupPublicKey);
    expect(after.commitments[0]).toBe(g.group.commitments[0]);
    expect(after.commitments[1]).not.toBe(g.group.commitments[1]);
    expect(groupDigest(after)).not.toBe(groupDigest(g.group));
    const fresh = outputs.map((o) => o.share);
    for (const i of [0, 1, 2]) {
      expect(after.verifyingShares[String(i + 1)]).not.toBe(g.group.verifyingShares[String(i + 1)]);
      expect(Buffer.from(fresh[i]!.signingShare).equals(Buffer.from(g.shares[i]!.signingShare))).toBe(false);
    }
    const message = randomBytes(32);
    const key = Buffer.from(after.groupPublicKey, 'hex');
    for (const pair of [
      [0, 1],
      [0, 2],
      [1, 2],
    ]) {
      const signature = sign(
        after,
        pair.map((i) => fresh[i]!),
        message,
      );
      expect(verifyEd25519(key, message, signature)).toBe(true);
      expect(opensslVerify(key, message, signature)).toBe(true);
    }
    // An old share beside a new one: its signature share fails under either group's verifying shares, and
    // the two shares interpolate to a key that is not the group's.
    expect(() => sign(after, [g.shares[0]!, fresh[1]!], message)).toThrow(
      code('FROST_BAD_SIGNATURE_SHARE', { culprits: [1] }),
    );
    expect(() => sign(g.group, [g.shares[0]!, fresh[1]!], message)).toThrow(
      code('FROST_BAD_SIGNATURE_SHARE', { culprits: [2] }),
    );
    expect(publicOf([g.shares[0]!, fresh[1]!], after)).not.toBe(after.groupPublicKey);
    expect(publicOf([fresh[0]!, fresh[2]!], after)).toBe(after.groupPublicKey);
    // Adoption: every participant reports the same transcript and group, or nobody switches.
    const session = { sessionId: 'refresh-1', group: g.group, members: g.members };
    const reports = outputs.map((o) => ({
      index: o.share.index,
      transcript: o.transcript,
      group: groupDigest(o.group),
    }));
    expect(decideRefresh(session, reports)).toEqual({
      adopt: true,
      group: groupDigest(after),
      transcript: outputs[0]!.transcript,
    });
    expect(decideRefresh(session, reports.slice(1))).toEqual({ adopt: false, missing: [1], disagreeing: [] });
    expect(decideRefresh(session, [...reports.slice(0, 2), { ...reports[2]!, group: groupDigest(g.group) }])).toEqual({
      adopt: false,
      missing: [],
      disagreeing: [3],
    });
    expect(decideRefresh(session, [])).toEqual({ adopt: false, missing: [1, 2, 3], disagreeing: [] });
    expect(() => decideRefresh(session, [...reports, reports[0]!])).toThrow(code('FROST_OUT_OF_RANGE'));
    expect(() => decideRefresh(session, [{ ...reports[0]!, index: 9 }])).toThrow(code('FROST_OUT_OF_RANGE'));
    expect(() => decideRefresh(session, [{ ...reports[0]!, group: 'zz' }])).toThrow(code('FROST_OUT_OF_RANGE'));
    // A second refresh runs from the first one's result.
    const again = runRefresh(g, 'refresh-2', {}, { group: after, shares: fresh });
    expect(again.outputs[0]!.group.groupPublicKey).toBe(g.group.groupPublicKey);
    const s2 = sign(again.outputs[0]!.group, [again.outputs[2]!.share, again.outputs[1]!.share], message);
    expect(verifyEd25519(key, message, s2)).toBe(true);
  });

  it('property: any t of a t-of-n group sign; a refresh keeps the group key, and any t refreshed shares sign', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 5 }).chain((n) =>
          fc.record({
            n: fc.constant(n),
            t: fc.integer({ min: 2, max: n }),
            order: fc.shuffledSubarray(
              Array.from({ length: n }, (_, i) => i),
              { minLength: n, maxLength: n },
            ),
          }),
        ),
        ({ n, t, order }) => {
          const g = group(n, t, `prop-${n}-${t}`);
          const before = randomBytes(32);
          const key = Buffer.from(g.group.groupPublicKey, 'hex');
          const dkgSubset = order.slice(n - t).map((i) => g.shares[i]!);
          expect(verifyEd25519(key, before, sign(g.group, dkgSubset, before))).toBe(true);
          const { outputs } = runRefresh(g, `prop-refresh-${n}-${t}`);
          const after = outputs[0]!.group;
          expect(after.groupPublicKey).toBe(g.group.groupPublicKey);
          const subset = order.slice(0, t).map((i) => outputs[i]!.share);
          const message = randomBytes(32);
          expect(verifyEd25519(Buffer.from(after.groupPublicKey, 'hex'), message, sign(after, subset, message))).toBe(
            true,
          );
          // One share of the subset from before the refresh: never the group's key.
          const mixed = [g.shares[order[0]!]!, ...order.slice(1, t).map((i) => outputs[i]!.share)];
          expect(publicOf(mixed, after)).not.toBe(after.groupPublicKey);
        },
      ),
      { numRuns: 12 },
    );
  }, 120_000);

  it('names the sender of a share off its commitment, and a package altered in transit', () => {
    const g = group(3, 2, 'refresh-culprit');
    // Member 2 sends member 1 a well-encrypted share that is not on its committed polynomial.
    const session: RefreshSession = { sessionId: 'refresh-bad', group: g.group, members: g.members };
    const digest = refreshDigest(checkRefreshSession(session));
    let transcript: string | undefined;
    const forged = (to: number, msgs: RefreshRound2Message[]) =>
      msgs.map((m) => {
        if (m.from !== 2 || to !== 1) return m;
        const sealed = sealTo({
          ourSecret: g.secrets.get(2)!,
          theirPublic: Buffer.from(g.members[0]!.transportKey, 'hex'),
          salt: digest,
          from: 2,
          to: 1,
          aad: round2Aad(digest, Buffer.from(transcript!, 'hex'), 2, 1),
          plaintext: frost.utils.randomScalar(),
        });
        return { ...m, iv: toHex(sealed.iv), ciphertext: toHex(sealed.ciphertext) };
      });
    const parts = g.members.map(
      (m) => new RefreshParticipant({ session, index: m.index, transportSecretKey: g.secrets.get(m.index)! }),
    );
    const r1 = parts.map((p) => p.round1());
    const r2 = parts.flatMap((p) => p.round2(r1.filter((m) => m.from !== p.index)));
    transcript = parts[0]!.transcript;
    expect(() =>
      parts[0]!.round3(
        forged(
          1,
          r2.filter((m) => m.to === 1),
        ),
        g.shares[0]!,
      ),
    ).toThrow(code('FROST_DKG_BAD_SHARE', { culprits: [2] }));
    expect(parts[0]!.state).toBe('failed');
    expect(() => parts[0]!.round3([], g.shares[0]!)).toThrow(code('FROST_ROUND_ORDER'));
    // The relay flips a bit of the package from 3 to 2: it fails authentication, 3 is named a suspect.
    const flipped = r2
      .filter((m) => m.to === 2)
      .map((m) =>
        m.from === 3 ? { ...m, ciphertext: (m.ciphertext[0] === '0' ? '1' : '0') + m.ciphertext.slice(1) } : m,
      );
    expect(() => parts[1]!.round3(flipped, g.shares[1]!)).toThrow(
      code('FROST_DKG_UNAUTHENTIC', { suspects: [3], culprits: [3] }),
    );
    // The relay showed member 3 another commitment from member 1: the transcripts differ, so member 3's packages
    // to the others fail authentication at the first of them (member 1), which names 3 a suspect.
    const other = runRefresh.bind(null, g, 'refresh-split');
    expect(() =>
      other({
        round1: (to, msgs) =>
          to === 3
            ? msgs.map((m) => (m.from === 1 ? { ...m, commitment: [toHex(ed25519.Point.BASE.toBytes())] } : m))
            : msgs,
      }),
    ).toThrow(code('FROST_DKG_UNAUTHENTIC', { suspects: [3] }));
  });

  it('refuses messages of another session, incomplete rounds, bad commitments and a share of another group', () => {
    const g = group(3, 2, 'refresh-input');
    const other = group(3, 2, 'refresh-input-other');
    const session: RefreshSession = { sessionId: 'refresh-in', group: g.group, members: g.members };
    const make = () =>
      g.members.map(
        (m) => new RefreshParticipant({ session, index: m.index, transportSecretKey: g.secrets.get(m.index)! }),
      );
    let parts = make();
    let r1 = parts.map((p) => p.round1());
    expect(() => parts[0]!.round1()).toThrow(code('FROST_ROUND_ORDER', { round: 1 }));
    expect(() => parts[0]!.round3([], g.shares[0]!)).toThrow(code('FROST_ROUND_ORDER', { round: 3 }));
    const to1 = r1.filter((m) => m.from !== 1);
    expect(() => parts[0]!.round2([to1[0]!])).toThrow(
      code('FROST_DKG_MISSING_MESSAGE', { missing: [3], culprits: [3] }),
    );
    parts = make();
    r1 = parts.map((p) => p.round1());
    const fresh1 = r1.filter((m) => m.from !== 1);
    expect(() => parts[0]!.round2([fresh1[0]!, fresh1[0]!])).toThrow(
      code('FROST_DKG_MISSING_MESSAGE', { repeated: [2], missing: [3] }),
    );
    parts = make();
    r1 = parts.map((p) => p.round1());
    const mine = r1.filter((m) => m.from !== 1);
    expect(() => parts[0]!.round2([mine[0]!, { ...mine[1]!, commitment: [] }])).toThrow(
      code('FROST_OUT_OF_RANGE', { culprits: [3] }),
    );
    parts = make();
    r1 = parts.map((p) => p.round1());
    const identity = toHex(ed25519.Point.ZERO.toBytes());
    expect(() =>
      parts[0]!.round2(
        r1.filter((m) => m.from !== 1).map((m) => (m.from === 2 ? { ...m, commitment: [identity] } : m)),
      ),
    ).toThrow(code('FROST_OUT_OF_RANGE', { culprits: [2] }));
    expect(() => parts[0]!.round2('x' as never)).toThrow(code('FROST_ROUND_ORDER'));
    parts = make();
    r1 = parts.map((p) => p.round1());
    expect(() => parts[0]!.round2([...r1.filter((m) => m.from !== 1), r1[0]!])).toThrow(code('FROST_SESSION_MISMATCH'));
    parts = make();
    r1 = parts.map((p) => p.round1());
    // A DKG-style message, or one of another session id: refused, the claimed sender a suspect.
    expect(() =>
      parts[1]!.round2(r1.filter((m) => m.from !== 2).map((m) => ({ ...m, sessionId: 'elsewhere' }))),
    ).toThrow(code('FROST_SESSION_MISMATCH', { suspects: [1] }));
    parts = make();
    r1 = parts.map((p) => p.round1());
    expect(() =>
      parts[1]!.round2(r1.filter((m) => m.from !== 2).map((m) => ({ ...m, type: 'frost-dkg-1' as never }))),
    ).toThrow(code('FROST_OUT_OF_RANGE'));

    // Round 3: a share that is not this member's, or of another group; messages addressed elsewhere.
    parts = make();
    r1 = parts.map((p) => p.round1());
    const r2 = parts.flatMap((p) => p.round2(r1.filter((m) => m.from !== p.index)));
    const for1 = r2.filter((m) => m.to === 1);
    expect(() => parts[0]!.round3(for1, g.shares[1]!)).toThrow(code('FROST_OUT_OF_RANGE', { field: 'share.index' }));
    expect(() =>
      parts[1]!.round3(
        r2.filter((m) => m.to === 2),
        other.shares[1]!,
      ),
    ).toThrow(code('FROST_OUT_OF_RANGE', { field: 'share.signingShare' }));
    expect(() => parts[2]!.round3(for1, g.shares[2]!)).toThrow(code('FROST_SESSION_MISMATCH'));
    parts[0]!.abort();
    expect(parts[0]!.state).toBe('failed');

    // Sessions: the members must be exactly the group's participants, and the transport secret this member's.
    expect(() => checkRefreshSession({ ...session, members: g.members.slice(0, 2) })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'session.members' }),
    );
    expect(() => checkRefreshSession({ ...session, group: { ...g.group, threshold: 4 } })).toThrow(
      code('FROST_OUT_OF_RANGE'),
    );
    expect(() => new RefreshParticipant({ session, index: 1, transportSecretKey: g.secrets.get(2)! })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'transportSecretKey' }),
    );
    expect(() => new RefreshParticipant({ session, index: 4, transportSecretKey: g.secrets.get(1)! })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'index' }),
    );
    // A session digest differs from the DKG's for the same members, and between groups.
    expect(toHex(refreshDigest(checkRefreshSession(session)))).not.toBe(
      toHex(refreshDigest(checkRefreshSession({ ...session, group: other.group, members: other.members }))),
    );
  });

  it('names a member whose transport key is unusable', () => {
    const g = group(3, 2, 'refresh-transport');
    // A low-order X25519 point (RFC 7748 section 6.1 lists them): x25519 refuses the shared secret.
    const members = g.members.map((m) => (m.index === 3 ? { ...m, transportKey: '00'.repeat(32) } : m));
    const session: RefreshSession = { sessionId: 'refresh-lo', group: g.group, members };
    const p1 = new RefreshParticipant({ session, index: 1, transportSecretKey: g.secrets.get(1)! });
    const p2 = new RefreshParticipant({ session, index: 2, transportSecretKey: g.secrets.get(2)! });
    p1.round1();
    const from2 = p2.round1();
    const from3 = { ...from2, from: 3, commitment: [toHex(ed25519.Point.BASE.toBytes())] };
    expect(() => p1.round2([from2, from3])).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'session.members.transportKey', culprits: [3] }),
    );
  });
});

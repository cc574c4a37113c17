import { describe, expect, it } from 'vitest';
import { createTransportKey, sealTo } from '../src/channel.ts';
import { checkSession, DkgParticipant, type DkgRound2Message, round2Aad, sessionDigest } from '../src/dkg.ts';
import { toHex } from '../src/input.ts';
import { checkShare, frost, groupAddress, identifierOf } from '../src/suite.ts';
import { makeSession, runDkg } from './helpers.ts';

const code = (c: string, details?: Record<string, unknown>) =>
  expect.objectContaining(details ? { code: c, details: expect.objectContaining(details) } : { code: c });

describe('distributed key generation (three rounds, relayed)', () => {
  it('2-of-3: every member ends with the same group, a G address, and a share that fits it', () => {
    const { session, secrets } = makeSession(3, 2);
    const { outputs } = runDkg(session, secrets);
    const [a, b, c] = outputs;
    expect(a!.group).toEqual(b!.group);
    expect(a!.group).toEqual(c!.group);
    expect(a!.transcript).toBe(b!.transcript);
    expect(a!.address).toMatch(/^G[A-Z2-7]{55}$/);
    expect(groupAddress(a!.group)).toBe(a!.address);
    expect(a!.group.participants).toEqual([1, 2, 3]);
    for (const o of outputs) expect(checkShare(o.group, o.share).index).toBe(o.share.index);
    // Any two shares reconstruct the same secret; one share alone does not determine it.
    const secret = (idx: number[]) =>
      toHex(
        frost.combineSecret(
          idx.map((i) => ({ identifier: identifierOf(i), signingShare: outputs[i - 1]!.share.signingShare })),
          { min: 2, max: 3 },
        ),
      );
    expect(secret([1, 2])).toBe(secret([2, 3]));
    expect(toHex(frost.utils.Fn.toBytes(0n))).not.toBe(secret([1, 3]));
  });

  it('binds every message to the session: another session id or member list is refused', () => {
    const { session, secrets } = makeSession(3, 2, 'session-a');
    const other = { ...session, sessionId: 'session-b' };
    expect(toHex(sessionDigest(checkSession(session)))).not.toBe(toHex(sessionDigest(checkSession(other))));
    const pa = new DkgParticipant({ session, index: 1, transportSecretKey: secrets.get(1)! });
    const pb2 = new DkgParticipant({ session: other, index: 2, transportSecretKey: secrets.get(2)! });
    const pb3 = new DkgParticipant({ session: other, index: 3, transportSecretKey: secrets.get(3)! });
    pa.round1();
    expect(() => pa.round2([pb2.round1(), pb3.round1()])).toThrow(code('FROST_SESSION_MISMATCH'));
    expect(pa.state).toBe('failed');
    // Same id, another threshold: another digest.
    const t3 = new DkgParticipant({
      session: { ...session, threshold: 3 },
      index: 2,
      transportSecretKey: secrets.get(2)!,
    });
    const pc = new DkgParticipant({ session, index: 1, transportSecretKey: secrets.get(1)! });
    pc.round1();
    const good3 = new DkgParticipant({ session, index: 3, transportSecretKey: secrets.get(3)! }).round1();
    expect(() => pc.round2([t3.round1(), good3])).toThrow(code('FROST_SESSION_MISMATCH', { from: 2 }));
  });

  it('names a member whose proof of knowledge does not verify, and one whose commitment has the wrong size', () => {
    const { session, secrets } = makeSession(4, 3);
    expect(() =>
      runDkg(session, secrets, {
        round1: (_to, msgs) =>
          msgs.map((m) =>
            m.from === 3
              ? {
                  ...m,
                  proofOfKnowledge: `${m.proofOfKnowledge.slice(0, 126)}${m.proofOfKnowledge.slice(126) === '00' ? '01' : '00'}`,
                }
              : m,
          ),
      }),
    ).toThrow(code('FROST_DKG_BAD_PROOF', { culprits: [3] }));
    const { session: s2, secrets: k2 } = makeSession(3, 2);
    expect(() =>
      runDkg(s2, k2, {
        round1: (_to, msgs) => msgs.map((m) => (m.from === 2 ? { ...m, commitment: m.commitment.slice(0, 1) } : m)),
      }),
    ).toThrow(code('FROST_DKG_BAD_PROOF', { culprits: [2] }));
    // A commitment swapped with another member's: the proof no longer matches its sender.
    const { session: s3, secrets: k3 } = makeSession(3, 2);
    expect(() =>
      runDkg(s3, k3, {
        round1: (to, msgs) => {
          if (to !== 1) return msgs;
          const m3 = msgs.find((m) => m.from === 3)!;
          return msgs.map((m) => (m.from === 2 ? { ...m, commitment: m3.commitment } : m));
        },
      }),
    ).toThrow(code('FROST_DKG_BAD_PROOF', { culprits: [2] }));
  });

  it('names missing and repeated messages', () => {
    const { session, secrets } = makeSession(3, 2);
    expect(() => runDkg(session, secrets, { round1: (_to, msgs) => msgs.slice(0, 1) })).toThrow(
      code('FROST_DKG_MISSING_MESSAGE', { round: 1 }),
    );
    const { session: s2, secrets: k2 } = makeSession(3, 2);
    expect(() => runDkg(s2, k2, { round1: (_to, msgs) => [msgs[0]!, msgs[0]!] })).toThrow(
      code('FROST_DKG_MISSING_MESSAGE'),
    );
    const { session: s3, secrets: k3 } = makeSession(3, 2);
    expect(() => runDkg(s3, k3, { round2: (_to, msgs) => msgs.filter((m) => m.from !== 1) })).toThrow(
      code('FROST_DKG_MISSING_MESSAGE', { round: 2, missing: [1], culprits: [1] }),
    );
  });

  it('the relay cannot alter, redirect or replay a round-2 package, nor show different round-1 views', () => {
    // Altered ciphertext: authentication fails, the sender is the suspect.
    const { session, secrets } = makeSession(3, 2);
    expect(() =>
      runDkg(session, secrets, {
        round2: (_to, msgs) =>
          msgs.map((m) =>
            m.from === 2
              ? { ...m, ciphertext: `${m.ciphertext.slice(0, -2)}${m.ciphertext.endsWith('00') ? '01' : '00'}` }
              : m,
          ),
      }),
    ).toThrow(code('FROST_DKG_UNAUTHENTIC', { suspects: [2] }));
    const s3 = makeSession(3, 2);
    let stash: DkgRound2Message[] = [];
    expect(() =>
      runDkg(s3.session, s3.secrets, {
        round2: (to, msgs) => {
          if (to === 2) stash = msgs.map((m) => ({ ...m }));
          if (to !== 3) return msgs;
          const fromOne = stash.find((m) => m.from === 1)!;
          return msgs.map((m) => (m.from === 1 ? ({ ...fromOne, to: 3 } as typeof m) : m));
        },
      }),
    ).toThrow(code('FROST_DKG_UNAUTHENTIC', { suspects: [1] }));
    // Equivocation: member 3 is shown a different (valid) round-1 message of member 2 than member 1 is.
    const s4 = makeSession(3, 2);
    const other = new DkgParticipant({
      session: s4.session,
      index: 2,
      transportSecretKey: s4.secrets.get(2)!,
    }).round1();
    expect(() =>
      runDkg(s4.session, s4.secrets, {
        round1: (to, msgs) => (to === 3 ? msgs.map((m) => (m.from === 2 ? other : m)) : msgs),
      }),
    ).toThrow(code('FROST_DKG_UNAUTHENTIC'));
    // Replay of member 1's package from an earlier session of the same members and keys.
    const a = makeSession(3, 2, 'replay-a');
    const earlier = runDkg(a.session, a.secrets, {
      round2: (to, msgs) => {
        if (to === 3) stash = msgs.map((m) => ({ ...m }));
        return msgs;
      },
    });
    expect(earlier.outputs).toHaveLength(3);
    const later = { ...a.session, sessionId: 'replay-b' };
    const old = stash.find((m) => m.from === 1)!;
    expect(() =>
      runDkg(later, a.secrets, {
        round2: (to, msgs) => (to === 3 ? msgs.map((m) => (m.from === 1 ? (old as typeof m) : m)) : msgs),
      }),
    ).toThrow(code('FROST_SESSION_MISMATCH'));
    expect(() =>
      runDkg(later, a.secrets, {
        round2: (to, msgs) =>
          to === 3
            ? msgs.map((m) => (m.from === 1 ? ({ ...old, sessionId: m.sessionId, session: m.session } as typeof m) : m))
            : msgs,
      }),
    ).toThrow(code('FROST_DKG_UNAUTHENTIC', { suspects: [1] }));
  });

  it('names a member who sends an authentic share that does not match its commitment', () => {
    const { session, secrets } = makeSession(3, 2);
    const parts = session.members.map(
      (m) => new DkgParticipant({ session, index: m.index, transportSecretKey: secrets.get(m.index)! }),
    );
    const r1 = parts.map((p) => p.round1());
    const r2 = parts.flatMap((p) => p.round2(r1.filter((m) => m.from !== p.index)));
    expect(parts[1]!.transcript).toBe(parts[0]!.transcript);
    // Member 2 encrypts, correctly and under the right transcript, a share that is not its polynomial's value.
    const digest = sessionDigest(checkSession(session));
    const sealed = sealTo({
      ourSecret: secrets.get(2)!,
      theirPublic: Buffer.from(session.members[0]!.transportKey, 'hex'),
      salt: digest,
      from: 2,
      to: 1,
      aad: round2Aad(digest, Buffer.from(parts[1]!.transcript!, 'hex'), 2, 1),
      plaintext: frost.utils.randomScalar(),
    });
    const forged = r2.map((m) =>
      m.from === 2 && m.to === 1 ? { ...m, iv: toHex(sealed.iv), ciphertext: toHex(sealed.ciphertext) } : m,
    );
    expect(() => parts[0]!.round3(forged.filter((m) => m.to === 1))).toThrow(
      code('FROST_DKG_BAD_SHARE', { culprits: [2] }),
    );
    // The others, who got honest packages, finish; member 1 aborted and holds nothing.
    expect(parts[2]!.round3(r2.filter((m) => m.to === 3)).group.threshold).toBe(2);
    expect(parts[0]!.state).toBe('failed');
  });

  it('names a member whose transport key is a low-order X25519 point', () => {
    const { session, secrets } = makeSession(3, 2);
    const weak = {
      ...session,
      members: session.members.map((m) => (m.index === 3 ? { ...m, transportKey: '00'.repeat(32) } : m)),
    };
    const p1 = new DkgParticipant({ session: weak, index: 1, transportSecretKey: secrets.get(1)! });
    const p2 = new DkgParticipant({ session: weak, index: 2, transportSecretKey: secrets.get(2)! });
    p1.round1();
    const m2 = p2.round1();
    // Member 3 cannot run a participant with that key; its round-1 message is made with the library directly.
    const r = frost.DKG.round1(identifierOf(3), { min: 2, max: 3 }).public;
    const m3 = {
      ...m2,
      from: 3,
      commitment: r.commitment.map(toHex),
      proofOfKnowledge: toHex(r.proofOfKnowledge),
    };
    expect(() => p1.round2([m2, m3])).toThrow(code('FROST_OUT_OF_RANGE', { culprits: [3] }));
  });

  it('checks its inputs: members, threshold, transport key, order of rounds', () => {
    const { session, secrets } = makeSession(3, 2);
    const bad = [
      [{ ...session, threshold: 4 }, 'FROST_OUT_OF_RANGE'],
      [{ ...session, threshold: 1 }, 'FROST_OUT_OF_RANGE'],
      [{ ...session, threshold: '2' }, 'FROST_BAD_INPUT'],
      [{ ...session, members: session.members.slice(0, 1) }, 'FROST_OUT_OF_RANGE'],
      [
        { ...session, members: [session.members[0], { ...session.members[1], index: 1 }, session.members[2]] },
        'FROST_OUT_OF_RANGE',
      ],
      [
        { ...session, members: [session.members[0], { ...session.members[1], nodeId: 'node-1' }, session.members[2]] },
        'FROST_OUT_OF_RANGE',
      ],
      [
        {
          ...session,
          members: [session.members[0], { ...session.members[1], transportKey: 'zz' }, session.members[2]],
        },
        'FROST_OUT_OF_RANGE',
      ],
      [{ ...session, sessionId: 'has space' }, 'FROST_OUT_OF_RANGE'],
      [{ ...session, members: 'x' }, 'FROST_BAD_INPUT'],
      [null, 'FROST_BAD_INPUT'],
    ] as const;
    for (const [s, c] of bad) expect(() => checkSession(s), JSON.stringify(s).slice(0, 80)).toThrow(code(c));
    expect(() => new DkgParticipant({ session, index: 4, transportSecretKey: secrets.get(1)! })).toThrow(
      code('FROST_OUT_OF_RANGE'),
    );
    expect(() => new DkgParticipant({ session, index: 1, transportSecretKey: createTransportKey().secretKey })).toThrow(
      code('FROST_OUT_OF_RANGE'),
    );
    expect(() => new DkgParticipant({ session, index: 1, transportSecretKey: new Uint8Array(31) })).toThrow(
      code('FROST_OUT_OF_RANGE'),
    );
    const p = new DkgParticipant({ session, index: 1, transportSecretKey: secrets.get(1)! });
    expect(() => p.round2([])).toThrow(code('FROST_ROUND_ORDER'));
    expect(() => p.round3([])).toThrow(code('FROST_ROUND_ORDER'));
    p.round1();
    expect(() => p.round1()).toThrow(code('FROST_ROUND_ORDER'));
    expect(() => p.round2('x' as never)).toThrow(code('FROST_BAD_INPUT'));
    expect(p.state).toBe('failed');
    const q = new DkgParticipant({ session, index: 1, transportSecretKey: secrets.get(1)! });
    const m = q.round1();
    expect(() => q.round2([{ ...m, type: 'frost-dkg-2' } as never])).toThrow(code('FROST_OUT_OF_RANGE'));
    const r = new DkgParticipant({ session, index: 1, transportSecretKey: secrets.get(1)! });
    r.round1();
    // A member's own message echoed back to it is not another member's.
    expect(() => r.round2([m, m])).toThrow(code('FROST_SESSION_MISMATCH'));
    r.abort();
    expect(r.state).toBe('failed');
  });
});

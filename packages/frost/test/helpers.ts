import { createPublicKey, verify } from 'node:crypto';
import { createTransportKey } from '../src/channel.ts';
import {
  type DkgOutput,
  DkgParticipant,
  type DkgRound1Message,
  type DkgRound2Message,
  type DkgSession,
} from '../src/dkg.ts';
import { toHex } from '../src/input.ts';

/** A session of n members (indices 1..n, node ids node-1..), each with a fresh transport key. */
export function makeSession(n: number, t: number, sessionId = 'dkg-test-1') {
  const secrets = new Map<number, Uint8Array>();
  const members = Array.from({ length: n }, (_, i) => {
    const k = createTransportKey();
    secrets.set(i + 1, k.secretKey);
    return { index: i + 1, nodeId: `node-${i + 1}`, transportKey: toHex(k.publicKey) };
  });
  const session: DkgSession = { sessionId, threshold: t, members };
  return { session, secrets };
}

export interface Relay {
  /** Change what one member receives in round 1 (the coordinator's view of it). */
  round1?: (to: number, msgs: DkgRound1Message[]) => DkgRound1Message[];
  round2?: (to: number, msgs: DkgRound2Message[]) => DkgRound2Message[];
}

/** Run the three rounds in memory, relaying like a coordinator would (which `relay` may make misbehave). */
export function runDkg(session: DkgSession, secrets: Map<number, Uint8Array>, relay: Relay = {}) {
  const parts = session.members.map(
    (m) => new DkgParticipant({ session, index: m.index, transportSecretKey: secrets.get(m.index)! }),
  );
  const r1 = parts.map((p) => p.round1());
  const r2 = parts.flatMap((p) => {
    const mine = r1.filter((m) => m.from !== p.index);
    return p.round2(relay.round1 ? relay.round1(p.index, mine) : mine);
  });
  const outputs: DkgOutput[] = parts.map((p) => {
    const mine = r2.filter((m) => m.to === p.index);
    return p.round3(relay.round2 ? relay.round2(p.index, mine) : mine);
  });
  return { parts, outputs };
}

/** Plain node:crypto (OpenSSL) Ed25519 verification, as any verifier that knows nothing of FROST or Stellar. */
export function opensslVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const key = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), publicKey]),
    format: 'der',
    type: 'spki',
  });
  return verify(null, message, key, signature);
}

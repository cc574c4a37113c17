import { readFileSync } from 'node:fs';
import { ed25519 } from '@noble/curves/ed25519.js';
import { Keypair } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { aggregate, type Commitment, commitNonces, signShare, verifyShare } from '../src/rounds.ts';
import { addressOf, checkGroup, checkShare, frost, type GroupPublic, verifyEd25519 } from '../src/suite.ts';
import { opensslVerify } from './helpers.ts';

// RFC 9591 Appendix E.1 through this package's functions: nonce generation from the RFC's randomness, the
// commitments, each signature share (which depends on the binding factors and the challenge, so those are
// checked through it) and the aggregate, byte for byte.
const V = JSON.parse(readFileSync(new URL('./vectors/rfc9591-ed25519-sha512.json', import.meta.url), 'utf8'));
const h = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const hx = (b: Uint8Array) => Buffer.from(b).toString('hex');
const le = (s: string) => BigInt(`0x${Buffer.from(s, 'hex').reverse().toString('hex')}`);

function vectorGroup(): GroupPublic {
  const poly = frost.utils.generateSecretPolynomial({ min: 2, max: 3 }, h(V.inputs.group_secret_key), [
    le(V.inputs.share_polynomial_coefficients[0]),
  ]);
  const shares = V.inputs.participant_shares as Record<string, string>;
  return checkGroup({
    threshold: V.config.MIN_PARTICIPANTS,
    participants: [1, 2, 3],
    groupPublicKey: V.inputs.group_public_key,
    commitments: poly.commitment.map(hx),
    verifyingShares: Object.fromEntries(
      Object.entries(shares).map(([i, s]) => [i, hx(ed25519.Point.BASE.multiply(le(s)).toBytes())]),
    ),
  });
}

/** An RNG that returns the RFC's nonce randomness in the order commit() draws it: hiding, then binding. */
function scripted(...chunks: string[]) {
  const queue = chunks.map(h);
  return (n?: number) => {
    const next = queue.shift();
    if (!next || next.length !== n) throw new Error('unexpected draw');
    return next;
  };
}

describe('RFC 9591 Appendix E.1 FROST(Ed25519, SHA-512) vectors through the wrapper', () => {
  const group = vectorGroup();
  const message = h(V.inputs.message);

  it('derives the group key and accepts every participant share as consistent with the commitment', () => {
    expect(group.commitments[0]).toBe(V.inputs.group_public_key);
    for (const [i, s] of Object.entries(V.inputs.participant_shares as Record<string, string>)) {
      expect(checkShare(group, { index: Number(i), signingShare: h(s) }).index).toBe(Number(i));
    }
    // A share of another participant is refused under this index.
    expect(() => checkShare(group, { index: 2, signingShare: h(V.inputs.participant_shares['1']) })).toThrow(
      expect.objectContaining({ code: 'FROST_OUT_OF_RANGE' }),
    );
  });

  it('reproduces the nonces, commitments, signature shares and the signature byte for byte', () => {
    const commitments: Commitment[] = [];
    const nonces = new Map<number, { hiding: Uint8Array; binding: Uint8Array }>();
    for (const i of V.inputs.participant_list as number[]) {
      const r1 = V.round_one_outputs[String(i)];
      const share = { index: i, signingShare: h(V.inputs.participant_shares[String(i)]) };
      const c = commitNonces(share, scripted(r1.hiding_nonce_randomness, r1.binding_nonce_randomness));
      expect(hx(c.nonces.hiding)).toBe(r1.hiding_nonce);
      expect(hx(c.nonces.binding)).toBe(r1.binding_nonce);
      expect(c.commitment).toEqual({
        index: i,
        hiding: r1.hiding_nonce_commitment,
        binding: r1.binding_nonce_commitment,
      });
      commitments.push(c.commitment);
      nonces.set(i, c.nonces);
    }
    const shares: Record<string, Uint8Array> = {};
    for (const i of V.inputs.participant_list as number[]) {
      const share = { index: i, signingShare: h(V.inputs.participant_shares[String(i)]) };
      const z = signShare(group, share, nonces.get(i)!, commitments, message);
      expect(hx(z)).toBe(V.round_two_outputs[String(i)].sig_share);
      expect(verifyShare(group, commitments, message, i, z)).toBe(true);
      shares[String(i)] = z;
    }
    const sig = aggregate(group, commitments, message, shares);
    expect(hx(sig)).toBe(V.final_output.sig);
    // An ordinary Ed25519 signature: node:crypto, stellar-core's rules and Stellar's Keypair agree.
    expect(opensslVerify(h(V.inputs.group_public_key), message, sig)).toBe(true);
    expect(verifyEd25519(h(V.inputs.group_public_key), message, sig)).toBe(true);
    expect(verifyEd25519(h(V.inputs.group_public_key), h('74657375'), sig)).toBe(false);
    const kp = Keypair.fromPublicKey(addressOf(h(V.inputs.group_public_key)));
    expect(kp.verify(Buffer.from(message), Buffer.from(sig))).toBe(true);
    expect(kp.verify(Buffer.from('other'), Buffer.from(sig))).toBe(false);
  });
});

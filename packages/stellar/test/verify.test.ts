import { createPublicKey, verify as opensslVerify, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stellarErrors } from '../src/errors.ts';
import {
  hasSmallOrder,
  isCanonicalS,
  isCanonicalY,
  keyCacheSize,
  publicKeyFromAddress,
  signatureHint,
  verifiedCacheSize,
  verifyEd25519,
} from '../src/verify.ts';
import { fastSign } from './helpers.ts';

// Edge vectors with libsodium 1.0.18's verdicts (the verifier stellar-core uses); see the generator script.
interface Vector {
  name: string;
  publicKey: string;
  message: string;
  signature: string;
  libsodium: boolean;
}
const file = JSON.parse(readFileSync(new URL('./vectors/ed25519-libsodium.json', import.meta.url), 'utf8')) as {
  vectors: Vector[];
};
const vectors = file.vectors.map((v) => ({
  ...v,
  pk: Buffer.from(v.publicKey, 'hex'),
  msg: Buffer.from(v.message, 'hex'),
  sig: Buffer.from(v.signature, 'hex'),
}));

function sdkVerify(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  return Keypair.fromPublicKey(StrKey.encodeEd25519PublicKey(pk)).verify(msg, sig);
}

function rawOpenssl(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pk]),
    format: 'der',
    type: 'spki',
  });
  return opensslVerify(null, msg, key, sig);
}

describe('verifyEd25519 against libsodium (stellar-core)', () => {
  it('has the edge cases the brief names', () => {
    const names = vectors.map((v) => v.name).join('\n');
    expect(names).toMatch(/non-canonical S/);
    expect(names).toMatch(/small-order key/);
    expect(names).toMatch(/small-order R/);
    expect(names).toMatch(/mixed-order key/);
    expect(vectors.filter((v) => v.libsodium).length).toBeGreaterThanOrEqual(5);
    expect(vectors.filter((v) => !v.libsodium).length).toBeGreaterThanOrEqual(20);
  });

  it.each(vectors)('$name: equals libsodium ($libsodium)', (v) => {
    expect(verifyEd25519(v.pk, v.msg, v.sig)).toBe(v.libsodium);
  });

  it('documents where plain node:crypto differs from libsodium: small-order keys and an identity R (Node < 24)', () => {
    const differs = vectors.filter((v) => rawOpenssl(v.pk, v.msg, v.sig) !== v.libsodium).map((v) => v.name);
    // Measured: node:crypto's Ed25519 verify on Node 20.20 (OpenSSL 3.0.19), 22.13/22.14 (3.0.15) and 22.23.5
    // (OpenSSL 3.5.9) accepts forgeries under every small-order public key (one signature valid for any message)
    // and an identity R; on Node 24.19 (3.5.7) and 24.22 (3.5.9) it refuses them all, like libsodium. The Node line
    // decides, not the OpenSSL version. verifyEd25519 refuses them before calling OpenSSL, so it equals libsodium
    // on every one of them (tested above).
    const known = [
      'small-order key T0 sign 0',
      'small-order key T0 sign 1',
      'small-order key T1',
      'small-order key T2',
      'small-order key T3',
      'small-order key T4 sign 0',
      'small-order key T4 sign 1',
      'small-order key T5',
      'small-order key T6',
      'small-order key T7',
      'identity R, honest key',
    ];
    expect(differs).toEqual(Number(process.versions.node.split('.')[0]) < 24 ? known : []);
  });

  it('documents where the SDK (noble, cofactored) differs from libsodium: identity R and mixed-order points', () => {
    const differs = vectors.filter((v) => sdkVerify(v.pk, v.msg, v.sig) !== v.libsodium).map((v) => v.name);
    expect(differs).toEqual([
      'identity R, honest key',
      'mixed-order key, 8 does not divide h',
      'mixed-order R, honest key',
    ]);
  });
});

describe('verifyEd25519 equals the SDK on honest keys', () => {
  it('agrees with Keypair.verify on random keys, messages and mutated signatures', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 0, maxLength: 200 }),
        fc.nat({ max: 64 * 8 }),
        (seed, msg, flip) => {
          const kp = Keypair.fromRawEd25519Seed(Buffer.from(seed));
          const sig = Buffer.from(kp.sign(Buffer.from(msg)));
          const pk = kp.rawPublicKey();
          expect(verifyEd25519(pk, msg, sig)).toBe(true);
          expect(kp.verify(Buffer.from(msg), sig)).toBe(true);
          // Flip one bit (or none when flip = 512): both verifiers must agree.
          const bad = Buffer.from(sig);
          if (flip < 512) bad[flip >> 3]! ^= 1 << (flip & 7);
          expect(verifyEd25519(pk, msg, bad)).toBe(kp.verify(Buffer.from(msg), bad));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('agrees with the SDK on random 64-byte signatures and random keys', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        (sig, msg) => {
          const kp = Keypair.random();
          expect(verifyEd25519(kp.rawPublicKey(), msg, sig)).toBe(false);
          expect(kp.verify(Buffer.from(msg), Buffer.from(sig))).toBe(false);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('produces the same signatures as the SDK (node:crypto sign is deterministic RFC 8032)', () => {
    const kp = Keypair.random();
    const msg = randomBytes(32);
    expect(Buffer.from(kp.sign(msg)).toString('hex')).toHaveLength(128);
    expect(verifyEd25519(kp.rawPublicKey(), msg, kp.sign(msg))).toBe(true);
  });
});

describe('verifyEd25519 on bad input never throws', () => {
  const kp = Keypair.random();
  const msg = randomBytes(32);
  const sig = kp.sign(msg);
  const pk = kp.rawPublicKey();
  it.each([
    ['short key', pk.subarray(0, 31), msg, sig],
    ['long key', Buffer.concat([pk, Buffer.from([0])]), msg, sig],
    ['short signature', pk, msg, sig.subarray(0, 63)],
    ['long signature', pk, msg, Buffer.concat([sig, Buffer.from([0])])],
    ['empty signature', pk, msg, new Uint8Array(0)],
  ])('%s -> false', (_name, k, m, s) => {
    expect(verifyEd25519(k as Uint8Array, m as Uint8Array, s as Uint8Array)).toBe(false);
  });
  it('non-Uint8Array arguments -> false', () => {
    expect(verifyEd25519('x' as unknown as Uint8Array, msg, sig)).toBe(false);
    expect(verifyEd25519(pk, null as unknown as Uint8Array, sig)).toBe(false);
    expect(verifyEd25519(pk, msg, [1, 2] as unknown as Uint8Array)).toBe(false);
  });
  it('a 32-byte key that is not a curve point -> false (and is cached as such)', () => {
    const v = vectors.find((x) => x.name === 'key not on curve')!;
    expect(verifyEd25519(v.pk, v.msg, v.sig)).toBe(false);
    expect(verifyEd25519(v.pk, v.msg, v.sig)).toBe(false);
  });
  it('works on subarrays of a larger buffer', () => {
    const big = Buffer.concat([randomBytes(7), pk, randomBytes(5)]);
    expect(verifyEd25519(big.subarray(7, 39), msg, sig)).toBe(true);
  });
});

describe('key cache', () => {
  it('stays bounded at 4096 keys', () => {
    const msg = randomBytes(8);
    for (let i = 0; i < 4200; i++) verifyEd25519(randomBytes(32), msg, new Uint8Array(64).fill(7));
    expect(keyCacheSize()).toBe(4096);
  });
  it('a cached key still verifies (most recently used stays)', () => {
    const kp = Keypair.random();
    const msg = randomBytes(8);
    expect(verifyEd25519(kp.rawPublicKey(), msg, kp.sign(msg))).toBe(true);
    expect(verifyEd25519(kp.rawPublicKey(), msg, kp.sign(msg))).toBe(true);
  });
});

describe('verified-signature memory', () => {
  it('remembers a valid triple and answers it again without changing the verdict', () => {
    const kp = Keypair.random();
    const msg = randomBytes(32);
    const sig = kp.sign(msg);
    const before = verifiedCacheSize();
    expect(verifyEd25519(kp.rawPublicKey(), msg, sig)).toBe(true);
    const after = verifiedCacheSize();
    expect(after === before + 1 || after === 4096).toBe(true);
    expect(verifyEd25519(kp.rawPublicKey(), msg, sig)).toBe(true);
    expect(verifiedCacheSize()).toBe(after);
  });
  it('a remembered signature does not vouch for any other key, message or signature', () => {
    const kp = Keypair.random();
    const other = Keypair.random();
    const msg = randomBytes(32);
    const sig = Buffer.from(kp.sign(msg));
    expect(verifyEd25519(kp.rawPublicKey(), msg, sig)).toBe(true);
    for (let bit = 0; bit < 8 * 32; bit += 7) {
      const m = Buffer.from(msg);
      m[bit >> 3]! ^= 1 << (bit & 7);
      expect(verifyEd25519(kp.rawPublicKey(), m, sig)).toBe(false);
    }
    for (let bit = 0; bit < 8 * 64; bit += 11) {
      const s = Buffer.from(sig);
      s[bit >> 3]! ^= 1 << (bit & 7);
      expect(verifyEd25519(kp.rawPublicKey(), msg, s)).toBe(false);
    }
    expect(verifyEd25519(other.rawPublicKey(), msg, sig)).toBe(false);
    // The same bytes split differently (message shorter, signature shifted) are a different entry.
    expect(verifyEd25519(kp.rawPublicKey(), msg.subarray(0, 31), sig)).toBe(false);
  });
  it('keeps only valid signatures over short messages, and at most 4096', () => {
    const kp = Keypair.random();
    const start = verifiedCacheSize();
    const msg = randomBytes(32);
    const bad = Buffer.from(kp.sign(msg));
    bad[0]! ^= 1;
    expect(verifyEd25519(kp.rawPublicKey(), msg, bad)).toBe(false);
    const long = randomBytes(65);
    expect(verifyEd25519(kp.rawPublicKey(), long, kp.sign(long))).toBe(true);
    expect(verifiedCacheSize()).toBe(start);
    for (let i = 0; i < 4200; i++) {
      const m = randomBytes(16);
      expect(verifyEd25519(kp.rawPublicKey(), m, fastSign(kp, m))).toBe(true);
    }
    expect(verifiedCacheSize()).toBe(4096);
  });
});

describe('signatureHint and publicKeyFromAddress', () => {
  it('hint is the last 4 key bytes, as the SDK computes it', () => {
    const kp = Keypair.random();
    expect(signatureHint(kp.rawPublicKey()).equals(Buffer.from(kp.signatureHint()))).toBe(true);
  });
  it('hint of a wrong-length key throws STELLAR_BAD_INPUT', () => {
    expect(() => signatureHint(new Uint8Array(31))).toThrow(expect.objectContaining({ code: 'STELLAR_BAD_INPUT' }));
  });
  it('decodes a G address', () => {
    const kp = Keypair.random();
    expect(publicKeyFromAddress(kp.publicKey()).equals(Buffer.from(kp.rawPublicKey()))).toBe(true);
  });
  it.each([
    ['secret seed', Keypair.random().secret()],
    ['muxed', 'MA7QYNF7SOWQ3GLR2BGMZEHXAVIRZA4KVWLTJJFC7MGXUA74P7UJVAAAAAAAAAAAAAJLK'],
    ['contract', StrKey.encodeContract(randomBytes(32))],
    // The last character is checksum bits only: any other character breaks the checksum (the same one, 1 time
    // in 32, would not, hence not a fixed 'A').
    ['bad checksum', ((g: string) => g.slice(0, -1) + (g.endsWith('A') ? 'B' : 'A'))(Keypair.random().publicKey())],
    ['empty', ''],
    ['not a string', 42],
  ])('%s -> STELLAR_BAD_STRKEY', (_name, g) => {
    let err: unknown;
    try {
      publicKeyFromAddress(g as string);
    } catch (e) {
      err = e;
    }
    expect(stellarErrors.is(err, 'STELLAR_BAD_STRKEY')).toBe(true);
  });
});

describe('test helper fastSign', () => {
  it('gives the same signature as Keypair.sign', () => {
    const kp = Keypair.random();
    const msg = randomBytes(32);
    expect(fastSign(kp, msg).equals(Buffer.from(kp.sign(msg)))).toBe(true);
  });
});

describe('libsodium pre-checks, one by one', () => {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const P = 2n ** 255n - 19n;
  const le = (n: bigint) => Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse();
  const sigWithS = (s: bigint) => Buffer.concat([Buffer.alloc(32), le(s)]);

  it.each([
    [0n, true],
    [1n, true],
    [L - 1n, true],
    [L, false],
    [L + 1n, false],
    [2n ** 252n, true],
    [2n ** 253n, false],
    [2n ** 256n - 1n, false],
    [L - 1n + 2n ** 200n, false],
  ])('isCanonicalS(%s) = %s', (s, expected) => {
    expect(isCanonicalS(sigWithS(s))).toBe(expected);
  });

  it.each([
    [0n, true],
    [P - 1n, true],
    [P, false],
    [P + 18n, false],
    [2n ** 255n - 1n, false],
  ])('isCanonicalY(%s) = %s, with or without the sign bit', (y, expected) => {
    const enc = le(y);
    expect(isCanonicalY(enc)).toBe(expected);
    enc[31]! |= 0x80;
    expect(isCanonicalY(enc)).toBe(expected);
  });

  it('hasSmallOrder: the 7 blacklisted y values (either sign), and not an honest key', () => {
    const y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022n;
    for (const y of [0n, 1n, y8, P - y8, P - 1n, P, P + 1n]) {
      const enc = le(y);
      expect(hasSmallOrder(enc)).toBe(true);
      enc[31]! |= 0x80;
      expect(hasSmallOrder(enc)).toBe(true);
    }
    expect(hasSmallOrder(Keypair.random().rawPublicKey())).toBe(false);
    expect(hasSmallOrder(le(2n))).toBe(false);
  });
});

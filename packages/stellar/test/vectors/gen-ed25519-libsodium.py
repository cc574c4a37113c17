#!/usr/bin/env python3
"""Generate ed25519 edge vectors and libsodium's verdict on each (the verifier stellar-core uses).

stellar-core verifies envelope signatures with libsodium's crypto_sign_verify_detached
(src/crypto/SecretKey.cpp, PubKeyUtils::verifySig). This script builds edge cases with plain affine
Edwards arithmetic (RFC 8032 section 5.1) and asks the system libsodium, through ctypes, to judge each.
The output, ed25519-libsodium.json, is committed; the TypeScript tests replay it against verifyEd25519.

Run: python3 packages/stellar/test/vectors/gen-ed25519-libsodium.py > packages/stellar/test/vectors/ed25519-libsodium.json
Needs libsodium (Debian libsodium23). Deterministic: the randomness comes from a fixed seed.
"""
import ctypes
import ctypes.util
import hashlib
import json
import random

p = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
d = (-121665 * pow(121666, p - 2, p)) % p
I = pow(2, (p - 1) // 4, p)

rng = random.Random(20261128)


def inv(x):
    return pow(x, p - 2, p)


def add(P, Q):
    (x1, y1), (x2, y2) = P, Q
    t = d * x1 * x2 * y1 * y2 % p
    return ((x1 * y2 + x2 * y1) * inv(1 + t) % p, (y1 * y2 + x1 * x2) * inv(1 - t) % p)


def mul(k, P):
    R = (0, 1)
    while k > 0:
        if k & 1:
            R = add(R, P)
        P = add(P, P)
        k >>= 1
    return R


def neg(P):
    return ((-P[0]) % p, P[1])


def recover_x(y, sign):
    if y >= p:
        return None
    x2 = (y * y - 1) * inv(d * y * y + 1) % p
    if x2 == 0:
        return 0 if sign == 0 else None
    x = pow(x2, (p + 3) // 8, p)
    if (x * x - x2) % p != 0:
        x = x * I % p
    if (x * x - x2) % p != 0:
        return None
    if x & 1 != sign:
        x = p - x
    return x


def enc(P):
    x, y = P
    return (y | ((x & 1) << 255)).to_bytes(32, 'little')


By = 4 * inv(5) % p
B = (recover_x(By, 0), By)


def H(*parts):
    return int.from_bytes(hashlib.sha512(b''.join(parts)).digest(), 'little')


def keypair():
    a = rng.randrange(1, L)
    return a, mul(a, B)


def sign_with(a, A_enc, msg, r=None):
    r = rng.randrange(1, L) if r is None else r
    R = mul(r, B)
    h = H(enc(R), A_enc, msg) % L
    return enc(R) + ((r + h * a) % L).to_bytes(32, 'little')


sodium = ctypes.CDLL(ctypes.util.find_library('sodium') or 'libsodium.so.23')
assert sodium.sodium_init() >= 0
sodium.sodium_version_string.restype = ctypes.c_char_p


def libsodium_verify(pk, msg, sig):
    return sodium.crypto_sign_verify_detached(sig, msg, ctypes.c_ulonglong(len(msg)), pk) == 0


# The eight torsion points: T8 generates the subgroup of order 8.
T8 = None
# A point of order 8: take any point Q and multiply by L; retry until the result has order exactly 8.
while T8 is None:
    y = rng.randrange(p)
    x = recover_x(y, 0)
    if x is None:
        continue
    Q = mul(L, (x, y))
    if mul(4, Q) != (0, 1):
        T8 = Q
torsion = [mul(i, T8) for i in range(8)]

vectors = []


def case(name, pk, msg, sig):
    vectors.append({
        'name': name,
        'publicKey': pk.hex(),
        'message': msg.hex(),
        'signature': sig.hex(),
        'libsodium': libsodium_verify(pk, msg, sig),
    })


msg = hashlib.sha256(b'stellar cosigner edge vectors').digest()

for i in range(4):
    a, A = keypair()
    m = rng.randbytes(32)
    case(f'random valid {i}', enc(A), m, sign_with(a, enc(A), m))

a, A = keypair()
good = sign_with(a, enc(A), msg)
case('valid', enc(A), msg, good)
case('wrong message', enc(A), bytes([msg[0] ^ 1]) + msg[1:], good)
s = int.from_bytes(good[32:], 'little')
case('non-canonical S (S + L)', enc(A), msg, good[:32] + (s + L).to_bytes(32, 'little'))
case('S = L', enc(A), msg, good[:32] + L.to_bytes(32, 'little'))
case('S with top bits set', enc(A), msg, good[:32] + (s | (0xE0 << 248)).to_bytes(32, 'little'))
case('R flipped bit', enc(A), msg, bytes([good[0] ^ 4]) + good[1:])

# Small-order public keys: with A of small order, [h]A lies in the torsion subgroup, so R = [s]B - [h]A
# satisfies the cofactorless equation once [h]A is guessed right (a forgery any message can get).
for i, T in enumerate(torsion):
    for signbit in (0, 1) if T[0] == 0 else (None,):
        Tenc = bytearray(enc(T))
        if signbit is not None:
            Tenc[31] = (Tenc[31] & 0x7F) | (signbit << 7)
        Tenc = bytes(Tenc)
        for _ in range(200):
            sc = rng.randrange(1, L)
            k = rng.randrange(8)
            R = add(mul(sc, B), neg(mul(k, T)))
            h = H(enc(R), Tenc, msg) % L
            if mul(h, T) == mul(k, T):
                break
        case(f'small-order key T{i}' + ('' if signbit is None else f' sign {signbit}'), Tenc, msg,
             enc(R) + sc.to_bytes(32, 'little'))

# Non-canonical encodings of small-order y values (y + p still fits in 255 bits for y = 0 and y = 1).
for y in (0, 1):
    ne = (y + p).to_bytes(32, 'little')
    case(f'non-canonical small-order key y={y}+p', ne, msg, good)

# Small-order R with an honest key: R = identity and S = h*a satisfies S*B = R + h*A.
a, A = keypair()
Rid = enc((0, 1))
h = H(Rid, enc(A), msg) % L
case('identity R, honest key', enc(A), msg, Rid + (h * a % L).to_bytes(32, 'little'))
# Other small-order R: no S exists under the cofactorless equation; still record the verdict.
for i in (2, 4):
    case(f'small-order R T{i}', enc(A), msg, enc(torsion[i]) + good[32:])

# Mixed-order key A' = A + T8 with known a: the cofactorless equation holds exactly when 8 | h.
a, A = keypair()
Amix = add(A, T8)
for want_zero in (True, False):
    while True:
        r = rng.randrange(1, L)
        R = mul(r, B)
        h = H(enc(R), enc(Amix), msg) % L
        if (h % 8 == 0) == want_zero:
            break
    sig = enc(R) + ((r + h * a) % L).to_bytes(32, 'little')
    case('mixed-order key, 8 | h' if want_zero else 'mixed-order key, 8 does not divide h', enc(Amix), msg, sig)

# Mixed-order R with an honest key: R' = R + T8, S = r + h*a; cofactorless check fails, cofactored passes.
a, A = keypair()
r = rng.randrange(1, L)
Rmix = add(mul(r, B), T8)
h = H(enc(Rmix), enc(A), msg) % L
case('mixed-order R, honest key', enc(A), msg, enc(Rmix) + ((r + h * a) % L).to_bytes(32, 'little'))

# Public key not on the curve, and a non-canonical y (>= p) that is on the curve.
y = 2
while recover_x(y, 0) is not None:
    y += 1
case('key not on curve', y.to_bytes(32, 'little'), msg, good)
for y in range(2, 19):
    if recover_x(y, 0) is not None:
        case(f'non-canonical key y={y}+p', (y + p).to_bytes(32, 'little'), msg, good)
        break
case('all-zero signature', enc(A), msg, bytes(64))

print(json.dumps({
    '_source': 'packages/stellar/test/vectors/gen-ed25519-libsodium.py with libsodium '
    + sodium.sodium_version_string().decode() + ' crypto_sign_verify_detached (what stellar-core uses)',
    'vectors': vectors,
}, indent=1))

import { createHash } from 'node:crypto';
import { CosignerError } from '@cosigner/errors/errors';
import { type Keypair, Memo, Networks, xdr } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_ENVELOPE_BYTES, type DecodedTransaction, decodeEnvelope, networkId } from '../src/decode.ts';
import { describeTransaction } from '../src/describe.ts';
import { stellarErrors } from '../src/errors.ts';
import { buildTx, everyOperation, feeBump, newKeys, PASSPHRASE, pay } from './helpers.ts';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof CosignerError) return e.code;
    return `untyped: ${String(e)}`;
  }
  return undefined;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

describe('decodeEnvelope: transactions', () => {
  const [src, dest] = newKeys(2) as [Keypair, Keypair];
  const tx = buildTx({ source: src.publicKey(), ops: [pay(dest.publicKey()), pay(src.publicKey(), dest.publicKey())] });
  tx.sign(src);
  const b64 = tx.toEnvelope().toXdr('base64');

  it('decodes, keeps the envelope and copies the signatures', () => {
    const d = decodeEnvelope(b64, PASSPHRASE);
    expect(d.kind).toBe('transaction');
    expect(d.envelopeXdr).toBe(b64);
    expect(d.networkPassphrase).toBe(PASSPHRASE);
    expect(d.inner).toBeUndefined();
    expect(d.signatures).toHaveLength(1);
    expect(d.signatures[0]!.hint.equals(Buffer.from(src.signatureHint()))).toBe(true);
    expect(d.tx.operations).toHaveLength(2);
  });

  it('hash = sha256(sha256(passphrase) || int32 ENVELOPE_TYPE_TX || XDR(Transaction)), computed by hand', () => {
    const d = decodeEnvelope(b64, PASSPHRASE);
    const txXdr = xdr.TransactionEnvelope.fromXdr(b64, 'base64');
    if (txXdr.type !== 'envelopeTypeTx') throw new Error('expected v1');
    const byHand = sha256(sha256(Buffer.from(PASSPHRASE)), int32(2), txXdr.v1.tx.toXdr());
    expect(d.hash.equals(byHand)).toBe(true);
    expect(d.hash.equals(Buffer.from(tx.hash()))).toBe(true);
    expect(networkId(PASSPHRASE).equals(sha256(Buffer.from(PASSPHRASE)))).toBe(true);
  });

  it('the hash depends on the network passphrase', () => {
    const a = decodeEnvelope(b64, Networks.TESTNET).hash;
    const b = decodeEnvelope(b64, Networks.PUBLIC).hash;
    expect(a.equals(b)).toBe(false);
  });

  it('accepts a matching expectedHash (hex or bytes) and refuses another network hash', () => {
    const h = decodeEnvelope(b64, PASSPHRASE).hash;
    expect(decodeEnvelope(b64, PASSPHRASE, { expectedHash: h.toString('hex').toUpperCase() }).hash.equals(h)).toBe(
      true,
    );
    expect(decodeEnvelope(b64, PASSPHRASE, { expectedHash: new Uint8Array(h) }).hash.equals(h)).toBe(true);
    const other = decodeEnvelope(b64, Networks.PUBLIC).hash;
    expect(codeOf(() => decodeEnvelope(b64, PASSPHRASE, { expectedHash: other }))).toBe('STELLAR_HASH_MISMATCH');
  });

  it('decodes a transaction with every operation type', () => {
    const ops = everyOperation();
    const all = buildTx({ source: src.publicKey(), ops: ops.map((o) => o.op) });
    const d = decodeEnvelope(all.toEnvelope().toXdr('base64'), PASSPHRASE);
    expect(d.tx.operations.map((o) => o.type)).toEqual(ops.map((o) => o.type));
  });
});

describe('decodeEnvelope: fee bumps', () => {
  it('outer hash uses ENVELOPE_TYPE_TX_FEE_BUMP over XDR(FeeBumpTransaction); inner keeps its hash and signatures', () => {
    const [src, payer] = newKeys(2) as [Keypair, Keypair];
    const inner = buildTx({ source: src.publicKey(), ops: [pay(payer.publicKey())] });
    inner.sign(src);
    const fb = feeBump(inner, payer);
    fb.sign(payer);
    const b64 = fb.toEnvelope().toXdr('base64');
    const d = decodeEnvelope(b64, PASSPHRASE);
    expect(d.kind).toBe('feeBump');
    const env = xdr.TransactionEnvelope.fromXdr(b64, 'base64');
    if (env.type !== 'envelopeTypeTxFeeBump') throw new Error('expected fee bump');
    const byHand = sha256(sha256(Buffer.from(PASSPHRASE)), int32(5), env.feeBump.tx.toXdr());
    expect(d.hash.equals(byHand)).toBe(true);
    expect(d.inner!.kind).toBe('transaction');
    expect(d.inner!.hash.equals(Buffer.from(inner.hash()))).toBe(true);
    expect(d.inner!.signatures).toHaveLength(1);
    expect(d.signatures).toHaveLength(1);
    expect(d.signatures[0]!.hint.equals(Buffer.from(payer.signatureHint()))).toBe(true);
    expect(d.envelopeXdr).toBe(b64);
  });
});

describe('decodeEnvelope: refusals', () => {
  const [src] = newKeys(1) as [Keypair];
  const tx = buildTx({ source: src.publicKey(), ops: [pay(src.publicKey())] });
  const b64 = tx.toEnvelope().toXdr('base64');

  it.each([
    ['not a string', () => decodeEnvelope(42 as unknown as string, PASSPHRASE), 'STELLAR_BAD_INPUT'],
    ['empty passphrase', () => decodeEnvelope(b64, ''), 'STELLAR_BAD_NETWORK'],
    ['missing passphrase', () => decodeEnvelope(b64, undefined as unknown as string), 'STELLAR_BAD_NETWORK'],
    ['networkId of empty', () => networkId(''), 'STELLAR_BAD_NETWORK'],
    ['empty envelope', () => decodeEnvelope('', PASSPHRASE), 'STELLAR_MALFORMED_XDR'],
    ['not base64', () => decodeEnvelope('!!!!', PASSPHRASE), 'STELLAR_MALFORMED_XDR'],
    ['base64 of a wrong length', () => decodeEnvelope(b64.slice(0, -2), PASSPHRASE), 'STELLAR_MALFORMED_XDR'],
    ['whitespace', () => decodeEnvelope(` ${b64}`, PASSPHRASE), 'STELLAR_MALFORMED_XDR'],
    ['garbage XDR', () => decodeEnvelope('AAAAAA==', PASSPHRASE), 'STELLAR_MALFORMED_XDR'],
    [
      'truncated',
      () => decodeEnvelope(Buffer.from(b64, 'base64').subarray(0, 60).toString('base64'), PASSPHRASE),
      'STELLAR_MALFORMED_XDR',
    ],
    [
      'trailing bytes',
      () => decodeEnvelope(Buffer.concat([Buffer.from(b64, 'base64'), Buffer.alloc(4)]).toString('base64'), PASSPHRASE),
      'STELLAR_MALFORMED_XDR',
    ],
    [
      'over the default size',
      () => decodeEnvelope('A'.repeat(DEFAULT_MAX_ENVELOPE_BYTES + 4), PASSPHRASE),
      'STELLAR_XDR_TOO_LARGE',
    ],
    ['over a custom size', () => decodeEnvelope(b64, PASSPHRASE, { maxBytes: 16 }), 'STELLAR_XDR_TOO_LARGE'],
  ])('%s', (_name, f, code) => {
    expect(codeOf(f)).toBe(code);
  });

  it('refuses a v0 envelope (ENVELOPE_TYPE_TX_V0) with STELLAR_UNSUPPORTED_ENVELOPE', () => {
    // A v1 envelope whose source is a plain G key and whose cond is PRECOND_TIME has the v0 layout once the
    // envelope type becomes 0 and the 4-byte muxed-account type disappears (cond type 1 = optional present).
    const raw = Buffer.from(b64, 'base64');
    expect(raw.readInt32BE(0)).toBe(2);
    expect(raw.readInt32BE(4)).toBe(0);
    const v0 = Buffer.concat([int32(0), raw.subarray(8)]).toString('base64');
    expect(xdr.TransactionEnvelope.fromXdr(v0, 'base64').type).toBe('envelopeTypeTxV0');
    expect(codeOf(() => decodeEnvelope(v0, PASSPHRASE))).toBe('STELLAR_UNSUPPORTED_ENVELOPE');
  });

  it('refuses non-canonical XDR (non-zero padding after a text memo)', () => {
    const withMemo = buildTx({ source: src.publicKey(), ops: [pay(src.publicKey())], memo: Memo.text('abc') });
    const raw = Buffer.from(withMemo.toEnvelope().toXdr('base64'), 'base64');
    const at = raw.indexOf(Buffer.from('abc\0'));
    expect(at).toBeGreaterThan(0);
    raw[at + 3] = 0x7f;
    expect(codeOf(() => decodeEnvelope(raw.toString('base64'), PASSPHRASE))).toBe('STELLAR_MALFORMED_XDR');
  });
});

describe('decoder fuzz: only typed STELLAR_* errors', () => {
  const [src, dst] = newKeys(2) as [Keypair, Keypair];
  const ops = everyOperation().map((o) => o.op);
  const tx = buildTx({ source: src.publicKey(), ops: [...ops, pay(dst.publicKey(), dst.publicKey())] });
  tx.sign(src);
  const valid = Buffer.from(tx.toEnvelope().toXdr('base64'), 'base64');
  const fb = feeBump(tx, dst);
  fb.sign(dst);
  const validFb = Buffer.from(fb.toEnvelope().toXdr('base64'), 'base64');

  function decodesOrTyped(b64: string): void {
    let d: DecodedTransaction;
    try {
      d = decodeEnvelope(b64, PASSPHRASE);
    } catch (e) {
      expect(stellarErrors.is(e)).toBe(true);
      expect((e as CosignerError).code).toMatch(/^STELLAR_/);
      return;
    }
    // Whatever decodes must also describe, JSON-safe, without throwing.
    expect(() => JSON.stringify(describeTransaction(d))).not.toThrow();
  }

  it('random strings', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), decodesOrTyped), { numRuns: 300 });
  });
  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => decodesOrTyped(Buffer.from(b).toString('base64'))),
      { numRuns: 300 },
    );
  });
  it('bit flips, truncations and splices of valid envelopes', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        fc.uint8Array({ maxLength: 8 }),
        (useFb, flips, cut, insert) => {
          const base = Buffer.from(useFb ? validFb : valid);
          for (const f of flips) base[f % base.length]! ^= 1 << (f % 8);
          decodesOrTyped(base.toString('base64'));
          decodesOrTyped(base.subarray(0, cut % base.length).toString('base64'));
          const at = cut % base.length;
          decodesOrTyped(Buffer.concat([base.subarray(0, at), insert, base.subarray(at)]).toString('base64'));
        },
      ),
      { numRuns: 400 },
    );
  });
});

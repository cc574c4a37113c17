import { createHash } from 'node:crypto';
import { FeeBumpTransaction, Transaction, xdr } from '@stellar/stellar-sdk/base';
import { stellarErrors } from './errors.ts';
import type { DecoratedSig } from './types.ts';

/**
 * A decoded envelope, hashed for one pinned network. `tx` is the SDK's object; `hash` is what signers sign.
 * For a fee bump, `hash`/`signatures` are the outer envelope's and `inner` is the wrapped v1 transaction.
 */
export interface DecodedTransaction {
  kind: 'transaction' | 'feeBump';
  hash: Buffer;
  networkPassphrase: string;
  /** The envelope as decoded, re-encoded by the SDK (byte-identical to the input: see decodeEnvelope). */
  envelopeXdr: string;
  tx: Transaction | FeeBumpTransaction;
  inner?: DecodedTransaction;
  signatures: DecoratedSig[];
}

export interface DecodeOptions {
  /** Largest base64 envelope accepted, in characters. Default 100 KiB (102400). */
  maxBytes?: number;
  /** When the caller also sent a hash (hex or bytes), it must equal the one computed here. */
  expectedHash?: string | Uint8Array;
}

/** Default size limit: 100 KiB of base64. Soroban transactions are the largest; core's own limit is lower. */
export const DEFAULT_MAX_ENVELOPE_BYTES = 100 * 1024;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** networkId = sha256(passphrase), the first field of every signature payload (stellar-core Config NETWORK_PASSPHRASE). */
export function networkId(passphrase: string): Buffer {
  if (typeof passphrase !== 'string' || passphrase.length === 0) throw stellarErrors.error('STELLAR_BAD_NETWORK');
  return createHash('sha256').update(passphrase, 'utf8').digest();
}

/**
 * Checks that `d` is what decodeEnvelope returns, at the boundary of every function that takes one.
 * @throws STELLAR_BAD_INPUT
 */
export function assertDecoded(d: unknown): asserts d is DecodedTransaction {
  const ok =
    d !== null &&
    typeof d === 'object' &&
    (((d as DecodedTransaction).kind === 'transaction' && (d as DecodedTransaction).tx instanceof Transaction) ||
      ((d as DecodedTransaction).kind === 'feeBump' && (d as DecodedTransaction).tx instanceof FeeBumpTransaction)) &&
    Buffer.isBuffer((d as DecodedTransaction).hash) &&
    (d as DecodedTransaction).hash.length === 32 &&
    Array.isArray((d as DecodedTransaction).signatures) &&
    typeof (d as DecodedTransaction).envelopeXdr === 'string';
  if (!ok) {
    throw stellarErrors.error(
      'STELLAR_BAD_INPUT',
      { field: 'decoded' },
      { message: 'Expected a decoded transaction (the result of decodeEnvelope).' },
    );
  }
}

/** Copies an XDR signature list into plain buffers, so callers never hold the SDK's mutable objects. */
export function toDecoratedSigs(list: readonly xdr.DecoratedSignature[]): DecoratedSig[] {
  return list.map((s) => ({ hint: Buffer.from(s.hint.value), signature: Buffer.from(s.signature.value) }));
}

/**
 * The SDK's `tx.tx` getter re-encodes and re-decodes the whole transaction on every access (a defensive
 * copy, about a millisecond). Keep the XDR object decoded once from the envelope instead; XDR values are
 * read-only, so sharing it is safe.
 */
const xdrOf = new WeakMap<Transaction | FeeBumpTransaction, xdr.Transaction | xdr.FeeBumpTransaction>();

/** The XDR transaction (v1 or fee bump) of a decoded envelope, without the SDK getter's copy. */
export function xdrTransactionOf(d: DecodedTransaction): xdr.Transaction | xdr.FeeBumpTransaction {
  let x = xdrOf.get(d.tx);
  if (x === undefined) {
    x = d.tx.tx as xdr.Transaction | xdr.FeeBumpTransaction;
    xdrOf.set(d.tx, x);
  }
  return x;
}

function decodedFromTransaction(tx: Transaction, networkPassphrase: string, envelopeXdr?: string): DecodedTransaction {
  return {
    kind: 'transaction',
    hash: Buffer.from(tx.hash()),
    networkPassphrase,
    envelopeXdr: envelopeXdr ?? tx.toEnvelope().toXdr('base64'),
    tx,
    signatures: toDecoratedSigs(tx.signatures),
  };
}

/**
 * Decodes a base64 transaction or fee-bump envelope and hashes it for `networkPassphrase`.
 *
 * v0 envelopes (ENVELOPE_TYPE_TX_V0, pre-protocol-13 form) are refused: every current SDK builds v1, and
 * keeping one envelope form means what a node reviews, signs and assembles never changes type underway.
 * The input must re-encode to the same bytes (canonical XDR), so nothing can hide in padding or slack.
 *
 * @throws STELLAR_BAD_INPUT (not a string), STELLAR_BAD_NETWORK, STELLAR_XDR_TOO_LARGE, STELLAR_MALFORMED_XDR,
 *   STELLAR_UNSUPPORTED_ENVELOPE, STELLAR_HASH_MISMATCH.
 */
export function decodeEnvelope(
  xdrBase64: string,
  networkPassphrase: string,
  opts: DecodeOptions = {},
): DecodedTransaction {
  if (typeof xdrBase64 !== 'string') {
    throw stellarErrors.error(
      'STELLAR_BAD_INPUT',
      { field: 'xdr' },
      { message: 'The envelope must be a base64 string.' },
    );
  }
  if (typeof networkPassphrase !== 'string' || networkPassphrase.length === 0) {
    throw stellarErrors.error('STELLAR_BAD_NETWORK');
  }
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_ENVELOPE_BYTES;
  if (xdrBase64.length > maxBytes) {
    throw stellarErrors.error('STELLAR_XDR_TOO_LARGE', { length: xdrBase64.length, maxBytes });
  }
  if (xdrBase64.length === 0 || !BASE64.test(xdrBase64)) throw stellarErrors.error('STELLAR_MALFORMED_XDR');

  let envelope: xdr.TransactionEnvelope;
  try {
    envelope = xdr.TransactionEnvelope.fromXdr(xdrBase64, 'base64');
  } catch (cause) {
    throw stellarErrors.error('STELLAR_MALFORMED_XDR', undefined, { cause });
  }
  if (envelope.type === 'envelopeTypeTxV0') throw stellarErrors.error('STELLAR_UNSUPPORTED_ENVELOPE', { type: 'v0' });

  let decoded: DecodedTransaction;
  try {
    if (envelope.toXdr('base64') !== xdrBase64) throw new Error('non-canonical XDR');
    if (envelope.type === 'envelopeTypeTx') {
      const tx = new Transaction(envelope, networkPassphrase);
      xdrOf.set(tx, envelope.v1.tx);
      decoded = decodedFromTransaction(tx, networkPassphrase, xdrBase64);
    } else {
      const fb = new FeeBumpTransaction(envelope, networkPassphrase);
      xdrOf.set(fb, envelope.feeBump.tx);
      const innerTx = envelope.feeBump.tx.innerTx;
      if (innerTx.type === 'envelopeTypeTx') xdrOf.set(fb.innerTransaction, innerTx.v1.tx);
      decoded = {
        kind: 'feeBump',
        hash: Buffer.from(fb.hash()),
        networkPassphrase,
        envelopeXdr: xdrBase64,
        tx: fb,
        inner: decodedFromTransaction(fb.innerTransaction, networkPassphrase),
        signatures: toDecoratedSigs(fb.signatures),
      };
    }
  } catch (cause) {
    // The SDK throws plain Errors on content it cannot represent (bad strkeys, out-of-range values).
    throw stellarErrors.error('STELLAR_MALFORMED_XDR', undefined, { cause });
  }
  if (opts.expectedHash !== undefined) {
    const expected =
      typeof opts.expectedHash === 'string'
        ? opts.expectedHash.toLowerCase()
        : Buffer.from(opts.expectedHash).toString('hex');
    if (expected !== decoded.hash.toString('hex')) {
      throw stellarErrors.error('STELLAR_HASH_MISMATCH', { computed: decoded.hash.toString('hex') });
    }
  }
  return decoded;
}

import { createHash } from 'node:crypto';
import { Address, buildAuthorizationEntryPreimage, StrKey, xdr } from '@stellar/stellar-sdk/base';
import { describeAuthEntry as describeEntry } from './describe.ts';
import { stellarErrors } from './errors.ts';
import { parseAccount } from './quorum.ts';
import type { AccountAuth, AuthEntrySummary } from './types.ts';
import { verifyEd25519 } from './verify.ts';

/**
 * Soroban authorization entries signed by a classic multisig G account.
 *
 * The host authenticates a G account's entry in soroban-env-host src/native_contract/account_contract.rs
 * (`check_account_authentication`): the credential's signature is a Vec of `AccountEd25519Signature
 * { public_key: BytesN<32>, signature: BytesN<64> }`, at most 20, public keys strictly ascending, each
 * signature valid over the payload, each key a signer of the account with non-zero weight (else the whole entry
 * fails), and the weights (clamped to 255) summing to at least the MEDIUM threshold. Unlike envelopes, an extra
 * signature is not an error. The SDK's `authorizeEntry` writes a one-element vector, so multisig vectors are
 * built here.
 */

/** MAX_ACCOUNT_SIGNATURES in account_contract.rs. */
export const MAX_AUTH_SIGNATURES = 20;

/**
 * Who an authorization entry speaks for, from its credentials (Stellar-transaction.x `SorobanCredentials`):
 * SOURCE_ACCOUNT entries stand for the invoker and are covered by the envelope's own signatures; ADDRESS,
 * ADDRESS_V2 and ADDRESS_WITH_DELEGATES (CAP-71) entries name an address (a G account or a C contract) and carry
 * credentials whose payload that address signs. The one switch over the credential types: services add their own
 * rules on top (which forms they accept, what they do with a contract address).
 */
export type AuthCredentials =
  | { credentials: 'sourceAccount' }
  | {
      credentials: 'address' | 'addressV2' | 'addressWithDelegates';
      /** G... or C... strkey of the authorizing address. */
      address: string;
      creds: xdr.SorobanAddressCredentials;
    };

/** The credentials of `entry` in plain terms (see AuthCredentials). @throws STELLAR_BAD_INPUT (not an entry) */
export function authCredentials(entry: xdr.SorobanAuthorizationEntry): AuthCredentials {
  if (!(entry instanceof xdr.SorobanAuthorizationEntry)) {
    throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'entry' });
  }
  const c = entry.credentials;
  const named = (
    credentials: 'address' | 'addressV2' | 'addressWithDelegates',
    creds: xdr.SorobanAddressCredentials,
  ) => ({
    credentials,
    address: Address.fromScAddress(creds.address).toString(),
    creds,
  });
  switch (c.type) {
    case 'sorobanCredentialsSourceAccount':
      return { credentials: 'sourceAccount' };
    case 'sorobanCredentialsAddress':
      return named('address', c.address);
    case 'sorobanCredentialsAddressV2':
      return named('addressV2', c.addressV2);
    default:
      return named('addressWithDelegates', c.addressWithDelegates.addressCredentials);
  }
}

function addressCredentials(entry: xdr.SorobanAuthorizationEntry): xdr.SorobanAddressCredentials {
  const a = authCredentials(entry);
  if (a.credentials === 'sourceAccount') {
    // SOURCE_ACCOUNT credentials are covered by the envelope's own signatures (at MEDIUM), not by a payload.
    throw stellarErrors.error(
      'STELLAR_BAD_AUTH_ENTRY',
      { credentials: entry.credentials.type },
      { message: 'Source-account credentials have no payload to sign: the envelope signatures cover them.' },
    );
  }
  return a.creds;
}

/**
 * The operation types that make a transaction a Soroban transaction (stellar-core TransactionFrame::isSoroban:
 * invokeHostFunction, CAP-46-06; extendFootprintTtl and restoreFootprint, CAP-46-07).
 */
export const SOROBAN_OPERATION_TYPES: ReadonlySet<string> = new Set([
  'invokeHostFunction',
  'extendFootprintTtl',
  'restoreFootprint',
]);

/** The resources a Soroban transaction declares (SorobanTransactionData), as numbers a limit compares with. */
export interface SorobanResourceSummary {
  /** Stroops of the fee reserved for resources (the part of the fee that is not the inclusion fee). */
  resourceFee: bigint;
  instructions: number;
  diskReadBytes: number;
  writeBytes: number;
  readOnlyEntries: number;
  readWriteEntries: number;
  /** readOnlyEntries + readWriteEntries. */
  footprintEntries: number;
}

/**
 * A v1 transaction's Soroban shape, by the state-independent rules of stellar-core
 * TransactionFrame::commonValidPreSeqNum, in core's order (each failure is txMALFORMED there):
 * - `classic`: no Soroban operation; `hasData` is true when it carries SorobanTransactionData anyway (malformed);
 * - `malformed`: a Soroban operation that is not alone (`operationCount`), or without SorobanTransactionData
 *   (`noResources`: simulate it first);
 * - `soroban`: one Soroban operation with its declared resources, and the auth entries an invokeHostFunction
 *   carries (none for the footprint operations).
 * The network's numeric limits and fee rules are not shape: each service adds its own (a node's policy, the
 * coordinator's config, the simulator's network limits).
 */
export type SorobanShape =
  | { kind: 'classic'; hasData: boolean }
  | { kind: 'malformed'; problem: 'operationCount' | 'noResources'; operations: number }
  | {
      kind: 'soroban';
      operation: xdr.Operation;
      data: xdr.SorobanTransactionData;
      resources: SorobanResourceSummary;
      auth: xdr.SorobanAuthorizationEntry[];
    };

/** See SorobanShape. @throws STELLAR_BAD_INPUT (not a v1 transaction) */
export function sorobanShape(tx: xdr.Transaction): SorobanShape {
  if (!(tx instanceof xdr.Transaction)) throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'tx' });
  const hasData = tx.ext.type === 'sorobanData';
  if (!tx.operations.some((op) => SOROBAN_OPERATION_TYPES.has(op.body.type))) return { kind: 'classic', hasData };
  const operations = tx.operations.length;
  if (operations !== 1) return { kind: 'malformed', problem: 'operationCount', operations };
  if (tx.ext.type !== 'sorobanData') return { kind: 'malformed', problem: 'noResources', operations };
  const operation = tx.operations[0] as xdr.Operation;
  const data = tx.ext.sorobanData;
  const auth = operation.body.type === 'invokeHostFunction' ? operation.body.invokeHostFunctionOp.auth : [];
  return { kind: 'soroban', operation, data, resources: sorobanResources(data), auth };
}

/** The declared resources of `data` (see SorobanResourceSummary). */
export function sorobanResources(data: xdr.SorobanTransactionData): SorobanResourceSummary {
  const r = data.resources;
  const readOnlyEntries = r.footprint.readOnly.length;
  const readWriteEntries = r.footprint.readWrite.length;
  return {
    resourceFee: BigInt(data.resourceFee.toString()),
    instructions: r.instructions,
    diskReadBytes: r.diskReadBytes,
    writeBytes: r.writeBytes,
    readOnlyEntries,
    readWriteEntries,
    footprintEntries: readOnlyEntries + readWriteEntries,
  };
}

export interface AuthPayloadOptions {
  /** The expiration ledger to commit to; default: the entry's own signatureExpirationLedger. */
  signatureExpirationLedger?: number;
}

/**
 * The 32 bytes a signer signs to authorize `entry` on the network `networkPassphrase`:
 * sha256(XDR(HashIdPreimage)). Legacy ADDRESS credentials use ENVELOPE_TYPE_SOROBAN_AUTHORIZATION (9)
 * {networkId, nonce, signatureExpirationLedger, invocation}; ADDRESS_V2 and ADDRESS_WITH_DELEGATES (CAP-71,
 * protocol 27) use ENVELOPE_TYPE_SOROBAN_AUTHORIZATION_WITH_ADDRESS (10), which also binds the address.
 * @throws STELLAR_BAD_AUTH_ENTRY (source-account credentials), STELLAR_BAD_NETWORK, STELLAR_BAD_INPUT
 */
export function authEntryPayload(
  entry: xdr.SorobanAuthorizationEntry,
  networkPassphrase: string,
  opts: AuthPayloadOptions = {},
): Buffer {
  if (typeof networkPassphrase !== 'string' || networkPassphrase.length === 0) {
    throw stellarErrors.error('STELLAR_BAD_NETWORK');
  }
  const creds = addressCredentials(entry);
  const expiration = opts.signatureExpirationLedger ?? creds.signatureExpirationLedger;
  if (!Number.isInteger(expiration) || expiration < 0 || expiration > 0xffffffff) {
    throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'signatureExpirationLedger' });
  }
  const preimage = buildAuthorizationEntryPreimage(entry, expiration, networkPassphrase);
  return createHash('sha256').update(preimage.toXdr()).digest();
}

/** One signer's contribution to an entry: the raw 32-byte key and its 64-byte signature over the payload. */
export interface AuthSignature {
  publicKey: Buffer;
  signature: Buffer;
}

/**
 * The credential signature for a multisig G account: a Vec of `{public_key: BytesN<32>, signature: BytesN<64>}`
 * maps sorted strictly ascending by raw public-key bytes (account_contract.rs rejects any other order). Does not
 * mutate `sigs`. Does not verify: use checkAccountAuthSignatures, or verify each signature before.
 * @throws STELLAR_BAD_INPUT (empty, more than 20, wrong lengths, the same key twice)
 */
export function buildMultisigSignatureVector(sigs: readonly AuthSignature[]): xdr.ScVal {
  if (!Array.isArray(sigs) || sigs.length === 0 || sigs.length > MAX_AUTH_SIGNATURES) {
    throw stellarErrors.error(
      'STELLAR_BAD_INPUT',
      { field: 'sigs' },
      { message: `A signature vector holds 1 to ${MAX_AUTH_SIGNATURES} signatures.` },
    );
  }
  for (const s of sigs) {
    if (
      s === null ||
      typeof s !== 'object' ||
      !(s.publicKey instanceof Uint8Array) ||
      s.publicKey.length !== 32 ||
      !(s.signature instanceof Uint8Array) ||
      s.signature.length !== 64
    ) {
      throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'sigs' });
    }
  }
  const sorted = [...sigs].sort((a, b) => Buffer.compare(Buffer.from(a.publicKey), Buffer.from(b.publicKey)));
  for (let i = 1; i < sorted.length; i++) {
    if (Buffer.compare(Buffer.from(sorted[i - 1]!.publicKey), Buffer.from(sorted[i]!.publicKey)) === 0) {
      throw stellarErrors.error(
        'STELLAR_BAD_INPUT',
        { field: 'sigs' },
        { message: 'The same public key appears twice; the host refuses repeated keys.' },
      );
    }
  }
  // Map keys in ascending symbol order ("public_key" < "signature"), as a contracttype struct is encoded.
  return xdr.ScVal.scvVec(
    sorted.map((s) =>
      xdr.ScVal.scvMap([
        new xdr.ScMapEntry({
          key: xdr.ScVal.scvSymbol('public_key'),
          val: xdr.ScVal.scvBytes(Buffer.from(s.publicKey)),
        }),
        new xdr.ScMapEntry({
          key: xdr.ScVal.scvSymbol('signature'),
          val: xdr.ScVal.scvBytes(Buffer.from(s.signature)),
        }),
      ]),
    ),
  );
}

/** Reads a signature vector back into `{publicKey, signature}` pairs, in vector order. @throws STELLAR_BAD_AUTH_ENTRY */
export function parseMultisigSignatureVector(v: xdr.ScVal): AuthSignature[] {
  const bad = () =>
    stellarErrors.error('STELLAR_BAD_AUTH_ENTRY', undefined, {
      message: 'The signature is not a Vec of {public_key, signature}.',
    });
  if (!(v instanceof xdr.ScVal) || v.type !== 'scvVec' || v.vec === null) throw bad();
  return v.vec.map((item) => {
    if (item.type !== 'scvMap' || item.map === null || item.map.length !== 2) throw bad();
    const [pk, sig] = item.map;
    if (
      pk!.key.type !== 'scvSymbol' ||
      pk!.key.sym.toString() !== 'public_key' ||
      pk!.val.type !== 'scvBytes' ||
      sig!.key.type !== 'scvSymbol' ||
      sig!.key.sym.toString() !== 'signature' ||
      sig!.val.type !== 'scvBytes'
    ) {
      throw bad();
    }
    const publicKey = Buffer.from(pk!.val.bytes.value);
    const signature = Buffer.from(sig!.val.bytes.value);
    if (publicKey.length !== 32 || signature.length !== 64) throw bad();
    return { publicKey, signature };
  });
}

export type AccountAuthCheck = { ok: true; weight: number } | { ok: false; reason: string };

/**
 * The host's verdict on a G account's signature vector (account_contract.rs `check_account_authentication`):
 * at most 20 entries, keys strictly ascending, every signature valid over `payload`, every key a signer of
 * `account` with non-zero weight (master = thresholds[0]; weights clamped to 255), total >= MEDIUM threshold.
 * A zero MEDIUM threshold accepts an empty vector, as the host does. Expiration and nonce reuse are the
 * caller's checks (they need the ledger).
 * @throws STELLAR_BAD_ACCOUNT_AUTH, STELLAR_BAD_STRKEY (bad account); a malformed vector is `ok: false`.
 */
export function checkAccountAuthSignatures(
  account: AccountAuth,
  payload: Uint8Array,
  signature: xdr.ScVal,
): AccountAuthCheck {
  const parsed = parseAccount(account);
  let sigs: AuthSignature[];
  try {
    sigs = parseMultisigSignatureVector(signature);
  } catch {
    return { ok: false, reason: 'the signature is not a Vec of {public_key, signature}' };
  }
  if (sigs.length > MAX_AUTH_SIGNATURES) return { ok: false, reason: 'too many account signers' };
  let weight = 0;
  let prev: Buffer | null = null;
  for (const s of sigs) {
    if (prev !== null && Buffer.compare(prev, s.publicKey) >= 0)
      return { ok: false, reason: 'public keys are not ordered' };
    if (!verifyEd25519(s.publicKey, payload, s.signature)) {
      return { ok: false, reason: `invalid signature by ${StrKey.encodeEd25519PublicKey(s.publicKey)}` };
    }
    const w = parsed.signers.find((x) => x.kind === 'ed25519' && x.key.equals(s.publicKey))?.weight ?? 0;
    if (w === 0)
      return {
        ok: false,
        reason: `signer ${StrKey.encodeEd25519PublicKey(s.publicKey)} does not belong to the account`,
      };
    weight += w;
    prev = s.publicKey;
  }
  if (weight < parsed.thresholds.medium) {
    return {
      ok: false,
      reason: `signature weight ${weight} is lower than the medium threshold ${parsed.thresholds.medium}`,
    };
  }
  return { ok: true, weight };
}

/**
 * A copy of `entry` whose address credentials carry `signature` (and, if given, a new expiration ledger; it must
 * be the one the signers signed). The credential form (ADDRESS, ADDRESS_V2, WITH_DELEGATES) is kept.
 * @throws STELLAR_BAD_AUTH_ENTRY (source-account credentials), STELLAR_BAD_INPUT
 */
export function attachAuthSignatures(
  entry: xdr.SorobanAuthorizationEntry,
  signature: xdr.ScVal,
  opts: AuthPayloadOptions = {},
): xdr.SorobanAuthorizationEntry {
  const creds = addressCredentials(entry);
  if (!(signature instanceof xdr.ScVal)) throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'signature' });
  const signed = new xdr.SorobanAddressCredentials({
    address: creds.address,
    nonce: creds.nonce,
    signatureExpirationLedger: opts.signatureExpirationLedger ?? creds.signatureExpirationLedger,
    signature,
  });
  const c = entry.credentials;
  const credentials =
    c.type === 'sorobanCredentialsAddress'
      ? xdr.SorobanCredentials.sorobanCredentialsAddress(signed)
      : c.type === 'sorobanCredentialsAddressV2'
        ? xdr.SorobanCredentials.sorobanCredentialsAddressV2(signed)
        : xdr.SorobanCredentials.sorobanCredentialsAddressWithDelegates(
            new xdr.SorobanAddressCredentialsWithDelegates({
              addressCredentials: signed,
              delegates: (c as xdr.SorobanCredentialsAddressWithDelegates).addressWithDelegates.delegates,
            }),
          );
  return new xdr.SorobanAuthorizationEntry({ credentials, rootInvocation: entry.rootInvocation });
}

/** An authorization entry in plain terms (credentials, address, nonce, expiration, invocation tree). */
export function describeAuthEntry(entry: xdr.SorobanAuthorizationEntry): AuthEntrySummary {
  if (!(entry instanceof xdr.SorobanAuthorizationEntry))
    throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'entry' });
  return describeEntry(entry);
}

/**
 * Decodes a base64 SorobanAuthorizationEntry (standalone entries arrive this way).
 * @throws STELLAR_BAD_INPUT (not a string), STELLAR_XDR_TOO_LARGE, STELLAR_MALFORMED_XDR
 */
export function decodeAuthEntry(b64: string, opts: { maxBytes?: number } = {}): xdr.SorobanAuthorizationEntry {
  if (typeof b64 !== 'string') throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'entry' });
  const maxBytes = opts.maxBytes ?? 100 * 1024;
  if (b64.length > maxBytes) throw stellarErrors.error('STELLAR_XDR_TOO_LARGE', { length: b64.length, maxBytes });
  let entry: xdr.SorobanAuthorizationEntry;
  try {
    entry = xdr.SorobanAuthorizationEntry.fromXdr(b64, 'base64');
  } catch (cause) {
    throw stellarErrors.error('STELLAR_MALFORMED_XDR', undefined, { cause });
  }
  // Canonical only, as for envelopes: what is reviewed is byte for byte what is signed.
  if (entry.toXdr('base64') !== b64) throw stellarErrors.error('STELLAR_MALFORMED_XDR');
  return entry;
}

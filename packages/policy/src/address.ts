import type { AssetRef } from '@cosigner/stellar/types';
import { StrKey } from '@stellar/stellar-sdk/base';

/**
 * Addresses and asset keys as the policy compares them.
 *
 * A muxed account (M..., SEP-23) is a G... account plus a 64-bit id: balances, signers and thresholds belong
 * to the G account, so every allow/deny comparison is made on the base G account. Otherwise a deny list entry
 * `GBAD...` could be bypassed by paying `MBAD...` (the same account with an id).
 */

/** The G... account behind a G... or M... address; any other string is returned unchanged. */
export function baseAccount(address: string): string {
  if (address.startsWith('M') && StrKey.isValidMed25519PublicKey(address)) {
    return StrKey.encodeEd25519PublicKey(Buffer.from(StrKey.decodeMed25519PublicKey(address).subarray(0, 32)));
  }
  return address;
}

export function isAccountId(s: string): boolean {
  return StrKey.isValidEd25519PublicKey(s);
}

export function isContractId(s: string): boolean {
  return StrKey.isValidContract(s);
}

/** G..., M... or C...: anything that can receive a payment or a token transfer. */
export function isDestination(s: string): boolean {
  return isAccountId(s) || StrKey.isValidMed25519PublicKey(s) || isContractId(s);
}

/** A signer key as setOptions names it: ed25519 (G), pre-auth tx (T), hashX (X) or signed payload (P). */
export function isSignerKey(s: string): boolean {
  if (isAccountId(s) || StrKey.isValidSignedPayload(s)) return true;
  try {
    if (s.startsWith('T')) return StrKey.decodePreAuthTx(s).length === 32;
    if (s.startsWith('X')) return StrKey.decodeSha256Hash(s).length === 32;
  } catch {
    return false;
  }
  return false;
}

/** Asset codes: 1-12 characters [A-Za-z0-9] (stellar-core `isAssetValid`, AssetCode4/AssetCode12). */
const ASSET_CODE = /^[A-Za-z0-9]{1,12}$/;

/**
 * The key an asset has in the policy and in the node's velocity ledger: `native`, `CODE:ISSUER` for a
 * classic credit asset, `C...` for a Soroban token contract, `pool:<hex id>` for pool shares.
 */
export function assetKey(a: AssetRef): string {
  switch (a.type) {
    case 'native':
      return 'native';
    case 'credit':
      return `${a.code}:${a.issuer}`;
    default:
      return `pool:${a.poolId}`;
  }
}

/** True for a key a policy may name in `assets` (native, CODE:ISSUER, or a contract id). */
export function isPolicyAssetKey(key: string): boolean {
  if (key === 'native' || isContractId(key)) return true;
  const i = key.indexOf(':');
  return i > 0 && ASSET_CODE.test(key.slice(0, i)) && isAccountId(key.slice(i + 1));
}

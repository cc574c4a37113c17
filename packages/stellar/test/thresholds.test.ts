import { Keypair, Operation, StrKey, xdr } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { maxLevel, operationThresholdLevel } from '../src/thresholds.ts';
import type { ThresholdLevel } from '../src/types.ts';
import { everyOperation } from './helpers.ts';

// stellar-core src/transactions/*OpFrame.cpp getThresholdLevel(); OperationFrame's default is MEDIUM.
const EXPECTED: Record<string, ThresholdLevel> = {
  createAccount: 'medium',
  payment: 'medium',
  pathPaymentStrictReceive: 'medium',
  pathPaymentStrictSend: 'medium',
  manageSellOffer: 'medium',
  manageBuyOffer: 'medium',
  createPassiveSellOffer: 'medium',
  setOptions: 'medium', // homeDomain + setFlags only: see the setOptions table below
  changeTrust: 'medium',
  allowTrust: 'low', // AllowTrustOpFrame
  accountMerge: 'high', // MergeOpFrame
  inflation: 'low', // InflationOpFrame
  manageData: 'medium',
  bumpSequence: 'low', // BumpSequenceOpFrame
  createClaimableBalance: 'medium',
  claimClaimableBalance: 'low', // ClaimClaimableBalanceOpFrame
  beginSponsoringFutureReserves: 'medium',
  endSponsoringFutureReserves: 'medium',
  revokeAccountSponsorship: 'medium',
  revokeTrustlineSponsorship: 'medium',
  revokeOfferSponsorship: 'medium',
  revokeDataSponsorship: 'medium',
  revokeClaimableBalanceSponsorship: 'medium',
  revokeLiquidityPoolSponsorship: 'medium',
  revokeSignerSponsorship: 'medium',
  clawback: 'medium',
  clawbackClaimableBalance: 'medium',
  setTrustLineFlags: 'low', // SetTrustLineFlagsOpFrame
  liquidityPoolDeposit: 'medium',
  liquidityPoolWithdraw: 'medium',
  invokeHostFunction: 'medium',
  extendFootprintTtl: 'low', // ExtendFootprintTTLOpFrame
  restoreFootprint: 'low', // RestoreFootprintOpFrame
};

describe('operationThresholdLevel: one row per operation type', () => {
  const ops = everyOperation();
  it('the table covers every operation type the helpers build', () => {
    expect(new Set(ops.map((o) => o.type))).toEqual(new Set(Object.keys(EXPECTED)));
  });
  it.each(ops)('$type', ({ type, op }) => {
    expect(operationThresholdLevel(op)).toBe(EXPECTED[type]);
  });
});

/** A setOptions op with exactly the given optional fields present (built on the XDR, so 0 stays present). */
function setOptionsXdr(
  fields: Partial<Record<'masterWeight' | 'lowThreshold' | 'medThreshold' | 'highThreshold', number>> & {
    signer?: xdr.Signer;
    homeDomain?: string;
    setFlags?: number;
    clearFlags?: number;
    inflationDest?: boolean;
  },
): xdr.Operation {
  const base = Operation.setOptions({});
  if (base.body.type !== 'setOptions') throw new Error('unexpected');
  const o = base.body.setOptionsOp;
  const body = xdr.OperationBody.setOptions(
    new xdr.SetOptionsOp({
      inflationDest: fields.inflationDest ? Keypair.random().xdrPublicKey() : o.inflationDest,
      clearFlags: fields.clearFlags ?? null,
      setFlags: fields.setFlags ?? null,
      masterWeight: fields.masterWeight ?? null,
      lowThreshold: fields.lowThreshold ?? null,
      medThreshold: fields.medThreshold ?? null,
      highThreshold: fields.highThreshold ?? null,
      homeDomain: fields.homeDomain === undefined ? null : new xdr.XdrString(fields.homeDomain),
      signer: fields.signer ?? null,
    }),
  );
  return new xdr.Operation({ sourceAccount: null, body });
}

function signer(weight: number, kind: 'ed25519' | 'preAuth' = 'ed25519'): xdr.Signer {
  const raw = Keypair.random().rawPublicKey();
  const key =
    kind === 'ed25519'
      ? xdr.SignerKey.signerKeyTypeEd25519(new xdr.Uint256Bytes(raw))
      : xdr.SignerKey.signerKeyTypePreAuthTx(new xdr.Uint256Bytes(raw));
  return new xdr.Signer({ key, weight });
}

describe('operationThresholdLevel: setOptions (SetOptionsOpFrame::getThresholdLevel tests field presence)', () => {
  it.each([
    ['no fields', {}, 'medium'],
    ['homeDomain', { homeDomain: 'example.com' }, 'medium'],
    ['setFlags', { setFlags: 2 }, 'medium'],
    ['clearFlags', { clearFlags: 1 }, 'medium'],
    ['inflationDest', { inflationDest: true }, 'medium'],
    ['masterWeight 0', { masterWeight: 0 }, 'high'],
    ['masterWeight 10', { masterWeight: 10 }, 'high'],
    ['lowThreshold 0', { lowThreshold: 0 }, 'high'],
    ['lowThreshold 1', { lowThreshold: 1 }, 'high'],
    ['medThreshold 0', { medThreshold: 0 }, 'high'],
    ['medThreshold 2', { medThreshold: 2 }, 'high'],
    ['highThreshold 0', { highThreshold: 0 }, 'high'],
    ['highThreshold 3', { highThreshold: 3 }, 'high'],
    ['add signer', { signer: signer(1) }, 'high'],
    ['remove signer (weight 0)', { signer: signer(0) }, 'high'],
    ['pre-auth signer', { signer: signer(1, 'preAuth') }, 'high'],
    ['homeDomain and a threshold', { homeDomain: 'x', highThreshold: 1 }, 'high'],
  ] as const)('%s -> %s', (_name, fields, level) => {
    const op = setOptionsXdr(fields);
    expect(operationThresholdLevel(op)).toBe(level);
    // The op survives an XDR round trip with the same answer (presence is encoded, not inferred from values).
    expect(operationThresholdLevel(xdr.Operation.fromXdr(op.toXdr()))).toBe(level);
  });

  it('the SDK builder keeps masterWeight: 0 present, so it is HIGH', () => {
    expect(operationThresholdLevel(Operation.setOptions({ masterWeight: 0 }))).toBe('high');
    expect(
      operationThresholdLevel(
        Operation.setOptions({ signer: { ed25519PublicKey: Keypair.random().publicKey(), weight: 0 } }),
      ),
    ).toBe('high');
    expect(StrKey.isValidEd25519PublicKey(Keypair.random().publicKey())).toBe(true);
  });
});

describe('maxLevel', () => {
  it.each([
    ['low', 'low', 'low'],
    ['low', 'medium', 'medium'],
    ['high', 'medium', 'high'],
    ['medium', 'high', 'high'],
  ] as const)('%s, %s -> %s', (a, b, c) => {
    expect(maxLevel(a, b)).toBe(c);
  });
});

import { xdr } from '@stellar/stellar-sdk/base';
import { stellarErrors } from './errors.ts';
import type { ThresholdLevel } from './types.ts';

/** Order of levels, for taking the highest one an account needs. */
export const LEVEL_RANK: Readonly<Record<ThresholdLevel, number>> = { low: 0, medium: 1, high: 2 };

/** The higher of two levels. */
export function maxLevel(a: ThresholdLevel, b: ThresholdLevel): ThresholdLevel {
  return LEVEL_RANK[a] >= LEVEL_RANK[b] ? a : b;
}

/**
 * The threshold level an operation needs from its source account, exactly as stellar-core decides it
 * (`getThresholdLevel()` in src/transactions/*OpFrame.cpp; OperationFrame's default is MEDIUM):
 * - LOW: AllowTrustOpFrame, SetTrustLineFlagsOpFrame, BumpSequenceOpFrame, ClaimClaimableBalanceOpFrame,
 *   ExtendFootprintTTLOpFrame, RestoreFootprintOpFrame, InflationOpFrame.
 * - HIGH: MergeOpFrame (accountMerge); SetOptionsOpFrame when masterWeight, lowThreshold, medThreshold,
 *   highThreshold or signer is present. Core tests the optional pointers, so `masterWeight: 0` counts.
 * - MEDIUM: every other operation, including setOptions that changes none of those fields.
 * @throws STELLAR_BAD_INPUT when `op` is not an xdr.Operation
 */
export function operationThresholdLevel(op: xdr.Operation): ThresholdLevel {
  if (!(op instanceof xdr.Operation)) throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'op' });
  const body = op.body;
  switch (body.type) {
    case 'allowTrust':
    case 'setTrustLineFlags':
    case 'bumpSequence':
    case 'claimClaimableBalance':
    case 'extendFootprintTtl':
    case 'restoreFootprint':
    case 'inflation':
      return 'low';
    case 'accountMerge':
      return 'high';
    case 'setOptions': {
      const o = body.setOptionsOp;
      const changesAuth =
        o.masterWeight !== null ||
        o.lowThreshold !== null ||
        o.medThreshold !== null ||
        o.highThreshold !== null ||
        o.signer !== null;
      return changesAuth ? 'high' : 'medium';
    }
    default:
      return 'medium';
  }
}

import { createPrivateKey, sign as cryptoSign, type KeyObject, randomBytes } from 'node:crypto';
import {
  Account,
  Address,
  Asset,
  Claimant,
  type FeeBumpTransaction,
  Keypair,
  LiquidityPoolAsset,
  type Memo,
  Networks,
  nativeToScVal,
  Operation,
  StrKey,
  type Transaction,
  TransactionBuilder,
  xdr,
} from '@stellar/stellar-sdk';

const xdrNs = xdr;

import { type DecodedTransaction, decodeEnvelope } from '../src/decode.ts';
import type { AccountAuth } from '../src/types.ts';

export const PASSPHRASE = Networks.TESTNET;

export function newKeys(n: number): Keypair[] {
  return Array.from({ length: n }, () => Keypair.random());
}

export interface BuildOpts {
  source: string;
  ops: xdr.Operation[];
  seq?: string;
  fee?: string;
  memo?: Memo;
  extraSigners?: string[];
  passphrase?: string;
}

export function buildTx(o: BuildOpts): Transaction {
  const b = new TransactionBuilder(new Account(o.source, o.seq ?? '100'), {
    fee: o.fee ?? '100',
    networkPassphrase: o.passphrase ?? PASSPHRASE,
    memo: o.memo,
  });
  for (const op of o.ops) b.addOperation(op);
  if (o.extraSigners) b.setExtraSigners(o.extraSigners);
  return b.setTimeout(300).build();
}

export function decode(tx: Transaction | FeeBumpTransaction, passphrase = PASSPHRASE): DecodedTransaction {
  return decodeEnvelope(tx.toEnvelope().toXdr('base64'), passphrase);
}

export function pay(dest: string, source?: string, amount = '1'): xdr.Operation {
  return Operation.payment({ destination: dest, asset: Asset.native(), amount, source });
}

export function account(kp: Keypair | string, opts: Partial<Omit<AccountAuth, 'accountId'>> = {}): AccountAuth {
  return {
    accountId: typeof kp === 'string' ? kp : kp.publicKey(),
    masterWeight: opts.masterWeight ?? 1,
    thresholds: opts.thresholds ?? { low: 0, medium: 0, high: 0 },
    signers: opts.signers ?? [],
  };
}

export function accountsMap(...list: AccountAuth[]): Map<string, AccountAuth> {
  return new Map(list.map((a) => [a.accountId, a]));
}

export function feeBump(inner: Transaction, feeSource: Keypair, fee = '1000'): FeeBumpTransaction {
  return TransactionBuilder.buildFeeBumpTransaction(feeSource.publicKey(), fee, inner, inner.networkPassphrase);
}

/** One operation of every type the SDK builds, with the type name the SDK decodes it to. */
export function everyOperation(): { type: string; op: xdr.Operation }[] {
  const k = () => Keypair.random().publicKey();
  const usd = new Asset('USD', k());
  const eur = new Asset('EURT', k());
  const pool = new LiquidityPoolAsset(Asset.native(), usd, 30);
  const poolId = Buffer.from(randomBytes(32)).toString('hex');
  const balanceId = '00000000' + Buffer.from(randomBytes(32)).toString('hex');
  const contract = StrKey.encodeContract(randomBytes(32));
  return [
    { type: 'createAccount', op: Operation.createAccount({ destination: k(), startingBalance: '10.5' }) },
    { type: 'payment', op: Operation.payment({ destination: k(), asset: usd, amount: '12.3456789' }) },
    {
      type: 'pathPaymentStrictReceive',
      op: Operation.pathPaymentStrictReceive({
        sendAsset: Asset.native(),
        sendMax: '100',
        destination: k(),
        destAsset: usd,
        destAmount: '5',
        path: [eur],
      }),
    },
    {
      type: 'pathPaymentStrictSend',
      op: Operation.pathPaymentStrictSend({
        sendAsset: usd,
        sendAmount: '3',
        destination: k(),
        destAsset: eur,
        destMin: '2.5',
        path: [],
      }),
    },
    {
      type: 'manageSellOffer',
      op: Operation.manageSellOffer({ selling: usd, buying: Asset.native(), amount: '7', price: '1.5', offerId: '0' }),
    },
    {
      type: 'manageBuyOffer',
      op: Operation.manageBuyOffer({ selling: usd, buying: eur, buyAmount: '8', price: { n: 3, d: 4 }, offerId: '12' }),
    },
    {
      type: 'createPassiveSellOffer',
      op: Operation.createPassiveSellOffer({ selling: eur, buying: usd, amount: '9', price: '2' }),
    },
    { type: 'setOptions', op: Operation.setOptions({ homeDomain: 'example.com', setFlags: 1 }) },
    { type: 'changeTrust', op: Operation.changeTrust({ asset: usd, limit: '1000' }) },
    { type: 'changeTrust', op: Operation.changeTrust({ asset: pool }) },
    { type: 'allowTrust', op: Operation.allowTrust({ trustor: k(), assetCode: 'USD', authorize: 1 }) },
    { type: 'accountMerge', op: Operation.accountMerge({ destination: k() }) },
    { type: 'inflation', op: Operation.inflation({}) },
    { type: 'manageData', op: Operation.manageData({ name: 'config', value: 'v1' }) },
    { type: 'manageData', op: Operation.manageData({ name: 'gone', value: null }) },
    { type: 'bumpSequence', op: Operation.bumpSequence({ bumpTo: '123456789012' }) },
    {
      type: 'createClaimableBalance',
      op: Operation.createClaimableBalance({
        asset: usd,
        amount: '4',
        claimants: [new Claimant(k(), Claimant.predicateBeforeRelativeTime('3600'))],
      }),
    },
    { type: 'claimClaimableBalance', op: Operation.claimClaimableBalance({ balanceId }) },
    { type: 'beginSponsoringFutureReserves', op: Operation.beginSponsoringFutureReserves({ sponsoredId: k() }) },
    { type: 'endSponsoringFutureReserves', op: Operation.endSponsoringFutureReserves({}) },
    { type: 'revokeAccountSponsorship', op: Operation.revokeAccountSponsorship({ account: k() }) },
    { type: 'revokeTrustlineSponsorship', op: Operation.revokeTrustlineSponsorship({ account: k(), asset: usd }) },
    { type: 'revokeOfferSponsorship', op: Operation.revokeOfferSponsorship({ seller: k(), offerId: '5' }) },
    { type: 'revokeDataSponsorship', op: Operation.revokeDataSponsorship({ account: k(), name: 'x' }) },
    { type: 'revokeClaimableBalanceSponsorship', op: Operation.revokeClaimableBalanceSponsorship({ balanceId }) },
    {
      type: 'revokeLiquidityPoolSponsorship',
      op: Operation.revokeLiquidityPoolSponsorship({ liquidityPoolId: poolId }),
    },
    {
      type: 'revokeSignerSponsorship',
      op: Operation.revokeSignerSponsorship({ account: k(), signer: { ed25519PublicKey: k() } }),
    },
    { type: 'clawback', op: Operation.clawback({ asset: usd, amount: '1.25', from: k() }) },
    { type: 'clawbackClaimableBalance', op: Operation.clawbackClaimableBalance({ balanceId }) },
    {
      type: 'setTrustLineFlags',
      op: Operation.setTrustLineFlags({
        trustor: k(),
        asset: usd,
        flags: { authorized: true, clawbackEnabled: false },
      }),
    },
    {
      type: 'liquidityPoolDeposit',
      op: Operation.liquidityPoolDeposit({
        liquidityPoolId: poolId,
        maxAmountA: '10',
        maxAmountB: '20',
        minPrice: '0.45',
        maxPrice: '0.55',
      }),
    },
    {
      type: 'liquidityPoolWithdraw',
      op: Operation.liquidityPoolWithdraw({ liquidityPoolId: poolId, amount: '5', minAmountA: '1', minAmountB: '2' }),
    },
    {
      type: 'invokeHostFunction',
      op: Operation.invokeContractFunction({
        contract,
        function: 'transfer',
        args: [
          nativeToScVal(k(), { type: 'address' }),
          nativeToScVal(contract, { type: 'address' }),
          nativeToScVal(123456789012345678901234567890n, { type: 'i128' }),
          nativeToScVal(Buffer.from('cafe', 'hex')),
          nativeToScVal('memo'),
        ],
      }),
    },
    { type: 'extendFootprintTtl', op: Operation.extendFootprintTtl({ extendTo: 1000 }) },
    { type: 'restoreFootprint', op: Operation.restoreFootprint({}) },
  ];
}

/** A decorated signature over `hash` by `kp`, as plain buffers. */
export function sigOf(kp: Keypair, hash: Uint8Array): { hint: Buffer; signature: Buffer } {
  return { hint: Buffer.from(kp.signatureHint()), signature: Buffer.from(kp.sign(Buffer.from(hash))) };
}

/** InvokeContractArgs for `contract.fn(args)`. */
export function invokeArgs(contract: string, fn: string, args: xdr.ScVal[] = []): xdr.InvokeContractArgs {
  return new xdrNs.InvokeContractArgs({
    contractAddress: Address.fromString(contract).toScAddress(),
    functionName: fn,
    args,
  });
}

/** An authorization tree node calling `contract.fn(args)` with the given children. */
export function invocationNode(
  contract: string,
  fn: string,
  args: xdr.ScVal[] = [],
  subs: xdr.SorobanAuthorizedInvocation[] = [],
): xdr.SorobanAuthorizedInvocation {
  return new xdrNs.SorobanAuthorizedInvocation({
    function: xdrNs.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(invokeArgs(contract, fn, args)),
    subInvocations: subs,
  });
}

/** An ADDRESS-credential auth entry for `address` (G or C) over `root`, unsigned (signature void). */
export function addressAuthEntry(
  address: string,
  root: xdr.SorobanAuthorizedInvocation,
  nonce = 7n,
  expiration = 1000,
  v2 = false,
): xdr.SorobanAuthorizationEntry {
  const creds = new xdrNs.SorobanAddressCredentials({
    address: Address.fromString(address).toScAddress(),
    nonce,
    signatureExpirationLedger: expiration,
    signature: xdrNs.ScVal.scvVoid(),
  });
  return new xdrNs.SorobanAuthorizationEntry({
    credentials: v2
      ? xdrNs.SorobanCredentials.sorobanCredentialsAddressV2(creds)
      : xdrNs.SorobanCredentials.sorobanCredentialsAddress(creds),
    rootInvocation: root,
  });
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const privateKeys = new Map<string, KeyObject>();

/** Signs with node:crypto (same RFC 8032 signature as Keypair.sign, several times faster): keeps tests quick. */
export function fastSign(kp: Keypair, message: Uint8Array): Buffer {
  let k = privateKeys.get(kp.publicKey());
  if (k === undefined) {
    k = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519_PREFIX, kp.rawSecretKey()]),
      format: 'der',
      type: 'pkcs8',
    });
    privateKeys.set(kp.publicKey(), k);
  }
  return cryptoSign(null, message, k);
}

/**
 * Writes test/vectors/*.json: one file per rule family. Run `pnpm tsx packages/policy/test/vectors/generate.ts`.
 *
 * Addresses are fresh random public keys (never secrets). Every expectation below is written by hand from the
 * rule it tests, never computed by evaluate(): the vectors pin behaviour, they do not mirror it.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuthEntrySummary, TransactionSummary } from '@cosigner/stellar/types';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import {
  addressEntry,
  call,
  credit,
  feeBump,
  invoke,
  NOW,
  native,
  op,
  PUBNET,
  payment,
  TESTNET,
  tx,
} from '../builders.ts';

const g = () => Keypair.random().publicKey();
const c = () => StrKey.encodeContract(randomBytes(32));
const muxed = (account: string, id: bigint) => {
  const raw = Buffer.concat([StrKey.decodeEd25519PublicKey(account), Buffer.alloc(8)]);
  raw.writeBigUInt64BE(id, 32);
  return StrKey.encodeMed25519PublicKey(raw);
};

const OPS = g(); // the operator's multisig account this node cosigns for
const OPS2 = g(); // a second cosigned account
const STRANGER = g();
const ALICE = g(); // a customer (allowed destination)
const BOB = g(); // another customer
const MALLORY = g(); // denied
const ISSUER = g();
const USDC = `USDC:${ISSUER}`;
const TOKEN = c(); // a SEP-41 token contract (e.g. the USDC SAC)
const ESCROW = c(); // an escrow contract
const OTHER_CONTRACT = c();
const NEW_SIGNER = g();
const OLD_SIGNER = g();

interface Case {
  name: string;
  summary?: TransactionSummary;
  entries?: AuthEntrySummary[];
  now: number;
  currentLedger?: number;
  /** assetKey -> windowSeconds -> amount already signed (decimal units). */
  spent: Record<string, Record<string, string>>;
  /** `fee`: stroops the decision says are charged to one of our accounts (Decision.fee). */
  expect: {
    outcome: 'approve' | 'reject' | 'hold';
    reasonCodes: string[];
    spend?: Record<string, string>;
    fee?: string;
  };
}

interface VectorFile {
  source: string;
  policy: Record<string, unknown>;
  cases: Case[];
}

const base = {
  network: TESTNET,
  accounts: [OPS, OPS2],
  operations: ['payment'],
  assets: [{ asset: 'native', maxPerTx: '1000', velocity: [{ window: '24h', max: '5000' }] }],
};

function kase(
  name: string,
  summary: TransactionSummary,
  outcome: Case['expect']['outcome'],
  reasonCodes: string[],
  extra: Partial<Case> = {},
  spend?: Record<string, string>,
  fee?: string,
): Case {
  return {
    name,
    summary,
    now: NOW,
    spent: {},
    ...extra,
    expect: { outcome, reasonCodes, ...(spend ? { spend } : {}), ...(fee !== undefined ? { fee } : {}) },
  };
}

const files: Record<string, VectorFile> = {};

files['network-accounts'] = {
  source: 'network: the node pins its passphrase; accounts: the tx source must be an account the node cosigns for',
  policy: base,
  cases: [
    kase(
      'payment from a cosigned account on the pinned network',
      tx({ source: OPS, ops: [payment(ALICE, '10')] }),
      'approve',
      [],
      {},
      { native: '10' },
    ),
    kase(
      'same payment for another network',
      tx({ source: OPS, network: PUBNET, ops: [payment(ALICE, '10')] }),
      'reject',
      ['WRONG_NETWORK'],
    ),
    kase(
      'transaction from an account the node does not cosign for',
      tx({ source: STRANGER, ops: [payment(ALICE, '10')] }),
      'reject',
      ['ACCOUNT_NOT_COSIGNED'],
    ),
    kase(
      'muxed source of a cosigned account (SEP-23) counts as that account',
      tx({ source: muxed(OPS, 7n), ops: [payment(ALICE, '10')] }),
      'approve',
      [],
      {},
      { native: '10' },
    ),
    kase('second cosigned account', tx({ source: OPS2, ops: [payment(ALICE, '1')] }), 'approve', []),
    kase(
      'fee bump: inner transaction approved, outer fee within limits',
      feeBump(tx({ source: OPS, ops: [payment(ALICE, '10')] }), STRANGER, '400'),
      'approve',
      [],
      {},
      { native: '10' },
    ),
    kase(
      'fee bump whose inner transaction is for another network',
      feeBump(tx({ source: OPS, network: PUBNET, ops: [payment(ALICE, '10')] }), STRANGER, '400', TESTNET),
      'reject',
      ['WRONG_NETWORK'],
    ),
    kase(
      'fee bump around a transaction from a stranger',
      feeBump(tx({ source: STRANGER, ops: [payment(ALICE, '10')] }), OPS, '400'),
      'reject',
      ['ACCOUNT_NOT_COSIGNED'],
    ),
    kase('no operations', tx({ source: OPS, ops: [] }), 'reject', ['NO_OPERATIONS']),
  ],
};

files.operations = {
  source: 'operations: only listed operation types; unknown operation types are always rejected',
  policy: { ...base, operations: ['payment', 'manageData', 'bumpSequence'] },
  cases: [
    kase(
      'allowed payment plus manageData',
      tx({ source: OPS, ops: [payment(ALICE, '1'), op({ type: 'manageData', dataName: 'k', dataValue: '01' })] }),
      'approve',
      [],
    ),
    kase(
      'a hidden changeTrust after an allowed payment',
      tx({
        source: OPS,
        ops: [
          payment(ALICE, '1'),
          op({ type: 'changeTrust', asset: credit('EVIL', STRANGER), limit: '922337203685.4775807' }),
        ],
      }),
      'reject',
      ['OP_NOT_ALLOWED'],
    ),
    kase(
      'an operation type the decoder did not understand',
      tx({ source: OPS, ops: [op({ type: 'unknown', raw: { sdkType: 'futureOp', xdr: 'AAAA' } })] }),
      'reject',
      ['UNKNOWN_OPERATION'],
    ),
    kase(
      'setOptions is not listed',
      tx({ source: OPS, ops: [op({ type: 'setOptions', setOptions: { homeDomain: 'example.com' } })] }),
      'reject',
      ['OP_NOT_ALLOWED'],
    ),
    kase(
      'an operation sourced by another account is refused and still reviewed',
      tx({
        source: OPS,
        ops: [
          op({
            type: 'createPassiveSellOffer',
            source: STRANGER,
            selling: native,
            buying: credit('USDC', ISSUER),
            amount: '5',
            price: '0.1',
          }),
        ],
      }),
      'reject',
      ['ACCOUNT_NOT_COSIGNED', 'OP_NOT_ALLOWED'],
    ),
  ],
};

files.amounts = {
  source:
    'assets.maxPerTx: outflows summed per asset across every operation (a hidden second payment counts); exact decimals, never floats',
  policy: {
    ...base,
    operations: [
      'payment',
      'pathPaymentStrictReceive',
      'pathPaymentStrictSend',
      'createAccount',
      'createClaimableBalance',
      'manageSellOffer',
      'manageBuyOffer',
      'accountMerge',
      'changeTrust',
    ],
    assets: [
      { asset: 'native', maxPerTx: '1000', velocity: [{ window: '24h', max: '100000' }] },
      { asset: USDC, maxPerTx: '500.5', velocity: [{ window: '1h', max: '100000' }] },
    ],
  },
  cases: [
    kase(
      'exactly the per-transaction limit',
      tx({ source: OPS, ops: [payment(ALICE, '1000')] }),
      'approve',
      [],
      {},
      { native: '1000' },
    ),
    kase('one stroop above the limit', tx({ source: OPS, ops: [payment(ALICE, '1000.0000001')] }), 'reject', [
      'AMOUNT_OVER_TX_LIMIT',
    ]),
    kase(
      'two payments under the limit whose sum is above it',
      tx({ source: OPS, ops: [payment(ALICE, '600'), payment(BOB, '400.0000001')] }),
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
      {},
      { native: '1000.0000001' },
    ),
    kase(
      'limits are per asset',
      tx({ source: OPS, ops: [payment(ALICE, '1000'), payment(ALICE, '500.5', credit('USDC', ISSUER))] }),
      'approve',
      [],
      {},
      { native: '1000', [USDC]: '500.5' },
    ),
    kase(
      'an asset that is not listed',
      tx({ source: OPS, ops: [payment(ALICE, '1', credit('EURC', ISSUER))] }),
      'reject',
      ['ASSET_NOT_ALLOWED'],
    ),
    kase(
      'same code, another issuer, is another asset',
      tx({ source: OPS, ops: [payment(ALICE, '1', credit('USDC', STRANGER))] }),
      'reject',
      ['ASSET_NOT_ALLOWED'],
    ),
    kase(
      'path payment strict receive counts sendMax',
      tx({
        source: OPS,
        ops: [
          op({
            type: 'pathPaymentStrictReceive',
            destination: ALICE,
            sendAsset: native,
            sendMax: '1200',
            destAsset: credit('USDC', ISSUER),
            destAmount: '100',
            path: [],
            asset: native,
            amount: '1200',
          }),
        ],
      }),
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
      {},
      { native: '1200' },
    ),
    kase(
      'path payment strict send counts sendAmount',
      tx({
        source: OPS,
        ops: [
          op({
            type: 'pathPaymentStrictSend',
            destination: ALICE,
            sendAsset: credit('USDC', ISSUER),
            sendAmount: '500',
            destAsset: native,
            destMin: '1',
            path: [],
            asset: credit('USDC', ISSUER),
            amount: '500',
          }),
        ],
      }),
      'approve',
      [],
      {},
      { [USDC]: '500' },
    ),
    kase(
      'createAccount counts its starting balance',
      tx({
        source: OPS,
        ops: [
          op({ type: 'createAccount', destination: BOB, startingBalance: '900', asset: native, amount: '900' }),
          payment(ALICE, '200'),
        ],
      }),
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
      {},
      { native: '1100' },
    ),
    kase(
      'claimable balance counts its amount',
      tx({
        source: OPS,
        ops: [
          op({
            type: 'createClaimableBalance',
            asset: native,
            amount: '1001',
            raw: { claimants: [{ destination: ALICE, predicate: { unconditional: true } }] },
          }),
        ],
      }),
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
    ),
    kase(
      'sell offer counts the amount sold',
      tx({
        source: OPS,
        ops: [
          op({
            type: 'manageSellOffer',
            selling: native,
            buying: credit('USDC', ISSUER),
            asset: native,
            amount: '1500',
            price: '0.1',
            offerId: '0',
          }),
        ],
      }),
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
    ),
    kase(
      'buy offer counts amount x price of the selling asset, rounded up',
      tx({
        source: OPS,
        ops: [
          op({
            type: 'manageBuyOffer',
            selling: native,
            buying: credit('USDC', ISSUER),
            asset: credit('USDC', ISSUER),
            amount: '100',
            price: '10.0000000001',
            offerId: '0',
          }),
        ],
      }),
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
      {},
      { native: '1000.0000001' },
    ),
    kase(
      'accountMerge moves the whole balance: refused unless allowUnboundedOutflows lists it',
      tx({ source: OPS, ops: [op({ type: 'accountMerge', destination: ALICE })] }),
      'reject',
      ['UNBOUNDED_OUTFLOW'],
    ),
    kase('an amount with 8 decimals is refused', tx({ source: OPS, ops: [payment(ALICE, '1.00000001')] }), 'reject', [
      'AMOUNT_INVALID',
    ]),
    kase('an amount in exponent notation is refused', tx({ source: OPS, ops: [payment(ALICE, '1e3')] }), 'reject', [
      'AMOUNT_INVALID',
    ]),
    kase(
      'changeTrust moves nothing',
      tx({
        source: OPS,
        ops: [op({ type: 'changeTrust', asset: credit('USDC', ISSUER), limit: '922337203685.4775807' })],
      }),
      'approve',
      [],
    ),
    kase(
      'a payment sourced by an account the node does not cosign for (value it never measured)',
      tx({ source: OPS, ops: [payment(ALICE, '5000', native, STRANGER)] }),
      'reject',
      ['ACCOUNT_NOT_COSIGNED'],
    ),
  ],
};

files['amounts-merge-allowed'] = {
  source: 'allowUnboundedOutflows: an operator may explicitly allow accountMerge (destination rules still apply)',
  policy: {
    ...base,
    operations: ['accountMerge'],
    allowUnboundedOutflows: ['accountMerge'],
    destinations: { allow: [ALICE] },
  },
  cases: [
    kase(
      'merge into an allowed destination',
      tx({ source: OPS, ops: [op({ type: 'accountMerge', destination: ALICE })] }),
      'approve',
      [],
    ),
    kase(
      'merge into any other destination',
      tx({ source: OPS, ops: [op({ type: 'accountMerge', destination: BOB })] }),
      'reject',
      ['DESTINATION_NOT_ALLOWED'],
    ),
  ],
};

files.velocity = {
  source:
    'assets.velocity: the sum already signed in each rolling window (from the node ledger) plus this transaction must stay within max',
  policy: {
    ...base,
    assets: [
      {
        asset: 'native',
        maxPerTx: '1000',
        velocity: [
          { window: '1h', max: '1500' },
          { window: '24h', max: '5000' },
        ],
      },
      { asset: USDC, velocity: [{ window: 600, max: '100' }] },
    ],
  },
  cases: [
    kase(
      'nothing signed yet',
      tx({ source: OPS, ops: [payment(ALICE, '1000')] }),
      'approve',
      [],
      {},
      { native: '1000' },
    ),
    // The fee charged to our account (100 stroops = 0.00001 XLM here) counts toward the native windows.
    kase(
      'reaches the hourly limit exactly, the fee included',
      tx({ source: OPS, fee: '100', ops: [payment(ALICE, '499.99999')] }),
      'approve',
      [],
      { spent: { native: { '3600': '1000', '86400': '1000' } } },
    ),
    kase(
      'one stroop over the hourly limit',
      tx({ source: OPS, fee: '100', ops: [payment(ALICE, '499.9999901')] }),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { native: { '3600': '1000', '86400': '1000' } } },
    ),
    kase(
      'the payment alone fits, its fee does not',
      tx({ source: OPS, fee: '100', ops: [payment(ALICE, '500')] }),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { native: { '3600': '1000', '86400': '1000' } } },
    ),
    kase(
      'a fee alone counts toward native velocity when another asset is sent',
      tx({ source: OPS, fee: '100', ops: [payment(ALICE, '1', credit('USDC', ISSUER))] }),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { native: { '3600': '1500', '86400': '1500' } } },
      { [USDC]: '1' },
    ),
    kase(
      'a fee bump our account pays: its outer fee is charged, the inner fee is not (CAP-15)',
      feeBump(tx({ source: OPS, fee: '100', ops: [payment(ALICE, '10')] }), OPS2, '5000'),
      'approve',
      [],
      {},
      { native: '10' },
      '5000',
    ),
    kase(
      'a fee bump someone else pays charges us no fee',
      feeBump(tx({ source: OPS, fee: '100', ops: [payment(ALICE, '10')] }), STRANGER, '5000'),
      'approve',
      [],
      {},
      { native: '10' },
      '0',
    ),
    kase(
      'an outer fee over the window is refused even though the payment fits',
      feeBump(tx({ source: OPS, fee: '100', ops: [payment(ALICE, '10')] }), OPS, '1000000000'),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { native: { '3600': '1400', '86400': '1400' } } },
    ),
    kase(
      'hourly fine, daily exceeded',
      tx({ source: OPS, ops: [payment(ALICE, '100')] }),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { native: { '3600': '0', '86400': '4950' } } },
    ),
    kase(
      'a window given in seconds',
      tx({ source: OPS, ops: [payment(ALICE, '60', credit('USDC', ISSUER))] }),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { [USDC]: { '600': '40.0000001' } } },
    ),
    kase('another asset spent does not count', tx({ source: OPS, ops: [payment(ALICE, '100')] }), 'approve', [], {
      spent: { [USDC]: { '600': '100' } },
    }),
    kase(
      'many small payments in one transaction are summed for velocity',
      tx({ source: OPS, ops: Array.from({ length: 10 }, () => payment(ALICE, '60')) }),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { native: { '3600': '1000', '86400': '1000' } } },
      { native: '600' },
    ),
  ],
};

files.destinations = {
  source:
    'destinations: the deny list always wins; an allow list, when present, is exhaustive; muxed addresses are their base account',
  policy: { ...base, destinations: { allow: [ALICE, BOB, MALLORY], deny: [MALLORY] } },
  cases: [
    kase('allowed destination', tx({ source: OPS, ops: [payment(BOB, '1')] }), 'approve', []),
    kase('denied even though also allowed', tx({ source: OPS, ops: [payment(MALLORY, '1')] }), 'reject', [
      'DESTINATION_DENIED',
    ]),
    kase(
      'a muxed address of a denied account',
      tx({ source: OPS, ops: [payment(muxed(MALLORY, 42n), '1')] }),
      'reject',
      ['DESTINATION_DENIED'],
    ),
    kase(
      'a muxed address of an allowed account',
      tx({ source: OPS, ops: [payment(muxed(ALICE, 1n), '1')] }),
      'approve',
      [],
    ),
    kase('not on the allow list', tx({ source: OPS, ops: [payment(STRANGER, '1')] }), 'reject', [
      'DESTINATION_NOT_ALLOWED',
    ]),
    kase(
      'a changed destination in the second payment',
      tx({ source: OPS, ops: [payment(ALICE, '1'), payment(STRANGER, '1')] }),
      'reject',
      ['DESTINATION_NOT_ALLOWED'],
    ),
  ],
};

const transfer = (from: string, to: string, amount: string) => call(TOKEN, 'transfer', [from, to, amount]);
const contractsPolicy = {
  ...base,
  operations: ['payment', 'invokeHostFunction'],
  assets: [
    { asset: 'native', maxPerTx: '1000', velocity: [{ window: '24h', max: '5000' }] },
    { asset: TOKEN, maxPerTx: '300', velocity: [{ window: '24h', max: '1000' }] },
  ],
  contracts: [
    {
      id: TOKEN,
      functions: [
        { name: 'transfer', token: { asset: TOKEN, decimals: 7 }, maxAmount: '250', recipients: [ESCROW, ALICE] },
      ],
    },
    { id: ESCROW, functions: [{ name: 'deposit', args: [{ index: 0, oneOf: [OPS] }] }, { name: 'release' }] },
  ],
  soroban: { maxAuthExpirationLedgers: 100, maxResourceFee: '5000000' },
};
const deposit = (amount: string) => call(ESCROW, 'deposit', [OPS, amount], [transfer(OPS, ESCROW, amount)]);

files.contracts = {
  source:
    'contracts: allowed contract ids, functions and argument rules for invokeHostFunction and its auth entries (incl. sub-invocations); soroban limits',
  policy: contractsPolicy,
  cases: [
    kase(
      'token transfer within limits (i128 in base units)',
      tx({
        source: OPS,
        ops: [
          invoke(transfer(OPS, ALICE, '2000000000'), [addressEntry(OPS, transfer(OPS, ALICE, '2000000000'), 1100)]),
        ],
        sorobanResourceFee: '100000',
        fee: '200000',
      }),
      'approve',
      [],
      { currentLedger: 1050 },
      { [TOKEN]: '200' },
    ),
    kase(
      'token transfer above the per-call maxAmount',
      tx({ source: OPS, ops: [invoke(transfer(OPS, ALICE, '2600000000'))], fee: '200000' }),
      'reject',
      ['AMOUNT_OVER_CALL_LIMIT'],
    ),
    kase(
      'token transfer to a recipient outside the rule',
      tx({ source: OPS, ops: [invoke(transfer(OPS, BOB, '10000000'))], fee: '200000' }),
      'reject',
      ['RECIPIENT_NOT_ALLOWED'],
    ),
    kase(
      'escrow deposit with its authorized token transfer sub-invocation',
      tx({
        source: OPS,
        ops: [invoke(deposit('1000000000'), [addressEntry(OPS, deposit('1000000000'), 1100)])],
        fee: '200000',
      }),
      'approve',
      [],
      { currentLedger: 1050 },
      { [TOKEN]: '100' },
    ),
    kase(
      'escrow deposit on behalf of another account (argument rule)',
      tx({ source: OPS, ops: [invoke(call(ESCROW, 'deposit', [BOB, '1']))], fee: '200000' }),
      'reject',
      ['ARGUMENT_NOT_ALLOWED'],
    ),
    kase(
      'a contract that is not listed',
      tx({ source: OPS, ops: [invoke(call(OTHER_CONTRACT, 'transfer', [OPS, ALICE, '1']))], fee: '200000' }),
      'reject',
      ['CONTRACT_NOT_ALLOWED'],
    ),
    kase(
      'a function that is not listed',
      tx({ source: OPS, ops: [invoke(call(TOKEN, 'approve', [OPS, ALICE, '1', 2000]))], fee: '200000' }),
      'reject',
      ['FUNCTION_NOT_ALLOWED'],
    ),
    kase(
      'an auth entry hiding a call to another contract in its sub-invocations',
      tx({
        source: OPS,
        ops: [
          invoke(call(ESCROW, 'release', []), [
            addressEntry(OPS, call(ESCROW, 'release', [], [call(OTHER_CONTRACT, 'drain', [OPS])]), 1100),
          ]),
        ],
        fee: '200000',
      }),
      'reject',
      ['CONTRACT_NOT_ALLOWED'],
      { currentLedger: 1050 },
    ),
    kase(
      'an auth entry of ours expiring beyond the window',
      tx({
        source: OPS,
        ops: [invoke(call(ESCROW, 'release', []), [addressEntry(OPS, call(ESCROW, 'release', []), 1151)])],
        fee: '200000',
      }),
      'reject',
      ['AUTH_EXPIRATION_TOO_FAR'],
      { currentLedger: 1050 },
    ),
    kase(
      'token transfers over the per-transaction asset limit across two operations',
      tx({
        source: OPS,
        ops: [invoke(transfer(OPS, ALICE, '2000000000')), invoke(transfer(OPS, ESCROW, '1500000000'))],
        fee: '200000',
      }),
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
      {},
      { [TOKEN]: '350' },
    ),
    kase(
      'token velocity across signed transactions',
      tx({ source: OPS, ops: [invoke(transfer(OPS, ALICE, '2000000000'))], fee: '200000' }),
      'reject',
      ['VELOCITY_EXCEEDED'],
      { spent: { [TOKEN]: { '86400': '900' } } },
    ),
    kase(
      'a transfer from someone else is not our outflow',
      tx({ source: OPS, ops: [invoke(transfer(BOB, ALICE, '2000000000'))], fee: '200000' }),
      'approve',
      [],
      {},
      {},
    ),
    kase(
      'contract deployment is not a contract call',
      tx({ source: OPS, ops: [invoke({ kind: 'createContract', details: {}, subInvocations: [] })], fee: '200000' }),
      'reject',
      ['HOST_FUNCTION_NOT_ALLOWED'],
    ),
    kase(
      'resource fee above the soroban limit',
      tx({ source: OPS, ops: [invoke(call(ESCROW, 'release', []))], sorobanResourceFee: '5000001', fee: '6000000' }),
      'reject',
      ['RESOURCE_FEE_TOO_HIGH'],
    ),
  ],
};

const entriesCase = (
  name: string,
  entries: AuthEntrySummary[],
  outcome: Case['expect']['outcome'],
  reasonCodes: string[],
  extra: Partial<Case> = {},
): Case => ({
  name,
  entries,
  now: NOW,
  currentLedger: 2000,
  spent: {},
  ...extra,
  expect: { outcome, reasonCodes },
});

files['auth-entries'] = {
  source:
    'standalone Soroban authorization entries: address credentials of our account, expiration within the window (inclusive), contract rules',
  policy: contractsPolicy,
  cases: [
    entriesCase('escrow deposit entry of our account', [addressEntry(OPS, deposit('1000000000'), 2050)], 'approve', []),
    entriesCase(
      'expiration exactly at the window edge',
      [addressEntry(OPS, call(ESCROW, 'release', []), 2100)],
      'approve',
      [],
    ),
    entriesCase(
      'expiration one ledger past the window',
      [addressEntry(OPS, call(ESCROW, 'release', []), 2101)],
      'reject',
      ['AUTH_EXPIRATION_TOO_FAR'],
    ),
    entriesCase('already expired', [addressEntry(OPS, call(ESCROW, 'release', []), 1999)], 'reject', ['AUTH_EXPIRED']),
    entriesCase(
      'expiring at the current ledger is still valid (inclusive)',
      [addressEntry(OPS, call(ESCROW, 'release', []), 2000)],
      'approve',
      [],
    ),
    entriesCase(
      'protocol-27 ADDRESS_V2 credentials',
      [addressEntry(OPS, call(ESCROW, 'release', []), 2050, 'addressV2')],
      'approve',
      [],
    ),
    entriesCase(
      'an entry for an account this node does not cosign for',
      [addressEntry(STRANGER, call(ESCROW, 'release', []), 2050)],
      'reject',
      ['ACCOUNT_NOT_COSIGNED'],
    ),
    entriesCase(
      'source-account credentials are not signed standalone',
      [{ credentials: 'sourceAccount', invocation: call(ESCROW, 'release', []) }],
      'reject',
      ['AUTH_CREDENTIALS_NOT_SIGNABLE'],
    ),
    entriesCase(
      'a contract outside the policy',
      [addressEntry(OPS, call(OTHER_CONTRACT, 'release', []), 2050)],
      'reject',
      ['CONTRACT_NOT_ALLOWED'],
    ),
    entriesCase('a function outside the policy', [addressEntry(OPS, call(ESCROW, 'withdrawAll', []), 2050)], 'reject', [
      'FUNCTION_NOT_ALLOWED',
    ]),
    entriesCase(
      'two entries whose transfers sum over the asset limit',
      [addressEntry(OPS, deposit('2000000000'), 2050), addressEntry(OPS, deposit('1500000000'), 2050)],
      'reject',
      ['AMOUNT_OVER_TX_LIMIT'],
    ),
    entriesCase('nothing to sign', [], 'reject', ['NO_AUTH_ENTRIES']),
  ],
};

files.fees = {
  source:
    'fees: maxFee per transaction, maxFeeBump per fee bump (its outer fee), maxFeePerOp (a fee bump: inner ops + 1), in stroops; the inner fee of a fee bump is checked against maxFee',
  policy: { ...base, fees: { maxFee: '10000', maxFeeBump: '15000', maxFeePerOp: 1000 } },
  cases: [
    kase(
      'fee within both limits',
      tx({ source: OPS, fee: '2000', ops: [payment(ALICE, '1'), payment(BOB, '1')] }),
      'approve',
      [],
    ),
    kase(
      'fee above the per-transaction cap',
      tx({ source: OPS, fee: '10001', ops: Array.from({ length: 20 }, () => payment(ALICE, '1')) }),
      'reject',
      ['FEE_TOO_HIGH'],
    ),
    kase(
      'fee above the per-operation cap',
      tx({ source: OPS, fee: '2001', ops: [payment(ALICE, '1'), payment(BOB, '1')] }),
      'reject',
      ['FEE_TOO_HIGH'],
    ),
    kase('a fee that is not a whole number', tx({ source: OPS, fee: '100.5', ops: [payment(ALICE, '1')] }), 'reject', [
      'FEE_INVALID',
    ]),
    kase(
      'fee bump outer fee above the cap',
      feeBump(tx({ source: OPS, fee: '100', ops: [payment(ALICE, '1')] }), OPS, '20000'),
      'reject',
      ['FEE_TOO_HIGH'],
    ),
    kase(
      'fee bump outer fee within (ops + 1) x per-op cap',
      feeBump(tx({ source: OPS, fee: '100', ops: [payment(ALICE, '1')] }), OPS, '2000'),
      'approve',
      [],
      {},
      undefined,
      '2000',
    ),
    kase(
      'a fee bump with a 10,000,000 XLM maximum fee around a 1 XLM payment',
      feeBump(tx({ source: OPS, fee: '100', ops: [payment(ALICE, '1')] }), OPS, '100000000000000'),
      'reject',
      ['FEE_TOO_HIGH', 'VELOCITY_EXCEEDED'],
    ),
    kase(
      'the same fee bump paid by someone else: still above the cap',
      feeBump(tx({ source: OPS, fee: '100', ops: [payment(ALICE, '1')] }), STRANGER, '100000000000000'),
      'reject',
      ['FEE_TOO_HIGH'],
    ),
    kase(
      'an outer fee above maxFee but within maxFeeBump (12 inner operations)',
      feeBump(
        tx({ source: OPS, fee: '1200', ops: Array.from({ length: 12 }, () => payment(ALICE, '1')) }),
        OPS,
        '12000',
      ),
      'approve',
      [],
    ),
    kase(
      'an outer fee above maxFeeBump though within (ops + 1) x per-op cap',
      feeBump(
        tx({ source: OPS, fee: '2000', ops: Array.from({ length: 20 }, () => payment(ALICE, '1')) }),
        OPS,
        '15001',
      ),
      'reject',
      ['FEE_TOO_HIGH'],
    ),
    kase(
      'an inner fee above maxFee is refused inside a fee bump',
      feeBump(
        tx({ source: OPS, fee: '10001', ops: Array.from({ length: 11 }, () => payment(ALICE, '1')) }),
        OPS,
        '12000',
      ),
      'reject',
      ['FEE_TOO_HIGH'],
    ),
  ],
};

files.validity = {
  source:
    'validity: a finite maxTime, at most maxWindowSeconds ahead, not passed, minTime <= maxTime (CAP-21 time bounds)',
  policy: { ...base, validity: { maxWindowSeconds: 300 } },
  cases: [
    kase(
      'maxTime 2 minutes ahead',
      tx({ source: OPS, ops: [payment(ALICE, '1')], timeBounds: { minTime: '0', maxTime: String(NOW + 120) } }),
      'approve',
      [],
    ),
    kase(
      'maxTime exactly at the window',
      tx({
        source: OPS,
        ops: [payment(ALICE, '1')],
        timeBounds: { minTime: String(NOW - 10), maxTime: String(NOW + 300) },
      }),
      'approve',
      [],
    ),
    kase('no time bounds at all', tx({ source: OPS, ops: [payment(ALICE, '1')], timeBounds: null }), 'reject', [
      'UNBOUNDED_VALIDITY',
    ]),
    kase(
      'maxTime 0 means unbounded',
      tx({ source: OPS, ops: [payment(ALICE, '1')], timeBounds: { minTime: '0', maxTime: '0' } }),
      'reject',
      ['UNBOUNDED_VALIDITY'],
    ),
    kase(
      'maxTime one second past the window',
      tx({ source: OPS, ops: [payment(ALICE, '1')], timeBounds: { minTime: '0', maxTime: String(NOW + 301) } }),
      'reject',
      ['VALIDITY_TOO_LONG'],
    ),
    kase(
      'maxTime already passed',
      tx({ source: OPS, ops: [payment(ALICE, '1')], timeBounds: { minTime: '0', maxTime: String(NOW) } }),
      'reject',
      ['VALIDITY_EXPIRED'],
    ),
    kase(
      'minTime after maxTime',
      tx({
        source: OPS,
        ops: [payment(ALICE, '1')],
        timeBounds: { minTime: String(NOW + 200), maxTime: String(NOW + 100) },
      }),
      'reject',
      ['INVALID_TIME_BOUNDS'],
    ),
  ],
};

files.memo = {
  source: 'memo: required / forbidden / allowed types, and destinations that require a memo (exchanges)',
  policy: { ...base, memo: { types: ['id', 'text'], requiredForDestinations: [BOB] } },
  cases: [
    kase('no memo to an ordinary destination', tx({ source: OPS, ops: [payment(ALICE, '1')] }), 'approve', []),
    kase('no memo to a destination that requires one', tx({ source: OPS, ops: [payment(BOB, '1')] }), 'reject', [
      'MEMO_REQUIRED',
    ]),
    kase(
      'id memo to that destination',
      tx({ source: OPS, ops: [payment(BOB, '1')], memo: { type: 'id', value: '123' } }),
      'approve',
      [],
    ),
    kase(
      'hash memo is not an allowed type',
      tx({ source: OPS, ops: [payment(ALICE, '1')], memo: { type: 'hash', value: 'ab'.repeat(32) } }),
      'reject',
      ['MEMO_TYPE_NOT_ALLOWED'],
    ),
  ],
};

files['memo-required-forbidden'] = {
  source:
    'memo.required and memo.forbidden (two policies in one file is not possible, so required is tested here and forbidden in the unit test)',
  policy: { ...base, memo: { required: true } },
  cases: [
    kase('missing memo', tx({ source: OPS, ops: [payment(ALICE, '1')] }), 'reject', ['MEMO_REQUIRED']),
    kase(
      'text memo',
      tx({ source: OPS, ops: [payment(ALICE, '1')], memo: { type: 'text', value: 'invoice 42' } }),
      'approve',
      [],
    ),
  ],
};

const setOptions = (so: Record<string, unknown>, source?: string) =>
  op({ type: 'setOptions', setOptions: so, ...(source ? { source } : {}) });

files['signer-changes'] = {
  source:
    'signerChanges: signer, threshold and master-weight changes only for listed accounts and keys, thresholds not below minimums',
  policy: {
    ...base,
    operations: ['payment', 'setOptions'],
    signerChanges: {
      accounts: [OPS],
      addKeys: [NEW_SIGNER],
      removeKeys: [OLD_SIGNER],
      maxWeight: 1,
      minThresholds: { low: 2, medium: 2, high: 2 },
    },
  },
  cases: [
    kase(
      'rotation step 1: add the new node key',
      tx({ source: OPS, ops: [setOptions({ signer: { key: NEW_SIGNER, weight: 1 } })] }),
      'approve',
      [],
    ),
    kase(
      'rotation step 2: remove the old node key',
      tx({ source: OPS, ops: [setOptions({ signer: { key: OLD_SIGNER, weight: 0 } })] }),
      'approve',
      [],
    ),
    kase(
      'adding a key that is not listed',
      tx({ source: OPS, ops: [setOptions({ signer: { key: STRANGER, weight: 1 } })] }),
      'reject',
      ['SIGNER_KEY_NOT_ALLOWED'],
    ),
    kase(
      'removing a key that is not listed for removal',
      tx({ source: OPS, ops: [setOptions({ signer: { key: NEW_SIGNER, weight: 0 } })] }),
      'reject',
      ['SIGNER_KEY_NOT_ALLOWED'],
    ),
    kase(
      'a weight above maxWeight',
      tx({ source: OPS, ops: [setOptions({ signer: { key: NEW_SIGNER, weight: 10 } })] }),
      'reject',
      ['SIGNER_WEIGHT_TOO_HIGH'],
    ),
    kase(
      'signer change on an account not listed',
      tx({ source: OPS2, ops: [setOptions({ signer: { key: NEW_SIGNER, weight: 1 } })] }),
      'reject',
      ['SIGNER_CHANGE_NOT_ALLOWED'],
    ),
    kase(
      'setup: thresholds 2/2/2 and master weight 0',
      tx({ source: OPS, ops: [setOptions({ masterWeight: 0, lowThreshold: 2, medThreshold: 2, highThreshold: 2 })] }),
      'approve',
      [],
    ),
    kase(
      'lowering the medium threshold below the minimum',
      tx({ source: OPS, ops: [setOptions({ medThreshold: 1 })] }),
      'reject',
      ['THRESHOLD_TOO_LOW'],
    ),
    kase('giving the master key weight back', tx({ source: OPS, ops: [setOptions({ masterWeight: 1 })] }), 'reject', [
      'MASTER_WEIGHT_NOT_ALLOWED',
    ]),
    kase(
      'home domain only is not a signer change',
      tx({ source: OPS2, ops: [setOptions({ homeDomain: 'example.com' })] }),
      'approve',
      [],
    ),
  ],
};

files['manual-approval'] = {
  source:
    'manualApproval: conditions that turn an otherwise approved proposal into hold; reject beats hold beats approve',
  policy: {
    ...base,
    operations: ['payment', 'setOptions', 'createAccount'],
    destinations: { deny: [MALLORY] },
    signerChanges: { accounts: [OPS], addKeys: [NEW_SIGNER] },
    manualApproval: {
      amountAbove: [{ asset: 'native', amount: '500' }],
      signerChanges: true,
      unknownDestination: true,
      knownDestinations: [ALICE],
      operations: ['createAccount'],
    },
  },
  cases: [
    kase('small payment to a known destination', tx({ source: OPS, ops: [payment(ALICE, '500')] }), 'approve', []),
    kase(
      'amount above the manual-approval threshold',
      tx({ source: OPS, ops: [payment(ALICE, '500.0000001')] }),
      'hold',
      ['HOLD_AMOUNT_ABOVE'],
    ),
    kase('unknown destination', tx({ source: OPS, ops: [payment(BOB, '1')] }), 'hold', ['HOLD_UNKNOWN_DESTINATION']),
    kase('signer change', tx({ source: OPS, ops: [setOptions({ signer: { key: NEW_SIGNER, weight: 1 } })] }), 'hold', [
      'HOLD_SIGNER_CHANGE',
    ]),
    kase(
      'an operation type that always needs a person',
      tx({
        source: OPS,
        ops: [op({ type: 'createAccount', destination: ALICE, startingBalance: '2', asset: native, amount: '2' })],
      }),
      'hold',
      ['HOLD_OPERATION'],
    ),
    kase(
      'reject beats hold: denied destination with a large amount',
      tx({ source: OPS, ops: [payment(MALLORY, '900')] }),
      'reject',
      ['DESTINATION_DENIED', 'HOLD_AMOUNT_ABOVE', 'HOLD_UNKNOWN_DESTINATION'],
    ),
  ],
};

const dir = fileURLToPath(new URL('.', import.meta.url));
for (const [name, file] of Object.entries(files)) {
  for (const k of file.cases) k.expect.reasonCodes.sort();
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(file, null, 2)}\n`);
}
console.log(`wrote ${Object.keys(files).length} vector files`);

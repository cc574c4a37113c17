/**
 * Throughput of the Stellar core library on this machine. Run: `pnpm exec tsx bench/stellar.bench.ts`.
 * Prints figures and writes bench/results/stellar.json. Never run by tests (no timing assertions anywhere).
 *
 * Measures: decode+hash+describe of a realistic multi-operation transaction; checkAuth on a 2-of-3 account;
 * ed25519 verify with node:crypto (verifyEd25519) against the SDK's pure-JS Keypair.verify; ed25519 sign with
 * node:crypto against Keypair.sign.
 */
import { createPrivateKey, sign as cryptoSign, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import { describeTransaction } from '@cosigner/stellar/describe';
import { checkAuth } from '@cosigner/stellar/quorum';
import type { AccountAuth } from '@cosigner/stellar/types';
import { verifyEd25519 } from '@cosigner/stellar/verify';
import {
  Account,
  Address,
  Asset,
  Keypair,
  Memo,
  Networks,
  nativeToScVal,
  Operation,
  StrKey,
  TransactionBuilder,
  xdr,
} from '@stellar/stellar-sdk';

const PASSPHRASE = Networks.TESTNET;
const BUDGET_MS = Number(process.env.BENCH_MS ?? 1500);

/** Runs `fn` repeatedly for about BUDGET_MS after a short warm-up; returns operations per second. */
function measure(fn: () => void): number {
  const warm = performance.now();
  while (performance.now() - warm < 200) fn();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < BUDGET_MS) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

// A realistic treasury transaction: payments, a path payment, a trustline, a data entry, a signer change and a
// Soroban token transfer with an address-credential authorization entry; 2-of-3 multisig source.
const [source, a, b, c, dest] = Array.from({ length: 5 }, () => Keypair.random()) as [
  Keypair,
  Keypair,
  Keypair,
  Keypair,
  Keypair,
];
const usdc = new Asset('USDC', Keypair.random().publicKey());
const token = StrKey.encodeContract(randomBytes(32));
const transferArgs = [
  nativeToScVal(source.publicKey(), { type: 'address' }),
  nativeToScVal(dest.publicKey(), { type: 'address' }),
  nativeToScVal(1_000_000_000n, { type: 'i128' }),
];
const invoke = new xdr.InvokeContractArgs({
  contractAddress: Address.fromString(token).toScAddress(),
  functionName: 'transfer',
  args: transferArgs,
});
const authEntry = new xdr.SorobanAuthorizationEntry({
  credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
    new xdr.SorobanAddressCredentials({
      address: Address.fromString(source.publicKey()).toScAddress(),
      nonce: 42n,
      signatureExpirationLedger: 123456,
      signature: xdr.ScVal.scvVoid(),
    }),
  ),
  rootInvocation: new xdr.SorobanAuthorizedInvocation({
    function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(invoke),
    subInvocations: [],
  }),
});
const tx = new TransactionBuilder(new Account(source.publicKey(), '1000'), {
  fee: '1000',
  networkPassphrase: PASSPHRASE,
  memo: Memo.text('invoice 2026-11-0042'),
})
  .addOperation(Operation.payment({ destination: dest.publicKey(), asset: usdc, amount: '1250.5000000' }))
  .addOperation(Operation.payment({ destination: dest.publicKey(), asset: Asset.native(), amount: '10' }))
  .addOperation(
    Operation.pathPaymentStrictSend({
      sendAsset: usdc,
      sendAmount: '100',
      destination: dest.publicKey(),
      destAsset: Asset.native(),
      destMin: '900',
      path: [],
    }),
  )
  .addOperation(Operation.changeTrust({ asset: new Asset('EURC', Keypair.random().publicKey()), limit: '100000' }))
  .addOperation(Operation.manageData({ name: 'last-invoice', value: '2026-11-0042' }))
  .addOperation(Operation.setOptions({ signer: { ed25519PublicKey: c.publicKey(), weight: 1 } }))
  .setTimeout(300)
  .build();
tx.sign(a, b, c);
const envelope = tx.toEnvelope().toXdr('base64');
const sorobanTx = new TransactionBuilder(new Account(source.publicKey(), '1001'), {
  fee: '100000',
  networkPassphrase: PASSPHRASE,
})
  .addOperation(
    Operation.invokeHostFunction({ func: xdr.HostFunction.hostFunctionTypeInvokeContract(invoke), auth: [authEntry] }),
  )
  .setTimeout(300)
  .build();
const sorobanEnvelope = sorobanTx.toEnvelope().toXdr('base64');

const accounts = new Map<string, AccountAuth>([
  [
    source.publicKey(),
    {
      accountId: source.publicKey(),
      masterWeight: 0,
      thresholds: { low: 1, medium: 2, high: 3 },
      signers: [a, b, c].map((k) => ({ key: k.publicKey(), weight: 1 })),
    },
  ],
]);

const decodeDescribe = measure(() => describeTransaction(decodeEnvelope(envelope, PASSPHRASE)));
const decodeOnly = measure(() => decodeEnvelope(envelope, PASSPHRASE));
const sorobanDecodeDescribe = measure(() => describeTransaction(decodeEnvelope(sorobanEnvelope, PASSPHRASE)));
const decoded = decodeEnvelope(envelope, PASSPHRASE);
const checkAuthPerSec = measure(() => {
  if (!checkAuth(decoded, accounts).ok) throw new Error('bench transaction must pass checkAuth');
});

const msg = randomBytes(32);
const sig = a.sign(msg);
const raw = a.rawPublicKey();
const nodeVerify = measure(() => {
  if (!verifyEd25519(raw, msg, sig)) throw new Error('verify failed');
});
const sdkVerify = measure(() => {
  if (!a.verify(msg, sig)) throw new Error('verify failed');
});
const privateKey = createPrivateKey({
  key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), a.rawSecretKey()]),
  format: 'der',
  type: 'pkcs8',
});
const nodeSign = measure(() => cryptoSign(null, msg, privateKey));
const sdkSign = measure(() => a.sign(msg));

const round = (x: number) => Math.round(x);
const results = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  budgetMsPerFigure: BUDGET_MS,
  transaction: { operations: tx.operations.length, signatures: tx.signatures.length, base64Length: envelope.length },
  perSecond: {
    decodeHashDescribe: round(decodeDescribe),
    decodeHash: round(decodeOnly),
    sorobanDecodeHashDescribe: round(sorobanDecodeDescribe),
    checkAuth2of3: round(checkAuthPerSec),
    verifyNodeCrypto: round(nodeVerify),
    verifySdk: round(sdkVerify),
    signNodeCrypto: round(nodeSign),
    signSdk: round(sdkSign),
  },
  ratios: {
    verifyNodeOverSdk: Number((nodeVerify / sdkVerify).toFixed(1)),
    signNodeOverSdk: Number((nodeSign / sdkSign).toFixed(1)),
  },
};

const line = (label: string, v: number) =>
  console.log(`${label.padEnd(52)} ${round(v).toLocaleString('en-US').padStart(10)} /s`);
console.log(`stellar bench on ${results.cpu} (${results.cores} cores), node ${results.node}`);
console.log(
  `transaction: ${results.transaction.operations} ops, ${results.transaction.signatures} signatures, ${envelope.length} base64 chars`,
);
line('decode + hash + describe (6-op classic tx)', decodeDescribe);
line('decode + hash only', decodeOnly);
line('decode + hash + describe (Soroban transfer + auth entry)', sorobanDecodeDescribe);
line('checkAuth, 2-of-3 + HIGH setOptions (3 signatures)', checkAuthPerSec);
line('verify: node:crypto verifyEd25519', nodeVerify);
line('verify: SDK Keypair.verify (pure JS)', sdkVerify);
line('sign: node:crypto', nodeSign);
line('sign: SDK Keypair.sign (pure JS)', sdkSign);
console.log(
  `verify node:crypto / SDK = ${results.ratios.verifyNodeOverSdk}x; sign node:crypto / SDK = ${results.ratios.signNodeOverSdk}x`,
);

const out = new URL('./results/stellar.json', import.meta.url);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote ${out.pathname}`);

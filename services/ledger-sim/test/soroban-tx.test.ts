import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Account,
  Asset,
  Keypair,
  Operation,
  SorobanDataBuilder,
  StrKey,
  type Transaction,
  TransactionBuilder,
  xdr,
} from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { build } from '../src/app.ts';
import {
  accountKey,
  CALL_RESOURCES,
  escrowBalanceKey,
  escrowContractId,
  escrowInstanceKey,
  MIN_TEMP_ENTRY_TTL,
  NETWORK_LIMITS,
  nonceId,
  nonceKey,
  sorobanResourceFee,
} from '../src/soroban.ts';
import { account, fund, NETWORK, post, sim, tx } from './helpers.ts';
import { addr, call, i128, nonceOf, prepare, type RawSim, signEntry, simAuth, simulate } from './soroban-helpers.ts';

/** A transaction with `ops` and the given Soroban data: fee = inclusion * ops + the data's resource fee. */
function sorobanTx(
  app: FastifyInstance,
  source: Keypair,
  ops: xdr.Operation[],
  data: xdr.SorobanTransactionData | null,
  inclusion = 100,
): Transaction {
  const b = new TransactionBuilder(new Account(source.publicKey(), account(app, source.publicKey()).seq.toString()), {
    fee: String(inclusion),
    networkPassphrase: NETWORK,
  });
  for (const op of ops) b.addOperation(op);
  if (data !== null) b.setSorobanData(data);
  const t = b.setTimeout(300).build();
  t.sign(source);
  return t;
}

interface Verdict {
  status: number;
  codes: { transaction: string; inner_transaction?: string; operations?: string[] } | undefined;
  diagnostic: string | undefined;
}

async function submit(app: FastifyInstance, t: Transaction | string): Promise<Verdict> {
  const r = await post(app, t as Transaction);
  const extras = r.body.extras as { diagnostic?: string } | undefined;
  return { status: r.status, codes: r.body.extras?.result_codes, diagnostic: extras?.diagnostic };
}

describe('Soroban transactions: shape, fees, resources, footprint', () => {
  let app: FastifyInstance;
  let me: Keypair;
  let dest: Keypair;

  beforeEach(async () => {
    app = await sim();
    me = Keypair.random();
    dest = Keypair.random();
    await fund(app, me, dest);
  });
  afterEach(async () => {
    await app.close();
  });

  /** The simulated data of me depositing `amount` for myself (SOURCE_ACCOUNT credentials: no nonce). */
  const simulated = async (fn = 'deposit', args: xdr.ScVal[] = [addr(me), i128(1000n)]) => {
    const s = await simulate(app, tx(app, me.publicKey(), [call(fn, args)]));
    expect(s.error).toBeUndefined();
    return { sim: s, data: new SorobanDataBuilder(s.transactionData!), auth: simAuth(s) };
  };

  it('runs a call authorized by the source account (SOURCE_ACCOUNT credentials, as simulation records them)', async () => {
    const { sim: s, data, auth } = await simulated();
    expect(auth.map((e) => e.credentials.type)).toEqual(['sorobanCredentialsSourceAccount']);
    const footprint = data.getFootprint();
    const ids = (keys: xdr.LedgerKey[]) => keys.map((k) => k.toXdr('base64')).sort();
    expect(ids(footprint.readOnly)).toEqual([escrowInstanceKey(NETWORK).toXdr('base64')]);
    expect(ids(footprint.readWrite)).toEqual(
      ids([accountKey(me.publicKey()), escrowBalanceKey(NETWORK, me.publicKey())]),
    );
    expect(BigInt(s.minResourceFee!)).toBe(sorobanResourceFee(data.build().resources));
    const before = account(app, me.publicKey()).balance;
    const v = await submit(app, sorobanTx(app, me, [call('deposit', [addr(me), i128(1000n)], auth)], data.build()));
    expect(v.status).toBe(200);
    expect(account(app, me.publicKey()).balance).toBe(before - 1000n - 100n - BigInt(s.minResourceFee!));
    expect(app.ledger.state.escrow.get(me.publicKey())).toBe(1000n);
    // The Horizon transaction resource reads the Soroban envelope like any other.
    const hash = sorobanTx(app, me, [call('deposit', [addr(me), i128(1n)], auth)], data.build());
    expect(hash).toBeDefined();
  });

  it('charges only what the declared resources cost, and the inclusion fee up to the base fee', async () => {
    const { sim: s, data, auth } = await simulated();
    const before = account(app, me.publicKey()).balance;
    // Bid 1000 inclusion and 5000 extra resource fee: charged 100 + the cost of the declared resources.
    const padded = data.setResourceFee(BigInt(s.minResourceFee!) + 5000n).build();
    const v = await submit(app, sorobanTx(app, me, [call('deposit', [addr(me), i128(1000n)], auth)], padded, 1000));
    expect(v.status).toBe(200);
    expect(account(app, me.publicKey()).balance).toBe(before - 1000n - 100n - BigInt(s.minResourceFee!));
  });

  it('refuses malformed Soroban transactions before anything is charged', async () => {
    const { data, auth } = await simulated();
    const op = call('deposit', [addr(me), i128(1n)], auth);
    const pay = Operation.payment({ destination: dest.publicKey(), asset: Asset.native(), amount: '1' });
    const seq = account(app, me.publicKey()).seq;
    const cases: [string, Transaction, string, RegExp][] = [
      [
        'two operations',
        sorobanTx(app, me, [op, pay], data.build()),
        'tx_malformed',
        /exactly one operation \(this one has 2\)$/,
      ],
      ['no Soroban data', sorobanTx(app, me, [op], null), 'tx_malformed', /no SorobanTransactionData/],
      [
        'Soroban data on a payment',
        sorobanTx(app, me, [pay], data.build()),
        'tx_malformed',
        /without a Soroban operation/,
      ],
      [
        'resource fee below the cost',
        sorobanTx(app, me, [op], new SorobanDataBuilder(data.build()).setResourceFee(10n).build()),
        'tx_insufficient_fee',
        /^fee: resourceFee 10 below the \d+ the declared resources cost$/,
      ],
      [
        'inclusion fee below the base fee',
        sorobanTx(app, me, [op], data.build(), 99),
        'tx_insufficient_fee',
        /^fee: inclusion fee 99 \(fee - resourceFee\) below the base fee 100$/,
      ],
      [
        'instructions above the network limit',
        sorobanTx(
          app,
          me,
          [op],
          new SorobanDataBuilder(data.build())
            .setResources(NETWORK_LIMITS.instructions + 1, 1000, 1000)
            .setResourceFee(10_000_000n)
            .build(),
        ),
        'tx_soroban_invalid',
        /^resources: instructions 100000001 above the network limit 100000000$/,
      ],
      [
        'too many footprint entries',
        sorobanTx(
          app,
          me,
          [op],
          new SorobanDataBuilder(data.build())
            .setReadOnly(Array.from({ length: 101 }, () => accountKey(Keypair.random().publicKey())))
            .setResourceFee(10_000_000n)
            .build(),
        ),
        'tx_soroban_invalid',
        /^resources: footprint entries 103 above the network limit 100$/,
      ],
    ];
    for (const [name, t, code, reason] of cases) {
      const v = await submit(app, t);
      expect(v.codes?.transaction, name).toBe(code);
      expect(v.diagnostic, name).toMatch(reason);
    }
    // A resource fee above the whole fee: the SDK would never build it, so patch the XDR.
    const env = sorobanTx(app, me, [op], data.build()).toEnvelope();
    const txx = (env as xdr.TransactionEnvelopeTx).v1.tx;
    const raised = new xdr.Transaction({
      ...txx,
      ext: xdr.TransactionExt.sorobanData(
        new xdr.SorobanTransactionData({
          ext: xdr.SorobanTransactionDataExt.v0(),
          resources: data.build().resources,
          resourceFee: BigInt(txx.fee) + 1n,
        }),
      ),
    } as ConstructorParameters<typeof xdr.Transaction>[0]);
    const unsigned = TransactionBuilder.fromXDR(
      xdr.TransactionEnvelope.envelopeTypeTx(new xdr.TransactionV1Envelope({ tx: raised, signatures: [] })).toXdr(
        'base64',
      ),
      NETWORK,
    ) as Transaction;
    unsigned.sign(me);
    const v = await submit(app, unsigned);
    expect(v.codes?.transaction).toBe('tx_soroban_invalid');
    expect(v.diagnostic).toMatch(/is negative or above the transaction fee/);
    expect(account(app, me.publicKey()).seq).toBe(seq);
  });

  it('fails with op_resource_limit_exceeded when declared resources or the footprint fall short', async () => {
    const { data, auth } = await simulated();
    const op = call('deposit', [addr(me), i128(1000n)], auth);
    const ro = data.getReadOnly();
    const rw = data.getReadWrite();
    const fee = 10_000_000n;
    const cases: [string, xdr.SorobanTransactionData, RegExp][] = [
      [
        'instructions',
        new SorobanDataBuilder(data.build())
          .setResources(CALL_RESOURCES.instructions - 1, 1000, 1000)
          .setResourceFee(fee)
          .build(),
        /^resources: instructions 999999 below the 1000000 this call needs$/,
      ],
      [
        'write bytes',
        new SorobanDataBuilder(data.build())
          .setResources(CALL_RESOURCES.instructions, 1000, 10)
          .setResourceFee(fee)
          .build(),
        /^resources: write bytes 10 below the 1000 this call needs$/,
      ],
      [
        'no instance',
        new SorobanDataBuilder(data.build()).setReadOnly([]).setResourceFee(fee).build(),
        /^footprint: missing key escrow contract instance$/,
      ],
      [
        'balance read-only',
        new SorobanDataBuilder(data.build())
          .setReadOnly([...ro, escrowBalanceKey(NETWORK, me.publicKey())])
          .setReadWrite(rw.filter((k) => k.type === 'account'))
          .setResourceFee(fee)
          .build(),
        /^footprint: missing read-write key escrow balance of G/,
      ],
    ];
    for (const [name, d, reason] of cases) {
      const v = await submit(app, sorobanTx(app, me, [op], d));
      expect(v.codes, name).toEqual({ transaction: 'tx_failed', operations: ['op_resource_limit_exceeded'] });
      expect(v.diagnostic, name).toMatch(reason);
    }
    expect(app.ledger.state.escrow.size).toBe(0);
  });

  it('traps on contract errors with an escrow: reason', async () => {
    const fee = 10_000_000n;
    const data = (extraRw: xdr.LedgerKey[] = []) =>
      new SorobanDataBuilder()
        .setResources(CALL_RESOURCES.instructions, CALL_RESOURCES.diskReadBytes, CALL_RESOURCES.writeBytes)
        .setReadOnly([escrowInstanceKey(NETWORK)])
        .setReadWrite([accountKey(me.publicKey()), escrowBalanceKey(NETWORK, me.publicKey()), ...extraRw])
        .setResourceFee(fee)
        .build();
    const src = (fn: string, args: xdr.ScVal[]) =>
      new xdr.SorobanAuthorizationEntry({
        credentials: xdr.SorobanCredentials.sorobanCredentialsSourceAccount(),
        rootInvocation: new xdr.SorobanAuthorizedInvocation({
          function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(
            (
              (call(fn, args).body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp
                .hostFunction as xdr.HostFunctionInvokeContract
            ).invokeContract,
          ),
          subInvocations: [],
        }),
      });
    const other = StrKey.encodeContract(Buffer.alloc(32, 9));
    const nobody = Keypair.random().publicKey();
    const dep = (amount: xdr.ScVal) => [addr(me), amount];
    const cases: [string, xdr.Operation, RegExp][] = [
      [
        'another contract',
        call('deposit', dep(i128(1n)), [], other),
        /^escrow: no contract C[A-Z2-7]{55} on this network/,
      ],
      ['unknown function', call('steal', [addr(me)]), /^escrow: no function steal/],
      ['argument count', call('deposit', [addr(me)]), /^escrow: deposit takes \(from: Address, amount: i128\), got 1/],
      [
        'from a contract',
        call('deposit', [addr(other), i128(1n)]),
        /^escrow: deposit: from must be a G account address \(got C/,
      ],
      [
        'from not an address',
        call('deposit', [xdr.ScVal.scvU32(1), i128(1n)]),
        /^escrow: deposit: from must be a G account address \(got scvU32\)$/,
      ],
      [
        'amount type',
        call('deposit', [addr(me), xdr.ScVal.scvU32(5)]),
        /^escrow: deposit: amount must be an i128 \(got scvU32\)$/,
      ],
      ['amount zero', call('deposit', dep(i128(0n))), /^escrow: deposit: amount must be positive \(got 0\)$/],
      [
        'more than available',
        call('deposit', dep(i128(10n ** 12n)), [src('deposit', dep(i128(10n ** 12n)))]),
        /^escrow: deposit: G[A-Z2-7]{55} has \d+ stroops above its reserve, below the 1000000000000 to deposit$/,
      ],
      [
        'release more than escrowed',
        call('release', [addr(me), addr(dest), i128(1n)], [src('release', [addr(me), addr(dest), i128(1n)])]),
        /^escrow: release: G[A-Z2-7]{55} has 0 stroops in escrow, below the 1 to release$/,
      ],
      [
        'source credentials for another address',
        call('deposit', [addr(dest), i128(1n)], [src('deposit', [addr(dest), i128(1n)])]),
        /^auth: no authorization entry for G[A-Z2-7]{55} matches escrow.deposit\(G[A-Z2-7]{55}, 1\)$/,
      ],
    ];
    for (const [name, op, reason] of cases) {
      const v = await submit(app, sorobanTx(app, me, [op], data([accountKey(dest.publicKey())])));
      expect(v.codes, name).toEqual({ transaction: 'tx_failed', operations: ['function_trapped'] });
      expect(v.diagnostic, name).toMatch(reason);
    }
    // Release to an account that does not exist, after a deposit.
    const ok = await submit(
      app,
      sorobanTx(app, me, [call('deposit', dep(i128(5n)), [src('deposit', dep(i128(5n)))])], data()),
    );
    expect(ok.status).toBe(200);
    const rel = [addr(me), addr(nobody), i128(5n)];
    const v = await submit(
      app,
      sorobanTx(app, me, [call('release', rel, [src('release', rel)])], data([accountKey(nobody)])),
    );
    expect(v.diagnostic).toBe(`escrow: release: destination account ${nobody} does not exist`);
    // Uploading WASM is not something the sim runs: opNOT_SUPPORTED, the sim's own refusal.
    const upload = Operation.uploadContractWasm({ wasm: Buffer.from('0061736d01000000', 'hex') });
    const u = await submit(app, sorobanTx(app, me, [upload], data()));
    expect(u.codes).toEqual({ transaction: 'tx_failed', operations: ['op_not_supported'] });
  });

  it('wraps a Soroban transaction in a fee bump: inclusion fee on the outer, resource fee once', async () => {
    const { sim: s, data, auth } = await simulated();
    const feeSource = Keypair.random();
    await fund(app, feeSource);
    const inner = sorobanTx(app, me, [call('deposit', [addr(me), i128(1000n)], auth)], data.build());
    const resourceFee = BigInt(s.minResourceFee!);
    // The SDK adds the inner resource fee to the outer fee: base fee 100 for (1 + 1) operations.
    const bump = TransactionBuilder.buildFeeBumpTransaction(feeSource, '100', inner, NETWORK);
    expect(BigInt(bump.fee)).toBe(200n + resourceFee);
    // One stroop less of inclusion fee on the outer envelope is too little.
    const fbx = (bump.toEnvelope() as xdr.TransactionEnvelopeTxFeeBump).feeBump.tx;
    const lowFee = new xdr.FeeBumpTransaction({ ...fbx, fee: 199n + resourceFee } as ConstructorParameters<
      typeof xdr.FeeBumpTransaction
    >[0]);
    const low = TransactionBuilder.fromXDR(
      xdr.TransactionEnvelope.envelopeTypeTxFeeBump(
        new xdr.FeeBumpTransactionEnvelope({ tx: lowFee, signatures: [] }),
      ).toXdr('base64'),
      NETWORK,
    ) as unknown as Transaction;
    low.sign(feeSource);
    expect((await submit(app, low)).codes?.transaction).toBe('tx_insufficient_fee');
    bump.sign(feeSource);
    const before = account(app, feeSource.publicKey()).balance;
    const v = await submit(app, bump as unknown as Transaction);
    expect(v.status).toBe(200);
    expect(account(app, feeSource.publicKey()).balance).toBe(before - 200n - resourceFee);
    expect(app.ledger.state.escrow.get(me.publicKey())).toBe(1000n);
    // The inner transaction's own refusal comes back through the fee bump with its reason.
    const bad = sorobanTx(app, me, [call('deposit', [addr(me), i128(3n)], auth)], null);
    const bump2 = TransactionBuilder.buildFeeBumpTransaction(feeSource, '1000', bad, NETWORK);
    bump2.sign(feeSource);
    const v2 = await submit(app, bump2 as unknown as Transaction);
    expect(v2.codes).toEqual({ transaction: 'tx_fee_bump_inner_failed', inner_transaction: 'tx_malformed' });
    expect(v2.diagnostic).toMatch(/no SorobanTransactionData/);
  });

  it('gives the reason in /transactions_async errors, and answers resubmissions from history with it', async () => {
    const { data } = await simulated();
    const noAuth = sorobanTx(app, me, [call('deposit', [addr(me), i128(1n)])], data.build());
    const res = await app.inject({
      method: 'POST',
      url: '/transactions_async',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `tx=${encodeURIComponent(sorobanTx(app, me, [call('deposit', [addr(me), i128(1n)])], null).toXdr())}`,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().diagnostic).toMatch(/no SorobanTransactionData/);
    const first = await submit(app, noAuth);
    expect(first.diagnostic).toMatch(/^auth: no authorization entry for/);
    const again = await submit(app, noAuth);
    expect(again.diagnostic).toBe(first.diagnostic);
  });
});

describe('Soroban state across ledgers and restarts', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ledger-sim-soroban-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps escrow balances and consumed nonces in the snapshot; a replay after restart is refused', async () => {
    let app = await sim({ dataDir: dir });
    const owner = Keypair.random();
    const payer = Keypair.random();
    await fund(app, owner, payer);
    const seqNow = () => app.ledger.state.openSequence;
    const first = await prepare(app, payer, 'deposit', [addr(owner), i128(42n)], (es) =>
      es.map((e) => signEntry(e, seqNow() + 100, [owner])),
    );
    expect((await post(app, first.tx)).status).toBe(200);
    const nonce = nonceOf(first.entries[0]!);
    await app.close();

    app = await sim({ dataDir: dir });
    expect(app.ledger.state.escrow.get(owner.publicKey())).toBe(42n);
    expect(app.ledger.state.nonces.get(nonceId(owner.publicKey(), nonce))).toBeGreaterThanOrEqual(seqNow());
    const replay = await prepare(app, payer, 'deposit', [addr(owner), i128(42n)], () => first.entries);
    const r = await post(app, replay.tx);
    expect((r.body.extras as { diagnostic: string }).diagnostic).toBe(
      `auth: ${owner.publicKey()}: nonce ${nonce} already used`,
    );
    await app.close();

    // A snapshot from before Soroban support (no soroban section) still loads, with an empty escrow.
    const file = join(dir, 'ledger.json');
    const snap = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    const soroban = snap.soroban as { escrow: [string, string][] };
    expect(soroban.escrow).toEqual([[owner.publicKey(), '42']]);
    delete snap.soroban;
    // Without the escrow the lumens no longer add up, so give them back to the owner as an old snapshot would hold.
    const accounts = snap.accounts as { id: string; balance: string }[];
    const o = accounts.find((a) => a.id === owner.publicKey())!;
    o.balance = String(BigInt(o.balance) + 42n);
    await writeFile(file, JSON.stringify(snap));
    const old = await build({ dataDir: dir, closeMs: 0 });
    expect(old.ledger.state.escrow.size).toBe(0);
    expect(old.ledger.state.nonces.size).toBe(0);
    await old.close();
    // A corrupt nonce entry is refused.
    snap.soroban = { escrow: [], nonces: [['x', 'not a number']] };
    await writeFile(file, JSON.stringify(snap));
    await expect(build({ dataDir: dir, closeMs: 0 })).rejects.toMatchObject({ code: 'LEDGER_SNAPSHOT_CORRUPT' });
  });

  it('forgets a consumed nonce once its entry has lived its time (expiration, at least 16 ledgers)', async () => {
    const app = await sim();
    const owner = Keypair.random();
    await fund(app, owner);
    const at = app.ledger.state.openSequence;
    const p = await prepare(app, owner, 'deposit', [addr(owner), i128(1n)], (es) => es);
    expect(simAuth(p.sim as RawSim).map((e) => e.credentials.type)).toEqual(['sorobanCredentialsSourceAccount']);
    // SOURCE_ACCOUNT credentials consume no nonce; an ADDRESS entry for the source account itself does.
    const addressEntry = new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
        new xdr.SorobanAddressCredentials({
          address: (addr(owner) as xdr.ScValAddress).address,
          nonce: 77n,
          signatureExpirationLedger: 0,
          signature: xdr.ScVal.scvVoid(),
        }),
      ),
      rootInvocation: simAuth(p.sim as RawSim)[0]!.rootInvocation,
    });
    const q = await prepare(app, owner, 'deposit', [addr(owner), i128(1n)], () => [
      signEntry(addressEntry, at, [owner]),
    ]);
    expect((await post(app, q.tx)).status).toBe(200);
    const k = nonceId(owner.publicKey(), 77n);
    expect(app.ledger.state.nonces.get(k)).toBe(at + MIN_TEMP_ENTRY_TTL - 1);
    // The synchronous submission's answer came once ledger `at` had closed: 14 more closes keep the entry alive.
    expect(app.ledger.state.lastClosed.sequence).toBe(at);
    for (let i = 0; i < MIN_TEMP_ENTRY_TTL - 2; i++) await app.ledger.close();
    expect(app.ledger.state.nonces.has(k)).toBe(true);
    await app.ledger.close();
    expect(app.ledger.state.nonces.has(k)).toBe(false);
    expect(nonceKey(owner.publicKey(), 77n).type).toBe('contractData');
    expect(escrowContractId('Test SDF Network ; September 2015')).not.toBe(escrowContractId(NETWORK));
    await app.close();
  });
});

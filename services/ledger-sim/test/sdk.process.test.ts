import { rm } from 'node:fs/promises';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import {
  Address,
  Asset,
  authorizeEntry,
  Contract,
  type FeeBumpTransaction,
  Horizon,
  type Keypair,
  nativeToScVal,
  Operation,
  rpc,
  scValToNative,
  type Transaction,
  TransactionBuilder,
  type xdr,
} from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escrowContractId } from '../src/soroban.ts';
import { keys } from './helpers.ts';

/**
 * The real SDK's Horizon.Server against a real `cosigner ledger-sim` process: it loads accounts, fetches fees and
 * submits unchanged, and gets stellar-core's verdicts back as TransactionFailedError result codes.
 */
describe('cosigner ledger-sim with the SDK Horizon.Server', () => {
  let dir: string;
  let proc: RunningProcess;
  let server: Horizon.Server;
  let network: string;

  const start = async () => {
    // A shared, busy machine can take many seconds to boot tsx: allow it.
    proc = await startCosignerProcess({
      args: ['ledger-sim', '--data-dir', dir, '--close-ms', '200'],
      readyTimeoutMs: 50_000,
    });
    server = new Horizon.Server(proc.url, { allowHttp: true });
  };

  beforeAll(async () => {
    dir = await tempDir('ledger-sim-proc-');
    await start();
    network = String(proc.ready.networkPassphrase);
  }, 60_000);
  afterAll(async () => {
    await proc?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function build(source: Keypair | string, ops: xdr.Operation[], opts: { timeout?: number } = {}) {
    const account = await server.loadAccount(typeof source === 'string' ? source : source.publicKey());
    const fee = await server.fetchBaseFee();
    const b = new TransactionBuilder(account, { fee: String(fee), networkPassphrase: network });
    for (const op of ops) b.addOperation(op);
    return b.setTimeout(opts.timeout ?? 60).build();
  }

  /** 'ok' or the result codes Horizon reported, as the SDK surfaces them. */
  async function submit(t: Transaction | FeeBumpTransaction): Promise<string> {
    try {
      const r = await server.submitTransaction(t);
      expect(r.successful).toBe(true);
      return 'ok';
    } catch (e) {
      const codes = (
        e as { response?: { data?: { extras?: { result_codes?: { transaction: string; operations?: string[] } } } } }
      ).response?.data?.extras?.result_codes;
      if (codes === undefined) throw e;
      return codes.operations ? `${codes.transaction}:${codes.operations.join(',')}` : codes.transaction;
    }
  }

  function signedBy<T extends Transaction | FeeBumpTransaction>(t: T, ...kps: Keypair[]): T {
    for (const kp of kps) t.sign(kp);
    return t;
  }

  it('serves the root, the latest ledger and the base fee', async () => {
    const root = await server.root();
    expect(root.network_passphrase).toBe('Standalone Network ; February 2017');
    expect(await server.fetchBaseFee()).toBe(100);
    const first = (await server.ledgers().order('desc').limit(1).call()).records[0]!.sequence;
    // The ledger closes on its own every 200 ms.
    let latest = first;
    while (latest === first) {
      await new Promise((r) => setTimeout(r, 50));
      latest = (await server.ledgers().order('desc').limit(1).call()).records[0]!.sequence;
    }
    expect(latest).toBeGreaterThan(first);
  });

  it('judges the issue table as stellar-core would', async () => {
    const [owner, a, b, c, dest, sponsor, x] = keys(7);
    for (const kp of [owner!, dest!, sponsor!]) await server.friendbot(kp.publicKey()).call();
    const o = owner!.publicKey();
    const setup = await build(owner!, [
      ...[a!, b!, c!].map((k) => Operation.setOptions({ signer: { ed25519PublicKey: k.publicKey(), weight: 1 } })),
      Operation.setOptions({ masterWeight: 0, lowThreshold: 1, medThreshold: 2, highThreshold: 3 }),
    ]);
    expect(await submit(signedBy(setup, owner!))).toBe('ok');
    const loaded = await server.loadAccount(o);
    expect(loaded.thresholds).toEqual({ low_threshold: 1, med_threshold: 2, high_threshold: 3 });
    // Master weight 0: Horizon lists only the three added signers (AccountEntry.SignerSummary skips the master key).
    expect(loaded.signers).toHaveLength(3);
    expect(loaded.signers.map((s) => s.key)).not.toContain(o);

    const pay = () => Operation.payment({ destination: dest!.publicKey(), asset: Asset.native(), amount: '1' });
    expect(await submit(signedBy(await build(owner!, [pay()]), a!, b!))).toBe('ok');
    expect(await submit(signedBy(await build(owner!, [pay()]), a!))).toBe('tx_failed:op_bad_auth');
    expect(await submit(signedBy(await build(owner!, [pay()]), a!, b!, c!))).toBe('tx_bad_auth_extra');
    expect(await submit(signedBy(await build(owner!, [pay()]), owner!))).toBe('tx_bad_auth');
    const addX = Operation.setOptions({ signer: { ed25519PublicKey: x!.publicKey(), weight: 1 } });
    expect(await submit(signedBy(await build(owner!, [addX]), a!, b!))).toBe('tx_failed:op_bad_auth');
    expect(await submit(signedBy(await build(owner!, [addX]), a!, b!, c!))).toBe('ok');

    const inner = signedBy(await build(owner!, [pay()]), b!, c!);
    const bump = TransactionBuilder.buildFeeBumpTransaction(sponsor!, '200', inner, network);
    expect(await submit(signedBy(bump, sponsor!))).toBe('ok');

    const first = signedBy(await build(owner!, [pay()]), a!, b!);
    const rival = new TransactionBuilder(await server.loadAccount(o), { fee: '100', networkPassphrase: network })
      .addOperation(Operation.manageData({ name: 'rival', value: 'x' }))
      .setTimeout(60)
      .build();
    expect(await submit(first)).toBe('ok');
    expect(await submit(signedBy(rival, a!, b!))).toBe('tx_bad_seq');
    // Resubmitting the applied bytes is answered from history, as Horizon does.
    expect(await submit(first)).toBe('ok');

    const acct = await server.loadAccount(o);
    const foreign = new TransactionBuilder(acct, { fee: '100', networkPassphrase: 'Test SDF Network ; September 2015' })
      .addOperation(pay())
      .setTimeout(60)
      .build();
    expect(await submit(signedBy(foreign, a!, b!))).toBe('tx_bad_auth');
    const expired = new TransactionBuilder(acct, {
      fee: '100',
      networkPassphrase: network,
      timebounds: { minTime: 0, maxTime: Math.floor(Date.now() / 1000) - 60 },
    })
      .addOperation(pay())
      .build();
    expect(await submit(signedBy(expired, a!, b!))).toBe('tx_too_late');

    const history = await server.transactions().forAccount(o).order('desc').limit(10).call();
    expect(history.records[0]!.successful).toBe(true);
    const one = await server.transactions().transaction(history.records[0]!.hash).call();
    expect(one.source_account).toBe(o);
  });

  it('keeps accounts, escrow balances and consumed nonces across a restart (snapshot in --data-dir)', async () => {
    const [kp, depositor] = keys(2);
    await server.friendbot(kp!.publicKey()).call();
    await server.friendbot(depositor!.publicKey()).call();
    const t = await build(kp!, [Operation.manageData({ name: 'kept', value: 'yes' })]);
    expect(await submit(signedBy(t, kp!))).toBe('ok');

    // A Soroban deposit through the RPC endpoint named in the ready file, signed with the SDK's authorizeEntry.
    const soroban = new rpc.Server(String(proc.ready.rpcUrl), { allowHttp: true });
    const escrow = new Contract(escrowContractId(network));
    const depositOp = (auth: xdr.SorobanAuthorizationEntry[] = []) =>
      Operation.invokeHostFunction({
        func: (
          escrow.call('deposit', new Address(depositor!.publicKey()).toScVal(), nativeToScVal(25n, { type: 'i128' }))
            .body as xdr.OperationBodyInvokeHostFunction
        ).invokeHostFunctionOp.hostFunction,
        auth,
      });
    const simulated = await soroban.simulateTransaction(await build(kp!, [depositOp()]));
    if (!rpc.Api.isSimulationSuccess(simulated)) throw new Error('simulation failed');
    const { sequence } = await soroban.getLatestLedger();
    const entry = await authorizeEntry(simulated.result!.auth[0]!, depositor!, sequence + 50, network);
    const prepared = await soroban.prepareTransaction(await build(kp!, [depositOp([entry])]));
    const sent = await soroban.sendTransaction(signedBy(prepared, kp!));
    expect((await soroban.pollTransaction(sent.hash)).status).toBe('SUCCESS');

    const before = await server.loadAccount(kp!.publicKey());
    expect(await proc.stop()).toBe(0);
    await start();
    const after = await server.loadAccount(kp!.publicKey());
    expect(after.sequence).toBe(before.sequence);
    expect(after.data_attr).toEqual({ kept: Buffer.from('yes').toString('base64') });
    expect(after.balances).toEqual(before.balances);

    const again = new rpc.Server(String(proc.ready.rpcUrl), { allowHttp: true });
    const balance = await again.simulateTransaction(
      await build(kp!, [escrow.call('balance', new Address(depositor!.publicKey()).toScVal())]),
    );
    if (!rpc.Api.isSimulationSuccess(balance)) throw new Error('simulation failed');
    expect(scValToNative(balance.result!.retval)).toBe(25n);
    // The same signed entry again: its nonce was consumed before the restart.
    const replay = await again.prepareTransaction(await build(kp!, [depositOp([entry])]));
    const r = await again.sendTransaction(signedBy(replay, kp!));
    const got = await again.pollTransaction(r.hash);
    expect(got.status).toBe('FAILED');
    const event = (got as rpc.Api.GetFailedTransactionResponse).diagnosticEventsXdr![0]!;
    expect(scValToNative((event.event.body as xdr.ContractEventBodyV0).v0.data)).toMatch(/nonce \d+ already used$/);
  }, 120_000);

  it('refuses to start when NODE_ENV=production', async () => {
    await expect(
      startCosignerProcess({
        args: ['ledger-sim', '--in-memory'],
        env: { NODE_ENV: 'production' },
        // The process exits at once; the long timeout only covers a slow tsx boot on a busy machine.
        readyTimeoutMs: 50_000,
      }),
    ).rejects.toThrow(/development only/);
  }, 60_000);
});

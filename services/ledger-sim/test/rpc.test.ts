import {
  authorizeEntry,
  authorizeInvocation,
  Contract,
  Horizon,
  Keypair,
  Operation,
  rpc,
  scValToNative,
  type Transaction,
  TransactionBuilder,
  type xdr,
} from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escrowBalanceKey, nonceKey } from '../src/soroban.ts';
import { fund, keys, multisig, NETWORK, sim } from './helpers.ts';
import { addr, ESCROW, i128, rpcCall, signEntry } from './soroban-helpers.ts';

/**
 * The real SDK's rpc.Server against the simulator over HTTP: simulate -> sign the entries -> prepare (simulate and
 * assemble) -> send -> getTransaction, the flow every Soroban client runs. That this works unchanged is the proof
 * that /rpc speaks Stellar RPC.
 */
describe('POST /rpc with the SDK rpc.Server', () => {
  let app: FastifyInstance;
  let server: rpc.Server;
  let horizon: Horizon.Server;
  let payer: Keypair;
  let owner: Keypair;
  let signers: Keypair[];

  beforeAll(async () => {
    app = await sim();
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    server = new rpc.Server(`${url}/rpc`, { allowHttp: true });
    horizon = new Horizon.Server(url, { allowHttp: true });
    payer = Keypair.random();
    owner = Keypair.random();
    signers = keys(3);
    await fund(app, payer);
    await multisig(
      app,
      owner,
      signers.map((kp) => ({ kp, weight: 1 })),
      { master: 0, low: 1, med: 2, high: 2 },
    );
  });
  afterAll(async () => {
    await app.close();
  });

  const build = async (source: Keypair, op: xdr.Operation): Promise<Transaction> => {
    const acct = await horizon.loadAccount(source.publicKey());
    return new TransactionBuilder(acct, { fee: '100', networkPassphrase: NETWORK })
      .addOperation(op)
      .setTimeout(60)
      .build();
  };

  it('answers getHealth, getNetwork and getLatestLedger in the SDK shapes', async () => {
    await app.ledger.close();
    const health = await server.getHealth();
    expect(health.status).toBe('healthy');
    expect(health.latestLedger).toBe(app.ledger.state.lastClosed.sequence);
    const net = await server.getNetwork();
    expect(net.passphrase).toBe(NETWORK);
    expect(net.friendbotUrl).toMatch(/\/friendbot$/);
    const latest = await server.getLatestLedger();
    expect(latest.sequence).toBe(app.ledger.state.lastClosed.sequence);
    expect(latest.id).toBe(app.ledger.state.lastClosed.hash);
    expect(latest.headerXdr.ledgerSeq).toBe(latest.sequence);
    expect(latest.metadataXdr.type).toBe('v0');
  });

  it('simulate -> sign (multisig vector) -> prepare -> send -> getTransaction', async () => {
    const contract = new Contract(ESCROW);
    const op = contract.call('deposit', addr(owner), i128(70_000_000n));
    const simulated = await server.simulateTransaction(await build(payer, op));
    if (!rpc.Api.isSimulationSuccess(simulated)) throw new Error('simulation failed');
    expect(Number(simulated.minResourceFee)).toBeGreaterThan(0);
    const [entry] = simulated.result!.auth;
    expect(entry!.credentials.type).toBe('sorobanCredentialsAddress');
    const { sequence } = await server.getLatestLedger();
    const signed = signEntry(entry!, sequence + 20, [signers[1]!, signers[2]!]);
    const rebuilt = await build(
      payer,
      Operation.invokeHostFunction({
        func: (op.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp.hostFunction,
        auth: [signed],
      }),
    );
    const prepared = await server.prepareTransaction(rebuilt);
    prepared.sign(payer);
    const sent = await server.sendTransaction(prepared);
    expect(sent.status).toBe('PENDING');
    const got = await server.pollTransaction(sent.hash);
    expect(got.status).toBe(rpc.Api.GetTransactionStatus.SUCCESS);
    if (got.status !== rpc.Api.GetTransactionStatus.SUCCESS) return;
    expect(scValToNative(got.returnValue!)).toBe(70_000_000n);
    expect(got.resultXdr.result.type).toBe('txSuccess');
    // Sending the same bytes again is a duplicate, not a second deposit.
    expect((await server.sendTransaction(prepared)).status).toBe('DUPLICATE');
    expect(app.ledger.state.escrow.get(owner.publicKey())).toBe(70_000_000n);
  });

  it("works with the SDK's own authorizeEntry (single key) and authorizeInvocation (ADDRESS_V2)", async () => {
    const solo = Keypair.random();
    await fund(app, solo);
    const contract = new Contract(ESCROW);
    for (const v2 of [false, true]) {
      const op = contract.call('deposit', addr(solo), i128(5n));
      const simulated = await server.simulateTransaction(await build(payer, op));
      if (!rpc.Api.isSimulationSuccess(simulated)) throw new Error('simulation failed');
      const { sequence } = await server.getLatestLedger();
      const [entry] = simulated.result!.auth;
      const signed = v2
        ? await authorizeInvocation({
            signer: solo,
            validUntilLedgerSeq: sequence + 10,
            invocation: entry!.rootInvocation,
            networkPassphrase: NETWORK,
          })
        : await authorizeEntry(entry!, solo, sequence + 10, NETWORK);
      expect(signed.credentials.type).toBe(v2 ? 'sorobanCredentialsAddressV2' : 'sorobanCredentialsAddress');
      const t = await build(
        payer,
        Operation.invokeHostFunction({
          func: (op.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp.hostFunction,
          auth: [signed],
        }),
      );
      const prepared = await server.prepareTransaction(t);
      prepared.sign(payer);
      const sent = await server.sendTransaction(prepared);
      const got = await server.pollTransaction(sent.hash);
      expect(got.status, `v2=${v2}`).toBe('SUCCESS');
    }
    expect(app.ledger.state.escrow.get(solo.publicKey())).toBe(10n);
  });

  it('reports a failed invocation as FAILED with the reason as a diagnostic event', async () => {
    const contract = new Contract(ESCROW);
    const op = contract.call('deposit', addr(owner), i128(1n));
    const simulated = await server.simulateTransaction(await build(payer, op));
    if (!rpc.Api.isSimulationSuccess(simulated)) throw new Error('simulation failed');
    const { sequence } = await server.getLatestLedger();
    // The simulated entry signed by one key of three: below the medium threshold.
    const one = signEntry(simulated.result!.auth[0]!, sequence + 20, [signers[0]!]);
    const withOne = await build(
      payer,
      Operation.invokeHostFunction({
        func: (op.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp.hostFunction,
        auth: [one],
      }),
    );
    const bad = rpc.assembleTransaction(withOne, simulated).build();
    bad.sign(payer);
    const sent = await server.sendTransaction(bad);
    expect(sent.status).toBe('PENDING');
    const got = await server.getTransaction(sent.hash);
    expect(got.status).toBe('FAILED');
    if (got.status !== rpc.Api.GetTransactionStatus.FAILED) return;
    const res = got.resultXdr.result;
    expect(res.type).toBe('txFailed');
    const events = got.diagnosticEventsXdr ?? [];
    expect(events).toHaveLength(1);
    const body = events[0]!.event.body as xdr.ContractEventBodyV0;
    expect(scValToNative(body.v0.data)).toMatch(/signature weight 1 is lower than the medium threshold 2$/);
  });

  it('reports a refused transaction as ERROR with the result and the reason', async () => {
    const contract = new Contract(ESCROW);
    const op = contract.call('balance', addr(owner));
    const simulated = await server.simulateTransaction(await build(payer, op));
    if (!rpc.Api.isSimulationSuccess(simulated)) throw new Error('simulation failed');
    expect(scValToNative(simulated.result!.retval)).toBe(70_000_000n);
    const data = simulated.transactionData.setResourceFee(1n).build();
    const t = TransactionBuilder.cloneFrom(await build(payer, op), { fee: '101', sorobanData: data }).build();
    t.sign(payer);
    const sent = await server.sendTransaction(t);
    expect(sent.status).toBe('ERROR');
    expect(sent.errorResult?.result.type).toBe('txInsufficientFee');
    const body = sent.diagnosticEvents?.[0]?.event.body as xdr.ContractEventBodyV0;
    expect(scValToNative(body.v0.data)).toMatch(/^fee: resourceFee 1 below the \d+ the declared resources cost$/);
    const missing = await server.getTransaction('00'.repeat(32));
    expect(missing.status).toBe('NOT_FOUND');
  });

  it('serves getLedgerEntries for accounts, escrow balances and consumed nonces (so rpc.Server.getAccount works)', async () => {
    const acct = await server.getAccount(payer.publicKey());
    expect(acct.sequenceNumber()).toBe(app.ledger.state.accounts.get(payer.publicKey())!.seq.toString());
    const entry = await server.getAccountEntry(owner.publicKey());
    expect(entry.signers).toHaveLength(3);
    expect(Buffer.from(entry.thresholds.value)).toEqual(Buffer.from([0, 1, 2, 2]));
    const [nonceIdOf] = [...app.ledger.state.nonces.keys()].filter((k) => k.startsWith(owner.publicKey()));
    const nonce = BigInt(nonceIdOf!.split(' ')[1]!);
    const res = await server.getLedgerEntries(
      escrowBalanceKey(NETWORK, owner.publicKey()),
      nonceKey(owner.publicKey(), nonce),
      escrowBalanceKey(NETWORK, Keypair.random().publicKey()),
    );
    expect(res.entries).toHaveLength(2);
    const [balance, used] = res.entries;
    expect(scValToNative((balance!.val as xdr.LedgerEntryDataContractData).contractData.val)).toBe(70_000_000n);
    expect(used!.liveUntilLedgerSeq).toBe(app.ledger.state.nonces.get(nonceIdOf!));
    expect(((await rpcCall(app, 'getLedgerEntries', { keys: [] })).error as { code: number }).code).toBe(-32602);
    expect(((await rpcCall(app, 'getLedgerEntries', { keys: ['!!'] })).error as { code: number }).code).toBe(-32602);
    await expect(server.getAccount(Keypair.random().publicKey())).rejects.toThrow(/not found/i);
  });

  it('answers simulation errors and JSON-RPC errors', async () => {
    const contract = new Contract(ESCROW);
    const s = await server.simulateTransaction(await build(payer, contract.call('withdraw_all', addr(owner))));
    expect(rpc.Api.isSimulationError(s) && s.error).toBe(
      'escrow: no function withdraw_all (the escrow has deposit, release, balance)',
    );
    const classic = await build(payer, Operation.bumpSequence({ bumpTo: '0' }));
    const s2 = await server.simulateTransaction(classic);
    expect(rpc.Api.isSimulationError(s2) && s2.error).toMatch(/exactly one invokeHostFunction operation/);

    expect((await rpcCall(app, 'getFeeStats')).error).toEqual({
      code: -32601,
      message: 'method not found: getFeeStats',
    });
    expect(((await rpcCall(app, 'sendTransaction', { transaction: 'AAAA' })).error as { code: number }).code).toBe(
      -32602,
    );
    expect(((await rpcCall(app, 'getTransaction', { hash: 'xyz' })).error as { code: number }).code).toBe(-32602);
    expect(((await rpcCall(app, 'getTransaction', {})).error as { code: number }).code).toBe(-32602);
    expect(((await rpcCall(app, 'getHealth', [1])).error as { code: number }).code).toBe(-32602);
    const notRpc = await app.inject({ method: 'POST', url: '/rpc', payload: { method: 'getHealth' } });
    expect(notRpc.json().error.code).toBe(-32600);
    const garbage = await app.inject({
      method: 'POST',
      url: '/rpc',
      headers: { 'content-type': 'application/json' },
      payload: '{not json',
    });
    expect(garbage.statusCode).toBe(200);
    expect(garbage.json().error.code).toBe(-32700);
    const huge = await app.inject({
      method: 'POST',
      url: '/rpc',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'getHealth', params: { pad: 'x'.repeat(300_000) } }),
    });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().error.code).toBe(-32600);
  });
});

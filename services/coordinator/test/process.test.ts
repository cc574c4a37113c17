import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Account, Asset, Horizon, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createHorizonClient } from '../src/horizon.ts';
import { TestNode, waitFor } from './helpers.ts';

/**
 * Whole processes on loopback: the real ledger simulator (Horizon API, core's signature rules) and the real
 * `cosigner coordinator` command, with test-double nodes speaking the protocol over real sockets.
 */
const NETWORK = 'Coordinator Process Test ; 2026';
let sim: RunningProcess;
let server: Horizon.Server;
const procs: RunningProcess[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  sim = await startCosignerProcess({
    args: ['ledger-sim', '--in-memory', '--network', NETWORK, '--close-ms', '100'],
    readyTimeoutMs: 60_000,
  });
  server = new Horizon.Server(sim.url, { allowHttp: true });
});
afterAll(async () => {
  for (const p of procs) await p.stop();
  await sim?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function fund(kp: Keypair): Promise<void> {
  const r = await fetch(`${sim.url}/friendbot?addr=${kp.publicKey()}`);
  expect(r.status).toBe(200);
}

/** A 2-of-3 account: friendbot, then setOptions signed by the master key adds the nodes and drops the master. */
async function multisigAccount(nodeKeys: string[]): Promise<Keypair> {
  const master = Keypair.random();
  await fund(master);
  const acct = await server.loadAccount(master.publicKey());
  const b = new TransactionBuilder(acct, { fee: '100', networkPassphrase: NETWORK });
  for (const k of nodeKeys) b.addOperation(Operation.setOptions({ signer: { ed25519PublicKey: k, weight: 1 } }));
  b.addOperation(Operation.setOptions({ masterWeight: 0, lowThreshold: 2, medThreshold: 2, highThreshold: 2 }));
  const tx = b.setTimeout(60).build();
  tx.sign(master);
  await server.submitTransaction(tx, { skipMemoRequiredCheck: true });
  return master;
}

async function paymentXdr(source: string, dest: string, amount: string): Promise<string> {
  const acct = await server.loadAccount(source);
  return new TransactionBuilder(acct, { fee: '100', networkPassphrase: NETWORK })
    .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount }))
    .setTimeout(120)
    .build()
    .toEnvelope()
    .toXDR('base64');
}

async function startCoordinator(
  dataDir: string,
  configFile: string,
): Promise<{ proc: RunningProcess; key: string; messageKey: Buffer }> {
  const proc = await startCosignerProcess({
    args: ['coordinator', '--config', configFile, '--data-dir', dataDir, '--horizon-url', sim.url],
    // Start-up transpiles every module with tsx: slow on a loaded 2-core machine.
    readyTimeoutMs: 60_000,
  });
  procs.push(proc);
  const key = (await readFile(String(proc.ready.adminKeyFile), 'utf8')).trim();
  return { proc, key, messageKey: Buffer.from(String(proc.ready.messageKey), 'base64') };
}

async function clusterSetup(behaviours: ('approve' | 'silent')[]) {
  const nodes = behaviours.map((b, i) => new TestNode(`node-${i}`, b, { network: NETWORK }));
  const dir = await tempDir('coord-proc-');
  dirs.push(dir);
  const configFile = join(dir, 'coordinator.yaml');
  await writeFile(
    configFile,
    stringify({ network: NETWORK, nodes: nodes.map((n) => n.enrolment()), round: { submitBackoffMs: 50 } }),
  );
  const master = await multisigAccount(nodes.map((n) => n.stellarKey));
  const dest = Keypair.random();
  await fund(dest);
  return { nodes, dir, configFile, master, dest };
}

async function api(
  base: string,
  key: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> & { status: string } }> {
  const res = await fetch(`${base}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> & { status: string } };
}

describe('coordinator process with the ledger simulator', () => {
  it('a 2-of-3 payment: nodes sign, the minimal envelope is submitted and the simulator applies it', async () => {
    const c = await clusterSetup(['approve', 'approve', 'silent']);
    const { proc, key, messageKey } = await startCoordinator(c.dir, c.configFile);
    for (const n of c.nodes) expect(await n.connect(proc.url, messageKey)).toBe('welcome');
    const before = await server.loadAccount(c.dest.publicKey());
    const xdr = await paymentXdr(c.master.publicKey(), c.dest.publicKey(), '12.5');
    const created = await api(proc.url, key, '/v1/proposals', { xdr, submit: true, network: NETWORK });
    expect(created.status).toBe(201);
    const id = String(created.json.id);
    const done = await waitFor(async () => {
      const p = (await api(proc.url, key, `/v1/proposals/${id}`)).json;
      return p.status === 'submitted' || p.status === 'failed' ? p : undefined;
    }, 'submission');
    expect(done.status).toBe('submitted');
    const onLedger = await server.transactions().transaction(String(done.hash)).call();
    expect(onLedger.successful).toBe(true);
    const after = await server.loadAccount(c.dest.publicKey());
    const native = (a: typeof after) => Number(a.balances.find((b) => b.asset_type === 'native')!.balance);
    expect(native(after) - native(before)).toBeCloseTo(12.5, 7);
    for (const n of c.nodes) n.close();
  }, 120_000);

  it('kill -9 mid-round, restart on the same data dir: the proposal completes once, nothing duplicated', async () => {
    const c = await clusterSetup(['approve', 'silent', 'silent']);
    const first = await startCoordinator(c.dir, c.configFile);
    for (const n of c.nodes) await n.connect(first.proc.url, first.messageKey);
    const xdr = await paymentXdr(c.master.publicKey(), c.dest.publicKey(), '3');
    const created = await api(first.proc.url, first.key, '/v1/proposals', {
      xdr,
      submit: true,
      idempotencyKey: 'crash-1',
    });
    const id = String(created.json.id);
    await waitFor(async () => {
      const p = (await api(first.proc.url, first.key, `/v1/proposals/${id}`)).json;
      return (p.signatures as unknown[]).length === 1 ? true : undefined;
    }, 'one signature');
    await first.proc.kill9();
    for (const n of c.nodes) n.close();

    const second = await startCoordinator(c.dir, c.configFile);
    const resumed = await api(second.proc.url, second.key, `/v1/proposals/${id}`);
    expect(resumed.json.status).toBe('pending');
    expect((resumed.json.signatures as unknown[]).length).toBe(1);
    c.nodes[1]!.behaviour = 'approve';
    for (const n of c.nodes) expect(await n.connect(second.proc.url, second.messageKey)).toBe('welcome');
    const done = await waitFor(async () => {
      const p = (await api(second.proc.url, second.key, `/v1/proposals/${id}`)).json;
      return p.status === 'submitted' || p.status === 'failed' ? p : undefined;
    }, 'submission after restart');
    expect(done.status).toBe('submitted');
    expect((done.signatures as { nodeId: string }[]).map((s) => s.nodeId).sort()).toEqual(['node-0', 'node-1']);
    const again = await api(second.proc.url, second.key, '/v1/proposals', {
      xdr,
      submit: true,
      idempotencyKey: 'crash-1',
    });
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(id);
    const list = await api(second.proc.url, second.key, '/v1/proposals');
    expect((list.json.items as unknown[]).length).toBe(1);
    const txs = await server.transactions().forAccount(c.master.publicKey()).call();
    expect(txs.records.filter((t) => t.hash === done.hash)).toHaveLength(1);
    for (const n of c.nodes) n.close();
  }, 120_000);
});

describe('Horizon client against the simulator', () => {
  it('loads signers and thresholds, submits, looks hashes up, and reports a dead endpoint', async () => {
    const nodeKeys = [Keypair.random().publicKey(), Keypair.random().publicKey(), Keypair.random().publicKey()];
    const master = await multisigAccount(nodeKeys);
    const client = createHorizonClient(sim.url);
    const a = await client.loadAccount(master.publicKey());
    expect(a).toMatchObject({
      accountId: master.publicKey(),
      masterWeight: 0,
      thresholds: { low: 2, medium: 2, high: 2 },
    });
    expect(a.signers.map((x) => x.key).sort()).toEqual([...nodeKeys].sort());
    await expect(client.loadAccount(Keypair.random().publicKey())).rejects.toMatchObject({
      code: 'COORD_ACCOUNT_NOT_FOUND',
    });
    expect(await client.reachable()).toBe(true);
    const latest = await client.latestLedger();
    expect(latest).toBeGreaterThan(0);
    const root = (await (await fetch(sim.url)).json()) as { history_latest_ledger: number };
    expect(root.history_latest_ledger).toBeGreaterThanOrEqual(latest!);

    // A plain account pays with its own master key: accepted, then found by hash.
    const payer = Keypair.random();
    await fund(payer);
    const acct = await server.loadAccount(payer.publicKey());
    const tx = new TransactionBuilder(acct, { fee: '100', networkPassphrase: NETWORK })
      .addOperation(Operation.payment({ destination: master.publicKey(), asset: Asset.native(), amount: '1' }))
      .setTimeout(60)
      .build();
    tx.sign(payer);
    const xdr = tx.toEnvelope().toXDR('base64');
    expect(await client.submit(xdr, NETWORK)).toMatchObject({ kind: 'accepted' });
    expect(await client.transactionStatus(Buffer.from(tx.hash()).toString('hex'))).toBe('success');
    expect(await client.transactionStatus('00'.repeat(32))).toBe('missing');
    // The same bytes again: Horizon answers with the applied transaction (resubmission is idempotent).
    expect(await client.submit(xdr, NETWORK)).toMatchObject({ kind: 'accepted' });
    // Another transaction for the used sequence: a final refusal with core's code.
    const stale = new TransactionBuilder(
      new Account(payer.publicKey(), (BigInt(acct.sequenceNumber()) - 1n).toString()),
      { fee: '100', networkPassphrase: NETWORK },
    )
      .addOperation(Operation.payment({ destination: master.publicKey(), asset: Asset.native(), amount: '2' }))
      .setTimeout(60)
      .build();
    stale.sign(payer);
    expect(await client.submit(stale.toEnvelope().toXDR('base64'), NETWORK)).toMatchObject({
      kind: 'rejected',
      code: 'tx_bad_seq',
    });
    // An unsigned multisig payment: bad auth.
    const unsigned = await paymentXdr(master.publicKey(), payer.publicKey(), '1');
    expect(await client.submit(unsigned, NETWORK)).toMatchObject({ kind: 'rejected', code: 'tx_bad_auth' });

    const dead = createHorizonClient('http://127.0.0.1:1');
    expect(await dead.reachable()).toBe(false);
    expect(await dead.latestLedger()).toBeNull();
    // Something that answers, but not as Horizon: no ledger number rather than a guess.
    expect(await createHorizonClient(`${sim.url}/no-such-path`).latestLedger()).toBeNull();
    expect(await createHorizonClient(`${sim.url}/ledgers?limit=1`).latestLedger()).toBeNull();
    await expect(dead.loadAccount(master.publicKey())).rejects.toMatchObject({ code: 'COORD_HORIZON_UNAVAILABLE' });
    expect(await dead.submit(xdr, NETWORK)).toMatchObject({ kind: 'transient' });
    expect(await dead.transactionStatus('00'.repeat(32))).toBe('unknown');
  }, 60_000);
});

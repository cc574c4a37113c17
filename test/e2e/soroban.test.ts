import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { type Cluster, type ProposalView, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import { authEntry } from '@cosigner/testkit/soroban';
import { Address, Keypair, nativeToScVal, Operation, rpc, StrKey, TransactionBuilder, xdr } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Issue 7 end to end, real processes only (KMS emulators, ledger simulator with its built-in escrow contract and
 * JSON-RPC, coordinator, three nodes): a 2-of-3 operator account authorizes escrow deposits through the cluster.
 * A relayer (a plain funded account whose key the test holds) is the transaction source, so simulation returns
 * ADDRESS entries for the operator account, which only the cluster can sign.
 */

/** The simulator's escrow id, as its README documents it (tests never import a service's src). */
function escrowId(passphrase: string): string {
  return StrKey.encodeContract(
    createHash('sha256').update(`cosigner/ledger-sim/escrow/v1:${passphrase}`, 'utf8').digest(),
  );
}

const WINDOW = 2000;
const XLM = 10_000_000n;

describe('Soroban authorization through a 2-of-3 cluster', () => {
  let dir: string;
  let cluster: Cluster;
  let server: rpc.Server;
  let escrow: string;
  const relayer = Keypair.random();

  async function rpcCall(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    const res = await fetch(`${cluster.horizonUrl}/rpc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    });
    return ((await res.json()) as { result: Record<string, unknown> }).result;
  }

  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: ProposalView }> {
    const res = await fetch(`${cluster.coordinator.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${cluster.apiKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json()) as ProposalView };
  }

  /** The proposal once it left `pending` (or, with `submitting`, once it also left `signed`). */
  async function settled(id: string, submitting = false): Promise<ProposalView> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const p = (await api('GET', `/v1/proposals/${id}`)).body;
      if (p.status !== 'pending' && !(submitting && p.status === 'signed')) return p;
      if (Date.now() > deadline) throw new Error(`proposal ${id} still pending`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A simulated deposit by the operator account, relayed: the tx and its unsigned ADDRESS entries. */
  async function simulateDeposit(amount: bigint, expirationAhead: number) {
    const source = await server.getAccount(relayer.publicKey());
    const tx = new TransactionBuilder(source, { fee: '1000', networkPassphrase: cluster.networkPassphrase })
      .addOperation(
        Operation.invokeContractFunction({
          contract: escrow,
          function: 'deposit',
          args: [new Address(cluster.account.id).toScVal(), nativeToScVal(amount, { type: 'i128' })],
        }),
      )
      .setTimeout(120)
      .build();
    const sim = await server.simulateTransaction(tx);
    if (!rpc.Api.isSimulationSuccess(sim)) throw new Error(`simulation failed: ${JSON.stringify(sim)}`);
    const latest = (await server.getLatestLedger()).sequence;
    const assembled = rpc.assembleTransaction(tx, sim).build();
    const env = xdr.TransactionEnvelope.fromXdr(
      assembled.toEnvelope().toXdr('base64'),
      'base64',
    ) as xdr.TransactionEnvelopeTx;
    const entries = opAuth(env).map((e) => {
      const c = e.credentials as xdr.SorobanCredentialsAddress;
      return new xdr.SorobanAuthorizationEntry({
        credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
          new xdr.SorobanAddressCredentials({
            address: c.address.address,
            nonce: c.address.nonce,
            signatureExpirationLedger: latest + expirationAhead,
            signature: xdr.ScVal.scvVoid(),
          }),
        ),
        rootInvocation: e.rootInvocation,
      });
    });
    expect(entries).toHaveLength(1);
    return { txXdr: withAuth(env, entries), entries };
  }

  function opAuth(env: xdr.TransactionEnvelopeTx): xdr.SorobanAuthorizationEntry[] {
    return (env.v1.tx.operations[0]!.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp.auth;
  }

  /** The same transaction, unsigned, with other auth entries and/or another sequence number. */
  function withAuth(
    envOrXdr: xdr.TransactionEnvelopeTx | string,
    authOrKeep: xdr.SorobanAuthorizationEntry[] | null,
    seq?: bigint,
  ): string {
    const env =
      typeof envOrXdr === 'string'
        ? (xdr.TransactionEnvelope.fromXdr(envOrXdr, 'base64') as xdr.TransactionEnvelopeTx)
        : envOrXdr;
    const t = env.v1.tx;
    const op = t.operations[0]!;
    const ihf = (op.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp;
    const auth = authOrKeep ?? ihf.auth;
    const tx = new xdr.Transaction({
      sourceAccount: t.sourceAccount,
      fee: t.fee,
      seqNum: seq ?? t.seqNum,
      cond: t.cond,
      memo: t.memo,
      operations: [
        new xdr.Operation({
          sourceAccount: op.sourceAccount,
          body: xdr.OperationBody.invokeHostFunction(
            new xdr.InvokeHostFunctionOp({ hostFunction: ihf.hostFunction, auth }),
          ),
        }),
      ],
      ext: t.ext,
    });
    return xdr.TransactionEnvelope.envelopeTypeTx(new xdr.TransactionV1Envelope({ tx, signatures: [] })).toXdr(
      'base64',
    );
  }

  /**
   * The relayer signs and sends, at its next sequence number (a transaction failing at apply time consumes its
   * sequence, so each attempt needs a fresh one); answers the simulator's verdict.
   */
  async function relay(txXdr: string): Promise<{ status: string; diagnostic?: string }> {
    const next = BigInt((await server.getAccount(relayer.publicKey())).sequenceNumber()) + 1n;
    const tx = TransactionBuilder.fromXDR(withAuth(txXdr, null, next), cluster.networkPassphrase);
    tx.sign(relayer);
    const sent = await rpcCall('sendTransaction', { transaction: tx.toEnvelope().toXdr('base64') });
    if (sent.status !== 'PENDING') return { status: String(sent.status), diagnostic: String(sent.diagnostic ?? '') };
    const got = await rpcCall('getTransaction', { hash: sent.hash });
    return {
      status: String(got.status),
      diagnostic: got.diagnostic === undefined ? undefined : String(got.diagnostic),
    };
  }

  /** A copy of a signed entry carrying another signature value (the test's tampering). */
  function withSignature(e: xdr.SorobanAuthorizationEntry, signature: xdr.ScVal): xdr.SorobanAuthorizationEntry {
    const c = (e.credentials as xdr.SorobanCredentialsAddress).address;
    return new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
        new xdr.SorobanAddressCredentials({
          address: c.address,
          nonce: c.nonce,
          signatureExpirationLedger: c.signatureExpirationLedger,
          signature,
        }),
      ),
      rootInvocation: e.rootInvocation,
    });
  }

  function signatureVec(e: xdr.SorobanAuthorizationEntry): xdr.ScVal[] {
    const sig = (e.credentials as xdr.SorobanCredentialsAddress).address.signature;
    return (sig as unknown as { vec: xdr.ScVal[] | null }).vec ?? [];
  }

  beforeAll(async () => {
    dir = await tempDir('cosigner-e2e-soroban-');
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      nodes: 3,
      threshold: 2,
      nodePolicy: async ({ network, horizonUrl, accounts }) => {
        const res = await fetch(`${horizonUrl}/rpc`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'getLatestLedger', params: {} }),
        });
        const latest = ((await res.json()) as { result: { sequence: number; closeTime: string } }).result;
        const id = escrowId(network);
        // JSON is YAML: the policy loader reads it as is.
        return JSON.stringify(
          {
            version: 1,
            network,
            accounts,
            assets: [{ asset: 'native', maxPerTx: '1000', velocity: [{ window: '24h', max: '1000000' }] }],
            validity: { maxWindowSeconds: 300 },
            operations: ['payment', 'invokeHostFunction'],
            contracts: [
              {
                id,
                functions: [
                  { name: 'deposit', token: { asset: 'native', from: 0, to: 0, amount: 1 }, maxAmount: '500' },
                  { name: 'release', token: { asset: 'native', from: 0, to: 1, amount: 2 }, maxAmount: '500' },
                ],
              },
            ],
            soroban: {
              maxAuthExpirationLedgers: WINDOW,
              maxResourceFee: '10000000',
              maxFootprintEntries: 20,
              // The simulator closes a ledger every 200 ms; assuming 1 s keeps the node's estimate a lower bound
              // even when this busy machine delays closes.
              ledgerClock: { ledger: latest.sequence, closedAt: Number(latest.closeTime), maxCloseSeconds: 1 },
            },
          },
          null,
          2,
        );
      },
    });
    server = new rpc.Server(`${cluster.horizonUrl}/rpc`, { allowHttp: true });
    escrow = escrowId(cluster.networkPassphrase);
    const fb = await fetch(`${cluster.horizonUrl}/friendbot?addr=${relayer.publicKey()}`);
    expect(fb.status).toBe(200);
  }, 240_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('signs the entries of a relayed deposit; the simulator accepts it; the same entries again hit the used nonce', async () => {
    const { txXdr } = await simulateDeposit(10n * XLM, 100);
    const created = await api('POST', '/v1/proposals', { xdr: txXdr });
    expect(created.status).toBe(201);
    expect(created.body.kind).toBe('sorobanTx');
    const done = await settled(created.body.id);
    expect(done.status).toBe('signed');
    expect(done.transactionProposal).toBeNull();
    const signedEnv = xdr.TransactionEnvelope.fromXdr(done.envelope as string, 'base64') as xdr.TransactionEnvelopeTx;
    const entry = opAuth(signedEnv)[0]!;
    const vec = signatureVec(entry);
    expect(vec).toHaveLength(2);
    expect((await relay(done.envelope as string)).status).toBe('SUCCESS');
    const balance = await server.getAccount(cluster.account.id);
    expect(balance.accountId()).toBe(cluster.account.id);

    // The very same signed transaction again, at the relayer's next sequence number: the nonce is spent.
    const reused = await relay(done.envelope as string);
    expect(reused.status).not.toBe('SUCCESS');
    expect(reused.diagnostic).toMatch(/nonce \d+ already used/);
  });

  it('a deposit sourced by the operator account itself (SOURCE_ACCOUNT credentials) is signed and submitted by the cluster', async () => {
    const source = await server.getAccount(cluster.account.id);
    const tx = new TransactionBuilder(source, { fee: '1000', networkPassphrase: cluster.networkPassphrase })
      .addOperation(
        Operation.invokeContractFunction({
          contract: escrow,
          function: 'deposit',
          args: [new Address(cluster.account.id).toScVal(), nativeToScVal(2n * XLM, { type: 'i128' })],
        }),
      )
      .setTimeout(120)
      .build();
    const sim = await server.simulateTransaction(tx);
    if (!rpc.Api.isSimulationSuccess(sim)) throw new Error(`simulation failed: ${JSON.stringify(sim)}`);
    const assembled = rpc.assembleTransaction(tx, sim).build();
    const created = await api('POST', '/v1/proposals', {
      xdr: assembled.toEnvelope().toXdr('base64'),
      submit: true,
    });
    expect(created.status).toBe(201);
    expect(created.body.kind).toBe('transaction');
    const done = await settled(created.body.id, true);
    expect(done.status, JSON.stringify(done.statusReason)).toBe('submitted');
    const got = await rpcCall('getTransaction', { hash: done.hash });
    expect(got.status).toBe('SUCCESS');
  });

  it('a standalone proposal returns signed entries the simulator accepts; reversed order and one signature are refused', async () => {
    const { txXdr, entries } = await simulateDeposit(5n * XLM, 200);
    const created = await api('POST', '/v1/proposals', {
      kind: 'authEntries',
      network: cluster.networkPassphrase,
      account: cluster.account.id,
      entries: entries.map((e) => e.toXdr('base64')),
    });
    expect(created.status).toBe(201);
    const done = await settled(created.body.id);
    expect(done.status).toBe('signed');
    const signed = xdr.SorobanAuthorizationEntry.fromXdr((done.authEntries as string[])[0]!, 'base64');
    const vec = signatureVec(signed);
    expect(vec).toHaveLength(2);

    const reversed = withSignature(signed, xdr.ScVal.scvVec([...vec].reverse()));
    const r1 = await relay(withAuth(txXdr, [reversed]));
    expect(r1.status).not.toBe('SUCCESS');
    expect(r1.diagnostic).toMatch(/public keys are not ordered/);

    const single = withSignature(signed, xdr.ScVal.scvVec([vec[0]!]));
    const r2 = await relay(withAuth(txXdr, [single]));
    expect(r2.status).not.toBe('SUCCESS');
    expect(r2.diagnostic).toMatch(/signature weight 1 is lower than the medium threshold 2/);

    const ok = await relay(withAuth(txXdr, [signed]));
    expect(ok).toMatchObject({ status: 'SUCCESS' });
  });

  it('an entry that expired before it was submitted is refused by the simulator', async () => {
    const { txXdr, entries } = await simulateDeposit(1n * XLM, 3);
    const created = await api('POST', '/v1/proposals', { kind: 'authEntries', entries: [entries[0]!.toXdr('base64')] });
    const done = await settled(created.body.id);
    expect(done.status).toBe('signed');
    const signed = xdr.SorobanAuthorizationEntry.fromXdr((done.authEntries as string[])[0]!, 'base64');
    const exp = (signed.credentials as xdr.SorobanCredentialsAddress).address.signatureExpirationLedger;
    while ((await server.getLatestLedger()).sequence <= exp) await new Promise((r) => setTimeout(r, 200));
    const r = await relay(withAuth(txXdr, [signed]));
    expect(r.status).not.toBe('SUCCESS');
    expect(r.diagnostic).toMatch(/entry expired at ledger/);
  });

  it('nodes refuse an entry for a contract or function outside their policy, and one expiring beyond their window', async () => {
    const latest = (await server.getLatestLedger()).sequence;
    const base = {
      address: cluster.account.id,
      args: [{ address: cluster.account.id }, { i128: XLM }],
      expiration: latest + 50,
    };
    const cases: [ReturnType<typeof authEntry>, string][] = [
      [
        authEntry({ ...base, contract: StrKey.encodeContract(Buffer.alloc(32, 5)), fn: 'deposit', nonce: 91n }),
        'CONTRACT_NOT_ALLOWED',
      ],
      [authEntry({ ...base, contract: escrow, fn: 'withdraw_all', nonce: 92n }), 'FUNCTION_NOT_ALLOWED'],
      [
        authEntry({ ...base, contract: escrow, fn: 'deposit', nonce: 93n, expiration: latest + 100_000 }),
        'AUTH_EXPIRATION_TOO_FAR',
      ],
    ];
    for (const [e, code] of cases) {
      const created = await api('POST', '/v1/proposals', { kind: 'authEntries', entries: [e.toXdr('base64')] });
      expect(created.status, code).toBe(201);
      const done = await settled(created.body.id);
      expect(done.status, code).toBe('rejected');
      const rejections = done.rejections as { reasons: { code: string }[] }[];
      expect(rejections.length, code).toBeGreaterThanOrEqual(2);
      for (const r of rejections)
        expect(
          r.reasons.map((x) => x.code),
          code,
        ).toContain(code);
    }
  });

  it('the coordinator refuses entries that expired 1 and 5 ledgers ago instead of returning them signed', async () => {
    const latest = (await server.getLatestLedger()).sequence;
    for (const [ago, nonce] of [
      [1, 95n],
      [5, 96n],
    ] as const) {
      const e = authEntry({
        address: cluster.account.id,
        args: [{ address: cluster.account.id }, { i128: XLM }],
        contract: escrow,
        fn: 'deposit',
        nonce,
        expiration: latest - ago,
      });
      const created = await api('POST', '/v1/proposals', { kind: 'authEntries', entries: [e.toXdr('base64')] });
      expect(created.status, `${ago}`).toBe(422);
      expect(created.body).toMatchObject({
        code: 'COORD_SOROBAN_ENTRY_EXPIRED',
        details: { entry: 0, signatureExpirationLedger: latest - ago },
      });
    }
  });
});

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Cluster, demoPolicyYaml, nodeSocketUrl, startCluster, waitForNodes } from '@cosigner/launcher/cluster';
import { type PostgresServer, startPostgres } from '@cosigner/testkit/postgres';
import {
  COSIGNER_BIN,
  type RunningProcess,
  runCosigner,
  startCosignerProcess,
  tempDir,
} from '@cosigner/testkit/process';
import { Asset, Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * FROST across two coordinator replicas on one real PostgreSQL (docs/architecture.md "Where FROST records live"):
 * the testkit cluster (KMS emulators, the ledger simulator, three real node processes) with coordinator A on
 * PostgreSQL, and coordinator B started from the same config with its own data directory; every node holds a
 * session with both (`coordinator.urls`). The key generation is asked of A; B knows the group at once (the FROST
 * records are in the shared store), `cosigner account setup --frost-group` checks the group at B, and a payment
 * proposed through B is signed by the group (the round driven by B) and applied by the ledger simulator. Then a
 * FROST round A opened while too few members were up is taken over by B after A is killed: B finds its group in
 * the shared store and the payment is applied.
 */

const LEASE_MS = 2000;

describe('FROST through two coordinator replicas on PostgreSQL', () => {
  let dir: string;
  let db: PostgresServer;
  let cluster: Cluster;
  let b: RunningProcess | undefined;
  let bKey = '';
  let bKeyFile = '';
  let address = '';
  /** Node processes this file started itself (the last test), stopped before the cluster. */
  const restarted: RunningProcess[] = [];
  const frostAccount = Keypair.random();

  /** One API call to replica `base`, backing off on 429 as a client should. */
  const api = async (base: string, key: string, method: string, path: string, body?: unknown) => {
    for (;;) {
      const r = await fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = (await r.json()) as Record<string, unknown>;
      if (r.status !== 429) return { status: r.status, body: json };
      await new Promise((res) => setTimeout(res, 500));
    }
  };
  const onA = (method: string, path: string, body?: unknown) =>
    api(cluster.coordinator.url, cluster.apiKey, method, path, body);
  const onB = (method: string, path: string, body?: unknown) => api(b!.url, bKey, method, path, body);

  const eventually = async <T>(get: () => Promise<T | undefined>, what: string, ms: number): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await get();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-replicas-');
    db = await startPostgres();
    const database = await db.createDatabase('frost_replicas');
    const passwordFile = join(dir, 'db.password');
    await writeFile(passwordFile, `${db.password}\n`, { mode: 0o600 });
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      nodes: 3,
      threshold: 2,
      readyTimeoutMs: 300_000,
      coordinatorConfig: {
        store: { type: 'postgres', url: database, passwordFile, tls: { mode: 'disable' }, leaseMs: LEASE_MS },
      },
      nodeConfig: { limits: { reconnectMaxMs: 1000 } },
      nodePolicy: ({ network, accounts }) =>
        demoPolicyYaml({ network, account: accounts[0]!, maxXlm: '1000', extraAccounts: [frostAccount.publicKey()] }),
      // Shares sealed by a local key file in each node's directory (development mode): the sealer is not under test.
      nodeConfigOf: ({ index, nodes }) => ({
        frost: {
          sealer: { type: 'local', keyFile: join(dir, `node-${index}`, 'frost-seal.key') },
          expect: [{ threshold: 2, participants: nodes.map((x) => ({ nodeId: x.id, identityKey: x.identityKey })) }],
        },
      }),
      // Once A runs on PostgreSQL and its config is written: B from the same config, its own data directory.
      nodeCoordinatorUrl: async (_nodeId, socketUrl) => {
        if (!b) {
          const dataDir = join(dir, 'coordinator-b');
          await mkdir(dataDir, { recursive: true, mode: 0o700 });
          b = await startCosignerProcess({
            args: ['coordinator', '--config', join(dir, 'coordinator', 'coordinator.yaml'), '--data-dir', dataDir],
            readyTimeoutMs: 120_000,
          });
          bKeyFile = String(b.ready.adminKeyFile);
          bKey = (await readFile(bKeyFile, 'utf8')).trim();
        }
        return [socketUrl, nodeSocketUrl(b.url)];
      },
    });
    await waitForNodes(
      b!.url,
      bKey,
      cluster.nodeInfo.map((x) => x.id),
      120_000,
    );
  }, 420_000);

  afterAll(async () => {
    for (const p of restarted) await p.stop();
    await b?.stop();
    await cluster?.stop();
    await db?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('a group made through replica A is known to replica B at once', async () => {
    const ids = cluster.nodeInfo.map((x) => x.id);
    const started = await onA('POST', '/v1/frost/groups', { participants: ids, threshold: 2 });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const id = String(started.body.id);
    // B reads the same record while A relays it (running, fresh: B leaves it to A).
    const seen = await onB('GET', `/v1/frost/groups/${id}`);
    expect(seen.status).toBe(200);
    const g = await eventually(
      async () => {
        const v = (await onA('GET', `/v1/frost/groups/${id}`)).body as { status: string; address: string | null };
        return v.status === 'running' ? undefined : v;
      },
      'the key generation through A',
      180_000,
    );
    expect(g, JSON.stringify(g)).toMatchObject({ status: 'ready' });
    address = g.address!;
    const fromB = await onB('GET', `/v1/frost/groups/${address}`);
    expect(fromB.status).toBe(200);
    expect(fromB.body).toMatchObject({ id, status: 'ready', address });
    expect(((await onB('GET', '/v1/frost/groups')).body.groups as { id: string }[]).map((x) => x.id)).toContain(id);
  }, 240_000);

  it('a FROST payment proposed through replica B is signed by the group and applied by the ledger', async () => {
    expect(address).not.toBe('');
    // The account: the group key its only signer (weight 2, thresholds 2, master 0), set up against replica B,
    // which checks the group is ready there first.
    await fetch(`${cluster.horizonUrl}/friendbot?addr=${frostAccount.publicKey()}`);
    const masterFile = join(dir, 'frost-account.secret');
    await writeFile(masterFile, frostAccount.secret(), { mode: 0o600 });
    const setup = await runCosigner([
      'account',
      'setup',
      '--horizon-url',
      cluster.horizonUrl,
      '--coordinator-url',
      b!.url,
      '--api-key-file',
      bKeyFile,
      '--account',
      frostAccount.publicKey(),
      '--frost-group',
      `${address}:2`,
      '--low',
      '2',
      '--med',
      '2',
      '--high',
      '2',
      '--master-key-file',
      masterFile,
    ]);
    expect(setup.code, setup.out).toBe(0);
    const dest = (await cluster.fundedAccount()).publicKey();
    const before = BigInt((await cluster.nativeBalance(dest)).replace('.', ''));
    const source = await cluster.horizon.loadAccount(frostAccount.publicKey());
    const xdr = new TransactionBuilder(source, { fee: '100', networkPassphrase: cluster.networkPassphrase })
      .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount: '25' }))
      .setTimeout(120)
      .build()
      .toXDR();
    const posted = await onB('POST', '/v1/proposals', { xdr, submit: true, group: address });
    expect(posted.status, JSON.stringify(posted.body)).toBe(201);
    expect(posted.body).toMatchObject({ kind: 'frostTx' });
    const id = String(posted.body.id);
    const done = await eventually(
      async () => {
        const p = (await onB('GET', `/v1/proposals/${id}`)).body as { status: string; envelope: string | null };
        return p.status === 'pending' || p.status === 'signed' ? undefined : p;
      },
      'the FROST proposal through B',
      120_000,
    );
    expect(done, JSON.stringify(done)).toMatchObject({ status: 'submitted' });
    // One signature, the group key's; the ledger applied the payment; A reads the same outcome.
    const env = TransactionBuilder.fromXDR(done.envelope!, cluster.networkPassphrase);
    expect(env.signatures).toHaveLength(1);
    const sig = env.signatures[0] as unknown as { hint: { value: Uint8Array } };
    expect(Buffer.from(sig.hint.value).equals(StrKey.decodeEd25519PublicKey(address).subarray(28))).toBe(true);
    expect(BigInt((await cluster.nativeBalance(dest)).replace('.', '')) - before).toBe(250_000_000n);
    expect((await onA('GET', `/v1/proposals/${id}`)).body).toMatchObject({ status: 'submitted', kind: 'frostTx' });
  }, 240_000);

  it('a FROST round replica A opened is taken over by replica B after A is killed (SIGKILL), and pays', async () => {
    expect(address).not.toBe('');
    const dest = (await cluster.fundedAccount()).publicKey();
    const before = BigInt((await cluster.nativeBalance(dest)).replace('.', ''));
    // Two of the three members down: A opens the round but cannot run it (t = 2).
    await cluster.kill9Node(1);
    await cluster.kill9Node(2);
    const source = await cluster.horizon.loadAccount(frostAccount.publicKey());
    const xdr = new TransactionBuilder(source, { fee: '100', networkPassphrase: cluster.networkPassphrase })
      .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount: '7' }))
      .setTimeout(180)
      .build()
      .toXDR();
    const posted = await onA('POST', '/v1/proposals', { xdr, submit: true, group: address });
    expect(posted.status, JSON.stringify(posted.body)).toBe(201);
    const id = String(posted.body.id);
    expect((await onB('GET', `/v1/proposals/${id}`)).body).toMatchObject({ status: 'pending', kind: 'frostTx' });
    // A dies holding the round; the members come back with the same config and data (their sessions to A fail,
    // those to B come up). Started here, not by the launcher, whose restart waits for them at A.
    await cluster.stopService('coordinator', 'kill');
    for (const i of [1, 2]) {
      restarted.push(
        await startCosignerProcess({
          args: ['node', '--config', cluster.nodeInfo[i]!.configFile],
          env: { NODE_ENV: 'development' },
          readyTimeoutMs: 120_000,
        }),
      );
    }
    await waitForNodes(b!.url, bKey, [cluster.nodeInfo[1]!.id, cluster.nodeInfo[2]!.id], 120_000);
    const done = await eventually(
      async () => {
        const p = (await onB('GET', `/v1/proposals/${id}`)).body as { status: string; envelope: string | null };
        return p.status === 'pending' || p.status === 'signed' ? undefined : p;
      },
      'the FROST round taken over by B',
      120_000,
    );
    expect(done, JSON.stringify(done)).toMatchObject({ status: 'submitted' });
    expect(BigInt((await cluster.nativeBalance(dest)).replace('.', '')) - before).toBe(70_000_000n);
    const events = (await onB('GET', `/v1/proposals/${id}/events`)).body.events as { type: string }[];
    expect(events.map((e) => e.type)).toContain('proposal.submitted');
  }, 240_000);
});

import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DescribeKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { signerChangePolicy } from '@cosigner/testkit/policy';
import { COSIGNER_BIN, clusterFlags, runCosigner, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinatorEvents } from './helpers.ts';

/**
 * Operator lifecycle end to end, real processes only: the launcher's 2-of-3 cluster (3 KMS emulators,
 * ledger simulator, coordinator, 3 nodes), the nodes' policy opened to signer changes on the cluster's accounts
 * for keys on their own roster, and every lifecycle change run as `cosigner <command>` child processes exactly as
 * an operator would. Account A is the operator account the launcher set up; account B is set up here by
 * `cosigner account setup` and carries the payment stream while A's sequence carries the rotation.
 */

const cosigner = runCosigner;

interface KmsAccountsFile {
  accounts: {
    region: string;
    principals: { role: string; accessKeyId: string; secretAccessKey: string }[];
  }[];
}

async function kmsAdmin(c: Cluster, i: number) {
  const file = String(c.kms[i]!.ready.accountsFile);
  const acct = (JSON.parse(await readFile(file, 'utf8')) as KmsAccountsFile).accounts[0]!;
  const admin = acct.principals.find((p) => p.role === 'admin')!;
  return {
    region: acct.region,
    endpoint: c.kms[i]!.url,
    env: {
      AWS_ACCESS_KEY_ID: admin.accessKeyId,
      AWS_SECRET_ACCESS_KEY: admin.secretAccessKey,
      AWS_REGION: acct.region,
    },
  };
}

async function signers(c: Cluster, account: string): Promise<Record<string, number>> {
  const a = await c.horizon.loadAccount(account);
  return Object.fromEntries(a.signers.map((s) => [s.key, s.weight]));
}

async function post(url: string, body: unknown): Promise<void> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`POST ${url}: ${r.status} ${await r.text()}`);
}

describe('operator lifecycle on a cluster of real processes', () => {
  let dir: string;
  let cluster: Cluster;
  let b: Keypair;
  let target: string[];

  beforeAll(async () => {
    dir = await tempDir('cosigner-lifecycle-');
    cluster = await startCluster({ cosignerBin: COSIGNER_BIN, dir, nodes: 3, threshold: 2 });
    b = await cluster.fundedAccount();
    // Each operator opens their node to signer changes on the cluster's two accounts, for keys on its roster.
    await writeFile(
      join(dir, 'policy.yaml'),
      signerChangePolicy({ network: cluster.networkPassphrase, accounts: [cluster.account.id, b.publicKey()] }),
      { mode: 0o600 },
    );
    for (let i = 0; i < 3; i++) {
      await cluster.restartNode(i);
      for (const x of cluster.nodeInfo) {
        await post(`${cluster.nodes[i]!.url}/v1/roster`, { address: x.stellarKey, nodeId: x.id, by: 'e2e' });
      }
    }
    target = clusterFlags(cluster);
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  const signerFlags = (): string[] => cluster.nodeInfo.flatMap((x) => ['--signer', `${x.id}=${x.stellarKey}:1`]);

  it('account setup: refuses lock-out and single-node control naming the field, then sets up B in one transaction', async () => {
    const masterFile = join(dir, 'b-master.secret');
    await writeFile(masterFile, `${b.secret()}\n`, { mode: 0o600 });
    const setup = (t: [string, string, string]) =>
      cosigner([
        'account',
        'setup',
        ...target,
        '--account',
        b.publicKey(),
        ...signerFlags(),
        '--low',
        t[0],
        '--med',
        t[1],
        '--high',
        t[2],
        '--master-key-file',
        masterFile,
      ]);
    const single = await setup(['1', '2', '2']);
    expect(single.code, single.out).toBe(1);
    expect(single.out).toMatch(/LOCKOUT_SINGLE_PARTY thresholds\.low: node node-0 alone \(weight 1\)/);
    const locked = await setup(['2', '2', '4']);
    expect(locked.code, locked.out).toBe(1);
    expect(locked.out).toMatch(/LOCKOUT_UNREACHABLE thresholds\.high: .*signer and threshold changes need HIGH/);
    expect((await signers(cluster, b.publicKey()))[b.publicKey()]).toBe(1);

    const ok = await setup(['2', '2', '2']);
    expect(ok.out).toMatch(/now multisig, master weight 0/);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).not.toContain(b.secret());
    const after = await signers(cluster, b.publicKey());
    // Master weight 0 removes the master key: Horizon leaves it out of signers (AccountEntry.SignerSummary).
    expect(after[b.publicKey()]).toBeUndefined();
    for (const x of cluster.nodeInfo) expect(after[x.stellarKey]).toBe(1);
    const acct = await cluster.horizon.loadAccount(b.publicKey());
    expect(acct.thresholds).toMatchObject({ low_threshold: 2, med_threshold: 2, high_threshold: 2 });
  }, 120_000);

  it('thresholds set refuses single-node control; node add/remove go through the quorum and the rosters', async () => {
    const a = cluster.account.id;
    const one = await cosigner(['thresholds', 'set', ...target, '--account', a, '--med', '1']);
    expect(one.code, one.out).toBe(1);
    expect(one.out).toMatch(/LOCKOUT_SINGLE_PARTY thresholds\.med/);

    const fourth = Keypair.random().publicKey();
    const addFourth = ['node', 'add', ...target, '--account', a, '--node-id', 'node-3', '--stellar-key', fourth];
    // 2-of-3 plus a fourth node is 2-of-4: two disjoint pairs of nodes each reach the thresholds. Refused by the
    // CLI before anything is proposed, unless the operator passes the explicit flag.
    const disjoint = await cosigner(addFourth);
    expect(disjoint.code, disjoint.out).toBe(1);
    expect(disjoint.out).toMatch(/LIFECYCLE_DISJOINT_QUORUMS thresholds\.low 2: [\s\S]*--allow-disjoint-quorums/);
    // Not on any roster: the nodes refuse to sign it, with their reasons.
    const refused = await cosigner([...addFourth, '--allow-disjoint-quorums']);
    expect(refused.code, refused.out).toBe(1);
    expect(refused.out).toMatch(/rejected[\s\S]*SIGNER_KEY_NOT_ALLOWED/);
    expect((await signers(cluster, a))[fourth]).toBeUndefined();

    for (const n of cluster.nodes) await post(`${n.url}/v1/roster`, { address: fourth, nodeId: 'node-3', by: 'e2e' });
    const added = await cosigner([...addFourth, '--allow-disjoint-quorums']);
    expect(added.out).toMatch(/warning: node add node-3 on G[A-Z2-7]+ accepted with --allow-disjoint-quorums/);
    expect(added.out).toMatch(/\[node-add\] applied/);
    expect(added.code, added.out).toBe(0);
    expect((await signers(cluster, a))[fourth]).toBe(1);
    const removed = await cosigner([
      'node',
      'remove',
      ...target,
      '--account',
      a,
      '--node-id',
      'node-3',
      '--stellar-key',
      fourth,
    ]);
    expect(removed.code, removed.out).toBe(0);
    expect((await signers(cluster, a))[fourth]).toBeUndefined();
  }, 180_000);

  it("rotates node-1's KMS key under a stream of payments, resuming after the rotate process is killed", async () => {
    const a = cluster.account.id;
    const kms = await kmsAdmin(cluster, 1);
    const oldKey = cluster.nodeInfo[1]!.stellarKey;
    const oldKmsKey = cluster.nodeInfo[1]!.kmsKeyId;
    const args = [
      'rotate',
      ...target,
      '--node',
      'node-1',
      '--account',
      a,
      '--account',
      b.publicKey(),
      '--tx-source',
      a,
      '--admin-url',
      cluster.nodes[1]!.url,
      '--peer-admin-url',
      cluster.nodes[0]!.url,
      cluster.nodes[2]!.url,
      '--state-dir',
      join(dir, 'rotate'),
      '--backend',
      'aws-kms',
      '--kms-endpoint',
      kms.endpoint,
      '--region',
      kms.region,
    ];

    // Payments from B, one after another, for as long as the rotation runs (and a little after).
    const dest = await cluster.fundedAccount();
    const statuses: string[] = [];
    let stop = false;
    const stream = (async () => {
      let n = 0;
      let after = 0;
      while (!stop || after < 2) {
        const src = await cluster.horizon.loadAccount(b.publicKey());
        const { TransactionBuilder, Operation, Asset } = await import('@stellar/stellar-sdk');
        const xdr = new TransactionBuilder(src, { fee: '100', networkPassphrase: cluster.networkPassphrase })
          .addOperation(Operation.payment({ destination: dest.publicKey(), asset: Asset.native(), amount: '1' }))
          .setTimeout(120)
          .build()
          .toXDR();
        const p = await cluster.propose({ xdr, note: `stream ${n}` });
        statuses.push((await cluster.waitForProposal(p.id, { timeoutMs: 60_000 })).status);
        n += 1;
        if (stop) after += 1;
      }
    })();

    const first = await cosigner(args, { ...kms.env, COSIGNER_ROTATE_KILL_AT: 'after:added' });
    expect(first.code, first.out).toBeNull(); // killed by the test hook right after the add was applied
    expect(first.out).toMatch(/\[rotate\] added/);
    const midway = await signers(cluster, a);
    const state = JSON.parse(await readFile(join(dir, 'rotate', 'rotate-node-1.json'), 'utf8')) as {
      newKey: string;
      done: string[];
    };
    expect(midway[state.newKey]).toBe(1);
    expect(midway[oldKey]).toBe(1);

    const second = await cosigner(args, kms.env);
    expect(second.out).toMatch(/resuming node-1 after added/);
    expect(second.code, second.out).toBe(0);
    stop = true;
    await stream;

    expect(statuses.length).toBeGreaterThanOrEqual(2);
    expect(statuses.every((s) => s === 'submitted')).toBe(true);
    for (const acct of [a, b.publicKey()]) {
      const now = await signers(cluster, acct);
      expect(now[state.newKey]).toBe(1);
      expect(now[oldKey]).toBeUndefined();
      expect(Object.values(now).filter((w) => w > 0)).toHaveLength(3);
    }
    const done = JSON.parse(await readFile(join(dir, 'rotate', 'rotate-node-1.json'), 'utf8')) as { done: string[] };
    expect(done.done).toEqual([
      'key-created',
      'prepared',
      'roster',
      'added',
      'registry',
      'switched',
      'old-disabled',
      'removed',
      'deletion-scheduled',
    ]);

    // The old KMS key can no longer sign and is scheduled for deletion.
    const client = new KMSClient({
      endpoint: kms.endpoint,
      region: kms.region,
      credentials: { accessKeyId: kms.env.AWS_ACCESS_KEY_ID, secretAccessKey: kms.env.AWS_SECRET_ACCESS_KEY },
    });
    const meta = (await client.send(new DescribeKeyCommand({ KeyId: oldKmsKey }))).KeyMetadata;
    client.destroy();
    expect(meta?.KeyState).toBe('PendingDeletion');

    // The node signs with the new key: a payment after the rotation carries node-1's new signature or not, but
    // the coordinator lists node-1 under its new key, connected.
    const nodes = (await (
      await fetch(`${cluster.coordinator.url}/v1/nodes`, {
        headers: { authorization: `Bearer ${cluster.apiKey}` },
      })
    ).json()) as { nodes: { id: string; stellarKey: string; connected: boolean }[] };
    expect(nodes.nodes.find((n) => n.id === 'node-1')).toMatchObject({ stellarKey: state.newKey, connected: true });

    // Audit entries on every node and events on the coordinator.
    const audit = (i: number, type: string): number => {
      const db = new Database(join(dir, `node-${i}`, 'ledger.sqlite'), { readonly: true });
      try {
        return (db.prepare('SELECT count(*) AS n FROM audit WHERE type = ?').get(type) as { n: number }).n;
      } finally {
        db.close();
      }
    };
    expect(audit(1, 'keyring.prepared')).toBe(1);
    expect(audit(1, 'keyring.activated')).toBe(1);
    for (const i of [0, 2]) expect(audit(i, 'roster.allowed')).toBeGreaterThanOrEqual(4);
    for (const i of [0, 1, 2]) expect(audit(i, 'signature.released')).toBeGreaterThan(0);
    const events = await coordinatorEvents(cluster);
    const steps = events
      .filter((e) => e.type === 'lifecycle.step' && e.data.action === 'rotate')
      .map((e) => e.data.step);
    expect(steps).toEqual(expect.arrayContaining(['started', 'added', 'switched', 'removed', 'deletion-scheduled']));
    expect(events.some((e) => e.type === 'node.key_changed' && e.data.stellarKey === state.newKey)).toBe(true);
    expect(events.some((e) => e.type === 'lifecycle.step' && e.data.action === 'setup')).toBe(true);
  }, 300_000);
});

import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type Cluster, demoPolicyYaml, type ProposalView, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, runCosigner, tempDir } from '@cosigner/testkit/process';
import { Asset, Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Mixed mode among real processes (docs/architecture.md "FROST: mixed mode"): a FROST group key as one weighted
 * signer beside native keys. What the cluster supports is the group reaching every threshold alone, beside native
 * recovery keys kept offline (two custodians' HSMs, weight 1 each) that together reach the high threshold: the
 * group pays with one signature, and if the cluster is lost the two recovery keys replace the group without it.
 * No single native key reaches a threshold (the CLI's single-party lock-out check refuses that). A proposal on an account
 * where the group's weight alone is short of a threshold (it would need native signatures beside it) is refused
 * at the coordinator's route (COORD_FROST_GROUP_NOT_SIGNER, naming weight and need) before any node is asked.
 * Three node processes, a KMS emulator each, the ledger simulator; about 45 s on a loaded 2-core machine.
 */

describe('FROST mixed mode: the group beside a native signer', () => {
  let dir: string;
  let cluster: Cluster;
  let address: string;
  const recoveryAccount = Keypair.random();
  const shortAccount = Keypair.random();
  /** Two recovery keys, each in its own custodian's HSM: together they reach the high threshold, neither alone. */
  const recovery = [Keypair.random(), Keypair.random()];
  let dest: string;

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> => {
    const r = await fetch(`${cluster.coordinator.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${cluster.apiKey}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as unknown };
  };

  const payment = async (from: string, amount: string): Promise<TransactionBuilder> => {
    const source = await cluster.horizon.loadAccount(from);
    return new TransactionBuilder(source, { fee: '100', networkPassphrase: cluster.networkPassphrase })
      .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount }))
      .setTimeout(120);
  };

  /** `cosigner account setup` with the group and one native signer, signed by the account's master key. */
  const setup = async (
    account: Keypair,
    signers: { group: number; native: string[] },
    t: { low: number; med: number; high: number },
    extra: string[] = [],
  ) => {
    const masterFile = join(dir, `${account.publicKey()}.secret`);
    await writeFile(masterFile, account.secret(), { mode: 0o600 });
    return runCosigner([
      'account',
      'setup',
      '--horizon-url',
      cluster.horizonUrl,
      '--coordinator-url',
      cluster.coordinator.url,
      '--api-key-file',
      cluster.adminKeyFile,
      '--account',
      account.publicKey(),
      '--frost-group',
      `${address}:${signers.group}`,
      ...signers.native.flatMap((x) => ['--signer', x]),
      '--low',
      String(t.low),
      '--med',
      String(t.med),
      '--high',
      String(t.high),
      '--master-key-file',
      masterFile,
      ...extra,
    ]);
  };

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-mixed-');
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      readyTimeoutMs: 300_000,
      nodeConfig: { limits: { reconnectMaxMs: 1000 } },
      nodePolicy: ({ network, accounts }) =>
        demoPolicyYaml({
          network,
          account: accounts[0]!,
          maxXlm: '1000',
          extraAccounts: [recoveryAccount.publicKey(), shortAccount.publicKey()],
        }),
      nodeConfigOf: async ({ nodes, kms }) => {
        const admin = new KMSClient({
          endpoint: kms.endpoint,
          region: kms.region,
          credentials: { accessKeyId: kms.admin.accessKeyId, secretAccessKey: kms.admin.secretAccessKey },
        });
        const made = await admin.send(
          new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }),
        );
        admin.destroy();
        const sealer = {
          type: 'aws-kms',
          keyId: made.KeyMetadata!.KeyId!,
          region: kms.region,
          endpoint: kms.endpoint,
          credentials: { accessKeyId: kms.node.accessKeyId, secretAccessKey: kms.node.secretAccessKey },
        };
        const roster = nodes.map((x) => ({ nodeId: x.id, identityKey: x.identityKey }));
        return { frost: { sealer, expect: [{ threshold: 2, participants: roster }] } };
      },
    });
    const ids = cluster.nodeInfo.map((x) => x.id);
    dest = (await cluster.fundedAccount()).publicKey();
    const started = await api('POST', '/v1/frost/groups', { participants: ids, threshold: 2 });
    expect(started.status).toBe(202);
    const id = (started.body as { id: string }).id;
    const deadline = Date.now() + 180_000;
    let g: { status: string; address: string | null };
    for (;;) {
      g = (await api('GET', `/v1/frost/groups/${id}`)).body as typeof g;
      if (g.status !== 'running' || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(g.status, JSON.stringify(g)).toBe('ready');
    address = g.address!;
    for (const a of [recoveryAccount, shortAccount])
      await fetch(`${cluster.horizonUrl}/friendbot?addr=${a.publicKey()}`);
  }, 600_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('the group reaches every threshold alone beside two recovery keys: it pays with one signature; the recovery keys together remove it', async () => {
    // The group and the two recovery keys are disjoint quorums; the CLI refuses that unless told, which is what
    // recovery keys are: accepted knowingly, for when the cluster is lost.
    const native = recovery.map((k, i) => `recovery-${i}=${k.publicKey()}:1`);
    const refused = await setup(recoveryAccount, { group: 2, native }, { low: 2, med: 2, high: 2 });
    expect(refused.code).not.toBe(0);
    expect(refused.out).toContain('disjoint');
    const done = await setup(recoveryAccount, { group: 2, native }, { low: 2, med: 2, high: 2 }, [
      '--allow-disjoint-quorums',
    ]);
    expect(done.code, done.out).toBe(0);
    const onLedger = await cluster.horizon.loadAccount(recoveryAccount.publicKey());
    expect(
      onLedger.signers
        .filter((s) => s.weight > 0)
        .map((s) => `${s.key}:${s.weight}`)
        .sort(),
    ).toEqual([`${address}:2`, ...recovery.map((k) => `${k.publicKey()}:1`)].sort());

    const before = await cluster.nativeBalance(dest);
    const r = await api('POST', '/v1/proposals', {
      xdr: (await payment(recoveryAccount.publicKey(), '12')).build().toXDR(),
      submit: true,
      group: address,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const p = await cluster.waitForProposal((r.body as ProposalView).id, { timeoutMs: 120_000 });
    expect(p.status, JSON.stringify(p)).toBe('submitted');
    const env = TransactionBuilder.fromXDR(p.envelope as string, cluster.networkPassphrase);
    expect(env.signatures).toHaveLength(1);
    const hint = (env.signatures[0] as unknown as { hint: { value: Uint8Array } }).hint.value;
    expect(Buffer.from(hint).equals(StrKey.decodeEd25519PublicKey(address).subarray(28))).toBe(true);
    expect(Number(await cluster.nativeBalance(dest)) - Number(before)).toBeCloseTo(12, 7);

    // The cluster lost: the two recovery keys remove the group from the account, no node involved; one alone cannot.
    const source = await cluster.horizon.loadAccount(recoveryAccount.publicKey());
    const remove = new TransactionBuilder(source, { fee: '100', networkPassphrase: cluster.networkPassphrase })
      .addOperation(Operation.setOptions({ signer: { ed25519PublicKey: address, weight: 0 } }))
      .setTimeout(60)
      .build();
    remove.sign(recovery[0]!);
    await expect(cluster.horizon.submitTransaction(remove)).rejects.toThrow();
    remove.sign(recovery[1]!);
    await cluster.horizon.submitTransaction(remove);
    const after = await cluster.horizon.loadAccount(recoveryAccount.publicKey());
    expect(
      after.signers
        .filter((s) => s.weight > 0)
        .map((s) => s.key)
        .sort(),
    ).toEqual(recovery.map((k) => k.publicKey()).sort());
    // From then on the coordinator refuses a group proposal there: the group is no signer any more (once its
    // cached view of the account, kept about one ledger, round.accountCacheMs 5 s by default, has expired).
    await new Promise((r) => setTimeout(r, 6000));
    const gone = await api('POST', '/v1/proposals', {
      xdr: (await payment(recoveryAccount.publicKey(), '1')).build().toXDR(),
      group: address,
    });
    expect(gone.status).toBe(422);
    expect(gone.body).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_SIGNER', details: { weight: 0, needed: 2 } });
  }, 300_000);

  it('a group whose weight alone is short of a threshold, beside a node key, is refused at the route with weight and need', async () => {
    // Group weight 1 + node-0's key weight 1, thresholds 2: only both together could pay. A round that runs the
    // FROST rounds and a native round into one envelope is not built; the coordinator says so before any node
    // is asked, and no proposal is stored.
    const node0 = cluster.nodeInfo[0]!;
    const done = await setup(
      shortAccount,
      { group: 1, native: [`${node0.id}=${node0.stellarKey}:1`] },
      {
        low: 2,
        med: 2,
        high: 2,
      },
    );
    expect(done.code, done.out).toBe(0);
    const listed = ((await api('GET', '/v1/proposals')).body as { items: unknown[] }).items.length;
    const r = await api('POST', '/v1/proposals', {
      xdr: (await payment(shortAccount.publicKey(), '1')).build().toXDR(),
      submit: true,
      group: address,
    });
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({
      code: 'COORD_FROST_GROUP_NOT_SIGNER',
      details: { field: 'group', account: shortAccount.publicKey(), weight: 1, needed: 2 },
    });
    expect((r.body as { message: string }).message).toContain(`group ${address} has weight 1`);
    expect(((await api('GET', '/v1/proposals')).body as { items: unknown[] }).items.length).toBe(listed);
  }, 120_000);
});

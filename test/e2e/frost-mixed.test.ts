import { rm } from 'node:fs/promises';
import type { Cluster } from '@cosigner/launcher/cluster';
import {
  type FrostCluster,
  frostAccountSetup,
  frostKeyGeneration,
  fund,
  paymentXdr,
  payWithGroup,
  startFrostCluster,
} from '@cosigner/testkit/frost';
import type { CoordinatorApi } from '@cosigner/testkit/http';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
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
  let frost: FrostCluster;
  let cluster: Cluster;
  let api: CoordinatorApi;
  let address: string;
  const recoveryAccount = Keypair.random();
  const shortAccount = Keypair.random();
  /** Two recovery keys, each in its own custodian's HSM: together they reach the high threshold, neither alone. */
  const recovery = [Keypair.random(), Keypair.random()];
  let dest: string;

  const payment = (from: string, amount: string): Promise<string> => paymentXdr(cluster, { from, to: dest, amount });

  /** `cosigner account setup` with the group and native signers, signed by the account's master key. */
  const setup = (
    account: Keypair,
    signers: { group: number; native: string[] },
    t: { low: number; med: number; high: number },
    extra: string[] = [],
  ) =>
    frostAccountSetup(cluster, {
      account,
      group: address,
      weight: signers.group,
      signers: signers.native,
      thresholds: t,
      extraArgs: extra,
    });

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-mixed-');
    frost = await startFrostCluster({
      dir,
      readyTimeoutMs: 300_000,
      nodeConfig: { limits: { reconnectMaxMs: 1000 } },
      frostAccounts: [recoveryAccount.publicKey(), shortAccount.publicKey()],
      expect: [2],
    });
    ({ cluster, api } = frost);
    dest = (await cluster.fundedAccount()).publicKey();
    const { started, group: g } = await frostKeyGeneration(api, { participants: frost.ids, threshold: 2 });
    expect(started.status).toBe(202);
    expect(g!.status, JSON.stringify(g)).toBe('ready');
    address = g!.address!;
    for (const a of [recoveryAccount, shortAccount]) await fund(cluster, a.publicKey());
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

    // Submitted with one signature, the group key's; 12 XLM moved on the ledger.
    await payWithGroup(frost, {
      from: recoveryAccount.publicKey(),
      to: dest,
      group: address,
      amount: '12',
      timeoutMs: 120_000,
    });

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
      xdr: await payment(recoveryAccount.publicKey(), '1'),
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
      xdr: await payment(shortAccount.publicKey(), '1'),
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

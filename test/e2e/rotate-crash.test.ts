import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DescribeKeyCommand, KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { signerChangePolicy } from '@cosigner/testkit/policy';
import { COSIGNER_BIN, runCosigner, spawnCosigner, tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinatorEvents } from './helpers.ts';

/**
 * `cosigner rotate` killed (SIGKILL) at every point where a crash could lose or repeat something, each run
 * resuming the one killed before it: after every step is recorded, and inside every request (the server acted on
 * it and answered, the command died before recording the answer): CreateKey, the node's prepare and activate, the
 * peers' roster, both proposal POSTs, the registry PUT, DisableKey, ScheduleKeyDeletion and every step's
 * lifecycle event. Real processes only: the launcher's 2-of-3 cluster and `cosigner rotate` as a child process.
 * At the end there is exactly one new KMS key, one add proposal and one removal proposal, both submitted, and the
 * account holds the new key in place of the old one.
 */

const STEPS = [
  'started',
  'key-created',
  'prepared',
  'roster',
  'added',
  'registry',
  'switched',
  'old-disabled',
  'removed',
  'deletion-scheduled',
];
/** The request each step makes before it is recorded (started makes none the command could repeat). */
const REQUEST: Record<string, string | undefined> = {
  'key-created': 'create-key',
  prepared: 'prepare',
  roster: 'roster',
  added: 'propose-add',
  registry: 'registry',
  switched: 'activate',
  'old-disabled': 'disable-key',
  removed: 'propose-remove',
  'deletion-scheduled': 'schedule-deletion',
};
/** Every kill point in the order one run reaches them. */
const POINTS = STEPS.flatMap((s) => [...(REQUEST[s] ? [`sent:${REQUEST[s]}`] : []), `sent:event:${s}`, `after:${s}`]);

const cosigner = runCosigner;

const background = spawnCosigner;

describe('cosigner rotate killed at every step boundary and inside every request', () => {
  let dir: string;
  let cluster: Cluster;
  // The nodes' policy (JSON is YAML), with or without holding signer changes for a person.
  let policy: (holdSignerChanges: boolean) => string;

  beforeAll(async () => {
    dir = await tempDir('cosigner-rotate-crash-');
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      nodes: 3,
      threshold: 2,
      // The second test rotates on two accounts (the lock-out warning is printed once for both).
      operatorAccounts: 2,
      nodePolicy: ({ network, accounts }) => {
        policy = (hold) => signerChangePolicy({ network, accounts, holdSignerChanges: hold });
        return policy(false);
      },
    });
    for (const n of cluster.nodes) {
      for (const x of cluster.nodeInfo) {
        const r = await fetch(`${n.url}/v1/roster`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ address: x.stellarKey, nodeId: x.id, by: 'test' }),
        });
        expect(r.status).toBe(200);
      }
    }
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('one key, one add, one removal', async () => {
    const a = cluster.account.id;
    const oldKey = cluster.nodeInfo[1]!.stellarKey;
    const kmsFile = String(cluster.kms[1]!.ready.accountsFile);
    const acct = (
      JSON.parse(await readFile(kmsFile, 'utf8')) as {
        accounts: { region: string; principals: { role: string; accessKeyId: string; secretAccessKey: string }[] }[];
      }
    ).accounts[0]!;
    const admin = acct.principals.find((p) => p.role === 'admin')!;
    const env = {
      AWS_ACCESS_KEY_ID: admin.accessKeyId,
      AWS_SECRET_ACCESS_KEY: admin.secretAccessKey,
      AWS_REGION: acct.region,
    };
    const kms = new KMSClient({
      endpoint: cluster.kms[1]!.url,
      region: acct.region,
      credentials: { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey },
    });
    const keysBefore = (await kms.send(new ListKeysCommand({}))).Keys ?? [];
    const args = [
      'rotate',
      ...['--horizon-url', cluster.horizonUrl, '--coordinator-url', cluster.coordinator.url],
      // Every account the node signs for, as the runbook requires: an account left out would keep node-1's old
      // key, disabled at the end, and lose node-1's weight (the next test's rotation would then need node-2 itself).
      ...['--api-key-file', cluster.adminKeyFile, '--node', 'node-1', '--account', a],
      ...['--account', cluster.operatorAccounts[1]!],
      ...['--admin-url', cluster.nodes[1]!.url, '--peer-admin-url', cluster.nodes[0]!.url, cluster.nodes[2]!.url],
      ...['--state-dir', join(dir, 'rotate'), '--backend', 'aws-kms', '--kms-endpoint', cluster.kms[1]!.url],
      ...['--pending-window-days', '7'],
    ];

    // A kill point the command does not know is refused, so this list cannot drift from the command's.
    const unknown = await cosigner(args, { ...env, COSIGNER_ROTATE_KILL_AT: 'after:nothing' });
    expect(unknown.code, unknown.out).toBe(1);
    expect(unknown.out).toMatch(/COSIGNER_ROTATE_KILL_AT=after:nothing names no point/);

    for (const [i, point] of POINTS.entries()) {
      const r = await cosigner(args, { ...env, COSIGNER_ROTATE_KILL_AT: point });
      // Killed exactly there: a run that finished or failed instead means the point was never reached.
      expect(r.signal, `${point}: ${r.out}`).toBe('SIGKILL');
      if (i > 0) expect(r.out, point).toMatch(/\[rotate\] resuming node-1 after/);
    }
    const last = await cosigner(args, env);
    expect(last.code, last.out).toBe(0);
    expect(last.out).toMatch(/node-1: G[A-Z2-7]{55} -> G[A-Z2-7]{55} done/);

    const state = JSON.parse(await readFile(join(dir, 'rotate', 'rotate-node-1.json'), 'utf8')) as {
      newKey: string;
      newKeyId: string;
      addProposal: string;
      removeProposal: string;
      intents: Record<string, { key: string; attempt: number; proposalId?: string }>;
    };
    // Exactly one new KMS key, the one the state names; the old one is scheduled for deletion.
    const keysAfter = (await kms.send(new ListKeysCommand({}))).Keys ?? [];
    expect(keysAfter).toHaveLength(keysBefore.length + 1);
    const added = keysAfter.filter((k) => !keysBefore.some((b) => b.KeyId === k.KeyId));
    expect(state.newKeyId).toContain(added[0]!.KeyId);
    const old = await kms.send(new DescribeKeyCommand({ KeyId: cluster.nodeInfo[1]!.kmsKeyId }));
    expect(old.KeyMetadata?.KeyState).toBe('PendingDeletion');
    kms.destroy();

    // Exactly one add and one removal proposal, both submitted, found under the rotation's own keys.
    const list = (await (
      await fetch(`${cluster.coordinator.url}/v1/proposals?limit=200`, {
        headers: { authorization: `Bearer ${cluster.apiKey}` },
      })
    ).json()) as { items: { id: string; note: string | null; status: string; idempotencyKey: string | null }[] };
    const adds = list.items.filter((p) => p.note === 'rotate node-1: add new key');
    const removes = list.items.filter((p) => p.note === 'rotate node-1: remove old key');
    expect(adds.map((p) => p.status)).toEqual(['submitted']);
    expect(removes.map((p) => p.status)).toEqual(['submitted']);
    expect(adds[0]!.id).toBe(state.addProposal);
    expect(removes[0]!.id).toBe(state.removeProposal);
    expect(adds[0]!.idempotencyKey).toBe(state.intents.add!.key);
    expect(state.intents.add!.key).toMatch(/^rotate\.[0-9a-f]{16}\.add\.1$/);
    expect(state.intents.remove!.key).toMatch(/^rotate\.[0-9a-f]{16}\.remove\.1$/);

    for (const id of [a, cluster.operatorAccounts[1]!]) {
      const acc = await cluster.horizon.loadAccount(id);
      const weights = Object.fromEntries(acc.signers.map((s) => [s.key, s.weight]));
      expect(weights[state.newKey]).toBe(1);
      expect(weights[oldKey]).toBeUndefined();
    }

    // Every step reached the event stream (at least once: a step whose event was sent but not acknowledged
    // before a kill is sent again with the same detail), and the added/removed events name their proposals.
    const steps = (await coordinatorEvents(cluster)).filter(
      (e) => e.type === 'lifecycle.step' && e.data.action === 'rotate',
    );
    for (const s of STEPS)
      expect(
        steps.some((e) => e.data.step === s),
        s,
      ).toBe(true);
    const addedEvents = steps.filter((e) => e.data.step === 'added');
    for (const e of addedEvents) expect((e.data.detail as { proposalId: unknown }).proposalId).toBe(state.addProposal);
  }, 900_000);

  it('two passes with signer changes held for manual approval: --prepare-only, roster allow, then --wait while operators approve', async () => {
    const a = cluster.account.id;
    const oldKey = cluster.nodeInfo[2]!.stellarKey;
    // Every operator holds signer changes for a person, as the example policy recommends.
    await writeFile(join(dir, 'policy.yaml'), policy(true), { mode: 0o600 });
    for (let i = 0; i < 3; i++) await cluster.restartNode(i);
    const acct = (
      JSON.parse(await readFile(String(cluster.kms[2]!.ready.accountsFile), 'utf8')) as {
        accounts: { region: string; principals: { role: string; accessKeyId: string; secretAccessKey: string }[] }[];
      }
    ).accounts[0]!;
    const admin = acct.principals.find((p) => p.role === 'admin')!;
    const env = {
      AWS_ACCESS_KEY_ID: admin.accessKeyId,
      AWS_SECRET_ACCESS_KEY: admin.secretAccessKey,
      AWS_REGION: acct.region,
    };
    const args = [
      'rotate',
      ...['--horizon-url', cluster.horizonUrl, '--coordinator-url', cluster.coordinator.url],
      ...['--api-key-file', cluster.adminKeyFile, '--node', 'node-2', '--account', a],
      ...['--account', cluster.operatorAccounts[1]!, '--tx-source', cluster.operatorAccounts[1]!],
      ...['--admin-url', cluster.nodes[2]!.url, '--state-dir', join(dir, 'rotate')],
      ...['--backend', 'aws-kms', '--kms-endpoint', cluster.kms[2]!.url, '--pending-window-days', '7'],
    ];

    // Pass 1: the key exists and is pending on node-2; the command prints what the other operators allow.
    const first = await cosigner([...args, '--prepare-only'], env);
    expect(first.code, first.out).toBe(0);
    const newKey = /new key is (G[A-Z2-7]{55})/.exec(first.out)?.[1] as string;
    expect(first.out).toContain(
      `cosigner node roster allow --admin-url <their node's admin URL> --address ${newKey} --member node-2`,
    );
    expect(first.out).not.toMatch(/\[rotate\] added/);
    for (const i of [0, 1]) {
      const allowed = await cosigner([
        ...['node', 'roster', 'allow', '--admin-url', cluster.nodes[i]!.url],
        ...['--address', newKey, '--member', 'node-2'],
      ]);
      expect(allowed.code, allowed.out).toBe(0);
    }

    // Pass 2: each proposal waits for the operators; the command says which nodes hold it and what they run.
    // The whole window the policy allows (300 s): two operators' approvals on a loaded machine take a while.
    const second = background([...args, '--wait', '290', '--proposal-window', '290'], env);
    let from = 0;
    for (const what of ['add', 'remove']) {
      const held = await second.seen(/proposal (\S+) is held for manual approval on ([a-z0-9, -]+) \(/, from);
      from = held.end;
      const id = held.match[1]!;
      const approvals = await Promise.all(
        [0, 1].map((i) => cosigner(['node', 'approve', id, '--admin-url', cluster.nodes[i]!.url, '--by', 'test'])),
      );
      for (const ok of approvals) expect(ok.code, `${what} ${ok.out}`).toBe(0);
    }
    const r = await second.done;
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/resuming node-2 after prepared/);
    // node-2's two keys together reach the 2-of-3 thresholds while both are signers: one warning naming both
    // accounts, not one per account.
    const warnings = r.out.match(/\[rotate\] warning: [^\n]*/g) ?? [];
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`${a}, ${cluster.operatorAccounts[1]}`);
    for (const acc of [a, cluster.operatorAccounts[1]!]) {
      const now = await cluster.horizon.loadAccount(acc);
      const weights = Object.fromEntries(now.signers.map((s) => [s.key, s.weight]));
      expect(weights[newKey]).toBe(1);
      expect(weights[oldKey]).toBeUndefined();
    }
  }, 600_000);
});

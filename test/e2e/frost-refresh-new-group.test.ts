import { randomBytes } from 'node:crypto';
import { appendFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { aggregate, commitNonces, signShare } from '@cosigner/frost/rounds';
import { createShareSealer, type SealedBlob, type SealerConfig } from '@cosigner/frost/sealer';
import { checkShare, type GroupPublic, type KeyShare } from '@cosigner/frost/suite';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, runCosigner, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A new FROST group among real processes: four node processes (each with its own KMS emulator and sealing key), an
 * old 2-of-3 group of node-0, node-1 and node-2, and `cosigner frost new-group` replacing node-2 by node-3. The
 * command plans the membership (refusing 2-of-4), runs the key generation among the new members, records each step
 * in its state file and, run again, resumes without a second key generation. The new group has another key, its
 * shares (opened through each node's KMS key) sign for it, and the old group is kept beside it, unchanged.
 * The account swap (signed by the old group) is not part of this suite: FROST signing is not on this branch.
 */

interface KmsPrincipal {
  role: string;
  accessKeyId: string;
  secretAccessKey: string;
}
interface GroupView {
  id: string;
  status: string;
  address: string | null;
  participants: { index: number; nodeId: string; verifyingShare?: string }[];
}
interface Row {
  address: string;
  my_index: number;
  group_public: string;
  sealed_share: string;
}

describe('a new FROST group among four real node processes: one node replaced', () => {
  let dir: string;
  let cluster: Cluster;
  let ids: string[];
  let oldAddress: string;
  const sealers: SealerConfig[] = [];

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
  const rows = (i: number): Row[] => {
    const db = new Database(join(dir, `node-${i}`, 'frost.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare(`SELECT * FROM frost_groups WHERE status = 'confirmed' ORDER BY created_at`).all() as Row[];
    } finally {
      db.close();
    }
  };
  const open = async (i: number, row: Row): Promise<KeyShare> => {
    const sealer = await createShareSealer(sealers[i]!, { production: false });
    try {
      const signingShare = await sealer.unseal(JSON.parse(row.sealed_share) as SealedBlob, {
        purpose: 'frost-share',
        node: ids[i]!,
        group: row.address,
      });
      return checkShare(JSON.parse(row.group_public) as GroupPublic, { index: row.my_index, signingShare });
    } finally {
      await sealer.close();
    }
  };
  const signs = (group: GroupPublic, address: string, a: KeyShare, b: KeyShare): boolean => {
    const message = randomBytes(32);
    const commits = [commitNonces(a), commitNonces(b)];
    const commitments = commits.map((c) => c.commitment);
    const sigShares = {
      [String(a.index)]: signShare(group, a, commits[0]!.nonces, commitments, message),
      [String(b.index)]: signShare(group, b, commits[1]!.nonces, commitments, message),
    };
    return Keypair.fromPublicKey(address).verify(
      message,
      Buffer.from(aggregate(group, commitments, message, sigShares)),
    );
  };
  const cli = (args: string[]) =>
    runCosigner([
      'frost',
      ...args,
      '--coordinator-url',
      cluster.coordinator.url,
      '--api-key-file',
      cluster.adminKeyFile,
    ]);

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-new-group-');
    cluster = await startCluster({ cosignerBin: COSIGNER_BIN, dir, nodes: 4 });
    ids = cluster.nodeInfo.map((x) => x.id);
    const entry = (i: number) => ({ nodeId: ids[i]!, identityKey: cluster.nodeInfo[i]!.identityKey });
    const oldRoster = [entry(0), entry(1), entry(2)];
    const newRoster = [entry(0), entry(1), entry(3)];
    for (let i = 0; i < ids.length; i++) {
      const acct = (
        JSON.parse(await readFile(cluster.kmsAccounts[i]!.accountsFile, 'utf8')) as {
          accounts: { region: string; principals: KmsPrincipal[] }[];
        }
      ).accounts[0]!;
      const admin = acct.principals.find((p) => p.role === 'admin')!;
      const node = acct.principals.find((p) => p.role === 'node')!;
      const endpoint = cluster.kms[i]!.url;
      const kms = new KMSClient({
        endpoint,
        region: acct.region,
        credentials: { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey },
      });
      const made = await kms.send(new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }));
      kms.destroy();
      const sealer: SealerConfig = {
        type: 'aws-kms',
        keyId: made.KeyMetadata!.KeyId!,
        region: acct.region,
        endpoint,
        credentials: { accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey },
      };
      sealers.push(sealer);
      // Each operator expects the groups its node belongs to: the old roster (node-0..2), the new (node-0, 1, 3).
      const expect = [
        ...(i <= 2 ? [{ threshold: 2, participants: oldRoster }] : []),
        ...(i !== 2 ? [{ threshold: 2, participants: newRoster }] : []),
      ];
      await appendFile(cluster.nodeInfo[i]!.configFile, `\nfrost: ${JSON.stringify({ sealer, expect })}\n`);
      await cluster.restartNode(i);
    }
    const run = await cli(['dkg', '--participants', ids.slice(0, 3).join(','), '--threshold', '2']);
    expect(run.code, run.out).toBe(0);
    oldAddress = /address\s+(G[A-Z2-7]{55})/.exec(run.out)![1]!;
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('refuses a plan whose quorums can be disjoint, or the old group itself, naming the field; no key generation runs', async () => {
    const before = ((await api('GET', '/v1/frost/groups')).body as { groups: unknown[] }).groups.length;
    const state = join(dir, 'refused.json');
    const disjoint = await cli([
      'new-group',
      '--from',
      oldAddress,
      '--participants',
      ids.join(','),
      '--threshold',
      '2',
      '--state-file',
      state,
    ]);
    expect(disjoint.code).not.toBe(0);
    expect(disjoint.out).toMatch(/FROST_GROUP_CHANGE_UNSAFE: .*threshold/);
    const same = await cli([
      'new-group',
      '--from',
      oldAddress,
      '--participants',
      ids.slice(0, 3).join(','),
      '--threshold',
      '2',
      '--state-file',
      state,
    ]);
    expect(same.code).not.toBe(0);
    expect(same.out).toMatch(/FROST_OUT_OF_RANGE: .*refresh/);
    const noState = await cli([
      'new-group',
      '--from',
      oldAddress,
      '--participants',
      'node-0,node-1',
      '--threshold',
      '2',
    ]);
    expect(noState.code).not.toBe(0);
    expect(noState.out).toContain('--state-file');
    expect(((await api('GET', '/v1/frost/groups')).body as { groups: unknown[] }).groups).toHaveLength(before);
  }, 120_000);

  it('makes the new group beside the old one: another key, its shares sign; run again, it resumes', async () => {
    const state = join(dir, 'new-group.json');
    const args = [
      'new-group',
      '--from',
      oldAddress,
      '--participants',
      [ids[3], ids[1], ids[0]].join(','),
      '--threshold',
      '2',
      '--state-file',
      state,
    ];
    const run = await cli(args);
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain(`joining          ${ids[3]}`);
    expect(run.out).toContain(`leaving          ${ids[2]}`);
    const saved = JSON.parse(await readFile(state, 'utf8')) as {
      dkgId: string;
      address: string;
      participants: string[];
    };
    expect(saved.participants).toEqual([ids[0], ids[1], ids[3]]);
    const address = saved.address;
    expect(address).toMatch(/^G[A-Z2-7]{55}$/);
    expect(address).not.toBe(oldAddress);
    const g = (await api('GET', `/v1/frost/groups/${address}`)).body as GroupView;
    expect(g).toMatchObject({ status: 'ready', id: saved.dkgId });
    expect(g.participants.map((p) => [p.index, p.nodeId])).toEqual([
      [1, ids[0]],
      [2, ids[1]],
      [3, ids[3]],
    ]);
    const old = (await api('GET', `/v1/frost/groups/${oldAddress}`)).body as GroupView;
    expect(old.status).toBe('ready');

    // node-2 holds the old group only; node-3 the new one only; node-0 and node-1 both.
    expect(rows(2).map((r) => r.address)).toEqual([oldAddress]);
    expect(rows(3).map((r) => r.address)).toEqual([address]);
    for (const i of [0, 1]) expect(rows(i).map((r) => r.address)).toEqual([oldAddress, address]);
    const share = async (i: number, a: string) => open(i, rows(i).find((r) => r.address === a)!);
    const newGroup = JSON.parse(rows(3)[0]!.group_public) as GroupPublic;
    const oldGroup = JSON.parse(rows(2)[0]!.group_public) as GroupPublic;
    expect(signs(newGroup, address, await share(0, address), await share(3, address))).toBe(true);
    expect(signs(newGroup, address, await share(1, address), await share(3, address))).toBe(true);
    // The old group is untouched and still signs (until the account swaps the keys).
    expect(signs(oldGroup, oldAddress, await share(0, oldAddress), await share(2, oldAddress))).toBe(true);

    // Run again with the same state file: no second key generation, the same group.
    const count = ((await api('GET', '/v1/frost/groups')).body as { groups: unknown[] }).groups.length;
    const again = await cli(args);
    expect(again.code, again.out).toBe(0);
    expect(again.out).toContain(`key generation ${saved.dkgId} was asked for already: ready`);
    expect(((await api('GET', '/v1/frost/groups')).body as { groups: unknown[] }).groups).toHaveLength(count);
    // A state file of another change is refused, naming the field.
    const other = await cli([...args.slice(0, 6), '3', ...args.slice(7)]);
    expect(other.code).not.toBe(0);
    expect(other.out).toMatch(/LIFECYCLE_STATE_MISMATCH: .*threshold/);
  }, 240_000);
});

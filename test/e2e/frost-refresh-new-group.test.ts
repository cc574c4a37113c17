import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { aggregate, commitNonces, signShare } from '@cosigner/frost/rounds';
import { createShareSealer, type SealedBlob, type SealerConfig } from '@cosigner/frost/sealer';
import { checkShare, type GroupPublic, type KeyShare } from '@cosigner/frost/suite';
import { type Cluster, demoPolicyYaml, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, runCosigner, tempDir } from '@cosigner/testkit/process';
import { Asset, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A new FROST group among real processes: four node processes (each with its own KMS emulator and sealing key), an
 * old 2-of-3 group of node-0, node-1 and node-2, and `cosigner frost new-group` replacing node-2 by node-3. The
 * command plans the membership (refusing 2-of-4), runs the key generation among the new members, records each step
 * in its state file and, run again, resumes without a second key generation. The new group has another key, its
 * shares (opened through each node's KMS key) sign for it, and the old group is kept beside it, unchanged.
 * Then `cosigner frost swap` moves the accounts the old group key signs to the new key: refused while an account
 * the old key signs is not named (LIFECYCLE_ACCOUNTS_MISSING); killed right after its first proposal left and run
 * again, it finishes with one transaction per account (the old group signs each: node-0 and node-1, node-2 refusing
 * a key it holds no share of). Afterwards a payment signed by the new group is applied by the ledger simulator,
 * and one signed by the old group is refused by the coordinator and, signed directly with two old shares, by the
 * ledger. Last, each old node's operator retires the old group on their own node with `cosigner node frost retire`
 * (the swap's last lines say so) through the node's admin API and its token: the sealed old share is gone from
 * every old node's frost.sqlite and its log, the node lists the group retired with its public data, its audit log
 * records it, a node that never held it and a confirmation naming another group are refused, and the new group
 * still pays.
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
  let newAddress: string;
  /** The nodes' admin token (one file for the four, as the launcher supports), used as each operator would. */
  let tokenFile: string;
  /** Two accounts whose only signer is the old group key (weight 1, thresholds 1, master weight 0). */
  const groupAccounts = [Keypair.random(), Keypair.random()];
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
    tokenFile = join(dir, 'node-admin.token');
    await writeFile(tokenFile, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      nodes: 4,
      nodeConfig: { admin: { tokenFile } },
      // A normal deployment's node policy: payments, and signer changes for the nodes' own keys (clusterMembers:
      // a group key the node holds counts), weight 1 at most, on the operator account and the group's accounts.
      nodePolicy: ({ network, accounts }) =>
        demoPolicyYaml({
          network,
          account: accounts[0]!,
          maxXlm: '1000',
          extraAccounts: groupAccounts.map((k) => k.publicKey()),
          signerChanges: { threshold: 1 },
        }),
    });
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
        // The new group's key is to sign its accounts at weight 1: what the node checks a swap's weight against.
        ...(i !== 2 ? [{ threshold: 2, participants: newRoster, accountWeight: 1 }] : []),
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
    newAddress = address;
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

  it('swaps every account from the old group key to the new one, resuming after a kill; the old key signs no more', async () => {
    const horizon = cluster.horizon;
    const seqOf = async (a: string) => BigInt((await horizon.loadAccount(a)).sequenceNumber());
    const signersOf = async (a: string) =>
      (await horizon.loadAccount(a)).signers.filter((x) => x.weight > 0).map((x) => [x.key, x.weight]);
    // The accounts: funded, the old group key their only signer (set up with the master key, then weight 0).
    for (const kp of groupAccounts) {
      expect((await fetch(`${cluster.horizonUrl}/friendbot?addr=${kp.publicKey()}`)).status).toBe(200);
      const setup = new TransactionBuilder(await horizon.loadAccount(kp.publicKey()), {
        fee: '100',
        networkPassphrase: cluster.networkPassphrase,
      })
        .addOperation(
          Operation.setOptions({
            signer: { ed25519PublicKey: oldAddress, weight: 1 },
            masterWeight: 0,
            lowThreshold: 1,
            medThreshold: 1,
            highThreshold: 1,
          }),
        )
        .setTimeout(60)
        .build();
      setup.sign(kp);
      await horizon.submitTransaction(setup);
      expect(await signersOf(kp.publicKey())).toEqual([[oldAddress, 1]]);
    }
    const [a, b] = groupAccounts.map((k) => k.publicKey()) as [string, string];
    const before = { [a]: await seqOf(a), [b]: await seqOf(b) };
    const state = join(dir, 'swap.json');
    const swap = (accounts: string[], env: NodeJS.ProcessEnv = {}) =>
      runCosigner(
        [
          'frost',
          'swap',
          '--from',
          oldAddress,
          '--to',
          newAddress,
          ...accounts.flatMap((x) => ['--account', x]),
          '--state-file',
          state,
          '--horizon-url',
          cluster.horizonUrl,
          '--coordinator-url',
          cluster.coordinator.url,
          '--api-key-file',
          cluster.adminKeyFile,
        ],
        env,
      );

    // An account the old key signs is left out: refused, naming it; nothing is proposed.
    const missing = await swap([a]);
    expect(missing.code).not.toBe(0);
    expect(missing.out).toMatch(new RegExp(`LIFECYCLE_ACCOUNTS_MISSING: .*${b}`));
    expect(await seqOf(a)).toBe(before[a]);

    // Killed right after the first proposal was sent, before its id was recorded.
    const killed = await swap([a, b], { COSIGNER_FROST_SWAP_KILL_AT: 'proposed' });
    expect(killed.signal, killed.out).toBe('SIGKILL');
    const mid = JSON.parse(await readFile(state, 'utf8')) as {
      intents: Record<string, { key: string; proposalId?: string }>;
    };
    const first = Object.keys(mid.intents)[0]!;
    expect(mid.intents[first]!.proposalId).toBeUndefined();

    // Run again: the proposal is found under its key and waited for; the other account is proposed; both swapped.
    const resumed = await swap([a, b]);
    expect(resumed.code, resumed.out).toBe(0);
    expect(resumed.out).toContain('retired');
    // The swap ends by telling each old node's operator the command that destroys their share.
    expect(resumed.out).toContain(`(${ids.slice(0, 3).join(', ')}) destroys its share on their own node`);
    expect(resumed.out).toContain(`cosigner node frost retire --group ${oldAddress} --confirm ${oldAddress}`);
    for (const acct of [a, b]) {
      expect(await signersOf(acct)).toEqual([[newAddress, 1]]);
      // One transaction per account: its sequence number moved by one.
      expect(await seqOf(acct)).toBe(before[acct]! + 1n);
      const key = (JSON.parse(await readFile(state, 'utf8')) as { intents: Record<string, { key: string }> }).intents[
        acct
      ]!.key;
      const found = (await api('GET', `/v1/proposals?idempotencyKey=${encodeURIComponent(key)}`)).body as {
        items: { id: string; status: string }[];
      };
      expect(found.items.map((p) => p.status)).toEqual(['submitted']);
      const view = (await api('GET', `/v1/proposals/${found.items[0]!.id}`)).body as {
        decisions: { nodeId: string; outcome: string; reasons?: { code: string }[] }[];
      };
      // node-2 holds no share of the new group: it never approves the swap (if it was asked, it said why).
      for (const d of view.decisions.filter((x) => x.nodeId === ids[2])) {
        expect(d.outcome).toBe('reject');
        expect(d.reasons?.map((r) => r.code)).toContain('FROST_SWAP_UNKNOWN_GROUP');
      }
    }
    // Once more: nothing left to do, no new proposal.
    const again = await swap([a, b]);
    expect(again.code, again.out).toBe(0);
    expect(again.out).not.toContain('proposed');
    for (const acct of [a, b]) expect(await seqOf(acct)).toBe(before[acct]! + 1n);

    // No wait here: the coordinator caches an account's signers for about one ledger, but drops an account from
    // that cache once it has submitted a transaction that needed its HIGH threshold (the swap did).
    // A payment signed by the new group is applied by the ledger simulator.
    const dest = (await cluster.fundedAccount()).publicKey();
    const payment = async (amount: string) =>
      new TransactionBuilder(await horizon.loadAccount(a), { fee: '100', networkPassphrase: cluster.networkPassphrase })
        .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount }))
        .setTimeout(120)
        .build();
    const balance = async () => BigInt((await cluster.nativeBalance(dest)).replace('.', ''));
    const start = await balance();
    const byNew = await api('POST', '/v1/proposals', {
      xdr: (await payment('7')).toXDR(),
      submit: true,
      group: newAddress,
    });
    expect(byNew.status, JSON.stringify(byNew.body)).toBe(201);
    const done = await cluster.waitForProposal((byNew.body as { id: string }).id, { timeoutMs: 90_000 });
    expect(done.status, JSON.stringify(done)).toBe('submitted');
    expect((await balance()) - start).toBe(70_000_000n);

    // The old group: the coordinator refuses to run it (no weight on the account), and a signature made directly
    // with two of its shares is refused by the ledger.
    const byOld = await api('POST', '/v1/proposals', {
      xdr: (await payment('1')).toXDR(),
      submit: true,
      group: oldAddress,
    });
    expect(byOld.status).toBe(422);
    expect(byOld.body).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_SIGNER' });
    const tx = await payment('1');
    const oldRow = (i: number) => rows(i).find((r) => r.address === oldAddress)!;
    const [s0, s2] = [await open(0, oldRow(0)), await open(2, oldRow(2))];
    const oldGroup = JSON.parse(oldRow(2).group_public) as GroupPublic;
    const commits = [commitNonces(s0), commitNonces(s2)];
    const commitments = commits.map((c) => c.commitment);
    const message = tx.hash();
    const sig = aggregate(oldGroup, commitments, message, {
      [String(s0.index)]: signShare(oldGroup, s0, commits[0]!.nonces, commitments, message),
      [String(s2.index)]: signShare(oldGroup, s2, commits[1]!.nonces, commitments, message),
    });
    tx.addSignature(oldAddress, Buffer.from(sig).toString('base64'));
    const refused = await horizon.submitTransaction(tx).then(
      () => undefined,
      (e: { response?: { data?: { extras?: { result_codes?: { transaction?: string } } } } }) =>
        e.response?.data?.extras?.result_codes?.transaction,
    );
    expect(refused).toBe('tx_bad_auth');
    expect((await balance()) - start).toBe(70_000_000n);
  }, 360_000);
  it("each old node's operator retires the old group on their node: its sealed share is gone, the new group still pays", async () => {
    const nodeDir = (i: number) => join(dir, `node-${i}`);
    const retire = (i: number, confirm = oldAddress) =>
      runCosigner([
        'node',
        'frost',
        'retire',
        '--group',
        oldAddress,
        '--confirm',
        confirm,
        '--admin-url',
        cluster.nodes[i]!.url,
        '--token-file',
        tokenFile,
        '--by',
        `operator-${i}`,
      ]);
    const listed = async (i: number) => {
      const r = await fetch(`${cluster.nodes[i]!.url}/v1/frost/groups`, {
        headers: { authorization: `Bearer ${(await readFile(tokenFile, 'utf8')).trim()}` },
      });
      expect(r.status).toBe(200);
      return ((await r.json()) as { groups: { address: string; status: string; transcript: string }[] }).groups;
    };
    const fileBytes = (i: number) =>
      Buffer.concat(
        ['frost.sqlite', 'frost.sqlite-wal']
          .map((f) => join(nodeDir(i), f))
          .filter(existsSync)
          .map((f) => readFileSync(f)),
      );
    // What each old node holds before: its sealed old share (the bytes to look for afterwards) and its public data.
    const sealedBefore = [0, 1, 2].map(
      (i) => (JSON.parse(rows(i).find((r) => r.address === oldAddress)!.sealed_share) as SealedBlob).ciphertext,
    );
    for (const [i, c] of sealedBefore.entries()) expect(fileBytes(i).includes(c)).toBe(true);
    const publicBefore = (await listed(2)).find((g) => g.address === oldAddress)!;

    // node-3 never held the old group; a confirmation naming another group (the new one) retires nothing.
    const none = await retire(3);
    expect(none.code).not.toBe(0);
    expect(none.out).toContain('NODE_FROST_GROUP_UNKNOWN');
    const slip = await retire(0, newAddress);
    expect(slip.code).not.toBe(0);
    expect(slip.out).toContain('--confirm must repeat --group');
    expect((await listed(0)).map((g) => g.status)).toEqual(['confirmed', 'confirmed']);

    for (const i of [0, 1, 2]) {
      const r = await retire(i);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain(`retired FROST group ${oldAddress} on this node`);
      expect(r.out).toContain('its sealed share is destroyed');
    }
    // Run again: answered the same.
    const again = await retire(0);
    expect(again.code, again.out).toBe(0);
    expect(again.out).toContain(`retired FROST group ${oldAddress} on this node`);

    for (const i of [0, 1, 2]) {
      // The node lists it retired with its public data; the sealed bytes are in neither its file nor its log.
      const groups = await listed(i);
      expect(groups.find((g) => g.address === oldAddress)).toMatchObject({
        status: 'retired',
        transcript: publicBefore.transcript,
      });
      expect(fileBytes(i).includes(sealedBefore[i]!)).toBe(false);
      const db = new Database(join(nodeDir(i), 'frost.sqlite'), { readonly: true, fileMustExist: true });
      try {
        expect(db.prepare('SELECT status, sealed_share FROM frost_groups WHERE address = ?').get(oldAddress)).toEqual({
          status: 'retired',
          sealed_share: null,
        });
      } finally {
        db.close();
      }
      const audit = new Database(join(nodeDir(i), 'ledger.sqlite'), { readonly: true, fileMustExist: true });
      try {
        const entries = audit.prepare(`SELECT data FROM audit WHERE type = 'frost.group.retired'`).all() as {
          data: string;
        }[];
        expect(entries).toHaveLength(1);
        expect(JSON.parse(entries[0]!.data)).toMatchObject({ address: oldAddress, by: `admin:operator-${i}` });
      } finally {
        audit.close();
      }
    }
    // node-0 and node-1 keep the new group confirmed.
    for (const i of [0, 1]) {
      expect((await listed(i)).find((g) => g.address === newAddress)?.status).toBe('confirmed');
    }

    // The new group still pays.
    const [a] = groupAccounts.map((k) => k.publicKey()) as [string];
    const dest = (await cluster.fundedAccount()).publicKey();
    const tx = new TransactionBuilder(await cluster.horizon.loadAccount(a), {
      fee: '100',
      networkPassphrase: cluster.networkPassphrase,
    })
      .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount: '3' }))
      .setTimeout(120)
      .build();
    const start = BigInt((await cluster.nativeBalance(dest)).replace('.', ''));
    const byNew = await api('POST', '/v1/proposals', { xdr: tx.toXDR(), submit: true, group: newAddress });
    expect(byNew.status, JSON.stringify(byNew.body)).toBe(201);
    const done = await cluster.waitForProposal((byNew.body as { id: string }).id, { timeoutMs: 90_000 });
    expect(done.status, JSON.stringify(done)).toBe('submitted');
    expect(BigInt((await cluster.nativeBalance(dest)).replace('.', '')) - start).toBe(30_000_000n);
  }, 240_000);
});

import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { createShareSealer, type SealedBlob, type SealerConfig } from '@cosigner/frost/sealer';
import { type Cluster, demoPolicyYaml, type ProposalView, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, runCosigner, tempDir } from '@cosigner/testkit/process';
import { Asset, Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesSecret, filesUnder } from '../security/scan.ts';

/**
 * FROST under faults, among real processes (process backend: the launcher's cluster, SIGKILL and SIGSTOP on the
 * node processes): a 3-of-5 group made by the nodes' key generation, the only signer of an account, and a run of
 * payments each proposed under one fault:
 * - a node killed right after the proposal (often between the two rounds), restarted after;
 * - a node that dies the moment the signing package reaches it (`COSIGNER_CRASH_AT=frost-before-share`);
 * - a member that committed, stopped with SIGSTOP (the coordinator's 20 s sweep abandons the phase), continued after;
 * - two members that committed (n - t) killed between the rounds;
 * - then all back, one more payment.
 * Invariants, checked at the end: every accepted proposal ended submitted with exactly one signature (the group
 * key's) or rejected with a code; the ledger applied each submitted payment once and nothing else; no node ever
 * committed to one nonce twice (every commitment in the five nodes' nonce records differs; a round id has one row);
 * no round is still `issued` once its node restarted; no node's share is anywhere on disk or in any environment in
 * the clear. About 2 to 2.5 minutes on a loaded 2-core machine.
 */

const N = 5;
const T = 3;

describe('chaos: FROST signing under kills and stops', () => {
  let dir: string;
  let cluster: Cluster;
  let ids: string[];
  let address: string;
  const account = Keypair.random();
  let dest: string;
  const sealers: SealerConfig[] = [];
  const outcomes: { id: string; amount: bigint; view: ProposalView }[] = [];

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
  const stroops = async (who: string): Promise<bigint> => BigInt((await cluster.nativeBalance(who)).replace('.', ''));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const nonceRows = (i: number): { round_id: string; commitment: string; state: string }[] => {
    const db = new Database(join(dir, `node-${i}`, 'frost-nonces.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT round_id, commitment, state FROM frost_nonces').all() as {
        round_id: string;
        commitment: string;
        state: string;
      }[];
    } catch {
      return []; // not created yet: the node never committed
    } finally {
      db.close();
    }
  };
  /** The nodes (indexes) that have committed to a round of proposal `id`, once at least `k` have. */
  const committed = async (id: string, k: number): Promise<number[]> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const who = ids.map((_, i) => i).filter((i) => nonceRows(i).some((r) => r.round_id.startsWith(`${id}:`)));
      if (who.length >= k) return who;
      if (Date.now() > deadline) {
        const view = await cluster.getProposal(id);
        throw new Error(`fewer than ${k} nodes committed to ${id}: ${JSON.stringify(view)}`);
      }
      await sleep(50);
    }
  };

  /** Proposes a payment of `xlm` and runs `fault` right after; waits for the proposal to end; records it. */
  const payUnder = async (xlm: bigint, fault: (id: string) => Promise<void>, after?: () => Promise<void>) => {
    const source = await cluster.horizon.loadAccount(account.publicKey());
    const xdr = new TransactionBuilder(source, { fee: '100', networkPassphrase: cluster.networkPassphrase })
      .addOperation(Operation.payment({ destination: dest, asset: Asset.native(), amount: String(xlm) }))
      .setTimeout(300)
      .build()
      .toXDR();
    const r = await api('POST', '/v1/proposals', { xdr, submit: true, group: address });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const id = (r.body as ProposalView).id;
    try {
      await fault(id);
      const view = await cluster.waitForProposal(id, { timeoutMs: 240_000 });
      outcomes.push({ id, amount: xlm * 10_000_000n, view });
    } finally {
      await after?.();
    }
  };
  const alive = (i: number): boolean => {
    const p = cluster.nodes[i]!.proc;
    return p.exitCode === null && p.signalCode === null;
  };
  const restartDead = async (): Promise<void> => {
    for (let i = 0; i < N; i++) if (!alive(i)) await cluster.restartNode(i);
  };

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-chaos-');
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      nodes: N,
      readyTimeoutMs: 300_000,
      coordinatorConfig: { logLevel: 'warn' },
      nodeConfig: { limits: { reconnectMaxMs: 1000 }, logLevel: 'warn' },
      nodePolicy: ({ network, accounts }) =>
        demoPolicyYaml({ network, account: accounts[0]!, maxXlm: '1000', extraAccounts: [account.publicKey()] }),
      nodeConfigOf: async ({ index, nodes, kms }) => {
        const admin = new KMSClient({
          endpoint: kms.endpoint,
          region: kms.region,
          credentials: { accessKeyId: kms.admin.accessKeyId, secretAccessKey: kms.admin.secretAccessKey },
        });
        const made = await admin.send(
          new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }),
        );
        admin.destroy();
        const sealer: SealerConfig = {
          type: 'aws-kms',
          keyId: made.KeyMetadata!.KeyId!,
          region: kms.region,
          endpoint: kms.endpoint,
          credentials: { accessKeyId: kms.node.accessKeyId, secretAccessKey: kms.node.secretAccessKey },
        };
        sealers[index] = sealer;
        const roster = nodes.map((x) => ({ nodeId: x.id, identityKey: x.identityKey }));
        return { frost: { sealer, expect: [{ threshold: T, participants: roster }] } };
      },
    });
    ids = cluster.nodeInfo.map((x) => x.id);
    dest = (await cluster.fundedAccount()).publicKey();
    const started = await api('POST', '/v1/frost/groups', { participants: ids, threshold: T });
    expect(started.status).toBe(202);
    const gid = (started.body as { id: string }).id;
    const deadline = Date.now() + 300_000;
    let g: { status: string; address: string | null };
    for (;;) {
      g = (await api('GET', `/v1/frost/groups/${gid}`)).body as typeof g;
      if (g.status !== 'running' || Date.now() > deadline) break;
      await sleep(300);
    }
    expect(g.status, JSON.stringify(g)).toBe('ready');
    address = g.address!;
    await fetch(`${cluster.horizonUrl}/friendbot?addr=${account.publicKey()}`);
    const masterFile = join(dir, 'account.secret');
    await writeFile(masterFile, account.secret(), { mode: 0o600 });
    const done = await runCosigner([
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
      `${address}:1`,
      '--low',
      '1',
      '--med',
      '1',
      '--high',
      '1',
      '--master-key-file',
      masterFile,
    ]);
    expect(done.code, done.out).toBe(0);
    await rm(masterFile);
  }, 600_000);

  afterAll(async () => {
    if (cluster) {
      for (const p of cluster.nodes) if (p.proc.exitCode === null) process.kill(p.pid, 'SIGCONT');
      await cluster.stop();
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('payments under kills between rounds, a crash at the signing package, a stopped member, n - t killed', async () => {
    const destBefore = await stroops(dest);
    const seqBefore = BigInt((await cluster.horizon.loadAccount(account.publicKey())).sequence);

    // A node killed right after the proposal: often after its commitment, before its share.
    await payUnder(
      1n,
      async (id) => {
        const [first] = await committed(id, 1);
        await cluster.kill9Node(first!);
      },
      restartDead,
    );
    // A node that dies when the signing package reaches it; restarted, it refuses its lost round.
    await cluster.restartNode(1, { COSIGNER_CRASH_AT: 'frost-before-share' });
    await payUnder(
      2n,
      async () => {},
      async () => {
        await cluster.restartNode(1);
      },
    );
    // A member that committed, stopped (SIGSTOP) before its share: the attempt is abandoned after 20 s.
    let stopped: number | undefined;
    await payUnder(
      3n,
      async (id) => {
        const [first] = await committed(id, 1);
        stopped = first!;
        process.kill(cluster.nodes[stopped]!.pid, 'SIGSTOP');
      },
      async () => {
        if (stopped !== undefined) process.kill(cluster.nodes[stopped]!.pid, 'SIGCONT');
      },
    );
    // n - t members that committed, killed between the rounds.
    await payUnder(
      4n,
      async (id) => {
        const who = await committed(id, 2);
        await Promise.all(who.slice(0, N - T).map((i) => cluster.kill9Node(i)));
      },
      restartDead,
    );
    // Everything back: one more.
    await payUnder(5n, async () => {});

    // Every accepted proposal ended signed once (submitted, one signature: the group key's) or rejected with a code.
    const hint = StrKey.decodeEd25519PublicKey(address).subarray(28);
    let paid = 0n;
    let submitted = 0;
    for (const o of outcomes) {
      if (o.view.status === 'submitted') {
        const env = TransactionBuilder.fromXDR(o.view.envelope as string, cluster.networkPassphrase);
        expect(env.signatures).toHaveLength(1);
        const sig = env.signatures[0] as unknown as { hint: { value: Uint8Array } };
        expect(Buffer.from(sig.hint.value).equals(hint)).toBe(true);
        paid += o.amount;
        submitted += 1;
      } else {
        expect(o.view.status, JSON.stringify(o.view)).toBe('rejected');
        expect(String(o.view.statusReason ?? '')).toMatch(/[A-Z_]{6,}/);
      }
    }
    console.log(`frost chaos: ${outcomes.length} proposals, ${submitted} submitted`);
    expect(submitted).toBeGreaterThanOrEqual(4);
    // The ledger applied each submitted payment once, and nothing else moved the account's sequence.
    expect((await stroops(dest)) - destBefore).toBe(paid);
    expect(BigInt((await cluster.horizon.loadAccount(account.publicKey())).sequence) - seqBefore).toBe(
      BigInt(submitted),
    );

    // No nonce used twice: every commitment recorded by any node differs (one nonce pair, one commitment), and no
    // round is left `issued` on a node that restarted since (it became `lost`, never usable again).
    const rows = ids.flatMap((_, i) => nonceRows(i).map((r) => ({ ...r, node: i })));
    expect(rows.length).toBeGreaterThanOrEqual(outcomes.length * T);
    expect(new Set(rows.map((r) => r.commitment)).size).toBe(rows.length);
    expect(rows.some((r) => r.state === 'lost')).toBe(true);
    for (const o of outcomes.filter((x) => x.view.status === 'submitted')) {
      // A submitted proposal's signature came from exactly t shares of one round: t nodes with that round `used`.
      const used = rows.filter((r) => r.round_id.startsWith(`${o.id}:`) && r.state === 'used');
      const perRound = new Map<string, number>();
      for (const r of used) perRound.set(r.round_id, (perRound.get(r.round_id) ?? 0) + 1);
      expect([...perRound.values()]).toContain(T);
    }
  }, 900_000);

  it('no share is anywhere in the clear after the faults: files of the cluster, environments', async () => {
    const secrets: ReturnType<typeof bytesSecret>[] = [];
    for (let i = 0; i < N; i++) {
      const db = new Database(join(dir, `node-${i}`, 'frost.sqlite'), { readonly: true, fileMustExist: true });
      const row = db.prepare('SELECT sealed_share FROM frost_groups WHERE address = ?').get(address) as {
        sealed_share: string;
      };
      db.close();
      const sealer = await createShareSealer(sealers[i]!, { production: false });
      const opened = await sealer.unseal(JSON.parse(row.sealed_share) as SealedBlob, {
        purpose: 'frost-share',
        node: ids[i]!,
        group: address,
      });
      await sealer.close();
      secrets.push(bytesSecret(`${ids[i]} share`, Buffer.from(opened), []));
    }
    const found: string[] = [];
    const look = (where: string, content: Buffer) => {
      for (const x of secrets) if (x.forms.some((f) => content.includes(f))) found.push(`${where}: ${x.label}`);
    };
    // Control: the look finds a share written in any of its encodings.
    for (const f of secrets[0]!.forms) look('control', Buffer.concat([Buffer.from('x'), f, Buffer.from('y')]));
    expect(found).toHaveLength(secrets[0]!.forms.length);
    found.length = 0;
    for (const f of await filesUnder(dir)) look(f.slice(dir.length + 1), await readFile(f));
    for (const p of [...cluster.nodes, cluster.coordinator, cluster.ledger, ...cluster.kms]) {
      look(`${p.name} environment`, await readFile(`/proc/${p.pid}/environ`));
    }
    expect(found).toEqual([]);
  }, 120_000);
});

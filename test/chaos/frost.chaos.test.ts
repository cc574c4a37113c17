import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cluster, ProposalView } from '@cosigner/launcher/cluster';
import {
  balanceStroops,
  checkGroupEnvelope,
  type FrostCluster,
  frostAccountSetup,
  frostKeyGeneration,
  fund,
  paymentXdr,
  proposeWithGroup,
  startFrostCluster,
} from '@cosigner/testkit/frost';
import type { CoordinatorApi } from '@cosigner/testkit/http';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealedShareOf, sharesInTheClear, unsealShare } from '../e2e/helpers.ts';

/**
 * FROST under faults, among real processes (process backend: the launcher's cluster, SIGKILL and SIGSTOP on the
 * node processes): a 3-of-5 group made by the nodes' key generation, the only signer of an account, and a run of
 * payments each proposed under one fault:
 * - a node killed right after the proposal (often between the two rounds), restarted after;
 * - a node that dies the moment the signing package reaches it (`COSIGNER_CRASH_AT=frost-before-share`; payments
 *   go on until the random pick of t members has chosen it);
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
  let frost: FrostCluster;
  let cluster: Cluster;
  let api: CoordinatorApi;
  let ids: string[];
  let address: string;
  const account = Keypair.random();
  let dest: string;
  const outcomes: { id: string; amount: bigint; view: ProposalView }[] = [];

  const stroops = (who: string): Promise<bigint> => balanceStroops(cluster, who);
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
    const xdr = await paymentXdr(cluster, {
      from: account.publicKey(),
      to: dest,
      amount: String(xlm),
      timeoutSeconds: 300,
    });
    const { id } = await proposeWithGroup(api, { xdr, group: address });
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
    frost = await startFrostCluster({
      dir,
      nodes: N,
      readyTimeoutMs: 300_000,
      coordinatorConfig: { logLevel: 'warn' },
      nodeConfig: { limits: { reconnectMaxMs: 1000 }, logLevel: 'warn' },
      frostAccounts: [account.publicKey()],
      expect: [T],
    });
    ({ cluster, api, ids } = frost);
    dest = (await cluster.fundedAccount()).publicKey();
    const { started, group: g } = await frostKeyGeneration(api, {
      participants: ids,
      threshold: T,
      timeoutMs: 300_000,
    });
    expect(started.status).toBe(202);
    expect(g!.status, JSON.stringify(g)).toBe('ready');
    address = g!.address!;
    await fund(cluster, account.publicKey());
    // The master key file is written for the command and removed after it.
    const done = await frostAccountSetup(cluster, {
      account,
      group: address,
      weight: 1,
      thresholds: { low: 1, med: 1, high: 1 },
    });
    expect(done.code, done.out).toBe(0);
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
    // A node that dies when the signing package reaches it; restarted, its round's nonces are lost. An attempt
    // picks t of the n members at random, so payments go on until node-1 has been picked once (and died).
    await cluster.restartNode(1, { COSIGNER_CRASH_AT: 'frost-before-share' });
    for (let tries = 0; alive(1) && tries < 12; tries++) await payUnder(2n, async () => {});
    expect(alive(1), 'node-1 was not picked for a round in 12 payments').toBe(false);
    await cluster.restartNode(1);
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
    let paid = 0n;
    let submitted = 0;
    for (const o of outcomes) {
      if (o.view.status === 'submitted') {
        checkGroupEnvelope(o.view.envelope, address, cluster.networkPassphrase);
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
    // node-1 died holding a committed round: it came back with that round lost.
    expect(rows.some((r) => r.node === 1 && r.state === 'lost')).toBe(true);
    for (const o of outcomes.filter((x) => x.view.status === 'submitted')) {
      // A submitted proposal's signature came from exactly t shares of one round: t nodes with that round `used`.
      const used = rows.filter((r) => r.round_id.startsWith(`${o.id}:`) && r.state === 'used');
      const perRound = new Map<string, number>();
      for (const r of used) perRound.set(r.round_id, (perRound.get(r.round_id) ?? 0) + 1);
      expect([...perRound.values()]).toContain(T);
    }
  }, 900_000);

  it('no share is anywhere in the clear after the faults: files of the cluster, environments', async () => {
    const shares: { label: string; bytes: Buffer }[] = [];
    for (let i = 0; i < N; i++) {
      const opened = await unsealShare(frost.sealers[i]!, sealedShareOf(dir, i, address), {
        node: ids[i]!,
        group: address,
      });
      shares.push({ label: `${ids[i]} share`, bytes: Buffer.from(opened) });
    }
    expect(shares).toHaveLength(N);
    const r = await sharesInTheClear(shares, {
      dir,
      processes: [...cluster.nodes, cluster.coordinator, cluster.ledger, ...cluster.kms],
    });
    // Control: the look finds a share written in any of its encodings.
    expect(r.control.found).toBe(r.control.forms);
    expect(r.found).toEqual([]);
  }, 120_000);
});

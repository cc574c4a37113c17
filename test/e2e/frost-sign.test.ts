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
  payWithGroup,
  proposeWithGroup,
  startFrostCluster,
} from '@cosigner/testkit/frost';
import type { CoordinatorApi } from '@cosigner/testkit/http';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealedShareOf, sharesInTheClear, unsealShare } from './helpers.ts';

/**
 * FROST signing among real processes (docs/architecture.md "FROST signing"): the testkit cluster (a KMS emulator
 * per node over HTTP, the ledger simulator, the coordinator, three nodes), a 2-of-3 group made by the nodes' own
 * key generation (`frost.expect`, shares sealed by each node's KMS key), and an account whose ONLY signer is the
 * group key (master weight 0). Every protocol message crosses the real WebSocket transport.
 * - two of the three nodes sign; the ledger simulator applies the payment, whose envelope carries one signature;
 * - with a node killed, the other two still pay;
 * - a node that sends a bad share (its development-mode test hook) is named as misbehaving and left out, and the
 *   round succeeds with another subset;
 * - a node killed between the rounds (it dies when the signing package arrives) refuses, once restarted, to
 *   reuse its nonce (FROST_NONCE_FORGOTTEN, its nonce record `lost`), and a fresh round pays.
 */

interface Decision {
  nodeId: string;
  outcome: string;
  reasons: { code: string }[];
}

describe('FROST signing among three real node processes', () => {
  let dir: string;
  let frost: FrostCluster;
  let cluster: Cluster;
  let api: CoordinatorApi;
  let ids: string[];
  let address: string;
  const frostAccount = Keypair.random();
  let dest: string;
  /** The destination's native balance in stroops. */
  const destBalance = (): Promise<bigint> => balanceStroops(cluster, dest);

  const eventually = async <T>(get: () => Promise<T | undefined>, what: string, ms = 60_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await get();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  /** A payment from the FROST account, signed by nobody yet. */
  const payment = (amount: string): Promise<string> =>
    paymentXdr(cluster, { from: frostAccount.publicKey(), to: dest, amount });

  const propose = (xdr: string): Promise<ProposalView> => proposeWithGroup(api, { xdr, group: address });

  /** The submitted envelope carries exactly one signature: the group key's. */
  const expectOneGroupSignature = (p: ProposalView): void =>
    checkGroupEnvelope(p.envelope, address, cluster.networkPassphrase);

  /** Pay `amount` XLM from the FROST account to `dest`, checked on the ledger. */
  const pay = (amount: string) =>
    payWithGroup(frost, { from: frostAccount.publicKey(), to: dest, group: address, amount });

  /** A proposal's events (GET /v1/proposals/:id/events). */
  const eventsOf = async (id: string): Promise<{ type: string; data: Record<string, unknown> }[]> =>
    (
      (await api('GET', `/v1/proposals/${id}/events`)).body as {
        events: { type: string; data: Record<string, unknown> }[];
      }
    ).events;

  const nonceRows = (i: number): { round_id: string; state: string }[] => {
    const db = new Database(join(dir, `node-${i}`, 'frost-nonces.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT round_id, state FROM frost_nonces').all() as { round_id: string; state: string }[];
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-sign-');
    // Each node's operator: a symmetric key in the node's own KMS account to seal its share, and the roster. The
    // nodes cosign for the operator account and for the account the group key will control.
    frost = await startFrostCluster({
      dir,
      nodeConfig: { limits: { reconnectMaxMs: 1000 } },
      frostAccounts: [frostAccount.publicKey()],
      expect: [2],
    });
    ({ cluster, api, ids } = frost);
    dest = (await cluster.fundedAccount()).publicKey();
    const { started, group: g } = await frostKeyGeneration(api, { participants: ids, threshold: 2 });
    expect(started.status).toBe(202);
    expect(g!.status).toBe('ready');
    address = g!.address!;
    // The account: funded, then `cosigner account setup --frost-group` makes the group key its only signer at
    // weight 2, thresholds 2, master weight 0 (the CLI checks the group is ready at the coordinator first).
    await fund(cluster, frostAccount.publicKey());
    const setup = (group: string) =>
      frostAccountSetup(cluster, {
        account: frostAccount,
        group,
        weight: 2,
        thresholds: { low: 2, med: 2, high: 2 },
      });
    const unknown = await setup(Keypair.random().publicKey());
    expect(unknown.code).not.toBe(0);
    expect(unknown.out).toContain('LIFECYCLE_CALL_FAILED');
    const done = await setup(address);
    expect(done.code, done.out).toBe(0);
    expect(done.out).toContain('master weight 0');
  }, 420_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('an account whose only signer is the group key pays, with one signature from t of n nodes', async () => {
    const onLedger = await cluster.horizon.loadAccount(frostAccount.publicKey());
    expect(onLedger.signers.filter((s) => s.weight > 0).map((s) => [s.key, s.weight])).toEqual([[address, 2]]);
    // Proposed, submitted with one signature (the group key's), 25 XLM moved on the ledger.
    const { proposal: done, signers } = await pay('25');
    expect(signers).toHaveLength(2);
    // Two nodes took part; the approvals are theirs.
    const decisions = done.decisions as Decision[];
    expect(decisions.filter((d) => d.outcome === 'approve').length).toBeGreaterThanOrEqual(2);
    // A proposal naming a group the cluster does not hold, or a group that is not a signer, is refused.
    const unknown = await api('POST', '/v1/proposals', {
      xdr: await payment('1'),
      group: Keypair.random().publicKey(),
    });
    expect(unknown.status).toBe(422);
    expect(unknown.body).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_READY', details: { field: 'group' } });
    const notSigner = await api('POST', '/v1/proposals', {
      xdr: await cluster.paymentXdr({ destination: dest, amount: '1' }),
      group: address,
    });
    expect(notSigner.status).toBe(422);
    expect(notSigner.body).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_SIGNER' });
  }, 180_000);

  it('with one node killed, the other two still pay', async () => {
    await cluster.stopService(ids[2]!, 'kill');
    try {
      const { signers } = await pay('5');
      expect(signers).toEqual([ids[0], ids[1]]);
    } finally {
      await cluster.restartNode(2);
    }
  }, 180_000);

  it('a node that sends a bad share is named, left out, and another subset signs', async () => {
    // node-0 away so the first round must pick node-1 and node-2; node-2 armed to send a wrong share.
    await cluster.stopService(ids[0]!, 'kill');
    await cluster.restartNode(2, { COSIGNER_FROST_BAD_SHARE: '1' });
    try {
      const p = await propose(await payment('7'));
      // The bad share is found when the two shares are aggregated; node-2 is flagged and the round waits for
      // another member to come back.
      const flagged = await eventually(async () => {
        const e = (await eventsOf(p.id)).find((x) => x.type === 'node.misbehaved');
        return e?.data;
      }, 'node-2 flagged');
      expect(flagged).toMatchObject({ nodeId: ids[2], kind: 'bad_signature_share' });
      expect((await cluster.getProposal(p.id)).status).toBe('pending');
      await cluster.restartNode(0);
      const done = await cluster.waitForProposal(p.id, { timeoutMs: 90_000 });
      expect(done.status, JSON.stringify(done)).toBe('submitted');
      expectOneGroupSignature(done);
      const { nodes } = (await api('GET', '/v1/nodes')).body as { nodes: { id: string; misbehaviours: number }[] };
      expect(nodes.find((n) => n.id === ids[2])?.misbehaviours).toBeGreaterThanOrEqual(1);
      // The retry did not ask node-2 again: the signature came from node-0 and node-1.
      const last = [...(await eventsOf(p.id))].reverse().find((e) => e.type === 'node.approved');
      expect((last!.data.frost as { signers: string[] }).signers.sort()).toEqual([ids[0], ids[1]]);
    } finally {
      await cluster.restartNode(2);
    }
  }, 240_000);

  it('a node killed between the rounds refuses, after its restart, to reuse the nonce; a new round pays', async () => {
    // Two members only (node-2 away), node-0 armed to die the moment a signing package reaches it.
    await cluster.stopService(ids[2]!, 'kill');
    await cluster.restartNode(0, { COSIGNER_CRASH_AT: 'frost-before-share' });
    const before = nonceRows(0).length;
    const balance = await destBalance();
    try {
      const p = await propose(await payment('3'));
      await cluster.nodes[0]!.exited;
      // It committed (its nonce recorded `issued`) and died before the share.
      const issued = nonceRows(0).slice(before);
      expect(issued.map((r) => r.state)).toEqual(['issued']);
      const firstRound = issued[0]!.round_id;
      await cluster.restartNode(0);
      const done = await cluster.waitForProposal(p.id, { timeoutMs: 90_000 });
      expect(done.status, JSON.stringify(done)).toBe('submitted');
      expectOneGroupSignature(done);
      // After the restart the first round is lost and was refused; a fresh round signed.
      const rows = nonceRows(0);
      expect(rows.find((r) => r.round_id === firstRound)?.state).toBe('lost');
      expect(rows.filter((r) => r.round_id.startsWith(`${p.id}:`) && r.state === 'used')).toHaveLength(1);
      const refusal = (await eventsOf(p.id)).find((e) => e.type === 'node.rejected');
      expect(refusal?.data).toMatchObject({ nodeId: ids[0], reasons: [{ code: 'FROST_NONCE_FORGOTTEN' }] });
      expect((await destBalance()) - balance).toBe(30_000_000n);
    } finally {
      await cluster.restartNode(2);
    }
  }, 240_000);

  it('after the signing rounds no share is anywhere in the clear: files of the cluster (stores, logs), environments', async () => {
    // Each node's share, opened the way only the node can: its sealed copy through its own KMS key.
    const shares: { label: string; bytes: Buffer }[] = [];
    for (let i = 0; i < ids.length; i++) {
      const opened = await unsealShare(frost.sealers[i]!, sealedShareOf(dir, i, address), {
        node: ids[i]!,
        group: address,
      });
      shares.push({ label: `${ids[i]} share`, bytes: Buffer.from(opened) });
    }
    const r = await sharesInTheClear(shares, {
      dir,
      processes: [...cluster.nodes, cluster.coordinator, cluster.ledger, ...cluster.kms],
    });
    // Control: the same look finds a share written in any of its encodings.
    expect(r.control.found).toBe(r.control.forms);
    expect(r.files.some((f) => f.endsWith('frost-nonces.sqlite'))).toBe(true);
    expect(r.found).toEqual([]);
  }, 120_000);
});

import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { groupDigest } from '@cosigner/frost/refresh';
import { aggregate, commitNonces, signShare } from '@cosigner/frost/rounds';
import { checkShare, type GroupPublic, type KeyShare } from '@cosigner/frost/suite';
import type { Cluster } from '@cosigner/launcher/cluster';
import {
  type FrostCluster,
  frostKeyGeneration,
  type FrostGroupView as GroupView,
  startFrostCluster,
} from '@cosigner/testkit/frost';
import type { CoordinatorApi } from '@cosigner/testkit/http';
import { runCosigner, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharesInTheClear, unsealShare } from './helpers.ts';

/**
 * FROST share refresh among real processes: the testkit cluster (a KMS emulator per node over HTTP, the
 * coordinator, three node processes), a 2-of-3 group made by key generation, its shares sealed by each node's own
 * symmetric KMS key. Every protocol message crosses the real WebSocket transport.
 * - a refresh with a node down is refused, and the old shares still sign;
 * - `cosigner frost refresh` gives the same group key with new verifying shares at the coordinator and every node;
 *   the new shares (opened through each node's KMS key) sign, an old share with a new one does not;
 * - no share, old or new, is in the clear in any file of the cluster, any process environment or the CLI output;
 * - a node killed with SIGKILL between the phases (after it sealed and reported its new share, before it heard
 *   the adoption) keeps the blob matching the outcome the coordinator recorded once it restarts.
 */

interface RefreshView {
  id: string;
  status: 'running' | 'adopted' | 'failed';
  address: string;
  digest: string | null;
  oldDigest: string;
  participants: { index: number; nodeId: string; verifyingShare?: string; acknowledged: boolean }[];
  error: { code: string; message: string; culprits: string[]; unreachable?: string[] } | null;
}
interface Row {
  address: string;
  my_index: number;
  group_public: string;
  sealed_share: string;
}

describe('FROST share refresh among three real node processes', () => {
  let dir: string;
  let frost: FrostCluster;
  let cluster: Cluster;
  let api: CoordinatorApi;
  let ids: string[];
  let address: string;
  const seen: { label: string; bytes: Buffer }[] = [];
  const cliOutput: string[] = [];

  const eventually = async <T>(f: () => Promise<T | undefined> | T | undefined, what: string, ms = 60_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await f();
      if (v !== undefined && v !== false) return v as T;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const refreshOutcome = (id: string) =>
    eventually(
      async () => {
        const r = (await api('GET', `/v1/frost/refreshes/${id}`)).body as RefreshView;
        return r.status === 'running' ? undefined : r;
      },
      `refresh ${id}`,
      180_000,
    );

  const query = <T>(i: number, sql: string): T[] => {
    const db = new Database(join(dir, `node-${i}`, 'frost.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql).all() as T[];
    } finally {
      db.close();
    }
  };
  const groupRow = (i: number) => query<Row>(i, 'SELECT * FROM frost_groups')[0]!;
  const pending = (i: number) => query<{ refresh_id: string }>(i, 'SELECT refresh_id FROM frost_refresh_pending');

  /** Node i's current share, opened through its own KMS key (as the test's operator, with the node's principal). */
  const openShare = async (i: number): Promise<{ share: KeyShare; group: GroupPublic }> => {
    const row = groupRow(i);
    const signingShare = await unsealShare(frost.sealers[i]!, row.sealed_share, { node: ids[i]!, group: address });
    if (!seen.some((x) => x.bytes.equals(signingShare))) {
      seen.push({ label: `${ids[i]}'s share ${seen.length}`, bytes: Buffer.from(signingShare) });
    }
    return { share: { index: row.my_index, signingShare }, group: JSON.parse(row.group_public) as GroupPublic };
  };

  const signs = (group: GroupPublic, a: KeyShare, b: KeyShare): boolean => {
    const message = randomBytes(32);
    const commits = [commitNonces(a), commitNonces(b)];
    const commitments = commits.map((c) => c.commitment);
    const sigShares = {
      [String(a.index)]: signShare(group, a, commits[0]!.nonces, commitments, message),
      [String(b.index)]: signShare(group, b, commits[1]!.nonces, commitments, message),
    };
    try {
      const sig = aggregate(group, commitments, message, sigShares);
      return Keypair.fromPublicKey(address).verify(message, Buffer.from(sig));
    } catch {
      return false;
    }
  };

  /** POST a refresh once every participant is connected again (after a restart). */
  const startRefresh = () =>
    eventually(async () => {
      const r = await api('POST', `/v1/frost/groups/${address}/refresh`);
      if (r.status === 409 && (r.body as { code: string }).code === 'COORD_FROST_NODE_UNAVAILABLE') return undefined;
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      return r.body as RefreshView;
    }, 'every participant connected');

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-refresh-');
    frost = await startFrostCluster({ dir, nodeConfig: { limits: { reconnectMaxMs: 500 } }, expect: [2] });
    ({ cluster, api, ids } = frost);
    const { started, group: g } = await frostKeyGeneration(api, { participants: ids, threshold: 2 });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    expect(g!.status).toBe('ready');
    address = g!.address!;
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('refuses a refresh with a node down; the old shares still sign', async () => {
    await cluster.stopService(ids[2]!, 'term');
    try {
      const r = await api('POST', `/v1/frost/groups/${address}/refresh`);
      expect(r.status).toBe(409);
      expect(r.body).toMatchObject({ code: 'COORD_FROST_NODE_UNAVAILABLE', details: { offline: [ids[2]] } });
      const missing = await api('POST', '/v1/frost/groups/nope/refresh');
      expect(missing.status).toBe(404);
      expect(missing.body).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_FOUND' });
      const cli = await runCosigner([
        'frost',
        'refresh',
        '--coordinator-url',
        cluster.coordinator.url,
        '--api-key-file',
        cluster.adminKeyFile,
      ]);
      expect(cli.code).not.toBe(0);
      expect(cli.out).toContain('--group');
    } finally {
      await cluster.startService(ids[2]!);
    }
    const [a, b] = [await openShare(0), await openShare(1)];
    expect(signs(a.group, a.share, b.share)).toBe(true);
    for (let i = 0; i < 3; i++) expect(pending(i)).toEqual([]);
  }, 120_000);

  it('cosigner frost refresh keeps the group key, renews every share; an old share and a new one do not sign', async () => {
    const old = [await openShare(0), await openShare(1), await openShare(2)];
    const before = old[0]!.group;
    // node-2 was restarted above: until it is connected again the coordinator refuses (409), and the CLI says so
    let run = await runCosigner([
      'frost',
      'refresh',
      '--group',
      address,
      '--coordinator-url',
      cluster.coordinator.url,
      '--api-key-file',
      cluster.adminKeyFile,
    ]);
    for (let tries = 0; run.code !== 0 && run.out.includes('COORD_FROST_NODE_UNAVAILABLE') && tries < 60; tries++) {
      await new Promise((r) => setTimeout(r, 500));
      run = await runCosigner([
        'frost',
        'refresh',
        '--group',
        address,
        '--coordinator-url',
        cluster.coordinator.url,
        '--api-key-file',
        cluster.adminKeyFile,
      ]);
    }
    cliOutput.push(run.out);
    expect(run.code, run.out).toBe(0);
    expect(run.out).toMatch(/: adopted/);
    const id = /refresh ([0-9a-f-]{36}) of/.exec(run.out)![1]!;
    const r = await refreshOutcome(id);
    expect(r).toMatchObject({ status: 'adopted', address, oldDigest: groupDigest(before) });
    const g = (await api('GET', `/v1/frost/groups/${address}`)).body as GroupView;
    expect(g.groupPublicKey).toBe(before.groupPublicKey);
    await eventually(async () => [0, 1, 2].every((i) => pending(i).length === 0), 'every node switched');
    const fresh = [await openShare(0), await openShare(1), await openShare(2)];
    const after = fresh[0]!.group;
    expect(groupDigest(after)).toBe(r.digest);
    for (const f of fresh) expect(f.group).toEqual(after);
    for (const p of g.participants) {
      expect(p.verifyingShare).toBe(after.verifyingShares[String(p.index)]);
      expect(p.verifyingShare).not.toBe(before.verifyingShares[String(p.index)]);
    }
    for (const f of fresh) expect(() => checkShare(after, f.share)).not.toThrow();
    for (const o of old) expect(() => checkShare(after, o.share)).toThrow();
    expect(signs(after, fresh[0]!.share, fresh[1]!.share)).toBe(true);
    expect(signs(after, fresh[1]!.share, fresh[2]!.share)).toBe(true);
    expect(signs(after, old[0]!.share, fresh[1]!.share)).toBe(false);
    expect(signs(before, old[0]!.share, fresh[2]!.share)).toBe(false);
  }, 240_000);

  it('a node killed (SIGKILL) between the phases keeps the blob of the outcome the coordinator recorded', async () => {
    // Kill node-2 as soon as its new share is sealed beside the old one: after it reported, or just before. Either
    // way, once restarted it must hold what the coordinator decided. The case that matters (it reported, the
    // coordinator adopted, it never heard) is the usual one; tried a few times until it happened.
    let hardCase = false;
    for (let attempt = 0; attempt < 6 && !hardCase; attempt++) {
      const started = await startRefresh();
      // A refresh started just as node-2 came back from the previous attempt fails when its sync arrives (the relay
      // cannot tell a restarted node from a reconnected one): that attempt is void, everyone kept the old share.
      // Poll node-2's file closely: under load the whole second phase can take less than one slow poll, and then
      // the kill did not land between the phases; that attempt, like one that failed first, is void.
      let kept: 'kept' | 'failed' | 'adopted' | undefined;
      const deadline = Date.now() + 120_000;
      while (!kept) {
        if (pending(2).length > 0) kept = 'kept';
        else {
          const v = ((await api('GET', `/v1/frost/refreshes/${started.id}`)).body as RefreshView).status;
          if (v !== 'running') kept = v;
          else if (Date.now() > deadline) throw new Error(`refresh ${started.id} still running, node-2 kept nothing`);
          else await new Promise((r) => setTimeout(r, 2));
        }
      }
      if (kept !== 'kept') {
        const r = await refreshOutcome(started.id);
        if (r.status === 'failed') expect(r.error!.code, JSON.stringify(r.error)).toBe('COORD_FROST_REFRESH_TIMEOUT');
        await eventually(
          async () =>
            ((await api('GET', `/v1/frost/refreshes/${started.id}`)).body as RefreshView).participants.every(
              (p) => p.acknowledged,
            ) || undefined,
          'every node acknowledged the outcome',
        );
        continue;
      }
      await cluster.stopService(ids[2]!, 'kill');
      const atKill = {
        pending: pending(2).map((p) => p.refresh_id),
        digest: groupDigest(JSON.parse(groupRow(2).group_public)),
      };
      // While node-2 is down, the refresh is decided without it if its report had left; else it waits for it.
      await new Promise((r) => setTimeout(r, 500));
      await cluster.startService(ids[2]!);
      const r = await refreshOutcome(started.id);
      const current = () => groupDigest(JSON.parse(groupRow(2).group_public) as GroupPublic);
      if (r.status === 'adopted') {
        await eventually(() => (pending(2).length === 0 && current() === r.digest) || undefined, 'node-2 adopted');
        if (atKill.pending.includes(started.id) && atKill.digest === r.oldDigest) hardCase = true;
      } else {
        expect(r.error!.code).toMatch(
          /COORD_FROST_REFRESH_TIMEOUT|COORD_FROST_NODE_UNAVAILABLE|COORD_FROST_REFRESH_REFUSED/,
        );
        await eventually(() => (pending(2).length === 0 && current() === r.oldDigest) || undefined, 'node-2 discarded');
      }
      await eventually(
        async () =>
          ((await api('GET', `/v1/frost/refreshes/${started.id}`)).body as RefreshView).participants.every(
            (p) => p.acknowledged,
          ) || undefined,
        'every node acknowledged the outcome',
      );
      // Whatever happened, the three nodes hold shares of one group again: any two sign.
      const s = [await openShare(0), await openShare(1), await openShare(2)];
      expect(s[1]!.group).toEqual(s[0]!.group);
      expect(s[2]!.group).toEqual(s[0]!.group);
      expect(signs(s[0]!.group, s[0]!.share, s[2]!.share)).toBe(true);
      expect(signs(s[0]!.group, s[1]!.share, s[2]!.share)).toBe(true);
    }
    expect(hardCase).toBe(true);
  }, 600_000);

  it('no share, old or new, is anywhere in the clear: files of the cluster, process environments, CLI output', async () => {
    expect(seen.length).toBeGreaterThanOrEqual(9);
    const r = await sharesInTheClear(seen, {
      dir,
      processes: [...cluster.nodes, cluster.coordinator, ...cluster.kms],
      texts: cliOutput.map((text) => ({ where: 'cosigner frost output', text })),
    });
    expect(r.control.found).toBe(r.control.forms);
    // The coordinator's refresh records (with the nodes' signed statements) are in its one store, the nodes' in theirs.
    expect(r.files.some((f) => f.endsWith('coordinator.db'))).toBe(true);
    expect(r.files.some((f) => f.endsWith('frost.sqlite'))).toBe(true);
    expect(r.found).toEqual([]);
  });
});

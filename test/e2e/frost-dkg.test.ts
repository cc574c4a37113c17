import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createTransportKey, sealTo, type TransportKeyPair } from '@cosigner/frost/channel';
import { type DkgMember, DkgParticipant, type DkgRound1Message, round2Aad, sessionDigest } from '@cosigner/frost/dkg';
import { aggregate, commitNonces, signShare } from '@cosigner/frost/rounds';
import { checkShare, type GroupPublic, type KeyShare } from '@cosigner/frost/suite';
import type { Cluster } from '@cosigner/launcher/cluster';
import {
  type DkgRosterEntry,
  type DkgStatementPayload,
  rosterDigest,
  type SignedStatement,
  signStatement,
} from '@cosigner/protocol/frost-dkg';
import { type Identity, identityFromPem } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import {
  type FrostCluster,
  frostGroupOutcome,
  type FrostGroupView as GroupView,
  type RosterEntry,
  startFrostCluster,
} from '@cosigner/testkit/frost';
import type { CoordinatorApi } from '@cosigner/testkit/http';
import { runCosigner, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeCoordinator } from '../adversarial/fake-coordinator.ts';
import { RogueNode } from '../adversarial/rogue-node.ts';
import { sharesInTheClear, unsealShare } from './helpers.ts';

/**
 * FROST key generation among real processes: the testkit cluster (a KMS emulator per node over HTTP, the ledger
 * simulator, the coordinator, three nodes), each node given a symmetric KMS key to seal its share with and told by
 * its config (`frost.expect`) which rosters to join. Every protocol message crosses the real WebSocket transport.
 * - a roster no node expects is refused by the nodes, and no group is made;
 * - a participant that sends a bad round-2 share (a rogue client holding node-2's identity key) is named by the
 *   node that received it, and the session aborts everywhere: the node that did derive a share drops it;
 * - `cosigner frost dkg` makes a 2-of-3 group whose key the three nodes and the coordinator agree on; the shares,
 *   opened through each node's own KMS key, sign for the group address (any two of them); no share appears in
 *   the clear in any file of the cluster (data directories, stores, logs), any process environment or the output;
 * - a coordinator that alters a relayed round-2 package (a fake one holding the coordinator's message key) is
 *   named by the node that receives it, and the others drop what they derived.
 */

interface NodeGroupRow {
  address: string;
  dkg_id: string;
  threshold: number;
  my_index: number;
  group_public: string;
  transcript: string;
  sealed_share: string;
  status: string;
}

describe('FROST key generation among three real node processes', () => {
  let dir: string;
  let frost: FrostCluster;
  let cluster: Cluster;
  let api: CoordinatorApi;
  let ids: string[];
  let roster: RosterEntry[];
  /** Every share the test opened, to look for anywhere it must not be. */
  const shares: { label: string; bytes: Buffer }[] = [];
  const cliOutput: string[] = [];

  const outcome = (id: string): Promise<GroupView> => frostGroupOutcome(api, id);

  const nodeGroups = (i: number): NodeGroupRow[] => {
    const db = new Database(join(dir, `node-${i}`, 'frost.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT * FROM frost_groups').all() as NodeGroupRow[];
    } finally {
      db.close();
    }
  };

  /** Wait until `cond` holds (a node handles an abort after the coordinator recorded the failure). */
  const eventually = async (cond: () => boolean, what: string, ms = 20_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  beforeAll(async () => {
    dir = await tempDir('cosigner-frost-dkg-');
    // Each node's operator: a symmetric key in the node's own KMS account to seal shares with (created by the
    // account's administrator; the node's principal may GenerateDataKey / Decrypt / DescribeKey with it), and the
    // rosters this node may join: the three nodes 2-of-3 and 3-of-3.
    frost = await startFrostCluster({ dir, nodeConfig: { limits: { reconnectMaxMs: 1000 } }, expect: [2, 3] });
    ({ cluster, api, ids, roster } = frost);
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('refuses a bad request, and a roster no node expects makes no group', async () => {
    const unknown = await api('POST', '/v1/frost/groups', { participants: [ids[0], 'node-x'], threshold: 2 });
    expect(unknown.status).toBe(409);
    expect(unknown.body).toMatchObject({ code: 'COORD_FROST_NODE_UNAVAILABLE', details: { unknown: ['node-x'] } });
    const tooHigh = await api('POST', '/v1/frost/groups', { participants: ids, threshold: 4 });
    expect(tooHigh.status).toBe(400);
    expect(tooHigh.body).toMatchObject({ code: 'COORD_BAD_REQUEST', details: { field: 'threshold' } });

    // 2-of-2 among node-0 and node-1: in no node's frost.expect.
    const started = await api('POST', '/v1/frost/groups', { participants: [ids[0], ids[1]], threshold: 2 });
    expect(started.status).toBe(202);
    const g = await outcome((started.body as GroupView).id);
    expect(g.status).toBe('failed');
    expect(g.error).toMatchObject({ code: 'COORD_FROST_DKG_REFUSED', nodeCode: 'NODE_FROST_NOT_EXPECTED' });
    expect([ids[0], ids[1]]).toContain(g.error!.reportedBy);
    expect(g.address).toBeNull();
    for (let i = 0; i < 3; i++) expect(nodeGroups(i)).toEqual([]);
  }, 120_000);

  it('names a participant that sends a bad round-2 share; the session aborts and nobody keeps a group', async () => {
    // node-2's host is taken over: its process stopped, its identity key used by a client that follows the protocol
    // but sends node-0 a share that does not match its own round-1 commitment (encrypted and signed correctly).
    await cluster.stopService(ids[2]!, 'term');
    const identity = identityFromPem(await readFile(join(dir, 'node-2', 'identity.pem'), 'utf8'));
    const coordinatorKey = identityFromPem(
      await readFile(join(dir, 'coordinator', 'message-key.pem'), 'utf8'),
    ).publicKey;
    const cheat = new BadShareParticipant(identity, ids[2]!, 1);
    const rogue = await RogueNode.connect({
      coordinatorUrl: cluster.coordinator.url,
      nodeId: ids[2]!,
      identity,
      stellarKey: cluster.nodeInfo[2]!.stellarKey,
      network: cluster.networkPassphrase,
      coordinatorKey,
      answer: () => undefined,
      frostDkg: (b) => cheat.handle(b),
    });
    try {
      const started = await api('POST', '/v1/frost/groups', { participants: ids, threshold: 2 });
      expect(started.status).toBe(202);
      const g = await outcome((started.body as GroupView).id);
      expect(g.status).toBe('failed');
      expect(g.error).toMatchObject({
        code: 'COORD_FROST_DKG_REFUSED',
        nodeCode: 'FROST_DKG_BAD_SHARE',
        reportedBy: ids[0],
        culprits: [ids[2]],
      });
      expect(cheat.sentBadShare).toBe(true);
      // node-1 got good packages and derived a share of that group: pending until every result agreed, dropped
      // on the abort. node-0 never derived one.
      await eventually(() => nodeGroups(0).length === 0 && nodeGroups(1).length === 0, 'no group at node-0, node-1');
    } finally {
      rogue.close();
      await cluster.startService(ids[2]!);
    }
  }, 180_000);

  it('`cosigner frost dkg` makes a 2-of-3 group that the nodes and the coordinator agree on and any two shares sign for', async () => {
    const run = await runCosigner([
      'frost',
      'dkg',
      '--participants',
      ids.join(','),
      '--threshold',
      '2',
      '--coordinator-url',
      cluster.coordinator.url,
      '--api-key-file',
      cluster.adminKeyFile,
    ]);
    cliOutput.push(run.out);
    expect(run.code, run.out).toBe(0);
    const address = /address\s+(G[A-Z2-7]{55})/.exec(run.out)?.[1];
    expect(address, run.out).toBeDefined();

    const g = (await api('GET', `/v1/frost/groups/${address}`)).body as GroupView;
    expect(g).toMatchObject({ status: 'ready', threshold: 2, address });
    const show = await runCosigner([
      'frost',
      'show',
      address!,
      '--coordinator-url',
      cluster.coordinator.url,
      '--api-key-file',
      cluster.adminKeyFile,
    ]);
    cliOutput.push(show.out);
    expect(show.code, show.out).toBe(0);
    expect(show.out).toContain(`group ${g.id}: ready (2-of-3)`);

    const group: GroupPublic = {
      threshold: 2,
      participants: [1, 2, 3],
      groupPublicKey: g.groupPublicKey!,
      commitments: [],
      verifyingShares: Object.fromEntries(g.participants.map((p) => [String(p.index), p.verifyingShare!])),
    };
    for (let i = 0; i < 3; i++) {
      const rows = nodeGroups(i);
      expect(rows).toHaveLength(1);
      const row = rows[0]!;
      expect(row).toMatchObject({ address, dkg_id: g.id, threshold: 2, status: 'confirmed', transcript: g.transcript });
      expect(row.my_index).toBe(g.participants.find((p) => p.nodeId === ids[i])!.index);
      const theirs = JSON.parse(row.group_public) as GroupPublic;
      expect(theirs.groupPublicKey).toBe(g.groupPublicKey);
      expect(theirs.verifyingShares).toEqual(group.verifyingShares);
      group.commitments = theirs.commitments;
      // The node's operator reads the same through the node's admin API (public data only).
      const listed = (await (await fetch(`${cluster.nodes[i]!.url}/v1/frost/groups`)).json()) as {
        groups: { address: string; transcript: string; verifyingShares: Record<string, string> }[];
      };
      expect(listed.groups).toHaveLength(1);
      expect(listed.groups[0]).toMatchObject({
        address,
        transcript: g.transcript,
        verifyingShares: group.verifyingShares,
      });
      expect(JSON.stringify(listed)).not.toContain(JSON.parse(row.sealed_share).ciphertext);
    }

    // Each share opens only through its node's own KMS key (the test holds the node's credentials), and matches
    // that node's verifying share (share x G): what the node sealed is its share of this group.
    const opened: KeyShare[] = [];
    for (let i = 0; i < 3; i++) {
      const row = nodeGroups(i)[0]!;
      const signingShare = await unsealShare(frost.sealers[i]!, row.sealed_share, { node: ids[i]!, group: address! });
      opened.push(checkShare(group, { index: row.my_index, signingShare }));
      shares.push({ label: `${ids[i]}'s share`, bytes: Buffer.from(signingShare) });
    }
    // Any two shares make one ordinary Ed25519 signature for the group's G... address.
    for (const pair of [
      [0, 1],
      [1, 2],
      [0, 2],
    ]) {
      const message = randomBytes(32);
      const commits = pair.map((i) => commitNonces(opened[i]!));
      const commitments = commits.map((c) => c.commitment);
      const sigShares = Object.fromEntries(
        pair.map((i, k) => [
          String(opened[i]!.index),
          signShare(group, opened[i]!, commits[k]!.nonces, commitments, message),
        ]),
      );
      const signature = aggregate(group, commitments, message, sigShares);
      expect(Keypair.fromPublicKey(address!).verify(message, Buffer.from(signature))).toBe(true);
    }

    // The same roster again: every node used that expectation, so each refuses.
    const again = await api('POST', '/v1/frost/groups', { participants: ids, threshold: 2 });
    const refused = await outcome((again.body as GroupView).id);
    expect(refused.error).toMatchObject({ code: 'COORD_FROST_DKG_REFUSED', nodeCode: 'NODE_FROST_NOT_EXPECTED' });
  }, 240_000);

  it('no share is anywhere in the clear: files of the cluster (stores, logs), process environments, CLI output', async () => {
    expect(shares).toHaveLength(3);
    const r = await sharesInTheClear(shares, {
      dir,
      processes: [...cluster.nodes, cluster.coordinator, cluster.ledger, ...cluster.kms],
      texts: cliOutput.map((text) => ({ where: 'cosigner frost output', text })),
    });
    // Control: the same look finds a share written in any of its encodings.
    expect(r.control.found).toBe(r.control.forms);
    expect(r.files.some((f) => f.endsWith('frost.sqlite'))).toBe(true);
    expect(r.files.some((f) => f.includes('logs'))).toBe(true);
    expect(r.found).toEqual([]);
  });

  it('a coordinator that alters a relayed round-2 package is named by its recipient; nobody keeps the group', async () => {
    const identity = identityFromPem(await readFile(join(dir, 'coordinator', 'message-key.pem'), 'utf8'));
    const port = Number(new URL(cluster.coordinator.url).port);
    await cluster.stopService('coordinator', 'kill');
    const fake = new FakeCoordinator({
      identity,
      network: cluster.networkPassphrase,
      nodes: cluster.nodeInfo.map((x) => ({ id: x.id, identityKey: x.identityKey })),
    });
    try {
      await fake.listen(port);
      await Promise.all(ids.map((id) => fake.waitForSession(id, 60_000)));
      const dkgId = randomUUID();
      const participants: DkgRosterEntry[] = roster.map((r, i) => ({ index: i + 1, ...r }));
      const step = async (s: Body<'frost-dkg'>['step'], body: (i: number) => Partial<Body<'frost-dkg'>>) =>
        Promise.all(ids.map((id, i) => fake.frostDkg(id, { dkgId, step: s, ...body(i) })));
      const ok = (replies: Body<'frost-dkg-reply'>[]) => {
        for (const r of replies) expect(r.error).toBeUndefined();
        return replies.map((r) => r.statements!);
      };
      const keys = ok(await step('start', () => ({ threshold: 3, participants })));
      const r1 = ok(await step('round1', () => ({ statements: keys.flat() })));
      const r2 = ok(await step('round2', (i) => ({ statements: r1.filter((_, j) => j !== i).flat() })));
      const to = (st: SignedStatement) => (JSON.parse(st.p) as { to: number }).to;
      const tampered = (st: SignedStatement): SignedStatement => {
        const p = JSON.parse(st.p) as { message: { ciphertext: string } };
        const c = p.message.ciphertext;
        p.message.ciphertext = (c[0] === '0' ? '1' : '0') + c.slice(1);
        return { p: JSON.stringify(p), s: st.s };
      };
      // node-0's package from node-1 is altered on the way; the others travel as sent.
      const r3 = await step('round3', (i) => ({
        statements: r2
          .flat()
          .filter((st) => to(st) === i + 1)
          .map((st) => (i === 0 && (JSON.parse(st.p) as { nodeId: string }).nodeId === ids[1] ? tampered(st) : st)),
      }));
      expect(r3[0]!.error).toMatchObject({ code: 'NODE_FROST_RELAY_TAMPERED', culprits: ['coordinator'] });
      expect(r3[1]!.error).toBeUndefined();
      expect(r3[2]!.error).toBeUndefined();
      // node-1 and node-2 hold a pending group; the relay's abort (it could not complete) drops it.
      expect(nodeGroups(1).filter((g) => g.dkg_id === dkgId)).toHaveLength(1);
      for (const id of ids) fake.sendRaw(id, fake.frame(id, 'frost-dkg', { dkgId, step: 'abort', reason: 'test' }));
      await eventually(
        () => [0, 1, 2].every((i) => nodeGroups(i).every((g) => g.dkg_id !== dkgId)),
        'the pending groups dropped',
      );
      // A relay that swaps in its own transport key for a node is caught by that node's missing signature.
      const dkg2 = randomUUID();
      const starts = await Promise.all(
        ids.map((id) => fake.frostDkg(id, { dkgId: dkg2, step: 'start', threshold: 3, participants })),
      );
      const forged = starts.map((r) => r.statements![0]!);
      const p = JSON.parse(forged[1]!.p) as { transportKey: string };
      p.transportKey = Buffer.from(createTransportKey().publicKey).toString('hex');
      forged[1] = { p: JSON.stringify(p), s: forged[1]!.s };
      const r = await fake.frostDkg(ids[0]!, { dkgId: dkg2, step: 'round1', statements: forged });
      expect(r.error).toMatchObject({ code: 'NODE_FROST_RELAY_TAMPERED', culprits: ['coordinator'] });
      for (const id of ids) fake.sendRaw(id, fake.frame(id, 'frost-dkg', { dkgId: dkg2, step: 'abort' }));
    } finally {
      await fake.close();
      await cluster.startService('coordinator');
    }
  }, 180_000);
});

/**
 * A participant that follows the protocol (its statements signed with the identity key it holds) but sends
 * participant `victim` a round-2 share that does not match its round-1 commitment, encrypted and authenticated
 * exactly as an honest one: only the share check (RFC 9591 Appendix C.2 vss_verify) can catch it, and it names
 * the sender, whose signature proves it sent it.
 */
class BadShareParticipant {
  sentBadShare = false;
  #roster = '';
  #dkgId = '';
  #me: DkgRosterEntry | undefined;
  #transport: TransportKeyPair = createTransportKey();
  #members: DkgMember[] = [];
  #threshold = 0;
  #participant: DkgParticipant | undefined;

  constructor(
    private readonly identity: Identity,
    private readonly nodeId: string,
    private readonly victim: number,
  ) {}

  #sign(step: Body<'frost-dkg-reply'>['step'], bodies: object[]): Body<'frost-dkg-reply'> {
    return {
      dkgId: this.#dkgId,
      step,
      statements: bodies.map((b) =>
        signStatement(this.identity, {
          ...(b as DkgStatementPayload),
          dkgId: this.#dkgId,
          roster: this.#roster,
          from: this.#me!.index,
          nodeId: this.nodeId,
        }),
      ),
    };
  }

  handle(b: Body<'frost-dkg'>): Body<'frost-dkg-reply'> | undefined {
    const payload = (st: SignedStatement) => JSON.parse(st.p) as Record<string, unknown>;
    switch (b.step) {
      case 'start':
        this.#dkgId = b.dkgId;
        this.#threshold = b.threshold!;
        this.#roster = rosterDigest(b.dkgId, b.threshold!, b.participants!);
        this.#me = b.participants!.find((p) => p.nodeId === this.nodeId)!;
        this.#transport = createTransportKey();
        return this.#sign('start', [
          { kind: 'transport-key', transportKey: Buffer.from(this.#transport.publicKey).toString('hex') },
        ]);
      case 'round1':
        this.#members = b.statements!.map((st) => {
          const p = payload(st);
          return { index: p.from as number, nodeId: p.nodeId as string, transportKey: p.transportKey as string };
        });
        this.#participant = new DkgParticipant({
          session: { sessionId: this.#dkgId, threshold: this.#threshold, members: this.#members },
          index: this.#me!.index,
          transportSecretKey: this.#transport.secretKey,
        });
        return this.#sign('round1', [{ kind: 'round1', message: this.#participant.round1() }]);
      case 'round2': {
        const packages = this.#participant!.round2(b.statements!.map((st) => payload(st).message as DkgRound1Message));
        const session = sessionDigest({ sessionId: this.#dkgId, threshold: this.#threshold, members: this.#members });
        const transcript = Buffer.from(this.#participant!.transcript!, 'hex');
        const from = this.#me!.index;
        const out = packages.map((m) => {
          if (m.to !== this.victim) return m;
          // A random scalar below 2^252 (less than the group order): not what the commitment promises.
          const wrong = randomBytes(32);
          wrong[31]! &= 0x0f;
          const sealed = sealTo({
            ourSecret: this.#transport.secretKey,
            theirPublic: Buffer.from(this.#members.find((x) => x.index === m.to)!.transportKey, 'hex'),
            salt: session,
            from,
            to: m.to,
            aad: round2Aad(session, transcript, from, m.to),
            plaintext: wrong,
          });
          this.sentBadShare = true;
          return {
            ...m,
            iv: Buffer.from(sealed.iv).toString('hex'),
            ciphertext: Buffer.from(sealed.ciphertext).toString('hex'),
          };
        });
        return this.#sign(
          'round2',
          out.map((message) => ({ kind: 'round2', to: message.to, message })),
        );
      }
      default:
        return undefined;
    }
  }
}

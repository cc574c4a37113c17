import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createTransportKey, sealTo } from '@cosigner/frost/channel';
import { type DkgMember, round2Aad } from '@cosigner/frost/dkg';
import { groupDigest, RefreshParticipant, type RefreshRound1Message, refreshDigest } from '@cosigner/frost/refresh';
import { aggregate, commitNonces, signShare } from '@cosigner/frost/rounds';
import { createShareSealer, type ShareSealer } from '@cosigner/frost/sealer';
import { checkShare, type GroupPublic, type KeyShare } from '@cosigner/frost/suite';
import {
  type DkgStatementBody,
  refreshRosterDigest,
  type SignedStatement,
  signStatement,
} from '@cosigner/protocol/frost-dkg';
import { generateIdentity, type Identity } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import type Database from 'better-sqlite3';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../cosigner/src/audit.ts';
import type { FrostConfig } from '../../cosigner/src/frost/config.ts';
import { FrostDkgNode, openFrostDkg } from '../../cosigner/src/frost/dkg.ts';
import { FrostRefreshNode, MAX_REFRESH_SESSIONS, refuseRefresh } from '../../cosigner/src/frost/refresh.ts';
import { FrostGroupStore, frostStorePath } from '../../cosigner/src/frost/store.ts';
import { openLedgerDb } from '../../cosigner/src/ledger.ts';
import { FrostDkgRelay, type HubLike } from '../src/frost/dkg.ts';
import { FrostRefreshRelay, MAX_REFRESHES } from '../src/frost/refresh.ts';
import { refreshView } from '../src/frost/routes.ts';
import { type NodeRecord, type NodeRepository, openSqliteStore, type Store } from '../src/store.ts';

/**
 * FROST share refresh in one process, every part real but the transport: the coordinator's key-generation and
 * refresh relays (on the coordinator's SQLite store) and three nodes' handlers (their SQLite group stores, their audit logs, the
 * local sealer), joined by a hub stand-in that delivers each frame asynchronously, as the WebSocket does, and can
 * take a node offline, tamper with what a node answers, or "kill" a node (its handlers dropped, its store reopened
 * by a new instance, as a restarted process does). Among real node processes: frost-refresh.test.ts.
 */

const logger = pino({ level: 'silent' });
const coordLogger = createLogger({ name: 't', level: 'silent' });

interface Node {
  id: string;
  identity: Identity;
  dir: string;
  db: Database.Database;
  audit: AuditLog;
  store: FrostGroupStore;
  sealer: ShareSealer;
  dkg: FrostDkgNode;
  refresh: FrostRefreshNode;
}

type RefreshReply = Body<'frost-refresh-reply'>;

let dir: string;
let nodes: Node[];
let coordStore: Store | undefined;
let dkgRelay: FrostDkgRelay;
let relay: FrostRefreshRelay;
let hub: HubLike;
const offline = new Set<string>();
/** Frames the stand-in hub delivered to nodes, by type. */
let sent: { nodeId: string; type: string; body: Record<string, unknown> }[];
/** Change a node's answer before the relay sees it (a misbehaving node). */
let answer: (nodeId: string, reply: RefreshReply) => RefreshReply | undefined;

let roster: { nodeId: string; identityKey: string }[];

/** A node's FROST handlers over its files in `dir/<id>` (opened again after a "kill": the files stay). */
async function openNode(id: string, identity: Identity): Promise<Node> {
  const nodeDir = join(dir, id);
  const db = openLedgerDb(join(nodeDir, 'ledger.sqlite'));
  const audit = new AuditLog(db);
  const store = new FrostGroupStore(frostStorePath(nodeDir));
  const sealer = await createShareSealer({ type: 'local', keyFile: join(nodeDir, 'seal.key') }, { production: false });
  const config = {
    sealer: sealer as never,
    expect: [{ threshold: 2, participants: roster }],
    sessionTimeoutMs: 60_000,
  } as FrostConfig;
  const o = { nodeId: id, identity, config, sealer, store, audit, logger };
  return {
    id,
    identity,
    dir: nodeDir,
    db,
    audit,
    store,
    sealer,
    dkg: new FrostDkgNode(o),
    refresh: new FrostRefreshNode(o),
  };
}

async function closeNode(n: Node): Promise<void> {
  n.dkg.close();
  n.refresh.close();
  n.store.close();
  n.db.close();
  await n.sealer.close();
}

async function wire(): Promise<void> {
  const registry = {
    getNode: (id: string) => {
      const n = nodes.find((x) => x.id === id);
      return n && ({ id, identityKey: n.identity.publicKeyB64, stellarKey: 'G' } as NodeRecord);
    },
  } as unknown as NodeRepository;
  hub = {
    connected: () => nodes.filter((n) => !offline.has(n.id)).map((n) => ({ nodeId: n.id })),
    send<T extends MessageType>(nodeId: string, type: T, body: Body<T>): boolean {
      if (offline.has(nodeId)) return false;
      sent.push({ nodeId, type, body: body as Record<string, unknown> });
      const frame = structuredClone(body);
      setImmediate(() => {
        if (offline.has(nodeId)) return; // the connection went away with the frame in flight
        const n = nodes.find((x) => x.id === nodeId)!;
        if (type === 'frost-dkg') {
          void n.dkg.handle(frame as Body<'frost-dkg'>).then((r) => r && dkgRelay.onReply(nodeId, r));
        } else {
          void n.refresh.handle(frame as Body<'frost-refresh'>).then((r) => {
            if (offline.has(nodeId)) return; // its session went away before it answered
            const changed = r && answer(nodeId, r);
            if (changed) relay.onReply(nodeId, changed);
          });
        }
      });
      return true;
    },
  };
  coordStore = openSqliteStore(join(dir, 'coordinator'));
  dkgRelay = await FrostDkgRelay.open({ store: coordStore, nodes: registry, logger: coordLogger, exclusive: true });
  dkgRelay.attach(hub);
  relay = await FrostRefreshRelay.open({
    store: coordStore,
    dkg: dkgRelay,
    logger: coordLogger,
    stepTimeoutMs: 3000,
    exclusive: true,
  });
  relay.attach(hub);
}

async function until<T>(f: () => T | undefined | Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const settled = (id: string) =>
  until(async () => {
    const r = await relay.get(id);
    return r.status === 'running' ? undefined : r;
  }, `refresh ${id}`);

/** Every node's current share, opened from its store through its sealer. */
async function shares(address: string): Promise<KeyShare[]> {
  return Promise.all(
    nodes.map(async (n) => {
      const g = n.store.get(address)!;
      const signingShare = await n.sealer.unseal(g.sealedShare!, {
        purpose: 'frost-share',
        node: n.id,
        group: address,
      });
      return { index: g.myIndex, signingShare };
    }),
  );
}

/** Sign a random message with two shares; whether the result verifies for the group key. */
function signs(group: GroupPublic, address: string, a: KeyShare, b: KeyShare): boolean {
  const message = randomBytes(32);
  const commits = [commitNonces(a), commitNonces(b)];
  const commitments = commits.map((c) => c.commitment);
  const sigShares = {
    [String(a.index)]: signShare(group, a, commits[0]!.nonces, commitments, message),
    [String(b.index)]: signShare(group, b, commits[1]!.nonces, commitments, message),
  };
  try {
    return Keypair.fromPublicKey(address).verify(
      message,
      Buffer.from(aggregate(group, commitments, message, sigShares)),
    );
  } catch {
    return false; // aggregate verifies the shares and refuses a signature that does not verify
  }
}

let address: string;

beforeEach(async () => {
  dir = await tempDir('frost-refresh-relay-');
  sent = [];
  offline.clear();
  answer = (_id, r) => r;
  const ids = ['n1', 'n2', 'n3'].map((id) => ({ id, identity: generateIdentity().identity }));
  roster = ids.map((x) => ({ nodeId: x.id, identityKey: x.identity.publicKeyB64 }));
  nodes = [];
  for (const x of ids) nodes.push(await openNode(x.id, x.identity));
  await wire();
  const g = await dkgRelay.start({ participants: ['n1', 'n2', 'n3'], threshold: 2 });
  const ready = await until(async () => {
    const r = await dkgRelay.get(g.id);
    return r.status === 'running' ? undefined : r;
  }, 'key generation');
  expect(ready.status).toBe('ready');
  address = ready.address!;
  await until(async () => nodes.every((n) => n.store.get(address)?.status === 'confirmed'), 'groups confirmed');
});

afterEach(async () => {
  await relay?.close();
  await dkgRelay?.close();
  coordStore?.close();
  for (const n of nodes ?? []) await closeNode(n).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('FROST share refresh relayed among three nodes', () => {
  it('adopts new shares of the same key everywhere; old and new shares do not sign together', async () => {
    const before = (await dkgRelay.get(address)).group!;
    const old = await shares(address);
    const started = await relay.start({ group: address, createdBy: 'k1' });
    expect(started).toMatchObject({ status: 'running', step: 'start', address, createdBy: 'k1', acked: [] });
    const r = await settled(started.id);
    expect(r, JSON.stringify(r.error)).toMatchObject({ status: 'adopted', step: 'adopt', error: null });
    await until(async () => (await relay.get(r.id)).acked.length === 3, 'every node acknowledged');
    const after = (await dkgRelay.get(address)).group!;
    expect(after.groupPublicKey).toBe(before.groupPublicKey);
    expect(groupDigest(after)).toBe(r.digest);
    expect(r.oldDigest).toBe(groupDigest(before));
    expect(r.group).toEqual(after);
    for (const p of [1, 2, 3]) expect(after.verifyingShares[String(p)]).not.toBe(before.verifyingShares[String(p)]);
    for (const n of nodes) {
      expect(n.store.get(address)!.group).toEqual(after);
      expect(n.store.pendingRefreshes()).toEqual([]);
    }
    const fresh = await shares(address);
    for (const s of fresh) expect(() => checkShare(after, s)).not.toThrow();
    for (const s of old) expect(() => checkShare(after, s)).toThrow();
    expect(signs(after, address, fresh[0]!, fresh[1]!)).toBe(true);
    expect(signs(after, address, fresh[1]!, fresh[2]!)).toBe(true);
    // An old share with a new one: not a signature for the group key (whichever commitment is used).
    expect(signs(after, address, old[0]!, fresh[1]!)).toBe(false);
    expect(signs(before, address, old[0]!, fresh[1]!)).toBe(false);
    const view = refreshView(await relay.get(r.id));
    expect(view.participants.every((p) => p.acknowledged && p.verifyingShare)).toBe(true);
    expect((await relay.list(address)).map((x) => x.id)).toEqual([r.id]);
    expect((await relay.list()).map((x) => x.id)).toEqual([r.id]);
    expect(await relay.groupAddress((await dkgRelay.get(address)).id)).toBe(address);
    // A second refresh works from the adopted group.
    const again = await settled((await relay.start({ group: address })).id);
    expect(again.status).toBe('adopted');
    expect(again.oldDigest).toBe(r.digest);
  });

  it('refuses what it cannot run: unknown group, a node offline, one already running, too many', async () => {
    await expect(relay.start({ group: 'nope' })).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_FROST_GROUP_NOT_FOUND' }),
    );
    await expect(relay.get('nope')).rejects.toThrow(expect.objectContaining({ code: 'COORD_FROST_REFRESH_NOT_FOUND' }));
    offline.add('n3');
    await expect(relay.start({ group: address })).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_FROST_NODE_UNAVAILABLE', details: { unknown: [], offline: ['n3'] } }),
    );
    offline.clear();
    await relay.start({ group: address });
    await expect(relay.start({ group: address })).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_FROST_REFRESH_RUNNING' }),
    );
    expect(MAX_REFRESHES).toBeGreaterThanOrEqual(1);
    // a failed key generation is not a group to refresh
    offline.add('n1');
    const failed = await dkgRelay.start({ participants: ['n2', 'n3'], threshold: 2 });
    offline.clear();
    await expect(relay.start({ group: failed.id })).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_FROST_REFRESH_NOT_READY' }),
    );
  });

  it('a node that goes away mid-refresh fails it cleanly: everyone keeps the old share, which still signs', async () => {
    const old = await shares(address);
    const before = nodes[0]!.store.get(address)!.group;
    // n3 answers `start`, then its connection is gone when round1 is sent.
    answer = (id, r) => {
      if (id === 'n3' && r.step === 'start') offline.add('n3');
      return r;
    };
    const r = await settled((await relay.start({ group: address })).id);
    expect(r).toMatchObject({ status: 'failed', error: { code: 'COORD_FROST_NODE_UNAVAILABLE', unreachable: ['n3'] } });
    for (const n of nodes) {
      expect(n.store.get(address)!.group).toEqual(before);
      expect(n.store.pendingRefreshes()).toEqual([]);
    }
    expect(signs(before, address, old[0]!, old[2]!)).toBe(true);
    // n3 comes back: it is told the abort (and that counts as heard).
    offline.clear();
    expect((await relay.get(r.id)).acked).not.toContain('n3');
    await relay.sync('n3');
    expect((await relay.get(r.id)).acked).toContain('n3');
    expect(sent.filter((s) => s.nodeId === 'n3' && s.body.step === 'abort').length).toBeGreaterThan(0);
  });

  it('a refresh another replica recorded failed meanwhile is not adopted: every node keeps its share', async () => {
    const before = nodes[0]!.store.get(address)!.group;
    const started = await relay.start({ group: address });
    const lost = { code: 'COORD_FROST_RELAY_LOST', message: 'the replica relaying it stopped', culprits: [] };
    expect(coordStore!.failFrostRefresh(started.id, lost, Date.now())).toBe(true);
    // The relay still runs the rounds and decides; its adoption loses to the recorded failure, which it tells.
    await until(async () => sent.some((x) => x.body.refreshId === started.id && x.body.step === 'abort'), 'abort');
    await until(async () => nodes.every((n) => n.store.pendingRefreshes().length === 0), 'new shares discarded');
    for (const n of nodes) expect(n.store.get(address)!.group).toEqual(before);
    expect((await dkgRelay.get(address)).group).toEqual(before);
    expect(await relay.get(started.id)).toMatchObject({ status: 'failed', error: lost, digest: null });
  });

  it('a node that reports another group is named; nobody switches', async () => {
    const before = nodes[0]!.store.get(address)!.group;
    answer = (id, r) => {
      if (id !== 'n2' || r.step !== 'round3') return r;
      const p = JSON.parse(r.statements![0]!.p) as Record<string, unknown>;
      p.transcript = randomBytes(32).toString('hex');
      const n = nodes.find((x) => x.id === id)!;
      return { ...r, statements: [signStatement(n.identity, p as never)] };
    };
    const r = await settled((await relay.start({ group: address })).id);
    expect(r.error).toMatchObject({ code: 'COORD_FROST_REFRESH_DISAGREE', culprits: ['n2'], disagreeing: ['n2'] });
    await until(async () => nodes.every((n) => n.store.pendingRefreshes().length === 0), 'new shares discarded');
    for (const n of nodes) expect(n.store.get(address)!.group).toEqual(before);
  });

  it('a report whose group does not hash to its digest, or a statement not its author’s, is named', async () => {
    answer = (id, r) => {
      if (id !== 'n1' || r.step !== 'round3') return r;
      const p = JSON.parse(r.statements![0]!.p) as Record<string, unknown>;
      p.digest = randomBytes(32).toString('hex');
      return { ...r, statements: [signStatement(nodes[0]!.identity, p as never)] };
    };
    const bad = await settled((await relay.start({ group: address })).id);
    expect(bad.error).toMatchObject({ code: 'COORD_FROST_REFRESH_BAD_STATEMENT', culprits: ['n1'] });
    answer = (id, r) =>
      id === 'n2' && r.step === 'round1'
        ? {
            ...r,
            statements: r.statements!.map((st) => ({
              p: st.p,
              s: signStatement(generateIdentity().identity, JSON.parse(st.p)).s,
            })),
          }
        : r;
    const foreign = await settled((await relay.start({ group: address })).id);
    expect(foreign.error).toMatchObject({
      code: 'COORD_FROST_REFRESH_BAD_STATEMENT',
      culprits: ['n2'],
      reportedBy: 'n2',
    });
    await until(async () => nodes.every((n) => n.store.pendingRefreshes().length === 0), 'new shares discarded');
  });

  it('a relayed package altered in transit is refused by its recipient, which names the relay', async () => {
    const real = hub.send.bind(hub);
    hub.send = <T extends MessageType>(nodeId: string, type: T, body: Body<T>): boolean => {
      const b = body as Body<'frost-refresh'>;
      if (type === 'frost-refresh' && b.step === 'round3' && nodeId === 'n1') {
        const st = b.statements![0]!;
        const p = JSON.parse(st.p) as { message: { ciphertext: string } };
        p.message.ciphertext = (p.message.ciphertext[0] === '0' ? '1' : '0') + p.message.ciphertext.slice(1);
        return real(nodeId, type, {
          ...b,
          statements: [{ p: JSON.stringify(p), s: st.s }, ...b.statements!.slice(1)],
        } as Body<T>);
      }
      return real(nodeId, type, body);
    };
    const r = await settled((await relay.start({ group: address })).id);
    expect(r.error).toMatchObject({
      code: 'COORD_FROST_REFRESH_REFUSED',
      nodeCode: 'NODE_FROST_RELAY_TAMPERED',
      reportedBy: 'n1',
      culprits: ['coordinator'],
    });
  });

  it('a node that sends each recipient the package meant for another is named: it does not authenticate', async () => {
    // n2 signs its round-2 statements, but each carries the package sealed for the other recipient.
    answer = (id, r) => {
      if (id !== 'n2' || r.step !== 'round2') return r;
      const ps = r.statements!.map((st) => JSON.parse(st.p) as { to: number; message: Record<string, unknown> });
      const [a, b] = ps;
      const swapped = [
        { ...a!, message: { ...b!.message, to: a!.to } },
        { ...b!, message: { ...a!.message, to: b!.to } },
      ];
      const n = nodes.find((x) => x.id === id)!;
      return { ...r, statements: swapped.map((p) => signStatement(n.identity, p as never)) };
    };
    const r = await settled((await relay.start({ group: address })).id);
    expect(r.status).toBe('failed');
    expect(r.error).toMatchObject({ nodeCode: 'FROST_DKG_UNAUTHENTIC', culprits: ['n2'] });
  });

  it('a participant that sends an authentic point off its own commitment is named FROST_DKG_BAD_SHARE', async () => {
    // n2's host taken over: a client with n2's identity key follows the protocol but sends n1 a wrong point,
    // encrypted and authenticated exactly as an honest one; only n1's check against n2's commitment catches it.
    const rogue = new BadPointRefresh(nodes[1]!, 1);
    nodes[1]!.refresh = rogue as unknown as FrostRefreshNode;
    const old = await Promise.all([0, 2].map(async (i) => (await shares(address))[i]!));
    const r = await settled((await relay.start({ group: address })).id);
    expect(rogue.sentBadPoint).toBe(true);
    expect(r.error).toMatchObject({
      code: 'COORD_FROST_REFRESH_REFUSED',
      nodeCode: 'FROST_DKG_BAD_SHARE',
      reportedBy: 'n1',
      culprits: ['n2'],
    });
    await until(async () => [0, 2].every((i) => nodes[i]!.store.pendingRefreshes().length === 0), 'nothing kept');
    expect(signs(nodes[0]!.store.get(address)!.group, address, old[0]!, old[1]!)).toBe(true);
  });

  it('a node killed between the phases keeps the adopted share when it comes back', async () => {
    const old = await shares(address);
    // n3 reports, then "dies" before the adoption reaches it: its process (handlers) gone, its files kept.
    answer = (id, r) => {
      if (id === 'n3' && r.step === 'round3') {
        offline.add('n3');
        return undefined; // it died before its report left
      }
      return r;
    };
    const started = await relay.start({ group: address });
    await until(async () => offline.has('n3'), 'n3 reported');
    // its report was lost with it: the relay still waits for it
    const n3 = nodes[2]!;
    expect(n3.store.pendingRefreshes()).toEqual([started.id]);
    await closeNode(n3);
    nodes[2] = await openNode('n3', n3.identity);
    expect(nodes[2]!.store.pendingRefreshes()).toEqual([started.id]);
    offline.clear();
    await relay.sync('n3'); // its report never arrived: the refresh fails and n3 discards what it kept
    const failed = await settled(started.id);
    expect(failed.error).toMatchObject({ code: 'COORD_FROST_REFRESH_TIMEOUT', unreachable: ['n3'] });
    await until(async () => nodes[2]!.store.pendingRefreshes().length === 0, 'n3 discarded its new share');
    expect(signs(nodes[0]!.store.get(address)!.group, address, old[0]!, old[2]!)).toBe(true);

    // Now n3's report arrives, and it dies before the adoption: on restart it is told the adopted digest.
    answer = (id, r) => {
      if (id === 'n3' && r.step === 'round3') setImmediate(() => offline.add('n3'));
      return r;
    };
    const second = await relay.start({ group: address });
    const adopted = await settled(second.id);
    expect(adopted.status).toBe('adopted');
    // the adopt frame was lost with its connection: n3 holds both shares, the old one current
    const n3b = nodes[2]!;
    expect(adopted.acked).not.toContain('n3');
    expect(n3b.store.pendingRefreshes()).toEqual([second.id]);
    await closeNode(n3b);
    nodes[2] = await openNode('n3', n3b.identity);
    expect(nodes[2]!.store.get(address)!.group).not.toEqual(adopted.group);
    offline.clear();
    await relay.sync('n3'); // restarted, it syncs: the coordinator tells it the adopted digest
    await until(async () => (await relay.get(second.id)).acked.length === 3, 'all acknowledged');
    for (const n of nodes) {
      expect(n.store.get(address)!.group).toEqual(adopted.group);
      expect(n.store.pendingRefreshes()).toEqual([]);
    }
    const fresh = await shares(address);
    expect(signs(adopted.group!, address, fresh[0]!, fresh[2]!)).toBe(true);
    // told again (a repeated adopt after it switched): acknowledged, idempotent
    const r = await nodes[2]!.refresh.handle({ refreshId: second.id, address, step: 'adopt', digest: adopted.digest! });
    expect(r?.error).toBeUndefined();
  });

  it('a coordinator that stops mid-refresh records it failed; the nodes discard their new share when they sync', async () => {
    let reported = 0;
    answer = (_id, r) => {
      if (r.step === 'round3') reported++;
      return r.step === 'round3' && reported === 3 ? undefined : r; // the third report is lost with the coordinator
    };
    const started = await relay.start({ group: address });
    await until(async () => nodes.every((n) => n.store.pendingRefreshes().length === 1), 'every node kept a new share');
    // The coordinator process dies: nothing closes the relay; a new one opens the same store.
    const crashed = relay;
    relay = await FrostRefreshRelay.open({ store: coordStore!, dkg: dkgRelay, logger: coordLogger, exclusive: true });
    relay.attach(hub);
    expect(await relay.get(started.id)).toMatchObject({
      status: 'failed',
      error: { code: 'COORD_FROST_REFRESH_TIMEOUT' },
    });
    for (const n of nodes) await relay.sync(n.id);
    await until(async () => nodes.every((n) => n.store.pendingRefreshes().length === 0), 'new shares discarded');
    expect((await relay.get(started.id)).acked).toHaveLength(3);
    await crashed.close();
  });

  it('refuses malformed answers: a wrong count, packages to the wrong nodes, a group that is not one', async () => {
    const resign = (id: string, r: RefreshReply, f: (p: Record<string, unknown>, i: number) => void) => {
      const n = nodes.find((x) => x.id === id)!;
      return {
        ...r,
        statements: r.statements!.map((st, i) => {
          const p = JSON.parse(st.p) as Record<string, unknown>;
          f(p, i);
          return signStatement(n.identity, p as never);
        }),
      };
    };
    answer = (id, r) => (id === 'n1' && r.step === 'start' ? { ...r, statements: [] } : r);
    expect((await settled((await relay.start({ group: address })).id)).error).toMatchObject({
      code: 'COORD_FROST_REFRESH_BAD_STATEMENT',
      culprits: ['n1'],
    });
    answer = (id, r) => (id === 'n2' && r.step === 'round2' ? resign(id, r, (p) => (p.to = 1)) : r);
    expect((await settled((await relay.start({ group: address })).id)).error).toMatchObject({
      code: 'COORD_FROST_REFRESH_BAD_STATEMENT',
      culprits: ['n2'],
    });
    answer = (id, r) => (id === 'n3' && r.step === 'round3' ? resign(id, r, (p) => (p.group = { no: 1 })) : r);
    expect((await settled((await relay.start({ group: address })).id)).error).toMatchObject({
      code: 'COORD_FROST_REFRESH_BAD_STATEMENT',
      culprits: ['n3'],
    });
    await until(async () => nodes.every((n) => n.store.pendingRefreshes().length === 0), 'new shares discarded');
  });

  it('an acknowledgement is taken only when signed by its node for this refresh and digest', async () => {
    answer = (id, r) => (id === 'n1' && r.step === 'adopt' ? undefined : r);
    const r = await settled((await relay.start({ group: address })).id);
    await until(async () => (await relay.get(r.id)).acked.length === 2, 'n2 and n3 acknowledged');
    relay.onReply('n1', {
      refreshId: r.id,
      step: 'adopt',
      error: { code: 'NODE_FROST_RESULT_MISMATCH', message: 'x' },
    });
    const other = nodes[1]!;
    const forged = signStatement(other.identity, {
      kind: 'refresh-adopted',
      digest: r.digest!,
      dkgId: r.id,
      roster: r.roster,
      from: 1,
      nodeId: 'n1',
    });
    relay.onReply('n1', { refreshId: r.id, step: 'adopt', statements: [forged] });
    expect((await relay.get(r.id)).acked).toEqual(['n2', 'n3']);
    // told again on sync, it acknowledges properly
    answer = (_id, x) => x;
    await relay.sync('n1');
    await until(async () => (await relay.get(r.id)).acked.length === 3, 'n1 acknowledged');
    await relay.sync('n1'); // nothing left to tell
    // the store a coordinator opens in its data directory holds the same record
    const again = openSqliteStore(join(dir, 'coordinator'));
    expect(again.getFrostRefresh(r.id)?.acked).toEqual(['n1', 'n2', 'n3']);
    again.close();
  });

  it('a refresh step that times out names the silent node', async () => {
    answer = (id, r) => (id === 'n2' && r.step === 'round2' ? undefined : r);
    const r = await settled((await relay.start({ group: address })).id);
    expect(r.error).toMatchObject({ code: 'COORD_FROST_REFRESH_TIMEOUT', culprits: ['n2'] });
  });

  it("the node refuses what does not fit its group, and answers each step's errors without throwing", async () => {
    const n = nodes[0]!;
    const g = n.store.get(address)!;
    const step = (b: Partial<Body<'frost-refresh'>>) =>
      n.refresh.handle({ refreshId: 'r1', address, step: 'start', ...b } as Body<'frost-refresh'>);
    expect((await step({ address: Keypair.random().publicKey(), participants: g.participants }))?.error).toMatchObject({
      code: 'NODE_FROST_NOT_EXPECTED',
    });
    const swapped = g.participants.map((p) => ({ ...p, identityKey: generateIdentity().identity.publicKeyB64 }));
    expect((await step({ participants: swapped }))?.error).toMatchObject({ code: 'NODE_FROST_NOT_EXPECTED' });
    expect((await step({ step: 'round1', statements: [] }))?.error).toMatchObject({ code: 'NODE_FROST_BAD_STEP' });
    const ok = await step({ participants: g.participants });
    expect(ok?.error).toBeUndefined();
    expect(n.refresh.open).toBe(1);
    expect((await step({ participants: g.participants }))?.error).toMatchObject({ code: 'NODE_FROST_BAD_STEP' });
    expect((await step({ refreshId: 'r2', participants: g.participants }))?.error).toMatchObject({
      code: 'NODE_FROST_BUSY',
    });
    // a relayed statement that is not its author's: the relay is named, and the session is gone
    const forged: SignedStatement = {
      ...ok!.statements![0]!,
      s: ok!.statements![0]!.s.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')),
    };
    expect((await step({ step: 'round1', statements: [forged] }))?.error).toMatchObject({
      code: 'NODE_FROST_RELAY_TAMPERED',
      culprits: ['coordinator'],
    });
    expect(n.refresh.open).toBe(0);
    expect(MAX_REFRESH_SESSIONS).toBeGreaterThan(0);
    // adopt of something it never kept, and an abort of nothing: an error, and nothing
    expect((await step({ step: 'adopt', digest: '00'.repeat(32) }))?.error).toMatchObject({
      code: 'NODE_FROST_BAD_STEP',
    });
    expect(await step({ step: 'abort' })).toBeUndefined();
    expect(refuseRefresh({ refreshId: 'x', address, step: 'start' })?.error).toMatchObject({
      code: 'NODE_FROST_NOT_EXPECTED',
    });
    expect(refuseRefresh({ refreshId: 'x', address, step: 'abort' })).toBeUndefined();
    // The handlers a node process opens from its config: with and without a frost section.
    const opened = { nodeId: 'n9', production: false, identity: n.identity, audit: n.audit, logger };
    const none = await openFrostDkg({ ...opened, dataDir: join(dir, 'n9'), config: undefined });
    expect((await none.refresh({ refreshId: 'x', address, step: 'start' }))?.error?.code).toBe(
      'NODE_FROST_NOT_EXPECTED',
    );
    await none.close();
    const config = { sealer: { type: 'local', keyFile: join(dir, 'n9.key') }, expect: [], sessionTimeoutMs: 1000 };
    const some = await openFrostDkg({ ...opened, dataDir: join(dir, 'n9'), config: config as FrostConfig });
    expect(
      (await some.refresh({ refreshId: 'x', address, step: 'start', participants: g.participants }))?.error?.code,
    ).toBe('NODE_FROST_NOT_EXPECTED');
    await some.close();
  });

  it('a node told to adopt another digest than the one it derived keeps its current share', async () => {
    const reports = new Map<string, SignedStatement>();
    answer = (id, r) => {
      if (r.step !== 'round3') return r;
      reports.set(id, r.statements![0]!); // nobody's report reaches the relay
      return undefined;
    };
    const started = await relay.start({ group: address });
    await until(async () => nodes.every((n) => n.store.pendingRefreshes().length === 1) && reports.size === 3, 'kept');
    const n = nodes[0]!;
    const before = n.store.get(address)!.group;
    const adopt = (digest: string, statements: SignedStatement[]) =>
      n.refresh.handle({ refreshId: started.id, address, step: 'adopt', digest, statements });
    const all = ['n1', 'n2', 'n3'].map((id) => reports.get(id)!);
    const r = await adopt('ab'.repeat(32), all);
    expect(r?.error).toMatchObject({ code: 'NODE_FROST_RESULT_MISMATCH' });
    // Its own digest, but not every participant's signed report showing it: a relay that adopts a refresh some
    // node did not derive (or forges reports) is refused, and this node keeps its current share.
    const mine = (JSON.parse(all[0]!.p) as { digest: string }).digest;
    const other = JSON.parse(all[1]!.p) as Record<string, unknown>;
    const lying = signStatement(nodes[1]!.identity, { ...other, digest: 'cd'.repeat(32) } as never);
    const forged = { p: all[2]!.p, s: all[1]!.s };
    for (const statements of [
      [],
      all.slice(0, 2),
      [all[0]!, all[0]!, all[1]!],
      [all[0]!, lying, all[2]!],
      [all[0]!, all[1]!, forged],
    ]) {
      expect((await adopt(mine, statements))?.error).toMatchObject({
        code: 'NODE_FROST_RELAY_TAMPERED',
        culprits: ['coordinator'],
      });
    }
    expect(n.store.get(address)!.group).toEqual(before);
    expect(n.store.pendingRefreshes()).toEqual([started.id]);
    // With all three signed reports it switches.
    expect((await adopt(mine, all))?.error).toBeUndefined();
    expect(groupDigest(n.store.get(address)!.group)).toBe(mine);
    // the relay ignores an acknowledgement that is an error, or of a refresh that was not adopted
    relay.onReply('n1', { refreshId: started.id, step: 'adopt', error: { code: 'X', message: 'x' } });
    relay.onReply('n1', { refreshId: 'unknown', step: 'round1' });
    expect((await relay.get(started.id)).acked).toEqual([]);
  });
});

describe('FROST refresh routes on the real app', () => {
  it('answer 401 without a key, 404 with a code for an unknown group or refresh, and are in the API document', async () => {
    const { harness, TestNode } = await import('./helpers.ts');
    const h = await harness({ nodes: [new TestNode('a'), new TestNode('b')] });
    const auth = { authorization: `Bearer ${h.adminKey}` };
    try {
      const post = await h.app.inject({ method: 'POST', url: '/v1/frost/groups/nope/refresh' });
      expect(post.statusCode).toBe(401);
      const missing = await h.app.inject({ method: 'POST', url: '/v1/frost/groups/nope/refresh', headers: auth });
      expect(missing.statusCode).toBe(404);
      expect(missing.json()).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_FOUND' });
      const one = await h.app.inject({ method: 'GET', url: '/v1/frost/refreshes/nope', headers: auth });
      expect(one.statusCode).toBe(404);
      expect(one.json()).toMatchObject({ code: 'COORD_FROST_REFRESH_NOT_FOUND' });
      const bad = await h.app.inject({ method: 'GET', url: '/v1/frost/refreshes/no%20pe', headers: auth });
      expect(bad.statusCode).toBe(400);
      const list = await h.app.inject({ method: 'GET', url: '/v1/frost/groups/nope/refreshes', headers: auth });
      expect(list.statusCode).toBe(404);
      const doc = (await h.app.inject({ method: 'GET', url: '/docs/json' })).json() as {
        paths: Record<string, Record<string, unknown>>;
        components: { schemas: Record<string, unknown> };
      };
      expect(doc.paths['/v1/frost/groups/{id}/refresh']!.post).toBeDefined();
      expect(doc.paths['/v1/frost/refreshes/{id}']!.get).toBeDefined();
      expect(doc.paths['/v1/frost/groups/{id}/refreshes']!.get).toBeDefined();
      expect(doc.components.schemas.FrostRefresh).toBeDefined();
    } finally {
      await h.close();
    }
  });

  it('list a group’s refreshes and show one, as the relay records them', async () => {
    const r = await settled((await relay.start({ group: address })).id);
    const { registerFrostRoutes } = await import('../src/frost/routes.ts');
    const Fastify = (await import('fastify')).default;
    const app = Fastify();
    app.addSchema({ $id: 'ErrorBody', type: 'object' });
    registerFrostRoutes(app, { relay: dkgRelay, refresh: relay });
    try {
      const list = await app.inject({ method: 'GET', url: `/v1/frost/groups/${address}/refreshes` });
      expect(list.json()).toMatchObject({ refreshes: [{ id: r.id, status: 'adopted', address }] });
      const one = await app.inject({ method: 'GET', url: `/v1/frost/refreshes/${r.id}` });
      expect(one.json()).toMatchObject({ id: r.id, digest: r.digest, oldDigest: r.oldDigest });
      const started = await app.inject({ method: 'POST', url: `/v1/frost/groups/${address}/refresh` });
      expect(started.statusCode).toBe(202);
      expect(started.json()).toMatchObject({ status: 'running', address });
      await settled(started.json().id);
    } finally {
      await app.close();
    }
  });
});

/** A refresh participant holding n2's identity key that sends `victim` a point off its own commitment. */
class BadPointRefresh {
  sentBadPoint = false;
  #transport = createTransportKey();
  #participant: RefreshParticipant | undefined;
  #members: DkgMember[] = [];
  #roster = '';
  #refreshId = '';

  constructor(
    private readonly node: Node,
    private readonly victim: number,
  ) {}

  #reply(step: RefreshReply['step'], bodies: DkgStatementBody[]): RefreshReply {
    const g = this.node.store.get(address)!;
    return {
      refreshId: this.#refreshId,
      step,
      statements: bodies.map((b) =>
        signStatement(this.node.identity, {
          ...b,
          dkgId: this.#refreshId,
          roster: this.#roster,
          from: g.myIndex,
          nodeId: this.node.id,
        }),
      ),
    };
  }

  async handle(b: Body<'frost-refresh'>): Promise<RefreshReply | undefined> {
    const g = this.node.store.get(address)!;
    const payload = (st: SignedStatement) => JSON.parse(st.p) as Record<string, unknown>;
    switch (b.step) {
      case 'start':
        this.#refreshId = b.refreshId;
        this.#roster = refreshRosterDigest(b.refreshId, address, g.threshold, g.participants);
        return this.#reply('start', [
          { kind: 'refresh-transport-key', transportKey: Buffer.from(this.#transport.publicKey).toString('hex') },
        ]);
      case 'round1':
        this.#members = b.statements!.map((st) => {
          const p = payload(st);
          return { index: p.from as number, nodeId: p.nodeId as string, transportKey: p.transportKey as string };
        });
        this.#participant = new RefreshParticipant({
          session: { sessionId: this.#refreshId, group: g.group, members: this.#members },
          index: g.myIndex,
          transportSecretKey: this.#transport.secretKey,
        });
        return this.#reply('round1', [{ kind: 'refresh-round1', message: this.#participant.round1() }]);
      case 'round2': {
        const packages = this.#participant!.round2(
          b.statements!.map((st) => payload(st).message as RefreshRound1Message),
        );
        const digest = refreshDigest({ sessionId: this.#refreshId, group: g.group, members: this.#members });
        const transcript = Buffer.from(this.#participant!.transcript!, 'hex');
        const out = packages.map((m) => {
          if (m.to !== this.victim) return m;
          const wrong = randomBytes(32);
          wrong[31]! &= 0x0f;
          const sealed = sealTo({
            ourSecret: this.#transport.secretKey,
            theirPublic: Buffer.from(this.#members.find((x) => x.index === m.to)!.transportKey, 'hex'),
            salt: digest,
            from: g.myIndex,
            to: m.to,
            aad: round2Aad(digest, transcript, g.myIndex, m.to),
            plaintext: wrong,
          });
          this.sentBadPoint = true;
          return {
            ...m,
            iv: Buffer.from(sealed.iv).toString('hex'),
            ciphertext: Buffer.from(sealed.ciphertext).toString('hex'),
          };
        });
        return this.#reply(
          'round2',
          out.map((message) => ({ kind: 'refresh-round2', to: message.to, message })),
        );
      }
      default:
        return undefined;
    }
  }

  close(): void {}
}

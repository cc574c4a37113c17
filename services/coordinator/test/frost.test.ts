import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createTransportKey, type TransportKeyPair } from '@cosigner/frost/channel';
import {
  type DkgMember,
  type DkgOutput,
  DkgParticipant,
  type DkgRound1Message,
  type DkgRound2Message,
} from '@cosigner/frost/dkg';
import {
  type DkgRosterEntry,
  type DkgStatementBody,
  openStatement,
  rosterDigest,
  type SignedStatement,
  signStatement,
} from '@cosigner/protocol/frost-dkg';
import { generateIdentity, type Identity } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FrostDkgRelay, type HubLike } from '../src/frost/dkg.ts';
import { groupView } from '../src/frost/routes.ts';
import { type NodeRecord, type NodeRepository, openSqliteStore, type Store } from '../src/store.ts';
import { harness, TestNode } from './helpers.ts';

/**
 * The coordinator's FROST key-generation relay, in one process: honest participants written here over
 * packages/frost (what a node runs), reached through a hub stand-in that delivers each frame asynchronously, as
 * the WebSocket does. Misbehaving participants answer with errors, foreign statements, disagreeing results or
 * nothing. The routes are tested on the real app (app.inject). Among real node processes: test/e2e/frost-dkg.test.ts.
 */

type Reply = Body<'frost-dkg-reply'>;
type Behaviour = 'honest' | 'refuse' | 'silent' | 'foreign' | 'other-result' | 'bad-to';

class Participant {
  readonly identity: Identity = generateIdentity().identity;
  #roster = '';
  #dkgId = '';
  #me: DkgRosterEntry | undefined;
  #transport: TransportKeyPair = createTransportKey();
  #participant: DkgParticipant | undefined;
  out: DkgOutput | undefined;
  steps: string[] = [];

  constructor(
    readonly nodeId: string,
    public behaviour: Behaviour = 'honest',
  ) {}

  #reply(step: Reply['step'], bodies: DkgStatementBody[], identity = this.identity): Reply {
    return {
      dkgId: this.#dkgId,
      step,
      statements: bodies.map((b) =>
        signStatement(identity, {
          ...b,
          dkgId: this.#dkgId,
          roster: this.#roster,
          from: this.#me!.index,
          nodeId: this.nodeId,
        }),
      ),
    };
  }

  handle(b: Body<'frost-dkg'>): Reply | undefined {
    this.steps.push(b.step);
    if (b.step === 'abort') return undefined;
    if (this.behaviour === 'silent' && b.step === 'round1') return undefined;
    if (this.behaviour === 'refuse' && b.step === 'round2') {
      return {
        dkgId: b.dkgId,
        step: b.step,
        error: { code: 'FROST_DKG_BAD_PROOF', message: 'bad proof', culprits: ['n2'] },
      };
    }
    const payload = (st: SignedStatement) => JSON.parse(st.p) as Record<string, unknown>;
    switch (b.step) {
      case 'start':
        this.#dkgId = b.dkgId;
        this.#roster = rosterDigest(b.dkgId, b.threshold!, b.participants!);
        this.#me = b.participants!.find((p) => p.nodeId === this.nodeId)!;
        this.#transport = createTransportKey();
        this.#threshold = b.threshold!;
        return this.#reply('start', [
          { kind: 'transport-key', transportKey: Buffer.from(this.#transport.publicKey).toString('hex') },
        ]);
      case 'round1': {
        const members: DkgMember[] = b.statements!.map((st) => {
          const p = payload(st);
          return { index: p.from as number, nodeId: p.nodeId as string, transportKey: p.transportKey as string };
        });
        this.#participant = new DkgParticipant({
          session: { sessionId: this.#dkgId, threshold: this.#threshold, members },
          index: this.#me!.index,
          transportSecretKey: this.#transport.secretKey,
        });
        const message = this.#participant.round1();
        if (this.behaviour === 'foreign')
          return this.#reply('round1', [{ kind: 'round1', message }], generateIdentity().identity);
        return this.#reply('round1', [{ kind: 'round1', message }]);
      }
      case 'round2': {
        const packages = this.#participant!.round2(b.statements!.map((st) => payload(st).message as DkgRound1Message));
        if (this.behaviour === 'bad-to')
          return this.#reply(
            'round2',
            packages.map((m) => ({ kind: 'round2', to: 1, message: m })),
          );
        return this.#reply(
          'round2',
          packages.map((m) => ({ kind: 'round2', to: m.to, message: m })),
        );
      }
      case 'round3': {
        this.out = this.#participant!.round3(b.statements!.map((st) => payload(st).message as DkgRound2Message));
        const transcript = this.behaviour === 'other-result' ? randomBytes(32).toString('hex') : this.out.transcript;
        return this.#reply('round3', [
          { kind: 'result', group: this.out.group, address: this.out.address, transcript },
        ]);
      }
      default:
        return this.#reply('confirm', [{ kind: 'confirmed', address: this.out!.address }]);
    }
  }
  #threshold = 0;
}

let dir: string;
let store: Store | undefined;
let relay: FrostDkgRelay;
let parts: Participant[];
let sent: { nodeId: string; body: Body<'frost-dkg'> }[];
const offline = new Set<string>();

async function setup(behaviours: Behaviour[], stepTimeoutMs = 5000): Promise<void> {
  parts = behaviours.map((b, i) => new Participant(`n${i + 1}`, b));
  const nodes = {
    getNode: (id: string) => {
      const p = parts.find((x) => x.nodeId === id);
      return p && ({ id, identityKey: p.identity.publicKeyB64, stellarKey: 'G' } as NodeRecord);
    },
  } as unknown as NodeRepository;
  const hub: HubLike = {
    connected: () => parts.filter((p) => !offline.has(p.nodeId)).map((p) => ({ nodeId: p.nodeId })),
    send<T extends MessageType>(nodeId: string, _type: T, body: Body<T>): boolean {
      if (offline.has(nodeId)) return false;
      const b = body as Body<'frost-dkg'>;
      sent.push({ nodeId, body: b });
      const p = parts.find((x) => x.nodeId === nodeId)!;
      setImmediate(() => {
        const reply = p.handle(structuredClone(b));
        if (reply) relay.onReply(nodeId, reply);
      });
      return true;
    },
  };
  store = openSqliteStore(dir);
  relay = await FrostDkgRelay.open({
    store,
    nodes,
    logger: createLogger({ name: 't', level: 'silent' }),
    stepTimeoutMs,
    exclusive: true,
  });
  relay.attach(hub);
}

async function settle(id: string) {
  for (let i = 0; i < 400; i++) {
    const r = await relay.get(id);
    if (r.status !== 'running') return r;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error('still running');
}

beforeEach(async () => {
  dir = await tempDir('coord-frost-');
  sent = [];
  offline.clear();
});
afterEach(async () => {
  await relay?.close();
  store?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('FROST key-generation relay', () => {
  it('relays a 2-of-3 key generation and records the group every participant derived', async () => {
    await setup(['honest', 'honest', 'honest']);
    const started = await relay.start({ participants: ['n1', 'n2', 'n3'], threshold: 2, createdBy: 'k1' });
    expect(started).toMatchObject({ status: 'running', step: 'start', threshold: 2, createdBy: 'k1' });
    const r = await settle(started.id);
    expect(r).toMatchObject({ status: 'ready', step: 'confirm', address: parts[0]!.out!.address, error: null });
    expect(r.group).toEqual(parts[0]!.out!.group);
    expect(r.transcript).toBe(parts[2]!.out!.transcript);
    expect((await relay.get(r.address!)).id).toBe(r.id);
    expect((await relay.list()).map((x) => x.id)).toEqual([r.id]);
    const view = groupView(r);
    expect(view).toMatchObject({ status: 'ready', address: r.address, groupPublicKey: r.group!.groupPublicKey });
    expect(view.participants.map((p) => p.verifyingShare)).toEqual([1, 2, 3].map((i) => r.group!.verifyingShares[i]));
    expect(parts.every((p) => p.steps.join() === 'start,round1,round2,round3,confirm')).toBe(true);
    // round3 carries to each node only the packages addressed to it; round2 only the others' commitments.
    for (const s of sent.filter((x) => x.body.step === 'round3')) {
      const me = r.participants.find((p) => p.nodeId === s.nodeId)!.index;
      expect(s.body.statements!.map((st) => JSON.parse(st.p).to)).toEqual([me, me]);
    }
    for (const s of sent.filter((x) => x.body.step === 'round2')) {
      expect(s.body.statements!.map((st) => JSON.parse(st.p).nodeId)).not.toContain(s.nodeId);
    }
    // Every statement the relay holds is public and verifies under its author's enrolled key.
    for (const s of sent.flatMap((x) => x.body.statements ?? [])) {
      const author = parts.find((p) => p.nodeId === JSON.parse(s.p).nodeId)!;
      expect(openStatement(author.identity.publicKey, s)).toBeDefined();
    }
  });

  it('refuses a bad request: a repeated node, a threshold out of range, unknown or offline nodes, too many at once', async () => {
    await setup(['honest', 'honest', 'silent']);
    const code = async (f: () => unknown) => {
      try {
        await f();
      } catch (e) {
        return (e as { code: string; details: unknown }).code;
      }
      return undefined;
    };
    expect(await code(() => relay.start({ participants: ['n1', 'n1'], threshold: 2 }))).toBe('COORD_BAD_REQUEST');
    expect(await code(() => relay.start({ participants: ['n1', 'n2'], threshold: 3 }))).toBe('COORD_BAD_REQUEST');
    expect(await code(() => relay.start({ participants: ['n1', 'n9'], threshold: 2 }))).toBe(
      'COORD_FROST_NODE_UNAVAILABLE',
    );
    offline.add('n2');
    expect(await code(() => relay.start({ participants: ['n1', 'n2'], threshold: 2 }))).toBe(
      'COORD_FROST_NODE_UNAVAILABLE',
    );
    offline.clear();
    await relay.start({ participants: ['n1', 'n3'], threshold: 2 });
    await relay.start({ participants: ['n2', 'n3'], threshold: 2 });
    expect(await code(() => relay.start({ participants: ['n1', 'n2'], threshold: 2 }))).toBe('COORD_FROST_BUSY');
    expect(await code(() => relay.get('nope'))).toBe('COORD_FROST_GROUP_NOT_FOUND');
  });

  it('records why a key generation failed and aborts it at every node', async () => {
    const cases: [Behaviour[], Record<string, unknown>][] = [
      [
        ['honest', 'refuse', 'honest'],
        { code: 'COORD_FROST_DKG_REFUSED', reportedBy: 'n2', nodeCode: 'FROST_DKG_BAD_PROOF', culprits: ['n2'] },
      ],
      [['honest', 'foreign', 'honest'], { code: 'COORD_FROST_DKG_BAD_STATEMENT', reportedBy: 'n2', culprits: ['n2'] }],
      [['honest', 'honest', 'bad-to'], { code: 'COORD_FROST_DKG_BAD_STATEMENT', culprits: ['n3'] }],
      [['honest', 'honest', 'other-result'], { code: 'COORD_FROST_DKG_DISAGREE', culprits: [] }],
      [['honest', 'silent', 'honest'], { code: 'COORD_FROST_DKG_TIMEOUT', culprits: ['n2'] }],
    ];
    for (const [behaviours, error] of cases) {
      await relay?.close();
      store?.close();
      sent = [];
      await setup(behaviours, 400);
      const r = await settle((await relay.start({ participants: ['n1', 'n2', 'n3'], threshold: 2 })).id);
      expect(r.status, behaviours.join()).toBe('failed');
      expect(r.error, behaviours.join()).toMatchObject(error);
      expect(r.address).toBeNull();
      const aborts = sent.filter((s) => s.body.step === 'abort').map((s) => s.nodeId);
      expect(aborts, behaviours.join()).toEqual(['n1', 'n2', 'n3']);
    }
  });

  it('fails a step it cannot deliver, ignores replies out of turn, and fails what was running when it stopped', async () => {
    await setup(['honest', 'honest']);
    const r = await relay.start({ participants: ['n1', 'n2'], threshold: 2 });
    offline.add('n2');
    const failed = await settle(r.id);
    expect(failed.error).toMatchObject({ code: 'COORD_FROST_NODE_UNAVAILABLE', unreachable: ['n2'], culprits: [] });
    // A reply to a session that is over, or from a node not waited for: ignored.
    relay.onReply('n1', { dkgId: r.id, step: 'round1', statements: [] });
    relay.onReply('n1', { dkgId: 'nope', step: 'start', statements: [] });
    expect((await relay.get(r.id)).error!.code).toBe('COORD_FROST_NODE_UNAVAILABLE');
    // A session running when the coordinator stops is failed at the next start.
    offline.clear();
    const running = await relay.start({ participants: ['n1', 'n2'], threshold: 2 });
    store!.insertFrostDkg({ ...running, id: 'left-over', status: 'running', createdAt: 1, updatedAt: 1 });
    await relay.close();
    store!.close();
    store = openSqliteStore(dir);
    const again = await FrostDkgRelay.open({
      store,
      nodes: { getNode: () => undefined } as unknown as NodeRepository,
      logger: createLogger({ name: 't', level: 'silent' }),
      exclusive: true,
    });
    expect(await again.get('left-over')).toMatchObject({
      status: 'failed',
      error: { code: 'COORD_FROST_DKG_TIMEOUT' },
    });
    expect((await again.get(running.id)).status).toBe('failed');
    // Each participant hears the abort when it next syncs (it may have confirmed the group meanwhile).
    const delivered: { nodeId: string; body: Body<'frost-dkg'> }[] = [];
    let reachable = false;
    again.attach({
      connected: () => [],
      send<T extends MessageType>(nodeId: string, _t: T, body: Body<T>) {
        if (reachable) delivered.push({ nodeId, body: body as Body<'frost-dkg'> });
        return reachable;
      },
    });
    again.sync('n1');
    expect(delivered).toEqual([]);
    reachable = true;
    again.sync('n1');
    again.sync('n1');
    again.sync('n9');
    // (The other session was failed by close(), which told its participants then.)
    expect(delivered.map((d) => [d.nodeId, d.body.dkgId, d.body.step])).toEqual([['n1', 'left-over', 'abort']]);
    relay = again;
  });

  it('a session another replica recorded failed meanwhile ends failed: the group is dropped at every node', async () => {
    await setup(['honest', 'honest', 'honest']);
    const started = await relay.start({ participants: ['n1', 'n2', 'n3'], threshold: 2 });
    // Another replica took this one for dead (its record was stale there) while the nodes still answer this one.
    const lost = { code: 'COORD_FROST_RELAY_LOST', message: 'the replica relaying it stopped', culprits: [] };
    expect(store!.failFrostDkg(started.id, lost, Date.now())).toBe(true);
    for (let i = 0; i < 400 && !sent.some((x) => x.body.step === 'abort'); i++)
      await new Promise((r) => setTimeout(r, 25));
    // The relay finished all the same; the recorded outcome stands and every node is told to drop the group.
    expect(parts.every((p) => p.steps.includes('confirm'))).toBe(true);
    expect(sent.filter((x) => x.body.step === 'abort').map((x) => x.nodeId)).toEqual(['n1', 'n2', 'n3']);
    expect(await relay.get(started.id)).toMatchObject({ status: 'failed', error: lost, address: null, group: null });
  });
});

describe('FROST group routes', () => {
  it('POST /v1/frost/groups and GET /v1/frost/groups[/:id]: schemas, scopes, errors, OpenAPI', async () => {
    const nodes = [new TestNode('a'), new TestNode('b')];
    const h = await harness({ nodes });
    const auth = { authorization: `Bearer ${h.adminKey}` };
    try {
      const post = (payload: unknown, headers: Record<string, string> = auth) =>
        h.app.inject({ method: 'POST', url: '/v1/frost/groups', headers, payload: payload as object });
      expect((await post({ participants: ['a', 'b'], threshold: 2 }, {})).statusCode).toBe(401);
      const bad = await post({ participants: ['a'], threshold: 2 });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ code: 'COORD_BAD_REQUEST' });
      expect((await post({ participants: ['a', 'b'], threshold: 2, extra: 1 })).statusCode).toBe(400);
      const offline = await post({ participants: ['a', 'b'], threshold: 2 });
      expect(offline.statusCode).toBe(409);
      expect(offline.json()).toMatchObject({ code: 'COORD_FROST_NODE_UNAVAILABLE', details: { offline: ['a', 'b'] } });
      const missing = await h.app.inject({ method: 'GET', url: '/v1/frost/groups/nope', headers: auth });
      expect(missing.statusCode).toBe(404);
      expect(missing.json()).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_FOUND' });
      const list = await h.app.inject({ method: 'GET', url: '/v1/frost/groups', headers: auth });
      expect(list.json()).toEqual({ groups: [] });
      const doc = (await h.app.inject({ method: 'GET', url: '/docs/json' })).json() as {
        paths: Record<string, Record<string, unknown>>;
        components: { schemas: Record<string, unknown> };
      };
      expect(Object.keys(doc.paths['/v1/frost/groups']!)).toEqual(expect.arrayContaining(['get', 'post']));
      expect(doc.paths['/v1/frost/groups/{id}']!.get).toBeDefined();
      expect(doc.components.schemas.FrostGroup).toBeDefined();
    } finally {
      await h.close();
    }
  });
});

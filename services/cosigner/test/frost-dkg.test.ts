import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createShareSealer } from '@cosigner/frost/sealer';
import { checkShare, type GroupPublic } from '@cosigner/frost/suite';
import { type DkgRosterEntry, type SignedStatement, signStatement } from '@cosigner/protocol/frost-dkg';
import { generateIdentity, type Identity } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import type Database from 'better-sqlite3';
import Fastify from 'fastify';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit.ts';
import { parseConfig } from '../src/config.ts';
import type { FrostConfig } from '../src/frost/config.ts';
import { FrostDkgNode, MAX_DKG_SESSIONS, openFrostDkg, refuseDkg } from '../src/frost/dkg.ts';
import { nodeGroupView, registerFrostRoutes } from '../src/frost/routes.ts';
import { FrostGroupStore, frostStorePath } from '../src/frost/store.ts';
import { openLedgerDb } from '../src/ledger.ts';

/**
 * The node's side of FROST key generation, in one process: three FrostDkgNode instances (local sealer, real
 * SQLite stores, real identity keys) driven by a small relay written here the way the coordinator relays. The
 * same flows among real processes are in test/e2e/frost-dkg.test.ts; this suite covers every refusal path.
 */

type Reply = Body<'frost-dkg-reply'>;
type Tamper = (step: Body<'frost-dkg'>['step'], to: number, statements: SignedStatement[]) => SignedStatement[];

interface TestNode {
  id: string;
  identity: Identity;
  dkg: FrostDkgNode;
  store: FrostGroupStore;
  db: Database.Database;
  audit: AuditLog;
}

const logger = pino({ level: 'silent' });
let dir: string;
let nodes: TestNode[];
let n = 0;

async function makeNodes(count: number, expect: (roster: { nodeId: string; identityKey: string }[]) => unknown[]) {
  const ids = Array.from({ length: count }, (_, i) => ({ id: `node-${i}`, identity: generateIdentity().identity }));
  const roster = ids.map((x) => ({ nodeId: x.id, identityKey: x.identity.publicKeyB64 }));
  const out: TestNode[] = [];
  for (const x of ids) {
    const db = openLedgerDb(join(dir, x.id, 'ledger.sqlite'));
    const audit = new AuditLog(db);
    const store = new FrostGroupStore(frostStorePath(join(dir, x.id)));
    const sealer = await createShareSealer(
      { type: 'local', keyFile: join(dir, x.id, 'seal.key') },
      { production: false },
    );
    const config = { sealer: sealer as never, expect: expect(roster), sessionTimeoutMs: 60_000 } as FrostConfig;
    const dkg = new FrostDkgNode({ nodeId: x.id, identity: x.identity, config, sealer, store, audit, logger });
    out.push({ id: x.id, identity: x.identity, dkg, store, db, audit });
  }
  return out;
}

function roster(ns: TestNode[]): DkgRosterEntry[] {
  return ns.map((x, i) => ({ index: i + 1, nodeId: x.id, identityKey: x.identity.publicKeyB64 }));
}

/** Relay one key generation as the coordinator does; `tamper` may change what each node is sent. */
async function relay(
  ns: TestNode[],
  threshold: number,
  o: { tamper?: Tamper; dkgId?: string; participants?: DkgRosterEntry[] } = {},
): Promise<{ dkgId: string; replies: Reply[][] }> {
  const dkgId = o.dkgId ?? `dkg-${++n}`;
  const participants = o.participants ?? roster(ns);
  const tamper: Tamper = o.tamper ?? ((_s, _t, st) => st);
  const all: Reply[][] = [];
  const step = async (s: Body<'frost-dkg'>['step'], body: (i: number) => Partial<Body<'frost-dkg'>>) => {
    const r = await Promise.all(
      ns.map(async (x, i) => {
        const b = body(i);
        const statements = b.statements && tamper(s, i + 1, b.statements);
        return (await x.dkg.handle({ dkgId, step: s, ...b, ...(statements ? { statements } : {}) }))!;
      }),
    );
    all.push(r);
    return r;
  };
  const ok = (r: Reply[]) => r.every((x) => !x.error);
  const keys = await step('start', () => ({ threshold, participants }));
  if (!ok(keys)) return { dkgId, replies: all };
  const r1 = await step('round1', () => ({ statements: keys.flatMap((r) => r.statements!) }));
  if (!ok(r1)) return { dkgId, replies: all };
  const r2 = await step('round2', (i) => ({ statements: r1.filter((_, j) => j !== i).flatMap((r) => r.statements!) }));
  if (!ok(r2)) return { dkgId, replies: all };
  const to = (st: SignedStatement) => (JSON.parse(st.p) as { to: number }).to;
  const r3 = await step('round3', (i) => ({
    statements: r2.flatMap((r) => r.statements!).filter((st) => to(st) === i + 1),
  }));
  if (!ok(r3)) return { dkgId, replies: all };
  await step('confirm', () => ({ statements: r3.flatMap((r) => r.statements!) }));
  return { dkgId, replies: all };
}

const errorOf = (replies: Reply[][]) => replies.flat().find((r) => r.error)?.error;
const abortAll = async (ns: TestNode[], dkgId: string) => {
  for (const x of ns) expect(await x.dkg.handle({ dkgId, step: 'abort', reason: 'test' })).toBeUndefined();
};

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cosigner-frost-node-'));
});
afterEach(async () => {
  for (const x of nodes ?? []) {
    x.dkg.close();
    x.store.close();
    x.db.close();
  }
  nodes = [];
  await rm(dir, { recursive: true, force: true });
});

describe('FROST key generation at the node', () => {
  it('makes a 2-of-3 group every node records the same, with a sealed share matching its verifying share', async () => {
    nodes = await makeNodes(3, (r) => [{ threshold: 2, participants: r }]);
    const { dkgId, replies } = await relay(nodes, 2);
    expect(errorOf(replies)).toBeUndefined();
    const groups = nodes.map((x) => x.store.list());
    for (const [i, g] of groups.entries()) {
      expect(g).toHaveLength(1);
      expect(g[0]).toMatchObject({ dkgId, status: 'confirmed', threshold: 2, myIndex: i + 1, sealerKind: 'local' });
      expect(g[0]!.group).toEqual(groups[0]![0]!.group);
      expect(JSON.stringify(g[0]!.sealedShare)).not.toContain('signingShare');
    }
    const last = replies.at(-1)!;
    expect(last.map((r) => JSON.parse(r.statements![0]!.p).kind)).toEqual(['confirmed', 'confirmed', 'confirmed']);
    // The sealed share opens (with this node's sealing key and context only) to the share behind the verifying share.
    const g = groups[0]![0]!;
    const sealer = await createShareSealer(
      { type: 'local', keyFile: join(dir, 'node-0', 'seal.key') },
      { production: false },
    );
    const share = await sealer.unseal(g.sealedShare!, { purpose: 'frost-share', node: 'node-0', group: g.address });
    expect(checkShare(g.group as GroupPublic, { index: 1, signingShare: share }).index).toBe(1);
    await expect(
      sealer.unseal(g.sealedShare!, { purpose: 'frost-share', node: 'node-1', group: g.address }),
    ).rejects.toMatchObject({ code: 'FROST_UNSEAL_FAILED' });
    await sealer.close();
    const types = nodes[0]!.db.prepare('SELECT type FROM audit').all() as { type: string }[];
    expect(types.map((t) => t.type)).toEqual(expect.arrayContaining(['frost.dkg.joined', 'frost.group.created']));
    expect(nodes.every((x) => x.dkg.open === 0)).toBe(true);
    // The admin API lists the group's public data, never the sealed share, behind the admin guard.
    const app = Fastify();
    registerFrostRoutes(app, { groups: () => nodes[0]!.store.list() }, async (req) => {
      if (req.headers.authorization !== 'Bearer t')
        throw Object.assign(new Error('no'), { statusCode: 401, code: 'NODE_UNAUTHORIZED' });
    });
    const listed = await app.inject({ method: 'GET', url: '/v1/frost/groups', headers: { authorization: 'Bearer t' } });
    expect(listed.json()).toEqual({ groups: [nodeGroupView(g)] });
    expect(listed.json().groups[0]).toMatchObject({
      address: g.address,
      status: 'confirmed',
      myIndex: 1,
      sealer: 'local',
    });
    expect(listed.body).not.toContain('ciphertext');
    expect((await app.inject({ method: 'GET', url: '/v1/frost/groups' })).statusCode).toBe(401);
    await app.close();
    // The expectation is used: the same roster again is refused.
    const again = await relay(nodes, 2);
    expect(errorOf(again.replies)).toMatchObject({ code: 'NODE_FROST_NOT_EXPECTED' });
  });

  it('refuses what its operator did not expect: another threshold, another node, another key, itself absent', async () => {
    nodes = await makeNodes(3, (r) => [{ threshold: 2, participants: r }]);
    const notExpected = async (participants: DkgRosterEntry[], threshold: number, who = 0) => {
      const r = await nodes[who]!.dkg.handle({ dkgId: `x-${++n}`, step: 'start', threshold, participants });
      expect(r!.error).toMatchObject({ code: 'NODE_FROST_NOT_EXPECTED', culprits: [] });
      expect(r!.statements).toBeUndefined();
    };
    const r = roster(nodes);
    await notExpected(r, 3);
    await notExpected(r.slice(0, 2), 2);
    await notExpected([...r.slice(0, 2), { ...r[2]!, identityKey: generateIdentity().identity.publicKeyB64 }], 2);
    await notExpected([...r.slice(0, 2), { ...r[2]!, nodeId: 'node-9' }], 2);
    await notExpected([r[0]!, { ...r[1]!, nodeId: r[0]!.nodeId }, r[2]!], 2);
    await notExpected([{ ...r[0]!, identityKey: r[1]!.identityKey }, r[1]!, r[2]!], 2);
    await notExpected(r.slice(1), 2);
    // Malformed starts and steps out of order.
    const bad = await nodes[0]!.dkg.handle({ dkgId: 'y', step: 'start', participants: r });
    expect(bad!.error).toMatchObject({ code: 'NODE_FROST_BAD_STEP' });
    const early = await nodes[0]!.dkg.handle({ dkgId: 'z', step: 'round2', statements: [] });
    expect(early!.error).toMatchObject({ code: 'NODE_FROST_BAD_STEP' });
    expect(await nodes[0]!.dkg.handle({ dkgId: 'z', step: 'abort' })).toBeUndefined();
    // The same session started twice.
    expect(
      (await nodes[0]!.dkg.handle({ dkgId: 'w', step: 'start', threshold: 2, participants: r }))!.error,
    ).toBeUndefined();
    const twice = await nodes[0]!.dkg.handle({ dkgId: 'w', step: 'start', threshold: 2, participants: r });
    expect(twice!.error).toMatchObject({ code: 'NODE_FROST_BAD_STEP' });
    // Still open: a step out of order does not end it.
    expect(nodes[0]!.dkg.open).toBe(1);
  });

  it('holds a bounded number of sessions', async () => {
    nodes = await makeNodes(2, (r) => [{ threshold: 2, participants: r }]);
    const r = roster(nodes);
    for (let i = 0; i < MAX_DKG_SESSIONS; i++) {
      expect(
        (await nodes[0]!.dkg.handle({ dkgId: `b-${i}`, step: 'start', threshold: 2, participants: r }))!.error,
      ).toBeUndefined();
    }
    const busy = await nodes[0]!.dkg.handle({ dkgId: 'b-x', step: 'start', threshold: 2, participants: r });
    expect(busy!.error).toMatchObject({ code: 'NODE_FROST_BUSY' });
  });

  it('names the relay when a statement is altered, forged, missing, repeated, of another session or another step', async () => {
    nodes = await makeNodes(3, (r) => [{ threshold: 3, participants: r }]);
    const outsider = generateIdentity().identity;
    const edit = (st: SignedStatement, f: (p: Record<string, unknown>) => void): SignedStatement => {
      const p = JSON.parse(st.p) as Record<string, unknown>;
      f(p);
      return { p: JSON.stringify(p), s: st.s };
    };
    const cases: [string, Tamper][] = [
      [
        'altered transport key',
        (s, to, st) =>
          s === 'round1' && to === 1
            ? [edit(st[1]!, (p) => (p.transportKey = '00'.repeat(32))), ...st.slice(0, 1), ...st.slice(2)]
            : st,
      ],
      [
        'own key changed',
        (s, to, st) =>
          s === 'round1' && to === 1 ? [edit(st[0]!, (p) => (p.transportKey = '11'.repeat(32))), ...st.slice(1)] : st,
      ],
      ['missing', (s, to, st) => (s === 'round2' && to === 2 ? st.slice(1) : st)],
      ['repeated', (s, to, st) => (s === 'round2' && to === 2 ? [st[0]!, st[0]!] : st)],
      [
        'unknown author',
        (s, to, st) => (s === 'round2' && to === 2 ? [edit(st[0]!, (p) => (p.nodeId = 'node-9')), st[1]!] : st),
      ],
      [
        'forged by an outsider',
        (s, to, st) => {
          if (s !== 'round3' || to !== 3) return st;
          const p = JSON.parse(st[0]!.p) as never;
          return [signStatement(outsider, p), ...st.slice(1)];
        },
      ],
      [
        'another step',
        (s, to, st) => (s === 'round3' && to === 1 ? [edit(st[0]!, (p) => (p.kind = 'round1')), st[1]!] : st),
      ],
      [
        'redirected package',
        (s, to, st) => (s === 'round3' && to === 1 ? [edit(st[0]!, (p) => (p.to = 2)), st[1]!] : st),
      ],
      [
        'results differ',
        (s, to, st) =>
          s === 'confirm' && to === 2 ? [edit(st[0]!, (p) => (p.transcript = '00'.repeat(32))), ...st.slice(1)] : st,
      ],
    ];
    for (const [what, tamper] of cases) {
      const { dkgId, replies } = await relay(nodes, 3, { tamper });
      const e = errorOf(replies);
      expect(e, what).toMatchObject({ code: 'NODE_FROST_RELAY_TAMPERED', culprits: ['coordinator'] });
      await abortAll(nodes, dkgId);
      for (const x of nodes) expect(x.store.list(), what).toEqual([]);
    }
    // A correctly signed statement of another session (replayed across sessions) is refused too.
    const resign = (x: SignedStatement, f: (p: Record<string, unknown>) => void): SignedStatement => {
      const p = JSON.parse(x.p) as Record<string, unknown>;
      const author = nodes.find((y) => y.id === p.nodeId)!;
      f(p);
      return signStatement(author.identity, p as never);
    };
    for (const f of [
      (p: Record<string, unknown>) => (p.dkgId = 'other'),
      (p: Record<string, unknown>) => (p.roster = '00'.repeat(32)),
      (p: Record<string, unknown>) => (p.from = 3),
      (p: Record<string, unknown>) => (p.kind = 'round1'),
    ]) {
      const first = await relay(nodes, 3, {
        tamper: (s, to, st) => (s === 'round1' && to === 1 ? [resign(st[1]!, f), st[0]!, st[2]!] : st),
      });
      expect(errorOf(first.replies)).toMatchObject({ code: 'NODE_FROST_RELAY_TAMPERED' });
      await abortAll(nodes, first.dkgId);
    }
  });

  it('a late abort of the key generation drops a confirmed group, but not the record of one its operator retired', async () => {
    nodes = await makeNodes(3, (r) => [{ threshold: 2, participants: r }]);
    const { dkgId, replies } = await relay(nodes, 2);
    expect(errorOf(replies)).toBeUndefined();
    const address = nodes[0]!.store.list()[0]!.address;
    // node-0's operator retired it (the store's change and the session's, as frost/dkg.ts openFrostDkg does).
    expect(nodes[0]!.store.retire(address, Date.now())).toMatchObject({ changed: true });
    nodes[0]!.dkg.retire(address);
    await abortAll(nodes, dkgId);
    expect(nodes[0]!.store.get(address)).toMatchObject({ status: 'retired', sealedShare: null });
    expect(nodes[1]!.store.get(address)).toBeUndefined();
  });

  it('a result that differs in substance (signed by its author) is refused at confirm; nobody keeps the group', async () => {
    nodes = await makeNodes(3, (r) => [{ threshold: 2, participants: r }]);
    const liar = nodes[1]!;
    const { dkgId, replies } = await relay(nodes, 2, {
      tamper: (s, to, st) =>
        s === 'confirm' && to === 1
          ? st.map((x) => {
              const p = JSON.parse(x.p) as { nodeId: string; transcript: string };
              if (p.nodeId !== liar.id) return x;
              return signStatement(liar.identity, { ...p, transcript: 'ab'.repeat(32) } as never);
            })
          : st,
    });
    expect(errorOf(replies)).toMatchObject({ code: 'NODE_FROST_RESULT_MISMATCH' });
    expect(nodes[0]!.store.list()).toEqual([]);
    await abortAll(nodes, dkgId);
    expect(nodes.flatMap((x) => x.store.list())).toEqual([]);
  });

  it('names a participant whose round-1 proof does not verify', async () => {
    nodes = await makeNodes(3, (r) => [{ threshold: 2, participants: r }]);
    const cheat = nodes[2]!;
    const { replies } = await relay(nodes, 2, {
      tamper: (s, to, st) =>
        s === 'round2' && to !== 3
          ? st.map((x) => {
              const p = JSON.parse(x.p) as { nodeId: string; message: { proofOfKnowledge: string } };
              if (p.nodeId !== cheat.id) return x;
              const proof = p.message.proofOfKnowledge;
              p.message.proofOfKnowledge = (proof[0] === '0' ? '1' : '0') + proof.slice(1);
              return signStatement(cheat.identity, p as never);
            })
          : st,
    });
    expect(errorOf(replies)).toMatchObject({ code: 'FROST_DKG_BAD_PROOF', culprits: [cheat.id] });
  });

  it('drops a session that times out, and a pending group with it', async () => {
    nodes = await makeNodes(2, (r) => [{ threshold: 2, participants: r }]);
    const fast = nodes.map(
      (x) =>
        new FrostDkgNode({
          nodeId: x.id,
          identity: x.identity,
          config: {
            sealer: { type: 'local', keyFile: join(dir, x.id, 'seal.key') },
            expect: [{ threshold: 2, participants: roster(nodes) }],
            sessionTimeoutMs: 50,
          } as FrostConfig,
          sealer: {
            kind: 'local',
            keyId: 'k',
            seal: async () => ({ v: 1, kind: 'local', keyId: 'k', iv: '', ciphertext: '' }),
            unseal: async () => new Uint8Array(32),
            close: async () => undefined,
          },
          store: x.store,
          audit: x.audit,
          logger,
        }),
    );
    expect(
      (await fast[0]!.handle({ dkgId: 't', step: 'start', threshold: 2, participants: roster(nodes) }))!.error,
    ).toBeUndefined();
    expect(fast[0]!.open).toBe(1);
    await new Promise((r) => setTimeout(r, 120));
    expect(fast[0]!.open).toBe(0);
    // A sealer whose sealed copy does not open to the share: nothing is recorded, the session fails.
    const { replies } = await relayWith(fast, 2);
    expect(errorOf(replies)).toBeDefined();
    for (const x of nodes) expect(x.store.list()).toEqual([]);
  });

  it('a node without a frost section refuses every key generation; the section resolves a relative key file', async () => {
    const r = refuseDkg({ dkgId: 'a', step: 'start' });
    expect(r!.error).toMatchObject({ code: 'NODE_FROST_NOT_EXPECTED', culprits: [] });
    expect(refuseDkg({ dkgId: 'a', step: 'abort' })).toBeUndefined();
    const db = openLedgerDb(join(dir, 'l.sqlite'));
    const audit = new AuditLog(db);
    const identity = generateIdentity().identity;
    const none = await openFrostDkg({
      nodeId: 'n',
      dataDir: dir,
      production: false,
      config: undefined,
      identity,
      audit,
      logger,
    });
    expect((await none.handle({ dkgId: 'a', step: 'round1' }))!.error!.code).toBe('NODE_FROST_NOT_EXPECTED');
    expect(none.groups()).toEqual([]);
    await none.close();
    const base = {
      nodeId: 'n',
      dataDir: dir,
      coordinator: { url: 'ws://127.0.0.1:1', publicKeys: [identity.publicKeyB64] },
      network: 'Test SDF Network ; September 2015',
      key: { type: 'local', keyFile: 'k' },
      policy: 'p.yaml',
    };
    const config = parseConfig(
      { ...base, frost: { sealer: { type: 'local', keyFile: 'seal.key' } } },
      { baseDir: dir },
    );
    expect(config.frost).toMatchObject({
      sealer: { keyFile: join(dir, 'seal.key') },
      expect: [],
      sessionTimeoutMs: 600_000,
    });
    expect(() =>
      parseConfig(
        { ...base, frost: { sealer: { type: 'local', keyFile: 'k' }, expect: [{ threshold: 1, participants: [] }] } },
        { baseDir: dir },
      ),
    ).toThrow(expect.objectContaining({ code: 'NODE_CONFIG_INVALID' }));
    const open = await openFrostDkg({
      nodeId: 'n',
      dataDir: dir,
      production: false,
      config: config.frost,
      identity,
      audit,
      logger,
    });
    expect((await open.handle({ dkgId: 'a', step: 'round1' }))!.error!.code).toBe('NODE_FROST_BAD_STEP');
    await open.close();
    await expect(
      openFrostDkg({ nodeId: 'n', dataDir: dir, production: true, config: config.frost, identity, audit, logger }),
    ).rejects.toMatchObject({ code: 'FROST_DEV_SEALER_IN_PRODUCTION' });
    db.close();
  });
});

/** relay() over bare FrostDkgNode instances (for nodes built with another sealer). */
async function relayWith(dkgs: FrostDkgNode[], threshold: number) {
  const wrapped = nodes.map((x, i) => ({ ...x, dkg: dkgs[i]! }));
  return relay(wrapped, threshold);
}

import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DkgOutput } from '@cosigner/frost/dkg';
import { SqliteNonceStore } from '@cosigner/frost/nonce-store';
import type { Commitment } from '@cosigner/frost/rounds';
import type { SealedBlob } from '@cosigner/frost/sealer';
import { createShareSealer } from '@cosigner/frost/sealer';
import { createSigner } from '@cosigner/keys/factory';
import { loadPolicy } from '@cosigner/policy/schema';
import type { DkgRosterEntry } from '@cosigner/protocol/frost-dkg';
import { generateIdentity, type Identity } from '@cosigner/protocol/identity';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSession, runDkg } from '../../../packages/frost/test/helpers.ts';
import { build } from '../src/app.ts';
import { AuditLog } from '../src/audit.ts';
import { frostRetire, type Io, register } from '../src/command.ts';
import { loadConfig } from '../src/config.ts';
import { openFrostDkg } from '../src/frost/dkg.ts';
import { FrostSigning } from '../src/frost/sign.ts';
import { FrostGroupStore, frostStorePath, type NodeFrostGroup } from '../src/frost/store.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics } from '../src/metrics.ts';
import { createNode, frostNoncesPath } from '../src/node.ts';
import { type DecisionBody, type ProposalBody, SigningPipeline } from '../src/pipeline.ts';
import { CoordinatorDouble } from './coordinator-double.ts';
import { buildTx, NETWORK, pay, policyYaml, reviewerFor, writeNodeFiles } from './helpers.ts';

/**
 * Retiring a FROST group on a node (docs/operations/frost.md "Retiring the old group"), in one process with the
 * node's real parts: its group store (SQLite file), the local sealer of its frost section (openFrostDkg, as
 * node.ts opens it), its nonce store, signing ledger, audit log, review pipeline, and the admin API (app.ts build,
 * its token guard and error handler). Groups come from the real key generation (packages/frost). What is shown:
 * the sealed bytes leave the file and its write-ahead log, the public record stays, every later step of the group
 * (commit, sign, refresh, key generation) is refused with its reason before any nonce, the nonces of a committed
 * round are dropped, the audit log has the event, and the route refuses what it must.
 */

const logger = createLogger({ name: 'frost-retire-test', level: 'silent' });
const MIGRATIONS = fileURLToPath(new URL('../src/frost/migrations/', import.meta.url));
let dir: string;
const account = Keypair.random().publicKey();
const dest = Keypair.random().publicKey();
const identities: Identity[] = [0, 1, 2].map(() => generateIdentity().identity);
const roster: DkgRosterEntry[] = identities.map((id, i) => ({
  index: i + 1,
  nodeId: `node-${i + 1}`,
  identityKey: id.publicKeyB64,
}));
const TOKEN = 'admin-token-for-the-retire-test';

function keyGeneration(dkgId: string): DkgOutput {
  const { session, secrets } = makeSession(3, 2, dkgId);
  return runDkg(session, secrets).outputs[0]!;
}

/** node-1 of two 2-of-3 groups (`old`, `other`), with a refresh of `old` pending, as node.ts would hold them. */
async function openNode() {
  const home = join(dir, 'node-1');
  const ledger = new SigningLedger(openLedgerDb(ledgerPath(home)), { graceSeconds: 5 });
  const audit = new AuditLog(ledger.db);
  const signer = await createSigner({ type: 'local', keyFile: join(home, 'k.key') }, { production: false });
  const metrics = createMetrics();
  const pipeline = new SigningPipeline({ ledger, audit, signer, logger, metrics });
  const policy = loadPolicy(policyYaml({ accounts: [account], allow: [dest], maxPerTx: '100' }));
  const reviewer = reviewerFor(policy, { ledger, audit, signer, logger, metrics, pipeline });
  const frost = await openFrostDkg({
    nodeId: 'node-1',
    dataDir: home,
    production: false,
    config: {
      sealer: { type: 'local', keyFile: join(home, 'seal.key') },
      expect: [{ threshold: 2, participants: roster.map(({ nodeId, identityKey }) => ({ nodeId, identityKey })) }],
      sessionTimeoutMs: 60_000,
    },
    identity: identities[0]!,
    audit,
    logger,
  });
  const { store, sealer } = frost.signing!;
  const keep = async (dkgId: string, participants: DkgRosterEntry[]) => {
    const out = keyGeneration(dkgId);
    const sealedShare = await sealer.seal(out.share.signingShare, {
      purpose: 'frost-share',
      node: 'node-1',
      group: out.address,
    });
    store.insert({
      address: out.address,
      dkgId,
      roster: 'r',
      threshold: 2,
      participants,
      myIndex: 1,
      group: out.group,
      transcript: out.transcript,
      sealedShare,
      sealerKind: 'local',
      status: 'confirmed',
      createdAt: Date.now(),
    });
    return out;
  };
  const old = await keep('dkg-old', roster);
  const other = await keep('dkg-other', [roster[0]!, roster[1]!, { ...roster[2]!, nodeId: 'node-9' }]);
  const nonces = SqliteNonceStore.open(frostNoncesPath(home));
  nonces.recover();
  const signing = new FrostSigning({
    nodeId: 'node-1',
    groups: store,
    sealer,
    nonces,
    reviewer,
    pipeline,
    audit,
    logger,
  });
  const retire = (address: string, by = 'admin:test') =>
    frost.retire(address, { by, dropRounds: (a) => signing.retire(a) });
  const app = build({
    reviewer,
    ledger,
    metrics,
    keyHealth: async () => ({ ok: true }),
    sessionUp: () => true,
    sendDecision: () => true,
    adminToken: TOKEN,
    frostGroups: () => frost.groups(),
    frostRetire: retire,
  });
  return {
    home,
    ledger,
    audit,
    frost,
    store,
    sealer,
    nonces,
    signing,
    app,
    old,
    other,
    retire,
    keep,
    async close() {
      await app.close();
      await signing.close();
      nonces.close();
      await frost.close();
      await signer.close();
      ledger.close();
    },
  };
}

let node: Awaited<ReturnType<typeof openNode>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cosigner-frost-retire-'));
  node = await openNode();
}, 60_000);

afterAll(async () => {
  await node?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Every file of the store (the database and its write-ahead log), as bytes on disk. */
function storeBytes(home: string): Buffer {
  const path = frostStorePath(home);
  return Buffer.concat([path, `${path}-wal`].filter(existsSync).map((f) => readFileSync(f)));
}

let seq = 100n;
let proposals = 0;
function payment(): { xdr: string; proposalId: string } {
  seq += 1n;
  return {
    xdr: buildTx({ source: account, seq: seq.toString(), ops: [pay(dest, '10')] }),
    proposalId: `p-${++proposals}`,
  };
}

function step(group: string, p: { xdr: string; proposalId: string }, roundId: string, commitments?: Commitment[]) {
  const body: ProposalBody = {
    proposalId: p.proposalId,
    kind: 'frost',
    networkPassphrase: NETWORK,
    xdr: p.xdr,
    frost: { group, roundId, step: commitments ? 'sign' : 'commit', ...(commitments ? { commitments } : {}) },
  };
  return body;
}

const codes = (d: DecisionBody) => d.reasons.map((r) => r.code);
const auth = { authorization: `Bearer ${TOKEN}` };

describe('retiring a FROST group on a node', () => {
  it('refuses a retirement that is not confirmed, of an unknown or pending group, or without the admin token', async () => {
    const { app, old, other } = node;
    const url = `/v1/frost/groups/${old.address}/retire`;
    const post = (u: string, payload: unknown, headers: Record<string, string> = auth) =>
      app.inject({ method: 'POST', url: u, headers, payload: payload as Record<string, unknown> });

    expect((await post(url, { confirm: old.address }, {})).json()).toMatchObject({ code: 'NODE_UNAUTHORIZED' });
    const noConfirm = await post(url, {});
    expect(noConfirm.statusCode).toBe(400);
    expect(noConfirm.json()).toMatchObject({ code: 'NODE_BAD_REQUEST' });
    // A confirmation naming another group (a pasted wrong address) retires nothing.
    const wrong = await post(url, { confirm: other.address });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json()).toMatchObject({ code: 'NODE_FROST_RETIRE_UNCONFIRMED' });
    const stranger = Keypair.random().publicKey();
    const unknown = await post(`/v1/frost/groups/${stranger}/retire`, { confirm: stranger });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: 'NODE_FROST_GROUP_UNKNOWN' });
    expect((await post('/v1/frost/groups/not-an-address/retire', { confirm: 'x' })).statusCode).toBe(400);
    expect((await post(url, { confirm: old.address, extra: 1 })).statusCode).toBe(400);

    // A group still pending (its key generation not confirmed): nothing to retire.
    const pending = keyGeneration('dkg-pending');
    node.store.insert({
      address: pending.address,
      dkgId: 'dkg-pending',
      roster: 'r',
      threshold: 2,
      participants: roster,
      myIndex: 1,
      group: pending.group,
      transcript: pending.transcript,
      sealedShare: { v: 1, kind: 'local', keyId: 'k', iv: 'AAAA', ciphertext: 'AAAA' },
      sealerKind: 'local',
      status: 'pending',
      createdAt: Date.now(),
    });
    const busy = await post(`/v1/frost/groups/${pending.address}/retire`, { confirm: pending.address });
    expect(busy.statusCode).toBe(409);
    expect(busy.json()).toMatchObject({ code: 'NODE_FROST_GROUP_PENDING' });
    node.store.deletePending(pending.address);

    // Nothing was retired by any of these.
    expect(node.store.list().map((g) => g.status)).toEqual(['confirmed', 'confirmed']);
  });

  it('destroys the sealed share in the file and its log, keeps the public record, refuses every later step', async () => {
    const { app, store, old, other, signing, nonces, home } = node;
    const before = store.get(old.address)!;
    const sealed = before.sealedShare as SealedBlob;
    // A refresh of the group pending beside it: its new sealed share goes too.
    const refreshSealed = await node.sealer.seal(new Uint8Array(32).fill(7), {
      purpose: 'frost-share',
      node: 'node-1',
      group: old.address,
    });
    store.insertRefresh({
      refreshId: 'refresh-1',
      address: old.address,
      digest: 'd'.repeat(64),
      group: old.group,
      transcript: old.transcript,
      sealedShare: refreshSealed,
      createdAt: Date.now(),
    });
    // A round committed before the retirement: its nonce is in memory.
    const p = payment();
    const roundId = `${p.proposalId}:1`;
    const committed = await signing.review(step(old.address, p, roundId));
    expect(committed.outcome, JSON.stringify(committed.reasons)).toBe('approve');
    expect(nonces.state(roundId)).toBe('issued');
    expect(signing.pending).toBe(1);
    // The sealed bytes are in the store's files now (the check below can fail).
    expect(storeBytes(home).includes(sealed.ciphertext)).toBe(true);
    expect(storeBytes(home).includes(refreshSealed.ciphertext)).toBe(true);

    const res = await app.inject({
      method: 'POST',
      url: `/v1/frost/groups/${old.address}/retire`,
      headers: auth,
      payload: { confirm: old.address, by: 'alice' },
    });
    expect(res.statusCode, res.body).toBe(200);
    const view = res.json().group;
    expect(view).toMatchObject({
      address: old.address,
      status: 'retired',
      transcript: old.transcript,
      verifyingShares: old.group.verifyingShares,
      groupPublicKey: old.group.groupPublicKey,
    });
    expect(view.retiredAt).toBeGreaterThan(0);
    expect(res.body).not.toContain(sealed.ciphertext);

    // Gone from the database file and the write-ahead log, both shares; the other group's share is untouched.
    const bytes = storeBytes(home);
    expect(bytes.includes(sealed.ciphertext)).toBe(false);
    expect(bytes.includes(sealed.iv)).toBe(false);
    expect(bytes.includes(refreshSealed.ciphertext)).toBe(false);
    expect(bytes.includes((store.get(other.address)!.sealedShare as SealedBlob).ciphertext)).toBe(true);
    const after = store.get(old.address)!;
    expect(after).toMatchObject({ status: 'retired', sealedShare: null, transcript: before.transcript });
    expect(after.group).toEqual(before.group);
    expect(store.refresh('refresh-1')).toBeUndefined();
    expect(store.get(other.address)!.status).toBe('confirmed');

    // The round committed before: its nonces are gone; the sign step is refused with the reason, no share.
    expect(signing.pending).toBe(0);
    const signStep = await signing.review(step(old.address, p, roundId, [committed.frost!.commitment!]));
    expect(signStep.outcome).toBe('reject');
    expect(codes(signStep)).toEqual(['FROST_GROUP_RETIRED']);
    expect(signStep.frost).toEqual({ group: old.address, roundId, step: 'sign' });
    expect(signStep.frost?.share).toBeUndefined();
    // A new round: refused at the commit step, before any nonce (the nonce store never hears of it).
    const q = payment();
    const fresh = await signing.review(step(old.address, q, `${q.proposalId}:1`));
    expect(codes(fresh)).toEqual(['FROST_GROUP_RETIRED']);
    expect(fresh.frost?.commitment).toBeUndefined();
    expect(nonces.state(`${q.proposalId}:1`)).toBeUndefined();
    // The other group still commits.
    const r = payment();
    expect((await signing.review(step(other.address, r, `${r.proposalId}:1`))).outcome).toBe('approve');

    // A refresh of it (start, or the adoption of one kept before) and a key generation of its roster are refused.
    const refresh = await node.frost.refresh({
      refreshId: 'refresh-2',
      step: 'start',
      address: old.address,
      participants: roster,
    });
    expect(refresh?.error).toMatchObject({ code: 'NODE_FROST_GROUP_RETIRED' });
    const adopt = await node.frost.refresh({
      refreshId: 'refresh-1',
      step: 'adopt',
      address: old.address,
      digest: 'd'.repeat(64),
    });
    expect(adopt?.error).toMatchObject({ code: 'NODE_FROST_GROUP_RETIRED' });
    const dkg = await node.frost.handle({ dkgId: 'dkg-new', step: 'start', threshold: 2, participants: roster });
    expect(dkg?.error).toMatchObject({ code: 'NODE_FROST_GROUP_RETIRED' });
    const sameId = await node.frost.handle({ dkgId: 'dkg-old', step: 'start', threshold: 2, participants: roster });
    expect(sameId?.error).toMatchObject({ code: 'NODE_FROST_GROUP_RETIRED' });

    // Audited once, with the operator and the dropped round; repeating answers the same and audits nothing more.
    const audited = () =>
      node.ledger.db.prepare(`SELECT data FROM audit WHERE type = 'frost.group.retired'`).all() as { data: string }[];
    expect(audited()).toHaveLength(1);
    expect(JSON.parse(audited()[0]!.data)).toMatchObject({
      address: old.address,
      by: 'admin:alice',
      roundsDropped: 1,
      transcript: old.transcript,
      verifyingShare: old.group.verifyingShares['1'],
    });
    expect(audited()[0]!.data).not.toContain(sealed.ciphertext);
    const again = await app.inject({
      method: 'POST',
      url: `/v1/frost/groups/${old.address}/retire`,
      headers: auth,
      payload: { confirm: old.address },
    });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(res.json());
    expect(res.json().walCleared).toBe(true);
    expect(audited()).toHaveLength(1);
    // The list shows it retired, beside the other.
    const listed = await app.inject({ method: 'GET', url: '/v1/frost/groups', headers: auth });
    expect(listed.json().groups.map((g: { status: string }) => g.status)).toEqual(['retired', 'confirmed']);
  });

  it('a round whose group is retired while its share opens sends no commitment', async () => {
    const { signing, nonces, other, store } = node;
    const p = payment();
    const roundId = `${p.proposalId}:1`;
    // Retire between the start of the commit step and its nonce: the sealer's unseal is where the step waits.
    const sealer = node.sealer as { unseal: typeof node.sealer.unseal };
    const unseal = sealer.unseal.bind(sealer);
    await signing.close();
    let retiring: Promise<unknown> | undefined;
    sealer.unseal = async (b, c) => {
      const share = await unseal(b, c);
      // The store's change is synchronous at the call; the rest (dropping what signing holds) waits for this open.
      retiring = node.retire(other.address);
      return share;
    };
    try {
      const d = await signing.review(step(other.address, p, roundId));
      await retiring;
      expect(codes(d)).toEqual(['FROST_GROUP_RETIRED']);
      expect(d.frost?.commitment).toBeUndefined();
      expect(nonces.state(roundId)).toBeUndefined();
    } finally {
      sealer.unseal = unseal;
    }
    expect(store.get(other.address)!.status).toBe('retired');
    expect(signing.pending).toBe(0);
  });

  it('says when a reader kept the log from being cleared; retiring again clears it', async () => {
    const out = await node.keep('dkg-reader', roster);
    const ciphertext = (node.store.get(out.address)!.sealedShare as SealedBlob).ciphertext;
    // Another connection (an operator's sqlite3 shell, a backup) holds a read snapshot of the file: the checkpoint
    // cannot copy the log back and empty it, so the main file still has the page with the share.
    const reader = new Database(frostStorePath(node.home), { readonly: true });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM frost_groups').get();
    const first = await node.frost.retire(out.address, { by: 'admin:test', dropRounds: async () => 0 });
    expect(first).toMatchObject({ changed: true, walCleared: false, group: { status: 'retired' } });
    expect(storeBytes(node.home).includes(ciphertext)).toBe(true);
    reader.exec('COMMIT');
    reader.close();
    const second = await node.frost.retire(out.address, { by: 'admin:test', dropRounds: async () => 0 });
    expect(second).toMatchObject({ changed: false, walCleared: true });
    expect(storeBytes(node.home).includes(ciphertext)).toBe(false);
  });

  it('a node without a frost section has no group to retire', async () => {
    const frost = await openFrostDkg({
      nodeId: 'node-x',
      dataDir: join(dir, 'node-x'),
      production: false,
      config: undefined,
      identity: identities[1]!,
      audit: node.audit,
      logger,
    });
    await expect(frost.retire(node.old.address, { by: 'x', dropRounds: async () => 0 })).rejects.toMatchObject({
      code: 'NODE_FROST_GROUP_UNKNOWN',
    });
    await frost.close();
  });
});

describe('a node wired in-process (createNode) over a real coordinator session', () => {
  it('refuses both steps of a retired group over its session with the reason; the round it committed gets no share', async () => {
    const d = join(dir, 'wired');
    mkdirSync(d, { recursive: true });
    const coord = await CoordinatorDouble.start({ network: NETWORK });
    const keyFile = join(d, 'seal.key');
    const files = await writeNodeFiles(d, {
      coordinatorUrl: coord.url,
      coordinatorKeys: [coord.identity.publicKeyB64],
      policy: { accounts: [account], allow: [dest], maxPerTx: '100' },
      extra: { frost: { sealer: { type: 'local', keyFile } } },
    });
    // The group, its share sealed with the node's own sealing key, recorded before the node starts.
    const out = keyGeneration('dkg-wired');
    const sealer = await createShareSealer({ type: 'local', keyFile }, { production: false });
    const store = new FrostGroupStore(frostStorePath(files.dataDir));
    store.insert({
      address: out.address,
      dkgId: 'dkg-wired',
      roster: 'r',
      threshold: 2,
      participants: roster,
      myIndex: 1,
      group: out.group,
      transcript: out.transcript,
      sealedShare: await sealer.seal(out.share.signingShare, {
        purpose: 'frost-share',
        node: 'node-a',
        group: out.address,
      }),
      sealerKind: 'local',
      status: 'confirmed',
      createdAt: Date.now(),
    });
    store.close();
    await sealer.close();
    const wired = await createNode(await loadConfig(files.config), { logger });
    try {
      wired.start();
      await wired.session.waitUp();
      const xdr = buildTx({ source: account, seq: '7', ops: [pay(dest, '1')] });
      const frost = (step: 'commit' | 'sign', roundId: string, commitments?: Commitment[]) => ({
        proposalId: roundId.split(':')[0]!,
        kind: 'frost' as const,
        networkPassphrase: NETWORK,
        xdr,
        frost: { group: out.address, roundId, step, ...(commitments ? { commitments } : {}) },
      });
      const decided = async (id: string, n: number) => {
        await coord.waitFor(() => coord.decisions.filter((x) => x.proposalId === id).length >= n, `decision ${n}`);
        return coord.decisions.filter((x) => x.proposalId === id)[n - 1]!;
      };
      coord.propose('node-a', frost('commit', 'w1:1'));
      const committed = await decided('w1', 1);
      expect(committed.outcome, JSON.stringify(committed.reasons)).toBe('approve');
      expect(wired.frostSigning.pending).toBe(1);

      expect(await wired.frost.retire(out.address, 'admin:test')).toMatchObject({
        changed: true,
        walCleared: true,
        group: { status: 'retired', sealedShare: null },
      });
      expect(wired.frostSigning.pending).toBe(0);
      coord.propose('node-a', frost('sign', 'w1:1', [committed.frost!.commitment!]));
      const signed = await decided('w1', 2);
      expect(signed.outcome).toBe('reject');
      expect(signed.reasons.map((r) => r.code)).toEqual(['FROST_GROUP_RETIRED']);
      expect(signed.frost?.share).toBeUndefined();
      coord.propose('node-a', frost('commit', 'w2:1'));
      const fresh = await decided('w2', 1);
      expect(fresh.reasons.map((r) => r.code)).toEqual(['FROST_GROUP_RETIRED']);
      expect(fresh.frost?.commitment).toBeUndefined();
      expect(wired.audit.tail(50).map((e) => e.type)).toContain('frost.group.retired');
    } finally {
      await wired.close();
      await coord.close();
    }
  });
});

describe('cosigner node frost retire and list', () => {
  it("retire reaches the node's admin API with the token file and prints what was retired; refusals exit non-zero", async () => {
    const out = await node.keep('dkg-cli', roster);
    const url = await node.app.listen({ host: '127.0.0.1', port: 0 });
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const run = async (args: string[]) => {
      const lines: string[] = [];
      const errs: string[] = [];
      const io: Io = { out: (l) => lines.push(l), err: (l) => errs.push(l) };
      const p = new Command('cosigner').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
      register(p, io);
      process.exitCode = 0;
      await p.parseAsync(['node', 'cosigner', 'node', 'frost', ...args, '--admin-url', url]);
      const code = process.exitCode;
      process.exitCode = 0;
      return { lines, errs, code };
    };
    try {
      const withToken = ['--token-file', tokenFile];
      // Without the token the node refuses; a --confirm that differs is refused before any request.
      const denied = await run(['retire', '--group', out.address, '--confirm', out.address]);
      expect(denied).toMatchObject({
        code: 1,
        errs: [expect.stringMatching(/^frost group not retired: NODE_UNAUTHORIZED/)],
      });
      const typo = await run(['retire', '--group', out.address, '--confirm', node.other.address, ...withToken]);
      expect(typo.code).toBe(1);
      expect(typo.errs[0]).toMatch(/--confirm must repeat --group/);
      const stranger = Keypair.random().publicKey();
      const unknown = await run(['retire', '--group', stranger, '--confirm', stranger, ...withToken]);
      expect(unknown.errs[0]).toMatch(/NODE_FROST_GROUP_UNKNOWN/);
      expect(node.store.get(out.address)!.status).toBe('confirmed');

      const done = await run(['retire', '--group', out.address, '--confirm', out.address, '--by', 'bob', ...withToken]);
      expect(done.code, done.errs.join('\n')).toBe(0);
      expect(done.lines[0]).toMatch(new RegExp(`^retired FROST group ${out.address} on this node at \\d{4}-`));
      expect(done.lines.join('\n')).toContain(`key generation dkg-cli, 2-of-3, this node's index 1`);
      expect(done.lines.join('\n')).toContain(out.group.verifyingShares['1']!);
      expect(node.store.get(out.address)).toMatchObject({ status: 'retired', sealedShare: null });
      // Again: the same answer.
      const again = await run(['retire', '--group', out.address, '--confirm', out.address, ...withToken]);
      expect(again.lines).toEqual(done.lines);

      // A reader holding the file open: the node answers the group retired but its log not cleared; the command
      // says so and exits non-zero, and running it again once the reader is gone clears it.
      const held = await node.keep('dkg-cli-reader', roster);
      const reader = new Database(frostStorePath(node.home), { readonly: true });
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM frost_groups').get();
      const blocked = await run(['retire', '--group', held.address, '--confirm', held.address, ...withToken]);
      expect(blocked.code).toBe(1);
      expect(blocked.lines[0]).toMatch(/^retired FROST group/);
      expect(blocked.errs[0]).toMatch(/write-ahead log is not cleared yet/);
      reader.exec('COMMIT');
      reader.close();
      const cleared = await run(['retire', '--group', held.address, '--confirm', held.address, ...withToken]);
      expect(cleared).toMatchObject({ code: 0, errs: [] });

      const listed = await run(['list', ...withToken]);
      expect(listed.code ?? 0).toBe(0);
      const groups = JSON.parse(listed.lines.join('\n')).groups as { address: string; status: string }[];
      expect(groups.find((g) => g.address === out.address)?.status).toBe('retired');
      expect((await run(['list'])).code).toBe(1);
    } finally {
      await node.app.close();
    }
    await expect(
      frostRetire({ adminUrl: 'http://127.0.0.1:1', group: out.address, confirm: out.address }, { out() {}, err() {} }),
    ).rejects.toMatchObject({ code: 'NODE_ADMIN_UNREACHABLE' });
  });
});

describe('the FROST store across the retirement migration', () => {
  it('keeps every group and pending refresh of a store written before it (schema 2), confirmed', async () => {
    const home = join(dir, 'old-store');
    const v2 = join(dir, 'migrations-v2');
    mkdirSync(v2, { recursive: true });
    for (const f of ['001_groups.sql', '002_refresh.sql']) cpSync(join(MIGRATIONS, f), join(v2, f));
    const out = keyGeneration('dkg-v2');
    const g: Omit<NodeFrostGroup, 'retiredAt'> = {
      address: out.address,
      dkgId: 'dkg-v2',
      roster: 'r',
      threshold: 2,
      participants: roster,
      myIndex: 1,
      group: out.group,
      transcript: out.transcript,
      sealedShare: { v: 1, kind: 'local', keyId: 'k', iv: 'SUlJSUlJSUlJSUlJ', ciphertext: 'Q0NDQ0NDQ0NDQ0ND' },
      sealerKind: 'local',
      status: 'confirmed',
      createdAt: 1,
    };
    const older = new FrostGroupStore(frostStorePath(home), { migrationsDir: v2 });
    older.insert(g);
    older.insertRefresh({
      refreshId: 'r-v2',
      address: out.address,
      digest: 'e'.repeat(64),
      group: out.group,
      transcript: out.transcript,
      sealedShare: g.sealedShare!,
      createdAt: 2,
    });
    older.close();
    const store = new FrostGroupStore(frostStorePath(home));
    expect(store.get(out.address)).toEqual({ ...g, retiredAt: null });
    expect(store.refresh('r-v2')?.digest).toBe('e'.repeat(64));
    const r = store.retire(out.address, 5)!;
    expect(r).toMatchObject({ changed: true, walCleared: true, group: { status: 'retired', retiredAt: 5 } });
    expect(store.retire(out.address, 6)).toMatchObject({ changed: false, group: { retiredAt: 5 } });
    expect(store.retire(Keypair.random().publicKey(), 7)).toBeUndefined();
    store.close();
    // The schema itself refuses a retired row that keeps a share.
    const db = new Database(frostStorePath(home));
    expect(() => db.prepare(`UPDATE frost_groups SET sealed_share = '{}' WHERE address = ?`).run(out.address)).toThrow(
      /CHECK constraint/,
    );
    expect(db.pragma('user_version', { simple: true })).toBe(3);
    db.close();
    expect(storeBytes(home).includes('Q0NDQ0NDQ0NDQ0ND')).toBe(false);
  });
});

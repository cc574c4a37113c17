import { rm } from 'node:fs/promises';
import { type Commitment, commitNonces, type SigningNonces, signShare } from '@cosigner/frost/rounds';
import type { GroupPublic, KeyShare } from '@cosigner/frost/suite';
import type { Body } from '@cosigner/protocol/messages';
import { createLogger } from '@cosigner/runtime/logger';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import { tempDir } from '@cosigner/testkit/process';
import { Account, Asset, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeSession, runDkg } from '../../../packages/frost/test/helpers.ts';
import { EventBus } from '../src/events.ts';
import { frostKind } from '../src/kinds/frost.ts';
import { createMetrics } from '../src/metrics.ts';
import { type NodeLink, RoundEngine } from '../src/round.ts';
import { openSqliteStore, type ProposalRecord, type Store } from '../src/store.ts';
import type { Submitter } from '../src/submit.ts';
import { proposalRecord, waitFor } from './helpers.ts';

/**
 * The coordinator's FROST round (src/kinds/frost.ts) on the real round engine and SQLite store, with a 2-of-3
 * group made by the real key generation and nodes played here with packages/frost's round functions: who is
 * picked, the two exchanges, aggregation and verification, naming a bad share whether or not its sender answered
 * last, refusals, a silent member, and answers that cannot count. The same round among real processes is
 * test/e2e/frost-sign.test.ts.
 */

const NETWORK = 'Test SDF Network ; September 2015';
let group: GroupPublic;
let address: string;
const shares = new Map<string, KeyShare>();
const ids = ['n1', 'n2', 'n3'];

beforeAll(() => {
  const { session, secrets } = makeSession(3, 2, 'dkg-kind-1');
  const { outputs } = runDkg(session, secrets);
  group = outputs[0]!.group;
  address = outputs[0]!.address;
  for (const [i, o] of outputs.entries()) shares.set(ids[i]!, o.share);
});

const dirs: string[] = [];
const closers: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

interface Sent {
  nodeId: string;
  type: string;
  body: Body<'proposal'>;
}

async function rig(o: { attemptTimeoutMs?: number; submit?: boolean } = {}) {
  const dir = await tempDir('coord-frost-kind-');
  dirs.push(dir);
  const store: Store = openSqliteStore(dir);
  const logger = createLogger({ name: 'frost-kind-test', level: process.env.KIND_LOG ?? 'silent' });
  const events = new EventBus(
    store,
    logger,
    { secret: 's', maxAttempts: 1, initialBackoffMs: 10, timeoutMs: 100 },
    (fn) => store.afterCommit(fn),
  );
  const engine = new RoundEngine({ store, events, metrics: createMetrics(), logger });
  closers.push(async () => {
    engine.close();
    await events.close();
    store.close();
  });
  const keys = new Map(ids.map((id) => [id, Keypair.random().publicKey()]));
  for (const id of ids) store.enrollNode({ id, identityKey: `id-${id}`, stellarKey: keys.get(id)! }, 0);
  const connected = new Set(ids);
  const flagged: { nodeId: string; kind: string }[] = [];
  const submitted: { id: string; envelope: string; resumed: boolean }[] = [];
  const submitter = {
    submit: async (rec: ProposalRecord, envelope: string, resumed: boolean) => {
      submitted.push({ id: rec.id, envelope, resumed });
    },
  } as unknown as Submitter;
  engine.register(
    frostKind({
      store,
      submitter,
      logger,
      groupOf: () => ({
        address,
        threshold: 2,
        group,
        participants: ids.map((nodeId, i) => ({ index: i + 1, nodeId })),
      }),
      connected: () => [...connected],
      flag: (nodeId, kind, detail, proposalId) => {
        flagged.push({ nodeId, kind });
        engine.onMisbehaviour(nodeId, kind, detail, proposalId);
      },
      attemptTimeoutMs: o.attemptTimeoutMs,
    }),
  );
  const sent: Sent[] = [];
  engine.attach({
    connected: () => ids.filter((id) => connected.has(id)).map((nodeId) => ({ nodeId, stellarKey: keys.get(nodeId)! })),
    send: (nodeId: string, type: string, body: unknown) => {
      sent.push({ nodeId, type, body: body as Body<'proposal'> });
      return true;
    },
  } as NodeLink);

  const account = Keypair.random().publicKey();
  const tx = new TransactionBuilder(new Account(account, '7'), { fee: '100', networkPassphrase: NETWORK })
    .addOperation(Operation.payment({ destination: Keypair.random().publicKey(), asset: Asset.native(), amount: '1' }))
    .setTimeout(300)
    .build();
  // The hash as the coordinator and the nodes compute it (packages/stellar decodeEnvelope).
  const hash = decodeEnvelope(tx.toXDR(), NETWORK).hash.toString('hex');
  const rec: ProposalRecord = proposalRecord({
    id: 'p1',
    kind: 'frostTx',
    xdr: tx.toXDR(),
    hash,
    network: NETWORK,
    requirements: [{ accountId: account, level: 'medium', weight: 2 }],
    accounts: [
      {
        accountId: account,
        masterWeight: 0,
        thresholds: { low: 2, medium: 2, high: 2 },
        signers: [{ key: address, weight: 2 }],
      },
    ],
    createdAt: Date.now(),
    submit: o.submit ?? false,
  });
  store.insertProposal(rec);

  /** Each node's nonces by round id, as its FrostSigner would hold them. */
  const nonces = new Map<string, SigningNonces>();
  const decide = (nodeId: string, d: Partial<Body<'decision'>>) =>
    engine.onDecision(nodeId, keys.get(nodeId)!, {
      proposalId: rec.id,
      hash,
      outcome: 'approve',
      reasons: [],
      signerKey: keys.get(nodeId)!,
      ...d,
    });
  /** Answer a frame as an honest node would (or with a share off by one). */
  const answer = (s: Sent, o: { bad?: boolean } = {}) => {
    const f = s.body.frost!;
    const share = shares.get(s.nodeId)!;
    if (f.step === 'commit') {
      const c = commitNonces(share);
      nonces.set(`${s.nodeId}/${f.roundId}`, c.nonces);
      return decide(s.nodeId, {
        frost: { group: address, roundId: f.roundId, step: 'commit', commitment: c.commitment },
      });
    }
    const z = Buffer.from(
      signShare(
        group,
        share,
        nonces.get(`${s.nodeId}/${f.roundId}`)!,
        f.commitments as Commitment[],
        Buffer.from(hash, 'hex'),
      ),
    );
    if (o.bad) z[0] = (z[0]! + 1) % 256;
    return decide(s.nodeId, { frost: { group: address, roundId: f.roundId, step: 'sign', share: z.toString('hex') } });
  };
  /** The frames sent since the last call. */
  const take = (): Sent[] => sent.splice(0).filter((s) => s.type === 'proposal');
  const frames = async (n: number, what: string): Promise<Sent[]> => {
    const out: Sent[] = [];
    await waitFor(() => {
      out.push(...take());
      return out.length >= n ? true : undefined;
    }, what);
    return out;
  };
  const status = () => store.getProposal(rec.id)?.status;
  return { store, engine, rec, hash, connected, flagged, submitted, sent, answer, decide, take, frames, status, keys };
}

type Rig = Awaited<ReturnType<typeof rig>>;

/** Run one attempt's commit step with the frames given, then return the sign frames. */
async function commitAll(r: Rig, commits: Sent[]): Promise<Sent[]> {
  for (const s of commits) expect(r.answer(s)).toBe(true);
  return r.frames(commits.length, 'sign frames');
}

describe('the FROST round at the coordinator', () => {
  it('picks t connected members, runs both exchanges, and stores one group signature that verifies', async () => {
    const r = await rig();
    r.engine.start(r.rec);
    const commits = await r.frames(2, 'commit frames');
    expect(commits.map((s) => s.body.frost?.step)).toEqual(['commit', 'commit']);
    expect(new Set(commits.map((s) => s.body.frost?.roundId)).size).toBe(1);
    expect(commits[0]!.body.frost!.roundId.startsWith(`${r.rec.id}:1-`)).toBe(true);
    expect(commits[0]!.body).toMatchObject({ kind: 'frost', xdr: r.rec.xdr, hash: r.hash });
    const signs = await commitAll(r, commits);
    expect(signs.map((s) => s.body.frost?.commitments?.length)).toEqual([2, 2]);
    for (const s of signs) r.answer(s);
    await waitFor(() => (r.status() === 'signed' ? true : undefined), 'signed');
    const sigs = r.store.signatures(r.rec.id);
    expect(sigs.map((s) => s.signerKey)).toEqual([address]);
    const ok = Keypair.fromPublicKey(address).verify(
      Buffer.from(r.hash, 'hex'),
      Buffer.from(sigs[0]!.signature, 'base64'),
    );
    expect(ok).toBe(true);
    const env = TransactionBuilder.fromXDR(r.store.getProposal(r.rec.id)!.envelope!, NETWORK);
    expect(env.signatures).toHaveLength(1);
    const approved = r.store.eventsOf(r.rec.id, 100).filter((e) => e.type === 'node.approved');
    expect((approved.at(-1)!.data.frost as { signers: string[] }).signers.sort()).toEqual(
      commits.map((s) => s.nodeId).sort(),
    );
  });

  it('a bad share answered last is a fault of its sender; answered first, its sender is flagged; both retry without it', async () => {
    for (const last of [true, false]) {
      const r = await rig();
      r.connected.delete('n1');
      r.engine.start(r.rec);
      const signs = await commitAll(r, await r.frames(2, 'commit frames'));
      const bad = signs.find((s) => s.nodeId === 'n3')!;
      const good = signs.find((s) => s.nodeId === 'n2')!;
      if (last) {
        r.answer(good);
        expect(r.answer(bad, { bad: true })).toBe(false);
      } else {
        r.answer(bad, { bad: true });
        r.answer(good);
      }
      await waitFor(
        () => (r.store.eventsOf(r.rec.id, 100).some((e) => e.type === 'node.misbehaved') ? true : undefined),
        'flagged',
      );
      const m = r.store.eventsOf(r.rec.id, 100).find((e) => e.type === 'node.misbehaved')!;
      expect(m.data).toMatchObject({ nodeId: 'n3', kind: 'bad_signature_share' });
      expect(r.status()).toBe('pending');
      // Only n2 is left connected and trusted: no new attempt until n1 is back.
      expect(r.take()).toEqual([]);
      r.connected.add('n1');
      r.engine.sync('n1');
      const first = await r.frames(1, 'n1 asked');
      expect(first.map((s) => s.nodeId)).toEqual(['n1']);
      r.answer(first[0]!);
      // n1's commitment kept: the other picked member, not asked yet, is asked now.
      const second = await r.frames(1, 'n2 asked');
      expect(second.map((s) => [s.nodeId, s.body.frost?.step])).toEqual([['n2', 'commit']]);
      const signs2 = await commitAll(r, second);
      for (const s of signs2) r.answer(s);
      await waitFor(() => (r.status() === 'signed' ? true : undefined), 'signed after the retry');
      expect(r.store.signatures(r.rec.id)).toHaveLength(1);
      for (const c of closers.splice(0)) await c();
    }
  });

  it('a round refusal starts a fresh round with the node; a policy refusal leaves it out; too few left ends the round', async () => {
    const r = await rig();
    r.connected.delete('n3');
    r.engine.start(r.rec);
    const commits = await r.frames(2, 'commit frames');
    const first = commits[0]!;
    r.decide(first.nodeId, {
      outcome: 'reject',
      reasons: [{ code: 'FROST_NONCE_FORGOTTEN', message: 'restarted' }],
      frost: { group: address, roundId: first.body.frost!.roundId, step: 'commit' },
    });
    const again = await r.frames(2, 'a fresh round');
    expect(again.map((s) => s.nodeId).sort()).toEqual(['n1', 'n2']);
    expect(again[0]!.body.frost!.roundId).not.toBe(first.body.frost!.roundId);
    // A refusal naming the abandoned round changes nothing now.
    r.decide(commits[1]!.nodeId, {
      outcome: 'reject',
      reasons: [{ code: 'FROST_ROUND_UNKNOWN', message: 'old' }],
      frost: { group: address, roundId: first.body.frost!.roundId, step: 'sign' },
    });
    expect(r.take()).toEqual([]);
    // A policy refusal: that node is left out, and with n3 away fewer than t members remain... until n3 is enrolled
    // and able: it still counts, so the round waits rather than ending.
    r.decide('n1', { outcome: 'reject', reasons: [{ code: 'AMOUNT_OVER_TX_LIMIT', message: 'too much' }] });
    expect(r.status()).toBe('pending');
    r.decide('n2', { outcome: 'reject', reasons: [{ code: 'AMOUNT_OVER_TX_LIMIT', message: 'too much' }] });
    await waitFor(() => (r.status() === 'rejected' ? true : undefined), 'rejected');
    const ended = r.store.eventsOf(r.rec.id, 100).find((e) => e.type === 'proposal.rejected')!;
    expect(ended.data).toMatchObject({ code: 'COORD_QUORUM_UNREACHABLE' });
    expect(String(ended.data.reason)).toContain('1 member(s) can still sign, 2 needed');
  });

  it('submits the envelope when asked, and resumes the submission of a signed row after a restart', async () => {
    const r = await rig({ submit: true });
    r.engine.start(r.rec);
    const signs = await commitAll(r, await r.frames(2, 'commit frames'));
    for (const s of signs) r.answer(s);
    await waitFor(() => (r.submitted.length === 1 ? true : undefined), 'submitted');
    expect(r.submitted[0]).toMatchObject({ id: r.rec.id, resumed: false });
    r.engine.close();
    await r.engine.resume();
    await waitFor(() => (r.submitted.length === 2 ? true : undefined), 'resumed submission');
    expect(r.submitted.at(-1)).toMatchObject({ id: r.rec.id, resumed: true });
  });

  it('ends the proposal after 3n+3 attempts that each came to nothing', async () => {
    const r = await rig();
    r.engine.start(r.rec);
    for (let i = 0; i < 12; i++) {
      const [first] = await r.frames(2, `attempt ${i + 1}`);
      r.decide(first!.nodeId, {
        outcome: 'reject',
        reasons: [{ code: 'FROST_NONCE_FORGOTTEN', message: 'restarted' }],
        frost: { group: address, roundId: first!.body.frost!.roundId, step: 'commit' },
      });
    }
    await waitFor(() => (r.status() === 'rejected' ? true : undefined), 'rejected');
    const ended = r.store.eventsOf(r.rec.id, 500).find((e) => e.type === 'proposal.rejected')!;
    expect(String(ended.data.reason)).toContain('12 rounds attempted without a signature');
  });

  it('abandons a phase whose picked member stays silent and asks the members connected then', async () => {
    const r = await rig({ attemptTimeoutMs: 300 });
    r.engine.start(r.rec);
    const commits = await r.frames(2, 'commit frames');
    const silent = commits[1]!.nodeId;
    r.answer(commits[0]!);
    r.connected.delete(silent);
    const retry = await r.frames(2, 'a new attempt after the timeout');
    expect(retry.map((s) => s.nodeId)).not.toContain(silent);
    const signs = await commitAll(r, retry);
    for (const s of signs) r.answer(s);
    await waitFor(() => (r.status() === 'signed' ? true : undefined), 'signed');
  });

  it('answers that cannot count are faults; an answer to an abandoned round is ignored', async () => {
    type Case = [string, (commits: [Sent, Sent], c: Commitment) => [string, Partial<Body<'decision'>>]];
    const other = Keypair.random().publicKey();
    const id = (s: Sent) => s.body.frost!.roundId;
    const cases: Case[] = [
      ['hash_mismatch', ([a]) => [a.nodeId, { hash: '00'.repeat(32) }]],
      ['missing_signature', ([a]) => [a.nodeId, {}]],
      [
        'not_a_signer',
        ([a], c) => ['n3', { frost: { group: address, roundId: id(a), step: 'commit', commitment: c } }],
      ],
      [
        'bad_commitment',
        ([a], c) => [
          a.nodeId,
          { frost: { group: address, roundId: id(a), step: 'commit', commitment: { ...c, index: 9 } } },
        ],
      ],
      [
        'bad_commitment',
        ([a], c) => [a.nodeId, { frost: { group: other, roundId: id(a), step: 'commit', commitment: c } }],
      ],
      [
        'bad_commitment',
        ([a], c) => [
          a.nodeId,
          { frost: { group: address, roundId: id(a), step: 'commit', commitment: { ...c, hiding: 'ff'.repeat(32) } } },
        ],
      ],
      ['missing_signature', ([a]) => [a.nodeId, { frost: { group: address, roundId: id(a), step: 'commit' } }]],
      [
        'missing_signature',
        ([a]) => [a.nodeId, { frost: { group: address, roundId: id(a), step: 'sign', share: '00'.repeat(32) } }],
      ],
    ];
    for (const [kind, make] of cases) {
      const r = await rig();
      r.connected.delete('n3');
      r.engine.start(r.rec);
      const commits = (await r.frames(2, 'commit frames')) as [Sent, Sent];
      const index = ids.indexOf(commits[0].nodeId) + 1;
      const c = { ...commitNonces(shares.get(commits[0].nodeId)!).commitment, index };
      const [nodeId, d] = make(commits, c);
      expect(r.decide(nodeId, d), kind).toBe(false);
      // The flag is recorded in the decision's own commit, after the call returned.
      const m = await waitFor(() => r.store.eventsOf(r.rec.id, 100).find((e) => e.type === 'node.misbehaved'), kind);
      expect(m.data, kind).toMatchObject({ nodeId, kind });
      for (const x of closers.splice(0)) await x();
    }
    // An answer to an abandoned round: kept as an answer, nothing flagged, nothing asked.
    const r = await rig();
    r.connected.delete('n3');
    r.engine.start(r.rec);
    const [a, b] = (await r.frames(2, 'commit frames')) as [Sent, Sent];
    r.decide(a.nodeId, {
      outcome: 'reject',
      reasons: [{ code: 'FROST_NONCE_FORGOTTEN', message: 'restarted' }],
      frost: { group: address, roundId: id(a), step: 'commit' },
    });
    await r.frames(2, 'a fresh round');
    expect(r.answer(b)).toBe(true);
    expect(r.store.eventsOf(r.rec.id, 100).some((e) => e.type === 'node.misbehaved')).toBe(false);
  });
});

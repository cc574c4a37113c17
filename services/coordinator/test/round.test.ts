import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Body } from '@cosigner/protocol/messages';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import { checkAuth } from '@cosigner/stellar/quorum';
import { Account, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { coordinatorErrors } from '../src/errors.ts';
import { signCallback } from '../src/events.ts';
import { CLOSE } from '../src/hub.ts';
import {
  FakeLedger,
  type Harness,
  harness,
  multisig,
  NETWORK,
  payment,
  proposalRecord,
  SilentProxy,
  TestNode,
  waitFor,
} from './helpers.ts';

let h: Harness | undefined;
let nodes: TestNode[] = [];
let servers: Server[] = [];
let proxies: SilentProxy[] = [];
afterEach(async () => {
  for (const n of nodes) n.close();
  nodes = [];
  for (const s of servers) s.close();
  servers = [];
  for (const p of proxies) p.close();
  proxies = [];
  if (h) {
    await h.close();
    await rm(h.dir, { recursive: true, force: true });
    h = undefined;
  }
});

interface Setup {
  h: Harness;
  source: string;
  nodes: TestNode[];
  propose(body?: Record<string, unknown>): Promise<{ id: string; status: string }>;
  get(id: string): Promise<Record<string, unknown> & { status: string }>;
}

/** A 2-of-3 account whose signers are the first three nodes; every node enrolled; the coordinator listening. */
async function setup(
  ns: TestNode[],
  opts: { config?: Record<string, unknown>; connect?: boolean; ledger?: FakeLedger; dir?: string } = {},
): Promise<Setup> {
  nodes.push(...ns);
  const ledger = opts.ledger ?? new FakeLedger();
  const source = Keypair.random().publicKey();
  if (!opts.ledger)
    ledger.accounts.set(
      source,
      multisig(
        source,
        ns.slice(0, 3).map((n) => n.stellarKey),
        2,
      ),
    );
  h = await harness({ ledger, nodes: ns, listen: true, config: opts.config, dir: opts.dir });
  const hh = h;
  if (opts.connect !== false)
    for (const n of ns) expect(await n.connect(hh.url!, hh.identity.publicKey)).toBe('welcome');
  return {
    h: hh,
    source,
    nodes: ns,
    async propose(body = {}) {
      const res = await hh.app.inject({
        method: 'POST',
        url: '/v1/proposals',
        headers: { authorization: `Bearer ${hh.adminKey}` },
        payload: { xdr: payment(source), ...body },
      });
      expect(res.statusCode).toBe(201);
      return res.json();
    },
    async get(id) {
      return (
        await hh.app.inject({ url: `/v1/proposals/${id}`, headers: { authorization: `Bearer ${hh.adminKey}` } })
      ).json();
    },
  };
}

async function until(s: Setup, id: string, status: string) {
  return waitFor(async () => {
    const p = await s.get(id);
    return p.status === status ? p : undefined;
  }, `status ${status}`);
}

function envelopeOk(s: Setup, envelope: string) {
  const d = decodeEnvelope(envelope, NETWORK);
  const accounts = new Map([[s.source, s.h.ledger.accounts.get(s.source)!]]);
  return { sigs: d.signatures.length, verdict: checkAuth(d, accounts) };
}

describe('signing round', () => {
  it('2-of-3: fans out in parallel, assembles a minimal envelope, submits once, does not wait for the slow node', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b', 'silent'), new TestNode('c')]);
    const p = await s.propose({ submit: true, idempotencyKey: 'pay-1' });
    const done = await until(s, p.id, 'submitted');
    for (const n of s.nodes) await n.until(() => n.proposals.length > 0);
    // A sync racing the creation may deliver it twice (nodes are idempotent); never another proposal.
    for (const n of s.nodes) expect(new Set(n.proposals.map((x) => x.proposalId))).toEqual(new Set([p.id]));
    const env = envelopeOk(s, done.envelope as string);
    expect(env.sigs).toBe(2);
    expect(env.verdict).toEqual({ ok: true });
    expect(s.h.ledger.submitted).toEqual([done.envelope]);
    expect(done.result).toMatchObject({ outcome: 'accepted', ledger: 7, attempts: 1 });
    expect((done.requirements as { met: boolean }[])[0]!.met).toBe(true);
    // The slow node is told to drop it.
    await s.nodes[1]!.until(() => s.nodes[1]!.cancels.length === 1);
    const types = s.h.store.eventsSince(0, 100).map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(['proposal.created', 'node.approved', 'quorum.reached', 'proposal.submitted']),
    );
  });

  it('without submit the proposal ends signed with the envelope stored', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    const p = await s.propose();
    const done = await until(s, p.id, 'signed');
    expect(envelopeOk(s, done.envelope as string).verdict).toEqual({ ok: true });
    expect(s.h.ledger.submitted).toEqual([]);
  });

  it('a fee bump: the fee source multisig signs the outer hash; the signed inner transaction is kept as is', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    const payer = Keypair.random();
    const inner = new TransactionBuilder(new Account(payer.publicKey(), '41'), {
      fee: '100',
      networkPassphrase: NETWORK,
    })
      .addOperation(Operation.bumpSequence({ bumpTo: '99' }))
      .setTimeout(300)
      .build();
    inner.sign(payer);
    const bump = TransactionBuilder.buildFeeBumpTransaction(s.source, '200', inner, NETWORK);
    const res = await s.h.app.inject({
      method: 'POST',
      url: '/v1/proposals',
      headers: { authorization: `Bearer ${s.h.adminKey}` },
      payload: { xdr: bump.toEnvelope().toXDR('base64') },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({
      kind: 'feeBump',
      requirements: [{ accountId: s.source, level: 'low', weight: 2 }],
    });
    const done = await until(s, res.json().id, 'signed');
    const d = decodeEnvelope(done.envelope as string, NETWORK);
    expect(d.kind).toBe('feeBump');
    expect(d.signatures).toHaveLength(2);
    expect(d.inner!.signatures).toHaveLength(1);
    expect(checkAuth(d, new Map([[s.source, s.h.ledger.accounts.get(s.source)!]]))).toEqual({ ok: true });
  });

  it('misbehaving nodes (garbage signature, signature over another hash, a key it was not enrolled with) never poison the envelope and are flagged', async () => {
    const s = await setup([
      new TestNode('good1'),
      new TestNode('bad1', 'garbage'),
      new TestNode('good2', 'silent'),
      new TestNode('bad2', 'otherHash'),
      new TestNode('bad3', 'wrongKey'),
    ]);
    // bad2 and bad3 are signers too (weight 1 each) so they receive the proposal.
    const acct = multisig(
      s.source,
      s.nodes.map((n) => n.stellarKey),
      2,
    );
    s.h.ledger.accounts.set(s.source, acct);
    s.h.app.coordinator.invalidateAccounts([s.source]);
    const p = await s.propose({ submit: true });
    await waitFor(
      () => (s.h.store.decisions(p.id).filter((d) => d.outcome === 'invalid').length === 3 ? true : undefined),
      'three invalid decisions',
    );
    expect((await s.get(p.id)).status).toBe('pending');
    // The good second signer comes in late: the envelope holds exactly the two good signatures.
    s.nodes[2]!.behaviour = 'approve';
    s.nodes[2]!.send('sync', {});
    const done = await until(s, p.id, 'submitted');
    const env = envelopeOk(s, done.envelope as string);
    expect(env.sigs).toBe(2);
    expect(env.verdict).toEqual({ ok: true });
    expect(
      s.h.store
        .signatures(p.id)
        .map((x) => x.nodeId)
        .sort(),
    ).toEqual(['good1', 'good2']);
    const listed = (
      await s.h.app.inject({ url: '/v1/nodes', headers: { authorization: `Bearer ${s.h.adminKey}` } })
    ).json().nodes as { id: string; misbehaviours: number; recentMisbehaviour: { kind: string }[] }[];
    const byId = new Map(listed.map((n) => [n.id, n]));
    expect(byId.get('bad1')!.recentMisbehaviour[0]!.kind).toBe('invalid_signature');
    expect(byId.get('bad2')!.recentMisbehaviour[0]!.kind).toBe('invalid_signature');
    expect(byId.get('bad3')!.recentMisbehaviour[0]!.kind).toBe('wrong_signer_key');
    expect(byId.get('good1')!.misbehaviours).toBe(0);
    expect(done.rejections).toHaveLength(3);
  });

  it('a node whose key is not a signer gets nothing, and its unsolicited approval is flagged', async () => {
    const s = await setup([
      new TestNode('a', 'silent'),
      new TestNode('b', 'silent'),
      new TestNode('c', 'silent'),
      new TestNode('outsider'),
    ]);
    const p = await s.propose();
    await s.nodes[0]!.until(() => s.nodes[0]!.proposals.length === 1);
    const outsider = s.nodes[3]!;
    expect(outsider.proposals).toHaveLength(0);
    const hash = Buffer.from((await s.get(p.id)).hash as string, 'hex');
    outsider.send('decision', {
      proposalId: p.id,
      hash: hash.toString('hex'),
      outcome: 'approve',
      reasons: [],
      signerKey: outsider.stellarKey,
      signature: Buffer.from(outsider.keypair.sign(hash)).toString('base64'),
    });
    await waitFor(() => (s.h.store.getNode('outsider')!.misbehaviours > 0 ? true : undefined), 'outsider flagged');
    expect(s.h.store.misbehaviours('outsider', 1)[0]!.kind).toBe('not_a_signer');
    expect(s.h.store.signatures(p.id)).toHaveLength(0);
  });

  it('decisions after the close are still checked: a late bad signature is flagged, a late good one is not, also after a restart', async () => {
    const first = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c', 'silent')]);
    const p = await first.propose();
    await until(first, p.id, 'signed');
    const c = first.nodes[2]!;
    const hash = Buffer.from(first.h.store.getProposal(p.id)!.hash, 'hex');
    const decision = (over: Partial<Body<'decision'>> = {}): Body<'decision'> => ({
      proposalId: p.id,
      hash: hash.toString('hex'),
      outcome: 'approve',
      reasons: [],
      signerKey: c.stellarKey,
      signature: Buffer.from(c.keypair.sign(hash)).toString('base64'),
      ...over,
    });
    const flagged = (h: Harness) => h.store.misbehaviours('c', 10).map((m) => [m.kind, m.detail]);
    // A good late approval, then a late refusal: normal traffic, nothing flagged, nothing stored.
    c.send('decision', decision());
    c.send('decision', decision({ outcome: 'reject', signature: undefined, reasons: [{ code: 'X', message: 'no' }] }));
    // Then a forged signature, an approval of another hash, a missing signature and another key.
    c.send('decision', decision({ signature: Buffer.alloc(64, 7).toString('base64') }));
    c.send('decision', decision({ hash: 'ab'.repeat(32) }));
    c.send('decision', decision({ signature: undefined }));
    c.send('decision', decision({ signerKey: Keypair.random().publicKey() }));
    c.send('decision', decision({ proposalId: 'never-sent' }));
    await waitFor(() => (flagged(first.h).length === 5 ? true : undefined), 'five late misbehaviours');
    expect(flagged(first.h).map(([k]) => k)).toEqual([
      'unknown_proposal',
      'wrong_signer_key',
      'missing_signature',
      'hash_mismatch',
      'invalid_signature',
    ]);
    expect(flagged(first.h)[1]![1]).toMatch(/after the proposal closed/);
    expect(
      first.h.store
        .decisions(p.id)
        .map((d) => d.nodeId)
        .sort(),
    ).toEqual(['a', 'b']);
    expect(first.h.store.signatures(p.id)).toHaveLength(2);

    // After a restart the closed proposal is read from the store: same verdicts.
    const { dir, ledger, identity } = first.h;
    for (const n of first.nodes) n.close();
    await first.h.app.close();
    h = await harness({ dir, ledger, identity, nodes: first.nodes, listen: true });
    const hh = h;
    expect(await c.connect(hh.url!, identity.publicKey)).toBe('welcome');
    c.send('decision', decision());
    c.send('decision', decision({ signature: Buffer.alloc(64, 9).toString('base64') }));
    await waitFor(() => (flagged(hh).length === 6 ? true : undefined), 'late misbehaviour after the restart');
    expect(flagged(hh)[0]![0]).toBe('invalid_signature');
  });

  it('a flood of frames is dropped, the node is flagged and cut off; the round still completes', async () => {
    const s = await setup([new TestNode('a'), new TestNode('flooder', 'silent'), new TestNode('c')], {
      config: { limits: { nodeFramesPerSecond: 5, nodeFrameBurst: 10 } },
    });
    const f = s.nodes[1]!;
    for (let i = 0; i < 60; i++) f.send('ping', { nonce: String(i) });
    await f.until(() => f.closed !== undefined);
    expect(f.closed!.code).toBe(CLOSE.RATE_LIMITED);
    expect(s.h.store.misbehaviours('flooder', 5).map((m) => m.kind)).toContain('flood');
    const p = await s.propose();
    const done = await until(s, p.id, 'signed');
    expect(envelopeOk(s, done.envelope as string).verdict).toEqual({ ok: true });
  });

  it('ends rejected with every node reason once the quorum is out of reach', async () => {
    const s = await setup([new TestNode('a', 'reject'), new TestNode('b', 'silent'), new TestNode('c', 'reject')]);
    const p = await s.propose();
    const done = await until(s, p.id, 'rejected');
    expect(done.statusReason).toContain('quorum unreachable');
    expect(done.statusReason).toContain('a: a: amount above limit');
    expect(done.statusReason).toContain('c: c: amount above limit');
    expect((done.rejections as unknown[]).length).toBe(2);
    const types = s.h.store.eventsSince(0, 100).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['node.rejected', 'proposal.rejected']));
  });

  it('a hold is recorded and keeps the proposal pending', async () => {
    const s = await setup([new TestNode('a', 'hold'), new TestNode('b', 'silent'), new TestNode('c', 'silent')]);
    const p = await s.propose();
    await waitFor(
      () => (s.h.store.eventsSince(0, 100).some((e) => e.type === 'node.held') ? true : undefined),
      'held event',
    );
    const now = await s.get(p.id);
    expect(now.status).toBe('pending');
    expect(now.decisions).toMatchObject([{ nodeId: 'a', outcome: 'hold', reasons: [{ code: 'POLICY_MANUAL' }] }]);
  });

  it('is rejected at once when the enrolled nodes cannot reach the threshold', async () => {
    const s = await setup([new TestNode('a')]);
    s.h.ledger.accounts.set(s.source, multisig(s.source, [s.nodes[0]!.stellarKey, Keypair.random().publicKey()], 2));
    const p = await s.propose();
    expect(p.status).toBe('rejected');
  });

  it('expires at the transaction max time', async () => {
    const s = await setup([new TestNode('a', 'silent'), new TestNode('b', 'silent'), new TestNode('c', 'silent')]);
    const res = await s.h.app.inject({
      method: 'POST',
      url: '/v1/proposals',
      headers: { authorization: `Bearer ${s.h.adminKey}` },
      payload: { xdr: payment(s.source, { timeoutSec: 1 }) },
    });
    const done = await until(s, res.json().id, 'expired');
    expect(done.statusReason).toContain('time bound');
  });

  it('a node connecting later receives open proposals on sync', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], { connect: false });
    const p = await s.propose({ submit: true });
    expect((await s.get(p.id)).status).toBe('pending');
    for (const n of s.nodes.slice(0, 2)) await n.connect(s.h.url!, s.h.identity.publicKey);
    const done = await until(s, p.id, 'submitted');
    expect(envelopeOk(s, done.envelope as string).sigs).toBe(2);
  });

  it('submission: a refusal is final (bad auth drops the account cache), transient failures retry the same bytes', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    s.h.ledger.outcomes.push({
      kind: 'rejected',
      code: 'tx_bad_auth',
      operationCodes: [],
      message: 'Transaction Failed',
    });
    const p1 = await s.propose({ submit: true });
    const failed = await until(s, p1.id, 'failed');
    expect(failed.result).toMatchObject({ outcome: 'failed', code: 'tx_bad_auth' });
    expect(failed.statusReason).toContain('tx_bad_auth');
    const loads = s.h.ledger.loads;
    s.h.ledger.outcomes.push({ kind: 'transient', message: '504' }, { kind: 'transient', message: '503' });
    const p2 = await s.h.app.inject({
      method: 'POST',
      url: '/v1/proposals',
      headers: { authorization: `Bearer ${s.h.adminKey}` },
      payload: { xdr: payment(s.source, { seq: '555' }), submit: true },
    });
    expect(s.h.ledger.loads).toBe(loads + 1);
    const ok = await until(s, p2.json().id, 'submitted');
    expect(ok.result).toMatchObject({ outcome: 'accepted', attempts: 3 });
    const mine = s.h.ledger.submitted.filter((x) => x === ok.envelope);
    expect(mine).toHaveLength(3);
  });

  it('a lost answer (504) is resolved by looking the hash up, never by a second different submission', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    s.h.ledger.applyOnTransient = true;
    s.h.ledger.outcomes.push({ kind: 'transient', message: '504' });
    const p = await s.propose({ submit: true });
    const done = await until(s, p.id, 'submitted');
    expect(done.result).toMatchObject({ message: 'found on the ledger', attempts: 2 });
    expect(s.h.ledger.submitted).toHaveLength(1);
  });

  it('a node approving a different hash is flagged and its signature is not kept', async () => {
    const s = await setup([new TestNode('a', 'silent'), new TestNode('b', 'silent'), new TestNode('c', 'silent')]);
    // A valid signature over the right transaction, but the node claims another hash.
    s.nodes[0]!.behaviour = (p, n) => {
      n.behaviour = 'approve';
      const d = n.decision(p)!;
      n.behaviour = 'silent';
      return { ...d, hash: '0'.repeat(64) };
    };
    const p = await s.propose();
    await waitFor(
      () => (s.h.store.misbehaviours('a', 1)[0]?.kind === 'hash_mismatch' ? true : undefined),
      'hash mismatch flagged',
    );
    expect(s.h.store.signatures(p.id)).toHaveLength(0);
  });

  it('an envelope without a time bound: transient failures past the attempt budget end failed, fate unknown', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: { round: { submitAttempts: 2, submitBackoffMs: 10, heartbeatMs: 1000 } },
    });
    s.h.ledger.outcomes.push({ kind: 'transient', message: 'down' }, { kind: 'transient', message: 'down' });
    const p = await s.propose({ submit: true, xdr: payment(s.source, { timeoutSec: 0 }) });
    const done = await until(s, p.id, 'failed');
    expect(done.result).toMatchObject({ code: 'submission_unavailable', attempts: 2 });
  });

  it('a ledger outage longer than the attempt budget: the same envelope is retried until the ledger is back', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: { round: { submitAttempts: 2, submitBackoffMs: 10, submitMaxBackoffMs: 50, heartbeatMs: 1000 } },
    });
    s.h.ledger.submitDown = true;
    s.h.ledger.statusDown = true;
    const p = await s.propose({ submit: true, xdr: payment(s.source, { timeoutSec: 120 }) });
    // Well past the attempt budget, still signed (not failed) and still trying.
    await waitFor(() => (s.h.ledger.submitted.length >= 6 ? true : undefined), 'six attempts');
    expect((await s.get(p.id)).status).toBe('signed');
    s.h.ledger.submitDown = false;
    s.h.ledger.statusDown = false;
    const done = await until(s, p.id, 'submitted');
    expect((done.result as { attempts: number }).attempts).toBeGreaterThanOrEqual(7);
    expect(new Set(s.h.ledger.submitted)).toEqual(new Set([done.envelope]));
  });

  it('a submitted transaction that needed HIGH (a signer change) drops the cached account; a payment keeps it', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: { round: { accountCacheMs: 60_000, heartbeatMs: 1000 } },
    });
    const settle = async (body: Record<string, unknown>) => until(s, (await s.propose(body)).id, 'submitted');
    await settle({ submit: true, xdr: payment(s.source, { seq: '100' }) });
    const loads = s.h.ledger.loads;
    await settle({ submit: true, xdr: payment(s.source, { seq: '101' }) });
    expect(s.h.ledger.loads).toBe(loads);
    const change = new TransactionBuilder(new Account(s.source, '102'), { fee: '100', networkPassphrase: NETWORK })
      .addOperation(Operation.setOptions({ signer: { ed25519PublicKey: Keypair.random().publicKey(), weight: 1 } }))
      .setTimeout(300)
      .build()
      .toXDR();
    const signed = await settle({ submit: true, xdr: change });
    expect((signed.requirements as unknown[])[0]).toMatchObject({ accountId: s.source, level: 'high' });
    // The next proposal reads the account again: its signers may have changed.
    await settle({ submit: true, xdr: payment(s.source, { seq: '103' }) });
    expect(s.h.ledger.loads).toBe(loads + 1);
  });

  it('the store failing as the outcome is recorded: the process lives on, and a resumed attempt records it without resending', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: { round: { submitBackoffMs: 10, submitMaxBackoffMs: 50, heartbeatMs: 1000 } },
    });
    // The database is out of reach exactly when the network's answer is to be stored (twice in a row). Before the
    // fix this rejected a promise nobody awaited, and an unhandled rejection ends the coordinator.
    const store = s.h.store;
    const real = store.transition.bind(store);
    let failures = 2;
    store.transition = (id, from, to, patch) => {
      if (to === 'submitted' && failures > 0) {
        failures--;
        throw coordinatorErrors.error('COORD_STORE_UNAVAILABLE', { reason: 'ECONNRESET' });
      }
      return real(id, from, to, patch);
    };
    const p = await s.propose({ submit: true, xdr: payment(s.source, { timeoutSec: 120 }) });
    const done = await until(s, p.id, 'submitted');
    expect(failures).toBe(0);
    // Sent once: the resumed attempts asked the network for the hash and found it applied.
    expect(s.h.ledger.submitted).toEqual([done.envelope]);
    expect((done.result as { message: string }).message).toBe('found on the ledger');
  }, 20_000);

  it('past the time bound: submission_expired when the hash is not on the ledger, submission_unavailable when it cannot be asked', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: {
        round: {
          submitAttempts: 1,
          submitBackoffMs: 10,
          submitMaxBackoffMs: 200,
          ledgerSettleMs: 0,
          heartbeatMs: 1000,
        },
      },
    });
    // Three proposals at once, each with its own outage; a bound of some seconds leaves the round time to sign
    // (a proposal still pending at its bound ends 'expired' instead).
    const [x1, x2, x3] = ['100', '200', '300'].map((seq) => payment(s.source, { timeoutSec: 6, seq }));
    const hash = (x: string) => decodeEnvelope(x, NETWORK).hash.toString('hex');
    // Submissions refused at the door, lookups answered: not on the ledger.
    s.h.ledger.downFor.add(hash(x1!));
    // Submissions and lookups both fail.
    s.h.ledger.downFor.add(hash(x2!));
    s.h.ledger.statusDownFor.add(hash(x2!));
    // Every answer lost (504) although the transaction applied: found by hash, never sent twice.
    s.h.ledger.lostFor.add(hash(x3!));
    const [p1, p2, p3] = await Promise.all([x1, x2, x3].map((xdr) => s.propose({ submit: true, xdr })));

    const expired = await until(s, p1!.id, 'failed');
    expect(expired.result).toMatchObject({ code: 'submission_expired' });
    expect((expired.result as { attempts: number }).attempts).toBeGreaterThan(1);
    expect(expired.statusReason).toContain('can no longer apply');

    const unknown = await until(s, p2!.id, 'failed');
    expect(unknown.result).toMatchObject({ code: 'submission_unavailable' });
    expect(unknown.statusReason).toContain('cannot be known');

    const found = await until(s, p3!.id, 'submitted');
    expect(found.result).toMatchObject({ message: 'found on the ledger', attempts: 2 });
    expect(s.h.ledger.submitted.filter((x) => x === found.envelope)).toHaveLength(1);
  });

  it('a hash found on the ledger as failed ends the submission (the sequence is used): no resend', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    s.h.ledger.failOnTransient = true;
    s.h.ledger.outcomes.push({ kind: 'transient', message: '504' });
    const p = await s.propose({ submit: true });
    const done = await until(s, p.id, 'failed');
    expect(done.result).toMatchObject({ code: 'tx_failed', attempts: 2 });
    expect(s.h.ledger.submitted).toHaveLength(1);
  });

  it('a node whose key backend is down (SIGNER_UNAVAILABLE) is asked again, and its refusal never makes the quorum unreachable', async () => {
    const s = await setup([new TestNode('a', 'silent'), new TestNode('b', 'reject'), new TestNode('c')], {
      config: { round: { signerRetryMs: 20, signerRetryMaxMs: 100, heartbeatMs: 1000 } },
    });
    let asked = 0;
    s.nodes[0]!.behaviour = (p, n) => {
      asked++;
      if (asked < 3)
        return {
          proposalId: p.proposalId,
          outcome: 'reject',
          hash: decodeEnvelope(p.xdr!, NETWORK).hash.toString('hex'),
          signerKey: n.stellarKey,
          reasons: [
            {
              code: 'SIGNER_UNAVAILABLE',
              message: 'The key backend could not sign (KMS_UNAVAILABLE); ask again later.',
            },
          ],
        };
      n.behaviour = 'approve';
      return n.decision(p);
    };
    const p = await s.propose({ submit: true });
    const done = await until(s, p.id, 'submitted');
    expect(asked).toBe(3);
    expect(envelopeOk(s, done.envelope as string).verdict.ok).toBe(true);
    const types = s.h.store.eventsSince(0, 100).map((e) => e.type);
    expect(types.filter((t) => t === 'node.unavailable')).toHaveLength(2);
    expect(s.h.store.getNode('a')!.rejections).toBe(0);
  });

  it('SIGNER_UNAVAILABLE retries stop when the proposal ends', async () => {
    const s = await setup([new TestNode('a', 'silent'), new TestNode('b', 'silent'), new TestNode('c', 'silent')], {
      config: { round: { signerRetryMs: 10, signerRetryMaxMs: 20, heartbeatMs: 1000 } },
    });
    const unavailable = (p: Body<'proposal'>, n: TestNode): Body<'decision'> => ({
      proposalId: p.proposalId,
      outcome: 'reject',
      hash: decodeEnvelope(p.xdr!, NETWORK).hash.toString('hex'),
      signerKey: n.stellarKey,
      reasons: [{ code: 'SIGNER_UNAVAILABLE', message: 'down' }],
    });
    s.nodes[0]!.behaviour = unavailable;
    const p = await s.propose();
    await waitFor(() => (s.nodes[0]!.proposals.length >= 3 ? true : undefined), 'asked three times');
    expect((await s.get(p.id)).decisions).toMatchObject([{ nodeId: 'a', outcome: 'unavailable' }]);
    await s.h.app.inject({
      method: 'POST',
      url: `/v1/proposals/${p.id}/cancel`,
      headers: { authorization: `Bearer ${s.h.adminKey}` },
      payload: { reason: 'test' },
    });
    expect((await s.get(p.id)).status).toBe('cancelled');
    // The node is told (it is not counted as decided) and no timer asks it again.
    await s.nodes[0]!.until(() => s.nodes[0]!.cancels.length > 0);
    const asked = s.nodes[0]!.proposals.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(s.nodes[0]!.proposals.length).toBe(asked);
  });
});

describe('node sessions', () => {
  it('refuses unknown nodes, wrong identity keys, wrong Stellar keys, wrong networks and wrong challenges', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], { connect: false });
    const url = s.h.url!;
    const key = s.h.identity.publicKey;
    expect(await new TestNode('stranger').connect(url, key)).toBe(CLOSE.UNKNOWN_NODE);
    const impostor = new TestNode('a');
    expect(await impostor.connect(url, key)).toBe(CLOSE.AUTH_FAILED);
    expect(await s.nodes[0]!.connect(url, key, { stellarKey: Keypair.random().publicKey() })).toBe(
      CLOSE.STELLAR_KEY_MISMATCH,
    );
    expect(
      await s.nodes[0]!.connect(url, key, { networkPassphrase: 'Public Global Stellar Network ; September 2015' }),
    ).toBe(CLOSE.NETWORK_MISMATCH);
    expect(await s.nodes[0]!.connect(url, key, { challenge: Buffer.alloc(32).toString('base64') })).toBe(
      CLOSE.AUTH_FAILED,
    );
    expect(await s.nodes[0]!.connect(url, key, { nodeId: 'b' })).toBe(CLOSE.AUTH_FAILED);
    expect(s.h.app.coordinator.hub.connected()).toEqual([]);
  });

  it('a reconnecting node replaces its older socket; ping/pong keep the session measured', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    const first = s.nodes[0]!.ws!;
    const closed = new Promise<number>((r) => first.once('close', (code) => r(code)));
    const again = new TestNode('a', 'approve', { keypair: s.nodes[0]!.keypair });
    // Same identity: reuse the enrolled one.
    Object.defineProperty(again, 'identity', { value: s.nodes[0]!.identity });
    nodes.push(again);
    expect(await again.connect(s.h.url!, s.h.identity.publicKey)).toBe('welcome');
    expect(await closed).toBe(CLOSE.REPLACED);
    expect(s.h.app.coordinator.hub.connected().filter((c) => c.nodeId === 'a')).toHaveLength(1);
    await waitFor(
      () => (s.h.store.getNode('a')!.lastLatencyMs !== null ? true : undefined),
      'a heartbeat round trip',
      5000,
    );
    // A node ping gets a pong.
    let pongs = 0;
    again.ws!.on('message', () => pongs++);
    again.send('ping', { nonce: 'x' });
    await waitFor(() => (pongs > 0 ? true : undefined), 'pong');
  });

  it('flags frames that fail verification after the handshake', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    const n = s.nodes[0]!;
    n.send('error', { code: 'NODE_SOMETHING', message: 'informational only' });
    n.ws!.send('not a frame');
    n.sendRaw('sync', {}, { session: 'other-session' });
    n.sendRaw('sync', {}, { session: n.session, from: 'b' });
    await waitFor(() => (s.h.store.misbehaviours('a', 5).length === 3 ? true : undefined), 'three bad frames flagged');
    expect(s.h.store.misbehaviours('a', 5).every((m) => m.kind === 'bad_frame')).toBe(true);
  });

  it('closes a session whose node stops answering pings', async () => {
    const s = await setup([new TestNode('a')], { connect: false, config: { round: { heartbeatMs: 100 } } });
    const n = s.nodes[0]!;
    n.answerPings = false;
    await n.connect(s.h.url!, s.h.identity.publicKey);
    await n.until(() => n.closed !== undefined);
    // Dropped, not closed gracefully (see the partition test below): the node sees an abnormal closure.
    expect(n.closed!.code).toBe(1006);
    await waitFor(() => (s.h.app.coordinator.hub.connected().length === 0 ? true : undefined), 'session gone');
  });

  it('drops a node behind a silent partition at the heartbeat timeout, without waiting for a close handshake', async () => {
    // A graceful close would wait for the node's close frame, which the partition swallows: ws then keeps the
    // session for its 30 s close timeout, longer than this wait.
    const s = await setup([new TestNode('a')], { connect: false, config: { round: { heartbeatMs: 100 } } });
    const proxy = new SilentProxy(Number(new URL(s.h.url!).port));
    proxies.push(proxy);
    await proxy.listen();
    expect(await s.nodes[0]!.connect(proxy.url, s.h.identity.publicKey)).toBe('welcome');
    expect(s.h.app.coordinator.hub.connected().map((c) => c.nodeId)).toEqual(['a']);
    proxy.partition();
    await waitFor(() => (s.h.app.coordinator.hub.connected().length === 0 ? true : undefined), 'node dropped', 10_000);
    expect(s.nodes[0]!.closed).toBeUndefined();
  });

  it('closes a socket that never authenticates', async () => {
    const s = await setup([new TestNode('a')], {
      connect: false,
      config: { round: { handshakeTimeoutMs: 200, heartbeatMs: 1000 } },
    });
    const ws = new WebSocket(`${s.h.url!.replace('http', 'ws')}/v1/nodes/connect`);
    const code = await new Promise<number>((r) => ws.on('close', (c) => r(c)));
    expect(code).toBe(CLOSE.HANDSHAKE_TIMEOUT);
  });
});

describe('events and callbacks', () => {
  it('streams events over WebSocket to an authenticated client (with replay from a sequence) and refuses others', async () => {
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')]);
    const wsUrl = `${s.h.url!.replace('http', 'ws')}/v1/events?since=0`;
    const refused = new WebSocket(wsUrl);
    const err = await new Promise<string>((r) => refused.on('error', (e) => r(e.message)));
    expect(err).toContain('401');
    const client = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${s.h.adminKey}` } });
    const seen: string[] = [];
    client.on('message', (d: Buffer) => seen.push((JSON.parse(d.toString()) as { type: string }).type));
    // A second, live-only subscriber: the same text for every event (serialised once for all, eventJson), one
    // event per message and in order although the events of one commit leave in one write (write-batch.ts).
    const live = new WebSocket(wsUrl.replace('?since=0', ''), {
      headers: { authorization: `Bearer ${s.h.adminKey}` },
    });
    const liveTexts: string[] = [];
    live.on('message', (d: Buffer) => liveTexts.push(d.toString()));
    await Promise.all([new Promise((r) => client.on('open', r)), new Promise((r) => live.on('open', r))]);
    await s.propose();
    await waitFor(() => (seen.includes('quorum.reached') ? true : undefined), 'quorum event');
    expect(seen[0]).toBe('proposal.created');
    await waitFor(() => (liveTexts.some((t) => t.includes('quorum.reached')) ? true : undefined), 'live quorum');
    const events = liveTexts.map((t) => JSON.parse(t) as { seq: number; type: string });
    expect(events.map((e) => e.type)).toEqual(seen.slice(0, events.length));
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));
    expect(new Set(events.map((e) => e.seq)).size).toBe(events.length);
    client.close();
    live.close();
  });

  it('gives up on a receiver that keeps failing after maxAttempts; a throwing subscriber harms nothing', async () => {
    const hits = new Map<string, number>();
    const server = createServer((req, res) => {
      const t = String(req.headers['x-cosigner-event']);
      hits.set(t, (hits.get(t) ?? 0) + 1);
      req.resume();
      req.on('end', () => {
        res.statusCode = 500;
        res.end();
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: { callbacks: { initialBackoffMs: 10, maxAttempts: 2 } },
    });
    s.h.app.coordinator.events.subscribe(() => {
      throw new Error('subscriber bug');
    });
    const p = await s.propose({ callbackUrl: `http://127.0.0.1:${port}/hook` });
    await until(s, p.id, 'signed');
    await waitFor(() => (hits.get('quorum.reached') === 2 ? true : undefined), 'two attempts');
    expect(hits.get('proposal.created')).toBe(2);
  });

  it('POSTs HMAC-signed callbacks, retrying a failing receiver with backoff', async () => {
    const got: { body: string; headers: IncomingMessage['headers'] }[] = [];
    let failFirst = true;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (failFirst) {
          failFirst = false;
          res.statusCode = 500;
          res.end();
          return;
        }
        got.push({ body, headers: req.headers });
        res.end('ok');
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const s = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: { callbacks: { initialBackoffMs: 20 } },
    });
    await s.propose({ callbackUrl: `http://127.0.0.1:${port}/hook` });
    const has = (t: string) => got.some((g) => g.headers['x-cosigner-event'] === t);
    // proposal.created was refused once (500) and arrives on the retry.
    await waitFor(() => (has('quorum.reached') && has('proposal.created') ? true : undefined), 'callbacks');
    const types = got.map((g) => g.headers['x-cosigner-event']);
    expect(types).toContain('proposal.created');
    for (const g of got) {
      expect(g.headers['x-cosigner-signature']).toBe(
        signCallback('test-secret', String(g.headers['x-cosigner-timestamp']), g.body),
      );
    }
  });
});

describe('durability', () => {
  it('a proposal signed before a crash is submitted after the restart (same envelope)', async () => {
    const first = await setup([new TestNode('a'), new TestNode('b'), new TestNode('c')], {
      config: { round: { submitBackoffMs: 60_000 } },
    });
    first.h.ledger.outcomes.push({ kind: 'transient', message: 'down' });
    const p = await first.propose({ submit: true });
    await waitFor(() => (first.h.ledger.submitted.length === 1 ? true : undefined), 'first attempt');
    const { dir, ledger, identity } = first.h;
    for (const n of first.nodes) n.close();
    await first.h.app.close();
    h = await harness({ dir, ledger, identity, nodes: first.nodes });
    const hh = h;
    await waitFor(
      () => (hh.store.getProposal(p.id)!.status === 'submitted' ? true : undefined),
      'submitted after restart',
    );
    expect(new Set(ledger.submitted).size).toBe(1);
    expect(ledger.submitted).toHaveLength(2);
  });

  it('signatures stored just before a crash complete the proposal at restart, with no node connected', async () => {
    const first = await setup([new TestNode('a'), new TestNode('b', 'silent'), new TestNode('c', 'silent')]);
    const p = await first.propose();
    await waitFor(() => (first.h.store.signatures(p.id).length === 1 ? true : undefined), 'first signature');
    const { dir, ledger, identity } = first.h;
    const hash = Buffer.from(first.h.store.getProposal(p.id)!.hash, 'hex');
    for (const n of first.nodes) n.close();
    await first.h.app.close();
    const { openSqliteStore } = await import('../src/store.ts');
    const db = openSqliteStore(dir);
    const b = first.nodes[1]!;
    db.addSignature({
      proposalId: p.id,
      signerKey: b.stellarKey,
      nodeId: 'b',
      signature: Buffer.from(b.keypair.sign(hash)).toString('base64'),
      createdAt: Date.now(),
    });
    db.close();
    h = await harness({ dir, ledger, identity, nodes: first.nodes });
    expect(h.store.getProposal(p.id)!.status).toBe('signed');
  });

  it('after a restart, an open proposal that no longer decodes is left as stored and the others resume', async () => {
    const first = await setup([new TestNode('a'), new TestNode('b', 'silent'), new TestNode('c', 'silent')]);
    const p = await first.propose({ submit: true });
    await waitFor(() => (first.h.store.signatures(p.id).length === 1 ? true : undefined), 'first signature');
    // A row whose transaction cannot be decoded any more (written by hand, a bad restore, a newer version's kind).
    first.h.store.insertProposal(proposalRecord({ id: 'corrupt-1', xdr: 'AAAA', network: NETWORK, createdAt: 2 }));
    const { dir, ledger, identity } = first.h;
    for (const n of first.nodes) n.close();
    await first.h.app.close();
    // Before, the start itself failed: one bad row kept every other proposal, and the service, down.
    h = await harness({ dir, ledger, identity, nodes: first.nodes, listen: true });
    const hh = h;
    first.nodes[1]!.behaviour = 'approve';
    await first.nodes[1]!.connect(hh.url!, identity.publicKey);
    await waitFor(() => (hh.store.getProposal(p.id)!.status === 'submitted' ? true : undefined), 'resumed');
    expect(hh.store.getProposal('corrupt-1')).toMatchObject({ status: 'pending', xdr: 'AAAA' });
  });

  it('after a restart on the same data dir the open proposal resumes with its signatures kept and completes once', async () => {
    const first = await setup([new TestNode('a'), new TestNode('b', 'silent'), new TestNode('c', 'silent')]);
    const p = await first.propose({ submit: true, idempotencyKey: 'durable-1' });
    await waitFor(() => (first.h.store.signatures(p.id).length === 1 ? true : undefined), 'first signature');
    const { dir, ledger, identity } = first.h;
    for (const n of first.nodes) n.close();
    await first.h.app.close();
    h = await harness({ dir, ledger, identity, nodes: first.nodes, listen: true });
    const hh = h;
    expect(hh.store.getProposal(p.id)!.status).toBe('pending');
    const again = await hh.app.inject({
      method: 'POST',
      url: '/v1/proposals',
      headers: { authorization: `Bearer ${hh.adminKey}` },
      payload: { xdr: hh.store.getProposal(p.id)!.xdr, submit: true, idempotencyKey: 'durable-1' },
    });
    expect(again.statusCode).toBe(200);
    expect(again.json().id).toBe(p.id);
    first.nodes[1]!.behaviour = 'approve';
    await first.nodes[1]!.connect(hh.url!, identity.publicKey);
    await waitFor(
      () => (hh.store.getProposal(p.id)!.status === 'submitted' ? true : undefined),
      'submitted after restart',
    );
    expect(
      hh.store
        .signatures(p.id)
        .map((x) => x.nodeId)
        .sort(),
    ).toEqual(['a', 'b']);
    expect(ledger.submitted).toHaveLength(1);
  });
});

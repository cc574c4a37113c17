import { rm } from 'node:fs/promises';
import type { Body } from '@cosigner/protocol/messages';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../src/events.ts';
import type { RoundKind } from '../src/kinds/kind.ts';
import { proposalFrame } from '../src/kinds/kind.ts';
import { createMetrics } from '../src/metrics.ts';
import { type NodeLink, RoundEngine } from '../src/round.ts';
import { openSqliteStore, type ProposalRecord, type Store } from '../src/store.ts';
import { multisig, proposalRecord, waitFor } from './helpers.ts';

/**
 * The round engine with a kind written here: what the RoundKind interface lets a kind do that the three kinds of
 * the product do not (a second exchange with the nodes it picked, a completion that throws, a sweep that fails),
 * on a real SQLite store. The kinds themselves are proven through the app (round.test.ts, soroban.test.ts).
 */

const dirs: string[] = [];
const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

interface Sent {
  nodeId: string;
  type: string;
  body: { note?: string };
}

async function rig(nodeCount: number) {
  const dir = await tempDir('coord-engine-');
  dirs.push(dir);
  const store: Store = openSqliteStore(dir);
  const logger = createLogger({ name: 'engine-test', level: 'silent' });
  const events = new EventBus(
    store,
    logger,
    { secret: 's', maxAttempts: 1, initialBackoffMs: 10, timeoutMs: 100 },
    (fn) => store.afterCommit(fn),
  );
  const metrics = createMetrics();
  const engine = new RoundEngine({ store, events, metrics, logger });
  closers.push(async () => {
    engine.close();
    await events.close();
    store.close();
  });
  const nodes = Array.from({ length: nodeCount }, (_, i) => ({
    nodeId: `n${i}`,
    stellarKey: Keypair.random().publicKey(),
    connectedAt: 0,
  }));
  for (const n of nodes) store.enrollNode({ id: n.nodeId, identityKey: `id-${n.nodeId}`, stellarKey: n.stellarKey }, 0);
  const sent: Sent[] = [];
  const link = {
    connected: () => nodes,
    send: (nodeId: string, type: string, body: unknown) => {
      sent.push({ nodeId, type, body: body as Sent['body'] });
      return true;
    },
  } as NodeLink;
  engine.attach(link);
  const account = Keypair.random().publicKey();
  let n = 0;
  const propose = (kind: ProposalRecord['kind'] = 'transaction'): ProposalRecord => {
    const rec = proposalRecord({
      id: `p${++n}`,
      kind,
      requirements: [{ accountId: account, level: 'medium', weight: 2 }],
      accounts: [
        multisig(
          account,
          nodes.map((x) => x.stellarKey),
          2,
        ),
      ],
      createdAt: Date.now(),
    });
    store.insertProposal(rec);
    return rec;
  };
  const approve = (nodeIndex: number, rec: ProposalRecord): Body<'decision'> => ({
    proposalId: rec.id,
    hash: rec.hash,
    outcome: 'approve',
    reasons: [],
    signerKey: nodes[nodeIndex]!.stellarKey,
  });
  const decide = (nodeIndex: number, rec: ProposalRecord) =>
    engine.onDecision(nodes[nodeIndex]!.nodeId, nodes[nodeIndex]!.stellarKey, approve(nodeIndex, rec));
  const status = (id: string) => store.getProposal(id)?.status;
  return { store, engine, metrics, nodes, sent, propose, decide, status };
}

/**
 * A two-exchange kind in the manner of a FROST signing round: it picks the first two nodes, asks them for a
 * commitment, then (once both are in) asks the same two for their share; the round is complete with both shares.
 */
function twoExchanges(store: Store): RoundKind<{ commitments: Set<string>; shares: Set<string>; asked: boolean }> {
  return {
    kinds: ['transaction'],
    open: () => ({ commitments: new Set(), shares: new Set(), asked: false }),
    request({ rec, state }, node, accounts) {
      if (node.nodeId !== 'n0' && node.nodeId !== 'n1') return null;
      const phase = state.asked ? 'share' : 'commit';
      return proposalFrame({ ...rec, note: phase }, accounts, { kind: 'transaction', xdr: rec.xdr! });
    },
    next(round) {
      if (round.state.asked || round.state.commitments.size < 2) return [];
      round.state.asked = true;
      return ['n0', 'n1'];
    },
    verify({ rec, state }, nodeId, stellarKey, _d, at) {
      if (nodeId !== 'n0' && nodeId !== 'n1') return { kind: 'not_a_signer', detail: `${nodeId} was not picked` };
      if (!state.commitments.has(nodeId)) {
        state.commitments.add(nodeId);
        return { rows: {} };
      }
      state.shares.add(nodeId);
      return {
        rows: { signatures: [{ proposalId: rec.id, signerKey: stellarKey, nodeId, signature: 'c2ln', createdAt: at }] },
      };
    },
    signers: ({ rec }) => new Set(store.signatures(rec.id).map((s) => s.signerKey)),
    complete: ({ state }) => (state.shares.size === 2 ? { envelope: 'RU5W', event: { signatures: 2 } } : null),
    afterSigned: () => false,
  };
}

describe('the round engine hosts kinds beyond the three of the product', () => {
  it('a kind with two exchanges asks the nodes it picked again once their first answers are kept', async () => {
    const r = await rig(3);
    r.engine.register(twoExchanges(r.store));
    const rec = r.propose();
    await r.engine.start(rec);
    // It picked two of the three nodes.
    expect(r.sent.map((s) => [s.nodeId, s.body.note])).toEqual([
      ['n0', 'commit'],
      ['n1', 'commit'],
    ]);
    r.sent.length = 0;
    expect(r.decide(0, rec)).toBe(true);
    expect(r.decide(1, rec)).toBe(true);
    await waitFor(() => (r.sent.length >= 2 ? true : undefined), 'second exchange');
    expect(r.sent.map((s) => [s.nodeId, s.type, s.body.note])).toEqual([
      ['n0', 'proposal', 'share'],
      ['n1', 'proposal', 'share'],
    ]);
    r.decide(0, rec);
    r.decide(1, rec);
    await waitFor(() => (r.status(rec.id) === 'signed' ? true : undefined), 'signed');
    expect(r.store.getProposal(rec.id)?.envelope).toBe('RU5W');
    // The node it did not pick is told the round is over; its answer would not count.
    expect(r.sent.filter((s) => s.type === 'cancel').map((s) => s.nodeId)).toEqual(['n2']);
    const latency = (await r.metrics.proposalLatency.get()).values.find(
      (v) => v.metricName === 'coordinator_proposal_seconds_count' && v.labels.status === 'signed',
    );
    expect(latency?.value).toBe(1);
  });

  it('a completion that throws keeps the answer and the round open', async () => {
    const r = await rig(2);
    const kind = twoExchanges(r.store);
    r.engine.register({
      ...kind,
      complete: () => {
        throw new Error('assembly bug');
      },
    });
    const rec = r.propose();
    await r.engine.start(rec);
    r.decide(0, rec);
    await waitFor(() => (r.store.decisions(rec.id).length === 1 ? true : undefined), 'decision kept');
    expect(r.status(rec.id)).toBe('pending');
  });

  it('a sweep that fails ends nothing; the next one ends the round with its code', async () => {
    const r = await rig(2);
    let calls = 0;
    r.engine.register({
      ...twoExchanges(r.store),
      sweep: {
        everyMs: 20,
        async check(rounds) {
          calls += 1;
          if (calls === 1) throw new Error('network down');
          return rounds.map((round) => ({
            round,
            end: 'expired' as const,
            reason: 'swept',
            code: 'COORD_SOROBAN_ENTRY_EXPIRED' as const,
          }));
        },
      },
    });
    const rec = r.propose();
    await r.engine.start(rec);
    await waitFor(() => (r.status(rec.id) === 'expired' ? true : undefined), 'swept');
    expect(calls).toBe(2);
    expect(r.store.eventsSince(0, 100).find((e) => e.type === 'proposal.expired')?.data).toEqual({
      reason: 'swept',
      code: 'COORD_SOROBAN_ENTRY_EXPIRED',
    });
  });

  it('approvals completing a round in one batch: each is kept, the round is assembled once and signed once', async () => {
    const r = await rig(3);
    let completes = 0;
    r.engine.register({
      kinds: ['transaction'],
      open: () => ({}),
      request: ({ rec }, _node, accounts) => proposalFrame(rec, accounts, { kind: 'transaction', xdr: rec.xdr! }),
      verify: ({ rec }, nodeId, stellarKey, _d, at) => ({
        rows: { signatures: [{ proposalId: rec.id, signerKey: stellarKey, nodeId, signature: 'c2ln', createdAt: at }] },
      }),
      signers: ({ rec }) => new Set(r.store.signatures(rec.id).map((s) => s.signerKey)),
      complete: ({ rec }) => {
        completes++;
        const n = r.store.signatures(rec.id).length;
        return n >= 2 ? { envelope: `RU5W${n}`, event: { signatures: n } } : null;
      },
      afterSigned: () => false,
    });
    const rec = r.propose();
    await r.engine.start(rec);
    r.sent.length = 0;
    // The three answers arrive in one turn: their units share one group commit, in this order.
    expect([r.decide(0, rec), r.decide(1, rec), r.decide(2, rec)]).toEqual([true, true, true]);
    await waitFor(() => (r.status(rec.id) === 'signed' ? true : undefined), 'signed');
    await waitFor(() => (r.store.eventsSince(0, 100).some((e) => e.type === 'quorum.reached') ? true : undefined), 'q');
    // The first found the round incomplete, the second completed it; the third was kept without a second assembly.
    expect(completes).toBe(2);
    expect(r.store.getProposal(rec.id)?.envelope).toBe('RU5W2');
    expect(r.store.signatures(rec.id)).toHaveLength(3);
    expect(r.store.decisions(rec.id).map((d) => d.outcome)).toEqual(['approve', 'approve', 'approve']);
    const events = r.store.eventsSince(0, 100).map((e) => e.type);
    expect(events.filter((t) => t === 'quorum.reached')).toHaveLength(1);
    expect(events.filter((t) => t === 'node.approved')).toHaveLength(3);
    // Every node answered: nobody is told to cancel.
    expect(r.sent.filter((s) => s.type === 'cancel')).toEqual([]);

    // The next round completes by itself: the mark does not outlive its batch.
    const next = r.propose();
    await r.engine.start(next);
    r.decide(0, next);
    await waitFor(() => (r.store.signatures(next.id).length === 1 ? true : undefined), 'first kept');
    r.decide(2, next);
    await waitFor(() => (r.status(next.id) === 'signed' ? true : undefined), 'next signed');
  });

  it('an approval whose unit fails is not kept (nothing of it written); the round completes from the next answers', async () => {
    const r = await rig(3);
    r.engine.register({
      kinds: ['transaction'],
      open: () => ({}),
      request: ({ rec }, _node, accounts) => proposalFrame(rec, accounts, { kind: 'transaction', xdr: rec.xdr! }),
      // n0's row names a proposal that does not exist: the foreign key fails its unit.
      verify: ({ rec }, nodeId, stellarKey, _d, at) => ({
        rows: {
          signatures: [
            {
              proposalId: nodeId === 'n0' ? 'no-such-proposal' : rec.id,
              signerKey: stellarKey,
              nodeId,
              signature: 'c2ln',
              createdAt: at,
            },
          ],
        },
      }),
      signers: ({ rec }) => new Set(r.store.signatures(rec.id).map((s) => s.signerKey)),
      complete: ({ rec }) => {
        const n = r.store.signatures(rec.id).length;
        return n >= 2 ? { envelope: `RU5W${n}`, event: { signatures: n } } : null;
      },
      afterSigned: () => false,
    });
    const rec = r.propose();
    await r.engine.start(rec);
    expect(r.decide(0, rec)).toBe(true);
    await new Promise((res) => setTimeout(res, 20));
    expect(r.store.decisions(rec.id)).toEqual([]);
    expect(r.status(rec.id)).toBe('pending');
    r.decide(1, rec);
    r.decide(2, rec);
    await waitFor(() => (r.status(rec.id) === 'signed' ? true : undefined), 'signed');
    expect(r.store.getProposal(rec.id)?.envelope).toBe('RU5W2');
    expect(r.store.decisions(rec.id).map((d) => d.nodeId)).toEqual(['n1', 'n2']);
  });

  it('a proposal of a kind no module runs is refused, not run by another', async () => {
    const r = await rig(1);
    r.engine.register(twoExchanges(r.store));
    expect(() => r.engine.start(r.propose('authEntries'))).toThrow(
      /no round module is registered for proposals of kind authEntries/,
    );
  });
});

import { Keypair } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import type {
  ApiKeyRepository,
  CallbackRecord,
  EventRepository,
  NodeRepository,
  ProposalRecord,
  ProposalRepository,
} from '../../src/store.ts';
import { proposalRecord } from '../helpers.ts';

/**
 * One contract for every implementation of the coordinator's repositories: the SQLite store (sync) and PgStore
 * (async) run the same assertions, each call awaited (await on a plain value returns it).
 */

type Either<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => R | Promise<Awaited<R>> : never;
};
export type AnyRepositories = Either<ProposalRepository & EventRepository & NodeRepository & ApiKeyRepository>;

export interface ContractStore {
  store: AnyRepositories;
  close(): Promise<void> | void;
}

/** A pending transaction row with id `id` (the shared test row of helpers.ts, with fields that differ per id). */
export function proposal(id: string, over: Partial<ProposalRecord> = {}): ProposalRecord {
  return proposalRecord({
    id,
    xdr: `XDR-${id}`,
    hash: id.padEnd(64, '0').slice(0, 64),
    network: 'Test SDF Network ; September 2015',
    submit: true,
    createdAt: 1000,
    updatedAt: 1000,
    ...over,
  });
}

const RESULT = {
  outcome: 'accepted' as const,
  code: null,
  message: 'ok',
  operationCodes: ['op_success'],
  ledger: 7,
  attempts: 1,
};

export function runStoreContract(name: string, open: () => Promise<ContractStore>): void {
  describe(`store contract: ${name}`, () => {
    const withStore = (fn: (s: AnyRepositories) => Promise<void>) => async () => {
      const c = await open();
      try {
        await fn(c.store);
      } finally {
        await c.close();
      }
    };

    it(
      'proposals: insert, idempotency key, read back every field, unknown ids',
      withStore(async (s) => {
        const source = Keypair.random().publicKey();
        const rec = proposal('p1', {
          idempotencyKey: 'key-1',
          apiKeyId: 'ak',
          kind: 'feeBump',
          requirements: [{ accountId: source, level: 'medium', weight: 2 }],
          accounts: [
            {
              accountId: source,
              thresholds: { low: 1, medium: 2, high: 3 },
              signers: [{ key: source, weight: 1 }],
            } as unknown as ProposalRecord['accounts'][number],
          ],
          submit: false,
          callbackUrl: 'https://example.com/cb',
          note: 'a note',
          maxTime: 1_900_000_000,
        });
        expect(await s.insertProposal(rec)).toEqual({ proposal: rec, created: true });
        expect(await s.getProposal('p1')).toEqual(rec);
        expect(await s.getByIdempotencyKey('key-1')).toEqual(rec);
        const again = await s.insertProposal(proposal('p2', { idempotencyKey: 'key-1', xdr: 'other' }));
        expect(again).toEqual({ proposal: rec, created: false });
        expect(await s.getProposal('p2')).toBeUndefined();
        expect(await s.getByIdempotencyKey('nope')).toBeUndefined();
        // Without a key, every insert is new.
        expect((await s.insertProposal(proposal('p3'))).created).toBe(true);
        expect((await s.insertProposal(proposal('p4'))).created).toBe(true);
      }),
    );

    it(
      'Soroban rounds: entries in order beside the row, signed entries with the transition, follow-up wish',
      withStore(async (s) => {
        const auth = proposal('a1', { kind: 'authEntries', xdr: null, submit: false });
        expect(await s.insertProposal(auth, ['ZTA=', 'ZTE='])).toEqual({ proposal: auth, created: true });
        expect(await s.getProposal('a1')).toEqual(auth);
        expect(await s.authEntries('a1')).toEqual([
          { index: 0, entry: 'ZTA=', signed: null },
          { index: 1, entry: 'ZTE=', signed: null },
        ]);
        // A refused transition writes no signed entry.
        expect(await s.transition('a1', ['cancelled'], 'signed', { signedEntries: ['czA=', 'czE='] })).toBe(false);
        expect((await s.authEntries('a1')).map((e) => e.signed)).toEqual([null, null]);
        expect(await s.transition('a1', ['pending'], 'signed', { signedEntries: ['czA=', 'czE='] })).toBe(true);
        expect((await s.authEntries('a1')).map((e) => e.signed)).toEqual(['czA=', 'czE=']);
        const tx = proposal('s1', { kind: 'sorobanTx', submitFollowUp: true });
        await s.insertProposal(tx, ['ZTI=']);
        expect(await s.getProposal('s1')).toEqual(tx);
        expect(await s.authEntries('s1')).toEqual([{ index: 0, entry: 'ZTI=', signed: null }]);
        expect(await s.authEntries('nope')).toEqual([]);
      }),
    );

    it(
      'callback outbox: written with its event, due by next_at, retried, given up on, or gone once delivered',
      withStore(async (s) => {
        const plain = await s.appendEvent('p', 'proposal.created', { a: 1 }, 100);
        const e1 = await s.appendEvent('p', 'quorum.reached', { b: 2 }, 110, 'https://hooks.example/a');
        const e2 = await s.appendEvent('p', 'proposal.submitted', { c: 3 }, 120, 'https://hooks.example/b');
        expect(plain.seq).toBeLessThan(e1.seq);
        expect(await s.claimCallbacks('r1', 109, 1000, 10)).toEqual([]);
        const due = await s.claimCallbacks('r1', 200, 1000, 10);
        expect(due.map((c) => [c.url, c.attempts, c.event])).toEqual([
          ['https://hooks.example/a', 0, e1],
          ['https://hooks.example/b', 0, e2],
        ]);
        const [c1, c2] = due as [CallbackRecord, CallbackRecord];
        await s.settleCallback(c1.id, 'r1', { state: 'retry', attempts: 1, nextAt: 500, error: 'no 2xx answer' });
        await s.settleCallback(c2.id, 'r1', { state: 'delivered' });
        // Claims lapsed (1000 ms after 200): only the retry is left, due at 500.
        expect(await s.claimCallbacks('r2', 1300, 1000, 10)).toEqual([{ ...c1, attempts: 1 }]);
        await s.settleCallback(c1.id, 'r2', { state: 'failed', attempts: 2, error: 'destination refused' });
        expect(await s.claimCallbacks('r2', 10_000, 1000, 10)).toEqual([]);
        expect(await s.failedCallbacks(10)).toEqual([{ ...c1, attempts: 2, error: 'destination refused' }]);
      }),
    );

    it(
      'a follow-up still to open: marked in the signed transition, open until done, then closed',
      withStore(async (s) => {
        await s.insertProposal(proposal('f1', { kind: 'sorobanTx', submit: false }), ['ZTA=']);
        await s.insertProposal(proposal('f2', { kind: 'authEntries', xdr: null, submit: false }), ['ZTE=']);
        expect(await s.transition('f1', ['pending'], 'signed', { signedEntries: ['czA='], followUpDue: true })).toBe(
          true,
        );
        expect(await s.transition('f2', ['pending'], 'signed', { signedEntries: ['czE='] })).toBe(true);
        expect((await s.getProposal('f1'))?.followUpDue).toBe(true);
        expect((await s.getProposal('f2'))?.followUpDue).toBeUndefined();
        // The marked row is open (a restart or a takeover finds it); the signed-only one is not.
        expect((await s.openProposals()).map((p) => p.id)).toEqual(['f1']);
        expect(await s.countOpen()).toBe(1);
        // A later transition without the mark keeps it.
        expect(await s.transition('f1', ['signed'], 'signed', { statusReason: 'x' })).toBe(true);
        expect((await s.getProposal('f1'))?.followUpDue).toBe(true);
        await s.followUpDone('f1');
        expect((await s.getProposal('f1'))?.followUpDue).toBeUndefined();
        expect(await s.openProposals()).toEqual([]);
        expect(await s.countOpen()).toBe(0);
      }),
    );

    it(
      'decisions: an approval keeps its rows and counts once; a refusal counts a reject only',
      withStore(async (s) => {
        const signer = Keypair.random().publicKey();
        await s.enrollNode({ id: 'n1', identityKey: 'id1', stellarKey: signer }, 1);
        await s.insertProposal(proposal('p1'));
        const decision = { proposalId: 'p1', nodeId: 'n1', outcome: 'approve' as const, reasons: [], createdAt: 2 };
        const sig = { proposalId: 'p1', signerKey: signer, nodeId: 'n1', signature: 'c2ln', createdAt: 2 };
        expect(await s.recordApproval(decision, { signatures: [sig] })).toBe(true);
        // The same signature again (a late duplicate) adds nothing and counts nothing.
        expect(await s.recordApproval(decision, { signatures: [sig] })).toBe(false);
        const authSig = { ...sig, entryIndex: 0, payload: 'ab' };
        expect(await s.recordApproval(decision, { authSignatures: [authSig] })).toBe(true);
        await s.recordRefusal({ ...decision, outcome: 'reject', reasons: [{ code: 'X', message: 'no' }] });
        await s.recordRefusal({ ...decision, outcome: 'hold', reasons: [{ code: 'Y', message: 'later' }] });
        expect(await s.getNode('n1')).toMatchObject({ approvals: 2, rejections: 1 });
        expect(await s.signatures('p1')).toEqual([sig]);
        expect(await s.authSignatures('p1')).toEqual([authSig]);
        expect(await s.decisions('p1')).toEqual([expect.objectContaining({ nodeId: 'n1', outcome: 'hold' })]);
      }),
    );

    it(
      'proposals: pages newest first with a cursor, filtered by status',
      withStore(async (s) => {
        for (let i = 1; i <= 5; i++)
          await s.insertProposal(proposal(`p${i}`, { status: i % 2 === 0 ? 'cancelled' : 'pending' }));
        const first = await s.listProposals({ limit: 2 });
        expect(first.items.map((p) => p.id)).toEqual(['p5', 'p4']);
        expect(first.next).not.toBeNull();
        const second = await s.listProposals({ limit: 2, before: first.next! });
        expect(second.items.map((p) => p.id)).toEqual(['p3', 'p2']);
        const third = await s.listProposals({ limit: 2, before: second.next! });
        expect(third).toEqual({ items: [expect.objectContaining({ id: 'p1' })], next: null });
        const cancelled = await s.listProposals({ status: 'cancelled', limit: 10 });
        expect(cancelled.items.map((p) => p.id)).toEqual(['p4', 'p2']);
        expect(cancelled.next).toBeNull();
      }),
    );

    it(
      'proposals: search by hash, idempotency key, and account (never a signer key inside one)',
      withStore(async (s) => {
        const account = Keypair.random().publicKey();
        const signer = Keypair.random().publicKey();
        const accounts = [
          { accountId: account, thresholds: { low: 1, medium: 1, high: 1 }, signers: [{ key: signer, weight: 1 }] },
        ] as unknown as ProposalRecord['accounts'];
        await s.insertProposal(proposal('a1', { accounts, hash: 'ab'.repeat(32) }));
        await s.insertProposal(proposal('a2', { accounts, idempotencyKey: 'findme' }));
        await s.insertProposal(proposal('a3'));
        expect((await s.searchProposals(account, 10)).map((p) => p.id)).toEqual(['a2', 'a1']);
        expect((await s.searchProposals(account, 1)).map((p) => p.id)).toEqual(['a2']);
        expect(await s.searchProposals(signer, 10)).toEqual([]);
        expect((await s.searchProposals('ab'.repeat(32), 10)).map((p) => p.id)).toEqual(['a1']);
        expect((await s.searchProposals('findme', 10)).map((p) => p.id)).toEqual(['a2']);
        expect(await s.searchProposals('nothing', 10)).toEqual([]);
      }),
    );

    it(
      'proposals: open ones are pending, or signed to submit without a result; transition is compare-and-set',
      withStore(async (s) => {
        await s.insertProposal(proposal('pending'));
        await s.insertProposal(proposal('signedSubmit', { status: 'signed' }));
        await s.insertProposal(proposal('signedOnly', { status: 'signed', submit: false }));
        await s.insertProposal(proposal('done', { status: 'submitted' }));
        expect((await s.openProposals()).map((p) => p.id)).toEqual(['pending', 'signedSubmit']);
        expect(await s.countOpen()).toBe(2);
        await s.setResult('signedSubmit', RESULT);
        expect((await s.getProposal('signedSubmit'))!.result).toEqual(RESULT);
        expect(await s.countOpen()).toBe(1);

        expect(await s.transition('pending', ['signed'], 'submitted')).toBe(false);
        expect(await s.transition('nope', ['pending'], 'signed')).toBe(false);
        expect(
          await s.transition('pending', ['pending', 'signed'], 'signed', {
            envelope: 'ENV',
            signedAt: 5,
            statusReason: 'quorum',
          }),
        ).toBe(true);
        let p = (await s.getProposal('pending'))!;
        expect(p).toMatchObject({ status: 'signed', envelope: 'ENV', signedAt: 5, statusReason: 'quorum' });
        expect(p.updatedAt).toBeGreaterThan(1000);
        // A patch without statusReason keeps it; an explicit null clears it; result and envelope are kept.
        expect(await s.transition('pending', ['signed'], 'submitted', { result: RESULT })).toBe(true);
        p = (await s.getProposal('pending'))!;
        expect(p).toMatchObject({ status: 'submitted', statusReason: 'quorum', envelope: 'ENV', result: RESULT });
        expect(await s.transition('pending', ['submitted'], 'failed', { statusReason: null })).toBe(true);
        expect((await s.getProposal('pending'))!.statusReason).toBeNull();
        expect(await s.countOpen()).toBe(0);
      }),
    );

    it(
      'signatures, auth signatures and decisions: first signature kept, decisions replaced, stable order',
      withStore(async (s) => {
        await s.insertProposal(proposal('p'));
        const [k1, k2] = [Keypair.random().publicKey(), Keypair.random().publicKey()].sort();
        expect(
          await s.addSignature({ proposalId: 'p', signerKey: k2!, nodeId: 'b', signature: 'c2ln', createdAt: 2 }),
        ).toBe(true);
        expect(
          await s.addSignature({ proposalId: 'p', signerKey: k1!, nodeId: 'a', signature: 'c2lo', createdAt: 2 }),
        ).toBe(true);
        expect(
          await s.addSignature({ proposalId: 'p', signerKey: k1!, nodeId: 'a', signature: 'b3RoZXI=', createdAt: 3 }),
        ).toBe(false);
        expect(await s.signatures('p')).toEqual([
          { proposalId: 'p', signerKey: k1, nodeId: 'a', signature: 'c2lo', createdAt: 2 },
          { proposalId: 'p', signerKey: k2, nodeId: 'b', signature: 'c2ln', createdAt: 2 },
        ]);
        expect(await s.signatures('other')).toEqual([]);

        const auth = {
          proposalId: 'p',
          entryIndex: 1,
          signerKey: k1!,
          nodeId: 'a',
          payload: 'ff',
          signature: 's',
          createdAt: 4,
        };
        expect(await s.addAuthSignature(auth)).toBe(true);
        expect(await s.addAuthSignature({ ...auth, signature: 't' })).toBe(false);
        expect(await s.addAuthSignature({ ...auth, entryIndex: 0 })).toBe(true);
        expect((await s.authSignatures('p')).map((a) => [a.entryIndex, a.signature])).toEqual([
          [0, 's'],
          [1, 's'],
        ]);

        await s.recordDecision({ proposalId: 'p', nodeId: 'b', outcome: 'hold', reasons: [], createdAt: 5 });
        await s.recordDecision({
          proposalId: 'p',
          nodeId: 'a',
          outcome: 'reject',
          reasons: [{ code: 'POLICY', message: 'no', opIndex: 0, field: 'amount' }],
          createdAt: 5,
        });
        await s.recordDecision({ proposalId: 'p', nodeId: 'b', outcome: 'approve', reasons: [], createdAt: 6 });
        expect(await s.decisions('p')).toEqual([
          {
            proposalId: 'p',
            nodeId: 'a',
            outcome: 'reject',
            reasons: [{ code: 'POLICY', message: 'no', opIndex: 0, field: 'amount' }],
            createdAt: 5,
          },
          { proposalId: 'p', nodeId: 'b', outcome: 'approve', reasons: [], createdAt: 6 },
        ]);
      }),
    );

    it(
      'events: numbered in order, read since a sequence number and per proposal',
      withStore(async (s) => {
        const e1 = await s.appendEvent('p', 'proposal.created', { a: 1 }, 10);
        const e2 = await s.appendEvent(null, 'node.connected', { node: 'n' }, 11);
        const e3 = await s.appendEvent('p', 'quorum.reached', { nested: { b: [1, 2] } }, 12);
        expect(e2.seq).toBeGreaterThan(e1.seq);
        expect(e3.seq).toBeGreaterThan(e2.seq);
        expect(await s.eventsSince(0, 10)).toEqual([e1, e2, e3]);
        expect(await s.eventsSince(e1.seq, 1)).toEqual([e2]);
        expect(await s.eventsSince(e3.seq, 10)).toEqual([]);
        expect(await s.eventsOf('p', 10)).toEqual([e1, e3]);
        expect(await s.eventsOf('p', 1)).toEqual([e1]);
        expect(e2).toEqual({
          seq: e2.seq,
          proposalId: null,
          type: 'node.connected',
          data: { node: 'n' },
          createdAt: 11,
        });
      }),
    );

    it(
      'nodes: enrolment keeps counters, a Stellar key moves with a re-enrolment, misbehaviours are counted',
      withStore(async (s) => {
        const k = Keypair.random().publicKey();
        await s.enrollNode({ id: 'a', identityKey: 'x', stellarKey: k }, 1);
        await s.countNode('a', 'approvals');
        await s.countNode('a', 'rejections');
        await s.enrollNode({ id: 'a', identityKey: 'x', stellarKey: k }, 5);
        expect(await s.getNode('a')).toEqual({
          id: 'a',
          identityKey: 'x',
          stellarKey: k,
          enrolledAt: 1,
          lastSeen: null,
          lastLatencyMs: null,
          approvals: 1,
          rejections: 1,
          misbehaviours: 0,
        });
        await s.enrollNode({ id: 'a', identityKey: 'x2', stellarKey: k }, 6);
        expect(await s.getNode('a')).toMatchObject({ enrolledAt: 6, approvals: 1 });
        await s.touchNode('a', 20, 12.5);
        await s.touchNode('a', 21);
        expect(await s.getNode('a')).toMatchObject({ lastSeen: 21, lastLatencyMs: 12.5 });
        await s.recordMisbehaviour({
          nodeId: 'a',
          proposalId: 'p',
          kind: 'bad-signature',
          detail: 'd1',
          createdAt: 30,
        });
        await s.recordMisbehaviour({ nodeId: 'a', proposalId: null, kind: 'flood', detail: 'd2', createdAt: 31 });
        expect(await s.misbehaviours('a', 10)).toEqual([
          { nodeId: 'a', proposalId: null, kind: 'flood', detail: 'd2', createdAt: 31 },
          { nodeId: 'a', proposalId: 'p', kind: 'bad-signature', detail: 'd1', createdAt: 30 },
        ]);
        expect(await s.misbehaviours('a', 1)).toHaveLength(1);
        expect((await s.getNode('a'))!.misbehaviours).toBe(2);
        await s.enrollNode({ id: 'c', identityKey: 'z', stellarKey: Keypair.random().publicKey() }, 7);
        await s.enrollNode({ id: 'b', identityKey: 'y', stellarKey: k }, 8);
        expect((await s.listNodes()).map((n) => n.id)).toEqual(['b', 'c']);
        expect(await s.getNode('a')).toBeUndefined();
      }),
    );

    it(
      'API keys: stored with scopes and revocation, counted',
      withStore(async (s) => {
        expect(await s.countApiKeys()).toBe(0);
        const k1 = { id: 'k1', hash: 'h1', scopes: ['propose', 'read'], label: 'ci', createdAt: 1, revokedAt: null };
        await s.insertApiKey({ ...k1, scopes: [...k1.scopes] });
        await s.insertApiKey({ id: 'k2', hash: 'h2', scopes: [], label: null, createdAt: 2, revokedAt: 3 });
        expect(await s.getApiKey('k1')).toEqual(k1);
        expect(await s.getApiKey('k2')).toMatchObject({ scopes: [], revokedAt: 3 });
        expect(await s.getApiKey('k3')).toBeUndefined();
        expect(await s.countApiKeys()).toBe(2);
      }),
    );
  });
}

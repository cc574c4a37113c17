import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteNonceStore } from '@cosigner/frost/nonce-store';
import { aggregate, type Commitment } from '@cosigner/frost/rounds';
import { createShareSealer, type ShareSealer } from '@cosigner/frost/sealer';
import type { GroupPublic } from '@cosigner/frost/suite';
import { createSigner } from '@cosigner/keys/factory';
import { loadPolicy } from '@cosigner/policy/schema';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSession, opensslVerify, runDkg } from '../../../packages/frost/test/helpers.ts';
import { AuditLog } from '../src/audit.ts';
import { FrostSigning, refusalOf } from '../src/frost/sign.ts';
import { FrostGroupStore, frostStorePath } from '../src/frost/store.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics, type NodeMetrics } from '../src/metrics.ts';
import { frostNoncesPath } from '../src/node.ts';
import { type DecisionBody, type ProposalBody, SigningPipeline } from '../src/pipeline.ts';
import { buildTx, NETWORK, pay, policyYaml, reviewerFor } from './helpers.ts';

/**
 * A node's side of FROST signing (src/frost/sign.ts) in one process: three nodes of a 2-of-3 group made by the
 * real key generation (packages/frost), each with its real SQLite signing ledger, audit log, group store and
 * nonce store, a local sealer holding its share, and the real review pipeline and policy. The test plays the
 * coordinator: it sends the `frost` proposal steps and aggregates the shares. Everything a node must refuse is
 * here; the same rounds among real processes, with a node killed between them, are in test/e2e/frost-sign.test.ts.
 */

const logger = createLogger({ name: 'frost-sign-test', level: 'silent' });
let dir: string;
let group: GroupPublic;
let address: string;
const account = Keypair.random().publicKey();
const dest = Keypair.random().publicKey();

interface TestNode {
  id: string;
  index: number;
  frost: FrostSigning;
  nonces: SqliteNonceStore;
  ledger: SigningLedger;
  groups: FrostGroupStore;
  sealer: ShareSealer;
  metrics: NodeMetrics;
  reopen(): Promise<TestNode>;
}

const nodes: TestNode[] = [];
const policy = loadPolicy(policyYaml({ accounts: [account], allow: [dest], maxPerTx: '100' }));

async function openNode(id: string, index: number): Promise<TestNode> {
  const home = join(dir, id);
  const ledger = new SigningLedger(openLedgerDb(ledgerPath(home)), { graceSeconds: 5 });
  const audit = new AuditLog(ledger.db);
  const signer = await createSigner({ type: 'local', keyFile: join(home, 'k.key') }, { production: false });
  const metrics = createMetrics();
  const pipeline = new SigningPipeline({ ledger, audit, signer, logger, metrics });
  const reviewer = reviewerFor(policy, { ledger, audit, signer, logger, metrics, pipeline });
  const groups = new FrostGroupStore(frostStorePath(home));
  const sealer = await createShareSealer({ type: 'local', keyFile: join(home, 'seal.key') }, { production: false });
  const nonces = SqliteNonceStore.open(frostNoncesPath(home));
  nonces.recover();
  const frost = new FrostSigning({ nodeId: id, groups, sealer, nonces, reviewer, pipeline, audit, logger });
  const node: TestNode = {
    id,
    index,
    frost,
    nonces,
    ledger,
    groups,
    sealer,
    metrics,
    async reopen() {
      await frost.close();
      nonces.close();
      groups.close();
      await sealer.close();
      ledger.close();
      return openNode(id, index);
    },
  };
  return node;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cosigner-frost-sign-'));
  const { session, secrets } = makeSession(3, 2, 'dkg-sign-1');
  const { outputs } = runDkg(session, secrets);
  group = outputs[0]!.group;
  address = outputs[0]!.address;
  for (const [i, out] of outputs.entries()) {
    const id = `node-${i + 1}`;
    const node = await openNode(id, i + 1);
    const context = { purpose: 'frost-share', node: id, group: address };
    node.groups.insert({
      address,
      dkgId: 'dkg-sign-1',
      roster: 'r',
      threshold: 2,
      participants: [],
      myIndex: i + 1,
      group: out.group,
      transcript: out.transcript,
      sealedShare: await node.sealer.seal(out.share.signingShare, context),
      sealerKind: 'local',
      status: 'confirmed',
      createdAt: Date.now(),
    });
    nodes.push(node);
  }
}, 60_000);

afterAll(async () => {
  for (const n of nodes) {
    await n.frost.close();
    n.nonces.close();
    n.groups.close();
    await n.sealer.close();
    n.ledger.close();
  }
  await rm(dir, { recursive: true, force: true });
});

let seq = 100n;
let proposals = 0;
/** A fresh payment from the group's account (its own sequence number: its own slot). */
function payment(amount = '10'): { xdr: string; proposalId: string } {
  seq += 1n;
  return {
    xdr: buildTx({ source: account, seq: seq.toString(), ops: [pay(dest, amount)] }),
    proposalId: `p-${++proposals}`,
  };
}

function step(
  p: { xdr: string; proposalId: string },
  roundId: string,
  commitments?: Commitment[],
  over: Partial<ProposalBody> = {},
): ProposalBody {
  return {
    proposalId: p.proposalId,
    kind: 'frost',
    networkPassphrase: NETWORK,
    xdr: p.xdr,
    frost: { group: address, roundId, step: commitments ? 'sign' : 'commit', ...(commitments ? { commitments } : {}) },
    ...over,
  };
}

const codes = (d: DecisionBody) => d.reasons.map((r) => r.code);

/** Round one at the given nodes: their commitments (each must approve). */
async function commit(ns: TestNode[], p: { xdr: string; proposalId: string }, roundId: string) {
  const out: Commitment[] = [];
  for (const n of ns) {
    const d = await n.frost.review(step(p, roundId));
    expect(d.outcome, JSON.stringify(d.reasons)).toBe('approve');
    expect(d.frost?.step).toBe('commit');
    out.push(d.frost!.commitment!);
  }
  return out.sort((a, b) => a.index - b.index);
}

function reasonCount(n: TestNode, reason: string): Promise<number> {
  return n.metrics.decisions.get().then((m) => m.values.find((v) => v.labels.reason === reason)?.value ?? 0);
}

describe('FROST signing at the node', () => {
  it('two of three nodes review, commit and sign; the aggregate is a plain Ed25519 signature of the group key', async () => {
    const p = payment();
    const roundId = `${p.proposalId}:1`;
    const [a, b] = [nodes[0]!, nodes[2]!];
    const list = await commit([a, b], p, roundId);
    expect(a.nonces.state(roundId)).toBe('issued');
    const shares: Record<string, Uint8Array> = {};
    let hash = '';
    for (const n of [a, b]) {
      const d = await n.frost.review(step(p, roundId, list));
      expect(d.outcome, JSON.stringify(d.reasons)).toBe('approve');
      expect(d.frost).toMatchObject({ group: address, roundId, step: 'sign' });
      shares[String(n.index)] = Buffer.from(d.frost!.share!, 'hex');
      hash = d.hash;
      expect(n.nonces.state(roundId)).toBe('used');
    }
    const sig = aggregate(group, list, Buffer.from(hash, 'hex'), shares);
    expect(opensslVerify(StrKey.decodeEd25519PublicKey(address), Buffer.from(hash, 'hex'), sig)).toBe(true);
    expect(a.frost.pending).toBe(0);

    // A second request for the same round, the same list: the nonce was spent; refused and counted.
    const again = await a.frost.review(step(p, roundId, list));
    expect(again.outcome).toBe('reject');
    expect(codes(again)).toEqual(['FROST_NONCE_SPENT']);
    expect(await reasonCount(a, 'FROST_NONCE_SPENT')).toBe(1);
    // A second commitment for a round id already seen is refused too.
    const recommit = await a.frost.review(step(p, roundId));
    expect(codes(recommit)).toEqual(['FROST_NONCE_SPENT']);
  });

  it('refuses a replayed commitment list, a changed message and a round it never committed to', async () => {
    const p = payment();
    const [a, b] = [nodes[0]!, nodes[1]!];
    const first = await commit([a, b], p, `${p.proposalId}:1`);
    // A retry of the round with fresh nonces; the coordinator replays the first round's list under the new id.
    const second = await commit([a, b], p, `${p.proposalId}:2`);
    const replay = await a.frost.review(step(p, `${p.proposalId}:2`, first));
    expect(codes(replay)).toEqual(['FROST_COMMITMENT_REFUSED']);
    // The refusal spent nothing: the right list still signs.
    expect(a.nonces.state(`${p.proposalId}:2`)).toBe('issued');
    // Another transaction under the same round: the nonce signs only the hash reviewed for it.
    const other = payment();
    const changed = await a.frost.review(step({ ...other, proposalId: p.proposalId }, `${p.proposalId}:2`, second));
    expect(codes(changed)).toEqual(['FROST_MESSAGE_CHANGED']);
    expect(await reasonCount(a, 'FROST_MESSAGE_CHANGED')).toBe(1);
    // Round two reuses round one's review only for the same bytes on the same network with no other hash claimed:
    // the same bytes under another network or another claimed hash are reviewed afresh, and refused.
    const net = 'Public Global Stellar Network ; September 2015';
    const otherNet = await a.frost.review(step(p, `${p.proposalId}:2`, second, { networkPassphrase: net }));
    expect(codes(otherNet)).toEqual(['WRONG_NETWORK']);
    const otherHash = await a.frost.review(step(p, `${p.proposalId}:2`, second, { hash: 'ab'.repeat(32) }));
    expect(codes(otherHash)).toEqual(['HASH_MISMATCH']);
    // A list without this node's commitment at all.
    const without = [second.find((c) => c.index !== a.index)!, { ...second[0]!, index: 3 }];
    const absent = await a.frost.review(
      step(
        p,
        `${p.proposalId}:2`,
        without.sort((x, y) => x.index - y.index),
      ),
    );
    expect(codes(absent)).toEqual(['FROST_COMMITMENT_REFUSED']);
    // Node 3 never committed to this round.
    const unknown = await nodes[2]!.frost.review(step(p, `${p.proposalId}:2`, second));
    expect(codes(unknown)).toEqual(['FROST_ROUND_UNKNOWN']);
    // The bound round still works once asked properly.
    const ok = await a.frost.review(step(p, `${p.proposalId}:2`, second));
    expect(ok.outcome).toBe('approve');
  });

  it('a restart between the rounds loses the nonce: the round is refused and stays lost', async () => {
    const p = payment();
    const roundId = `${p.proposalId}:1`;
    const list = await commit([nodes[0]!, nodes[1]!], p, roundId);
    nodes[0] = await nodes[0]!.reopen();
    expect(nodes[0].nonces.state(roundId)).toBe('lost');
    const d = await nodes[0].frost.review(step(p, roundId, list));
    expect(codes(d)).toEqual(['FROST_NONCE_FORGOTTEN']);
    expect(nodes[0].nonces.state(roundId)).toBe('lost');
    // A new round for the same transaction: the slot is this transaction's, so it is approved again.
    const again = await commit([nodes[0], nodes[1]!], p, `${p.proposalId}:2`);
    expect(again).toHaveLength(2);
  });

  it('reviews round one like a native proposal: policy, slot and malformed rounds are refused before a nonce', async () => {
    const n = nodes[1]!;
    const big = payment('5000');
    const refused = await n.frost.review(step(big, `${big.proposalId}:1`));
    expect(refused.outcome).toBe('reject');
    expect(codes(refused)).toContain('AMOUNT_OVER_TX_LIMIT');
    expect(n.nonces.state(`${big.proposalId}:1`)).toBeUndefined();

    // Another transaction for a sequence number this node already approved in a FROST round.
    const p = payment();
    await commit([n], p, `${p.proposalId}:1`);
    const rival = {
      xdr: buildTx({ source: account, seq: seq.toString(), ops: [pay(dest, '11')] }),
      proposalId: `p-${++proposals}`,
    };
    const taken = await n.frost.review(step(rival, `${rival.proposalId}:1`));
    expect(codes(taken)).toEqual(['SLOT_TAKEN']);

    const q = payment();
    const badId = await n.frost.review(step(q, 'other:1'));
    expect(codes(badId)).toEqual(['FROST_ROUND_MALFORMED']);
    const noFrost = await n.frost.review({ ...step(q, `${q.proposalId}:1`), frost: undefined });
    expect(codes(noFrost)).toEqual(['FROST_ROUND_MALFORMED']);
    const other = Keypair.random().publicKey();
    const notHeld = await n.frost.review(
      step(q, `${q.proposalId}:1`, undefined, {
        frost: { group: other, roundId: `${q.proposalId}:1`, step: 'commit' },
      }),
    );
    expect(codes(notHeld)).toEqual(['FROST_GROUP_NOT_HELD']);
    const garbled = await n.frost.review(step({ ...q, xdr: 'AAAA' }, `${q.proposalId}:1`));
    expect(codes(garbled)).toEqual(['MALFORMED_XDR']);
    // A list with a point that is not on the curve: refused before the nonce is spent.
    await commit([n], q, `${q.proposalId}:1`);
    const mine = await n.frost.review(step(q, `${q.proposalId}:2`));
    const bad = [mine.frost!.commitment!, { index: 3, hiding: 'ff'.repeat(32), binding: 'ff'.repeat(32) }];
    const malformed = await n.frost.review(step(q, `${q.proposalId}:2`, bad));
    expect(codes(malformed)).toEqual(['FROST_ROUND_MALFORMED']);
    expect(n.nonces.state(`${q.proposalId}:2`)).toBe('issued');
  });

  it('a share that cannot be opened answers SIGNER_UNAVAILABLE and issues no nonce; frost errors map to reasons', async () => {
    const n = nodes[2]!;
    // A group record whose sealed share is bound to another group: the sealer refuses to open it.
    const other = Keypair.random().publicKey();
    const mine = n.groups.get(address)!;
    n.groups.insert({ ...mine, address: other, dkgId: 'dkg-other' });
    const p = payment();
    const d = await n.frost.review(
      step(p, `${p.proposalId}:1`, undefined, {
        frost: { group: other, roundId: `${p.proposalId}:1`, step: 'commit' },
      }),
    );
    expect(codes(d)).toEqual(['SIGNER_UNAVAILABLE']);
    expect(d.frost).toMatchObject({ group: other, step: 'commit' });
    expect(n.nonces.state(`${p.proposalId}:1`)).toBeUndefined();
    // The refusals of packages/frost errors, and none for anything else.
    const code = (c: string) => refusalOf(Object.assign(new Error(c), { code: c }))?.code;
    expect(code('FROST_NONCE_REUSED')).toBe('FROST_NONCE_SPENT');
    expect(code('FROST_NONCE_LOST')).toBe('FROST_NONCE_FORGOTTEN');
    expect(code('FROST_NONCE_UNKNOWN')).toBe('FROST_ROUND_UNKNOWN');
    expect(code('FROST_COMMITMENT_MISMATCH')).toBe('FROST_COMMITMENT_REFUSED');
    expect(code('FROST_OUT_OF_RANGE')).toBe('FROST_ROUND_MALFORMED');
    expect(code('KEYS_UNAVAILABLE')).toBeUndefined();
  });

  it('drops an idle group: its share and nonces are zeroed, and a round committed before is refused', async () => {
    const home = join(dir, 'idle');
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(home)), { graceSeconds: 5 });
    const audit = new AuditLog(ledger.db);
    const signer = await createSigner({ type: 'local', keyFile: join(home, 'k.key') }, { production: false });
    const pipeline = new SigningPipeline({ ledger, audit, signer, logger });
    const reviewer = reviewerFor(policy, { ledger, audit, signer, logger, pipeline });
    const n = nodes[1]!;
    const frost = new FrostSigning({
      nodeId: n.id,
      groups: n.groups,
      sealer: n.sealer,
      nonces: n.nonces,
      reviewer,
      pipeline,
      audit,
      logger,
      idleMs: 50,
    });
    try {
      const p = payment();
      const c = await frost.review(step(p, `${p.proposalId}:1`));
      expect(c.outcome).toBe('approve');
      expect(frost.pending).toBe(1);
      await new Promise((r) => setTimeout(r, 200));
      expect(frost.pending).toBe(0);
      const other = { index: 1, hiding: c.frost!.commitment!.hiding, binding: c.frost!.commitment!.binding };
      const d = await frost.review(step(p, `${p.proposalId}:1`, [other, c.frost!.commitment!]));
      expect(codes(d)).toEqual(['FROST_NONCE_FORGOTTEN']);
    } finally {
      await frost.close();
      ledger.close();
    }
  });

  it('forgets rounds it committed long ago and never signed, while the group stays busy', async () => {
    const home = join(dir, 'stale');
    const clock = { ms: Date.now() };
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(home)), { graceSeconds: 5 });
    const audit = new AuditLog(ledger.db);
    const signer = await createSigner({ type: 'local', keyFile: join(home, 'k.key') }, { production: false });
    const pipeline = new SigningPipeline({ ledger, audit, signer, logger, now: () => clock.ms });
    const reviewer = reviewerFor(policy, { ledger, audit, signer, logger, pipeline, now: () => clock.ms });
    const n = nodes[1]!;
    const frost = new FrostSigning({
      nodeId: n.id,
      groups: n.groups,
      sealer: n.sealer,
      nonces: n.nonces,
      reviewer,
      pipeline,
      audit,
      logger,
      idleMs: 60_000,
    });
    try {
      const old = payment();
      const a = await frost.review(step(old, `${old.proposalId}:1`));
      expect(a.outcome).toBe('approve');
      clock.ms += 61_000;
      const p = payment();
      expect((await frost.review(step(p, `${p.proposalId}:1`))).outcome).toBe('approve');
      // The old round was dropped (its nonces zeroed); the new one is held.
      expect(frost.pending).toBe(1);
      const other = { index: 1, hiding: a.frost!.commitment!.hiding, binding: a.frost!.commitment!.binding };
      const d = await frost.review(step(old, `${old.proposalId}:1`, [other, a.frost!.commitment!]));
      expect(codes(d)).toEqual(['FROST_NONCE_FORGOTTEN']);
      // The new round's transaction is valid for 120 s: past its time bound (and the grace) the node releases no
      // share for it, whatever round asks.
      const mine = (await frost.review(step(p, `${p.proposalId}:2`))).frost!.commitment!;
      clock.ms += 200_000;
      const late = await frost.review(
        step(p, `${p.proposalId}:2`, [{ index: 1, hiding: mine.hiding, binding: mine.binding }, mine]),
      );
      expect(codes(late)).toEqual(['VALIDITY_EXPIRED']);
      expect(n.nonces.state(`${p.proposalId}:2`)).toBe('issued');
    } finally {
      await frost.close();
      ledger.close();
    }
  });
});

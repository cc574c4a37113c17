import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteNonceStore } from '@cosigner/frost/nonce-store';
import { aggregate, type Commitment } from '@cosigner/frost/rounds';
import { createShareSealer, type ShareSealer } from '@cosigner/frost/sealer';
import { createSigner } from '@cosigner/keys/factory';
import { evaluate } from '@cosigner/policy/evaluate';
import { loadPolicy, type Policy } from '@cosigner/policy/schema';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair, Operation, StrKey, type xdr } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { makeSession, opensslVerify, runDkg } from '../../../packages/frost/test/helpers.ts';
import { AuditLog } from '../src/audit.ts';
import { FrostSigning } from '../src/frost/sign.ts';
import { FrostGroupStore, frostStorePath, type NodeFrostGroup } from '../src/frost/store.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics } from '../src/metrics.ts';
import { frostNoncesPath } from '../src/node.ts';
import { type DecisionBody, type ProposalBody, SigningPipeline } from '../src/pipeline.ts';
import { Reviewer } from '../src/review.ts';
import { buildTx, NETWORK, pay } from './helpers.ts';

/**
 * A node's own check of a group-key swap (src/frost/sign.ts with packages/frost reshare.ts reviewGroupKeyChange),
 * in one process with the real pipeline, policy, SQLite stores and sealer: an old 2-of-3 group held by node-1..3,
 * a new group held (confirmed) by node-1 and node-2 only, each node's operator planning weight 1 for it. The
 * planned swap passes the policy of a normal deployment (signer changes for the cluster's keys, weight 1 at most),
 * and two nodes of the old group sign it. Every other shape is refused with a registered reason before any
 * commitment exists. Among real processes: test/e2e/frost-refresh-new-group.test.ts.
 */

const logger = createLogger({ name: 'frost-swap-review-test', level: 'silent' });
let dir: string;
const account = Keypair.random().publicKey();
const dest = Keypair.random().publicKey();
let oldAddress: string;
let newAddress: string;
let oldGroup: NodeFrostGroup['group'];

/** A normal deployment's node policy (testkit signerChangePolicy): payments and signer changes for cluster keys. */
const normalPolicy = (operations: string[]): Policy =>
  loadPolicy(
    stringify({
      version: 1,
      network: NETWORK,
      accounts: [account],
      operations,
      assets: [{ asset: 'native', maxPerTx: '100', velocity: [{ window: '1h', max: '250' }] }],
      destinations: { allow: [dest] },
      fees: { maxFee: 1000 },
      validity: { maxWindowSeconds: 300 },
      ...(operations.includes('setOptions')
        ? {
            signerChanges: {
              accounts: [account],
              clusterMembers: true,
              maxWeight: 1,
              minThresholds: { low: 1, medium: 1, high: 1 },
            },
          }
        : {}),
    }),
  );

interface TestNode {
  id: string;
  index: number;
  frost: FrostSigning;
  nonces: SqliteNonceStore;
  close(): Promise<void>;
}

async function openNode(
  id: string,
  index: number,
  o: {
    policy: Policy;
    planned?: number;
    groups: { address: string; out: ReturnType<typeof runDkg>['outputs'][number] }[];
  },
): Promise<TestNode> {
  const home = join(dir, id);
  const ledger = new SigningLedger(openLedgerDb(ledgerPath(home)), { graceSeconds: 5 });
  const audit = new AuditLog(ledger.db);
  const signer = await createSigner({ type: 'local', keyFile: join(home, 'k.key') }, { production: false });
  const metrics = createMetrics();
  const pipeline = new SigningPipeline({ ledger, audit, signer, logger, metrics });
  const store = new FrostGroupStore(frostStorePath(home));
  const sealer: ShareSealer = await createShareSealer(
    { type: 'local', keyFile: join(home, 'seal.key') },
    { production: false },
  );
  for (const g of o.groups) {
    store.insert({
      address: g.address,
      dkgId: `dkg-${g.address.slice(0, 6)}`,
      roster: 'r',
      threshold: 2,
      participants: [],
      myIndex: g.out.share.index,
      group: g.out.group,
      transcript: g.out.transcript,
      sealedShare: await sealer.seal(g.out.share.signingShare, { purpose: 'frost-share', node: id, group: g.address }),
      sealerKind: 'local',
      status: 'confirmed',
      createdAt: Date.now(),
    });
  }
  // As node.ts wires it: a group key the node holds confirmed counts as one of its own keys for clusterMembers.
  const members = { has: (key: string) => store.get(key)?.status === 'confirmed' };
  const reviewer = new Reviewer({
    network: NETWORK,
    accounts: o.policy.accounts,
    evaluate: (summary, ctx) => evaluate(o.policy, { summary, ...ctx, members }),
    audit,
    ledger,
    signer,
    logger,
    metrics,
    pipeline,
  });
  const nonces = SqliteNonceStore.open(frostNoncesPath(home));
  nonces.recover();
  const frost = new FrostSigning({
    nodeId: id,
    groups: store,
    sealer,
    nonces,
    reviewer,
    pipeline,
    audit,
    logger,
    ...(o.planned === undefined ? {} : { plannedWeight: (g) => (g.address === newAddress ? o.planned : undefined) }),
  });
  return {
    id,
    index,
    frost,
    nonces,
    async close() {
      await frost.close();
      nonces.close();
      store.close();
      await sealer.close();
      ledger.close();
    },
  };
}

const nodes: TestNode[] = [];
let seq = 500n;
let proposals = 0;
const tx = (ops: xdr.Operation[]) => {
  seq += 1n;
  return { xdr: buildTx({ source: account, seq: seq.toString(), ops }), proposalId: `swap-${++proposals}` };
};
const remove = (key: string) => Operation.setOptions({ signer: { ed25519PublicKey: key, weight: 0 } });
const add = (key: string, weight = 1) => Operation.setOptions({ signer: { ed25519PublicKey: key, weight } });
const step = (p: { xdr: string; proposalId: string }, roundId: string, commitments?: Commitment[]): ProposalBody => ({
  proposalId: p.proposalId,
  kind: 'frost',
  networkPassphrase: NETWORK,
  xdr: p.xdr,
  frost: { group: oldAddress, roundId, step: commitments ? 'sign' : 'commit', ...(commitments ? { commitments } : {}) },
});
const codes = (d: DecisionBody) => d.reasons.map((r) => r.code);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cosigner-frost-swap-'));
  const old = makeSession(3, 2, 'dkg-swap-old');
  const oldOut = runDkg(old.session, old.secrets).outputs;
  const fresh = makeSession(3, 2, 'dkg-swap-new');
  const newOut = runDkg(fresh.session, fresh.secrets).outputs;
  oldAddress = oldOut[0]!.address;
  newAddress = newOut[0]!.address;
  oldGroup = oldOut[0]!.group;
  const policy = normalPolicy(['payment', 'setOptions']);
  for (let i = 0; i < 3; i++) {
    const groups = [{ address: oldAddress, out: oldOut[i]! }];
    // node-3 leaves: it holds no share of the new group.
    if (i < 2) groups.push({ address: newAddress, out: newOut[i]! });
    nodes.push(await openNode(`node-${i + 1}`, i + 1, { policy, planned: 1, groups }));
  }
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await rm(dir, { recursive: true, force: true });
});

describe("a node's own check of a group-key swap", () => {
  it('two nodes that hold both groups commit and sign the planned swap under a normal policy', async () => {
    const p = tx([remove(oldAddress), add(newAddress)]);
    const roundId = `${p.proposalId}:1`;
    const list: Commitment[] = [];
    for (const n of nodes.slice(0, 2)) {
      const d = await n.frost.review(step(p, roundId));
      expect(d.outcome, JSON.stringify(d.reasons)).toBe('approve');
      list.push(d.frost!.commitment!);
    }
    const shares: Record<string, Uint8Array> = {};
    let hash = '';
    for (const n of nodes.slice(0, 2)) {
      const d = await n.frost.review(step(p, roundId, list));
      expect(d.outcome, JSON.stringify(d.reasons)).toBe('approve');
      shares[String(n.index)] = Buffer.from(d.frost!.share!, 'hex');
      hash = d.hash;
    }
    const sig = aggregate(oldGroup, list, Buffer.from(hash, 'hex'), shares);
    expect(opensslVerify(StrKey.decodeEd25519PublicKey(oldAddress), Buffer.from(hash, 'hex'), sig)).toBe(true);
  });

  it('refuses, before any commitment, a swap to an unknown key, another weight or extra operations', async () => {
    const stranger = Keypair.random().publicKey();
    const cases: [{ xdr: string; proposalId: string }, TestNode, string, string][] = [
      // node-3 holds no share of the new group: it cannot verify the key, whatever the coordinator says.
      [tx([remove(oldAddress), add(newAddress)]), nodes[2]!, 'FROST_SWAP_UNKNOWN_GROUP', 'operations[1].signer'],
      [tx([remove(oldAddress), add(stranger)]), nodes[0]!, 'FROST_SWAP_UNKNOWN_GROUP', 'operations[1].signer'],
      [tx([remove(oldAddress), add(newAddress, 2)]), nodes[0]!, 'FROST_SWAP_MISMATCH', 'operations[1].signer'],
      [tx([remove(oldAddress), add(newAddress), pay(dest, '1')]), nodes[1]!, 'FROST_SWAP_MISMATCH', 'operations'],
      // The group's own key raised in place, and the group removed alone: not the swap either.
      [tx([add(oldAddress, 1)]), nodes[0]!, 'FROST_SWAP_MISMATCH', 'operations'],
      [tx([remove(oldAddress)]), nodes[0]!, 'FROST_SWAP_MISMATCH', 'operations'],
    ];
    for (const [p, n, code, field] of cases) {
      const roundId = `${p.proposalId}:1`;
      const d = await n.frost.review(step(p, roundId));
      expect(d.outcome).toBe('reject');
      expect(codes(d), code).toEqual([code]);
      expect(d.reasons[0]).toMatchObject({ field });
      expect(d.frost).toEqual({ group: oldAddress, roundId, step: 'commit' });
      // No nonce was made, so none can leave.
      expect(n.nonces.state(roundId)).toBeUndefined();
    }
  });

  it('refuses a swap to a held group whose weight its operator did not plan', async () => {
    const old = makeSession(3, 2, 'dkg-swap-unplanned');
    const out = runDkg(old.session, old.secrets).outputs;
    const oldOut = out[0]!;
    // A node with both groups but no plannedWeight: the swap has no weight to check against.
    const n = await openNode('node-unplanned', 1, {
      policy: normalPolicy(['payment', 'setOptions']),
      groups: [
        { address: oldAddress, out: { ...oldOut, group: oldGroup } },
        { address: newAddress, out: oldOut },
      ],
    });
    try {
      const p = tx([remove(oldAddress), add(newAddress)]);
      const d = await n.frost.review(step(p, `${p.proposalId}:1`));
      expect(codes(d)).toEqual(['FROST_SWAP_WEIGHT_UNPLANNED']);
      expect(d.reasons[0]).toMatchObject({ field: 'operations[1].signer.weight' });
    } finally {
      await n.close();
    }
  });

  it('a node whose policy forbids signer changes still refuses the planned swap; payments pass as before', async () => {
    // A node that holds both groups of its own (a fresh old group, the test's new one) but whose policy has no
    // setOptions: the swap check passes, the policy refuses.
    const fresh = makeSession(3, 2, 'dkg-swap-strict');
    const out = runDkg(fresh.session, fresh.secrets).outputs;
    const saved = { oldAddress, oldGroup };
    oldAddress = out[0]!.address;
    oldGroup = out[0]!.group;
    const strict = await openNode('node-strict', 1, {
      policy: normalPolicy(['payment']),
      planned: 1,
      groups: [
        { address: oldAddress, out: out[0]! },
        { address: newAddress, out: out[1]! },
      ],
    });
    try {
      const p = tx([remove(oldAddress), add(newAddress)]);
      const d = await strict.frost.review(step(p, `${p.proposalId}:1`));
      expect(d.outcome).toBe('reject');
      expect(codes(d)).toContain('OP_NOT_ALLOWED');
      expect(codes(d).filter((c) => c.startsWith('FROST_SWAP'))).toEqual([]);
      expect(strict.nonces.state(`${p.proposalId}:1`)).toBeUndefined();
      const payment = tx([pay(dest, '1')]);
      const ok = await strict.frost.review(step(payment, `${payment.proposalId}:1`));
      expect(ok.outcome, JSON.stringify(ok.reasons)).toBe('approve');
    } finally {
      await strict.close();
      ({ oldAddress, oldGroup } = saved);
    }
  });
});

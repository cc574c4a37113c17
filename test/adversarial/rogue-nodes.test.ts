import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateKeyCommand,
  DisableKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  ScheduleKeyDeletionCommand,
  SignCommand,
} from '@aws-sdk/client-kms';
import {
  type Cluster,
  type ClusterProcess,
  type ProposalView,
  spawnService,
  startCluster,
} from '@cosigner/launcher/cluster';
import { identityFromPem } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import {
  Asset,
  Keypair,
  Operation,
  StrKey,
  type Transaction,
  TransactionBuilder,
  type xdr,
} from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchMetrics, metricValue, untilAtLeast } from './evidence.ts';
import { RogueNode } from './rogue-node.ts';

/**
 * Threat model A2/A3/A4 on real processes (3 KMS emulators in separate simulated accounts, the ledger simulator, the
 * coordinator, three nodes; a 2-of-3 operator account with master weight 0):
 * - a compromised node: with node-0's KMS credentials an attacker signs whatever it likes with node-0's key through
 *   the real @aws-sdk/client-kms, and the ledger refuses every such transaction (weight below the threshold);
 *   the same credentials reach no other node's key or emulator, and cannot manage node-0's own key;
 * - misbehaving nodes: node-2's host is taken over (its process killed, its identity key used by a rogue client
 *   that answers with bad signatures, then floods frames); a node process started with a key other than its
 *   enrolled one. The coordinator flags each, and node-0 and node-1 still reach the quorum: payments are submitted.
 */

interface KmsPrincipal {
  role: string;
  accessKeyId: string;
  secretAccessKey: string;
}
interface KmsAccount {
  accountId: string;
  region: string;
  principals: KmsPrincipal[];
}

interface DecisionView {
  nodeId: string;
  outcome: string;
  reasons: { code: string; message: string }[];
}

describe('rogue nodes against a 2-of-3 cluster of real processes', () => {
  let dir: string;
  let cluster: Cluster;
  let destination: Keypair;
  const extra: ClusterProcess[] = [];

  beforeAll(async () => {
    dir = await tempDir('cosigner-adv-nodes-');
    cluster = await startCluster({ cosignerBin: COSIGNER_BIN, dir });
    destination = await cluster.fundedAccount();
  }, 240_000);

  afterAll(async () => {
    for (const p of extra) await p.stop();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  const kmsAccount = async (i: number): Promise<KmsAccount> => {
    const file = String(cluster.kms[i]!.ready.accountsFile);
    return (JSON.parse(await readFile(file, 'utf8')) as { accounts: KmsAccount[] }).accounts[0]!;
  };

  const kmsClient = (endpoint: string, region: string, p: KmsPrincipal): KMSClient =>
    new KMSClient({
      endpoint,
      region,
      credentials: { accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey },
      maxAttempts: 1,
    });

  const role = (a: KmsAccount, r: string): KmsPrincipal => a.principals.find((p) => p.role === r)!;

  /** The name of the AWS error a KMS call fails with ('ok' when it succeeds). */
  const awsError = async (call: Promise<unknown>): Promise<string> =>
    call.then(
      () => 'ok',
      (e: unknown) => (e as { name?: string }).name ?? String(e),
    );

  /** POST /transactions as Horizon clients do: 'ok', or the result codes of the refusal. */
  const submit = async (t: Transaction): Promise<string> => {
    const res = await fetch(`${cluster.horizonUrl}/transactions`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `tx=${encodeURIComponent(t.toEnvelope().toXDR('base64'))}`,
    });
    if (res.status === 200) return 'ok';
    const b = (await res.json()) as { extras?: { result_codes?: { transaction: string; operations?: string[] } } };
    const c = b.extras?.result_codes;
    if (!c) return `http ${res.status}`;
    return c.operations ? `${c.transaction}:${c.operations.join(',')}` : c.transaction;
  };

  const operatorTx = async (ops: xdr.Operation[]): Promise<Transaction> => {
    const src = await cluster.horizon.loadAccount(cluster.account.id);
    const b = new TransactionBuilder(src, { fee: '100', networkPassphrase: cluster.networkPassphrase });
    for (const op of ops) b.addOperation(op);
    return b.setTimeout(120).build();
  };

  const pay = (to: string, amount: string): xdr.Operation =>
    Operation.payment({ destination: to, asset: Asset.native(), amount });

  /** A payment proposal through the coordinator, waited to its end. */
  const paymentThroughCoordinator = async (amount: string): Promise<ProposalView> => {
    const xdrB64 = await cluster.paymentXdr({ destination: destination.publicKey(), amount });
    const created = await cluster.propose({ xdr: xdrB64 });
    return cluster.waitForProposal(created.id, { timeoutMs: 60_000 });
  };

  const decisionsOf = (p: ProposalView): DecisionView[] => (p.decisions ?? []) as DecisionView[];

  /**
   * A payment proposal during which node-1 is paused (SIGSTOP) until node-2's decision is recorded: the quorum
   * cannot complete before the rogue answered, so its answer is always judged (a decision arriving after the
   * quorum is ignored, and the test would prove nothing).
   */
  const paymentWithNode1Paused = async (amount: string): Promise<ProposalView> => {
    const xdrB64 = await cluster.paymentXdr({ destination: destination.publicKey(), amount });
    const pid = cluster.nodes[1]!.pid;
    process.kill(pid, 'SIGSTOP');
    let id: string;
    try {
      id = (await cluster.propose({ xdr: xdrB64 })).id;
      await untilAtLeast(
        async () => decisionsOf(await cluster.getProposal(id)).filter((d) => d.nodeId === 'node-2').length,
        1,
        "node-2's decision",
      );
      // While node-1 is paused the proposal waits: one flagged node does not end it.
      expect((await cluster.getProposal(id)).status).toBe('pending');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    return cluster.waitForProposal(id, { timeoutMs: 60_000 });
  };

  /** The envelope's signatures that verify over the proposal hash, by signer (node index). */
  const envelopeSigners = (p: ProposalView): number[] => {
    const env = TransactionBuilder.fromXDR(String(p.envelope), cluster.networkPassphrase) as Transaction;
    const hash = env.hash();
    // stellar-sdk 17 decodes each DecoratedSignature's signature as an opaque wrapper holding its bytes in `value`.
    const sigs = env.signatures as unknown as { signature: { value: Uint8Array } }[];
    return sigs.map((s) =>
      cluster.nodeInfo.findIndex((x) =>
        Keypair.fromPublicKey(x.stellarKey).verify(hash, Buffer.from(s.signature.value)),
      ),
    );
  };

  const coordinatorGet = async (path: string): Promise<unknown> => {
    const res = await fetch(`${cluster.coordinator.url}${path}`, {
      headers: { authorization: `Bearer ${cluster.apiKey}` },
    });
    expect(res.status).toBe(200);
    return res.json();
  };

  interface NodeView {
    id: string;
    connected: boolean;
    misbehaviours: number;
    recentMisbehaviour: { kind: string; detail: string; proposalId: string | null }[];
  }
  const nodeView = async (id: string): Promise<NodeView> =>
    ((await coordinatorGet('/v1/nodes')) as { nodes: NodeView[] }).nodes.find((n) => n.id === id)!;

  describe("a compromised node's KMS credentials", () => {
    it("sign anything with one node's key: the ledger refuses it below the threshold, the account is untouched", async () => {
      const acct = await kmsAccount(0);
      const node0 = cluster.nodeInfo[0]!;
      const kms = kmsClient(cluster.kms[0]!.url, acct.region, role(acct, 'node'));
      const thief = await cluster.fundedAccount();
      const before = await cluster.horizon.loadAccount(cluster.account.id);
      const kmsSign = async (t: Transaction): Promise<string> => {
        const out = await kms.send(
          new SignCommand({
            KeyId: node0.kmsKeyId,
            Message: t.hash(),
            MessageType: 'RAW',
            SigningAlgorithm: 'ED25519_SHA_512',
          }),
        );
        return Buffer.from(out.Signature!).toString('base64');
      };
      try {
        // The key signs whatever the credentials ask: that is what a stolen node role can do (threat model A3).
        const theft = await operatorTx([pay(thief.publicKey(), '5000')]);
        const sig = await kmsSign(theft);
        expect(Keypair.fromPublicKey(node0.stellarKey).verify(theft.hash(), Buffer.from(sig, 'base64'))).toBe(true);
        theft.addSignature(node0.stellarKey, sig);
        expect(await submit(theft)).toBe('tx_bad_auth');
        // The same signature twice still weighs 1.
        theft.addSignature(node0.stellarKey, sig);
        expect(await submit(theft)).toBe('tx_bad_auth');
        // Plus the thief's own key, which is no signer of the account.
        theft.sign(thief);
        expect(await submit(theft)).toBe('tx_bad_auth');
        // Taking over the account: add the thief as a signer with weight 2, signed by node-0's key alone.
        const takeover = await operatorTx([
          Operation.setOptions({ signer: { ed25519PublicKey: thief.publicKey(), weight: 2 } }),
        ]);
        takeover.addSignature(node0.stellarKey, await kmsSign(takeover));
        expect(await submit(takeover)).toBe('tx_bad_auth');
      } finally {
        kms.destroy();
      }
      const after = await cluster.horizon.loadAccount(cluster.account.id);
      expect(after.sequence).toBe(before.sequence);
      expect(after.balances).toEqual(before.balances);
      expect(after.signers).toEqual(before.signers);
    });

    it("the same credentials cannot use another node's key or emulator, nor manage their own key", async () => {
      const acct0 = await kmsAccount(0);
      const acct1 = await kmsAccount(1);
      const creds = role(acct0, 'node');
      const hash = randomBytes(32);
      const sign = (kms: KMSClient, keyId: string) =>
        kms.send(
          new SignCommand({ KeyId: keyId, Message: hash, MessageType: 'RAW', SigningAlgorithm: 'ED25519_SHA_512' }),
        );
      const own = kmsClient(cluster.kms[0]!.url, acct0.region, creds);
      const other = kmsClient(cluster.kms[1]!.url, acct1.region, creds);
      try {
        // Another node's key id, asked of node-0's own KMS account: no such key there.
        expect(await awsError(sign(own, cluster.nodeInfo[1]!.kmsKeyId))).toBe('NotFoundException');
        // Node-1's KMS (another AWS account): node-0's access key is unknown there.
        expect(await awsError(sign(other, cluster.nodeInfo[1]!.kmsKeyId))).toBe('UnrecognizedClientException');
        expect(await awsError(other.send(new GetPublicKeyCommand({ KeyId: cluster.nodeInfo[1]!.kmsKeyId })))).toBe(
          'UnrecognizedClientException',
        );
        // The node role cannot disable, delete or create keys (least privilege; the admin role manages them).
        const keyId = cluster.nodeInfo[0]!.kmsKeyId;
        expect(await awsError(own.send(new DisableKeyCommand({ KeyId: keyId })))).toBe('AccessDeniedException');
        expect(await awsError(own.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 })))).toBe(
          'AccessDeniedException',
        );
        expect(
          await awsError(own.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }))),
        ).toBe('AccessDeniedException');
        // Control: the same credentials do sign with their own key (the refusals above are not a broken client).
        expect(await awsError(sign(own, keyId))).toBe('ok');
      } finally {
        own.destroy();
        other.destroy();
      }
    });
  });

  describe('misbehaving nodes', () => {
    let rogue: RogueNode;
    let mode: 'garbage' | 'other-key' | 'other-hash' | 'silent' = 'garbage';
    let kms2: KMSClient;

    afterAll(() => {
      rogue?.close();
    });

    it('a node answering with garbage, another key or another hash is flagged; the other two reach quorum', async () => {
      const node2 = cluster.nodeInfo[2]!;
      const acct2 = await kmsAccount(2);
      // The attacker holds node-2's host: its identity key and its KMS credentials. The real node-2 is gone.
      kms2 = kmsClient(cluster.kms[2]!.url, acct2.region, role(acct2, 'node'));
      await cluster.kill9Node(2);
      await untilAtLeast(async () => ((await nodeView('node-2')).connected ? 0 : 1), 1, 'node-2 to drop');
      const identity = identityFromPem(await readFile(join(dir, 'node-2', 'identity.pem'), 'utf8'));
      const coordinatorKey = identityFromPem(await readFile(join(dir, 'coordinator', 'message-key.pem'), 'utf8'));
      const otherKey = Keypair.random();
      rogue = await RogueNode.connect({
        coordinatorUrl: cluster.coordinator.url,
        nodeId: node2.id,
        identity,
        stellarKey: node2.stellarKey,
        network: cluster.networkPassphrase,
        coordinatorKey: coordinatorKey.publicKey,
        answer: async (p): Promise<Body<'decision'> | undefined> => {
          if (mode === 'silent') return undefined;
          const hash = Buffer.from(p.hash!, 'hex');
          let signedHash: Buffer = hash;
          let signature: Buffer;
          if (mode === 'garbage') signature = randomBytes(64);
          else if (mode === 'other-key') signature = Buffer.from(otherKey.sign(hash));
          else {
            // Its REAL key, through its real KMS, over another transaction's hash, claimed as this proposal's.
            signedHash = Buffer.from(randomBytes(32));
            const out = await kms2.send(
              new SignCommand({
                KeyId: node2.kmsKeyId,
                Message: signedHash,
                MessageType: 'RAW',
                SigningAlgorithm: 'ED25519_SHA_512',
              }),
            );
            signature = Buffer.from(out.Signature!);
          }
          return {
            proposalId: p.proposalId,
            hash: signedHash.toString('hex'),
            outcome: 'approve',
            reasons: [],
            signerKey: node2.stellarKey,
            signature: signature.toString('base64'),
          };
        },
      });
      const expected = {
        garbage: 'invalid_signature',
        'other-key': 'invalid_signature',
        'other-hash': 'hash_mismatch',
      };
      for (const m of ['garbage', 'other-key', 'other-hash'] as const) {
        mode = m;
        const seen = rogue.proposals.length;
        const p = await paymentWithNode1Paused('3');
        expect(rogue.proposals.length, 'the rogue node was asked').toBeGreaterThan(seen);
        expect(p.status, JSON.stringify(p)).toBe('submitted');
        const rogueDecision = decisionsOf(p).find((d) => d.nodeId === 'node-2');
        expect(rogueDecision?.outcome).toBe('invalid');
        expect(rogueDecision?.reasons.map((r) => r.code)).toContain(expected[m]);
        const signers = (p.signatures as { nodeId: string }[]).map((s) => s.nodeId).sort();
        expect(signers).toEqual(['node-0', 'node-1']);
        // The envelope the ledger accepted holds the two honest signatures and nothing of node-2.
        expect(envelopeSigners(p).sort()).toEqual([0, 1]);
      }
      const view = await nodeView('node-2');
      expect(view.misbehaviours).toBeGreaterThanOrEqual(3);
      const kinds = view.recentMisbehaviour.map((x) => x.kind);
      expect(kinds).toContain('invalid_signature');
      expect(kinds).toContain('hash_mismatch');
      const metrics = await fetchMetrics(cluster.coordinator.url);
      expect(
        metricValue(metrics, 'coordinator_node_misbehaviour_total', { node: 'node-2', kind: 'invalid_signature' }),
      ).toBeGreaterThanOrEqual(2);
      expect(
        metricValue(metrics, 'coordinator_node_misbehaviour_total', { node: 'node-2', kind: 'hash_mismatch' }),
      ).toBeGreaterThanOrEqual(1);
      for (const i of [0, 1]) {
        expect(
          metricValue(metrics, 'coordinator_node_misbehaviour_total', { node: `node-${i}` }),
          `node-${i} was never flagged`,
        ).toBe(0);
      }
    }, 90_000);

    it('a node flooding frames is flagged and cut off; proposals still complete', async () => {
      mode = 'silent';
      const closed = rogue.closed();
      // Far beyond the coordinator's per-node burst (nodeFrameBurst, 200 by default): the coordinator drops the
      // excess, flags the node, and closes its socket once the drops exceed another burst.
      rogue.flood(2_000);
      const p = await paymentThroughCoordinator('4');
      expect(p.status, JSON.stringify(p)).toBe('submitted');
      expect(envelopeSigners(p).sort()).toEqual([0, 1]);
      expect(await closed).toBe(4008);
      const view = await nodeView('node-2');
      expect(view.connected).toBe(false);
      expect(view.recentMisbehaviour.map((x) => x.kind)).toContain('flood');
      const metrics = await fetchMetrics(cluster.coordinator.url);
      expect(metricValue(metrics, 'coordinator_node_misbehaviour_total', { node: 'node-2', kind: 'flood' })).toBe(1);
    }, 90_000);

    it('a node process whose key differs from its enrolment is refused at connect; the others still sign', async () => {
      // Node-2 restarted on another key of its own KMS account (a swapped or misconfigured key).
      const acct2 = await kmsAccount(2);
      const admin = kmsClient(cluster.kms[2]!.url, acct2.region, role(acct2, 'admin'));
      let keyId: string;
      let address: string;
      try {
        keyId = (await admin.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' })))
          .KeyMetadata!.KeyId!;
        const pub = await kms2.send(new GetPublicKeyCommand({ KeyId: keyId }));
        address = StrKey.encodeEd25519PublicKey(Buffer.from(pub.PublicKey!).subarray(12));
      } finally {
        admin.destroy();
        kms2.destroy();
      }
      expect(address).not.toBe(cluster.nodeInfo[2]!.stellarKey);
      const coordinatorKey = identityFromPem(await readFile(join(dir, 'coordinator', 'message-key.pem'), 'utf8'));
      const nodeRole = role(acct2, 'node');
      const swappedDir = join(dir, 'node-2-swapped');
      const config = join(dir, 'node-2-swapped.yaml');
      // JSON is YAML: the node reads it as its config file.
      await writeFile(
        config,
        JSON.stringify({
          mode: 'development',
          nodeId: 'node-2',
          dataDir: swappedDir,
          coordinator: {
            url: `ws://${new URL(cluster.coordinator.url).host}`,
            publicKeys: [coordinatorKey.publicKeyB64],
          },
          identityKeyFile: join(dir, 'node-2', 'identity.pem'),
          network: cluster.networkPassphrase,
          key: {
            type: 'aws-kms',
            keyId,
            region: acct2.region,
            endpoint: cluster.kms[2]!.url,
            credentials: { accessKeyId: nodeRole.accessKeyId, secretAccessKey: nodeRole.secretAccessKey },
            expectedAddress: address,
          },
          policy: join(dir, 'policy.yaml'),
        }),
        { mode: 0o600 },
      );
      const swapped = await spawnService({
        cosignerBin: COSIGNER_BIN,
        name: 'node-2-swapped',
        args: ['node', '--config', config],
        dir,
        readyTimeoutMs: 60_000,
      });
      extra.push(swapped);
      // The coordinator closes its connection with STELLAR_KEY_MISMATCH (4003), every time it dials.
      await untilAtLeast(
        () => (swapped.output().match(/"code":4003/g) ?? []).length,
        1,
        'the coordinator to refuse the swapped key',
        30_000,
      );
      const p = await paymentThroughCoordinator('5');
      expect(p.status, JSON.stringify(p)).toBe('submitted');
      expect(envelopeSigners(p).sort()).toEqual([0, 1]);
      expect((await nodeView('node-2')).connected).toBe(false);
      const session = metricValue(await fetchMetrics(swapped.url), 'cosigner_node_session_up');
      expect(session).toBe(0);
    }, 120_000);
  });
});

/**
 * FROST among real processes, set up once for every suite that needs it (docs/architecture.md "FROST signing"):
 * the launcher's cluster with each node's share sealer (a symmetric key its operator creates in the node's own KMS
 * account through the real SDK, over HTTP to the emulator) and the groups it expects (`frost.expect`), a key
 * generation through the real coordinator (`POST /v1/frost/groups`), an account whose signer is the group key
 * (`cosigner account setup --frost-group`), and a payment proposed with the group, awaited, and checked on the
 * ledger. Each piece stands alone, so a suite that injects a fault between two of them uses the others.
 *
 * The checks inside these helpers (node:assert) are the suites' own: a helper that finds something wrong throws,
 * and the test that called it fails.
 */
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import {
  type Cluster,
  type ClusterOptions,
  demoPolicyYaml,
  type ProposalView,
  startCluster,
} from '@cosigner/launcher/cluster';
import { Asset, type Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { type CoordinatorApi, coordinatorApi } from './http.ts';
import { COSIGNER_BIN, type CommandRun, clusterFlags, runCosigner } from './process.ts';

/** One member of a FROST roster as a node's `frost.expect` names it. */
export interface RosterEntry {
  nodeId: string;
  identityKey: string;
}

/** One group a node expects to join: its threshold and its members. */
export interface FrostExpectation {
  threshold: number;
  participants: readonly RosterEntry[];
  /** The weight the group's key is to have on its accounts (what a node checks a key swap against), when set. */
  accountWeight?: number;
}

/** A node's share sealer: a symmetric key in its KMS account, used with the node's own principal. */
export interface KmsSealerConfig {
  type: 'aws-kms';
  keyId: string;
  region: string;
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

export interface FrostClusterOptions extends Omit<ClusterOptions, 'cosignerBin' | 'nodeConfigOf'> {
  /** The `cosigner` executable (default: the repository's). */
  cosignerBin?: string;
  /**
   * The groups each node expects: thresholds of groups of every node (`[2, 3]`: 2-of-n and n-of-n), or per node
   * (node `index`, the whole roster) for groups of some of them.
   */
  expect: readonly number[] | ((ctx: { index: number; roster: readonly RosterEntry[] }) => FrostExpectation[]);
  /**
   * Accounts besides the operator accounts that the nodes' demo policy lets them sign for (at most 1000 XLM a
   * payment): the accounts a group key will control. Not used with `nodePolicy`.
   */
  frostAccounts?: readonly string[];
}

export interface FrostCluster {
  cluster: Cluster;
  /** The node ids, node i at index i. */
  ids: string[];
  roster: RosterEntry[];
  /** Node i's share sealer at index i: a test opens node i's share with it, as only node i's principal can. */
  sealers: KmsSealerConfig[];
  /** The coordinator's HTTP API with the admin key. */
  api: CoordinatorApi;
}

/**
 * Start the cluster with every node's sealer and expected groups in its node.yaml, so the nodes come up ready for
 * key generation (no restart each).
 */
export async function startFrostCluster(opts: FrostClusterOptions): Promise<FrostCluster> {
  const { expect: expected, frostAccounts, cosignerBin, ...rest } = opts;
  const sealers: KmsSealerConfig[] = [];
  const cluster = await startCluster({
    ...rest,
    cosignerBin: cosignerBin ?? COSIGNER_BIN,
    ...(frostAccounts && !opts.nodePolicy
      ? {
          nodePolicy: ({ network, accounts }) =>
            demoPolicyYaml({
              network,
              account: accounts[0]!,
              maxXlm: opts.maxPaymentXlm ?? '1000',
              extraAccounts: [...frostAccounts],
            }),
        }
      : {}),
    nodeConfigOf: async ({ index, nodes, kms }) => {
      const admin = new KMSClient({
        endpoint: kms.endpoint,
        region: kms.region,
        credentials: { accessKeyId: kms.admin.accessKeyId, secretAccessKey: kms.admin.secretAccessKey },
      });
      let keyId: string | undefined;
      try {
        const made = await admin.send(
          new CreateKeyCommand({
            KeySpec: 'SYMMETRIC_DEFAULT',
            KeyUsage: 'ENCRYPT_DECRYPT',
            Description: 'FROST share sealing',
          }),
        );
        keyId = made.KeyMetadata?.KeyId;
      } finally {
        admin.destroy();
      }
      assert.ok(keyId, `the KMS emulator at ${kms.endpoint} made no key for node ${index}`);
      const sealer: KmsSealerConfig = {
        type: 'aws-kms',
        keyId,
        region: kms.region,
        endpoint: kms.endpoint,
        credentials: { accessKeyId: kms.node.accessKeyId, secretAccessKey: kms.node.secretAccessKey },
      };
      sealers[index] = sealer;
      const roster = nodes.map((x) => ({ nodeId: x.id, identityKey: x.identityKey }));
      const groups =
        typeof expected === 'function'
          ? expected({ index, roster })
          : expected.map((threshold) => ({ threshold, participants: roster }));
      return { frost: { sealer, expect: groups } };
    },
  });
  const roster = cluster.nodeInfo.map((x) => ({ nodeId: x.id, identityKey: x.identityKey }));
  return { cluster, ids: roster.map((r) => r.nodeId), roster, sealers, api: coordinatorApi(cluster) };
}

/** A group as GET /v1/frost/groups/:id shows it. */
export interface FrostGroupView {
  id: string;
  status: string;
  threshold: number;
  address: string | null;
  groupPublicKey: string | null;
  transcript: string | null;
  participants: { index: number; nodeId: string; identityKey: string; verifyingShare?: string }[];
  error: { code: string; message: string; reportedBy?: string; nodeCode?: string; culprits: string[] } | null;
}

/**
 * Ask the coordinator for a key generation among `participants` and wait for its end. The request is repeated
 * while the coordinator answers 409 COORD_FROST_NODE_UNAVAILABLE (a node just restarted is not connected yet).
 * Returns the answer to the request, and the group once it left `running` when the request was accepted (202).
 * @throws Error when the key generation is still running after `timeoutMs`
 */
export async function frostKeyGeneration(
  api: CoordinatorApi,
  o: { participants: readonly string[]; threshold: number; timeoutMs?: number; pollMs?: number },
): Promise<{ started: { status: number; body: unknown }; group?: FrostGroupView }> {
  const timeoutMs = o.timeoutMs ?? 180_000;
  const pollMs = o.pollMs ?? 300;
  const deadline = Date.now() + timeoutMs;
  let started = await api('POST', '/v1/frost/groups', { participants: o.participants, threshold: o.threshold });
  while (
    started.status === 409 &&
    (started.body as { code?: string }).code === 'COORD_FROST_NODE_UNAVAILABLE' &&
    Date.now() < deadline
  ) {
    await sleep(pollMs);
    started = await api('POST', '/v1/frost/groups', { participants: o.participants, threshold: o.threshold });
  }
  if (started.status !== 202) return { started };
  const group = await frostGroupOutcome(api, (started.body as { id: string }).id, deadline - Date.now(), pollMs);
  return { started, group };
}

/**
 * Poll GET /v1/frost/groups/:id until the key generation has left `running` (ready or failed); returns the group.
 * @throws Error when it is still running after `timeoutMs`
 */
export async function frostGroupOutcome(
  api: CoordinatorApi,
  id: string,
  timeoutMs = 180_000,
  pollMs = 200,
): Promise<FrostGroupView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const group = (await api('GET', `/v1/frost/groups/${id}`)).body as FrostGroupView;
    if (group.status !== 'running') return group;
    if (Date.now() > deadline) throw new Error(`key generation ${id} still running after ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

/** Fund `account` through the ledger simulator's friendbot. */
export async function fund(cluster: Cluster, account: string): Promise<void> {
  const r = await fetch(`${cluster.horizonUrl}/friendbot?addr=${account}`);
  await r.arrayBuffer();
  assert.ok(r.ok, `the friendbot answered ${r.status} for ${account}`);
}

/**
 * `cosigner account setup --frost-group <group>:<weight>` on `account`, signed by its master key (written to a
 * 0600 file in the cluster's directory for the command, removed after): the group key, and `signers` (native,
 * `name=G...:weight`), become the account's signers with the thresholds given and master weight 0.
 */
export async function frostAccountSetup(
  cluster: Cluster,
  o: {
    account: Keypair;
    group: string;
    weight: number;
    thresholds: { low: number; med: number; high: number };
    signers?: readonly string[];
    extraArgs?: readonly string[];
  },
): Promise<CommandRun> {
  const masterFile = join(cluster.dir, `${o.account.publicKey()}.secret`);
  await writeFile(masterFile, o.account.secret(), { mode: 0o600 });
  try {
    return await runCosigner([
      'account',
      'setup',
      ...clusterFlags(cluster),
      '--account',
      o.account.publicKey(),
      '--frost-group',
      `${o.group}:${o.weight}`,
      ...(o.signers ?? []).flatMap((x) => ['--signer', x]),
      '--low',
      String(o.thresholds.low),
      '--med',
      String(o.thresholds.med),
      '--high',
      String(o.thresholds.high),
      '--master-key-file',
      masterFile,
      ...(o.extraArgs ?? []),
    ]);
  } finally {
    await rm(masterFile, { force: true });
  }
}

/** An unsigned native payment from `from` (at its current sequence number), signed by nobody yet. */
export async function paymentXdr(
  cluster: Cluster,
  p: { from: string; to: string; amount: string; timeoutSeconds?: number },
): Promise<string> {
  const source = await cluster.horizon.loadAccount(p.from);
  return new TransactionBuilder(source, { fee: '100', networkPassphrase: cluster.networkPassphrase })
    .addOperation(Operation.payment({ destination: p.to, asset: Asset.native(), amount: p.amount }))
    .setTimeout(p.timeoutSeconds ?? 120)
    .build()
    .toXDR();
}

/** POST /v1/proposals for `group` to sign (submit: true unless told); it must be accepted (201). */
export async function proposeWithGroup(
  api: CoordinatorApi,
  p: { xdr: string; group: string; submit?: boolean },
): Promise<ProposalView> {
  const r = await api('POST', '/v1/proposals', { xdr: p.xdr, submit: p.submit ?? true, group: p.group });
  assert.equal(r.status, 201, `POST /v1/proposals answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as ProposalView;
}

/** The last 4 bytes of an account key: the hint a decorated signature by that key carries (Stellar's XDR). */
export function signatureHint(address: string): Buffer {
  return Buffer.from(StrKey.decodeEd25519PublicKey(address).subarray(28));
}

/** An envelope signed by a FROST group carries exactly one signature, 64 bytes, hinted with the group key. */
export function checkGroupEnvelope(envelopeXdr: unknown, group: string, networkPassphrase: string): void {
  assert.equal(typeof envelopeXdr, 'string', 'the proposal holds no envelope');
  const env = TransactionBuilder.fromXDR(envelopeXdr as string, networkPassphrase);
  assert.equal(env.signatures.length, 1, `the envelope carries ${env.signatures.length} signatures, not 1`);
  // stellar-sdk 17's decorated signature: `hint` and `signature` are fixed-size opaques holding a `value`.
  const sig = env.signatures[0] as unknown as { hint: { value: Uint8Array }; signature: { value: Uint8Array } };
  assert.ok(Buffer.from(sig.hint.value).equals(signatureHint(group)), 'the signature is not hinted with the group key');
  assert.equal(sig.signature.value.length, 64, 'the signature is not 64 bytes');
}

/** The nodes whose shares made the signature of proposal `id`: the last `node.approved` event's FROST signers. */
export async function frostSigners(api: CoordinatorApi, id: string): Promise<string[]> {
  const { events } = (await api('GET', `/v1/proposals/${id}/events`)).body as {
    events: { type: string; data: Record<string, unknown> }[];
  };
  const approved = [...events].reverse().find((e) => e.type === 'node.approved');
  assert.ok(approved, `proposal ${id} has no node.approved event`);
  return [...(approved.data.frost as { signers: string[] }).signers].sort();
}

/** A native amount (XLM as a decimal string, at most 7 places) in stroops. */
export function stroops(xlm: string): bigint {
  const m = /^(\d+)(?:\.(\d{1,7}))?$/.exec(xlm);
  if (!m) throw new Error(`not an amount of XLM: ${xlm}`);
  return BigInt(m[1]!) * 10_000_000n + BigInt((m[2] ?? '').padEnd(7, '0'));
}

/** An account's native balance in stroops. */
export async function balanceStroops(cluster: Cluster, account: string): Promise<bigint> {
  return stroops(await cluster.nativeBalance(account));
}

/**
 * Pay `amount` XLM from `from` to `to`, signed by `group`: proposed (submit: true), awaited until it ends, which
 * must be `submitted` with one signature (the group's); the ledger must have moved exactly `amount` to `to`.
 * Returns the ended proposal and the nodes whose shares signed.
 */
export async function payWithGroup(
  f: { cluster: Cluster; api: CoordinatorApi },
  p: { from: string; to: string; group: string; amount: string; timeoutMs?: number; txTimeoutSeconds?: number },
): Promise<{ proposal: ProposalView; signers: string[] }> {
  const { cluster, api } = f;
  const before = await balanceStroops(cluster, p.to);
  const xdr = await paymentXdr(cluster, {
    from: p.from,
    to: p.to,
    amount: p.amount,
    ...(p.txTimeoutSeconds !== undefined ? { timeoutSeconds: p.txTimeoutSeconds } : {}),
  });
  const proposed = await proposeWithGroup(api, { xdr, group: p.group });
  assert.equal(proposed.kind, 'frostTx');
  const proposal = await cluster.waitForProposal(proposed.id, { timeoutMs: p.timeoutMs ?? 90_000 });
  assert.equal(proposal.status, 'submitted', JSON.stringify(proposal));
  checkGroupEnvelope(proposal.envelope, p.group, cluster.networkPassphrase);
  assert.equal((await balanceStroops(cluster, p.to)) - before, stroops(p.amount));
  return { proposal, signers: await frostSigners(api, proposal.id) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSigner } from '@cosigner/keys/factory';
import { evaluate } from '@cosigner/policy/evaluate';
import { loadPolicy, type Policy } from '@cosigner/policy/schema';
import { Account, Asset, Keypair, Memo, Operation, TransactionBuilder, type xdr } from '@stellar/stellar-sdk';
import { stringify } from 'yaml';
import { AuditLog } from '../src/audit.ts';
import { Reviewer, type ReviewerDeps } from '../src/review.ts';
import { CoordinatorDouble } from './coordinator-double.ts';

export const NETWORK = 'Test SDF Network ; September 2015';
export const OTHER_NETWORK = 'Public Global Stellar Network ; September 2015';

export interface TxOptions {
  source: string;
  seq: string;
  ops: xdr.Operation[];
  fee?: string;
  network?: string;
  /** Seconds from `now` for maxTime; 0 = unbounded. */
  timeout?: number;
  /** Absolute bounds (unix s), overriding timeout. */
  timebounds?: { minTime: number; maxTime: number };
  memo?: Memo;
}

/** Build an unsigned v1 transaction with the real SDK. `seq` is the sequence the tx will carry. */
export function buildTx(o: TxOptions): string {
  const account = new Account(o.source, (BigInt(o.seq) - 1n).toString());
  const b = new TransactionBuilder(account, {
    fee: o.fee ?? '100',
    networkPassphrase: o.network ?? NETWORK,
    ...(o.timebounds ? { timebounds: o.timebounds } : {}),
    ...(o.memo ? { memo: o.memo } : {}),
  });
  for (const op of o.ops) b.addOperation(op);
  if (!o.timebounds) b.setTimeout(o.timeout ?? 120);
  return b.build().toEnvelope().toXdr('base64');
}

export function pay(destination: string, amount: string, source?: string): xdr.Operation {
  return Operation.payment({ destination, asset: Asset.native(), amount, ...(source ? { source } : {}) });
}

/** Wrap a transaction in a fee bump paid by `feeSource`. */
export function feeBump(innerXdr: string, feeSource: string, fee = '1000', network = NETWORK): string {
  const inner = TransactionBuilder.fromXDR(innerXdr, network);
  if (!('operations' in inner) || 'innerTransaction' in inner) throw new Error('not a v1 transaction');
  return TransactionBuilder.buildFeeBumpTransaction(feeSource, fee, inner, network).toEnvelope().toXdr('base64');
}

export interface PolicyOptions {
  network?: string;
  accounts: string[];
  allow?: string[];
  maxPerTx?: string;
  velocity?: { window: string; max: string }[];
  maxFee?: number;
  /** fees.maxFeeBump (stroops); production requires it. */
  maxFeeBump?: number;
  maxWindowSeconds?: number;
  holdAbove?: string;
}

export function policyYaml(o: PolicyOptions): string {
  return stringify({
    version: 1,
    network: o.network ?? NETWORK,
    accounts: o.accounts,
    operations: ['payment'],
    assets: [
      { asset: 'native', maxPerTx: o.maxPerTx ?? '100', velocity: o.velocity ?? [{ window: '1h', max: '250' }] },
    ],
    ...(o.allow ? { destinations: { allow: o.allow } } : {}),
    fees: { maxFee: o.maxFee ?? 1000, ...(o.maxFeeBump !== undefined ? { maxFeeBump: o.maxFeeBump } : {}) },
    validity: { maxWindowSeconds: o.maxWindowSeconds ?? 300 },
    ...(o.holdAbove ? { manualApproval: { amountAbove: [{ asset: 'native', amount: o.holdAbove }] } } : {}),
  });
}

export interface NodeFiles {
  config: string;
  policy: string;
  dataDir: string;
}

/** Write a node.yaml and its policy.yaml (0600) into `dir`. */
export async function writeNodeFiles(
  dir: string,
  o: {
    nodeId?: string;
    coordinatorUrl: string;
    coordinatorKeys: string[];
    policy: PolicyOptions;
    key?: Record<string, unknown>;
    mode?: 'development' | 'production';
    extra?: Record<string, unknown>;
  },
): Promise<NodeFiles> {
  const dataDir = join(dir, 'data');
  const policy = join(dir, 'policy.yaml');
  const config = join(dir, 'node.yaml');
  await writeFile(policy, policyYaml(o.policy), { mode: 0o600 });
  await writeFile(
    config,
    stringify({
      mode: o.mode ?? 'development',
      nodeId: o.nodeId ?? 'node-a',
      dataDir,
      coordinator: { url: o.coordinatorUrl, publicKeys: o.coordinatorKeys },
      network: o.policy.network ?? NETWORK,
      key: o.key ?? { type: 'local', keyFile: join(dir, 'stellar.key') },
      policy,
      limits: { slotGraceSeconds: 5 },
      ...o.extra,
    }),
    { mode: 0o600 },
  );
  return { config, policy, dataDir };
}

export type { Keypair };
export { Memo };

/**
 * A transaction reviewer over `policy` (the real evaluation) on the network of these tests; its audit log is kept
 * in the ledger's file unless one is given.
 */
export function reviewerFor(
  policy: Policy,
  deps: Omit<ReviewerDeps, 'network' | 'accounts' | 'evaluate' | 'audit'> & { audit?: AuditLog },
): Reviewer {
  return new Reviewer({
    ...deps,
    network: NETWORK,
    accounts: policy.accounts,
    evaluate: (summary, ctx) => evaluate(policy, { summary, ...ctx }),
    audit: deps.audit ?? new AuditLog(deps.ledger.db),
  });
}

/**
 * What a reviewer test starts from: a fresh directory (added to `dirs`, which the test file removes), an account
 * this node cosigns for, an allowed destination, the policy over them and a local key generated in the directory.
 */
export async function reviewFixture(prefix: string, dirs: string[], over: Partial<PolicyOptions> = {}) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  const account = Keypair.random().publicKey();
  const dest = Keypair.random().publicKey();
  const policy = loadPolicy(policyYaml({ accounts: [account], allow: [dest], ...over }));
  const signer = await createSigner({ type: 'local', keyFile: join(dir, 'k.key') }, { production: false });
  return { dir, account, dest, policy, signer };
}

/**
 * A coordinator double on a real port and the files of a node that dials it, its policy built for a fresh
 * operator account and destination (`policy({ account, dest })`).
 */
export async function nodeAgainstDouble(
  dir: string,
  policy: (p: { account: string; dest: string }) => PolicyOptions,
  double: { network: string; heartbeatMs?: number },
): Promise<{ coord: CoordinatorDouble; account: string; dest: string; files: NodeFiles }> {
  const coord = await CoordinatorDouble.start(double);
  const account = Keypair.random().publicKey();
  const dest = Keypair.random().publicKey();
  const files = await writeNodeFiles(dir, {
    coordinatorUrl: coord.url,
    coordinatorKeys: [coord.identity.publicKeyB64],
    policy: policy({ account, dest }),
  });
  return { coord, account, dest, files };
}

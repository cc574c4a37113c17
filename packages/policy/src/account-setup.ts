import { checkQuorumIntersection, type IntersectionReport } from '@cosigner/stellar/intersection';
import { type Keypair, Operation, type Transaction, TransactionBuilder, type xdr } from '@stellar/stellar-sdk/base';
import {
  applyChanges,
  checkLockout,
  type LockoutReport,
  partyWeights,
  type SignerConfiguration,
  type SignerEntry,
} from './lockout.ts';

/**
 * Setting up a multisig account, written once for everything that does it: `cosigner account setup` and the other
 * lifecycle commands (apps/cli), the local cluster launcher (packages/launcher) and the compose setup
 * (docker/setup.ts). Pure, no I/O: the caller loads the account, funds it where that is its job, signs where the
 * key lives and submits.
 *
 * The setup, in one transaction (stellar-core applies a transaction's operations all or nothing): each listed
 * signer at its weight, every other signer removed (weight 0), the master key's weight 0, the three thresholds.
 * One setOptions operation per signer, because stellar-core takes one signer per operation (SetOptionsOp.signer),
 * then one for the master weight and the thresholds. Before anything is built, the configuration it leaves is
 * judged by the lock-out check (lockout.ts: reachable thresholds, no single party reaching one, at most 20
 * signers) and the quorum-intersection check (packages/stellar intersection.ts: no two disjoint sets of parties
 * both reaching a threshold, which would let two different transactions for one sequence number be fully signed).
 */

/** A change to an account's signers, master weight and thresholds (absent: left as it is). */
export interface SignerChanges {
  readonly signers?: readonly SignerEntry[];
  readonly masterWeight?: number;
  readonly thresholds?: Partial<SignerConfiguration['thresholds']>;
}

/** The multisig account asked for: its signers (a node's keys carry the node's id) and thresholds. */
export interface MultisigTarget {
  readonly signers: readonly SignerEntry[];
  readonly thresholds: SignerConfiguration['thresholds'];
}

/** What the two checks say about a configuration; `ok` only when both pass. */
export interface SetupSafety {
  readonly ok: boolean;
  readonly lockout: LockoutReport;
  readonly quorums: IntersectionReport;
}

/** A fresh account as the network creates it: the master key alone at weight 1, every threshold 0. */
export function freshAccount(account: string): SignerConfiguration {
  return { account, masterWeight: 1, thresholds: { low: 0, med: 0, high: 0 }, signers: [] };
}

/** The changes that turn `current` into `target`: listed signers set, unlisted ones removed, master weight 0. */
export function multisigChanges(current: SignerConfiguration, target: MultisigTarget): SignerChanges {
  const listed = new Set(target.signers.map((s) => s.key));
  return {
    signers: [
      ...target.signers,
      ...current.signers.filter((s) => !listed.has(s.key)).map((s) => ({ key: s.key, weight: 0 })),
    ],
    masterWeight: 0,
    thresholds: { ...target.thresholds },
  };
}

/**
 * The lock-out check, then quorum intersection over the same parties (a node's keys count as one party), at each
 * of the three threshold levels.
 */
export function checkSetupSafety(after: SignerConfiguration): SetupSafety {
  const lockout = checkLockout(after);
  if (!lockout.ok) return { ok: false, lockout, quorums: { ok: true, disjoint: [] } };
  const parties = [...partyWeights(after)].map(([id, weight]) => ({ id, weight }));
  const t = after.thresholds;
  const quorums = checkQuorumIntersection(parties, { low: t.low, medium: t.med, high: t.high });
  return { ok: quorums.ok, lockout, quorums };
}

/** setOptions operations for a change on `account`, each sourced by it. */
export function setOptionsOps(account: string, c: SignerChanges): xdr.Operation[] {
  const ops: xdr.Operation[] = [];
  for (const s of c.signers ?? []) {
    ops.push(Operation.setOptions({ source: account, signer: { ed25519PublicKey: s.key, weight: s.weight } }));
  }
  const t = c.thresholds ?? {};
  if (c.masterWeight !== undefined || t.low !== undefined || t.med !== undefined || t.high !== undefined) {
    ops.push(
      Operation.setOptions({
        source: account,
        ...(c.masterWeight !== undefined ? { masterWeight: c.masterWeight } : {}),
        ...(t.low !== undefined ? { lowThreshold: t.low } : {}),
        ...(t.med !== undefined ? { medThreshold: t.med } : {}),
        ...(t.high !== undefined ? { highThreshold: t.high } : {}),
      }),
    );
  }
  return ops;
}

/** The account a transaction takes its sequence number from (`Horizon.Server.loadAccount` returns one). */
export type SourceAccount = ConstructorParameters<typeof TransactionBuilder>[0];

/** How a signer-change transaction is built. */
export interface ChangeTransaction {
  readonly networkPassphrase: string;
  /** The accounts the change applies to, each with the same changes (operations sourced by each). */
  readonly accounts: readonly string[];
  readonly changes: SignerChanges;
  /** Fee per operation in stroops (default 1000: ten times the base fee, so a busy ledger does not drop it). */
  readonly fee?: string;
  /** Upper time bound from now, in seconds (default 120). */
  readonly timeoutSeconds?: number;
}

/**
 * One transaction carrying `changes` for every account. Its sequence number comes from `source` (loaded by the
 * caller: the first account, or another one so that a lifecycle change does not compete with payments).
 */
export function buildChangeTransaction(source: SourceAccount, p: ChangeTransaction): Transaction {
  const b = new TransactionBuilder(source, { fee: p.fee ?? '1000', networkPassphrase: p.networkPassphrase });
  for (const account of p.accounts) for (const op of setOptionsOps(account, p.changes)) b.addOperation(op);
  return b.setTimeout(p.timeoutSeconds ?? 120).build();
}

/** A fresh account's first setup, planned, judged and signed by its master key. */
export interface FreshSetup {
  readonly tx: Transaction;
  /** The configuration the transaction leaves. */
  readonly after: SignerConfiguration;
  readonly safety: SetupSafety;
}

/**
 * The first setup of a fresh account (master key only) whose master key the caller holds, as the launcher and
 * the compose setup create their operator accounts: planned, judged by both checks, built and signed. The caller
 * decides what an unsafe `safety` means (the CLI refuses it; a development cluster of one node reports it) and
 * submits `tx`.
 */
export function signedFreshSetup(
  source: SourceAccount,
  master: Keypair,
  target: MultisigTarget,
  opts: { networkPassphrase: string; fee?: string; timeoutSeconds?: number },
): FreshSetup {
  const current = freshAccount(master.publicKey());
  const changes = multisigChanges(current, target);
  const after = applyChanges(current, changes);
  const safety = checkSetupSafety(after);
  const tx = buildChangeTransaction(source, { ...opts, accounts: [master.publicKey()], changes });
  tx.sign(master);
  return { tx, after, safety };
}

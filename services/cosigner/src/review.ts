import { policyReasons } from '@cosigner/policy/evaluate';
import { type DecodedTransaction, decodeEnvelope, xdrTransactionOf } from '@cosigner/stellar/decode';
import { describeTransaction } from '@cosigner/stellar/describe';
import { authEntryPayload } from '@cosigner/stellar/soroban';
import type { TransactionSummary } from '@cosigner/stellar/types';
import { StrKey, type xdr } from '@stellar/stellar-sdk/base';
import { nodeErrors } from './errors.ts';
import type { Reason, SigningLedger } from './ledger.ts';
import {
  type DecisionBody,
  NO_HASH,
  type PipelineDeps,
  type PolicyEvaluation,
  type ProposalBody,
  type Review,
  SigningPipeline,
  type SlotClaim,
} from './pipeline.ts';
import { hashMismatch, malformedXdr, nodeReasons, wrongNetwork } from './reasons.ts';

/**
 * Transactions on the review pipeline (pipeline.ts), and the held ones an operator approves or rejects.
 *
 * Rules (docs/architecture.md, "A proposal's life"): decode the XDR ourselves with OUR pinned network
 * passphrase; compute the hash ourselves; the coordinator's hash and network are only compared against ours;
 * describe; refuse accounts this node does not cosign for; then the pipeline: evaluate the policy, check and
 * record the slot (source account, sequence number) in the same SQLite transaction as the policy's velocity
 * reads, and only then sign. Every error path ends in a reject with reasons and never reaches the key.
 */

export {
  CRASH_POINTS,
  type CrashPoint,
  type DecisionBody,
  NO_HASH,
  type PolicyEvaluation,
  type ProposalBody,
  velocitySpend,
} from './pipeline.ts';

/** The policy, bound to its loaded document: `now` in unix seconds; `spent` reads this node's ledger. */
export type EvaluateFn = (
  summary: TransactionSummary,
  ctx: {
    now: number;
    spent: (assetKey: string, windowSeconds: number) => bigint;
    /** Auth entries of the transaction this node already signed (and charged) in an auth round. */
    chargedAuthEntries?: ReadonlySet<string>;
  },
) => PolicyEvaluation;

/**
 * `<operation>:<entry>` keys of the address entries in `decoded` that this node already signed for that address in
 * an auth round (its ledger holds the entry's payload under the address; services/cosigner soroban.ts). Their
 * spend was charged then, so reviewing the transaction that carries them must not charge it again (the policy
 * still charges whatever the transaction can pay beyond them). Fee bumps are not looked into: charging twice
 * there errs on the safe side.
 */
export function chargedAuthEntries(
  decoded: DecodedTransaction,
  summary: TransactionSummary,
  network: string,
  ledger: SigningLedger,
): Set<string> {
  const out = new Set<string>();
  if (summary.kind !== 'transaction') return out;
  const ops = (xdrTransactionOf(decoded) as xdr.Transaction).operations;
  for (const op of summary.operations) {
    if (op.type !== 'invokeHostFunction') continue;
    const auth = (ops[op.index]!.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp.auth;
    (op.authEntries ?? []).forEach((e, j) => {
      if (e.credentials !== 'address' && e.credentials !== 'addressV2') return;
      const rec = ledger.byHash(authEntryPayload(auth[j]!, network).toString('hex'));
      if (rec && rec.source === e.address) out.add(`${op.index}:${j}`);
    });
  }
  return out;
}

export interface ReviewerDeps extends PipelineDeps {
  network: string;
  /** The accounts this node cosigns for (policy). */
  accounts: ReadonlySet<string>;
  evaluate: EvaluateFn;
  /** Reviews `authEntries` proposals (soroban.ts); without it they are refused as unsupported. */
  soroban?: { review(p: ProposalBody, first?: () => void): Promise<DecisionBody> };
  /** The pipeline to run on (shared with the Soroban reviewer); one of its own over these deps otherwise. */
  pipeline?: SigningPipeline;
}

/** The account behind a G... or M... (muxed, SEP-23) address: sequence numbers and signers belong to it. */
export function baseAccount(address: string): string {
  if (address.startsWith('M')) {
    return StrKey.encodeEd25519PublicKey(Buffer.from(StrKey.decodeMed25519PublicKey(address).subarray(0, 32)));
  }
  return address;
}

/** Every account whose authority a signature on this transaction can serve. */
export function involvedAccounts(s: TransactionSummary): string[] {
  const out = new Set<string>();
  const add = (t: TransactionSummary): void => {
    out.add(baseAccount(t.source));
    for (const op of t.operations) out.add(baseAccount(op.source));
  };
  if (s.kind === 'feeBump') {
    if (s.feeSource) out.add(baseAccount(s.feeSource));
    if (s.inner) add(s.inner);
  } else {
    add(s);
  }
  return [...out];
}

/** The slot a transaction consumes: for a fee bump, the inner transaction's (source, seqNum). */
export function slotOf(
  d: DecodedTransaction,
  s: TransactionSummary,
): { source: string; seq: string; txHash: string; maxTime: number } {
  const t = s.kind === 'feeBump' && s.inner ? s.inner : s;
  const txHash = d.kind === 'feeBump' && d.inner ? d.inner.hash.toString('hex') : d.hash.toString('hex');
  const maxTime = Number(t.preconditions.timeBounds?.maxTime ?? '0');
  return { source: baseAccount(t.source), seq: t.seqNum, txHash, maxTime: Number.isSafeInteger(maxTime) ? maxTime : 0 };
}

type Prepared =
  | { ok: true; decoded: DecodedTransaction; summary: TransactionSummary; hash: string }
  | { ok: false; hash: string; reasons: Reason[] };

/** A transaction's slot on the pipeline: its (source account, sequence number); a fee bump's is its inner one's. */
function transactionSlot(prep: { decoded: DecodedTransaction; summary: TransactionSummary; hash: string }): SlotClaim {
  const slot = slotOf(prep.decoded, prep.summary);
  return {
    signHash: prep.hash,
    ...slot,
    taken: (holder) =>
      nodeReasons.reason('SLOT_TAKEN', {
        message:
          `This node already signed another transaction for ${slot.source} sequence ${slot.seq}` +
          (holder
            ? ` that is valid until ${holder.maxTime === 0 ? 'forever' : new Date(holder.maxTime * 1000).toISOString()}.`
            : '.'),
        field: 'seqNum',
      }),
  };
}

export class Reviewer {
  readonly #d: ReviewerDeps;
  readonly #pipe: SigningPipeline;

  constructor(deps: ReviewerDeps) {
    this.#d = deps;
    this.#pipe = deps.pipeline ?? new SigningPipeline(deps);
  }

  get signerAddress(): string {
    return this.#d.signer.address;
  }

  /** Decode with our own passphrase, compare claims, describe and check accounts. Pure apart from the clock. */
  prepare(p: { xdr?: string; networkPassphrase: string; hash?: string; kind: string }): Prepared {
    const claimed = p.hash ?? NO_HASH;
    const refuse = (hash: string, ...reasons: Reason[]): Prepared => ({ ok: false, hash, reasons });
    if (p.kind !== 'transaction' || p.xdr === undefined) {
      return refuse(
        claimed,
        nodeReasons.reason('UNSUPPORTED_PROPOSAL', {
          message: `This node does not sign ${p.kind} proposals.`,
          field: 'kind',
        }),
      );
    }
    if (p.networkPassphrase !== this.#d.network) {
      return refuse(claimed, wrongNetwork());
    }
    let decoded: DecodedTransaction;
    let summary: TransactionSummary;
    try {
      decoded = decodeEnvelope(p.xdr, this.#d.network);
      summary = describeTransaction(decoded);
    } catch (e) {
      return refuse(claimed, malformedXdr('The transaction', e, 'xdr'));
    }
    const hash = decoded.hash.toString('hex');
    if (p.hash !== undefined && p.hash !== hash) return refuse(hash, hashMismatch());
    const foreign = involvedAccounts(summary).filter((a) => !this.#d.accounts.has(a));
    if (foreign.length > 0) {
      return refuse(
        hash,
        ...foreign.map((a) =>
          policyReasons.reason('ACCOUNT_NOT_COSIGNED', {
            message: `This node does not cosign for ${a}.`,
            field: 'source',
          }),
        ),
      );
    }
    return { ok: true, decoded, summary, hash };
  }

  /** The policy on a prepared transaction, at `now`, reading this node's ledger (inside the pipeline's unit). */
  #evaluate(prep: { decoded: DecodedTransaction; summary: TransactionSummary }, now: number): PolicyEvaluation {
    const { ledger, network } = this.#d;
    return this.#d.evaluate(prep.summary, {
      now,
      spent: (assetKey, windowSeconds) => ledger.spent(assetKey, windowSeconds, now),
      chargedAuthEntries: chargedAuthEntries(prep.decoded, prep.summary, network, ledger),
    });
  }

  /** What a transaction review hands the pipeline, apart from how it is decided (`review`, `approveHeld`). */
  #transaction(
    proposalId: string,
    prep: { decoded: DecodedTransaction; summary: TransactionSummary; hash: string },
  ): Pick<Review, 'kind' | 'proposalId' | 'hash' | 'slots' | 'answer'> {
    return {
      kind: 'transaction',
      proposalId,
      hash: prep.hash,
      slots: [transactionSlot(prep)],
      answer: ([signature]) => ({ signature }),
    };
  }

  /**
   * Review one proposal from the coordinator and answer with a decision (and a signature on approval).
   * Never throws for bad input (see SigningPipeline.review).
   */
  async review(p: ProposalBody): Promise<DecisionBody> {
    const { audit, ledger } = this.#d;
    // The `proposal.seen` entry is written in the same SQLite transaction as what follows it (the decision, or the
    // reservation), not in one of its own: one fsync fewer per proposal, same entries in the same order (prepare()
    // between them is pure and writes nothing).
    const seenAt = this.#pipe.nowMs();
    const seen = (): void => {
      audit.append('proposal.seen', { proposalId: p.proposalId, kind: p.kind, claimedHash: p.hash ?? null }, seenAt);
    };
    if (p.kind === 'authEntries' && this.#d.soroban) return this.#d.soroban.review(p, seen);
    const prep = this.prepare(p);
    if (!prep.ok) return this.#pipe.finish(p.proposalId, prep.hash, 'reject', prep.reasons, { first: seen });
    return this.#pipe.review({
      ...this.#transaction(p.proposalId, prep),
      first: seen,
      evaluate: (now) => this.#evaluate(prep, now),
      hold: (reasons, now) => {
        const pending = ledger.hold(
          {
            proposalId: p.proposalId,
            hash: prep.hash,
            xdr: p.xdr as string,
            network: this.#d.network,
            reasons,
            summary: prep.summary,
          },
          now,
        );
        if (pending.hash !== prep.hash) {
          return [nodeReasons.reason('PROPOSAL_ID_REUSED', { field: 'proposalId' })];
        }
        if (pending.state === 'rejected' || pending.state === 'cancelled') {
          return [
            nodeReasons.reason('MANUAL_REJECT', {
              message: `An operator or the coordinator closed this held proposal (${pending.state}).`,
            }),
          ];
        }
        return undefined;
      },
    });
  }

  /**
   * The review of a FROST round's commit step (frost/sign.ts): the transaction's, with its policy and slot, but no
   * manual hold: a threshold round cannot wait for an operator between its two steps, so a `hold` is answered as
   * a reject with its reasons (propose the transaction natively to have it held).
   */
  frostReview(
    proposalId: string,
    prep: { decoded: DecodedTransaction; summary: TransactionSummary; hash: string },
    first: () => void,
  ): Review {
    return {
      ...this.#transaction(proposalId, prep),
      kind: 'frost',
      first,
      evaluate: (now) => this.#evaluate(prep, now),
    };
  }

  /** Held proposals, oldest first. */
  listHeld() {
    return this.#d.ledger.listHeld();
  }

  /**
   * An operator approves a held proposal: review it again on the pipeline (the approval overrides `hold` reasons
   * only; a policy reject, an expired window, velocity or a taken slot still refuse), record, sign.
   * @throws CosignerError NODE_PENDING_NOT_FOUND, NODE_PENDING_CLOSED
   */
  async approveHeld(proposalId: string, by: string, note?: string): Promise<DecisionBody> {
    const { ledger, audit } = this.#d;
    const pending = this.#heldOrThrow(proposalId);
    const prep = this.prepare({
      xdr: pending.xdr,
      networkPassphrase: pending.network,
      hash: pending.hash,
      kind: 'transaction',
    });
    const refused = (now: number): void => {
      ledger.closePending(proposalId, 'rejected', 'policy', now);
    };
    if (!prep.ok) {
      return this.#pipe.finish(proposalId, prep.hash, 'reject', prep.reasons, {
        first: () => refused(this.#pipe.nowS()),
      });
    }
    return this.#pipe.review({
      ...this.#transaction(proposalId, prep),
      manual: true,
      evaluate: (now) => {
        const evaluation = this.#evaluate(prep, now);
        return evaluation.outcome === 'hold' ? { ...evaluation, outcome: 'approve', reasons: [] } : evaluation;
      },
      settle: (outcome, now) => {
        if (outcome !== 'approve') return refused(now);
        ledger.closePending(proposalId, 'approved', by, now);
        audit.append('manual.approved', { proposalId, hash: prep.hash, by, note: note ?? null }, this.#pipe.nowMs());
      },
    });
  }

  /**
   * An operator rejects a held proposal.
   * @throws CosignerError NODE_PENDING_NOT_FOUND, NODE_PENDING_CLOSED
   */
  rejectHeld(proposalId: string, by: string, note?: string): DecisionBody {
    const { ledger, audit } = this.#d;
    const pending = this.#heldOrThrow(proposalId);
    const reasons = [
      nodeReasons.reason('MANUAL_REJECT', {
        message: note ? `Rejected by an operator: ${note.slice(0, 900)}` : 'Rejected by an operator.',
      }),
    ];
    return this.#pipe.finish(proposalId, pending.hash, 'reject', reasons, {
      first: () => {
        ledger.closePending(proposalId, 'rejected', by, this.#pipe.nowS());
        audit.append('manual.rejected', { proposalId, hash: pending.hash, by, note: note ?? null }, this.#pipe.nowMs());
      },
    });
  }

  /** The coordinator ended a proposal: drop its pending manual approval, if any. */
  cancel(proposalId: string, why: string): boolean {
    const { ledger, audit } = this.#d;
    return ledger.atomically(() => {
      const closed = ledger.closePending(proposalId, 'cancelled', 'coordinator', this.#pipe.nowS());
      if (closed) audit.append('proposal.cancelled', { proposalId, reason: why }, this.#pipe.nowMs());
      return closed;
    });
  }

  #heldOrThrow(proposalId: string) {
    const pending = this.#d.ledger.pending(proposalId);
    if (!pending) throw nodeErrors.error('NODE_PENDING_NOT_FOUND', { id: proposalId });
    if (pending.state !== 'held')
      throw nodeErrors.error('NODE_PENDING_CLOSED', { id: proposalId, state: pending.state });
    return pending;
  }
}

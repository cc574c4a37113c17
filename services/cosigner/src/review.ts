import type { Signer } from '@cosigner/keys/signer';
import type { Body } from '@cosigner/protocol/messages';
import { SIGNER_UNAVAILABLE } from '@cosigner/protocol/reasons';
import { type DecodedTransaction, decodeEnvelope, xdrTransactionOf } from '@cosigner/stellar/decode';
import { describeTransaction } from '@cosigner/stellar/describe';
import { authEntryPayload } from '@cosigner/stellar/soroban';
import type { TransactionSummary } from '@cosigner/stellar/types';
import { StrKey, type xdr } from '@stellar/stellar-sdk';
import type { Logger } from 'pino';
import type { AuditLog } from './audit.ts';
import { nodeErrors } from './errors.ts';
import type { Outcome, Reason, SignatureRecord, SigningLedger, SpendEntry } from './ledger.ts';
import type { NodeMetrics } from './metrics.ts';

/**
 * The review pipeline: from a proposal to a decision, and to a signature only on approval.
 *
 * Rules (docs/architecture.md, "A proposal's life"): decode the XDR ourselves with OUR pinned network
 * passphrase; compute the hash ourselves; the coordinator's hash and network are only compared against ours;
 * describe; refuse accounts this node does not cosign for; evaluate the policy; check and record the slot in
 * the ledger in the same SQLite transaction as the policy's velocity reads; only then sign. Every error path
 * ends in a reject with reasons and never reaches the key.
 */

/** What the policy engine returns (packages/policy evaluate). */
export interface PolicyEvaluation {
  outcome: Outcome;
  reasons: Reason[];
  spend: SpendEntry[];
  /** Stroops of fee the transaction may charge to one of this node's accounts (packages/policy Decision.fee). */
  fee?: bigint;
}

/**
 * What signing adds to this node's velocity windows: the operations' outflows plus the fee charged to one of its
 * accounts, as native spend (a fee is XLM leaving the account that pays it, like a payment).
 */
export function velocitySpend(evaluation: PolicyEvaluation): SpendEntry[] {
  const fee = evaluation.fee ?? 0n;
  if (fee <= 0n) return evaluation.spend;
  const native = evaluation.spend.find((s) => s.assetKey === 'native');
  const rest = evaluation.spend.filter((s) => s.assetKey !== 'native');
  return [...rest, { assetKey: 'native', amount: (native?.amount ?? 0n) + fee }].sort((a, b) =>
    a.assetKey < b.assetKey ? -1 : a.assetKey > b.assetKey ? 1 : 0,
  );
}

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

/**
 * Test hook (development mode only, see node.ts): stop the process dead at a point of the signing path to
 * prove crash safety. `after-record`: intent committed, nothing signed; `after-sign`: signature computed,
 * not stored; `before-reply`: stored, not sent.
 */
export type CrashPoint = 'after-record' | 'after-sign' | 'before-reply';
export const CRASH_POINTS: readonly CrashPoint[] = ['after-record', 'after-sign', 'before-reply'];

export interface ReviewerDeps {
  network: string;
  /** The accounts this node cosigns for (policy). */
  accounts: ReadonlySet<string>;
  evaluate: EvaluateFn;
  ledger: SigningLedger;
  audit: AuditLog;
  signer: Pick<Signer, 'address' | 'kind' | 'sign'>;
  logger: Logger;
  metrics?: NodeMetrics;
  /** Clock in ms (tests move time). */
  now?: () => number;
  crashAt?: CrashPoint;
  crash?: (point: CrashPoint) => void;
  /** Reviews `authEntries` proposals (soroban.ts); without it they are refused as unsupported. */
  soroban?: { review(p: ProposalBody): Promise<DecisionBody> };
}

export type DecisionBody = Body<'decision'>;
export type ProposalBody = Body<'proposal'>;

/** The hash field of a decision when the node could not compute one (the XDR did not decode). */
export const NO_HASH = '0'.repeat(64);

function reason(code: string, message: string, extra: { opIndex?: number; field?: string } = {}): Reason {
  return { code, message, ...extra };
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

/** The review's unit defers its sync only when it reserved a slot to sign (see `review`). */
const SIGN_DEFERS_SYNC = { syncDeferred: (step: { kind: string }) => step.kind === 'sign' };

export class Reviewer {
  readonly #d: ReviewerDeps;
  /** Signatures being made now, by hash (see #signAndStore). */
  readonly #signing = new Map<string, Promise<{ ok: true; signature: string } | { ok: false; code: string }>>();

  constructor(deps: ReviewerDeps) {
    this.#d = deps;
  }

  get signerAddress(): string {
    return this.#d.signer.address;
  }

  #nowMs(): number {
    return this.#d.now ? this.#d.now() : Date.now();
  }

  #nowS(): number {
    return Math.floor(this.#nowMs() / 1000);
  }

  /** Decode with our own passphrase, compare claims, describe and check accounts. Pure apart from the clock. */
  prepare(p: { xdr?: string; networkPassphrase: string; hash?: string; kind: string }): Prepared {
    const claimed = p.hash ?? NO_HASH;
    if (p.kind !== 'transaction' || p.xdr === undefined) {
      return {
        ok: false,
        hash: claimed,
        reasons: [reason('UNSUPPORTED_PROPOSAL', `This node does not sign ${p.kind} proposals.`, { field: 'kind' })],
      };
    }
    if (p.networkPassphrase !== this.#d.network) {
      return {
        ok: false,
        hash: claimed,
        reasons: [
          reason('WRONG_NETWORK', 'The proposal names a network this node does not sign for.', {
            field: 'networkPassphrase',
          }),
        ],
      };
    }
    let decoded: DecodedTransaction;
    let summary: TransactionSummary;
    try {
      decoded = decodeEnvelope(p.xdr, this.#d.network);
      summary = describeTransaction(decoded);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      return {
        ok: false,
        hash: claimed,
        reasons: [
          reason(
            'MALFORMED_XDR',
            `The transaction could not be decoded (${typeof code === 'string' ? code : 'invalid'}).`,
            { field: 'xdr' },
          ),
        ],
      };
    }
    const hash = decoded.hash.toString('hex');
    if (p.hash !== undefined && p.hash !== hash) {
      return {
        ok: false,
        hash,
        reasons: [
          reason('HASH_MISMATCH', 'The hash the coordinator sent differs from the one this node computed.', {
            field: 'hash',
          }),
        ],
      };
    }
    const foreign = involvedAccounts(summary).filter((a) => !this.#d.accounts.has(a));
    if (foreign.length > 0) {
      return {
        ok: false,
        hash,
        reasons: foreign.map((a) =>
          reason('ACCOUNT_NOT_COSIGNED', `This node does not cosign for ${a}.`, { field: 'source' }),
        ),
      };
    }
    return { ok: true, decoded, summary, hash };
  }

  /**
   * Review one proposal from the coordinator and answer with a decision (and a signature on approval).
   * Never throws for bad input; a key backend failure after the intent was recorded answers a reject with
   * SIGNER_UNAVAILABLE (the intent keeps the slot: asking again signs the same hash).
   */
  async review(p: ProposalBody): Promise<DecisionBody> {
    const { audit, ledger } = this.#d;
    // For transactions the `proposal.seen` entry is written in the same SQLite transaction as what follows it
    // (the decision, or the reservation), not in one of its own: one fsync (synchronous=FULL) fewer per
    // proposal, same entries in the same order (prepare() between them is pure and writes nothing).
    const seenAt = this.#nowMs();
    const seen = (): void => {
      audit.append('proposal.seen', { proposalId: p.proposalId, kind: p.kind, claimedHash: p.hash ?? null }, seenAt);
    };
    if (p.kind === 'authEntries' && this.#d.soroban) {
      seen();
      return this.#d.soroban.review(p);
    }
    const prep = this.prepare(p);
    if (!prep.ok) return this.#finish(p.proposalId, prep.hash, 'reject', prep.reasons, true, seen);

    const now = this.#nowS();
    const slot = slotOf(prep.decoded, prep.summary);
    type Step =
      | { kind: 'sign'; record: SignatureRecord }
      | { kind: 'known'; record: SignatureRecord }
      | { kind: 'decided'; outcome: Outcome; reasons: Reason[] };
    // Group commit (ledger.grouped): this unit shares one commit with the other reviews of this turn, and runs
    // after the ones queued before it (seeing their reservations and spends). Its writes are on disk before
    // anything below runs, with one exception: a reservation to sign (step 'sign') is committed but its sync is
    // deferred to the signature's own commit (#signOnce), which syncs both before the signature leaves. That is
    // one fdatasync per signature instead of two, and it keeps the rule that matters: no signature leaves this node
    // unless its intent is durable. A killed process loses nothing (the kernel holds the committed pages); a power
    // cut in between can lose the reservation of a signature that never left the node, which is harmless: the slot
    // was never used. Every other outcome (reject, hold, a known hash) is synced before it is answered.
    const step = await ledger.grouped((): Step => {
      seen();
      // The same transaction asked again (a resend, or another proposal id, also one queued earlier in this turn):
      // its recorded intent or signature, never a second reservation.
      const known = ledger.byHash(prep.hash);
      if (known) return { kind: 'known', record: known };
      const evaluation = this.#d.evaluate(prep.summary, {
        now,
        spent: (assetKey, windowSeconds) => ledger.spent(assetKey, windowSeconds, now),
        chargedAuthEntries: chargedAuthEntries(prep.decoded, prep.summary, this.#d.network, ledger),
      });
      const holder = ledger.liveConflict(slot.source, slot.seq, slot.txHash, now);
      const reasons = [...evaluation.reasons];
      if (holder) {
        reasons.push(
          reason(
            'SLOT_TAKEN',
            `This node already signed another transaction for ${slot.source} sequence ${slot.seq} that is valid until ${holder.maxTime === 0 ? 'forever' : new Date(holder.maxTime * 1000).toISOString()}.`,
            { field: 'seqNum' },
          ),
        );
      }
      const outcome: Outcome = holder ? 'reject' : evaluation.outcome;
      if (outcome === 'approve') {
        const r = ledger.reserveInTransaction(
          {
            proposalId: p.proposalId,
            signHash: prep.hash,
            ...slot,
            signer: this.#d.signer.address,
            spend: velocitySpend(evaluation),
            manual: false,
          },
          now,
        );
        // Inside this unit no other writer ran since the checks above, so this is always 'reserved'.
        this.#recordDecision(p.proposalId, prep.hash, 'approve', reasons, now);
        return { kind: 'sign', record: (r as { record: SignatureRecord }).record };
      }
      if (outcome === 'hold') {
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
          return {
            kind: 'decided',
            outcome: 'reject',
            reasons: [
              reason('PROPOSAL_ID_REUSED', 'A different transaction is already held under this proposal id.', {
                field: 'proposalId',
              }),
            ],
          };
        }
        if (pending.state === 'rejected' || pending.state === 'cancelled') {
          return {
            kind: 'decided',
            outcome: 'reject',
            reasons: [
              reason('MANUAL_REJECT', `An operator or the coordinator closed this held proposal (${pending.state}).`),
            ],
          };
        }
      }
      return { kind: 'decided', outcome, reasons };
    }, SIGN_DEFERS_SYNC);
    if (step.kind === 'sign') return this.#signAndStore(p.proposalId, step.record);
    if (step.kind === 'known') return this.#complete(p.proposalId, step.record);
    return this.#finish(p.proposalId, prep.hash, step.outcome, step.reasons);
  }

  /** Held proposals, oldest first. */
  listHeld() {
    return this.#d.ledger.listHeld();
  }

  /**
   * An operator approves a held proposal: review it again (the approval overrides `hold` reasons only; a
   * policy reject, an expired window, velocity or a taken slot still refuse), record, sign.
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
    const now = this.#nowS();
    if (!prep.ok) {
      ledger.atomically(() => ledger.closePending(proposalId, 'rejected', 'policy', now));
      return this.#finish(proposalId, prep.hash, 'reject', prep.reasons);
    }
    const slot = slotOf(prep.decoded, prep.summary);
    const result = ledger.atomically(() => {
      const evaluation = this.#d.evaluate(prep.summary, {
        now,
        spent: (assetKey, windowSeconds) => ledger.spent(assetKey, windowSeconds, now),
        chargedAuthEntries: chargedAuthEntries(prep.decoded, prep.summary, this.#d.network, ledger),
      });
      if (evaluation.outcome === 'reject') {
        ledger.closePending(proposalId, 'rejected', 'policy', now);
        return { ok: false as const, reasons: evaluation.reasons };
      }
      const r = ledger.reserveInTransaction(
        {
          proposalId,
          signHash: prep.hash,
          ...slot,
          signer: this.#d.signer.address,
          spend: velocitySpend(evaluation),
          manual: true,
        },
        now,
      );
      if (r.status === 'slot-taken') {
        ledger.closePending(proposalId, 'rejected', 'policy', now);
        return {
          ok: false as const,
          reasons: [
            reason(
              'SLOT_TAKEN',
              `This node already signed another transaction for ${slot.source} sequence ${slot.seq}.`,
              { field: 'seqNum' },
            ),
          ],
        };
      }
      ledger.closePending(proposalId, 'approved', by, now);
      audit.append('manual.approved', { proposalId, hash: prep.hash, by, note: note ?? null }, this.#nowMs());
      this.#recordDecision(proposalId, prep.hash, 'approve', [], now);
      return { ok: true as const, record: r.record };
    });
    if (!result.ok) return this.#finish(proposalId, prep.hash, 'reject', result.reasons);
    return this.#complete(proposalId, result.record);
  }

  /**
   * An operator rejects a held proposal.
   * @throws CosignerError NODE_PENDING_NOT_FOUND, NODE_PENDING_CLOSED
   */
  rejectHeld(proposalId: string, by: string, note?: string): DecisionBody {
    const { ledger, audit } = this.#d;
    const pending = this.#heldOrThrow(proposalId);
    const reasons = [
      reason('MANUAL_REJECT', note ? `Rejected by an operator: ${note.slice(0, 900)}` : 'Rejected by an operator.'),
    ];
    const now = this.#nowS();
    ledger.atomically(() => {
      ledger.closePending(proposalId, 'rejected', by, now);
      audit.append('manual.rejected', { proposalId, hash: pending.hash, by, note: note ?? null }, this.#nowMs());
    });
    return this.#finish(proposalId, pending.hash, 'reject', reasons);
  }

  /** The coordinator ended a proposal: drop its pending manual approval, if any. */
  cancel(proposalId: string, why: string): boolean {
    const { ledger, audit } = this.#d;
    return ledger.atomically(() => {
      const closed = ledger.closePending(proposalId, 'cancelled', 'coordinator', this.#nowS());
      if (closed) audit.append('proposal.cancelled', { proposalId, reason: why }, this.#nowMs());
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

  /**
   * Same hash asked again: the stored signature, or finish a recorded intent (crash recovery). Only while the
   * transaction's window (maxTime + grace) is open: once it closed, the slot check no longer protects it (another
   * transaction for the same sequence may since have been signed), so neither a signature nor a finished intent
   * leaves the node for it. Nothing is lost: past maxTime the network refuses the transaction anyway.
   */
  async #complete(proposalId: string, record: SignatureRecord): Promise<DecisionBody> {
    const now = this.#nowS();
    if (!this.#d.ledger.isLive(record, now)) {
      return this.#finish(proposalId, record.signHash, 'reject', [
        reason(
          'VALIDITY_EXPIRED',
          `maxTime ${record.maxTime} has passed (now ${now}): this node no longer signs or re-sends a signature for this transaction.`,
          { field: 'preconditions.timeBounds.maxTime' },
        ),
      ]);
    }
    if (record.state === 'signed' && record.signature) {
      this.#d.metrics?.decisions.inc({ outcome: 'approve', reason: 'none' });
      return this.#decision(proposalId, record.signHash, 'approve', [], record.signature);
    }
    return this.#signAndStore(proposalId, record);
  }

  /**
   * Sign a recorded intent and store the signature. Two reviews of the same hash at once (the coordinator re-sent
   * it on a reconnect, or proposed it again under another id) share one KMS call and one stored signature; each
   * answers for its own proposal id.
   */
  async #signAndStore(proposalId: string, record: SignatureRecord): Promise<DecisionBody> {
    let signing = this.#signing.get(record.signHash);
    if (!signing) {
      signing = this.#signOnce(record).finally(() => this.#signing.delete(record.signHash));
      this.#signing.set(record.signHash, signing);
    }
    const signed = await signing;
    if (!signed.ok) {
      return this.#finish(
        proposalId,
        record.signHash,
        'reject',
        [reason(SIGNER_UNAVAILABLE, `The key backend could not sign (${signed.code}); ask again later.`)],
        false,
      );
    }
    this.#d.metrics?.decisions.inc({ outcome: 'approve', reason: 'none' });
    return this.#decision(proposalId, record.signHash, 'approve', [], signed.signature);
  }

  async #signOnce(record: SignatureRecord): Promise<{ ok: true; signature: string } | { ok: false; code: string }> {
    const { ledger, audit, signer, logger, metrics } = this.#d;
    this.#maybeCrash('after-record');
    const started = process.hrtime.bigint();
    let sig: Buffer;
    try {
      sig = await signer.sign(Buffer.from(record.signHash, 'hex'));
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      logger.error({ hash: record.signHash, code }, 'key backend failed to sign; the intent keeps the slot');
      return { ok: false, code: typeof code === 'string' ? code : 'error' };
    }
    metrics?.signLatency.observe({ backend: signer.kind }, Number(process.hrtime.bigint() - started) / 1e9);
    this.#maybeCrash('after-sign');
    const b64 = sig.toString('base64');
    // Durable (its group's commit synced the WAL, the deferred reservation with it) before the signature leaves.
    await ledger.grouped(() => {
      ledger.storeSignature(record.signHash, b64, this.#nowS());
      audit.append(
        'signature.released',
        {
          proposalId: record.proposalId,
          hash: record.signHash,
          signer: signer.address,
          signature: b64,
          source: record.source,
          seq: record.seq,
        },
        this.#nowMs(),
      );
    });
    this.#maybeCrash('before-reply');
    logger.info(
      { proposalId: record.proposalId, hash: record.signHash, source: record.source, seq: record.seq },
      'signed',
    );
    return { ok: true, signature: b64 };
  }

  #maybeCrash(point: CrashPoint): void {
    if (this.#d.crashAt === point) this.#d.crash?.(point);
  }

  #recordDecision(proposalId: string, hash: string, outcome: Outcome, reasons: readonly Reason[], now: number): void {
    this.#d.ledger.recordDecision(proposalId, hash, outcome, reasons, now);
    this.#d.audit.append('decision', { proposalId, hash, outcome, reasons }, this.#nowMs());
  }

  /** Record (ledger + audit + metrics + log) a non-approval and build its frame body. */
  #finish(
    proposalId: string,
    hash: string,
    outcome: Outcome,
    reasons: Reason[],
    record = true,
    first?: () => void,
  ): DecisionBody {
    const { ledger, logger, metrics } = this.#d;
    if (record) {
      ledger.atomically(() => {
        first?.();
        this.#recordDecision(proposalId, hash, outcome, reasons, this.#nowS());
      });
    }
    for (const r of reasons.length > 0 ? reasons : [reason('NONE', '')])
      metrics?.decisions.inc({ outcome, reason: r.code });
    logger.info({ proposalId, hash, outcome, reasons: reasons.map((r) => r.code) }, 'decision');
    return this.#decision(proposalId, hash, outcome, reasons);
  }

  #decision(proposalId: string, hash: string, outcome: Outcome, reasons: Reason[], signature?: string): DecisionBody {
    const body: DecisionBody = {
      proposalId,
      hash,
      outcome,
      reasons: reasons
        .slice(0, 64)
        .map((r) => ({ ...r, code: r.code.slice(0, 64), message: r.message.slice(0, 1024) })),
      signerKey: this.#d.signer.address,
    };
    if (signature !== undefined) body.signature = signature;
    return body;
  }
}

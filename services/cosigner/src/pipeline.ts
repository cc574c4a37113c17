import type { Signer } from '@cosigner/keys/signer';
import { policyReasons } from '@cosigner/policy/evaluate';
import type { Body } from '@cosigner/protocol/messages';
import { protocolReasons } from '@cosigner/protocol/reasons';
import type { Logger } from 'pino';
import type { AuditLog } from './audit.ts';
import type { Outcome, Reason, SignatureRecord, SigningLedger, SpendEntry } from './ledger.ts';
import type { NodeMetrics } from './metrics.ts';

/**
 * The node's one review pipeline, for every kind of proposal (docs/architecture.md, "A proposal's life"):
 *
 *   decode -> describe -> policy -> check and reserve the slot -> sign -> store and audit -> answer
 *
 * A kind of proposal (review.ts: a transaction, and a held one an operator approves; soroban.ts: authorization
 * entries) decodes and describes what it was sent, with the node's own network passphrase, and hands the pipeline a
 * `Review`: the hash its decision names, the slots its signatures consume, how to evaluate the policy and how to
 * put the signatures in the answer. Everything after that is written once, here.
 *
 * A slot is what one signature uses up, of two kinds: a transaction's (source account, sequence number), and an
 * authorization entry's (address, nonce). Either way the network accepts only one use of it, so this node never
 * holds two live signatures for one slot (ledger.ts): a different claim on a live slot is refused (SLOT_TAKEN,
 * NONCE_TAKEN), in the same SQLite transaction as the policy's velocity reads and the reservation, so no other
 * review interleaves between the check and the record.
 *
 * The durability rule, once: a signature leaves this node only after its intent is durable. The reservation's unit
 * commits in a group (ledger.grouped) but defers its sync to the signature's own commit, which is synced before
 * the signature is answered (one fdatasync per signature instead of two). A killed process loses nothing (the
 * kernel holds committed pages); a power cut in between can lose only the reservation of a signature that never
 * left the node, which is harmless. Every other outcome is synced before it is answered.
 *
 * The sign step is a function given the 32 bytes to sign (`SignFn`), the signer's by default: a threshold round
 * that releases a signature share instead of a signature goes through the same review and slot rules.
 */

export type DecisionBody = Body<'decision'>;
export type ProposalBody = Body<'proposal'>;

/** The hash field of a decision when the node could not compute one (the XDR did not decode). */
export const NO_HASH = '0'.repeat(64);

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

/**
 * Test hook (development mode only, see node.ts): stop the process dead at a point of the signing path to
 * prove crash safety. `after-record`: intent committed, nothing signed; `after-sign`: signature computed,
 * not stored; `before-reply`: stored, not sent; `frost-before-share`: a FROST round's sign step arrived, its
 * nonce committed in round one and not yet used (the node is killed between the two rounds).
 */
export type CrashPoint = 'after-record' | 'after-sign' | 'before-reply' | 'frost-before-share';
export const CRASH_POINTS: readonly CrashPoint[] = ['after-record', 'after-sign', 'before-reply', 'frost-before-share'];

/** Produces the signature (or signature share) over the 32 bytes a slot's record names. */
export type SignFn = (payload: Buffer) => Promise<Buffer>;

/** One slot a review's signature would consume (see the module comment). */
export interface SlotClaim {
  /** Hex of the 32 bytes the key signs: a transaction hash, an authorization entry's payload. */
  signHash: string;
  /** Hex of what consumes the slot: the same one again is the same use of it (a fee bump's inner transaction). */
  txHash: string;
  /** The account (or address) whose slot it is. */
  source: string;
  /** Which slot of it: a sequence number, or `auth:<nonce>` (soroban.ts nonceSlot), never both. */
  seq: string;
  /** Unix seconds after which the network no longer accepts the use (plus the ledger's grace); 0 = never. */
  maxTime: number;
  /** The refusal when another live claim holds the slot: a record, or (no holder) another slot of this review. */
  taken(holder: SignatureRecord | undefined): Reason;
}

/** One review as a kind of proposal hands it to the pipeline, once decoded and described. */
export interface Review {
  /** `transaction`, `authEntries`: for the log. */
  kind: string;
  proposalId: string;
  /** The hash the decision names: a transaction's hash, an auth bundle's digest. */
  hash: string;
  slots: readonly SlotClaim[];
  /** Recorded on the reservation: an operator approved it. */
  manual?: boolean;
  /** The policy, at `now` (unix seconds), inside the unit that reserves: its velocity reads see every reservation. */
  evaluate(now: number): PolicyEvaluation;
  /** First write of the unit (the `proposal.seen` audit entry), so it shares the decision's commit. */
  first?(): void;
  /** Extra fields of the decision's audit entry. */
  auditData?: Record<string, unknown>;
  /**
   * A `hold`: keep the proposal for an operator, or answer the reasons to refuse instead. Without it the kind
   * offers no manual approval, and a hold is answered as a reject with its reasons.
   */
  hold?(reasons: Reason[], now: number): Reason[] | undefined;
  /** In the deciding unit, once the outcome is known (before the reservation, for an approval). */
  settle?(outcome: Outcome, now: number): void;
  /** The approval's extra fields, from the slots' signatures (base64, in slot order). */
  answer(signatures: readonly string[]): Partial<DecisionBody>;
}

export interface PipelineDeps {
  ledger: SigningLedger;
  audit: AuditLog;
  signer: Pick<Signer, 'address' | 'kind' | 'sign'>;
  logger: Logger;
  metrics?: NodeMetrics;
  /** Clock in ms (tests move time). */
  now?: () => number;
  crashAt?: CrashPoint;
  crash?: (point: CrashPoint) => void;
  /** The sign step; the signer's `sign` by default. */
  sign?: SignFn;
}

type Signed = { ok: true; signature: string } | { ok: false; code: string };

type Step =
  | { kind: 'sign'; records: SignatureRecord[] }
  | { kind: 'known'; records: SignatureRecord[] }
  | { kind: 'decided'; outcome: Outcome; reasons: Reason[] };

/** The reservation's unit defers its sync to the signature's commit (module comment); nothing else does. */
const SIGN_DEFERS_SYNC = { syncDeferred: (step: Step) => step.kind === 'sign' };

function codeOf(e: unknown, fallback: string): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : fallback;
}

export class SigningPipeline {
  readonly #d: PipelineDeps;
  readonly #sign: SignFn;
  /** Signatures being made now, by hash: two reviews of one hash at once share one key call and one record. */
  readonly #signing = new Map<string, Promise<Signed>>();

  constructor(deps: PipelineDeps) {
    this.#d = deps;
    this.#sign = deps.sign ?? ((payload) => deps.signer.sign(payload));
  }

  get signerAddress(): string {
    return this.#d.signer.address;
  }

  nowMs(): number {
    return this.#d.now ? this.#d.now() : Date.now();
  }

  nowS(): number {
    return Math.floor(this.nowMs() / 1000);
  }

  /**
   * Policy, slot check and reservation in one unit of the group commit, then sign, store and audit, then answer.
   * The same claims asked again (a resend, another proposal id, one queued earlier in this turn) find their
   * recorded intents or signatures: never a second reservation. Never throws for bad input; a key backend failure
   * after the intent was recorded answers a reject with SIGNER_UNAVAILABLE (the intent keeps the slot: asking
   * again signs the same hash).
   */
  async review(r: Review): Promise<DecisionBody> {
    const step = await this.#d.ledger.grouped(() => this.#unit(r), SIGN_DEFERS_SYNC);
    if (step.kind === 'sign') return this.#release(r, step.records);
    if (step.kind === 'known') return this.#complete(r, step.records);
    return this.#answer(r.proposalId, r.hash, step.outcome, step.reasons, r.kind);
  }

  /**
   * Round one of a threshold (FROST) round: the same review, policy, slot check and reservation as `review`, in
   * one unit, but synced before it returns and releasing nothing: the caller records its nonce commitment and
   * sends it only once the approval and the reservation are on disk. A claim already recorded (a retry of the
   * round with fresh nonces) is approved again only while its use is open, as `review` re-sends only then.
   * @returns the reserved records, or the decision to answer instead (recorded, counted)
   */
  async reserve(r: Review): Promise<{ records: SignatureRecord[] } | { decision: DecisionBody }> {
    const step = await this.#d.ledger.grouped(() => this.#unit(r));
    if (step.kind === 'decided') {
      return { decision: this.#answer(r.proposalId, r.hash, step.outcome, step.reasons, r.kind) };
    }
    if (step.kind === 'known') {
      const dead = this.#expired(step.records);
      if (dead) return { decision: this.finish(r.proposalId, r.hash, 'reject', [dead], { kind: r.kind }) };
    }
    return { records: step.records };
  }

  /**
   * Round two of a threshold round: compute the share (`share`, which spends the round's nonce durably first) over
   * a claim reserved in round one, only while its use is still open (the slot rule of `review`), then record its
   * release in the audit log (synced) before it is answered. `share` throws a reason (`{ reason }`) to refuse.
   */
  async releaseShare(
    r: Pick<Review, 'kind' | 'proposalId' | 'hash'> & { auditData: Record<string, unknown> },
    share: () => Buffer,
  ): Promise<{ share: Buffer } | { decision: DecisionBody }> {
    const { ledger, audit, logger } = this.#d;
    this.#maybeCrash('frost-before-share');
    const record = ledger.byHash(r.hash);
    const dead = record
      ? this.#expired([record])
      : policyReasons.reason('VALIDITY_EXPIRED', {
          message: 'This node holds no approved claim for this hash: it signs nothing it did not review.',
        });
    if (dead) return { decision: this.finish(r.proposalId, r.hash, 'reject', [dead], { kind: r.kind }) };
    let out: Buffer;
    try {
      out = share();
    } catch (e) {
      const reason = (e as { reason?: Reason }).reason;
      if (!reason) throw e;
      return { decision: this.finish(r.proposalId, r.hash, 'reject', [reason], { kind: r.kind }) };
    }
    await ledger.grouped(() => {
      audit.append('frost.share.released', { proposalId: r.proposalId, hash: r.hash, ...r.auditData }, this.nowMs());
    });
    logger.info({ proposalId: r.proposalId, hash: r.hash, ...r.auditData }, 'FROST share released');
    return { share: out };
  }

  /** The unit of `review` and `reserve`: the decision, the slot check and the reservation (module comment). */
  #unit(r: Review): Step {
    const { ledger } = this.#d;
    r.first?.();
    const now = this.nowS();
    const known = r.slots.map((s) => ledger.byHash(s.signHash));
    if (known.length > 0 && known.every((k) => k !== undefined)) {
      r.settle?.('approve', now);
      return { kind: 'known', records: known as SignatureRecord[] };
    }
    const evaluation = r.evaluate(now);
    const reasons = [...evaluation.reasons];
    let outcome = evaluation.outcome;
    r.slots.forEach((s, i) => {
      const holder = ledger.liveConflict(s.source, s.seq, s.txHash, now);
      // Two claims of one review on one slot exclude each other as much as a recorded one does.
      const sibling = r.slots.findIndex((o) => o.source === s.source && o.seq === s.seq && o.txHash !== s.txHash);
      if (holder || (sibling >= 0 && sibling < i)) {
        reasons.push(s.taken(holder));
        outcome = 'reject';
      }
    });
    if (outcome === 'hold') {
      const refused = r.hold ? r.hold(reasons, now) : reasons;
      if (refused) return this.#decide(r, 'reject', refused, now);
    }
    if (outcome !== 'approve') return this.#decide(r, outcome, reasons, now);
    r.settle?.('approve', now);
    // Velocity is charged once per review, on the first slot it reserves (one already recorded was charged then).
    let spend = velocitySpend(evaluation);
    const records = r.slots.map((s) => {
      const res = ledger.reserveInTransaction(
        {
          proposalId: r.proposalId,
          signHash: s.signHash,
          txHash: s.txHash,
          source: s.source,
          seq: s.seq,
          maxTime: s.maxTime,
          signer: this.#d.signer.address,
          spend,
          manual: r.manual ?? false,
        },
        now,
      );
      if (res.status === 'reserved') spend = [];
      // Inside this unit the slots were checked above, so this is 'reserved' or 'existing', never 'slot-taken'.
      return (res as { record: SignatureRecord }).record;
    });
    this.recordDecision(r.proposalId, r.hash, 'approve', reasons, now, r.auditData);
    return { kind: 'sign', records };
  }

  /** VALIDITY_EXPIRED when one of the records' uses has closed (see #complete), else undefined. */
  #expired(records: readonly SignatureRecord[]): Reason | undefined {
    const now = this.nowS();
    const dead = records.find((rec) => !this.#d.ledger.isLive(rec, now));
    if (!dead) return undefined;
    return policyReasons.reason('VALIDITY_EXPIRED', {
      message: `maxTime ${dead.maxTime} has passed (now ${now}): this node no longer signs or re-sends a signature for it.`,
      field: 'preconditions.timeBounds.maxTime',
    });
  }

  /** A decision other than approve, recorded in the deciding unit. */
  #decide(r: Review, outcome: Outcome, reasons: Reason[], now: number): Step {
    r.settle?.(outcome, now);
    this.recordDecision(r.proposalId, r.hash, outcome, reasons, now, r.auditData);
    return { kind: 'decided', outcome, reasons };
  }

  /**
   * Claims already recorded: their stored signatures, or finish recorded intents (crash recovery). Only while
   * every use is still open (maxTime + grace): once one closed, the slot check no longer protects it (another
   * claim on the slot may since have been signed), so neither a signature nor a finished intent leaves the node
   * for it. Nothing is lost: past maxTime the network refuses the use anyway.
   */
  async #complete(r: Review, records: readonly SignatureRecord[]): Promise<DecisionBody> {
    const dead = this.#expired(records);
    if (dead) return this.finish(r.proposalId, r.hash, 'reject', [dead], { kind: r.kind });
    return this.#release(r, records);
  }

  /** Sign every reserved claim not signed yet (durably stored before it leaves), then answer the approval. */
  async #release(r: Review, records: readonly SignatureRecord[]): Promise<DecisionBody> {
    const signed = await Promise.all(
      records.map(
        (rec): Promise<Signed> =>
          rec.state === 'signed' && rec.signature !== null
            ? Promise.resolve({ ok: true, signature: rec.signature })
            : this.#signShared(rec),
      ),
    );
    const failed = signed.find((s) => !s.ok);
    if (failed && !failed.ok) {
      const why = protocolReasons.reason('SIGNER_UNAVAILABLE', {
        message: `The key backend could not sign (${failed.code}); ask again later.`,
      });
      return this.finish(r.proposalId, r.hash, 'reject', [why], { record: false, kind: r.kind });
    }
    const signatures = signed.map((s) => (s as { signature: string }).signature);
    return { ...this.#answer(r.proposalId, r.hash, 'approve', [], r.kind), ...r.answer(signatures) };
  }

  #signShared(record: SignatureRecord): Promise<Signed> {
    let signing = this.#signing.get(record.signHash);
    if (!signing) {
      signing = this.#signOnce(record).finally(() => this.#signing.delete(record.signHash));
      this.#signing.set(record.signHash, signing);
    }
    return signing;
  }

  async #signOnce(record: SignatureRecord): Promise<Signed> {
    const { ledger, audit, signer, logger, metrics } = this.#d;
    this.#maybeCrash('after-record');
    const started = process.hrtime.bigint();
    let sig: Buffer;
    try {
      sig = await this.#sign(Buffer.from(record.signHash, 'hex'));
    } catch (e) {
      const code = codeOf(e, 'error');
      logger.error({ hash: record.signHash, code }, 'key backend failed to sign; the intent keeps the slot');
      return { ok: false, code };
    }
    metrics?.signLatency.observe({ backend: signer.kind }, Number(process.hrtime.bigint() - started) / 1e9);
    this.#maybeCrash('after-sign');
    const b64 = sig.toString('base64');
    // Durable (its group's commit synced the WAL, the deferred reservation with it) before the signature leaves.
    await ledger.grouped(() => {
      ledger.storeSignature(record.signHash, b64, this.nowS());
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
        this.nowMs(),
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

  /** The body of an approval recorded by `reserve` or released by `releaseShare` (counted, logged). */
  approved(r: Pick<Review, 'kind' | 'proposalId' | 'hash'>): DecisionBody {
    return this.#answer(r.proposalId, r.hash, 'approve', [], r.kind);
  }

  /** Record a decision in the ledger and the audit log (inside the caller's transaction). */
  recordDecision(
    proposalId: string,
    hash: string,
    outcome: Outcome,
    reasons: readonly Reason[],
    now: number,
    auditData?: Record<string, unknown>,
  ): void {
    this.#d.ledger.recordDecision(proposalId, hash, outcome, reasons, now);
    this.#d.audit.append('decision', { proposalId, hash, outcome, reasons, ...auditData }, this.nowMs());
  }

  /**
   * Answer a decision made outside a review (the proposal did not decode, an operator rejected it): record it
   * (ledger + audit, after `first`, in one transaction) unless `record` is false, count, log, build its body.
   */
  finish(
    proposalId: string,
    hash: string,
    outcome: Outcome,
    reasons: Reason[],
    opts: { record?: boolean; first?: () => void; kind?: string } = {},
  ): DecisionBody {
    if (opts.record !== false) {
      this.#d.ledger.atomically(() => {
        opts.first?.();
        this.recordDecision(proposalId, hash, outcome, reasons, this.nowS());
      });
    }
    return this.#answer(proposalId, hash, outcome, reasons, opts.kind ?? 'transaction');
  }

  /** Count, log and build the body of a recorded decision. */
  #answer(proposalId: string, hash: string, outcome: Outcome, reasons: Reason[], kind: string): DecisionBody {
    const { logger, metrics } = this.#d;
    // One count per reason; a decision without reasons counts once, as `none`.
    if (reasons.length === 0) metrics?.decisions.inc({ outcome, reason: 'none' });
    for (const r of reasons) metrics?.decisions.inc({ outcome, reason: r.code });
    logger.info({ proposalId, hash, kind, outcome, reasons: reasons.map((r) => r.code) }, 'decision');
    return {
      proposalId,
      hash,
      outcome,
      reasons: reasons
        .slice(0, 64)
        .map((r) => ({ ...r, code: r.code.slice(0, 64), message: r.message.slice(0, 1024) })),
      signerKey: this.#d.signer.address,
    };
  }
}

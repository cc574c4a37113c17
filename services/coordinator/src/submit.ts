import type { Logger } from '@cosigner/runtime/logger';
import type { SubmissionCode } from './codes.ts';
import type { EventBus } from './events.ts';
import { explainResultCode, type LedgerClient } from './horizon.ts';
import type { Metrics } from './metrics.ts';
import type { RoundLease, RoundLeases } from './pg/replicas.ts';
import { backoffMs } from './quorum.ts';
import type { CoordinatorStore, ProposalRecord, SubmissionResult } from './store.ts';

/**
 * Submission of a signed envelope to the network (docs/architecture.md "A proposal's life", step 5): the stored
 * bytes, once per proposal at a time, until the network answers for its hash. Used by the kinds whose result is a
 * transaction to submit; the round engine hands over once the proposal is `signed`.
 */

export interface SubmitterOptions {
  store: CoordinatorStore;
  ledger: LedgerClient;
  events: EventBus;
  metrics: Metrics;
  logger: Logger;
  /** Attempts for an envelope WITHOUT an upper time bound; one with a bound is retried until it passes. */
  submitAttempts: number;
  submitBackoffMs: number;
  /** Cap of the (jittered, doubling) pause between submission retries. */
  submitMaxBackoffMs?: number;
  /** After the time bound passes, how long to let a last ledger close and be ingested before the final lookup. */
  ledgerSettleMs?: number;
  /** Accounts whose cached state must be dropped (a bad-auth result says the signers changed). */
  invalidateAccounts(ids: readonly string[]): void;
  /**
   * Several replicas: a submission runs only under the round's lease (the round engine's, handed over when it
   * signed, or taken here when a replica takes a dead one's submission over), its writes fenced by it, and no
   * envelope leaves once the lease is lost.
   */
  leases?: RoundLeases;
}

export class Submitter {
  readonly #submitting = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #wakers = new Set<() => void>();
  #closed = false;

  constructor(private readonly o: SubmitterOptions) {}

  /**
   * Submit the stored envelope, the same bytes every time. Before a retry (and after a restart) ask the
   * network whether the hash already applied, so a lost response never turns into a second submission that
   * fails with bad-seq (and resending the same bytes is harmless anyway: same hash, one sequence slot).
   * A refusal with result codes is final. Transient failures (transport errors, 5xx, Horizon's 504) back off
   * exponentially with jitter, capped at `submitMaxBackoffMs`: for as long as the envelope can still apply,
   * i.e. until its upper time bound (maxTime) passes, so a ledger outage shorter than that loses nothing.
   * Then the hash is looked up once more: found -> submitted; missing -> `submission_expired` (it can never
   * apply now); the ledger still unreachable -> `submission_unavailable` (fate unknown). An envelope without a
   * time bound is tried `submitAttempts` times. `resumed`: after a restart, so the hash is looked up first.
   */
  async submit(rec: ProposalRecord, envelope: string, resumed: boolean): Promise<void> {
    if (this.#submitting.has(rec.id)) return;
    this.#submitting.add(rec.id);
    let failed = false;
    try {
      await this.#run(rec, envelope, resumed);
      this.#storeFailures.delete(rec.id);
    } catch (err) {
      // The store could not take the outcome (database unreachable, lease not obtainable): nothing is lost, the
      // envelope is stored and the proposal stays `signed`. Callers start a submission without awaiting it, so
      // it must not reject: an unhandled rejection would end the whole coordinator.
      failed = true;
      const e = err as Error & { code?: string };
      this.o.logger.error(
        { proposalId: rec.id, code: e.code, err: e.message },
        this.o.leases
          ? 'submission outcome not stored; a replica takes the submission over once the round is free again'
          : 'submission outcome not stored; trying again as a resumed submission',
      );
    } finally {
      this.#submitting.delete(rec.id);
    }
    // One process: nobody else resumes it before a restart, so try again (resumed: the hash is asked first, so
    // an envelope the network already took is recorded, not sent again). Replicas: the scan for rounds without a
    // live lease resumes it on whichever replica reaches the database (app.ts), this one included.
    if (failed && !this.o.leases && !this.#closed) this.#retryLater(rec, envelope);
  }

  /** Store failures in a row per proposal: the pause before the next resumed attempt doubles with each. */
  readonly #storeFailures = new Map<string, number>();

  #retryLater(rec: ProposalRecord, envelope: string): void {
    const n = (this.#storeFailures.get(rec.id) ?? 0) + 1;
    this.#storeFailures.set(rec.id, n);
    const t = setTimeout(
      () => {
        this.#timers.delete(t);
        if (!this.#closed) void this.submit(rec, envelope, true);
      },
      backoffMs(n, this.o.submitBackoffMs, this.o.submitMaxBackoffMs ?? 30_000),
    );
    this.#timers.add(t);
  }

  async #run(rec: ProposalRecord, envelope: string, resumed: boolean): Promise<void> {
    let lease: RoundLease | null | undefined;
    try {
      lease = this.o.leases && (await this.o.leases.acquire(rec.id));
      // Another replica holds the round: it submits (or takes it over once its lease lapses).
      if (lease === null) return;
      this.#lease.set(rec.id, lease);
      // A ledger whose close time is maxTime still takes it (closeTime <= maxTime): the bound ends a second later.
      const deadline = rec.maxTime > 0 ? (rec.maxTime + 1) * 1000 : undefined;
      const maxBackoff = this.o.submitMaxBackoffMs ?? 30_000;
      const more = (attempt: number): boolean =>
        deadline === undefined ? attempt <= this.o.submitAttempts : attempt === 1 || Date.now() <= deadline;
      let lastTransient = '';
      let tried = 0;
      for (let attempt = 1; more(attempt) && !this.#closed; attempt++) {
        if (attempt > 1 || resumed) {
          const fate = this.#fate(rec, await this.o.ledger.transactionStatus(rec.hash), attempt);
          if (fate) return await fate();
        }
        // Lost the lease (another replica took the round over, or the database was out of reach too long): that
        // replica asks the network for the hash and goes on; this one sends nothing more.
        if (!this.#mayAct(rec.id)) return;
        tried = attempt;
        const r = await this.o.ledger.submit(envelope, rec.network);
        if (r.kind === 'accepted') {
          return await this.#submitted(rec, {
            outcome: 'accepted',
            code: null,
            message: 'accepted by the network',
            operationCodes: [],
            ledger: r.ledger,
            attempts: attempt,
          });
        }
        if (r.kind === 'rejected') {
          if (r.code === 'tx_bad_auth' || r.operationCodes.includes('op_bad_auth')) {
            this.o.invalidateAccounts(rec.accounts.map((a) => a.accountId));
          }
          return await this.#failed(rec, {
            outcome: 'failed',
            code: r.code,
            message: explainResultCode(r.code, r.operationCodes),
            operationCodes: r.operationCodes,
            ledger: null,
            attempts: attempt,
          });
        }
        lastTransient = r.message;
        this.o.logger.warn(
          { proposalId: rec.id, attempt, why: r.message },
          'submission failed transiently; will retry',
        );
        if (!more(attempt + 1)) break;
        let pause = backoffMs(attempt, this.o.submitBackoffMs, maxBackoff);
        // Wake once just past the time bound rather than sleep through it: the verdict is due then.
        if (deadline !== undefined) pause = Math.max(0, Math.min(pause, deadline + 1 - Date.now()));
        await this.#sleep(pause);
      }
      if (this.#closed) return;
      if (deadline !== undefined) {
        // Past maxTime no ledger can take it (stellar-core TransactionFrame::isTooLate); one that closed just
        // before may have, while we could not hear about it: let it close and be ingested, then ask once more.
        await this.#sleep(this.o.ledgerSettleMs ?? 6000);
        if (this.#closed) return;
        const status = await this.o.ledger.transactionStatus(rec.hash);
        const found = this.#fate(rec, status, tried);
        if (found) return await found();
        const bound = new Date(deadline).toISOString();
        if (status === 'missing') {
          return await this.#gaveUp(
            rec,
            'submission_expired',
            `the network could not take the transaction before its time bound passed (${bound}; last error: ${lastTransient}); it is not on the ledger and can no longer apply`,
            tried,
          );
        }
        return await this.#gaveUp(
          rec,
          'submission_unavailable',
          `the network could not be reached until the time bound passed (${bound}; ${lastTransient}); the transaction can no longer apply, but whether it applied before cannot be known until the network answers for its hash`,
          tried,
        );
      }
      return await this.#gaveUp(
        rec,
        'submission_unavailable',
        `the network could not be reached after ${tried} attempts (${lastTransient}); the envelope is stored, its fate is unknown until its hash appears`,
        tried,
      );
    } finally {
      this.#lease.delete(rec.id);
      await lease?.release();
    }
  }

  /** The round's lease while it is submitted here (replicas), by proposal. */
  readonly #lease = new Map<string, RoundLease | undefined>();

  /** Writes for the round: fenced by its lease when replicas share the database. */
  #write<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const lease = this.#lease.get(id);
    return lease ? lease.write(fn) : fn();
  }

  /** False once this replica may no longer act for the round (its lease was lost). */
  #mayAct(id: string): boolean {
    return !this.#lease.get(id)?.signal.aborted;
  }

  /** The transaction's fate by hash, as the step that ends the submission; undefined when not on the ledger. */
  #fate(
    rec: ProposalRecord,
    fate: Awaited<ReturnType<LedgerClient['transactionStatus']>>,
    attempt: number,
  ): (() => Promise<void>) | undefined {
    if (fate === 'success')
      return () =>
        this.#submitted(rec, {
          outcome: 'accepted',
          code: null,
          message: 'found on the ledger',
          operationCodes: [],
          ledger: null,
          attempts: attempt,
        });
    if (fate === 'failed')
      // Applied but failed: the fee was charged and the sequence consumed; resending could only get tx_bad_seq.
      return () =>
        this.#failed(rec, {
          outcome: 'failed',
          code: 'tx_failed',
          message: 'found on the ledger as failed (tx_failed): the sequence number was used',
          operationCodes: [],
          ledger: null,
          attempts: attempt,
        });
    return undefined;
  }

  /** A backoff pause that close() cuts short, so no submission loop outlives the app. */
  #sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        this.#wakers.delete(res);
        res();
      }, ms);
      this.#timers.add(t);
      this.#wakers.add(res);
    });
  }

  /** The submission ends without a verdict from the network on this envelope. */
  #gaveUp(rec: ProposalRecord, code: SubmissionCode, message: string, attempts: number): Promise<void> {
    return this.#failed(rec, { outcome: 'failed', code, message, operationCodes: [], ledger: null, attempts });
  }

  async #submitted(rec: ProposalRecord, result: SubmissionResult): Promise<void> {
    const moved = await this.#write(rec.id, async () => {
      if (!(await this.o.store.transition(rec.id, ['signed'], 'submitted', { result, statusReason: null })))
        return false;
      await this.o.events.emit(
        rec.id,
        'proposal.submitted',
        { ledger: result.ledger, attempts: result.attempts },
        rec.callbackUrl,
      );
      return true;
    });
    if (!moved) return;
    // A transaction that needed an account's HIGH threshold may have changed its signers or thresholds (setOptions;
    // stellar-core SetOptionsOpFrame::getThresholdLevel): the cached state of that account is stale now, and the
    // next proposal (for example the first payment of a group the account was just swapped to) must see the new one.
    const changed = rec.requirements.filter((r) => r.level === 'high').map((r) => r.accountId);
    if (changed.length > 0) this.o.invalidateAccounts(changed);
    this.o.metrics.submissions.inc({ outcome: 'accepted' });
    this.o.metrics.proposalLatency.observe({ status: 'submitted' }, (Date.now() - rec.createdAt) / 1000);
  }

  async #failed(rec: ProposalRecord, result: SubmissionResult): Promise<void> {
    const moved = await this.#write(rec.id, async () => {
      if (!(await this.o.store.transition(rec.id, ['signed'], 'failed', { result, statusReason: result.message }))) {
        return false;
      }
      await this.o.events.emit(
        rec.id,
        'proposal.failed',
        { code: result.code, reason: result.message },
        rec.callbackUrl,
      );
      return true;
    });
    if (!moved) return;
    this.o.metrics.submissions.inc({ outcome: result.code ?? 'failed' });
    this.o.metrics.proposalLatency.observe({ status: 'failed' }, (Date.now() - rec.createdAt) / 1000);
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
  }
}

import type { Body } from '@cosigner/protocol/messages';
import type { AccountAuth } from '@cosigner/stellar/types';
import type { MisbehaviourKind } from '../codes.ts';
import type { CoordinatorErrorCode } from '../errors.ts';
import type { EventType } from '../events.ts';
import type { ApprovalRows, Awaitable, DecisionRecord, ProposalKind, ProposalRecord } from '../store.ts';

/**
 * What a kind of round is to the one round engine (round.ts). The engine owns the lifecycle every kind shares:
 * tracking, the time-bound expiry, fan-out to the connected nodes, the SIGNER_UNAVAILABLE backoff, reachability,
 * the quorum transition, finish, cancel, late answers, one grouped commit per approval, and the metrics. A kind
 * says only what is particular to it: what it prepares from the stored row, what it asks each node, how an answer
 * is verified, how the result is assembled and what happens once it is signed. A new kind is one module that
 * implements this interface and one `engine.register(kind)` (docs/architecture.md "Kinds of round").
 */

/** The row fields a kind prepares for a new proposal (the route adds id, client fields and timestamps). */
export type ProposalFields = Pick<
  ProposalRecord,
  'kind' | 'xdr' | 'hash' | 'requirements' | 'accounts' | 'submit' | 'submitFollowUp' | 'maxTime'
>;

/**
 * A prepared proposal: its row, the Soroban entries stored beside it, and what was decoded on the way (handed to
 * `open` so the same bytes are not decoded twice).
 */
export interface Prepared {
  fields: ProposalFields;
  authEntries?: string[];
  decoded?: unknown;
}

/** A reason to flag a node: a misbehaviour kind (a stable snake_case word) and what was wrong. */
export interface Fault {
  kind: MisbehaviourKind;
  detail: string;
}

/** One open round as the engine tracks it. `state` is what the kind prepared from the stored row. */
export interface Round<S> {
  readonly rec: ProposalRecord;
  readonly accounts: ReadonlyMap<string, AccountAuth>;
  readonly state: S;
}

/** A verified approval: the rows to keep (in the decision's grouped commit) and data for `node.approved`. */
export interface Approval {
  rows: ApprovalRows;
  event?: Record<string, unknown>;
}

/** What a round yields once its answers are complete: the result to store, or why it must end instead. */
export type Completion =
  | {
      /** The assembled envelope (null when the result is entries only) and the signed entries, if any. */
      envelope: string | null;
      signedEntries?: readonly string[];
      /**
       * `afterSigned` opens a follow-up proposal: the `signed` commit marks the row (followUpDue) so that a
       * coordinator dying before the follow-up exists leaves the row open, and `resumeSigned` opens it.
       */
      followUp?: true;
      /** Data of `quorum.reached`. */
      event: Record<string, unknown>;
    }
  | { end: 'expired' | 'rejected'; reason: string; code: CoordinatorErrorCode };

/** What the engine lends a kind once a round is signed. */
export interface RoundControl {
  /** Start a proposal this kind inserted itself (a follow-up): announce, fan out, arm its expiry. */
  start(rec: ProposalRecord, prepared?: unknown): Awaitable<void>;
  emit(rec: ProposalRecord, type: EventType, data: Record<string, unknown>): void;
}

/**
 * The `proposal` frame of a round for a node that can help `accounts`: what every kind sends, plus what it asks
 * the node to review (`what`: the round kind on the wire, the transaction or the entries).
 */
export function proposalFrame(
  rec: ProposalRecord,
  accounts: string[],
  what: Pick<Body<'proposal'>, 'kind' | 'xdr' | 'authEntries'>,
): Body<'proposal'> {
  return {
    proposalId: rec.id,
    ...what,
    networkPassphrase: rec.network,
    hash: rec.hash,
    accounts,
    ...(rec.note ? { note: rec.note } : {}),
  };
}

export interface RoundKind<S = unknown, L = unknown> {
  /** The stored `kind` values this module runs. */
  readonly kinds: readonly ProposalKind[];
  /**
   * What the round needs, rebuilt from the stored row (decode once per round per process). `prepared`: what the
   * proposal route already decoded from the same bytes, to reuse when it matches.
   */
  open(rec: ProposalRecord, prepared?: unknown): Awaitable<S>;
  /**
   * Extra data of `proposal.created`, beyond the hash and the requirements. Called inside the proposal's grouped
   * unit of work: a value, not a promise, on the SQLite store (write it with `step`).
   */
  announce?(rec: ProposalRecord): Awaitable<Record<string, unknown>>;
  /**
   * The proposal frame for `node`, whose key can help `accounts`, or null to leave it out (a kind may choose a
   * subset of the nodes).
   */
  request(round: Round<S>, node: { nodeId: string; stellarKey: string }, accounts: string[]): Body<'proposal'> | null;
  /**
   * The accounts of the round `node` can help with (who is asked, and told of a cancel). Default: the accounts its
   * enrolled Stellar key is a signer of (quorum.ts accountsHelpedBy). A FROST round names the group's members.
   */
  helps?(round: Round<S>, node: { nodeId: string; stellarKey: string }): string[];
  /**
   * Why the round can no longer complete, or null. Default: quorum.ts `unreachable` over the nodes' own keys.
   */
  unreachable?(
    round: Round<S>,
    decisions: readonly DecisionRecord[],
    nodes: readonly { id: string; stellarKey: string }[],
  ): Awaitable<string | null>;
  /**
   * A node refused (`d`: its reject or hold) or sent an answer that could not count (`d` undefined, flagged), once
   * recorded. A kind that picks its nodes may pick others; `next` is asked who to ask then.
   */
  refused?(round: Round<S>, nodeId: string, d: Body<'decision'> | undefined): void;
  /**
   * After an approval was kept without completing the round: the nodes to ask again now, answered or not (a kind
   * with a second exchange per round, or one that retries with another subset, names them). Default: none.
   */
  next?(round: Round<S>): readonly string[];
  /**
   * Check an approval against what the coordinator itself computed, under the node's enrolled `stellarKey`: a
   * fault (never kept), or the rows it leaves. Must not throw on bad input.
   */
  verify(round: Round<S>, nodeId: string, stellarKey: string, d: Body<'decision'>, at: number): Fault | Approval;
  /** The signer keys whose verified contributions are stored: for reachability and progress. */
  signers(round: Round<S>): Awaitable<Set<string>>;
  /** Async step before an approval is committed (the auth kinds refresh the latest ledger first). */
  beforeApproval?(round: Round<S>): Promise<unknown>;
  /**
   * Assemble from the stored contributions, inside the approval's commit: null while not complete. Return a value
   * when the store returned values (SQLite: the commit is synchronous), a promise only when it returned one.
   */
  complete(round: Round<S>): Awaitable<Completion | null>;
  /**
   * Once `signed` is durable: submit, open a follow-up, or nothing. True when a submission took the round over
   * (it records the proposal's final latency itself).
   */
  afterSigned(round: Round<S>, envelope: string | null, ctl: RoundControl): Awaitable<boolean>;
  /**
   * After a restart or a takeover, a row already `signed` and still open: a submission to continue, or (followUpDue)
   * a follow-up still to open, which `ctl` starts.
   */
  resumeSigned?(rec: ProposalRecord, ctl: RoundControl): Awaitable<void>;
  /** Late answers: what to remember of a closed round (small), and its rebuild from the stored row. */
  lateTarget?(round: Round<S>): L;
  lateTargetOf?(rec: ProposalRecord): L;
  /** A fault in an answer for a closed round, or null. */
  verifyLate?(target: L, stellarKey: string, d: Body<'decision'>): Fault | null;
  /**
   * A periodic check while rounds of this kind are open: the rounds that must end, and why; or (`ask`) the nodes
   * to ask now (a kind that picked nodes which stopped answering picks others).
   */
  sweep?: {
    everyMs: number;
    check(
      rounds: readonly Round<S>[],
    ): Promise<
      (
        | { round: Round<S>; end: 'expired'; reason: string; code: CoordinatorErrorCode }
        | { round: Round<S>; ask: readonly string[] }
      )[]
    >;
  };
  close?(): void;
}

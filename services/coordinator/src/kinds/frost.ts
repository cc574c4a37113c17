import { randomInt, randomUUID } from 'node:crypto';
import { aggregate, type CheckedCommitment, type Commitment, checkCommitment } from '@cosigner/frost/rounds';
import type { GroupPublic } from '@cosigner/frost/suite';
import type { Body } from '@cosigner/protocol/messages';
import { FROST_ROUND_REFUSALS } from '@cosigner/protocol/reasons';
import type { Logger } from '@cosigner/runtime/logger';
import { type DecodedTransaction, decodeEnvelope } from '@cosigner/stellar/decode';
import { checkAuth } from '@cosigner/stellar/quorum';
import { assembleEnvelope, selectMinimalSignatures } from '@cosigner/stellar/sigset';
import type { AccountAuth } from '@cosigner/stellar/types';
import type { MisbehaviourKind } from '../codes.ts';
import { ed25519Weights, progress } from '../quorum.ts';
import { type Awaitable, type CoordinatorStore, type ProposalRecord, type SignatureRecord, step } from '../store.ts';
import type { Submitter } from '../submit.ts';
import { type Approval, type Completion, type Fault, proposalFrame, type Round, type RoundKind } from './kind.ts';

/**
 * A FROST signing round (RFC 9591 section 5; docs/architecture.md "FROST signing"): a transaction that a source
 * account authorizes through one signer, the group key of a FROST group of the cluster's nodes. One proposal runs
 * one or more attempts; each attempt:
 *
 * 1. picks t of the group's members that are connected and have not refused or misbehaved in this proposal, and
 *    names a fresh round id (`<proposal id>:<attempt>-<random>`: it names the nonces at each node);
 * 2. round one: asks each of them to review the transaction and commit (a `frost` proposal, step `commit`);
 *    every node reviews it as a native one and answers its commitment, checked here to be its own index and two
 *    valid points;
 * 3. round two (`next`, once the t commitments are in): sends the same t the signing package, the commitment list
 *    (step `sign`); each node checks the list carries its commitment and that the transaction is the one it
 *    reviewed, and answers its signature share;
 * 4. with t shares: aggregates and verifies the result as a plain Ed25519 signature under the group key
 *    (packages/frost rounds.ts `aggregate`, node:crypto, stellar-core's rules). On failure every share is verified
 *    (section 5.4) and the nodes whose share fails are named (`bad_signature_share`) and left out of later attempts.
 *
 * An attempt is abandoned, and another starts with fresh nonces, when a picked node refuses (a policy refusal
 * leaves it out; a refusal of the round, such as a nonce lost in a restart, does not) or sends a bad share. The
 * result is one signature row for the group key, and the envelope carries that one signature.
 */

export interface FrostGroupRecord {
  address: string;
  threshold: number;
  group: GroupPublic;
  participants: readonly { index: number; nodeId: string }[];
}

interface Attempt {
  roundId: string;
  chosen: string[];
  phase: 'commit' | 'sign';
  /** Chosen nodes sent this phase's request (an attempt begun for one reconnecting node asks the others next). */
  asked: Set<string>;
  /** When the current phase began (ms): a phase that waits longer than the attempt timeout is abandoned. */
  since: number;
  /** Each picked node's commitment, its points decoded and checked once as it arrived (reused by `aggregate`). */
  commitments: Map<string, CheckedCommitment>;
  shares: Map<string, Uint8Array>;
}

export interface FrostRoundState {
  decoded: DecodedTransaction;
  address: string;
  group: GroupPublic;
  threshold: number;
  /** Member node id -> participant index. */
  members: Map<string, number>;
  attempt: Attempt | undefined;
  attempts: number;
  /** Members that refused the transaction or sent a bad answer in this proposal: not picked again. */
  excluded: Set<string>;
  /**
   * The group signature was aggregated and verified: nobody is asked any more. Kept in the round's memory rather
   * than read back from the store, so that `next` stays synchronous; a round rebuilt after a restart or a takeover
   * is pending, and a pending round has no group signature (it is kept in the commit that marks the round signed).
   */
  signed: boolean;
}

/** Attempts per proposal before it ends rejected: every member's worth of retries, three times over. */
export function maxAttempts(members: number): number {
  return 3 * members + 3;
}

export function frostKind(o: {
  store: CoordinatorStore;
  submitter: Submitter;
  logger: Logger;
  /**
   * The ready group a proposal was bound to at creation (frost/dkg.ts proposalGroup: the shared store, so any
   * replica finds it); a value, not a promise, on the SQLite store.
   */
  groupOf(proposalId: string): Awaitable<FrostGroupRecord | undefined>;
  /** Node ids connected now. */
  connected(): readonly string[];
  /** Flag a node that is not the one answering (a bad share found when another's completed the set). */
  flag(nodeId: string, kind: MisbehaviourKind, detail: string, proposalId: string): void;
  /**
   * How long a phase of an attempt may wait for the members it picked (default 20 s) before another attempt starts
   * with the members connected then: a picked member that died or hangs does not hold the proposal until it expires.
   */
  attemptTimeoutMs?: number;
}): RoundKind<FrostRoundState> {
  const { store } = o;
  const signatures = (round: Round<FrostRoundState>) => store.signatures(round.rec.id);

  /** The accounts of the round the group key signs for. */
  const accountsOf = (round: Round<FrostRoundState>): string[] =>
    round.rec.accounts.filter((a) => ed25519Weights(a).has(round.state.address)).map((a) => a.accountId);

  /** A new attempt with t of the connected, not excluded members (undefined while too few are connected). */
  const begin = (round: Round<FrostRoundState>): Attempt | undefined => {
    const s = round.state;
    const pool = o.connected().filter((id) => s.members.has(id) && !s.excluded.has(id));
    if (pool.length < s.threshold) return undefined;
    // A uniform choice spreads the rounds (and the key backends' load) over the members.
    for (let i = pool.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    s.attempts += 1;
    s.attempt = {
      roundId: `${round.rec.id}:${s.attempts}-${randomUUID().slice(0, 8)}`,
      chosen: pool.slice(0, s.threshold),
      phase: 'commit',
      asked: new Set(),
      since: Date.now(),
      commitments: new Map(),
      shares: new Map(),
    };
    o.logger.info(
      { proposalId: round.rec.id, roundId: s.attempt.roundId, chosen: s.attempt.chosen },
      'FROST round attempt started',
    );
    return s.attempt;
  };

  /** The attempt's checked commitments in ascending index order (RFC 9591 section 4.3). */
  const checkedList = (a: Attempt): CheckedCommitment[] =>
    [...a.commitments.values()].sort((x, y) => x.commitment.index - y.commitment.index);
  /** The signing package's commitment list as sent to the nodes. */
  const commitmentList = (a: Attempt): Commitment[] => checkedList(a).map((c) => c.commitment);

  /** Why the round can no longer complete (too few members left, or every attempt spent), or null. */
  const unreachableNow = (
    round: Round<FrostRoundState>,
    sigs: readonly SignatureRecord[],
    nodes: readonly { id: string }[],
  ): string | null => {
    const s = round.state;
    if (sigs.some((x) => x.signerKey === s.address)) return null;
    const enrolled = new Set(nodes.map((n) => n.id));
    const able = [...s.members.keys()].filter((id) => enrolled.has(id) && !s.excluded.has(id));
    if (able.length < s.threshold) {
      const out = [...s.excluded].sort().join(', ');
      return `FROST group ${s.address}: ${able.length} member(s) can still sign, ${s.threshold} needed (left out: ${out || 'none'})`;
    }
    if (s.attempts >= maxAttempts(s.members.size) && !s.attempt) {
      return `FROST group ${s.address}: ${s.attempts} rounds attempted without a signature`;
    }
    return null;
  };

  /** The envelope once the stored signatures `sigs` (the group's) meet every requirement, checked as core would. */
  const assemble = (round: Round<FrostRoundState>, sigs: readonly SignatureRecord[]): Completion | null => {
    const { rec, state, accounts } = round;
    if (!progress(rec, new Set(sigs.map((x) => x.signerKey))).every((p) => p.met)) return null;
    const chosen = selectMinimalSignatures(
      state.decoded,
      accounts as Map<string, AccountAuth>,
      sigs.map((x) => ({ publicKey: x.signerKey, signature: Buffer.from(x.signature, 'base64') })),
    );
    if (chosen === null) return null;
    const envelope = assembleEnvelope(state.decoded, chosen);
    // stellar-core's own verdict on what is about to be stored (a bug here must never ship an envelope).
    const verdict = checkAuth(decodeEnvelope(envelope, rec.network), accounts as Map<string, AccountAuth>);
    /* v8 ignore next 4 -- belt and braces: the group signature was verified before it was kept */
    if (!verdict.ok) {
      o.logger.error({ proposalId: rec.id, verdict }, 'assembled FROST envelope fails the signature check');
      return null;
    }
    return { envelope, event: { signatures: chosen.length, frost: { group: state.address } } };
  };

  /** Verify the attempt's t shares: the signature row, or the culprits (the attempt is abandoned then). */
  const finishAttempt = (round: Round<FrostRoundState>, a: Attempt, nodeId: string, at: number): Fault | Approval => {
    const s = round.state;
    const byIndex: Record<string, Uint8Array> = {};
    for (const [id, share] of a.shares) byIndex[String(s.members.get(id))] = share;
    try {
      // The commitments as checked when they arrived: their points are not decoded and subgroup-checked again.
      const signature = aggregate(s.group, checkedList(a), round.state.decoded.hash, byIndex);
      s.signed = true;
      return {
        rows: {
          signatures: [
            {
              proposalId: round.rec.id,
              signerKey: s.address,
              nodeId,
              signature: Buffer.from(signature).toString('base64'),
              createdAt: at,
            },
          ],
        },
        event: { frost: { group: s.address, roundId: a.roundId, signers: a.chosen } },
      };
    } catch (e) {
      s.attempt = undefined;
      const details = (e as { details?: { culprits?: number[] } }).details;
      const code = (e as { code?: string }).code;
      /* v8 ignore next 4 -- every share verified yet the sum did not: not reachable with RFC 9591 arithmetic */
      if (code !== 'FROST_BAD_SIGNATURE_SHARE' || !details?.culprits) {
        o.logger.error({ proposalId: round.rec.id, code, roundId: a.roundId }, 'FROST aggregate failed; new attempt');
        return { rows: {} };
      }
      const culprits = a.chosen.filter((id) => details.culprits!.includes(s.members.get(id)!));
      const detail = `its signature share for round ${a.roundId} does not verify (RFC 9591 section 5.4)`;
      for (const id of culprits) {
        s.excluded.add(id);
        if (id !== nodeId) o.flag(id, 'bad_signature_share', detail, round.rec.id);
      }
      o.logger.warn({ proposalId: round.rec.id, roundId: a.roundId, culprits }, 'FROST bad share; new attempt');
      return culprits.includes(nodeId) ? { kind: 'bad_signature_share', detail } : { rows: {} };
    }
  };

  return {
    kinds: ['frostTx'],
    open(rec, prepared) {
      const d = prepared as DecodedTransaction | undefined;
      const decoded =
        d !== undefined && d.hash.toString('hex') === rec.hash ? d : decodeEnvelope(rec.xdr!, rec.network);
      return step(o.groupOf(rec.id), (g): FrostRoundState => {
        if (!g) throw new Error(`FROST proposal ${rec.id} names no ready group`);
        return {
          decoded,
          address: g.address,
          group: g.group,
          threshold: g.threshold,
          members: new Map(g.participants.map((p) => [p.nodeId, p.index])),
          attempt: undefined,
          attempts: 0,
          excluded: new Set(),
          signed: false,
        };
      });
    },
    announce: (rec) =>
      step(o.groupOf(rec.id), (g) => (g ? { frost: { group: g.address, threshold: g.threshold } } : {})),
    helps: (round, node) => (round.state.members.has(node.nodeId) ? accountsOf(round) : []),
    request(round, node, accounts): Body<'proposal'> | null {
      const s = round.state;
      if (!s.members.has(node.nodeId)) return null;
      const a = s.attempt ?? (s.attempts < maxAttempts(s.members.size) ? begin(round) : undefined);
      if (!a?.chosen.includes(node.nodeId)) return null;
      const base = proposalFrame(round.rec, accounts, { kind: 'frost', xdr: round.rec.xdr! });
      if (a.phase === 'commit') {
        if (a.commitments.has(node.nodeId)) return null;
        a.asked.add(node.nodeId);
        return { ...base, frost: { group: s.address, roundId: a.roundId, step: 'commit' } };
      }
      if (a.shares.has(node.nodeId)) return null;
      a.asked.add(node.nodeId);
      return {
        ...base,
        frost: { group: s.address, roundId: a.roundId, step: 'sign', commitments: commitmentList(a) },
      };
    },
    next(round) {
      const s = round.state;
      if (s.signed) return [];
      if (!s.attempt) {
        if (s.attempts >= maxAttempts(s.members.size)) return [];
        return begin(round)?.chosen ?? [];
      }
      const a = s.attempt;
      if (a.phase === 'commit' && a.commitments.size === a.chosen.length) {
        a.phase = 'sign';
        a.asked.clear();
        a.since = Date.now();
        return a.chosen;
      }
      // Chosen nodes not asked yet in this phase (the attempt began when one node reconnected).
      return a.chosen.filter((id) => !a.asked.has(id));
    },
    verify(round, nodeId, _stellarKey, d, at): Fault | Approval {
      const s = round.state;
      if (d.hash !== round.rec.hash) {
        return {
          kind: 'hash_mismatch',
          detail: `node computed hash ${d.hash}, the proposal hash is ${round.rec.hash}`,
        };
      }
      const f = d.frost;
      if (!f) return { kind: 'missing_signature', detail: 'a FROST approval without its commitment or share' };
      const a = s.attempt;
      // An answer to an attempt already abandoned: nothing to keep, nothing wrong.
      if (!a || f.roundId !== a.roundId) return { rows: {} };
      if (!a.chosen.includes(nodeId)) {
        return { kind: 'not_a_signer', detail: `${nodeId} was not picked for FROST round ${a.roundId}` };
      }
      if (f.group !== s.address) return { kind: 'bad_commitment', detail: `answers for group ${f.group}` };
      if (f.step === 'commit') {
        const c = f.commitment;
        if (a.phase !== 'commit' || !c)
          return { kind: 'missing_signature', detail: 'a commit step without a commitment' };
        if (c.index !== s.members.get(nodeId)) {
          return {
            kind: 'bad_commitment',
            detail: `commitment for index ${c.index}, the node is ${s.members.get(nodeId)}`,
          };
        }
        let checked: CheckedCommitment;
        try {
          // Checked once here (RFC 9591 section 3.1 DeserializeElement): a bad point would only make the others
          // refuse the signing package. The decoded points are kept for the aggregation.
          checked = checkCommitment(s.group, { index: c.index, hiding: c.hiding, binding: c.binding });
        } catch (e) {
          return { kind: 'bad_commitment', detail: (e as Error).message.slice(0, 256) };
        }
        a.commitments.set(nodeId, checked);
        return { rows: {} };
      }
      if (a.phase !== 'sign' || f.share === undefined) {
        return { kind: 'missing_signature', detail: 'a sign step without a share, or before the signing package' };
      }
      a.shares.set(nodeId, Buffer.from(f.share, 'hex'));
      if (a.shares.size < a.chosen.length) return { rows: {} };
      return finishAttempt(round, a, nodeId, at);
    },
    refused(round, nodeId, d) {
      const s = round.state;
      const a = s.attempt;
      const roundRefusal =
        d !== undefined &&
        d.outcome === 'reject' &&
        d.reasons.length > 0 &&
        d.reasons.every((r) => FROST_ROUND_REFUSALS.has(r.code));
      // "Not this round": a fresh round may include it. Anything else ("not this transaction", a bad answer, a
      // hold, which a threshold round cannot wait for) leaves it out of this proposal.
      if (!roundRefusal) s.excluded.add(nodeId);
      // A refusal names its round: one of an attempt already abandoned leaves the current one alone.
      const current = d?.frost === undefined || d.frost.roundId === a?.roundId;
      if (current && a?.chosen.includes(nodeId) && !a.shares.has(nodeId)) {
        o.logger.info({ proposalId: round.rec.id, roundId: a.roundId, nodeId }, 'FROST attempt abandoned');
        s.attempt = undefined;
      }
    },
    unreachable: (round, _decisions, nodes) => step(signatures(round), (sigs) => unreachableNow(round, sigs, nodes)),
    sweep: {
      everyMs: Math.max(250, Math.floor((o.attemptTimeoutMs ?? 20_000) / 4)),
      async check(rounds) {
        const out: { round: Round<FrostRoundState>; ask: readonly string[] }[] = [];
        const now = Date.now();
        for (const round of rounds) {
          const a = round.state.attempt;
          if (!a || now - a.since < (o.attemptTimeoutMs ?? 20_000)) continue;
          const answered = a.phase === 'commit' ? a.commitments : a.shares;
          const silent = a.chosen.filter((id) => !answered.has(id));
          o.logger.warn(
            { proposalId: round.rec.id, roundId: a.roundId, silent },
            'FROST attempt timed out waiting for its members; new attempt',
          );
          round.state.attempt = undefined;
          if (round.state.attempts >= maxAttempts(round.state.members.size)) continue;
          const next = begin(round);
          if (next) out.push({ round, ask: next.chosen });
        }
        return out;
      },
    },
    signers: (round) => step(signatures(round), (sigs) => new Set(sigs.map((x) => x.signerKey))),
    complete: (round) => step(signatures(round), (sigs) => assemble(round, sigs)),
    afterSigned(round, envelope) {
      if (!round.rec.submit || envelope === null) return false;
      void o.submitter.submit(round.rec, envelope, false);
      return true;
    },
    resumeSigned(rec: ProposalRecord) {
      void o.submitter.submit(rec, rec.envelope!, true);
    },
  };
}

import type { NonceStore } from '@cosigner/frost/nonce-store';
import { reviewGroupKeyChange } from '@cosigner/frost/reshare';
import type { Commitment } from '@cosigner/frost/rounds';
import type { ShareSealer } from '@cosigner/frost/sealer';
import { FrostSigner } from '@cosigner/frost/signer';
import { protocolReasons } from '@cosigner/protocol/reasons';
import type { DecodedTransaction } from '@cosigner/stellar/decode';
import type { Transaction } from '@stellar/stellar-sdk';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit.ts';
import type { Reason } from '../ledger.ts';
import type { DecisionBody, ProposalBody, SigningPipeline } from '../pipeline.ts';
import { nodeReasons } from '../reasons.ts';
import type { Reviewer } from '../review.ts';
import type { NodeFrostGroup } from './store.ts';

/**
 * A node's side of FROST signing (RFC 9591 section 5) as one more kind of proposal on the review pipeline
 * (docs/architecture.md "FROST signing"). The coordinator sends a `frost` proposal twice per round:
 *
 * - `commit` (round one): the node reviews the transaction exactly as a native one (decodes the XDR with its own
 *   passphrase, computes the hash itself, policy, slot check and reservation: `SigningPipeline.reserve`, synced),
 *   then makes fresh nonces and records the round in the nonce store (committed and synced) before the
 *   commitment leaves. The round id is bound in memory to the proposal, the group and the hash reviewed.
 * - `sign` (round two): the node decodes the XDR again and computes the hash itself; it must be the hash it
 *   reviewed for the round (FROST_MESSAGE_CHANGED otherwise); the pipeline checks the slot's use is still open;
 *   `FrostSigner.sign` checks the commitment list (this node's own commitment present and unchanged), marks the
 *   nonce used durably, and only then computes the share.
 *
 * Nonces never touch the disk: the nonce store holds the round's public commitment and state, so a copy of it (a
 * backup, a stolen disk) holds nothing that signs, and restoring an old copy cannot make a nonce usable again.
 * The price is that a restart between the two rounds loses the round (refused: FROST_NONCE_FORGOTTEN), and the
 * coordinator runs another one. The share is opened from its seal (KMS Decrypt, or the HSM) into memory when a
 * round needs it, and zeroed with every outstanding nonce once the group has been idle for `idleMs`.
 */

/** What the pipeline needs of a group's signer: commit and sign over the nonce store (packages/frost signer.ts). */
interface Held {
  signer: FrostSigner;
  timer: NodeJS.Timeout | undefined;
}

/** A round committed in this process: what it was reviewed for, and when. */
interface Bound {
  proposalId: string;
  group: string;
  hash: string;
  at: number;
  /** What round one reviewed: its bytes and network, and the review's result (decode, hash, description). */
  xdr: string;
  network: string;
  prep: Extract<ReturnType<Reviewer['prepare']>, { ok: true }>;
}

export interface FrostSigningOptions {
  nodeId: string;
  /** The node's confirmed groups (frost/store.ts), or none without a frost section. */
  groups: { get(address: string): NodeFrostGroup | undefined; list(): NodeFrostGroup[] } | undefined;
  /**
   * The account weight this node's operator planned for a held group's key (frost.expect `accountWeight` of its
   * roster): the only weight a swap to that group may give it. Without it every swap is refused.
   */
  plannedWeight?: (g: NodeFrostGroup) => number | undefined;
  sealer: ShareSealer | undefined;
  nonces: NonceStore | undefined;
  reviewer: Reviewer;
  pipeline: SigningPipeline;
  audit: AuditLog;
  logger: Logger;
  /** A group's share and outstanding nonces are dropped after this long without a round (default 120 s). */
  idleMs?: number;
  /**
   * Test hook (development mode only, node.ts): answer a share that is off by one, as a broken or malicious node
   * would, so the coordinator's share verification and retry can be shown on real processes.
   */
  badShare?: boolean;
}

const reason = (code: keyof typeof protocolReasons.specs, message?: string): Reason =>
  protocolReasons.reason(code, message === undefined ? {} : { message });
const retired = (): Reason => nodeReasons.reason('FROST_GROUP_RETIRED', { field: 'frost.group' });

/** The refusal for a packages/frost error of the sign step (the nonce store's and the round checks'). */
export function refusalOf(e: unknown): Reason | undefined {
  const code = (e as { code?: unknown }).code;
  const msg = (e as Error).message;
  switch (code) {
    case 'FROST_NONCE_REUSED':
      return reason('FROST_NONCE_SPENT');
    case 'FROST_NONCE_LOST':
      return reason('FROST_NONCE_FORGOTTEN');
    case 'FROST_NONCE_UNKNOWN':
      return reason('FROST_ROUND_UNKNOWN');
    case 'FROST_COMMITMENT_MISMATCH':
      return reason('FROST_COMMITMENT_REFUSED');
    case 'FROST_BAD_INPUT':
    case 'FROST_OUT_OF_RANGE':
      return reason('FROST_ROUND_MALFORMED', `The signing package is refused: ${msg.slice(0, 900)}`);
    default:
      return undefined;
  }
}

export class FrostSigning {
  readonly #o: FrostSigningOptions;
  readonly #held = new Map<string, Promise<Held>>();
  readonly #rounds = new Map<string, Bound>();

  constructor(o: FrostSigningOptions) {
    this.#o = o;
  }

  /** Rounds committed in this process and not signed or dropped yet. */
  get pending(): number {
    return this.#rounds.size;
  }

  /**
   * Review one `frost` proposal step and answer it (never throws for bad input). A refusal names the round it
   * answers, so the coordinator abandons that round only, not a later one.
   */
  async review(p: ProposalBody): Promise<DecisionBody> {
    const d = await this.#review(p);
    const f = p.frost;
    if (d.outcome === 'approve' || !f) return d;
    return { ...d, frost: { group: f.group, roundId: f.roundId, step: f.step } };
  }

  async #review(p: ProposalBody): Promise<DecisionBody> {
    const { pipeline, reviewer, audit } = this.#o;
    const seenAt = pipeline.nowMs();
    const seen = (): void => {
      audit.append(
        'proposal.seen',
        { proposalId: p.proposalId, kind: 'frost', claimedHash: p.hash ?? null, frost: p.frost ?? null },
        seenAt,
      );
    };
    const refuse = (hash: string, ...reasons: Reason[]): DecisionBody =>
      pipeline.finish(p.proposalId, hash, 'reject', reasons, { first: seen, kind: 'frost' });
    const f = p.frost;
    const claimed = p.hash ?? '0'.repeat(64);
    if (!f || (f.step === 'commit') !== (f.commitments === undefined) || !f.roundId.startsWith(`${p.proposalId}:`)) {
      return refuse(claimed, reason('FROST_ROUND_MALFORMED'));
    }
    const group = this.#o.groups?.get(f.group);
    // A retired group (its operator destroyed this node's share) is refused with its own reason at either step,
    // before the policy and before any nonce.
    if (group?.status === 'retired') return refuse(claimed, retired());
    if (group?.status !== 'confirmed' || !this.#o.nonces || !this.#o.sealer) {
      return refuse(claimed, reason('FROST_GROUP_NOT_HELD'));
    }
    // Round two over the very bytes this process reviewed in round one (same round id, XDR and network): the review
    // of round one stands, and the transaction is not decoded and described again (it was a seventh of a node's
    // CPU per FROST proposal). Anything else is reviewed afresh, and must come to the round's hash (below).
    const committed = f.step === 'sign' ? this.#rounds.get(f.roundId) : undefined;
    const prep =
      committed !== undefined &&
      committed.xdr === p.xdr &&
      committed.network === p.networkPassphrase &&
      (p.hash === undefined || p.hash === committed.hash)
        ? committed.prep
        : reviewer.prepare({ ...p, kind: 'transaction' });
    if (!prep.ok) return refuse(prep.hash, ...prep.reasons);
    const r = { kind: 'frost', proposalId: p.proposalId, hash: prep.hash };
    if (f.step === 'commit') {
      // A change of a signer to or from a group key is checked against what this node recorded itself, before the
      // policy and before any nonce exists (reshare.ts reviewGroupKeyChange).
      const swap = this.#groupKeyChange(prep.decoded, f.group, p.proposalId);
      if (swap) return refuse(prep.hash, swap);
      const reserved = await pipeline.reserve(reviewer.frostReview(p.proposalId, prep, seen));
      if ('decision' in reserved) return reserved.decision;
      let commitment: Commitment;
      try {
        const held = await this.#signer(group);
        // Retired while the share was opening or the reservation was written: no nonce is made for it.
        if (!this.#live(f.group)) {
          this.#drop(f.group);
          return pipeline.finish(p.proposalId, prep.hash, 'reject', [retired()], { kind: 'frost' });
        }
        commitment = held.signer.commit(f.roundId);
      } catch (e) {
        const why = refusalOf(e);
        if (why) return pipeline.finish(p.proposalId, prep.hash, 'reject', [why], { kind: 'frost' });
        this.#o.logger.error({ code: (e as { code?: string }).code, group: f.group }, 'FROST share unavailable');
        const unavailable = protocolReasons.reason('SIGNER_UNAVAILABLE', {
          message: `The FROST share could not be opened (${(e as { code?: string }).code ?? 'error'}); ask again later.`,
        });
        return pipeline.finish(p.proposalId, prep.hash, 'reject', [unavailable], { record: false, kind: 'frost' });
      }
      this.#forgetStale(pipeline.nowMs());
      this.#rounds.set(f.roundId, {
        proposalId: p.proposalId,
        group: f.group,
        hash: prep.hash,
        at: pipeline.nowMs(),
        xdr: p.xdr!,
        network: p.networkPassphrase,
        prep,
      });
      return { ...pipeline.approved(r), frost: { group: f.group, roundId: f.roundId, step: 'commit', commitment } };
    }
    // The sign step. Refusals here are recorded and counted like every decision (pipeline.finish).
    seen();
    const refuseSign = (why: Reason) => pipeline.finish(p.proposalId, prep.hash, 'reject', [why], { kind: 'frost' });
    const bound = this.#rounds.get(f.roundId);
    if (!bound) {
      // Not committed in this process (or dropped idle): what the store knows of the round decides the refusal.
      const state = this.#o.nonces.state(f.roundId);
      return refuseSign(
        state === 'used'
          ? reason('FROST_NONCE_SPENT')
          : state === undefined
            ? reason('FROST_ROUND_UNKNOWN')
            : reason('FROST_NONCE_FORGOTTEN'),
      );
    }
    if (bound.proposalId !== p.proposalId || bound.group !== f.group || bound.hash !== prep.hash) {
      return refuseSign(reason('FROST_MESSAGE_CHANGED'));
    }
    const held = await this.#held.get(f.group)?.catch(() => undefined);
    if (!held) return refuseSign(reason('FROST_NONCE_FORGOTTEN'));
    const nonces = this.#o.nonces;
    const released = await pipeline.releaseShare(
      { ...r, auditData: { roundId: f.roundId, group: f.group, index: group.myIndex } },
      () => {
        // Retired while this step waited: no share leaves (the retirement dropped the nonces; this says why).
        if (!this.#live(f.group)) throw { reason: retired() };
        try {
          const share = Buffer.from(
            held.signer.sign(f.roundId, f.commitments as Commitment[], Buffer.from(prep.hash, 'hex')),
          );
          // Test hook only (development mode): a wrong share, as a broken node would send.
          if (this.#o.badShare) share[0] = (share[0]! + 1) % 256;
          return share;
        } catch (e) {
          const why = refusalOf(e);
          if (why) throw { reason: why };
          /* v8 ignore next -- FrostSigner.sign throws only packages/frost codes, each mapped above */
          throw e;
        } finally {
          // Once spent (or lost) the binding goes; a refusal that spent nothing keeps the round signable.
          if (nonces.state(f.roundId) !== 'issued') this.#rounds.delete(f.roundId);
        }
      },
    );
    if ('decision' in released) return released.decision;
    this.#touch(f.group);
    return {
      ...pipeline.approved(r),
      frost: { group: f.group, roundId: f.roundId, step: 'sign', share: released.share.toString('hex') },
    };
  }

  /**
   * The node's own review of a group-key change (docs/architecture.md "Swapping the account to a new group"): the
   * new key must be a group this node holds a confirmed share of, at the weight its operator planned, and the
   * transaction exactly the two setOptions of the swap. The refusal, if any; a transaction that names no group key
   * this node knows passes to the policy unchanged.
   */
  #groupKeyChange(decoded: DecodedTransaction, signingGroup: string, proposalId: string): Reason | undefined {
    const tx = (decoded.inner ?? decoded).tx as Transaction;
    const held = new Map(
      this.#o
        .groups!.list()
        .filter((g) => g.status === 'confirmed')
        .map((g) => [g.address, g]),
    );
    const r = reviewGroupKeyChange(tx, {
      signingGroup,
      heldGroups: new Set(held.keys()),
      plannedWeight: (a) => this.#o.plannedWeight?.(held.get(a)!),
    });
    if (r.kind === 'none') return undefined;
    if (r.kind === 'refused') {
      this.#o.logger.warn(
        { proposalId, group: signingGroup, code: r.code, field: r.field },
        'FROST group-key swap refused',
      );
      return nodeReasons.reason(`FROST_SWAP_${r.code}`, {
        message: `The group-key swap is refused: ${r.message.slice(0, 800)}`,
        field: r.field,
      });
    }
    this.#o.logger.info({ proposalId, ...r.change }, 'FROST group-key swap checked');
    return undefined;
  }

  /** The group is still confirmed here (not retired since the step began). */
  #live(address: string): boolean {
    return this.#o.groups?.get(address)?.status === 'confirmed';
  }

  /**
   * The group was retired on this node (frost/dkg.ts `retire`, after the store's change): its opened share and
   * every outstanding nonce of its rounds are zeroed and dropped now, not at the idle timeout.
   * @returns the number of rounds committed and not signed that were dropped
   */
  async retire(address: string): Promise<number> {
    let dropped = 0;
    for (const b of this.#rounds.values()) if (b.group === address) dropped++;
    const held = this.#held.get(address);
    this.#drop(address);
    await held?.catch(() => undefined);
    return dropped;
  }

  /**
   * Rounds committed more than `idleMs` ago and never signed (the coordinator abandoned them for another attempt):
   * their nonces are zeroed and dropped, so a busy group does not keep them in memory for ever.
   */
  #forgetStale(now: number): void {
    const ttl = this.#o.idleMs ?? 120_000;
    for (const [id, b] of this.#rounds) {
      if (now - b.at < ttl) continue;
      this.#rounds.delete(id);
      void this.#held.get(b.group)?.then(
        (h) => h.signer.discard(id),
        /* v8 ignore next -- a share that never opened holds no nonce */
        () => undefined,
      );
    }
  }

  /** The group's signer, its share opened from the seal on first use and kept while rounds come. */
  #signer(g: NodeFrostGroup): Promise<Held> {
    let held = this.#held.get(g.address);
    if (!held) {
      held = this.#open(g);
      this.#held.set(g.address, held);
      held.catch(() => this.#held.delete(g.address));
    }
    return held.then((h) => {
      this.#touch(g.address);
      return h;
    });
  }

  async #open(g: NodeFrostGroup): Promise<Held> {
    const { sealer, nonces, nodeId } = this.#o;
    const signingShare = await sealer!.unseal(g.sealedShare!, {
      purpose: 'frost-share',
      node: nodeId,
      group: g.address,
    });
    try {
      const signer = new FrostSigner({ group: g.group, share: { index: g.myIndex, signingShare }, store: nonces! });
      return { signer, timer: undefined };
    } catch (e) {
      /* v8 ignore next 3 -- the sealed share was checked against the group when it was sealed (frost/dkg.ts) */
      signingShare.fill(0);
      throw e;
    }
  }

  /** (Re)arm the idle timer of a held group. */
  #touch(address: string): void {
    void this.#held.get(address)?.then((h) => {
      if (h.timer) clearTimeout(h.timer);
      h.timer = setTimeout(() => this.#drop(address), this.#o.idleMs ?? 120_000);
      h.timer.unref();
    });
  }

  /** Zero a group's share and outstanding nonces; its committed rounds can no longer sign (refused if asked). */
  #drop(address: string): void {
    const held = this.#held.get(address);
    this.#held.delete(address);
    for (const [id, b] of this.#rounds) if (b.group === address) this.#rounds.delete(id);
    void held?.then(
      (h) => {
        if (h.timer) clearTimeout(h.timer);
        h.signer.close();
      },
      /* v8 ignore next -- a share that never opened has nothing to zero */
      () => undefined,
    );
  }

  /** Zero every share and nonce held. */
  async close(): Promise<void> {
    const all = [...this.#held.keys()];
    for (const a of all) this.#drop(a);
    await Promise.allSettled([...this.#held.values()]);
  }
}

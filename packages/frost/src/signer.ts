import { frostErrors } from './errors.ts';
import { name } from './input.ts';
import type { NonceStore } from './nonce-store.ts';
import { type Commitment, checkRound, commitNonces, type SigningNonces, signRound } from './rounds.ts';
import { checkGroup, checkShare, type GroupPublic, type KeyShare } from './suite.ts';

/**
 * A participant's side of signing (RFC 9591 section 5.1 and 5.2) with the nonce discipline of nonce-store.ts:
 * `commit` records the round durably before it returns the commitment; `sign` marks the nonce used durably before
 * it computes the share, takes the nonces out of memory and zeroes them. A round id is whatever the coordinator
 * names the round (unique per round); a second commitment for it, a second share, or a share after a restart are
 * all refused.
 *
 * The share is held in memory by this object only; `close` zeroes it. Reviewing what is signed (the transaction,
 * the policy, the slot rules) is the caller's business before it calls `sign`.
 */
export class FrostSigner {
  readonly group: GroupPublic;
  readonly index: number;
  readonly #share: KeyShare;
  readonly #store: NonceStore;
  readonly #nonces = new Map<string, { nonces: SigningNonces; commitment: Commitment }>();

  /** @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE (a share that is not this group's) */
  constructor(p: { group: GroupPublic; share: KeyShare; store: NonceStore }) {
    this.group = checkGroup(p.group);
    this.#share = checkShare(this.group, p.share);
    this.index = this.#share.index;
    this.#store = p.store;
  }

  static #key(c: Commitment): string {
    return `${c.hiding}:${c.binding}`;
  }

  /**
   * Round one: fresh nonces for `roundId`, recorded durably, and their commitment to send.
   * @throws FROST_NONCE_REUSED (the round already has a commitment), FROST_OUT_OF_RANGE (a bad round id)
   */
  commit(roundId: string): Commitment {
    const id = name(roundId, 'roundId');
    const { nonces, commitment } = commitNonces(this.#share);
    try {
      this.#store.issue({
        roundId: id,
        groupKey: this.group.groupPublicKey,
        participant: this.index,
        commitment: FrostSigner.#key(commitment),
      });
    } catch (e) {
      nonces.hiding.fill(0);
      nonces.binding.fill(0);
      throw e;
    }
    this.#nonces.set(id, { nonces, commitment });
    return commitment;
  }

  /**
   * Round two: this participant's signature share over `message` for `roundId`, given the coordinator's list of
   * the signing participants' commitments (which must carry this node's own, unchanged).
   * @throws FROST_COMMITMENT_MISMATCH, FROST_NONCE_UNKNOWN, FROST_NONCE_REUSED, FROST_NONCE_LOST, FROST_BAD_INPUT,
   *   FROST_OUT_OF_RANGE
   */
  sign(roundId: string, commitments: Commitment[], message: Uint8Array): Uint8Array {
    const id = name(roundId, 'roundId');
    // The list and message are checked once, here, before the nonce is marked used; the checked round (decoded
    // points included) is what the share is computed from. This node's own commitment for the round, if held,
    // is known good (it computed it as nonce x G) and is not subgroup-checked again.
    const round = checkRound(this.group, commitments, message, this.#nonces.get(id)?.commitment);
    const mine = round.entry(this.index)?.commitment;
    if (!mine) throw frostErrors.error('FROST_COMMITMENT_MISMATCH', { roundId: id, reason: 'absent' });
    // Durable first: once this returns, the round is used whatever happens next (a crash loses a share, never
    // lets the nonce sign twice).
    this.#store.use(id, FrostSigner.#key(mine));
    const held = this.#nonces.get(id);
    this.#nonces.delete(id);
    if (!held) throw frostErrors.error('FROST_NONCE_LOST', { roundId: id });
    try {
      // held.commitment is the commitment issued for these nonces in `commit`: the list's entry is compared with
      // it (the store has just compared it with the recorded one too) rather than derived again from the nonces.
      return signRound(round, this.#share, held.nonces, held.commitment);
    } finally {
      held.nonces.hiding.fill(0);
      held.nonces.binding.fill(0);
    }
  }

  /**
   * Forget a round committed in this process and never signed (the coordinator moved on): its nonces are zeroed
   * and dropped, so it can never sign; its record stays `issued` in the store until a restart marks it lost, and
   * a later request for it is refused (FROST_NONCE_LOST). @returns whether the round was held
   */
  discard(roundId: string): boolean {
    const held = this.#nonces.get(roundId);
    if (!held) return false;
    held.nonces.hiding.fill(0);
    held.nonces.binding.fill(0);
    this.#nonces.delete(roundId);
    return true;
  }

  /** Rounds committed in this process and not yet signed. */
  get pending(): number {
    return this.#nonces.size;
  }

  /** Zero the share and every outstanding nonce. */
  close(): void {
    for (const { nonces } of this.#nonces.values()) {
      nonces.hiding.fill(0);
      nonces.binding.fill(0);
    }
    this.#nonces.clear();
    this.#share.signingShare.fill(0);
  }
}

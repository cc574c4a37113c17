import { stellarErrors } from './errors.ts';
import type { ThresholdLevel } from './types.ts';

/**
 * Quorum intersection of a multisig account's signers: pure, no I/O.
 *
 * Each cosigner node keeps one live transaction per (account, sequence number) and never signs a second one for
 * that slot. That rule stops two different fully signed transactions for one slot only when every two sets of
 * signers that can authorize a transaction share a node: otherwise (2-of-4 with equal weights, for example) two
 * disjoint halves can each sign a different transaction for the same sequence number, each half keeping the slot
 * rule, and whoever holds both (a coordinator) chooses which one the network applies.
 *
 * The unit is a party: one node, whose keys are summed (during a key rotation a node holds two keys), or a key of
 * its own. A set of parties reaches a threshold t when its weights sum to at least max(t, 1): stellar-core's
 * SignatureChecker needs one valid signature even at threshold 0.
 *
 * Levels: every transaction needs its source account's LOW threshold (TransactionFrame checks the source at LOW
 * before any operation), each operation its own level. Sets reaching a higher threshold also reach a lower one,
 * so two authorizing sets of different levels intersect whenever the sets of the lower level do; each level is
 * still checked and reported on its own, so an operator sees which threshold to raise.
 */

export interface Party {
  /** A node id, or a key for a key of its own. */
  id: string;
  /** Sum of the party's signer weights; 0 means the party cannot sign. */
  weight: number;
}

/** Two disjoint sets of parties, each reaching `threshold`. */
export interface DisjointQuorums {
  level: ThresholdLevel;
  threshold: number;
  first: string[];
  second: string[];
}

export interface IntersectionReport {
  /** True when every level's authorizing sets pairwise share a party. */
  ok: boolean;
  /** One witness per level whose sets do not intersect, in the order low, medium, high. */
  disjoint: DisjointQuorums[];
}

const LEVELS: readonly ThresholdLevel[] = ['low', 'medium', 'high'];

function checkParties(parties: readonly Party[]): void {
  if (!Array.isArray(parties)) throw stellarErrors.error('STELLAR_BAD_INPUT', { field: 'parties' });
  const seen = new Set<string>();
  parties.forEach((p, i) => {
    if (typeof p?.id !== 'string' || seen.has(p.id)) {
      throw stellarErrors.error('STELLAR_BAD_INPUT', { field: `parties[${i}].id` });
    }
    if (!Number.isSafeInteger(p.weight) || p.weight < 0) {
      throw stellarErrors.error('STELLAR_BAD_INPUT', { field: `parties[${i}].weight` });
    }
    seen.add(p.id);
  });
}

function checkThreshold(t: number, field: string): void {
  if (!Number.isInteger(t) || t < 0 || t > 255) throw stellarErrors.error('STELLAR_BAD_INPUT', { field });
}

/**
 * Two disjoint sets of parties that each reach `threshold` (max(threshold, 1)), or null when every two sets
 * reaching it share a party. Exact: a dynamic program over the pair of weights reached so far, each capped at
 * the threshold (at most 256 x 256 states per party), remembering one way to reach each state.
 * @throws STELLAR_BAD_INPUT on a duplicate id, a negative or non-integer weight, a threshold outside 0..255
 */
export function findDisjointQuorums(parties: readonly Party[], threshold: number): [string[], string[]] | null {
  checkParties(parties);
  checkThreshold(threshold, 'threshold');
  const t = Math.max(threshold, 1);
  const live = parties.filter((p) => p.weight > 0);
  const key = (a: number, b: number): number => a * (t + 1) + b;
  const goal = key(t, t);
  // layers[i] maps each state reachable with the first i parties to the state before and where party i-1 went.
  const layers: Map<number, { from: number; side: 0 | 1 | 2 }>[] = [new Map([[0, { from: -1, side: 0 }]])];
  for (const p of live) {
    const prev = layers[layers.length - 1]!;
    const next = new Map<number, { from: number; side: 0 | 1 | 2 }>();
    for (const k of prev.keys()) {
      const a = Math.floor(k / (t + 1));
      const b = k % (t + 1);
      const moves: [number, 0 | 1 | 2][] = [
        [k, 0],
        [key(Math.min(a + p.weight, t), b), 1],
        [key(a, Math.min(b + p.weight, t)), 2],
      ];
      for (const [nk, side] of moves) if (!next.has(nk)) next.set(nk, { from: k, side });
    }
    layers.push(next);
    if (next.has(goal)) {
      const first: string[] = [];
      const second: string[] = [];
      let k = goal;
      for (let i = layers.length - 1; i > 0; i--) {
        const step = layers[i]!.get(k)!;
        if (step.side === 1) first.unshift(live[i - 1]!.id);
        if (step.side === 2) second.unshift(live[i - 1]!.id);
        k = step.from;
      }
      return [first, second];
    }
  }
  return null;
}

/**
 * Checks quorum intersection at the account's three threshold levels.
 * @throws STELLAR_BAD_INPUT on bad parties or a threshold outside 0..255
 */
export function checkQuorumIntersection(
  parties: readonly Party[],
  thresholds: Readonly<Record<ThresholdLevel, number>>,
): IntersectionReport {
  for (const level of LEVELS) checkThreshold(thresholds?.[level], `thresholds.${level}`);
  const disjoint: DisjointQuorums[] = [];
  const byThreshold = new Map<number, [string[], string[]] | null>();
  for (const level of LEVELS) {
    const threshold = thresholds[level];
    const t = Math.max(threshold, 1);
    if (!byThreshold.has(t)) byThreshold.set(t, findDisjointQuorums(parties, t));
    const found = byThreshold.get(t)!;
    if (found !== null) disjoint.push({ level, threshold, first: found[0], second: found[1] });
  }
  return { ok: disjoint.length === 0, disjoint };
}

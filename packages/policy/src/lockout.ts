/**
 * Lock-out and single-party checks for a multisig account's signer configuration: pure, no I/O.
 *
 * Used by every operator command that changes signers or thresholds (`cosigner account setup`, `rotate`,
 * `node add|remove`, `thresholds set`) on the configuration the change would produce, BEFORE anything is
 * proposed. Rules (stellar-core SignatureChecker and SetOptionsOpFrame):
 * - a threshold of 0 still needs one valid signature, so its real requirement is max(threshold, 1);
 * - master weight 0 removes the master key; every other signer of weight 0 is removed;
 * - setOptions on signers or thresholds is a HIGH operation: a HIGH threshold the remaining signers cannot
 *   reach locks the account's configuration for ever (and with it, its funds once the others are unreachable);
 * - at most 20 signers besides the master key, weights 0..255, thresholds 0..255.
 *
 * A "party" is one cosigner node: its keys are summed (during a rotation a node holds its old and its new key,
 * and a compromised node could sign with both). A key with no node is a party of its own; the master key is one.
 */

export interface SignerEntry {
  /** G... address (or any signer key string). */
  key: string;
  /** 0..255; 0 means the signer is removed. */
  weight: number;
  /** The cosigner node that holds this key; keys of one node count as one party. */
  node?: string;
}

export interface SignerConfiguration {
  /** The account itself (its master key). */
  account: string;
  masterWeight: number;
  thresholds: { low: number; med: number; high: number };
  signers: readonly SignerEntry[];
}

export interface LockoutProblem {
  /** Machine-readable: LOCKOUT_UNREACHABLE, LOCKOUT_SINGLE_PARTY, LOCKOUT_INVALID. */
  code: 'LOCKOUT_UNREACHABLE' | 'LOCKOUT_SINGLE_PARTY' | 'LOCKOUT_INVALID';
  /** The field to change: `thresholds.high`, `masterWeight`, `signers[2].weight`, `signers`. */
  field: string;
  message: string;
}

export interface LockoutReport {
  ok: boolean;
  problems: LockoutProblem[];
  /** Total weight of the remaining signers (master included when its weight is above 0). */
  totalWeight: number;
  /** The heaviest single party and its weight. */
  heaviest: { party: string; weight: number } | null;
}

const LEVELS = [
  ['low', 'thresholds.low'],
  ['med', 'thresholds.med'],
  ['high', 'thresholds.high'],
] as const;

const isByte = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 255;

/** Weight of each party: nodes sum their keys; unlabelled keys and the master key are parties of their own. */
export function partyWeights(c: SignerConfiguration): Map<string, number> {
  const out = new Map<string, number>();
  const add = (party: string, w: number): void => {
    out.set(party, (out.get(party) ?? 0) + w);
  };
  if (c.masterWeight > 0) add(`master key ${c.account}`, c.masterWeight);
  for (const s of c.signers) if (s.weight > 0) add(s.node ? `node ${s.node}` : `key ${s.key}`, s.weight);
  return out;
}

/**
 * Check a signer configuration. Refuses (ok: false, one problem per cause, each naming its field):
 * - LOCKOUT_INVALID: a weight or threshold outside 0..255, more than 20 signers, a key listed twice;
 * - LOCKOUT_UNREACHABLE: a threshold the remaining signers together cannot reach (HIGH is named as the one that
 *   future signer changes need);
 * - LOCKOUT_SINGLE_PARTY: one party (a node, a lone key, the master key) reaches a threshold alone.
 */
export function checkLockout(c: SignerConfiguration): LockoutReport {
  const problems: LockoutProblem[] = [];
  const invalid = (field: string, message: string): void => {
    problems.push({ code: 'LOCKOUT_INVALID', field, message });
  };
  if (!isByte(c.masterWeight)) invalid('masterWeight', `masterWeight must be 0-255, got ${String(c.masterWeight)}`);
  for (const [level, field] of LEVELS) {
    if (!isByte(c.thresholds[level])) invalid(field, `${field} must be 0-255, got ${String(c.thresholds[level])}`);
  }
  const seen = new Set<string>();
  c.signers.forEach((s, i) => {
    if (!isByte(s.weight))
      invalid(`signers[${i}].weight`, `signers[${i}].weight must be 0-255, got ${String(s.weight)}`);
    if (seen.has(s.key)) invalid(`signers[${i}].key`, `signer ${s.key} is listed twice`);
    if (s.key === c.account) invalid(`signers[${i}].key`, 'the master key is set with masterWeight, not as a signer');
    seen.add(s.key);
  });
  const live = c.signers.filter((s) => s.weight > 0);
  // stellar-core caps an account at MAX_SIGNERS = 20 (SetOptionsOpFrame, "tooManySigners").
  if (live.length > 20)
    invalid('signers', `an account holds at most 20 signers, this configuration has ${live.length}`);
  if (problems.length > 0) return { ok: false, problems, totalWeight: 0, heaviest: null };

  const parties = partyWeights(c);
  const totalWeight = [...parties.values()].reduce((a, b) => a + b, 0);
  let heaviest: LockoutReport['heaviest'] = null;
  for (const [party, weight] of parties) if (!heaviest || weight > heaviest.weight) heaviest = { party, weight };

  for (const [level, field] of LEVELS) {
    const need = Math.max(c.thresholds[level], 1);
    if (totalWeight < need) {
      const why =
        level === 'high'
          ? ' (signer and threshold changes need HIGH: the account could never be reconfigured or recovered)'
          : '';
      problems.push({
        code: 'LOCKOUT_UNREACHABLE',
        field,
        message: `${field} ${c.thresholds[level]} cannot be reached: the remaining signers weigh ${totalWeight} in total${why}`,
      });
    }
  }
  for (const [party, weight] of parties) {
    const reached = LEVELS.filter(([level]) => weight >= Math.max(c.thresholds[level], 1));
    if (reached.length === 0) continue;
    const [level, field] = reached[0]!;
    const isMaster = party.startsWith('master key');
    problems.push({
      code: 'LOCKOUT_SINGLE_PARTY',
      field: isMaster ? 'masterWeight' : field,
      message: `${party} alone (weight ${weight}) reaches ${field} ${c.thresholds[level]}${
        isMaster ? ': set masterWeight to 0' : `: raise ${field} above ${weight} or lower that party's weight`
      }`,
    });
  }
  return { ok: problems.length === 0, problems, totalWeight, heaviest };
}

/** The configuration after a list of changes (what a setOptions transaction would leave). */
export function applyChanges(
  c: SignerConfiguration,
  changes: {
    masterWeight?: number;
    thresholds?: Partial<SignerConfiguration['thresholds']>;
    signers?: readonly SignerEntry[];
  },
): SignerConfiguration {
  const signers = c.signers.map((s) => ({ ...s }));
  for (const ch of changes.signers ?? []) {
    const i = signers.findIndex((s) => s.key === ch.key);
    if (i === -1) signers.push({ ...ch });
    else signers[i] = { ...signers[i]!, ...ch, node: ch.node ?? signers[i]!.node };
  }
  return {
    account: c.account,
    masterWeight: changes.masterWeight ?? c.masterWeight,
    thresholds: { ...c.thresholds, ...changes.thresholds },
    signers: signers.filter((s) => s.weight > 0),
  };
}

/** One line per problem, for the command line. */
export function formatLockout(r: LockoutReport): string {
  return r.problems.map((p) => `${p.code} ${p.field}: ${p.message}`).join('\n');
}

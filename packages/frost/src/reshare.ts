import {
  applyChanges,
  checkLockout,
  type LockoutProblem,
  partyWeights,
  type SignerConfiguration,
} from '@cosigner/policy/lockout';
import { checkQuorumIntersection, findDisjointQuorums } from '@cosigner/stellar/intersection';
import { Operation, StrKey, type Transaction, type xdr } from '@stellar/stellar-sdk/base';
import { checkSession, type DkgMember, type DkgSession } from './dkg.ts';
import { frostErrors } from './errors.ts';
import { array, int, name, object, outOfRange, string } from './input.ts';
import { checkGroup, type GroupPublic, groupAddress, MAX_PARTICIPANTS } from './suite.ts';

/**
 * A new group: nodes added or removed, or another threshold. Shares cannot be carried over to another
 * participant set without trusting someone with the secret, so a new group runs a fresh key generation (dkg.ts)
 * and gets a new key; the account then swaps the keys through the old quorum, which still signs for the old
 * group key: one transaction with two setOptions, the old key's weight set to 0 and the new key added
 * (stellar-core checks every signature against the signers as they were before any operation applies, and the
 * operations apply all or none, TransactionFrame; removing first keeps an account at the 20-signer cap
 * within the cap, SetOptionsOpFrame "tooManySigners").
 *
 * This module holds what is pure about it:
 * - `planNewGroup`: the key-generation session of the new group (indices, threshold), the nodes that join,
 *   leave and stay, and the group's own safety: any two sets of t participants must share a node (2t > n), or
 *   two halves could each sign a different transaction for the same sequence number while each node keeps its
 *   slot rule (the quorum-intersection argument of packages/stellar intersection.ts, with one party per node);
 * - `planGroupKeyChange`: the two setOptions operations and the account configuration they leave, refused
 *   unless the lock-out check (packages/policy lockout.ts) and the quorum-intersection check at all three levels
 *   pass on it, as `cosigner account setup` and `cosigner rotate` refuse a native signer change;
 * - `checkGroupKeyChange`: what a node reviewing the proposed transaction checks: exactly those two
 *   operations, on that account, and nothing else.
 *
 * The group key is one party in the account's checks: it signs only with t of its nodes, which no single node
 * can supply. (A node that is both a group participant and a native signer is counted once in each role; the
 * group's own 2t > n check covers the group side.)
 */

export interface NewMember {
  nodeId: string;
  /** The node's X25519 transport public key, hex (channel.ts). */
  transportKey: string;
}

export interface NewGroupPlan {
  /** The fresh key generation of the new group: indices 1..n in node-id order, so every party derives the same. */
  session: DkgSession;
  joining: string[];
  leaving: string[];
  staying: string[];
}

/** Problems found by the plans, each naming its field: what the operator must change. */
export interface ChangeProblem {
  code: LockoutProblem['code'] | 'DISJOINT_QUORUMS' | 'GROUP_DISJOINT_QUORUMS' | 'KEY';
  field: string;
  message: string;
}

function unsafe(what: string, problems: ChangeProblem[]): Error {
  return frostErrors.error(
    'FROST_GROUP_CHANGE_UNSAFE',
    { problems },
    { message: `${what} is refused: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}` },
  );
}

/** Two disjoint sets of t participants, if any (each participant one party of weight 1). */
function groupDisjoint(n: number, t: number): ChangeProblem[] {
  const parties = Array.from({ length: n }, (_, i) => ({ id: String(i + 1), weight: 1 }));
  const found = findDisjointQuorums(parties, t);
  if (!found) return [];
  return [
    {
      code: 'GROUP_DISJOINT_QUORUMS',
      field: 'threshold',
      message: `${t} of ${n}: two disjoint sets of ${t} participants could each sign a different transaction for one sequence number; use a threshold above ${Math.floor(n / 2)}`,
    },
  ];
}

/**
 * Plan a new group from the old one's nodes and the new member list.
 * @param p.oldNodes the node ids of the old group's participants
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE (members, threshold; the same set and threshold: use a refresh),
 *   FROST_GROUP_CHANGE_UNSAFE (2t <= n, unless allowDisjointQuorums)
 */
export function planNewGroup(p: {
  sessionId: string;
  oldGroup: GroupPublic;
  oldNodes: string[];
  members: NewMember[];
  threshold: number;
  allowDisjointQuorums?: boolean;
}): NewGroupPlan {
  const old = checkGroup(p.oldGroup);
  const oldNodes = array(p.oldNodes, 'oldNodes').map((n, i) => name(n, `oldNodes[${i}]`));
  if (oldNodes.length !== old.participants.length || new Set(oldNodes).size !== oldNodes.length) {
    throw outOfRange('oldNodes', `must name the old group's ${old.participants.length} participants, each once`);
  }
  const raw = array(p.members, 'members').map((m, i) => {
    const o = object(m, `members[${i}]`);
    return {
      nodeId: name(o.nodeId, `members[${i}].nodeId`),
      transportKey: string(o.transportKey, `members[${i}].transportKey`),
    };
  });
  raw.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  if (raw.length > MAX_PARTICIPANTS) throw outOfRange('members', `must list at most ${MAX_PARTICIPANTS} nodes`);
  const members: DkgMember[] = raw.map((m, i) => ({ index: i + 1, ...m }));
  // checkSession checks sizes, duplicates, keys and 2 <= t <= n.
  const session = checkSession({ sessionId: p.sessionId, threshold: p.threshold, members });
  const ids = session.members.map((m) => m.nodeId);
  const staying = ids.filter((id) => oldNodes.includes(id));
  if (staying.length === oldNodes.length && ids.length === oldNodes.length && session.threshold === old.threshold) {
    throw outOfRange('members', 'are the old group with its threshold: refresh the shares instead (refresh.ts)');
  }
  const problems = groupDisjoint(session.members.length, session.threshold);
  if (problems.length > 0 && !p.allowDisjointQuorums) throw unsafe('The new group', problems);
  return {
    session,
    joining: ids.filter((id) => !oldNodes.includes(id)),
    leaving: oldNodes.filter((id) => !ids.includes(id)),
    staying,
  };
}

/** A new group's membership before its key generation runs: participants in index order and who moves. */
export interface NewMembershipPlan {
  /** Node ids in node-id order: participant i + 1 is participants[i] (as planNewGroup numbers them). */
  participants: string[];
  threshold: number;
  joining: string[];
  leaving: string[];
  staying: string[];
}

/**
 * The checks of planNewGroup that need no transport key: what an operator's command runs before it asks the nodes
 * for a key generation, since the nodes among the running cluster make their transport keys per session at its
 * start (services/cosigner frost/dkg.ts). The same refusals, with the same fields and codes: a member list of the
 * wrong size or with a repeated node, a threshold outside 2..n, the old group with its threshold (a refresh), and
 * 2t <= n unless allowed.
 * @throws FROST_BAD_INPUT, FROST_OUT_OF_RANGE, FROST_GROUP_CHANGE_UNSAFE
 */
export function planNewMembership(p: {
  oldGroup: GroupPublic;
  oldNodes: string[];
  members: string[];
  threshold: number;
  allowDisjointQuorums?: boolean;
}): NewMembershipPlan {
  const old = checkGroup(p.oldGroup);
  const oldNodes = array(p.oldNodes, 'oldNodes').map((n, i) => name(n, `oldNodes[${i}]`));
  if (oldNodes.length !== old.participants.length || new Set(oldNodes).size !== oldNodes.length) {
    throw outOfRange('oldNodes', `must name the old group's ${old.participants.length} participants, each once`);
  }
  const ids = array(p.members, 'members')
    .map((m, i) => name(m, `members[${i}]`))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (ids.length < 2) throw outOfRange('members', 'must list at least 2 participants');
  if (ids.length > MAX_PARTICIPANTS) throw outOfRange('members', `must list at most ${MAX_PARTICIPANTS} nodes`);
  if (new Set(ids).size !== ids.length) throw outOfRange('members', 'must not repeat a nodeId');
  const threshold = int(p.threshold, 'threshold', 2, ids.length);
  const staying = ids.filter((id) => oldNodes.includes(id));
  if (staying.length === oldNodes.length && ids.length === oldNodes.length && threshold === old.threshold) {
    throw outOfRange('members', 'are the old group with its threshold: refresh the shares instead (refresh.ts)');
  }
  const problems = groupDisjoint(ids.length, threshold);
  if (problems.length > 0 && !p.allowDisjointQuorums) throw unsafe('The new group', problems);
  return {
    participants: ids,
    threshold,
    joining: ids.filter((id) => !oldNodes.includes(id)),
    leaving: oldNodes.filter((id) => !ids.includes(id)),
    staying,
  };
}

export interface GroupKeyChange {
  account: string;
  oldKey: string;
  newKey: string;
  weight: number;
  /** The transaction's operations, in this order: remove the old key (weight 0), add the new one. HIGH. */
  operations: xdr.Operation[];
  /** The account's signer configuration once applied. */
  after: SignerConfiguration;
}

/** The label under which a group key counts as one party in the lock-out and intersection checks. */
export const groupParty = (address: string): string => `frost group ${address}`;

/**
 * Build the signer change that replaces the old group key by the new one on an account, and refuse it unless
 * the configuration it leaves passes the lock-out check and the quorum-intersection check at every level.
 * @param p.current the account's signer configuration as on the ledger (native signers labelled by node)
 * @param p.weight the new key's weight; default: the old key's
 * @throws FROST_GROUP_CHANGE_UNSAFE (details.problems: the old key is not a signer, the new one already is,
 *   LOCKOUT_*, DISJOINT_QUORUMS), FROST_BAD_INPUT / FROST_OUT_OF_RANGE
 */
export function planGroupKeyChange(p: {
  current: SignerConfiguration;
  oldGroup: GroupPublic;
  newGroup: GroupPublic;
  weight?: number;
  allowDisjointQuorums?: boolean;
}): GroupKeyChange {
  const oldKey = groupAddress(checkGroup(p.oldGroup));
  const newKey = groupAddress(checkGroup(p.newGroup));
  const current = p.current;
  object(current, 'current');
  if (!StrKey.isValidEd25519PublicKey(current.account)) throw outOfRange('current.account', 'is not a G... address');
  const problems: ChangeProblem[] = [];
  const existing = current.signers.find((s) => s.key === oldKey && s.weight > 0);
  if (!existing) {
    problems.push({ code: 'KEY', field: 'oldGroup', message: `${oldKey} is not a signer of ${current.account}` });
  }
  if (newKey === oldKey || current.signers.some((s) => s.key === newKey && s.weight > 0)) {
    problems.push({ code: 'KEY', field: 'newGroup', message: `${newKey} is already a signer of ${current.account}` });
  }
  if (problems.length > 0) throw unsafe('The group-key change', problems);
  const weight = p.weight === undefined ? existing!.weight : int(p.weight, 'weight', 1, 255);
  const after = applyChanges(current, {
    signers: [
      { key: oldKey, weight: 0 },
      { key: newKey, weight, node: groupParty(newKey) },
    ],
  });
  // The group key reaching a threshold alone is the point of it, not a single party: t >= 2 of its nodes sign
  // (checkGroup refuses t < 2). Every other single party (the master key, a native node, a lone key) is refused.
  const alone = `node ${groupParty(newKey)} alone`;
  const lockout = checkLockout(after).problems.filter(
    (q) => !(q.code === 'LOCKOUT_SINGLE_PARTY' && q.message.startsWith(alone)),
  );
  problems.push(...lockout);
  if (lockout.length === 0) {
    const parties = [...partyWeights(after)].map(([id, w]) => ({ id, weight: w }));
    const t = after.thresholds;
    const q = checkQuorumIntersection(parties, { low: t.low, medium: t.med, high: t.high });
    if (!q.ok && !p.allowDisjointQuorums) {
      for (const d of q.disjoint) {
        problems.push({
          code: 'DISJOINT_QUORUMS',
          field: `thresholds.${d.level === 'medium' ? 'med' : d.level}`,
          message: `{${d.first.join(', ')}} and {${d.second.join(', ')}} each reach ${d.threshold} without a common party`,
        });
      }
    }
  }
  if (problems.length > 0) throw unsafe('The group-key change', problems);
  return {
    account: current.account,
    oldKey,
    newKey,
    weight,
    operations: [
      Operation.setOptions({ signer: { ed25519PublicKey: oldKey, weight: 0 } }),
      Operation.setOptions({ signer: { ed25519PublicKey: newKey, weight } }),
    ],
    after,
  };
}

/** setOptions fields other than the signer: a group-key change sets none of them. */
const OTHER_FIELDS = [
  'inflationDest',
  'clearFlags',
  'setFlags',
  'masterWeight',
  'lowThreshold',
  'medThreshold',
  'highThreshold',
  'homeDomain',
] as const;

/**
 * Check that a proposed transaction is exactly the planned group-key change: source the account, two setOptions
 * (remove the old key, add the new one at the planned weight) with no operation source other than the account,
 * and no other field set. What a node runs before it releases a share for such a transaction.
 * @throws FROST_GROUP_CHANGE_MISMATCH (details.field names the first difference)
 */
export function checkGroupKeyChange(
  tx: Transaction,
  change: Pick<GroupKeyChange, 'account' | 'oldKey' | 'newKey' | 'weight'>,
): void {
  const mismatch = (field: string, why: string) =>
    frostErrors.error('FROST_GROUP_CHANGE_MISMATCH', { field }, { message: `${field} ${why}.` });
  if (tx.source !== change.account) throw mismatch('source', `must be ${change.account}`);
  if (tx.operations.length !== 2) throw mismatch('operations', 'must be exactly two setOptions');
  const want = [
    { key: change.oldKey, weight: 0 },
    { key: change.newKey, weight: change.weight },
  ];
  tx.operations.forEach((op, i) => {
    const field = `operations[${i}]`;
    if (op.type !== 'setOptions') throw mismatch(`${field}.type`, 'must be setOptions');
    if (op.source !== undefined && op.source !== change.account)
      throw mismatch(`${field}.source`, 'must be the account');
    for (const f of OTHER_FIELDS) {
      if ((op as unknown as Record<string, unknown>)[f] !== undefined)
        throw mismatch(`${field}.${f}`, 'must not be set');
    }
    const signer = op.signer as { ed25519PublicKey?: string; weight?: number } | undefined;
    if (signer?.ed25519PublicKey !== want[i]!.key || signer.weight !== want[i]!.weight) {
      throw mismatch(`${field}.signer`, `must be ${want[i]!.key} at weight ${want[i]!.weight}`);
    }
  });
}

/** The ed25519 key (G...) a signer entry of a setOptions names, for an ed25519 or a signed-payload signer (CAP-40). */
function signerKeyOf(signer: unknown): string | undefined {
  const s = signer as { ed25519PublicKey?: string; ed25519SignedPayload?: string } | undefined;
  if (s?.ed25519PublicKey !== undefined) return s.ed25519PublicKey;
  if (s?.ed25519SignedPayload !== undefined) {
    // A signed-payload signer (P...) is the ed25519 key plus a payload: the first 32 bytes are the key.
    const raw = StrKey.decodeSignedPayload(s.ed25519SignedPayload);
    return StrKey.encodeEd25519PublicKey(Buffer.from(raw.subarray(0, 32)));
  }
  return undefined;
}

/** The outcome of a node's review of a transaction that may change a signer to or from a group key. */
export type GroupKeyChangeReview =
  /** No setOptions of the transaction touches a group key the node knows: the policy alone decides. */
  | { kind: 'none' }
  /** Exactly the group-key change the node can verify: remove the signing group's key, add a held group's. */
  | { kind: 'checked'; change: Pick<GroupKeyChange, 'account' | 'oldKey' | 'newKey' | 'weight'> }
  | {
      kind: 'refused';
      /** UNKNOWN_GROUP: the added key is no group the node holds; WEIGHT_UNPLANNED: its operator set no weight
       * for that group; MISMATCH: any other difference from the planned change (checkGroupKeyChange). */
      code: 'UNKNOWN_GROUP' | 'WEIGHT_UNPLANNED' | 'MISMATCH';
      field: string;
      message: string;
    };

/**
 * What a node decides, from its own records only, about a transaction a FROST group is asked to sign: when any of
 * its setOptions names a group key the node knows (the signing group's, or one it holds a share of) as a signer,
 * the transaction must be exactly the group-key change from the signing group to a group the node holds, at the
 * weight the node's own operator planned for that group (checkGroupKeyChange); nothing the coordinator says about
 * the change is used. Removing a group key in favour of a native signer or an unknown key, changing its weight,
 * or bundling other operations is refused. A transaction that names no known group key is left to the policy.
 * @param p.signingGroup the address of the group asked to sign (the old group of a swap)
 * @param p.heldGroups the addresses of the groups this node holds a confirmed share of
 * @param p.plannedWeight the weight the node's operator planned for a held group's key, if any
 */
export function reviewGroupKeyChange(
  tx: Transaction,
  p: { signingGroup: string; heldGroups: ReadonlySet<string>; plannedWeight: (group: string) => number | undefined },
): GroupKeyChangeReview {
  const touches = tx.operations.some((op) => {
    if (op.type !== 'setOptions' || op.signer === undefined) return false;
    const key = signerKeyOf(op.signer);
    return key !== undefined && (key === p.signingGroup || p.heldGroups.has(key));
  });
  if (!touches) return { kind: 'none' };
  const refused = (code: 'UNKNOWN_GROUP' | 'WEIGHT_UNPLANNED' | 'MISMATCH', field: string, why: string) =>
    ({ kind: 'refused', code, field, message: `${field} ${why}.` }) as const;
  const second = tx.operations[1];
  const added =
    tx.operations.length === 2 && second?.type === 'setOptions'
      ? (second.signer as { ed25519PublicKey?: string } | undefined)?.ed25519PublicKey
      : undefined;
  if (added === p.signingGroup) {
    return refused('MISMATCH', 'operations[1].signer', 'must add a group key other than the signing group');
  }
  if (added !== undefined && !p.heldGroups.has(added)) {
    return refused(
      'UNKNOWN_GROUP',
      'operations[1].signer',
      `adds ${added}, which is not a group this node holds a confirmed share of`,
    );
  }
  const weight = added === undefined ? undefined : p.plannedWeight(added);
  if (added !== undefined && weight === undefined) {
    return refused(
      'WEIGHT_UNPLANNED',
      'operations[1].signer.weight',
      `this node's operator planned no account weight for group ${added} (frost.expect accountWeight)`,
    );
  }
  const change = {
    account: tx.source,
    oldKey: p.signingGroup,
    // Without a second setOptions adding an ed25519 key there is nothing to compare with: checkGroupKeyChange
    // names the first difference (the operation count or type, or the first operation's signer).
    newKey: added ?? '',
    weight: weight ?? 0,
  };
  try {
    checkGroupKeyChange(tx, change);
  } catch (e) {
    const field = (e as { details: { field: string } }).details.field;
    return { kind: 'refused', code: 'MISMATCH', field, message: (e as Error).message };
  }
  return { kind: 'checked', change };
}

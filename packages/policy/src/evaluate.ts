import { defineReasons, reasonOutcomes } from '@cosigner/errors/errors';
import type {
  AuthEntrySummary,
  InvocationSummary,
  OperationSummary,
  TransactionSummary,
} from '@cosigner/stellar/types';
import { assetKey, baseAccount } from './address.ts';
import { formatAmount, INT64_MAX, parseAmount, parseInteger, parseRatio } from './amount.ts';
import { type FunctionRule, OPERATION_TYPES, type Policy, UNBOUNDED_OUTFLOWS } from './schema.ts';

/**
 * The pure evaluation of a node's policy: a transaction summary in, a decision out. No I/O, no clock, no
 * randomness: the caller passes `now` and a `spent` function that reads its signing ledger, so the same input
 * always gives the same decision (the vectors in test/vectors/*.json pin it).
 *
 * Every rule runs and every finding is reported (an operator fixing a proposal sees all of it at once).
 * Outcome: any reject reason rejects; otherwise any hold reason (codes HOLD_*) holds for manual approval;
 * otherwise approve. Evaluation never throws: a summary it cannot read is a reject.
 */

export type Outcome = 'approve' | 'reject' | 'hold';

export interface Reason {
  /** Machine-readable: a key of REASON_CODES. */
  code: string;
  message: string;
  opIndex?: number;
  /** Where in the summary (`operations[1].amount`, `fee`) or the policy (`assets`) the finding is. */
  field?: string;
}

export interface Spend {
  /** `native`, `CODE:ISSUER` or a C... token contract (address.ts assetKey). */
  assetKey: string;
  /** Stroops (7-decimal base units) that signing would add to this asset's velocity windows. */
  amount: bigint;
}

export interface Decision {
  outcome: Outcome;
  reasons: Reason[];
  /** Per asset, sorted by key: what the operations send (adds to velocity). Reported whatever the outcome. */
  spend: Spend[];
  /**
   * Stroops of fee this transaction may charge to one of our accounts (its source; for a fee bump, the fee
   * source, CAP-15). It adds to the native velocity windows too: the signer records it as native spend.
   */
  fee: bigint;
}

/** Stroops of `assetKey` this node already signed for in the last `windowSeconds` (from its ledger). */
export type SpentFn = (assetKey: string, windowSeconds: number) => bigint;

/** Whether a key is on the node's roster (`EvaluateInput.members`). */
export interface Members {
  has(key: string): boolean;
}

export interface EvaluateInput {
  summary: TransactionSummary;
  /** Unix seconds. */
  now: number;
  spent: SpentFn;
  /** The network's latest closed ledger; needed to check the expiration of auth entries in the transaction. */
  currentLedger?: number;
  /**
   * The node's roster (its own keys and the cluster members its operator accepted): signer keys that
   * `signerChanges.clusterMembers` allows adding and removing. A lookup, asked only when a transaction changes
   * a signer under that rule (a node answers it from its database; a Set works too).
   */
  members?: Members;
  /**
   * Auth entries of this transaction (`<operation index>:<entry index>`) that this node already signed in an
   * auth round, whose spend its ledger already holds: the transfers they authorize are not charged twice.
   */
  chargedAuthEntries?: ReadonlySet<string>;
}

export interface AuthEntriesInput {
  entries: AuthEntrySummary[];
  /** Unix seconds (for symmetry with evaluate; velocity windows are read through `spent`). */
  now: number;
  currentLedger: number;
  spent: SpentFn;
}

/**
 * Every reason code evaluation can produce, what it does to the outcome and what it means (listed with the other
 * decision reasons in docs/reference/errors.md, and in this package's README).
 */
export const policyReasons = defineReasons('policy', {
  WRONG_NETWORK: {
    outcome: 'reject',
    message: "The transaction (or a fee bump's inner transaction) is for another network passphrase.",
  },
  MALFORMED_SUMMARY: { outcome: 'reject', message: 'A field the rules need is missing or has the wrong shape.' },
  NO_OPERATIONS: { outcome: 'reject', message: 'The transaction has no operations.' },
  ACCOUNT_NOT_COSIGNED: {
    outcome: 'reject',
    message: "The transaction source, an operation source, or an auth entry's address is not in `accounts`.",
  },
  UNKNOWN_OPERATION: { outcome: 'reject', message: 'An operation type the decoder or this package does not know.' },
  OP_NOT_ALLOWED: { outcome: 'reject', message: 'The operation type is not in `operations`.' },
  UNBOUNDED_OUTFLOW: {
    outcome: 'reject',
    message: 'accountMerge / liquidityPoolDeposit without `allowUnboundedOutflows`.',
  },
  ASSET_NOT_ALLOWED: { outcome: 'reject', message: 'Value of an asset not listed in `assets` would leave.' },
  AMOUNT_INVALID: {
    outcome: 'reject',
    message: 'An amount is not an exact decimal with at most 7 places (or a token amount is not an integer).',
  },
  AMOUNT_OVER_TX_LIMIT: { outcome: 'reject', message: "The transaction's sum for an asset is above its `maxPerTx`." },
  AMOUNT_OVER_CALL_LIMIT: {
    outcome: 'reject',
    message: "A token call's amount is above the function rule's `maxAmount`.",
  },
  VELOCITY_EXCEEDED: {
    outcome: 'reject',
    message: "Already signed in a window plus this transaction is above the window's `max`.",
  },
  VELOCITY_UNAVAILABLE: {
    outcome: 'reject',
    message: "The node's `spent` function failed or answered something other than a bigint.",
  },
  DESTINATION_DENIED: { outcome: 'reject', message: 'A destination (or token recipient) is on `destinations.deny`.' },
  DESTINATION_NOT_ALLOWED: {
    outcome: 'reject',
    message: 'A destination is not on `destinations.allow` (when an allow list is set).',
  },
  RECIPIENT_NOT_ALLOWED: {
    outcome: 'reject',
    message: "A token call's recipient is not in the function rule's `recipients`.",
  },
  CONTRACT_NOT_ALLOWED: {
    outcome: 'reject',
    message: 'A contract call (root, sub-invocation or auth entry) to a contract not in `contracts`.',
  },
  FUNCTION_NOT_ALLOWED: { outcome: 'reject', message: 'A function not listed for that contract.' },
  HOST_FUNCTION_NOT_ALLOWED: { outcome: 'reject', message: 'Contract creation or Wasm upload: not a contract call.' },
  ARGUMENT_NOT_ALLOWED: { outcome: 'reject', message: "An argument fails a function rule's `args` (`oneOf`)." },
  INVOCATION_TOO_DEEP: { outcome: 'reject', message: 'An invocation tree deeper than 64 levels.' },
  AUTH_EXPIRATION_TOO_FAR: {
    outcome: 'reject',
    message: 'An auth entry expires more than `soroban.maxAuthExpirationLedgers` after the current ledger.',
  },
  AUTH_EXPIRED: {
    outcome: 'reject',
    message: "An auth entry's expiration ledger is before the current ledger (the bound is inclusive).",
  },
  AUTH_CREDENTIALS_NOT_SIGNABLE: {
    outcome: 'reject',
    message: 'A standalone entry without address credentials (source-account entries ride on the envelope).',
  },
  NO_AUTH_ENTRIES: { outcome: 'reject', message: '`evaluateAuthEntries` got no entry.' },
  RESOURCE_FEE_TOO_HIGH: { outcome: 'reject', message: 'The Soroban resource fee is above `soroban.maxResourceFee`.' },
  FOOTPRINT_TOO_LARGE: {
    outcome: 'reject',
    message:
      'The footprint names more entries than `soroban.maxFootprintEntries` (or writes more than `maxWriteEntries`).',
  },
  INSTRUCTIONS_TOO_HIGH: {
    outcome: 'reject',
    message: 'The declared CPU instructions are above `soroban.maxInstructions`.',
  },
  FEE_TOO_HIGH: {
    outcome: 'reject',
    message:
      "The fee is above `fees.maxFee` (a fee bump's outer fee: `fees.maxFeeBump`) or `fees.maxFeePerOp` x operations.",
  },
  FEE_INVALID: { outcome: 'reject', message: 'A fee is not a whole number of stroops.' },
  UNBOUNDED_VALIDITY: {
    outcome: 'reject',
    message: 'No time bounds, or maxTime 0: the signature would be valid forever.',
  },
  VALIDITY_TOO_LONG: { outcome: 'reject', message: 'maxTime is more than `validity.maxWindowSeconds` ahead of now.' },
  VALIDITY_EXPIRED: { outcome: 'reject', message: 'maxTime has passed.' },
  INVALID_TIME_BOUNDS: { outcome: 'reject', message: 'minTime is after maxTime.' },
  MEMO_REQUIRED: {
    outcome: 'reject',
    message: 'No memo while `memo.required`, or paying a destination in `memo.requiredForDestinations`.',
  },
  MEMO_FORBIDDEN: { outcome: 'reject', message: 'A memo while `memo.forbidden`.' },
  MEMO_TYPE_NOT_ALLOWED: { outcome: 'reject', message: 'A memo type not in `memo.types`.' },
  SIGNER_CHANGE_NOT_ALLOWED: {
    outcome: 'reject',
    message: 'A signer, threshold or master-weight change on an account not in `signerChanges.accounts`.',
  },
  SIGNER_KEY_NOT_ALLOWED: {
    outcome: 'reject',
    message: 'Adding a key not in `signerChanges.addKeys`, or removing one not in `removeKeys`.',
  },
  SIGNER_WEIGHT_TOO_HIGH: { outcome: 'reject', message: 'A signer weight above `signerChanges.maxWeight`.' },
  MASTER_WEIGHT_NOT_ALLOWED: {
    outcome: 'reject',
    message: 'A master weight not in `signerChanges.allowedMasterWeights` (default `[0]`).',
  },
  THRESHOLD_TOO_LOW: { outcome: 'reject', message: 'A threshold set below `signerChanges.minThresholds`.' },
  EVALUATION_FAILED: {
    outcome: 'reject',
    message: 'A summary shaped in a way no rule foresaw (defence in depth; never signed).',
  },
  HOLD_AMOUNT_ABOVE: { outcome: 'hold', message: "An asset's sum is above `manualApproval.amountAbove`." },
  HOLD_SIGNER_CHANGE: {
    outcome: 'hold',
    message: 'A signer or threshold change while `manualApproval.signerChanges`.',
  },
  HOLD_UNKNOWN_DESTINATION: {
    outcome: 'hold',
    message: 'A destination in neither `manualApproval.knownDestinations` nor `destinations.allow`.',
  },
  HOLD_OPERATION: { outcome: 'hold', message: 'An operation type listed in `manualApproval.operations`.' },
  HOLD_CONTRACT_CALL: { outcome: 'hold', message: 'Any contract call while `manualApproval.contractCalls`.' },
});

/** Every reason code evaluation can produce, and what it does to the outcome. */
export const REASON_CODES = reasonOutcomes(policyReasons);

export type ReasonCode = keyof typeof REASON_CODES;

/** Soroban invocation trees are bounded by XDR depth limits; this bound keeps recursion safe on any input. */
const MAX_INVOCATION_DEPTH = 64;

const KNOWN_OPERATIONS: ReadonlySet<string> = new Set(OPERATION_TYPES);
const UNBOUNDED: ReadonlySet<string> = new Set(UNBOUNDED_OUTFLOWS);

/** One evaluation's findings and spend, collected as the rules run. */
class Findings {
  readonly reasons: Reason[] = [];
  readonly #seen = new Set<string>();
  readonly spend = new Map<string, bigint>();
  /** Stroops of fee charged to one of our accounts: native spend for velocity only (checkSpend). */
  fee = 0n;
  /** Destinations an outflow of ours goes to, for the manual-approval "unknown destination" rule. */
  readonly destinations: { address: string; opIndex?: number; field: string }[] = [];

  add(code: ReasonCode, message: string, opIndex?: number, field?: string): void {
    const key = `${code}|${opIndex ?? ''}|${field ?? ''}|${message}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    const r: Reason = { code, message };
    if (opIndex !== undefined) r.opIndex = opIndex;
    if (field !== undefined) r.field = field;
    this.reasons.push(r);
  }

  addSpend(key: string, amount: bigint): void {
    this.spend.set(key, (this.spend.get(key) ?? 0n) + amount);
  }

  decision(): Decision {
    const severities = this.reasons.map((r) => REASON_CODES[r.code as ReasonCode]);
    const outcome: Outcome = severities.includes('reject')
      ? 'reject'
      : severities.includes('hold')
        ? 'hold'
        : 'approve';
    const spend = [...this.spend.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([assetKey, amount]) => ({ assetKey, amount }));
    return { outcome, reasons: this.reasons, spend, fee: this.fee };
  }
}

const isOurs = (policy: Policy, address: string | undefined): boolean =>
  typeof address === 'string' && policy.accounts.has(baseAccount(address));

/** Destination allow/deny lists and the memo-required list, on the base account (address.ts). */
function checkDestination(policy: Policy, f: Findings, address: unknown, opIndex: number | undefined, field: string) {
  if (typeof address !== 'string' || address === '') {
    f.add('MALFORMED_SUMMARY', `${field} is missing`, opIndex, field);
    return;
  }
  const base = baseAccount(address);
  if (policy.destinations.deny.has(base)) f.add('DESTINATION_DENIED', `${address} is on the deny list`, opIndex, field);
  else if (policy.destinations.allow && !policy.destinations.allow.has(base)) {
    f.add('DESTINATION_NOT_ALLOWED', `${address} is not on the allow list`, opIndex, field);
  }
  f.destinations.push({ address: base, field, ...(opIndex === undefined ? {} : { opIndex }) });
}

/** An outflow of `amountText` units of `key` from one of our accounts. */
function outflow(f: Findings, key: string, amountText: unknown, opIndex: number, field: string): void {
  const units = typeof amountText === 'string' ? parseAmount(amountText) : undefined;
  if (units === undefined) {
    f.add('AMOUNT_INVALID', `${field} is not an exact amount with at most 7 decimals`, opIndex, field);
    return;
  }
  f.addSpend(key, units);
}

function checkOutflows(policy: Policy, f: Findings, op: OperationSummary) {
  const i = op.index;
  const at = `operations[${i}]`;
  switch (op.type) {
    case 'payment':
      if (!op.asset) return f.add('MALFORMED_SUMMARY', `${at}.asset is missing`, i, `${at}.asset`);
      outflow(f, assetKey(op.asset), op.amount, i, `${at}.amount`);
      return checkDestination(policy, f, op.destination, i, `${at}.destination`);
    case 'pathPaymentStrictReceive':
    case 'pathPaymentStrictSend': {
      // What leaves the account is the send side: at most sendMax, or exactly sendAmount (CAP-0010).
      const sendAsset = op.sendAsset ?? op.asset;
      if (!sendAsset) return f.add('MALFORMED_SUMMARY', `${at}.sendAsset is missing`, i, `${at}.sendAsset`);
      const strictReceive = op.type === 'pathPaymentStrictReceive';
      const amount = strictReceive ? op.sendMax : op.sendAmount;
      outflow(f, assetKey(sendAsset), amount, i, `${at}.${strictReceive ? 'sendMax' : 'sendAmount'}`);
      return checkDestination(policy, f, op.destination, i, `${at}.destination`);
    }
    case 'createAccount':
      outflow(f, 'native', op.startingBalance ?? op.amount, i, `${at}.startingBalance`);
      return checkDestination(policy, f, op.destination, i, `${at}.destination`);
    case 'createClaimableBalance': {
      if (!op.asset) return f.add('MALFORMED_SUMMARY', `${at}.asset is missing`, i, `${at}.asset`);
      outflow(f, assetKey(op.asset), op.amount, i, `${at}.amount`);
      // Every claimant may take the balance, so each one is a destination.
      const claimants = op.raw?.claimants;
      if (!Array.isArray(claimants) || claimants.length === 0) {
        return f.add('MALFORMED_SUMMARY', `${at}.raw.claimants is missing`, i, `${at}.raw.claimants`);
      }
      claimants.forEach((c, j) => {
        const dest = c !== null && typeof c === 'object' ? (c as Record<string, unknown>).destination : undefined;
        checkDestination(policy, f, dest, i, `${at}.raw.claimants[${j}].destination`);
      });
      return;
    }
    case 'manageSellOffer':
    case 'createPassiveSellOffer': {
      // An offer sells up to `amount` of `selling` to whoever takes it.
      const selling = op.selling ?? op.asset;
      if (!selling) return f.add('MALFORMED_SUMMARY', `${at}.selling is missing`, i, `${at}.selling`);
      return outflow(f, assetKey(selling), op.amount, i, `${at}.amount`);
    }
    case 'manageBuyOffer': {
      // Buying `amount` of `buying` at `price` (selling per buying) spends up to amount * price of `selling`,
      // rounded up so the limit is never under-counted.
      if (!op.selling) return f.add('MALFORMED_SUMMARY', `${at}.selling is missing`, i, `${at}.selling`);
      const buy = typeof op.amount === 'string' ? parseAmount(op.amount) : undefined;
      const price = typeof op.price === 'string' ? parseRatio(op.price) : undefined;
      if (buy === undefined || price === undefined) {
        return f.add('AMOUNT_INVALID', `${at}.amount or ${at}.price is not an exact number`, i, `${at}.amount`);
      }
      return f.addSpend(assetKey(op.selling), (buy * price.num + price.den - 1n) / price.den);
    }
    case 'accountMerge':
      checkDestination(policy, f, op.destination, i, `${at}.destination`);
      return unbounded(policy, f, op);
    case 'liquidityPoolDeposit':
      return unbounded(policy, f, op);
    default:
      return;
  }
}

function unbounded(policy: Policy, f: Findings, op: OperationSummary): void {
  if (!policy.allowUnboundedOutflows.has(op.type)) {
    f.add(
      'UNBOUNDED_OUTFLOW',
      `${op.type} moves an amount the transaction does not state; it is refused unless allowUnboundedOutflows lists it`,
      op.index,
      `operations[${op.index}].type`,
    );
  }
}

/** setOptions changes that need the HIGH threshold (stellar-core SetOptionsOpFrame::getThresholdLevel). */
function checkSignerChanges(policy: Policy, f: Findings, op: OperationSummary, members?: Members) {
  const so = op.setOptions;
  const i = op.index;
  const at = `operations[${i}].setOptions`;
  if (!so) return f.add('MALFORMED_SUMMARY', `${at} is missing`, i, at);
  const thresholds = [
    ['lowThreshold', so.lowThreshold, 'low'],
    ['medThreshold', so.medThreshold, 'medium'],
    ['highThreshold', so.highThreshold, 'high'],
  ] as const;
  const changes =
    so.masterWeight !== undefined || so.signer !== undefined || thresholds.some(([, v]) => v !== undefined);
  if (!changes) return;
  const sc = policy.signerChanges;
  if (!sc.accounts.has(baseAccount(op.source))) {
    f.add('SIGNER_CHANGE_NOT_ALLOWED', `signer or threshold changes are not allowed for ${op.source}`, i, at);
  }
  if (so.masterWeight !== undefined && !sc.allowedMasterWeights.has(so.masterWeight)) {
    f.add('MASTER_WEIGHT_NOT_ALLOWED', `master weight ${so.masterWeight} is not allowed`, i, `${at}.masterWeight`);
  }
  for (const [name, value, level] of thresholds) {
    if (value !== undefined && value < sc.minThresholds[level]) {
      f.add(
        'THRESHOLD_TOO_LOW',
        `${name} ${value} is below the minimum ${sc.minThresholds[level]}`,
        i,
        `${at}.${name}`,
      );
    }
  }
  if (so.signer !== undefined) {
    const { key, weight } = so.signer;
    const removing = weight === 0;
    const member = sc.clusterMembers && members?.has(key) === true;
    if (!member && !(removing ? sc.removeKeys : sc.addKeys).has(key)) {
      f.add(
        'SIGNER_KEY_NOT_ALLOWED',
        `${removing ? 'removing' : 'adding'} signer ${key} is not allowed`,
        i,
        `${at}.signer`,
      );
    }
    if (weight > sc.maxWeight) {
      f.add('SIGNER_WEIGHT_TOO_HIGH', `signer weight ${weight} is above ${sc.maxWeight}`, i, `${at}.signer.weight`);
    }
  }
  if (policy.manualApproval.signerChanges) {
    f.add('HOLD_SIGNER_CHANGE', 'signer and threshold changes need manual approval', i, at);
  }
}

/** A token amount argument (i128 rendered as digits, or a small integer) in base units. */
function tokenUnits(v: unknown): bigint | undefined {
  if (typeof v === 'string') return parseInteger(v, (1n << 127n) - 1n);
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  return undefined;
}

/** Base units of a token with `decimals` as 7-decimal units, rounded up (never under-count a limit). */
function toStroopScale(units: bigint, decimals: number): bigint {
  if (decimals <= 7) return units * 10n ** BigInt(7 - decimals);
  const d = 10n ** BigInt(decimals - 7);
  return (units + d - 1n) / d;
}

function argEquals(arg: unknown, allowed: string | number | boolean): boolean {
  if (typeof arg === typeof allowed) return arg === allowed;
  // i128/u64 arguments arrive as digit strings; a policy may write them as YAML numbers.
  return typeof allowed === 'number' && typeof arg === 'string' && arg === String(allowed);
}

/** Token transfers found in one invocation tree, as a multiset of `key -> (count, spend)`. */
type Transfers = Map<string, Transfer>;
interface Transfer {
  count: number;
  assetKey: string;
  amount: bigint;
}

/**
 * Check one invocation node and its sub-invocations against the contract rules; record transfers out of our
 * accounts into `transfers` (spend is merged by the caller).
 */
function checkInvocation(
  policy: Policy,
  f: Findings,
  inv: InvocationSummary,
  ctx: { opIndex?: number; field: string; depth: number; transfers: Transfers },
): void {
  const { opIndex, field } = ctx;
  if (ctx.depth > MAX_INVOCATION_DEPTH) {
    f.add('INVOCATION_TOO_DEEP', `the invocation tree is deeper than ${MAX_INVOCATION_DEPTH}`, opIndex, field);
    return;
  }
  if (inv.kind !== 'contract') {
    f.add('HOST_FUNCTION_NOT_ALLOWED', `${inv.functionName ?? inv.kind} is not a contract call`, opIndex, field);
  } else {
    const contract = inv.contractId === undefined ? undefined : policy.contracts.get(inv.contractId);
    const rule = contract?.get(inv.functionName ?? '');
    if (!contract)
      f.add('CONTRACT_NOT_ALLOWED', `contract ${inv.contractId ?? '(none)'} is not allowed`, opIndex, field);
    else if (!rule) {
      f.add(
        'FUNCTION_NOT_ALLOWED',
        `${inv.functionName ?? '(none)'} of ${inv.contractId} is not allowed`,
        opIndex,
        field,
      );
    } else checkCall(policy, f, inv, rule, ctx);
  }
  const subs = Array.isArray(inv.subInvocations) ? inv.subInvocations : [];
  subs.forEach((sub, j) => {
    checkInvocation(policy, f, sub, { ...ctx, field: `${field}.subInvocations[${j}]`, depth: ctx.depth + 1 });
  });
}

function checkCall(
  policy: Policy,
  f: Findings,
  inv: InvocationSummary,
  rule: FunctionRule,
  ctx: { opIndex?: number; field: string; transfers: Transfers },
): void {
  const { opIndex, field } = ctx;
  const args = Array.isArray(inv.args) ? inv.args : [];
  for (const a of rule.args) {
    if (!a.oneOf.some((allowed) => argEquals(args[a.index], allowed))) {
      f.add(
        'ARGUMENT_NOT_ALLOWED',
        `argument ${a.index} of ${rule.name} is not an allowed value`,
        opIndex,
        `${field}.args[${a.index}]`,
      );
    }
  }
  const token = rule.token;
  if (!token) return;
  const units = tokenUnits(args[token.amount]);
  if (units === undefined) {
    f.add(
      'AMOUNT_INVALID',
      `argument ${token.amount} of ${rule.name} is not a token amount`,
      opIndex,
      `${field}.args[${token.amount}]`,
    );
    return;
  }
  if (rule.maxAmount !== undefined && units > rule.maxAmount) {
    f.add(
      'AMOUNT_OVER_CALL_LIMIT',
      `${rule.name} of ${formatAmount(units, token.decimals)} is above ${formatAmount(rule.maxAmount, token.decimals)}`,
      opIndex,
      `${field}.args[${token.amount}]`,
    );
  }
  const to = args[token.to];
  const toField = `${field}.args[${token.to}]`;
  // A missing recipient argument is not an allowed recipient either.
  const allowedTo = typeof to === 'string' && (rule.recipients?.has(to) || rule.recipients?.has(baseAccount(to)));
  if (rule.recipients && !allowedTo) {
    f.add('RECIPIENT_NOT_ALLOWED', `${String(to)} is not an allowed recipient of ${rule.name}`, opIndex, toField);
  }
  const from = args[token.from];
  // Only value leaving one of our accounts counts: a transfer from someone else needs their auth, not ours.
  if (typeof from === 'string' && isOurs(policy, from)) {
    checkDestination(policy, f, to, opIndex, toField);
    const key = `${inv.contractId}|${rule.name}|${JSON.stringify(args)}`;
    const seen = ctx.transfers.get(key);
    const amount = toStroopScale(units, token.decimals);
    ctx.transfers.set(key, { count: (seen?.count ?? 0) + 1, assetKey: token.asset, amount });
  }
}

/**
 * The same call appears in the operation's root invocation and again in the auth entry that authorizes it, so
 * the two are merged as a multiset union (per distinct call, the larger count), not summed. Auth entries are
 * summed among themselves: each one is a separate authorization the host can consume (soroban-env-host
 * auth.rs matches every require_auth against the entries not yet used), so two entries authorizing the same
 * transfer may pay it twice. Per call, the transaction can pay it max(root, all entries) times; the entries
 * this node signed (and charged) in an auth round already account for their count, so only the rest is new.
 */
function mergeTransfers(f: Findings, root: Transfers, authorized: Transfers, alreadyCharged: Transfers): void {
  const keys = new Set([...root.keys(), ...authorized.keys(), ...alreadyCharged.keys()]);
  for (const k of keys) {
    const r = root.get(k)?.count ?? 0;
    const c = alreadyCharged.get(k)?.count ?? 0;
    const total = Math.max(r, (authorized.get(k)?.count ?? 0) + c);
    const v = (root.get(k) ?? authorized.get(k) ?? alreadyCharged.get(k)) as Transfer;
    if (total - c > 0) f.addSpend(v.assetKey, v.amount * BigInt(total - c));
  }
}

/**
 * An auth entry's expiration ledger is inclusive (soroban-env-host auth.rs: refused only when the current
 * ledger is past it) and must be within the policy window.
 */
function checkExpiration(
  policy: Policy,
  f: Findings,
  e: AuthEntrySummary,
  currentLedger: number,
  at: string,
  opIndex?: number,
) {
  const exp = e.signatureExpirationLedger;
  const field = `${at}.signatureExpirationLedger`;
  const window = policy.soroban.maxAuthExpirationLedgers;
  if (typeof exp !== 'number' || !Number.isInteger(exp))
    f.add('MALFORMED_SUMMARY', `${field} is missing`, opIndex, field);
  else if (exp < currentLedger)
    f.add('AUTH_EXPIRED', `expiration ledger ${exp} is before ledger ${currentLedger}`, opIndex, field);
  else if (exp > currentLedger + window) {
    f.add(
      'AUTH_EXPIRATION_TOO_FAR',
      `expiration ledger ${exp} is more than ${window} ledgers after ${currentLedger}`,
      opIndex,
      field,
    );
  }
}

function checkHostFunction(
  policy: Policy,
  f: Findings,
  op: OperationSummary,
  currentLedger?: number,
  charged?: ReadonlySet<string>,
) {
  const i = op.index;
  const at = `operations[${i}]`;
  if (!op.invocation) return f.add('MALFORMED_SUMMARY', `${at}.invocation is missing`, i, `${at}.invocation`);
  const root: Transfers = new Map();
  checkInvocation(policy, f, op.invocation, { opIndex: i, field: `${at}.invocation`, depth: 0, transfers: root });
  // One map for every entry: counts add up across entries (see mergeTransfers); entries already charged apart.
  const authorized: Transfers = new Map();
  const alreadyCharged: Transfers = new Map();
  (op.authEntries ?? []).forEach((e, j) => {
    const field = `${at}.authEntries[${j}]`;
    checkInvocation(policy, f, e.invocation, {
      opIndex: i,
      field: `${field}.invocation`,
      depth: 0,
      transfers: charged?.has(`${i}:${j}`) ? alreadyCharged : authorized,
    });
    // Address entries of our accounts are signed by us separately; source-account entries ride on the envelope.
    if (
      (e.credentials === 'address' || e.credentials === 'addressV2') &&
      isOurs(policy, e.address) &&
      currentLedger !== undefined
    ) {
      checkExpiration(policy, f, e, currentLedger, field, i);
    }
  });
  mergeTransfers(f, root, authorized, alreadyCharged);
  if (policy.manualApproval.contractCalls)
    f.add('HOLD_CONTRACT_CALL', 'contract calls need manual approval', i, `${at}.invocation`);
}

/** Per asset: allowed, max per transaction, velocity windows, manual-approval thresholds. */
function checkSpend(policy: Policy, f: Findings, spent: SpentFn): void {
  const keys = new Set(f.spend.keys());
  if (f.fee > 0n) keys.add('native');
  for (const key of [...keys].sort()) {
    const total = f.spend.get(key) ?? 0n;
    // The fee charged to our account is XLM leaving it: it counts toward native velocity windows, but it is not a
    // payment (maxPerTx and manual-approval amounts are about what the operations send; fees.* caps the fee).
    const fee = key === 'native' ? f.fee : 0n;
    const rule = policy.assets.get(key);
    if (!rule) {
      if (total > 0n) f.add('ASSET_NOT_ALLOWED', `${key} is not an allowed asset`, undefined, `assets`);
      continue;
    }
    if (rule.maxPerTx !== undefined && total > rule.maxPerTx) {
      f.add(
        'AMOUNT_OVER_TX_LIMIT',
        `${formatAmount(total)} ${key} is above the per-transaction limit ${formatAmount(rule.maxPerTx)}`,
        undefined,
        key,
      );
    }
    for (const v of rule.velocity) {
      let already: bigint;
      try {
        already = spent(key, v.windowSeconds);
      } catch {
        f.add('VELOCITY_UNAVAILABLE', `the amount already signed for ${key} cannot be read`, undefined, key);
        continue;
      }
      if (typeof already !== 'bigint') {
        f.add('VELOCITY_UNAVAILABLE', `the amount already signed for ${key} is not a bigint`, undefined, key);
      } else if (already + total + fee > v.max) {
        f.add(
          'VELOCITY_EXCEEDED',
          `${formatAmount(already)} already signed + ${formatAmount(total + fee)} ${key}${fee > 0n ? ` (fee ${formatAmount(fee)} included)` : ''} is above ${formatAmount(v.max)} per ${v.windowSeconds}s`,
          undefined,
          key,
        );
      }
    }
    const holdAbove = policy.manualApproval.amountAbove.get(key);
    if (holdAbove !== undefined && total > holdAbove) {
      f.add(
        'HOLD_AMOUNT_ABOVE',
        `${formatAmount(total)} ${key} is above the manual-approval amount ${formatAmount(holdAbove)}`,
        undefined,
        key,
      );
    }
  }
}

/**
 * The fee caps: `fees.maxFee` for a transaction (a fee bump's inner one too), `fees.maxFeeBump` for the outer fee
 * of a fee bump (maxFee when unset), `fees.maxFeePerOp` times the operations. Returns the fee in stroops when valid.
 */
function checkFee(
  policy: Policy,
  f: Findings,
  fee: unknown,
  opCount: number,
  field: string,
  outer = false,
): bigint | undefined {
  const stroops = typeof fee === 'string' ? parseInteger(fee, INT64_MAX) : undefined;
  if (stroops === undefined) {
    f.add('FEE_INVALID', `${field} is not a whole number of stroops`, undefined, field);
    return undefined;
  }
  const { maxFee, maxFeeBump, maxFeePerOp } = policy.fees;
  const cap = outer ? (maxFeeBump ?? maxFee) : maxFee;
  if (cap !== undefined && stroops > cap) {
    const name = outer && maxFeeBump !== undefined ? 'fees.maxFeeBump' : 'fees.maxFee';
    f.add('FEE_TOO_HIGH', `fee ${stroops} is above ${cap} stroops (${name})`, undefined, field);
  }
  if (maxFeePerOp !== undefined && opCount > 0 && stroops > maxFeePerOp * BigInt(opCount)) {
    f.add(
      'FEE_TOO_HIGH',
      `fee ${stroops} is above ${maxFeePerOp} stroops per operation (${opCount})`,
      undefined,
      field,
    );
  }
  return stroops;
}

/** CAP-21 time bounds: a finite maxTime within the window, not already past, and minTime <= maxTime. */
function checkValidity(policy: Policy, f: Findings, tx: TransactionSummary, now: number) {
  const tb = tx.preconditions?.timeBounds ?? null;
  const max = tb ? parseInteger(tb.maxTime) : undefined;
  const min = tb ? parseInteger(tb.minTime) : undefined;
  if (tb && (max === undefined || min === undefined)) {
    return f.add(
      'MALFORMED_SUMMARY',
      'preconditions.timeBounds are not unix seconds',
      undefined,
      'preconditions.timeBounds',
    );
  }
  if (!tb || max === 0n || max === undefined || min === undefined) {
    return f.add(
      'UNBOUNDED_VALIDITY',
      'the transaction has no maxTime: it would stay valid forever',
      undefined,
      'preconditions.timeBounds.maxTime',
    );
  }
  const nowS = BigInt(Math.floor(now));
  const window = BigInt(policy.validity.maxWindowSeconds);
  if (min > max)
    f.add(
      'INVALID_TIME_BOUNDS',
      `minTime ${min} is after maxTime ${max}`,
      undefined,
      'preconditions.timeBounds.minTime',
    );
  if (max <= nowS)
    f.add('VALIDITY_EXPIRED', `maxTime ${max} has passed (now ${nowS})`, undefined, 'preconditions.timeBounds.maxTime');
  else if (max - nowS > window) {
    f.add(
      'VALIDITY_TOO_LONG',
      `maxTime is ${max - nowS}s ahead, more than ${window}s`,
      undefined,
      'preconditions.timeBounds.maxTime',
    );
  }
}

function checkMemo(policy: Policy, f: Findings, tx: TransactionSummary): void {
  const type = tx.memo?.type ?? 'none';
  const m = policy.memo;
  if (type === 'none') {
    if (m.required) f.add('MEMO_REQUIRED', 'the policy requires a memo', undefined, 'memo');
    else if (f.destinations.some((d) => m.requiredForDestinations.has(d.address))) {
      f.add('MEMO_REQUIRED', 'a destination requires a memo', undefined, 'memo');
    }
    return;
  }
  if (m.forbidden) f.add('MEMO_FORBIDDEN', 'the policy forbids memos', undefined, 'memo');
  if (m.types && !m.types.has(type))
    f.add('MEMO_TYPE_NOT_ALLOWED', `memo type ${type} is not allowed`, undefined, 'memo.type');
}

function checkUnknownDestinations(policy: Policy, f: Findings): void {
  if (!policy.manualApproval.unknownDestination) return;
  for (const d of f.destinations) {
    if (!policy.manualApproval.knownDestinations.has(d.address) && !policy.destinations.allow?.has(d.address)) {
      f.add('HOLD_UNKNOWN_DESTINATION', `${d.address} is not a known destination`, d.opIndex, d.field);
    }
  }
}

function checkTransaction(policy: Policy, f: Findings, tx: TransactionSummary, input: EvaluateInput): void {
  const ops = Array.isArray(tx.operations) ? tx.operations : [];
  if (ops.length === 0) f.add('NO_OPERATIONS', 'the transaction has no operations', undefined, 'operations');
  const fee = checkFee(policy, f, tx.fee, ops.length, tx === input.summary ? 'fee' : 'inner.fee');
  // A plain transaction's fee is charged to its source (ours, or the transaction is refused anyway). A fee bump's
  // inner fee is never charged: the outer fee is, to the fee source (CAP-15), counted in evaluate().
  if (tx === input.summary && fee !== undefined && isOurs(policy, tx.source)) f.fee += fee;
  if (tx.sorobanResourceFee !== undefined) {
    const rf = parseInteger(tx.sorobanResourceFee);
    const max = policy.soroban.maxResourceFee;
    if (rf === undefined)
      f.add('FEE_INVALID', 'sorobanResourceFee is not a whole number of stroops', undefined, 'sorobanResourceFee');
    else if (max !== undefined && rf > max) {
      f.add('RESOURCE_FEE_TOO_HIGH', `resource fee ${rf} is above ${max} stroops`, undefined, 'sorobanResourceFee');
    }
  }
  checkValidity(policy, f, tx, input.now);

  ops.forEach((op, position) => {
    const i = typeof op.index === 'number' ? op.index : position;
    const at = `operations[${i}]`;
    if (op.type === 'unknown' || !KNOWN_OPERATIONS.has(op.type)) {
      f.add('UNKNOWN_OPERATION', `operation ${i} has a type this node does not understand`, i, `${at}.type`);
      return;
    }
    if (!policy.operations.has(op.type))
      f.add('OP_NOT_ALLOWED', `${op.type} is not an allowed operation`, i, `${at}.type`);
    if (policy.manualApproval.operations.has(op.type)) {
      f.add('HOLD_OPERATION', `${op.type} needs manual approval`, i, `${at}.type`);
    }
    // A signature of this node counts for every account that lists its key, not only the ones in the policy:
    // an operation sourced by any other account could move value this policy never measured, so it is refused.
    if (isOurs(policy, op.source)) checkOutflows(policy, f, op);
    else {
      f.add(
        'ACCOUNT_NOT_COSIGNED',
        `operation ${i} is sourced by ${op.source}, not an account this node cosigns for`,
        i,
        `${at}.source`,
      );
      if (UNBOUNDED.has(op.type)) unbounded(policy, f, op);
    }
    if (op.type === 'setOptions') checkSignerChanges(policy, f, op, input.members);
    if (op.type === 'invokeHostFunction')
      checkHostFunction(policy, f, op, input.currentLedger, input.chargedAuthEntries);
  });

  checkMemo(policy, f, tx);
}

function rejectAll(code: ReasonCode, message: string): Decision {
  return { outcome: 'reject', reasons: [{ code, message }], spend: [], fee: 0n };
}

/**
 * Evaluate a transaction (or fee bump) against a loaded policy. Pure and deterministic; never throws.
 * For a fee bump the inner transaction is evaluated, plus the outer fee.
 */
export function evaluate(policy: Policy, input: EvaluateInput): Decision {
  try {
    const f = new Findings();
    const s = input.summary;
    if (s === null || typeof s !== 'object') return rejectAll('MALFORMED_SUMMARY', 'the summary is not an object');
    const txs = s.kind === 'feeBump' ? [s, s.inner] : [s];
    for (const t of txs) {
      if (t && t.networkPassphrase !== policy.network) {
        f.add(
          'WRONG_NETWORK',
          'the transaction is for another network than this node signs for',
          undefined,
          'networkPassphrase',
        );
      }
    }
    let tx: TransactionSummary = s;
    if (s.kind === 'feeBump') {
      if (!s.inner) return rejectAll('MALFORMED_SUMMARY', 'a fee bump without its inner transaction');
      tx = s.inner;
      // stellar-core FeeBumpTransactionFrame: the outer fee covers the inner operations plus one.
      const innerOps = Array.isArray(tx.operations) ? tx.operations.length : 0;
      const outerFee = checkFee(policy, f, s.fee, innerOps + 1, 'fee', true);
      // The fee source pays the outer fee (CAP-15): it counts toward our velocity when the payer is ours. The fee
      // is the most the network may charge; the node cannot know the charged fee in advance, so it counts all of it.
      if (outerFee !== undefined && isOurs(policy, s.feeSource)) f.fee += outerFee;
    }
    // The transaction's source (a fee bump: the inner source) must be ours: it is the account whose sequence
    // slot the node's signing ledger guards, and the one on whose behalf the node reviews every operation.
    if (!isOurs(policy, tx.source)) {
      f.add('ACCOUNT_NOT_COSIGNED', `${tx.source} is not an account this node cosigns for`, undefined, 'source');
    }
    checkTransaction(policy, f, tx, input);
    checkSpend(policy, f, input.spent);
    checkUnknownDestinations(policy, f);
    return f.decision();
  } catch (e) {
    // Defence in depth: a summary shaped in a way no rule foresaw is refused, never signed and never a crash.
    return rejectAll('EVALUATION_FAILED', `the policy could not evaluate this summary: ${(e as Error).message}`);
  }
}

/**
 * Evaluate standalone Soroban authorization entries this node is asked to sign: each must use
 * address credentials of an account this node cosigns for, expire within the policy window, and call only
 * allowed contracts and functions with allowed arguments; token transfers count against velocity.
 */
export function evaluateAuthEntries(policy: Policy, input: AuthEntriesInput): Decision {
  try {
    const f = new Findings();
    const entries = Array.isArray(input.entries) ? input.entries : [];
    if (entries.length === 0) f.add('NO_AUTH_ENTRIES', 'there is no authorization entry to sign', undefined, 'entries');
    const authorized: Transfers = new Map();
    entries.forEach((e, j) => {
      const at = `entries[${j}]`;
      if (e.credentials !== 'address' && e.credentials !== 'addressV2') {
        f.add(
          'AUTH_CREDENTIALS_NOT_SIGNABLE',
          `${e.credentials} credentials are not signed as a standalone entry`,
          undefined,
          `${at}.credentials`,
        );
      } else {
        if (!isOurs(policy, e.address)) {
          f.add(
            'ACCOUNT_NOT_COSIGNED',
            `${e.address ?? '(none)'} is not one this node cosigns for`,
            undefined,
            `${at}.address`,
          );
        }
        checkExpiration(policy, f, e, input.currentLedger, at);
      }
      checkInvocation(policy, f, e.invocation, { field: `${at}.invocation`, depth: 0, transfers: authorized });
    });
    // Each entry is a separate authorization the host consumes separately: spend is summed across entries.
    mergeTransfers(f, new Map(), authorized, new Map());
    checkSpend(policy, f, input.spent);
    checkUnknownDestinations(policy, f);
    if (policy.manualApproval.contractCalls && entries.length > 0) {
      f.add('HOLD_CONTRACT_CALL', 'contract calls need manual approval', undefined, 'entries');
    }
    return f.decision();
  } catch (e) {
    return rejectAll('EVALUATION_FAILED', `the policy could not evaluate these entries: ${(e as Error).message}`);
  }
}

/** A Soroban transaction's declared resources (SorobanTransactionData), as the node decoded them. */
export interface SorobanResources {
  resourceFee: bigint;
  instructions: number;
  readOnlyEntries: number;
  readWriteEntries: number;
}

/**
 * The policy's Soroban resource limits: resource fee, footprint size, written entries and CPU
 * instructions. The transaction summary does not carry the footprint, so the node passes what it decoded from
 * SorobanTransactionData. Pure; returns reject reasons (empty when within every limit).
 */
export function checkSorobanResources(policy: Policy, r: SorobanResources): Reason[] {
  const out: Reason[] = [];
  const s = policy.soroban;
  if (s.maxResourceFee !== undefined && r.resourceFee > s.maxResourceFee) {
    out.push({
      code: 'RESOURCE_FEE_TOO_HIGH',
      message: `resource fee ${r.resourceFee} is above ${s.maxResourceFee} stroops`,
      field: 'sorobanData.resourceFee',
    });
  }
  const entries = r.readOnlyEntries + r.readWriteEntries;
  if (s.maxFootprintEntries !== undefined && entries > s.maxFootprintEntries) {
    out.push({
      code: 'FOOTPRINT_TOO_LARGE',
      message: `the footprint names ${entries} ledger entries, above ${s.maxFootprintEntries}`,
      field: 'sorobanData.resources.footprint',
    });
  }
  if (s.maxWriteEntries !== undefined && r.readWriteEntries > s.maxWriteEntries) {
    out.push({
      code: 'FOOTPRINT_TOO_LARGE',
      message: `the footprint writes ${r.readWriteEntries} ledger entries, above ${s.maxWriteEntries}`,
      field: 'sorobanData.resources.footprint.readWrite',
    });
  }
  if (s.maxInstructions !== undefined && r.instructions > s.maxInstructions) {
    out.push({
      code: 'INSTRUCTIONS_TOO_HIGH',
      message: `${r.instructions} instructions are above ${s.maxInstructions}`,
      field: 'sorobanData.resources.instructions',
    });
  }
  return out;
}

/**
 * A lower bound of the network's current ledger at `now` (unix seconds) from the policy's ledger clock: the
 * anchor ledger plus the ledgers that must have closed if each took `maxCloseSeconds` (stellar-core targets 5 s;
 * a slower assumption only lowers the estimate). The node cannot see the network, and a lower bound keeps the
 * window check safe: an entry accepted as expiring at most `maxAuthExpirationLedgers` after this estimate expires
 * at most that many ledgers after the true current ledger. undefined when the policy has no clock.
 */
export function ledgerLowerBound(policy: Policy, now: number): number | undefined {
  const c = policy.soroban.ledgerClock;
  if (c === undefined) return undefined;
  return c.ledger + Math.max(0, Math.floor((now - c.closedAt) / c.maxCloseSeconds));
}

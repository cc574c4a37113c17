import { readFileSync } from 'node:fs';
import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { parse as parseYaml } from 'yaml';
import {
  baseAccount as baseAccountOf,
  isAccountId,
  isContractId,
  isDestination,
  isPolicyAssetKey,
  isSignerKey,
} from './address.ts';
import { INT64_MAX, parseAmount, parseInteger } from './amount.ts';
import { policyErrors } from './errors.ts';

/**
 * A node's policy: one YAML document, validated once at boot, then frozen. Every field is
 * closed (`additionalProperties: false`): a misspelt rule is an error, never a rule silently not applied.
 * Defaults are restrictive: nothing is allowed that the operator did not list.
 *
 * See examples/policy.yaml for a documented policy.
 */

/** Operation types as the SDK names them (`OperationSummary.type`). `unknown` is never allowed. */
export const OPERATION_TYPES = [
  'createAccount',
  'payment',
  'pathPaymentStrictReceive',
  'pathPaymentStrictSend',
  'manageSellOffer',
  'manageBuyOffer',
  'createPassiveSellOffer',
  'setOptions',
  'changeTrust',
  'allowTrust',
  'accountMerge',
  'inflation',
  'manageData',
  'bumpSequence',
  'createClaimableBalance',
  'claimClaimableBalance',
  'beginSponsoringFutureReserves',
  'endSponsoringFutureReserves',
  'revokeAccountSponsorship',
  'revokeTrustlineSponsorship',
  'revokeOfferSponsorship',
  'revokeDataSponsorship',
  'revokeClaimableBalanceSponsorship',
  'revokeLiquidityPoolSponsorship',
  'revokeSignerSponsorship',
  'clawback',
  'clawbackClaimableBalance',
  'setTrustLineFlags',
  'liquidityPoolDeposit',
  'liquidityPoolWithdraw',
  'invokeHostFunction',
  'extendFootprintTtl',
  'restoreFootprint',
] as const;

/**
 * Operations that move value by an amount the transaction does not state: accountMerge sends the whole
 * balance (stellar-core MergeOpFrame), liquidityPoolDeposit names a pool id and maxima, not the assets.
 * They cannot be held to `maxPerTx` or velocity, so they are refused unless listed in `allowUnboundedOutflows`.
 */
export const UNBOUNDED_OUTFLOWS = ['accountMerge', 'liquidityPoolDeposit'] as const;

const ERR = 'x-error';
const literals = <T extends string>(values: readonly T[], error: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { [ERR]: error },
  );

const Amount = Type.Union([Type.String(), Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })], {
  [ERR]: 'must be a decimal amount (at most 7 decimal places, e.g. "250.5")',
});
const Stroops = Type.Union([Type.String(), Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })], {
  [ERR]: 'must be a whole number of stroops',
});
const Window = Type.Union([Type.String(), Type.Integer({ minimum: 1 })], {
  [ERR]: "must be a window such as '24h', '1h', '30m' or a number of seconds",
});
const Str = (error: string) => Type.String({ minLength: 1, maxLength: 256, [ERR]: error });
const Account = Str('must be a G... account id');
const Destination = Str('must be a G..., M... or C... address');
const AssetKey = Str("must be 'native', CODE:ISSUER or a C... contract id");
const OpType = literals(OPERATION_TYPES, 'must be a Stellar operation type (e.g. payment, setOptions)');
const closed = { additionalProperties: false } as const;
const Bool = (value: boolean) => Type.Boolean({ default: value, [ERR]: 'must be true or false' });
const Weight = (value: number) => Type.Integer({ minimum: 0, maximum: 255, default: value, [ERR]: 'must be 0-255' });
const List = <T extends TSchema>(item: T) => Type.Array(item, { default: [], maxItems: 1000, [ERR]: 'must be a list' });

const ArgRule = Type.Object(
  {
    index: Type.Integer({ minimum: 0, maximum: 63, [ERR]: 'must be an argument position 0-63' }),
    /** The argument, as packages/stellar renders it (scValToNative: addresses as strkeys, i128 as digits). */
    oneOf: Type.Array(Type.Union([Type.String(), Type.Number(), Type.Boolean()]), {
      minItems: 1,
      [ERR]: 'must be a non-empty list of values',
    }),
  },
  closed,
);

/** A SEP-41 token call that moves value: which arguments are the sender, the recipient and the amount. */
const TokenRule = Type.Object(
  {
    asset: AssetKey,
    decimals: Type.Integer({ minimum: 0, maximum: 18, default: 7, [ERR]: 'must be 0-18' }),
    from: Type.Integer({ minimum: 0, maximum: 63, default: 0 }),
    to: Type.Integer({ minimum: 0, maximum: 63, default: 1 }),
    amount: Type.Integer({ minimum: 0, maximum: 63, default: 2 }),
  },
  closed,
);

const FunctionRule = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 32, [ERR]: 'must be a contract function name' }),
    args: List(ArgRule),
    token: Type.Optional(TokenRule),
    maxAmount: Type.Optional(Amount),
    recipients: Type.Optional(Type.Array(Destination, { maxItems: 1000 })),
  },
  closed,
);

export const PolicySchema = Type.Object(
  {
    version: Type.Literal(1, { default: 1, [ERR]: 'must be 1' }),
    network: Type.String({ minLength: 1, maxLength: 256, [ERR]: 'must be a network passphrase' }),
    accounts: Type.Array(Account, { minItems: 1, maxItems: 100, [ERR]: 'must list at least one G... account' }),
    operations: Type.Array(OpType, { minItems: 1, [ERR]: 'must list at least one operation type' }),
    allowUnboundedOutflows: List(literals(UNBOUNDED_OUTFLOWS, 'must be accountMerge or liquidityPoolDeposit')),
    assets: List(
      Type.Object(
        {
          asset: AssetKey,
          maxPerTx: Type.Optional(Amount),
          velocity: List(Type.Object({ window: Window, max: Amount }, closed)),
        },
        closed,
      ),
    ),
    destinations: Type.Object(
      { allow: Type.Optional(Type.Array(Destination, { maxItems: 10_000 })), deny: List(Destination) },
      { ...closed, default: {} },
    ),
    contracts: List(
      Type.Object(
        { id: Str('must be a C... contract id'), functions: Type.Array(FunctionRule, { minItems: 1 }) },
        closed,
      ),
    ),
    soroban: Type.Object(
      {
        maxAuthExpirationLedgers: Type.Integer({
          minimum: 1,
          maximum: 3_110_400,
          default: 720,
          [ERR]: 'must be a number of ledgers',
        }),
        maxResourceFee: Type.Optional(Stroops),
        /** Most ledger entries a transaction's footprint may name (read-only + read-write). */
        maxFootprintEntries: Type.Optional(
          Type.Integer({ minimum: 0, maximum: 10_000, [ERR]: 'must be a number of ledger entries' }),
        ),
        /** Most entries the footprint may write (read-write). */
        maxWriteEntries: Type.Optional(
          Type.Integer({ minimum: 0, maximum: 10_000, [ERR]: 'must be a number of ledger entries' }),
        ),
        /** Most CPU instructions the transaction may declare. */
        maxInstructions: Type.Optional(
          Type.Integer({ minimum: 0, maximum: 4_294_967_295, [ERR]: 'must be a number of instructions' }),
        ),
        /**
         * How the node estimates the network's current ledger without seeing it (expiration windows): a ledger
         * the operator observed and when it closed (unix seconds), and the slowest close interval to assume.
         */
        ledgerClock: Type.Optional(
          Type.Object(
            {
              ledger: Type.Integer({ minimum: 1, maximum: 4_294_967_295, [ERR]: 'must be a ledger sequence' }),
              closedAt: Type.Integer({ minimum: 0, [ERR]: 'must be unix seconds' }),
              maxCloseSeconds: Type.Number({
                minimum: 0.001,
                maximum: 600,
                default: 6,
                [ERR]: 'must be seconds per ledger',
              }),
            },
            closed,
          ),
        ),
      },
      { ...closed, default: {} },
    ),
    /**
     * Fee caps in stroops. `maxFee`: the fee of a transaction (and of a fee bump's inner transaction);
     * `maxFeeBump`: the outer fee of a fee bump (without it, `maxFee` applies to that too); `maxFeePerOp`: per
     * operation (a fee bump counts its inner operations plus one). Production requires maxFee and maxFeeBump.
     */
    fees: Type.Object(
      { maxFee: Type.Optional(Stroops), maxFeeBump: Type.Optional(Stroops), maxFeePerOp: Type.Optional(Stroops) },
      { ...closed, default: {} },
    ),
    validity: Type.Object(
      {
        maxWindowSeconds: Type.Integer({
          minimum: 1,
          maximum: 31_536_000,
          default: 300,
          [ERR]: 'must be a number of seconds',
        }),
      },
      { ...closed, default: {} },
    ),
    memo: Type.Object(
      {
        required: Bool(false),
        forbidden: Bool(false),
        types: Type.Optional(
          Type.Array(literals(['text', 'id', 'hash', 'return'], 'must be text, id, hash or return')),
        ),
        requiredForDestinations: List(Destination),
      },
      { ...closed, default: {} },
    ),
    signerChanges: Type.Object(
      {
        accounts: List(Account),
        addKeys: List(Str('must be a signer key (G..., T..., X... or P...)')),
        removeKeys: List(Str('must be a signer key (G..., T..., X... or P...)')),
        /**
         * Also allow adding and removing the keys of the node's roster: cluster members its own operator accepted
         * on this node (`cosigner node roster allow`, services/cosigner keyring) plus this node's own keys. The
         * roster is node-local: the coordinator cannot add to it.
         */
        clusterMembers: Bool(false),
        maxWeight: Weight(255),
        allowedMasterWeights: Type.Array(Type.Integer({ minimum: 0, maximum: 255, [ERR]: 'must be 0-255' }), {
          default: [0],
        }),
        minThresholds: Type.Object({ low: Weight(0), medium: Weight(0), high: Weight(0) }, { ...closed, default: {} }),
      },
      { ...closed, default: {} },
    ),
    manualApproval: Type.Object(
      {
        amountAbove: List(Type.Object({ asset: AssetKey, amount: Amount }, closed)),
        signerChanges: Bool(false),
        unknownDestination: Bool(false),
        knownDestinations: List(Destination),
        operations: List(OpType),
        contractCalls: Bool(false),
      },
      { ...closed, default: {} },
    ),
  },
  closed,
);

/** The policy document as written (after defaults). */
export type PolicyDocument = Static<typeof PolicySchema>;

export interface VelocityLimit {
  readonly windowSeconds: number;
  /** Stroops (or 7-decimal base units of a contract token). */
  readonly max: bigint;
}

export interface AssetRule {
  readonly key: string;
  readonly maxPerTx: bigint | undefined;
  readonly velocity: readonly VelocityLimit[];
}

export interface FunctionRule {
  readonly name: string;
  readonly args: readonly { readonly index: number; readonly oneOf: readonly (string | number | boolean)[] }[];
  readonly token:
    | {
        readonly asset: string;
        readonly decimals: number;
        readonly from: number;
        readonly to: number;
        readonly amount: number;
      }
    | undefined;
  /** In token base units (10^decimals per unit). */
  readonly maxAmount: bigint | undefined;
  readonly recipients: ReadonlySet<string> | undefined;
}

/** A loaded, checked, frozen policy. Amounts are bigint base units; lists used for lookups are sets. */
export interface Policy {
  readonly document: PolicyDocument;
  readonly network: string;
  readonly accounts: ReadonlySet<string>;
  readonly operations: ReadonlySet<string>;
  readonly allowUnboundedOutflows: ReadonlySet<string>;
  readonly assets: ReadonlyMap<string, AssetRule>;
  readonly destinations: { readonly allow: ReadonlySet<string> | undefined; readonly deny: ReadonlySet<string> };
  readonly contracts: ReadonlyMap<string, ReadonlyMap<string, FunctionRule>>;
  readonly soroban: {
    readonly maxAuthExpirationLedgers: number;
    readonly maxResourceFee: bigint | undefined;
    readonly maxFootprintEntries: number | undefined;
    readonly maxWriteEntries: number | undefined;
    readonly maxInstructions: number | undefined;
    readonly ledgerClock:
      | { readonly ledger: number; readonly closedAt: number; readonly maxCloseSeconds: number }
      | undefined;
  };
  readonly fees: {
    readonly maxFee: bigint | undefined;
    readonly maxFeeBump: bigint | undefined;
    readonly maxFeePerOp: bigint | undefined;
  };
  readonly validity: { readonly maxWindowSeconds: number };
  readonly memo: {
    readonly required: boolean;
    readonly forbidden: boolean;
    readonly types: ReadonlySet<string> | undefined;
    readonly requiredForDestinations: ReadonlySet<string>;
  };
  readonly signerChanges: {
    readonly accounts: ReadonlySet<string>;
    readonly addKeys: ReadonlySet<string>;
    readonly removeKeys: ReadonlySet<string>;
    readonly clusterMembers: boolean;
    readonly maxWeight: number;
    readonly allowedMasterWeights: ReadonlySet<number>;
    readonly minThresholds: { readonly low: number; readonly medium: number; readonly high: number };
  };
  readonly manualApproval: {
    readonly amountAbove: ReadonlyMap<string, bigint>;
    readonly signerChanges: boolean;
    readonly unknownDestination: boolean;
    readonly knownDestinations: ReadonlySet<string>;
    readonly operations: ReadonlySet<string>;
    readonly contractCalls: boolean;
  };
}

export interface LoadOptions {
  /** Production mode: refuse an allowed asset without a velocity limit, and a policy without fee caps. */
  production?: boolean;
}

/** `assets[1].maxPerTx` from the validator's `/assets/1/maxPerTx`. */
function fieldName(pointer: string): string {
  let out = '';
  for (const part of pointer.split('/').slice(1)) {
    const p = part.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^[0-9]+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  }
  return out === '' ? '(top level)' : out;
}

function invalid(field: string, problem: string): Error {
  return policyErrors.error('POLICY_INVALID', { field, problem }, { message: `Invalid policy: ${field}: ${problem}.` });
}

/** The schema node a validator error points at (`#/properties/a/items/...`), to read its `x-error`. */
function schemaAt(path: string): Record<string, unknown> | undefined {
  let node: unknown = PolicySchema;
  for (const part of path.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node !== null && typeof node === 'object' ? (node as Record<string, unknown>) : undefined;
}

interface SchemaError {
  keyword: string;
  schemaPath: string;
  instancePath: string;
  message: string;
  params: unknown;
}

function describeSchemaError(e: SchemaError): { field: string; problem: string } {
  const params = e.params as { additionalProperties?: string[]; requiredProperties?: string[] };
  if (params.additionalProperties) {
    const name = params.additionalProperties[0]!;
    return { field: fieldName(`${e.instancePath}/${name}`), problem: 'unknown field' };
  }
  if (params.requiredProperties) {
    return { field: fieldName(`${e.instancePath}/${params.requiredProperties[0]!}`), problem: 'is required' };
  }
  // An error inside a union branch reports the union's message: "must be a decimal amount", not "must be string".
  const unionPath = e.schemaPath.replace(/\/anyOf\/[0-9]+$/, '');
  const custom = schemaAt(e.schemaPath)?.[ERR] ?? schemaAt(unionPath)?.[ERR];
  return { field: fieldName(e.instancePath), problem: typeof custom === 'string' ? custom : e.message };
}

function amountOf(v: string | number, field: string, decimals = 7): bigint {
  const units = parseAmount(String(v), decimals);
  if (units === undefined) {
    throw invalid(field, `must be a decimal amount (at most ${decimals} decimal places, e.g. "250.5")`);
  }
  return units;
}

function stroopsOf(v: string | number | undefined, field: string): bigint | undefined {
  if (v === undefined) return undefined;
  const n = parseInteger(String(v), INT64_MAX);
  if (n === undefined) throw invalid(field, 'must be a whole number of stroops');
  return n;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

function windowOf(v: string | number, field: string): number {
  if (typeof v === 'number') return v;
  const m = /^([1-9][0-9]{0,7})([smhd])$/.exec(v);
  if (!m) throw invalid(field, "must be a window such as '24h', '1h', '30m' or a number of seconds");
  return Number(m[1]) * UNIT_SECONDS[m[2]!]!;
}

function checked(values: readonly string[], field: string, ok: (s: string) => boolean, what: string): Set<string> {
  values.forEach((v, i) => {
    if (!ok(v)) throw invalid(`${field}[${i}]`, `must be ${what}`);
  });
  return new Set(values);
}

function refuseMutation(): never {
  throw new TypeError('a loaded policy is frozen');
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    const collection = o instanceof Map || o instanceof Set;
    // Object.freeze does not stop Map#set or Set#add: shadow the mutators so the loaded policy cannot change.
    if (collection) {
      for (const m of ['set', 'add', 'delete', 'clear']) Object.defineProperty(o, m, { value: refuseMutation });
    }
    Object.freeze(o);
    for (const v of collection ? [...o.values()] : Object.values(o as object)) deepFreeze(v);
  }
  return o;
}

function compile(doc: PolicyDocument, opts: LoadOptions): Policy {
  const accounts = checked(doc.accounts, 'accounts', isAccountId, 'a G... account id');

  const assets = new Map<string, AssetRule>();
  doc.assets.forEach((a, i) => {
    if (!isPolicyAssetKey(a.asset))
      throw invalid(`assets[${i}].asset`, "must be 'native', CODE:ISSUER or a C... contract id");
    if (assets.has(a.asset)) throw invalid(`assets[${i}].asset`, `${a.asset} is listed twice`);
    const velocity = a.velocity.map((v, j) => ({
      windowSeconds: windowOf(v.window, `assets[${i}].velocity[${j}].window`),
      max: amountOf(v.max, `assets[${i}].velocity[${j}].max`),
    }));
    if (opts.production && velocity.length === 0) {
      throw policyErrors.error(
        'POLICY_NO_VELOCITY_LIMIT',
        { field: `assets[${i}].velocity`, asset: a.asset },
        {
          message: `Production mode refuses assets[${i}] (${a.asset}) without a velocity limit: add assets[${i}].velocity.`,
        },
      );
    }
    const maxPerTx = a.maxPerTx === undefined ? undefined : amountOf(a.maxPerTx, `assets[${i}].maxPerTx`);
    assets.set(a.asset, { key: a.asset, maxPerTx, velocity });
  });

  const contracts = new Map<string, Map<string, FunctionRule>>();
  doc.contracts.forEach((c, i) => {
    if (!isContractId(c.id)) throw invalid(`contracts[${i}].id`, 'must be a C... contract id');
    if (contracts.has(c.id)) throw invalid(`contracts[${i}].id`, `${c.id} is listed twice`);
    const fns = new Map<string, FunctionRule>();
    c.functions.forEach((f, j) => {
      const at = `contracts[${i}].functions[${j}]`;
      if (fns.has(f.name)) throw invalid(`${at}.name`, `${f.name} is listed twice`);
      if (f.token && !assets.has(f.token.asset)) {
        throw invalid(`${at}.token.asset`, `${f.token.asset} is not listed in assets (its limits must apply)`);
      }
      if (!f.token && (f.maxAmount !== undefined || f.recipients !== undefined)) {
        throw invalid(
          `${at}.token`,
          'is required with maxAmount or recipients (which arguments are amount and recipient?)',
        );
      }
      const decimals = f.token?.decimals ?? 7;
      fns.set(f.name, {
        name: f.name,
        args: f.args,
        token: f.token,
        maxAmount: f.maxAmount === undefined ? undefined : amountOf(f.maxAmount, `${at}.maxAmount`, decimals),
        recipients:
          f.recipients === undefined
            ? undefined
            : checked(f.recipients, `${at}.recipients`, isDestination, 'a G..., M... or C... address'),
      });
    });
    contracts.set(c.id, fns);
  });

  if (doc.memo.required && doc.memo.forbidden)
    throw invalid('memo.forbidden', 'cannot be true when memo.required is true');

  const amountAbove = new Map<string, bigint>();
  doc.manualApproval.amountAbove.forEach((a, i) => {
    if (!isPolicyAssetKey(a.asset)) {
      throw invalid(`manualApproval.amountAbove[${i}].asset`, "must be 'native', CODE:ISSUER or a C... contract id");
    }
    amountAbove.set(a.asset, amountOf(a.amount, `manualApproval.amountAbove[${i}].amount`));
  });

  const destination = (list: readonly string[], field: string) =>
    checked(list, field, isDestination, 'a G..., M... or C... address');
  const signerKey = (list: readonly string[], field: string) =>
    checked(list, field, isSignerKey, 'a signer key (G..., T..., X... or P...)');

  if (opts.production) {
    // A fee is an outflow the amounts do not show: without a cap one signed fee bump can spend the whole balance.
    for (const field of ['maxFee', 'maxFeeBump'] as const) {
      if (doc.fees[field] === undefined) {
        throw policyErrors.error(
          'POLICY_NO_FEE_CAP',
          { field: `fees.${field}` },
          {
            message: `Production mode refuses a policy without fees.${field}: state the largest fee, in stroops, this node signs ${field === 'maxFee' ? 'for one transaction' : 'as the outer fee of a fee bump'}.`,
          },
        );
      }
    }
  }
  return {
    document: doc,
    network: doc.network,
    accounts,
    operations: new Set(doc.operations),
    allowUnboundedOutflows: new Set(doc.allowUnboundedOutflows),
    assets,
    destinations: {
      allow:
        doc.destinations.allow === undefined
          ? undefined
          : normalized(destination(doc.destinations.allow, 'destinations.allow')),
      deny: normalized(destination(doc.destinations.deny, 'destinations.deny')),
    },
    contracts,
    soroban: {
      maxAuthExpirationLedgers: doc.soroban.maxAuthExpirationLedgers,
      maxResourceFee: stroopsOf(doc.soroban.maxResourceFee, 'soroban.maxResourceFee'),
      maxFootprintEntries: doc.soroban.maxFootprintEntries,
      maxWriteEntries: doc.soroban.maxWriteEntries,
      maxInstructions: doc.soroban.maxInstructions,
      ledgerClock: doc.soroban.ledgerClock === undefined ? undefined : { ...doc.soroban.ledgerClock },
    },
    fees: {
      maxFee: stroopsOf(doc.fees.maxFee, 'fees.maxFee'),
      maxFeeBump: stroopsOf(doc.fees.maxFeeBump, 'fees.maxFeeBump'),
      maxFeePerOp: stroopsOf(doc.fees.maxFeePerOp, 'fees.maxFeePerOp'),
    },
    validity: { maxWindowSeconds: doc.validity.maxWindowSeconds },
    memo: {
      required: doc.memo.required,
      forbidden: doc.memo.forbidden,
      types: doc.memo.types === undefined ? undefined : new Set(doc.memo.types),
      requiredForDestinations: normalized(
        destination(doc.memo.requiredForDestinations, 'memo.requiredForDestinations'),
      ),
    },
    signerChanges: {
      accounts: checked(doc.signerChanges.accounts, 'signerChanges.accounts', isAccountId, 'a G... account id'),
      addKeys: signerKey(doc.signerChanges.addKeys, 'signerChanges.addKeys'),
      removeKeys: signerKey(doc.signerChanges.removeKeys, 'signerChanges.removeKeys'),
      clusterMembers: doc.signerChanges.clusterMembers,
      maxWeight: doc.signerChanges.maxWeight,
      allowedMasterWeights: new Set(doc.signerChanges.allowedMasterWeights),
      minThresholds: doc.signerChanges.minThresholds,
    },
    manualApproval: {
      amountAbove,
      signerChanges: doc.manualApproval.signerChanges,
      unknownDestination: doc.manualApproval.unknownDestination,
      knownDestinations: normalized(
        destination(doc.manualApproval.knownDestinations, 'manualApproval.knownDestinations'),
      ),
      operations: new Set(doc.manualApproval.operations),
      contractCalls: doc.manualApproval.contractCalls,
    },
  };
}

/** Destination lists compare base accounts (see address.ts): an M... entry stands for its G... account. */
function normalized(set: Set<string>): Set<string> {
  return new Set([...set].map(baseAccountOf));
}

/**
 * Validate a parsed policy document (YAML or JSON already parsed), apply defaults, compile and freeze it.
 * @throws CosignerError POLICY_INVALID naming the field (`assets[1].maxPerTx: must be a decimal amount ...`),
 *   POLICY_NO_VELOCITY_LIMIT in production when an allowed asset has no velocity limit, POLICY_NO_FEE_CAP in
 *   production without fees.maxFee and fees.maxFeeBump
 */
export function parsePolicy(input: unknown, opts: LoadOptions = {}): Policy {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw policyErrors.error('POLICY_BAD_YAML', {}, { message: 'The policy must be a YAML mapping.' });
  }
  const withDefaults = Value.Default(PolicySchema, structuredClone(input));
  if (!Value.Check(PolicySchema, withDefaults)) {
    const errors = [...Value.Errors(PolicySchema, withDefaults)].filter((e) => e.keyword !== 'boolean');
    // A union reports one error per branch; one line per field and problem is what an operator reads.
    const unique = new Map(
      errors.map((e) => describeSchemaError(e as SchemaError)).map((p) => [`${p.field}|${p.problem}`, p]),
    );
    const problems = [...unique.values()];
    const first = problems[0]!;
    throw policyErrors.error(
      'POLICY_INVALID',
      { field: first.field, problem: first.problem, problems: problems.slice(0, 20) },
      { message: `Invalid policy: ${first.field}: ${first.problem}.` },
    );
  }
  const doc = withDefaults as PolicyDocument;
  return deepFreeze(compile(doc, opts));
}

/**
 * Parse, validate and freeze a policy from YAML text (JSON is YAML too).
 * @throws CosignerError POLICY_BAD_YAML, POLICY_INVALID, POLICY_NO_VELOCITY_LIMIT, POLICY_NO_FEE_CAP
 */
export function loadPolicy(yamlText: string, opts: LoadOptions = {}): Policy {
  let parsed: unknown;
  try {
    // uniqueKeys: a key written twice is an error, never "the last one wins" (yaml's default, stated here).
    parsed = parseYaml(yamlText, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (cause) {
    const where = (cause as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    const at = where ? ` (line ${where.line}, column ${where.col})` : '';
    throw policyErrors.error('POLICY_BAD_YAML', where ? { ...where } : {}, {
      message: `The policy is not valid YAML${at}.`,
      cause,
    });
  }
  return parsePolicy(parsed, opts);
}

/**
 * Read a policy file and load it (see loadPolicy).
 * @throws CosignerError POLICY_UNREADABLE, POLICY_BAD_YAML, POLICY_INVALID, POLICY_NO_VELOCITY_LIMIT,
 *   POLICY_NO_FEE_CAP
 */
export function loadPolicyFile(path: string, opts: LoadOptions = {}): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw policyErrors.error('POLICY_UNREADABLE', { path }, { message: `Cannot read the policy file ${path}.`, cause });
  }
  return loadPolicy(text, opts);
}

import { readFile, writeFile } from 'node:fs/promises';
import { CosignerError } from '@cosigner/errors/errors';
import {
  buildChangeTransaction,
  checkSetupSafety,
  multisigChanges,
  type SignerChanges,
} from '@cosigner/policy/account-setup';
import {
  applyChanges,
  formatLockout,
  type LockoutReport,
  partyWeights,
  type SignerConfiguration,
  type SignerEntry,
} from '@cosigner/policy/lockout';
import { readSecretFile } from '@cosigner/runtime/secrets';
import { checkQuorumIntersection, type IntersectionReport } from '@cosigner/stellar/intersection';
import { Horizon, Keypair, TransactionBuilder } from '@stellar/stellar-sdk';
import { type Command, InvalidArgumentError } from 'commander';
import { cliErrors } from '../errors.ts';

/**
 * `cosigner account setup` and what every lifecycle command shares (rotate, node add|remove, thresholds set):
 * read an account's signers from Horizon, plan a setOptions change, refuse it when the result could lock the
 * account or hand it to one node (packages/policy lockout.ts), then carry it out as ONE reviewed transaction:
 * - on an account that is already the cluster's multisig account, a proposal through the coordinator: every
 *   node decodes and reviews it against its own policy (signerChanges) like any other transaction;
 * - on a fresh account (first setup), signed by the account's master key, which the operator provides as a
 *   0600 file read once (`--master-key-file`, never argv or env), or offline: `--unsigned-out` writes the
 *   unsigned transaction, the operator signs it where the key lives, and `--submit-signed` submits it after the
 *   same lock-out check is run on the operations the signed envelope actually holds.
 * Each step is also recorded as a `lifecycle.step` event on the coordinator when one is given.
 */

export interface Out {
  out(line: string): void;
  err(line: string): void;
}

export const stdio: Out = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** A refusal of the lock-out check: the message lists each problem with its field. */
export class LockoutError extends CosignerError {
  constructor(
    readonly report: LockoutReport,
    what: string,
  ) {
    super(
      'LIFECYCLE_LOCKOUT',
      cliErrors.specs.LIFECYCLE_LOCKOUT.status,
      `refusing ${what}: the resulting configuration is unsafe\n${formatLockout(report)}`,
      { problems: report.problems.map((p) => ({ field: p.field, message: p.message })) },
    );
    this.name = 'LockoutError';
  }
}

const FIELD_OF_LEVEL = { low: 'thresholds.low', medium: 'thresholds.med', high: 'thresholds.high' } as const;

/**
 * A refusal of the quorum-intersection check: two disjoint sets of signers each reach a threshold, so the nodes'
 * slot rule (one live transaction per account and sequence) no longer keeps two different fully signed
 * transactions for one sequence number from existing. The message names each level with its two sets.
 */
export class DisjointQuorumsError extends CosignerError {
  constructor(
    readonly report: IntersectionReport,
    what: string,
  ) {
    super(
      'LIFECYCLE_DISJOINT_QUORUMS',
      cliErrors.specs.LIFECYCLE_DISJOINT_QUORUMS.status,
      `refusing ${what}: ${formatDisjoint(report)}\nEach node signs one transaction per account and sequence number, ` +
        'but two disjoint sets of nodes can sign two different ones, and whoever holds both (the coordinator) ' +
        'chooses which the network applies. Raise the threshold so that any two sets reaching it share a node, or ' +
        'pass --allow-disjoint-quorums to accept that (docs/threat-model.md says what it gives up).',
      {
        disjoint: report.disjoint.map((d) => ({
          field: FIELD_OF_LEVEL[d.level],
          threshold: d.threshold,
          first: d.first,
          second: d.second,
        })),
      },
    );
    this.name = 'DisjointQuorumsError';
  }
}

/** One line per level: `LIFECYCLE_DISJOINT_QUORUMS thresholds.med 2: {node node-0, node node-1} and {...} each reach it`. */
export function formatDisjoint(r: IntersectionReport): string {
  return r.disjoint
    .map(
      (d) =>
        `LIFECYCLE_DISJOINT_QUORUMS ${FIELD_OF_LEVEL[d.level]} ${d.threshold}: {${d.first.join(', ')}} and {${d.second.join(', ')}} each reach it`,
    )
    .join('\n');
}

/** Where the change goes: Horizon for account state, the coordinator for proposals and events. */
export interface Target {
  horizonUrl: string;
  network?: string;
  coordinatorUrl?: string;
  apiKeyFile?: string;
  /** Proposal deadline in seconds (the nodes' policy validity.maxWindowSeconds must allow it). */
  timeoutSeconds?: number;
}

export async function http(
  url: string,
  init: { method?: string; body?: unknown; token?: string } = {},
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
    },
    body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as unknown };
  } catch {
    return { status: res.status, body: text };
  }
}

/** An HTTP call that must answer 2xx; the error names the call and quotes the answer. */
export async function httpOk(
  url: string,
  init: { method?: string; body?: unknown; token?: string } = {},
): Promise<Record<string, unknown>> {
  const r = await http(url, init);
  if (r.status < 200 || r.status >= 300) {
    const call = `${init.method ?? 'GET'} ${new URL(url).pathname}`;
    throw cliErrors.error(
      'LIFECYCLE_CALL_FAILED',
      { call, status: r.status },
      { message: `${call} answered ${r.status}: ${JSON.stringify(r.body)}` },
    );
  }
  return r.body as Record<string, unknown>;
}

/** A missing flag, named in the message and in `details.option`. */
export function required(option: string, why: string): CosignerError {
  return cliErrors.error('LIFECYCLE_OPTION_REQUIRED', { option }, { message: `${option} is required ${why}` });
}

function refused(message: string, operation?: number): CosignerError {
  return cliErrors.error('LIFECYCLE_ENVELOPE_REFUSED', operation === undefined ? {} : { operation }, { message });
}

export class Lifecycle {
  readonly horizon: Horizon.Server;
  #apiKey: string | undefined;
  #network: string | undefined;

  constructor(
    readonly t: Target,
    readonly io: Out = stdio,
  ) {
    this.horizon = new Horizon.Server(t.horizonUrl, { allowHttp: true });
    this.#network = t.network;
  }

  /** Every account in which `key` is a signer, from Horizon's account list (GET /accounts?signer=), all pages. */
  async accountsSignedBy(key: string): Promise<string[]> {
    const ids: string[] = [];
    let page = await this.horizon.accounts().forSigner(key).limit(200).call();
    while (page.records.length > 0) {
      ids.push(...page.records.map((r) => r.account_id));
      if (page.records.length < 200) break;
      page = await page.next();
    }
    return ids;
  }

  async network(): Promise<string> {
    if (!this.#network) {
      const root = await httpOk(new URL('/', this.t.horizonUrl).toString());
      this.#network = String(root.network_passphrase);
    }
    return this.#network;
  }

  async apiKey(): Promise<string> {
    if (!this.t.apiKeyFile) throw required('--api-key-file', 'to talk to the coordinator');
    this.#apiKey ??= await readSecretFile(this.t.apiKeyFile, 'coordinator API key');
    return this.#apiKey;
  }

  coordinator(path: string): string {
    if (!this.t.coordinatorUrl) throw required('--coordinator-url', 'for this change');
    return new URL(path, this.t.coordinatorUrl).toString();
  }

  /** Node id per Stellar key, from the coordinator registry (empty without a coordinator). */
  async nodesByKey(): Promise<Map<string, string>> {
    if (!this.t.coordinatorUrl) return new Map();
    const body = await httpOk(this.coordinator('/v1/nodes'), { token: await this.apiKey() });
    return new Map((body.nodes as { id: string; stellarKey: string }[]).map((n) => [n.stellarKey, n.id]));
  }

  /** The account's current signer configuration, each key attributed to its node when the registry knows it. */
  async configuration(account: string, nodes?: Map<string, string>): Promise<SignerConfiguration> {
    const a = await this.horizon.loadAccount(account);
    const byKey = nodes ?? (await this.nodesByKey());
    return {
      account,
      masterWeight: a.signers.find((s) => s.key === account)?.weight ?? 0,
      thresholds: {
        low: a.thresholds.low_threshold,
        med: a.thresholds.med_threshold,
        high: a.thresholds.high_threshold,
      },
      signers: a.signers
        .filter((s) => s.key !== account)
        .map((s) => ({ key: s.key, weight: s.weight, ...(byKey.has(s.key) ? { node: byKey.get(s.key) } : {}) })),
    };
  }

  /** Record a step on the coordinator's event stream (skipped without a coordinator). */
  async step(body: {
    action: string;
    step: string;
    account?: string;
    nodeId?: string;
    proposalId?: string;
    detail?: Record<string, string | number | boolean | null>;
  }): Promise<void> {
    this.io.out(`[${body.action}] ${body.step}${body.nodeId ? ` (${body.nodeId})` : ''}`);
    if (!this.t.coordinatorUrl) return;
    await httpOk(this.coordinator('/v1/lifecycle/events'), { method: 'POST', token: await this.apiKey(), body });
  }

  /**
   * Build the setOptions transaction for `changes` on every account (each operation sourced by its account;
   * the transaction's sequence comes from `txSource`, the first account by default, so a lifecycle change can
   * use an account other than the one payments are built on).
   */
  async buildChange(p: { accounts: readonly string[]; changes: Changes; txSource?: string }): Promise<string> {
    const source = await this.horizon.loadAccount(p.txSource ?? p.accounts[0]!);
    return buildChangeTransaction(source, {
      networkPassphrase: await this.network(),
      accounts: p.accounts,
      changes: p.changes,
      timeoutSeconds: this.t.timeoutSeconds ?? 120,
    }).toXDR();
  }

  /** POST the transaction as a proposal (submit: true) and wait until it ends; anything but submitted throws. */
  async propose(
    xdrB64: string,
    p: { note: string; idempotencyKey: string; onId?: (id: string) => Promise<void> },
  ): Promise<string> {
    const token = await this.apiKey();
    const created = await httpOk(this.coordinator('/v1/proposals'), {
      method: 'POST',
      token,
      body: { xdr: xdrB64, submit: true, idempotencyKey: p.idempotencyKey, note: p.note },
    });
    const id = String(created.id);
    await p.onId?.(id);
    return this.waitProposal(id);
  }

  /** Poll a proposal until it ends. Returns its id when submitted. */
  async waitProposal(id: string, timeoutMs = 90_000): Promise<string> {
    const token = await this.apiKey();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await httpOk(this.coordinator(`/v1/proposals/${encodeURIComponent(id)}`), { token });
      if (v.status === 'submitted') return id;
      if (['failed', 'rejected', 'expired', 'cancelled'].includes(String(v.status))) {
        const reasons = (Array.isArray(v.decisions) ? v.decisions : [])
          .flatMap((d: { nodeId?: string; reasons?: { code: string; message: string }[] }) =>
            (d.reasons ?? []).map((r) => `${d.nodeId}: ${r.code} ${r.message}`),
          )
          .slice(0, 10);
        throw new ProposalEndedError(
          id,
          String(v.status),
          [String(v.reason ?? v.error ?? ''), ...reasons].filter(Boolean),
        );
      }
      if (Date.now() > deadline)
        throw cliErrors.error(
          'LIFECYCLE_TIMEOUT',
          { proposalId: id, status: v.status },
          { message: `proposal ${id} is still ${String(v.status)} after ${timeoutMs} ms` },
        );
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  /** GET a proposal's status (for resuming). */
  async proposalStatus(id: string): Promise<string> {
    const v = await httpOk(this.coordinator(`/v1/proposals/${encodeURIComponent(id)}`), { token: await this.apiKey() });
    return String(v.status);
  }

  /** Wait until Horizon shows `pred` true for the account (the change applied). */
  async waitAccount(
    account: string,
    pred: (c: SignerConfiguration) => boolean,
    timeoutMs = 30_000,
  ): Promise<SignerConfiguration> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await this.configuration(account, new Map());
      if (pred(c)) return c;
      if (Date.now() > deadline)
        throw cliErrors.error(
          'LIFECYCLE_TIMEOUT',
          { account },
          { message: `account ${account} did not reach the expected signers in time` },
        );
      await new Promise((r) => setTimeout(r, 150));
    }
  }
}

export class ProposalEndedError extends CosignerError {
  constructor(
    readonly proposalId: string,
    readonly outcome: string,
    readonly reasons: string[],
  ) {
    super(
      'LIFECYCLE_PROPOSAL_ENDED',
      cliErrors.specs.LIFECYCLE_PROPOSAL_ENDED.status,
      `proposal ${proposalId} ended ${outcome}${reasons.length ? `:\n  ${reasons.join('\n  ')}` : ''}`,
      { proposalId, outcome },
    );
    this.name = 'ProposalEndedError';
  }
}

/** A change to an account's signers, master weight and thresholds (the shared account-setup routine's type). */
export type Changes = SignerChanges;

/**
 * The changes a transaction's setOptions operations make to `account` (what a signed envelope really holds).
 * @throws Error when it holds any other operation or another operation source
 */
export function changesInEnvelope(xdrB64: string, network: string, account: string): Changes {
  const parsed = TransactionBuilder.fromXDR(xdrB64, network);
  if ('innerTransaction' in parsed) throw refused('a fee-bump envelope is not accepted here');
  const tx = parsed;
  const out: { signers: SignerEntry[]; masterWeight?: number; thresholds: Partial<SignerConfiguration['thresholds']> } =
    {
      signers: [],
      thresholds: {},
    };
  for (const [i, op] of tx.operations.entries()) {
    if (op.type !== 'setOptions') throw refused(`operation ${i} is ${op.type}, not setOptions`, i);
    if ((op.source ?? tx.source) !== account) throw refused(`operation ${i} is not sourced by ${account}`, i);
    const s = op.signer as { ed25519PublicKey?: string; weight?: number } | undefined;
    if (s) {
      if (!s.ed25519PublicKey) throw refused(`operation ${i} sets a signer that is not an ed25519 key`, i);
      out.signers.push({ key: s.ed25519PublicKey, weight: s.weight ?? 0 });
    }
    if (op.masterWeight !== undefined) out.masterWeight = op.masterWeight;
    if (op.lowThreshold !== undefined) out.thresholds.low = op.lowThreshold;
    if (op.medThreshold !== undefined) out.thresholds.med = op.medThreshold;
    if (op.highThreshold !== undefined) out.thresholds.high = op.highThreshold;
  }
  return out;
}

export interface SafetyOptions {
  /**
   * `--allow-disjoint-quorums`: accept a configuration in which two disjoint sets of signers reach a threshold
   * (printed as a warning instead of refused).
   */
  allowDisjointQuorums?: boolean;
  /** Where the warning goes when disjoint quorums are allowed. */
  io?: Out;
  /**
   * FROST group keys among the signers (`--frost-group`): each is one party that reaches a threshold alone by
   * design, because it signs only with t >= 2 of its nodes, each reviewing the transaction. Every other single
   * party (the master key, a native node, a lone key) is still refused.
   */
  groups?: readonly string[];
}

/** The party label of a FROST group key in the lock-out checks (as packages/frost reshare.ts `groupParty`). */
export const frostGroupParty = (address: string): string => `frost group ${address}`;

/**
 * Refuse unless `after` passes the lock-out check (packages/policy lockout.ts) and the quorum-intersection check
 * (packages/stellar intersection.ts) on the same parties (a node's keys count as one party), at each of the
 * three threshold levels.
 * @throws LockoutError, DisjointQuorumsError (unless `allowDisjointQuorums`)
 */
export function requireSafe(after: SignerConfiguration, what: string, opts: SafetyOptions = {}): void {
  const { lockout: report, quorums: q } = checkSetupSafety(after);
  const alone = (opts.groups ?? []).map((a) => `node ${frostGroupParty(a)} alone`);
  const problems = report.problems.filter(
    (p) => !(p.code === 'LOCKOUT_SINGLE_PARTY' && alone.some((prefix) => p.message.startsWith(prefix))),
  );
  const lockout = { ...report, ok: problems.length === 0, problems };
  if (!lockout.ok) throw new LockoutError(lockout, what);
  // checkSetupSafety skips the intersection check when the lock-out check failed; run it once the group's own
  // "alone" was the only objection.
  if (!report.ok) {
    const parties = [...partyWeights(after)].map(([id, weight]) => ({ id, weight }));
    const t = after.thresholds;
    requireIntersection(checkQuorumIntersection(parties, { low: t.low, medium: t.med, high: t.high }), what, opts);
    return;
  }
  requireIntersection(q, what, opts);
}

function requireIntersection(q: IntersectionReport, what: string, opts: SafetyOptions): void {
  if (q.ok) return;
  if (!opts.allowDisjointQuorums) throw new DisjointQuorumsError(q, what);
  opts.io?.err(`warning: ${what} accepted with --allow-disjoint-quorums:\n${formatDisjoint(q)}`);
}

/** `node-0=GABC...:2` or `GABC...` (weight 1, no node). */
export function parseSigner(v: string): SignerEntry {
  const m = /^(?:([A-Za-z0-9._:-]+)=)?(G[A-Z2-7]{55})(?::([0-9]{1,3}))?$/.exec(v);
  if (!m) throw new InvalidArgumentError('expected [node-id=]G...[:weight]');
  const weight = m[3] === undefined ? 1 : Number(m[3]);
  if (weight < 1 || weight > 255) throw new InvalidArgumentError('weight must be 1-255');
  return { key: m[2]!, weight, ...(m[1] ? { node: m[1] } : {}) };
}

export function byte(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new InvalidArgumentError('must be 0-255');
  return n;
}

export interface SetupFlags {
  horizonUrl: string;
  network?: string;
  account: string;
  signer: SignerEntry[];
  low: number;
  med: number;
  high: number;
  masterKeyFile?: string;
  unsignedOut?: string;
  submitSigned?: string;
  coordinatorUrl?: string;
  apiKeyFile?: string;
  dryRun?: boolean;
  allowDisjointQuorums?: boolean;
  /** `--frost-group <G...>[:weight]`: a FROST group key of the cluster as a signer (checked ready at the coordinator). */
  frostGroup?: SignerEntry[];
}

/**
 * The FROST group keys of `--frost-group`, each checked with the coordinator (GET /v1/frost/groups/:address): a
 * ready group of at least 2-of-n, so that it never signs with fewer than two nodes' review. Labelled as one party.
 * @throws LIFECYCLE_OPTION_REQUIRED (no coordinator), LIFECYCLE_CALL_FAILED (unknown group), LIFECYCLE_FROST_GROUP
 */
async function frostGroupSigners(lc: Lifecycle, entries: readonly SignerEntry[]): Promise<SignerEntry[]> {
  const out: SignerEntry[] = [];
  for (const e of entries) {
    if (!lc.t.coordinatorUrl) throw required('--coordinator-url', 'to check a --frost-group with the coordinator');
    const g = await httpOk(lc.coordinator(`/v1/frost/groups/${e.key}`), { token: await lc.apiKey() });
    if (g.status !== 'ready' || g.address !== e.key || typeof g.threshold !== 'number' || g.threshold < 2) {
      throw cliErrors.error(
        'LIFECYCLE_FROST_GROUP',
        { option: '--frost-group', group: e.key, status: g.status },
        { message: `--frost-group ${e.key} is not a ready FROST group of this cluster (status ${String(g.status)})` },
      );
    }
    out.push({ key: e.key, weight: e.weight, node: frostGroupParty(e.key) });
  }
  return out;
}

/**
 * `cosigner account setup`: the whole signer configuration in one transaction. Listed signers are added (or
 * reweighed), any other added signer is removed, master weight 0, thresholds as given.
 * @returns how the change was carried out
 */
export async function accountSetup(f: SetupFlags, io: Out = stdio): Promise<{ via: string; id?: string }> {
  const lc = new Lifecycle(
    { horizonUrl: f.horizonUrl, network: f.network, coordinatorUrl: f.coordinatorUrl, apiKeyFile: f.apiKeyFile },
    io,
  );
  const network = await lc.network();
  if (f.submitSigned) {
    const signed = (await readFile(f.submitSigned, 'utf8')).trim();
    const current = await lc.configuration(
      f.account,
      new Map(f.signer.filter((s) => s.node).map((s) => [s.key, s.node!])),
    );
    requireSafe(applyChanges(current, changesInEnvelope(signed, network, f.account)), 'the signed transaction', {
      allowDisjointQuorums: f.allowDisjointQuorums,
      io,
    });
    const res = await lc.horizon.submitTransaction(TransactionBuilder.fromXDR(signed, network));
    io.out(`submitted ${res.hash}`);
    return { via: 'signed-xdr', id: res.hash };
  }
  const groups = await frostGroupSigners(lc, f.frostGroup ?? []);
  const signers = [...f.signer, ...groups];
  const nodes = new Map(signers.filter((s) => s.node).map((s) => [s.key, s.node!]));
  const current = await lc.configuration(f.account, nodes);
  const changes = multisigChanges(current, { signers, thresholds: { low: f.low, med: f.med, high: f.high } });
  const after = applyChanges(current, changes);
  requireSafe(after, 'this account setup', {
    allowDisjointQuorums: f.allowDisjointQuorums,
    io,
    groups: groups.map((g) => g.key),
  });
  io.out(
    `plan for ${f.account}: ${after.signers.map((s) => `${s.node ?? s.key}=${s.weight}`).join(', ')}; thresholds ${f.low}/${f.med}/${f.high}; master weight 0`,
  );
  if (f.dryRun) return { via: 'dry-run' };
  const xdrB64 = await lc.buildChange({ accounts: [f.account], changes });
  const multisig = current.masterWeight < Math.max(current.thresholds.high, 1);
  if (multisig) {
    // The master key alone cannot sign a HIGH change any more: the change goes through the cluster's quorum.
    await lc.step({ action: 'setup', step: 'proposed', account: f.account });
    const id = await lc.propose(xdrB64, { note: 'account setup', idempotencyKey: `setup-${f.account}-${Date.now()}` });
    await lc.step({ action: 'setup', step: 'applied', account: f.account, proposalId: id });
    return { via: 'proposal', id };
  }
  if (f.unsignedOut) {
    await writeFile(f.unsignedOut, `${xdrB64}\n`, { mode: 0o600 });
    io.out(`wrote the unsigned transaction to ${f.unsignedOut}: sign it with the master key, then --submit-signed`);
    return { via: 'unsigned-out' };
  }
  if (!f.masterKeyFile) {
    throw cliErrors.error(
      'LIFECYCLE_OPTION_REQUIRED',
      { option: '--master-key-file' },
      {
        message:
          'the account is not multisig yet: pass --master-key-file (0600 file), or --unsigned-out to sign offline',
      },
    );
  }
  const tx = TransactionBuilder.fromXDR(xdrB64, network);
  // Read once, used once: the secret is never in argv, env or a log, and the keypair goes out of scope here.
  tx.sign(Keypair.fromSecret(await readSecretFile(f.masterKeyFile, 'master key')));
  const res = await lc.horizon.submitTransaction(tx);
  await lc.waitAccount(f.account, (c) => c.masterWeight === 0);
  if (f.coordinatorUrl)
    await lc.step({ action: 'setup', step: 'applied', account: f.account, detail: { hash: res.hash } });
  io.out(`submitted ${res.hash}: ${f.account} is now multisig, master weight 0`);
  return { via: 'master-key', id: res.hash };
}

export const ALLOW_DISJOINT_FLAG = '--allow-disjoint-quorums';
export const ALLOW_DISJOINT_HELP =
  'accept signer sets that do not intersect (two disjoint sets of nodes reaching a threshold could sign two ' +
  'different transactions for one sequence number)';

/** The flags every lifecycle command shares. */
export function targetOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--horizon-url <url>', 'Horizon (or the ledger simulator) to read the account from')
    .option('--network <passphrase>', 'network passphrase (default: what Horizon reports)')
    .option('--coordinator-url <url>', 'the coordinator (proposals and lifecycle events)')
    .option('--api-key-file <file>', 'file (0600) holding a coordinator API key with the admin scope');
}

/** Errors print as `CODE: message` lines; the CLI sets exit code 1. */
export async function run(fn: () => Promise<unknown>, io: Out = stdio): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    io.err(`${err.code ? `${err.code}: ` : ''}${err.message ?? String(e)}`);
    process.exitCode = 1;
  }
}

export function registerAccount(program: Command, io: Out = stdio): void {
  const account = program.command('account').description("set up the cluster's multisig account");
  targetOptions(account.command('setup'))
    .description('add every node key with its weight, set thresholds, master weight 0: one reviewed transaction')
    .requiredOption('--account <address>', 'the account')
    .option(
      '--signer <[node=]G...[:weight]>',
      'a node key (repeat for each node)',
      (v, acc: SignerEntry[]) => [...acc, parseSigner(v)],
      [],
    )
    .option(
      '--frost-group <G...[:weight]>',
      'a FROST group key of the cluster (cosigner frost show), checked ready at the coordinator; it may reach a threshold alone: it signs only with t of its nodes',
      (v, acc: SignerEntry[]) => {
        const e = parseSigner(v);
        if (e.node) throw new InvalidArgumentError('expected G...[:weight]');
        return [...acc, e];
      },
      [],
    )
    .requiredOption('--low <n>', 'low threshold', byte)
    .requiredOption('--med <n>', 'medium threshold', byte)
    .requiredOption('--high <n>', 'high threshold (signer changes need it)', byte)
    .option('--master-key-file <file>', 'first setup: file (0600) holding the master secret, read once')
    .option('--unsigned-out <file>', 'first setup without the key here: write the unsigned transaction')
    .option('--submit-signed <file>', 'submit a transaction signed offline (checked again first)')
    .option('--dry-run', 'print the plan and the checks only')
    .option(ALLOW_DISJOINT_FLAG, ALLOW_DISJOINT_HELP)
    .addHelpText(
      'after',
      '\nRefuses a configuration whose thresholds the signers cannot reach, that one node reaches alone, or in\n' +
        'which two disjoint sets of nodes reach a threshold, naming the field. On an account that is already\n' +
        'multisig the change is a proposal the nodes review.',
    )
    .action((f: SetupFlags) =>
      run(() => {
        if (f.signer.length === 0 && (f.frostGroup ?? []).length === 0) {
          throw required('--signer or --frost-group', 'to name the signers');
        }
        return accountSetup(f, io);
      }, io),
    );
}

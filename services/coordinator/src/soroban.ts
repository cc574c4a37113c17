import { randomUUID } from 'node:crypto';
import { authBundleHash } from '@cosigner/protocol/auth-bundle';
import type { Body } from '@cosigner/protocol/messages';
import type { Logger } from '@cosigner/runtime/logger';
import { type DecodedTransaction, xdrTransactionOf } from '@cosigner/stellar/decode';
import {
  attachAuthSignatures,
  authEntryPayload,
  buildMultisigSignatureVector,
  checkAccountAuthSignatures,
  decodeAuthEntry,
} from '@cosigner/stellar/soroban';
import type { AccountAuth, Requirement } from '@cosigner/stellar/types';
import { publicKeyFromAddress, verifyEd25519 } from '@cosigner/stellar/verify';
import { Address, type Transaction, xdr } from '@stellar/stellar-sdk';
import type { CoordinatorConfig } from './config.ts';
import { coordinatorErrors } from './errors.ts';
import type { EventBus, EventType } from './events.ts';
import type { Metrics } from './metrics.ts';
import {
  atTimeBound,
  backoffMs,
  ed25519Weights,
  isUnavailable,
  maxTimeOf,
  type NodeLink,
  type RoundEngine,
} from './round.ts';
import type { ProposalRecord, ProposalStatus, Store } from './store.ts';

/**
 * Soroban authorization through the cluster.
 *
 * Two proposal kinds run an AUTH round here instead of the transaction round of round.ts:
 * - `authEntries`: standalone SorobanAuthorizationEntry values a client wants signed for a transaction someone
 *   else submits. The result is the signed entries (GET shows them); nothing is submitted.
 * - `sorobanTx`: an already simulated invokeHostFunction transaction whose entries have address credentials
 *   naming an account the cluster signs for. The signed entries are put into the transaction; then, when the
 *   transaction's source is itself a cluster account, a second proposal (kind `transaction`, idempotency key
 *   `soroban:<id>`) has the nodes sign the new transaction hash and submits it: the envelope hash covers the auth
 *   entries, signatures included, so it can only be signed once every entry is final.
 *
 * Every node computes each payload itself (HashIdPreimage, its pinned network). The coordinator verifies each
 * returned signature over the payload IT computed, under the node's enrolled key, before keeping it, and
 * assembles each entry's credential as the host checks it (soroban-env-host account_contract.rs
 * `check_account_authentication`): a Vec of {public_key, signature} sorted strictly ascending by raw key, no
 * zero-weight key, total weight reaching the account's MEDIUM threshold, and minimal (no signature can be
 * dropped; the host tolerates extra ones, the minimum keeps entries small and reveals no more signers than needed).
 * The assembled entry is checked again with checkAccountAuthSignatures before it is stored.
 */

/** What a Soroban proposal's `xdr` column holds (JSON): the entries in order, the transaction, submit wish. */
export interface SorobanMeta {
  entries: string[];
  tx?: string;
  submit: boolean;
}

export type SorobanLimits = CoordinatorConfig['soroban'];

const SOROBAN_OPS = new Set(['invokeHostFunction', 'extendFootprintTtl', 'restoreFootprint']);

/**
 * Refuse a Soroban transaction without SorobanTransactionData or above the coordinator's limits; answer its auth
 * entries (or null for a classic transaction). stellar-core refuses a Soroban transaction with more than one
 * operation or without resources (txMALFORMED / txSOROBAN_INVALID), so the first operation is the one.
 * @throws COORD_SOROBAN_NO_RESOURCES, COORD_SOROBAN_LIMIT, COORD_BAD_REQUEST
 */
export function checkSorobanTransaction(
  d: DecodedTransaction,
  limits: SorobanLimits,
): xdr.SorobanAuthorizationEntry[] | null {
  const x = xdrTransactionOf(d.kind === 'feeBump' && d.inner ? d.inner : d) as xdr.Transaction;
  const soroban = x.operations.some((op) => SOROBAN_OPS.has(op.body.type));
  if (!soroban) return null;
  if (x.operations.length !== 1) {
    throw coordinatorErrors.error(
      'COORD_BAD_REQUEST',
      { field: 'xdr' },
      { message: 'A Soroban transaction holds exactly one operation.' },
    );
  }
  if (x.ext.type !== 'sorobanData') throw coordinatorErrors.error('COORD_SOROBAN_NO_RESOURCES');
  const data = x.ext.sorobanData;
  const fee = BigInt(data.resourceFee.toString());
  const entries = data.resources.footprint.readOnly.length + data.resources.footprint.readWrite.length;
  if (fee > BigInt(limits.maxResourceFee) || entries > limits.maxFootprintEntries) {
    throw coordinatorErrors.error('COORD_SOROBAN_LIMIT', {
      resourceFee: fee.toString(),
      maxResourceFee: limits.maxResourceFee,
      footprintEntries: entries,
      maxFootprintEntries: limits.maxFootprintEntries,
    });
  }
  const op = x.operations[0] as xdr.Operation;
  return op.body.type === 'invokeHostFunction' ? op.body.invokeHostFunctionOp.auth : [];
}

/** The G account an entry's address credentials name, or null (source-account credentials, contract address). */
function entryAccount(
  e: xdr.SorobanAuthorizationEntry,
  limits: SorobanLimits,
  index: number,
): { account: string | null; creds: xdr.SorobanAddressCredentials | null } {
  const c = e.credentials;
  let creds: xdr.SorobanAddressCredentials;
  switch (c.type) {
    case 'sorobanCredentialsSourceAccount':
      return { account: null, creds: null };
    case 'sorobanCredentialsAddress':
      creds = c.address;
      break;
    case 'sorobanCredentialsAddressV2':
      // The installed SDK (17.2) has the CAP-71 form; protocol-27 networks only, hence behind soroban.addressV2.
      if (!limits.addressV2) throw coordinatorErrors.error('COORD_SOROBAN_V2_DISABLED', { entry: index });
      creds = c.addressV2;
      break;
    default:
      throw coordinatorErrors.error(
        'COORD_SOROBAN_BAD_ENTRY',
        { entry: index },
        { message: `Entry ${index}: delegated credentials are not signed by the cluster.` },
      );
  }
  const address = Address.fromScAddress(creds.address).toString();
  return { account: address.startsWith('G') ? address : null, creds };
}

export interface PreparedAuthRound {
  kind: 'authEntries' | 'sorobanTx';
  meta: SorobanMeta;
  hash: string;
  accounts: AccountAuth[];
  requirements: Requirement[];
  maxTime: number;
}

interface Target {
  index: number;
  account: string;
  payload: Buffer;
}

interface LiveAuth {
  rec: ProposalRecord;
  meta: SorobanMeta;
  entries: xdr.SorobanAuthorizationEntry[];
  targets: Map<number, Target>;
  accounts: Map<string, AccountAuth>;
  /** SIGNER_UNAVAILABLE answers in a row, per node (round.ts isUnavailable). */
  unavailable?: Map<string, number>;
  /** The earliest signatureExpirationLedger among the entries the cluster signs: from that ledger on, useless. */
  expiresAtLedger: number;
  /** Fires at the transaction's upper time bound (sorobanTx with one). */
  expiry?: NodeJS.Timeout;
}

export interface SorobanRoundOptions {
  store: Store;
  events: EventBus;
  metrics: Metrics;
  logger: Logger;
  network: string;
  limits: SorobanLimits;
  engine: RoundEngine;
  loadAccount(id: string): Promise<AccountAuth>;
  /** The latest closed ledger (null when unknown), to end rounds whose entries expired. */
  latestLedger(): Promise<number | null>;
  /** Backoff before asking again a node whose key backend was unavailable (as in round.ts). */
  signerRetryMs?: number;
  signerRetryMaxMs?: number;
}

/** The node keys of an account with non-zero weight, as the host counts them (weights clamped to 255). */
function medium(a: AccountAuth): number {
  // account_contract.rs compares the summed weight with the MEDIUM threshold; a 0 threshold still needs a signer
  // here, since the cluster only ever answers with at least one signature.
  return Math.max(1, a.thresholds.medium);
}

/**
 * The smallest-by-count, then minimal, set of signers reaching `need`: heaviest first until reached, then drop
 * any signer whose removal keeps the weight (so no signature in the vector is superfluous). null if unreachable.
 */
export function chooseMinimal<T extends { weight: number }>(candidates: readonly T[], need: number): T[] | null {
  const sorted = [...candidates].filter((c) => c.weight > 0).sort((a, b) => b.weight - a.weight);
  const chosen: T[] = [];
  let total = 0;
  for (const c of sorted) {
    if (total >= need) break;
    chosen.push(c);
    total += c.weight;
  }
  if (total < need) return null;
  for (let i = chosen.length - 1; i >= 0; i--) {
    const w = (chosen[i] as T).weight;
    if (total - w >= need) {
      total -= w;
      chosen.splice(i, 1);
    }
  }
  return chosen;
}

export class SorobanRounds {
  readonly #live = new Map<string, LiveAuth>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #link: NodeLink | undefined;
  #sweep: NodeJS.Timeout | undefined;
  /** The newest ledger the network reported (null until it answers once). */
  #latest: number | null = null;

  constructor(private readonly o: SorobanRoundOptions) {}

  attach(link: NodeLink): void {
    this.#link = link;
  }

  owns(id: string): boolean {
    return this.#live.has(id);
  }

  /**
   * Standalone entries (the body of `POST /v1/proposals` with `kind: 'authEntries'`).
   * @throws STELLAR_* decode errors, COORD_SOROBAN_BAD_ENTRY, COORD_SOROBAN_V2_DISABLED, COORD_ACCOUNT_NOT_FOUND
   */
  async prepareEntries(entriesB64: readonly string[], account?: string): Promise<PreparedAuthRound> {
    const entries = entriesB64.map((b) => decodeAuthEntry(b));
    for (const [i, e] of entries.entries()) {
      const { account: a } = entryAccount(e, this.o.limits, i);
      if (a === null) {
        throw coordinatorErrors.error(
          'COORD_SOROBAN_BAD_ENTRY',
          { entry: i },
          { message: `Entry ${i} has no address credentials of a G account: the cluster has nothing to sign.` },
        );
      }
      if (account !== undefined && a !== account) {
        throw coordinatorErrors.error(
          'COORD_SOROBAN_BAD_ENTRY',
          { entry: i },
          { message: `Entry ${i} names ${a}, not the proposal's account ${account}.` },
        );
      }
    }
    return this.#prepare('authEntries', entries, { entries: [...entriesB64], submit: false }, 0, false);
  }

  /**
   * An invokeHostFunction transaction: null when no entry has address credentials of an account some enrolled
   * node signs for (the transaction round alone serves it).
   */
  async prepareTransaction(
    decoded: DecodedTransaction,
    xdrB64: string,
    submit: boolean,
  ): Promise<PreparedAuthRound | null> {
    const entries = checkSorobanTransaction(decoded, this.o.limits);
    if (entries === null || entries.length === 0 || decoded.kind !== 'transaction') return null;
    if (!entries.some((e, i) => entryAccount(e, this.o.limits, i).account !== null)) return null;
    const meta: SorobanMeta = { entries: entries.map((e) => e.toXdr('base64')), tx: xdrB64, submit };
    const r = await this.#prepare('sorobanTx', entries, meta, maxTimeOf(decoded), true);
    return r.requirements.length === 0 ? null : r;
  }

  async #prepare(
    kind: PreparedAuthRound['kind'],
    entries: xdr.SorobanAuthorizationEntry[],
    meta: SorobanMeta,
    maxTime: number,
    onlyCluster: boolean,
  ): Promise<PreparedAuthRound> {
    const payloads: Buffer[] = [];
    const ids = new Set<string>();
    // The nodes only know a lower bound of the ledger (their ledger clock), so an entry that expired a few ledgers
    // ago can pass their review: the coordinator asks the network and refuses it here.
    const latest = await this.#latestLedger();
    for (const [i, e] of entries.entries()) {
      const { account, creds } = entryAccount(e, this.o.limits, i);
      if (creds === null) continue;
      if (creds.signatureExpirationLedger === 0) {
        throw coordinatorErrors.error(
          'COORD_SOROBAN_BAD_ENTRY',
          { entry: i },
          { message: `Entry ${i} has no signatureExpirationLedger: set it before proposing.` },
        );
      }
      if (latest !== null && !usableAt(creds.signatureExpirationLedger, latest)) {
        throw coordinatorErrors.error(
          'COORD_SOROBAN_ENTRY_EXPIRED',
          { entry: i, signatureExpirationLedger: creds.signatureExpirationLedger, latestLedger: latest },
          {
            message: `Entry ${i} expires at ledger ${creds.signatureExpirationLedger} and the latest ledger is ${latest}: no transaction can carry it any more; build it again with a later signatureExpirationLedger.`,
          },
        );
      }
      payloads.push(authEntryPayload(e, this.o.network));
      if (account !== null) ids.add(account);
    }
    const loaded = await Promise.all([...ids].map((id) => this.o.loadAccount(id)));
    const nodeKeys = new Set(this.o.store.listNodes().map((n) => n.stellarKey));
    const accounts = loaded.filter((a) => !onlyCluster || [...ed25519Weights(a).keys()].some((k) => nodeKeys.has(k)));
    return {
      kind,
      meta,
      hash: authBundleHash(payloads),
      accounts,
      requirements: accounts.map(
        (a) => ({ accountId: a.accountId, level: 'medium', weight: medium(a) }) as Requirement,
      ),
      maxTime,
    };
  }

  /** Insert-time record fields for a prepared round (app.ts adds id, client fields, timestamps). */
  static recordFields(p: PreparedAuthRound) {
    return {
      kind: p.kind,
      xdr: JSON.stringify(p.meta),
      hash: p.hash,
      requirements: p.requirements,
      accounts: p.accounts,
      submit: false,
      maxTime: p.maxTime,
    };
  }

  #track(rec: ProposalRecord): LiveAuth {
    const meta = JSON.parse(rec.xdr) as SorobanMeta;
    const entries = meta.entries.map((b) => xdr.SorobanAuthorizationEntry.fromXdr(b, 'base64'));
    const accounts = new Map(rec.accounts.map((a) => [a.accountId, a]));
    const targets = new Map<number, Target>();
    let expiresAtLedger = Number.POSITIVE_INFINITY;
    for (const [index, e] of entries.entries()) {
      const { account, creds } = entryAccount(e, { ...this.o.limits, addressV2: true }, index);
      if (account !== null && accounts.has(account)) {
        targets.set(index, { index, account, payload: authEntryPayload(e, rec.network) });
        if (creds) expiresAtLedger = Math.min(expiresAtLedger, creds.signatureExpirationLedger);
      }
    }
    const live: LiveAuth = { rec, meta, entries, targets, accounts, expiresAtLedger };
    this.#live.set(rec.id, live);
    if (rec.maxTime > 0) this.#armExpiry(live);
    this.#armSweep();
    return live;
  }

  /** As round.ts: at the transaction's upper time bound an unsigned round can no longer be used. */
  #armExpiry(live: LiveAuth): void {
    atTimeBound(
      live.rec.maxTime,
      (t) => {
        live.expiry = t;
      },
      () =>
        this.#finish(
          live,
          'expired',
          `the transaction's upper time bound (${live.rec.maxTime}) passed before a quorum signed`,
        ),
    );
  }

  /**
   * While auth rounds are open, ask the network for its latest ledger every `expiryCheckMs`: a round whose
   * earliest entry expiry has been reached ends `expired` (the host refuses an entry once the ledger sequence
   * passes its signatureExpirationLedger, and the next ledger is the earliest one a transaction can reach), so
   * a round held for review, or waiting for a node that never comes back, does not stay pending forever. An
   * unreachable network skips a check; it never ends a round.
   */
  #armSweep(): void {
    if (this.#sweep || this.#live.size === 0) return;
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined;
      void this.#expireByLedger().finally(() => this.#armSweep());
    }, this.o.limits.expiryCheckMs);
    this.#sweep.unref();
  }

  async #expireByLedger(): Promise<void> {
    const latest = await this.#latestLedger();
    if (latest === null) return;
    for (const live of [...this.#live.values()]) {
      if (usableAt(live.expiresAtLedger, latest)) continue;
      this.#finish(
        live,
        'expired',
        `an entry's signatureExpirationLedger (${live.expiresAtLedger}) was reached (latest ledger ${latest}) before a quorum signed`,
        { code: 'COORD_SOROBAN_ENTRY_EXPIRED' },
      );
    }
  }

  /**
   * The network's latest ledger, kept as the newest answer seen: ledgers only move forward, so a Horizon that lags
   * or does not answer never moves it back. null until the network has answered once.
   */
  async #latestLedger(): Promise<number | null> {
    const l = await this.o.latestLedger().catch(() => null);
    if (l !== null && (this.#latest === null || l > this.#latest)) this.#latest = l;
    return this.#latest;
  }

  start(rec: ProposalRecord): void {
    const live = this.#track(rec);
    this.#emit(rec, 'proposal.created', { hash: rec.hash, requirements: rec.requirements, kind: rec.kind });
    this.o.metrics.proposalsCreated.inc({ kind: rec.kind });
    this.#fanOut(live);
  }

  /** After a restart: pending auth rounds resume (verified signatures kept). */
  resume(): number {
    let n = 0;
    for (const rec of this.o.store.openProposals()) {
      if (rec.kind !== 'authEntries' && rec.kind !== 'sorobanTx') continue;
      const live = this.#track(rec);
      n += 1;
      if (!this.#tryComplete(live)) this.#fanOut(live);
    }
    return n;
  }

  sync(nodeId: string): void {
    for (const live of this.#live.values()) this.#fanOut(live, nodeId);
  }

  #helps(live: LiveAuth, stellarKey: string): string[] {
    return [...live.accounts.values()].filter((a) => ed25519Weights(a).has(stellarKey)).map((a) => a.accountId);
  }

  #fanOut(live: LiveAuth, only?: string): void {
    if (!this.#link) return;
    const decided = new Set(
      this.o.store
        .decisions(live.rec.id)
        .filter((d) => d.outcome !== 'hold' && d.outcome !== 'unavailable')
        .map((d) => d.nodeId),
    );
    for (const n of this.#link.connected()) {
      if (only !== undefined && n.nodeId !== only) continue;
      if (only === undefined && decided.has(n.nodeId)) continue;
      const accounts = this.#helps(live, n.stellarKey);
      if (accounts.length === 0) continue;
      const body: Body<'proposal'> = {
        proposalId: live.rec.id,
        kind: 'authEntries',
        networkPassphrase: live.rec.network,
        ...(live.meta.tx !== undefined ? { xdr: live.meta.tx } : { authEntries: live.meta.entries }),
        hash: live.rec.hash,
        accounts,
        ...(live.rec.note ? { note: live.rec.note } : {}),
      };
      this.#link.send(n.nodeId, 'proposal', body);
    }
  }

  #invalid(live: LiveAuth, nodeId: string, kind: string, detail: string): false {
    const now = Date.now();
    this.o.store.recordMisbehaviour({ nodeId, proposalId: live.rec.id, kind, detail, createdAt: now });
    this.o.metrics.nodeMisbehaviour.inc({ node: nodeId, kind });
    this.o.logger.warn({ nodeId, kind, detail, proposalId: live.rec.id }, 'node misbehaved');
    this.#emit(live.rec, 'node.misbehaved', { nodeId, kind, detail });
    this.o.store.recordDecision({
      proposalId: live.rec.id,
      nodeId,
      outcome: 'invalid',
      reasons: [{ code: kind, message: detail }],
      createdAt: now,
    });
    this.#settleIfUnreachable(live);
    return false;
  }

  /**
   * A node's decision on an auth round. Every signature must be over the payload the coordinator computed for
   * that entry, under the node's enrolled key, and that key must weigh in the entry's account; otherwise the
   * whole decision is invalid and nothing of it is kept.
   */
  onDecision(nodeId: string, stellarKey: string, d: Body<'decision'>): boolean {
    const live = this.#live.get(d.proposalId);
    if (!live) return false;
    const now = Date.now();
    this.o.metrics.nodeDecisions.inc({ node: nodeId, outcome: d.outcome });
    if (d.signerKey !== stellarKey)
      return this.#invalid(
        live,
        nodeId,
        'wrong_signer_key',
        `decision names ${d.signerKey}, enrolled key is ${stellarKey}`,
      );
    if (isUnavailable(d)) {
      // The node's KMS/HSM failed and it kept its intent (same nonce): not a refusal, ask it again later.
      const reasons = d.reasons.map((r) => ({ ...r }));
      this.o.store.recordDecision({ proposalId: live.rec.id, nodeId, outcome: 'unavailable', reasons, createdAt: now });
      this.#emit(live.rec, 'node.unavailable', { nodeId, reasons });
      live.unavailable ??= new Map();
      const count = (live.unavailable.get(nodeId) ?? 0) + 1;
      live.unavailable.set(nodeId, count);
      const t = setTimeout(
        () => {
          this.#timers.delete(t);
          if (this.#live.get(live.rec.id) === live) this.#fanOut(live, nodeId);
        },
        backoffMs(count, this.o.signerRetryMs ?? 1000, this.o.signerRetryMaxMs ?? 30_000),
      );
      this.#timers.add(t);
      return false;
    }
    if (d.outcome !== 'approve') {
      const reasons = d.reasons.map((r) => ({ ...r }));
      this.o.store.recordDecision({ proposalId: live.rec.id, nodeId, outcome: d.outcome, reasons, createdAt: now });
      if (d.outcome === 'reject') this.o.store.countNode(nodeId, 'rejections');
      this.#emit(live.rec, d.outcome === 'reject' ? 'node.rejected' : 'node.held', { nodeId, reasons });
      if (d.outcome === 'reject') this.#settleIfUnreachable(live);
      return false;
    }
    if (d.hash !== live.rec.hash)
      return this.#invalid(
        live,
        nodeId,
        'hash_mismatch',
        `node computed digest ${d.hash}, the proposal's is ${live.rec.hash}`,
      );
    const sigs = d.authSignatures ?? [];
    if (sigs.length === 0) return this.#invalid(live, nodeId, 'missing_signature', 'an approval without signatures');
    const key = publicKeyFromAddress(stellarKey);
    const kept: { index: number; payload: string; signature: string }[] = [];
    for (const s of sigs) {
      const t = live.targets.get(s.index);
      if (!t) return this.#invalid(live, nodeId, 'unknown_entry', `entry ${s.index} is not one the cluster signs`);
      if (s.payload !== t.payload.toString('hex'))
        return this.#invalid(live, nodeId, 'payload_mismatch', `entry ${s.index}: the node signed another payload`);
      if (!ed25519Weights(live.accounts.get(t.account) as AccountAuth).has(stellarKey))
        return this.#invalid(live, nodeId, 'not_a_signer', `${stellarKey} is not a signer of ${t.account}`);
      if (!verifyEd25519(key, t.payload, Buffer.from(s.signature, 'base64')))
        return this.#invalid(live, nodeId, 'invalid_signature', `entry ${s.index}: the signature does not verify`);
      kept.push(s);
    }
    this.o.store.recordDecision({
      proposalId: live.rec.id,
      nodeId,
      outcome: 'approve',
      reasons: d.reasons.map((r) => ({ ...r })),
      createdAt: now,
    });
    for (const s of kept) {
      this.o.store.addAuthSignature({
        proposalId: live.rec.id,
        entryIndex: s.index,
        signerKey: stellarKey,
        nodeId,
        payload: s.payload,
        signature: Buffer.from(s.signature, 'base64').toString('base64'),
        createdAt: now,
      });
    }
    this.o.store.countNode(nodeId, 'approvals');
    this.#emit(live.rec, 'node.approved', { nodeId, signerKey: stellarKey, entries: kept.map((s) => s.index) });
    // Completion asks the network for its latest ledger first: entries that expired while the round ran are not
    // handed out as signed (#tryComplete). Another decision meanwhile is harmless: `signed` is a compare-and-set.
    void this.#latestLedger().finally(() => {
      if (this.#live.get(live.rec.id) === live) this.#safeComplete(live);
    });
    return true;
  }

  #safeComplete(live: LiveAuth): void {
    try {
      this.#tryComplete(live);
    } catch (err) {
      // A bug in assembly must not take the decision path down; the round stays pending and is logged.
      this.o.logger.error({ err, proposalId: live.rec.id }, 'auth round completion failed');
    }
  }

  /** Every target entry assembled (or null if one lacks weight). */
  #assemble(live: LiveAuth): xdr.SorobanAuthorizationEntry[] | null {
    const sigs = this.o.store.authSignatures(live.rec.id);
    const out = [...live.entries];
    for (const t of live.targets.values()) {
      const account = live.accounts.get(t.account) as AccountAuth;
      const weights = ed25519Weights(account);
      const candidates = sigs
        .filter((s) => s.entryIndex === t.index && s.payload === t.payload.toString('hex'))
        .map((s) => ({ ...s, weight: weights.get(s.signerKey) ?? 0 }));
      const chosen = chooseMinimal(candidates, medium(account));
      if (chosen === null) return null;
      const vector = buildMultisigSignatureVector(
        chosen.map((c) => ({
          publicKey: publicKeyFromAddress(c.signerKey),
          signature: Buffer.from(c.signature, 'base64'),
        })),
      );
      // Belt and braces: the host's own verdict on what we are about to hand out.
      const verdict = checkAccountAuthSignatures(account, t.payload, vector);
      if (!verdict.ok) {
        this.o.logger.error(
          { proposalId: live.rec.id, entry: t.index, verdict },
          'assembled auth entry fails the check',
        );
        return null;
      }
      out[t.index] = attachAuthSignatures(live.entries[t.index] as xdr.SorobanAuthorizationEntry, vector);
    }
    return out;
  }

  #tryComplete(live: LiveAuth): boolean {
    const signed = this.#assemble(live);
    if (signed === null) return false;
    if (this.#latest !== null && !usableAt(live.expiresAtLedger, this.#latest)) {
      this.#finish(
        live,
        'expired',
        `the signatures were collected, but an entry's signatureExpirationLedger (${live.expiresAtLedger}) was reached (latest ledger ${this.#latest}): the entries can no longer be used and are not returned`,
        { code: 'COORD_SOROBAN_ENTRY_EXPIRED' },
      );
      return false;
    }
    const signedB64 = signed.map((e) => e.toXdr('base64'));
    let envelope: string;
    if (live.meta.tx === undefined) {
      envelope = JSON.stringify(signedB64);
    } else {
      // prepareTransaction admitted only a v1 envelope with one invokeHostFunction operation.
      const env = xdr.TransactionEnvelope.fromXdr(live.meta.tx, 'base64') as xdr.TransactionEnvelopeTx;
      const t = env.v1.tx;
      const op = t.operations[0] as xdr.Operation;
      const ihf = (op.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp;
      const body = xdr.OperationBody.invokeHostFunction(
        new xdr.InvokeHostFunctionOp({ hostFunction: ihf.hostFunction, auth: signed }),
      );
      const tx = new xdr.Transaction({
        sourceAccount: t.sourceAccount,
        fee: t.fee,
        seqNum: t.seqNum,
        cond: t.cond,
        memo: t.memo,
        operations: [new xdr.Operation({ sourceAccount: op.sourceAccount, body })],
        ext: t.ext,
      });
      const unsigned = xdr.TransactionEnvelope.envelopeTypeTx(new xdr.TransactionV1Envelope({ tx, signatures: [] }));
      envelope = unsigned.toXdr('base64');
    }
    const now = Date.now();
    if (!this.o.store.transition(live.rec.id, ['pending'], 'signed', { envelope, signedAt: now, statusReason: null }))
      return false;
    this.#live.delete(live.rec.id);
    if (live.expiry) clearTimeout(live.expiry);
    this.o.metrics.quorumTime.observe((now - live.rec.createdAt) / 1000);
    this.#emit(live.rec, 'quorum.reached', { entries: live.targets.size });
    this.#cancelOthers(live, 'quorum reached');
    if (live.meta.tx !== undefined) void this.#followUp(live, envelope);
    return true;
  }

  /**
   * The entries are final; when the transaction's source is a cluster account, its envelope is the next
   * proposal (the nodes review the transaction, signed entries included, and sign its hash).
   */
  async #followUp(live: LiveAuth, envelope: string): Promise<void> {
    const { store, engine } = this.o;
    const idem = `soroban:${live.rec.id}`;
    try {
      if (store.getByIdempotencyKey(idem)) return;
      const prepared = await engine.prepare(envelope, (id) => this.o.loadAccount(id));
      const nodeKeys = new Set(store.listNodes().map((n) => n.stellarKey));
      const source = prepared.accounts.find((a) => a.accountId === (prepared.decoded.tx as Transaction).source);
      if (!source || ![...ed25519Weights(source).keys()].some((k) => nodeKeys.has(k))) return;
      const now = Date.now();
      const { proposal, created } = store.insertProposal({
        id: randomUUID(),
        idempotencyKey: idem,
        apiKeyId: live.rec.apiKeyId,
        kind: prepared.decoded.kind,
        xdr: envelope,
        hash: prepared.decoded.hash.toString('hex'),
        network: live.rec.network,
        status: 'pending',
        statusReason: null,
        requirements: prepared.requirements,
        accounts: prepared.accounts,
        submit: live.meta.submit,
        callbackUrl: live.rec.callbackUrl,
        note: `envelope of Soroban proposal ${live.rec.id}`,
        maxTime: maxTimeOf(prepared.decoded),
        envelope: null,
        result: null,
        createdAt: now,
        updatedAt: now,
        signedAt: null,
      });
      if (created) engine.start(proposal);
    } catch (err) {
      this.o.logger.error({ err, proposalId: live.rec.id }, 'could not open the envelope proposal');
      this.#emit(live.rec, 'proposal.failed', {
        reason: `the envelope proposal could not be opened: ${(err as Error).message}`,
      });
    }
  }

  /** Same rule as round.ts: signatures kept plus every node that has not refused, per requirement. */
  #settleIfUnreachable(live: LiveAuth): boolean {
    const sigKeys = new Set(this.o.store.authSignatures(live.rec.id).map((s) => s.signerKey));
    const decisions = this.o.store.decisions(live.rec.id);
    const refused = new Set(
      decisions.filter((d) => d.outcome === 'reject' || d.outcome === 'invalid').map((d) => d.nodeId),
    );
    const available = new Set(
      this.o.store
        .listNodes()
        .filter((n) => !refused.has(n.id))
        .map((n) => n.stellarKey),
    );
    const short: string[] = [];
    for (const r of live.rec.requirements) {
      let best = 0;
      for (const [k, w] of ed25519Weights(live.accounts.get(r.accountId) as AccountAuth)) {
        if (sigKeys.has(k) || available.has(k)) best += w;
      }
      if (best < r.weight) short.push(`${r.accountId} can reach weight ${best} of ${r.weight} needed at medium`);
    }
    if (short.length === 0) return false;
    const why = decisions
      .filter((d) => d.outcome === 'reject' || d.outcome === 'invalid')
      .map((d) => `${d.nodeId}: ${d.reasons.map((x) => x.message).join('; ') || d.outcome}`);
    this.#finish(
      live,
      'rejected',
      `quorum unreachable: ${short.join('; ')}${why.length ? ` (${why.join(' | ')})` : ''}`,
    );
    return true;
  }

  #finish(live: LiveAuth, to: ProposalStatus, reason: string, extra: { code?: string } = {}): boolean {
    if (!this.o.store.transition(live.rec.id, ['pending'], to, { statusReason: reason })) return false;
    this.#live.delete(live.rec.id);
    if (live.expiry) clearTimeout(live.expiry);
    this.#emit(live.rec, `proposal.${to}` as EventType, { reason, ...extra });
    this.#cancelOthers(live, reason.slice(0, 256));
    return true;
  }

  /** @throws COORD_NOT_CANCELLABLE */
  cancel(id: string, reason: string): ProposalRecord {
    const live = this.#live.get(id);
    if (!live || !this.#finish(live, 'cancelled', reason)) {
      throw coordinatorErrors.error('COORD_NOT_CANCELLABLE', { id, status: this.o.store.getProposal(id)?.status });
    }
    return this.o.store.getProposal(id) as ProposalRecord;
  }

  #cancelOthers(live: LiveAuth, reason: string): void {
    if (!this.#link) return;
    const decided = new Set(
      this.o.store
        .decisions(live.rec.id)
        .filter((d) => d.outcome !== 'hold' && d.outcome !== 'unavailable')
        .map((d) => d.nodeId),
    );
    for (const n of this.#link.connected()) {
      if (!decided.has(n.nodeId) && this.#helps(live, n.stellarKey).length > 0) {
        this.#link.send(n.nodeId, 'cancel', { proposalId: live.rec.id, reason });
      }
    }
  }

  #emit(rec: ProposalRecord, type: EventType, data: Record<string, unknown>): void {
    this.o.events.emit(rec.id, type, data, rec.callbackUrl);
  }

  close(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    if (this.#sweep) clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const live of this.#live.values()) if (live.expiry) clearTimeout(live.expiry);
    this.#live.clear();
  }
}

/**
 * Whether an entry expiring at `expiration` can still be used after ledger `latest` closed: the host refuses an
 * entry once the ledger sequence is above its signatureExpirationLedger (inclusive bound; soroban-env-host
 * auth.rs), and the next ledger, `latest + 1`, is the earliest one a transaction can reach.
 */
export function usableAt(expiration: number, latest: number): boolean {
  return latest + 1 <= expiration;
}

/** The signed entries of a finished standalone round (null otherwise), for the proposal view. */
export function signedEntriesOf(rec: ProposalRecord): string[] | null {
  if (rec.kind !== 'authEntries' || rec.envelope === null) return null;
  return JSON.parse(rec.envelope) as string[];
}

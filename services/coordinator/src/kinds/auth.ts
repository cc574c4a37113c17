import { authBundleHash } from '@cosigner/protocol/auth-bundle';
import type { Logger } from '@cosigner/runtime/logger';
import {
  attachAuthSignatures,
  authEntryPayload,
  buildMultisigSignatureVector,
  checkAccountAuthSignatures,
} from '@cosigner/stellar/soroban';
import type { AccountAuth, Requirement } from '@cosigner/stellar/types';
import { publicKeyFromAddress, verifyEd25519 } from '@cosigner/stellar/verify';
import { xdr } from '@stellar/stellar-sdk/base';
import type { MisbehaviourKind } from '../codes.ts';
import { coordinatorErrors } from '../errors.ts';
import { ed25519Weights } from '../quorum.ts';
import { chooseMinimal, entryAccount, type LedgerClock, medium, type SorobanLimits, usableAt } from '../soroban.ts';
import {
  type AuthEntryRecord,
  type AuthSignatureRecord,
  type CoordinatorStore,
  type ProposalKind,
  type ProposalRecord,
  step,
} from '../store.ts';
import {
  type Approval,
  type Completion,
  type Fault,
  type Prepared,
  proposalFrame,
  type Round,
  type RoundKind,
} from './kind.ts';

/**
 * What the two Soroban authorization kinds share (auth-entries.ts, soroban-tx.ts): each node computes every
 * entry's payload itself (HashIdPreimage, its pinned network) and signs those of the accounts it signs for. The
 * coordinator verifies each returned signature over the payload IT computed, under the node's enrolled key,
 * before keeping it, and assembles each entry's credential as the host checks it (soroban-env-host
 * account_contract.rs `check_account_authentication`): a Vec of {public_key, signature} sorted strictly ascending
 * by raw key, no zero-weight key, total weight reaching the account's MEDIUM threshold, and minimal (no signature
 * can be dropped; the host tolerates extra ones, the minimum keeps entries small and reveals no more signers than
 * needed). The assembled entry is checked again with checkAccountAuthSignatures before it is stored.
 */

export interface AuthDeps {
  store: CoordinatorStore;
  logger: Logger;
  network: string;
  limits: SorobanLimits;
  /** The latest closed ledger, to refuse and end rounds whose entries expired. */
  clock: LedgerClock;
  loadAccount(id: string): Promise<AccountAuth>;
}

/** One entry the cluster signs: its index, the account its credentials name, the payload the nodes sign. */
interface Target {
  index: number;
  account: string;
  payload: Buffer;
  hex: string;
}

export interface AuthState {
  entries: xdr.SorobanAuthorizationEntry[];
  /** The entries as stored (base64), in order: what the nodes are sent. */
  stored: string[];
  targets: Map<number, Target>;
  /** The earliest signatureExpirationLedger among the entries the cluster signs: from that ledger on, useless. */
  expiresAtLedger: number;
}

/** A prepared auth round: the record fields and the entries stored beside the row. */
export type PreparedAuthRound = Prepared & { authEntries: string[] };

/**
 * Payloads, accounts and requirements of an auth round over `entries`. `onlyCluster`: keep only the accounts some
 * enrolled node signs for (a Soroban transaction may carry entries of other signers).
 * @throws COORD_SOROBAN_BAD_ENTRY, COORD_SOROBAN_ENTRY_EXPIRED, COORD_SOROBAN_V2_DISABLED, COORD_ACCOUNT_NOT_FOUND
 */
export async function prepareAuthRound(
  o: AuthDeps,
  round: { kind: 'authEntries' | 'sorobanTx'; tx: string | null; submitFollowUp: boolean; maxTime: number },
  entries: readonly xdr.SorobanAuthorizationEntry[],
  onlyCluster: boolean,
): Promise<PreparedAuthRound> {
  const payloads: Buffer[] = [];
  const ids = new Set<string>();
  // The nodes only know a lower bound of the ledger (their ledger clock), so an entry that expired a few ledgers
  // ago can pass their review: the coordinator asks the network and refuses it here.
  const latest = await o.clock.refresh();
  for (const [i, e] of entries.entries()) {
    const { account, creds } = entryAccount(e, o.limits, i);
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
    payloads.push(authEntryPayload(e, o.network));
    if (account !== null) ids.add(account);
  }
  const loaded = await Promise.all([...ids].map((id) => o.loadAccount(id)));
  const nodeKeys = new Set((await o.store.listNodes()).map((n) => n.stellarKey));
  const accounts = loaded.filter((a) => !onlyCluster || [...ed25519Weights(a).keys()].some((k) => nodeKeys.has(k)));
  return {
    fields: {
      kind: round.kind,
      xdr: round.tx,
      hash: authBundleHash(payloads),
      accounts,
      requirements: accounts.map(
        (a) => ({ accountId: a.accountId, level: 'medium', weight: medium(a) }) as Requirement,
      ),
      // The auth round submits nothing itself (a sorobanTx's transaction is its follow-up's to submit).
      submit: false,
      submitFollowUp: round.submitFollowUp,
      maxTime: round.maxTime,
    },
    authEntries: entries.map((e) => e.toXdr('base64')),
  };
}

/** What a kind built on auth rounds adds: its stored kind, and what it makes of the signed entries. */
export interface AuthResult {
  kind: 'authEntries' | 'sorobanTx';
  /** The round's result from the signed entries: the envelope to store (null: the entries are the result). */
  envelope(round: Round<AuthState>, signed: xdr.SorobanAuthorizationEntry[]): string | null;
  afterSigned: RoundKind<AuthState>['afterSigned'];
  /** `afterSigned` opens a follow-up proposal (marked in the `signed` commit), reopened by `resumeSigned`. */
  followUp?: true;
  resumeSigned?: RoundKind<AuthState>['resumeSigned'];
}

/** What an auth round needs, rebuilt from its stored row and entries. */
function openAuth(o: AuthDeps, rec: ProposalRecord, rows: readonly AuthEntryRecord[]): AuthState {
  const stored = rows.map((e) => e.entry);
  const entries = stored.map((b) => xdr.SorobanAuthorizationEntry.fromXdr(b, 'base64'));
  const targets = new Map<number, Target>();
  let expiresAtLedger = Number.POSITIVE_INFINITY;
  for (const [index, e] of entries.entries()) {
    // A stored round was admitted under the limits of its day: its entries are not refused again.
    const { account, creds } = entryAccount(e, { ...o.limits, addressV2: true }, index);
    if (account !== null && rec.accounts.some((a) => a.accountId === account)) {
      const payload = authEntryPayload(e, rec.network);
      targets.set(index, { index, account, payload, hex: payload.toString('hex') });
      if (creds) expiresAtLedger = Math.min(expiresAtLedger, creds.signatureExpirationLedger);
    }
  }
  return { entries, stored, targets, expiresAtLedger };
}

export function authRound(o: AuthDeps, r: AuthResult): RoundKind<AuthState> {
  const { store } = o;
  const invalid = (kind: MisbehaviourKind, detail: string): Fault => ({ kind, detail });
  return {
    kinds: [r.kind] as ProposalKind[],
    open: (rec) => step(store.authEntries(rec.id), (rows) => openAuth(o, rec, rows)),
    announce: (rec) => ({ kind: rec.kind }),
    request: ({ rec, state }, _node, accounts) =>
      proposalFrame(
        rec,
        accounts,
        rec.xdr !== null ? { kind: 'authEntries', xdr: rec.xdr } : { kind: 'authEntries', authEntries: state.stored },
      ),
    /**
     * Every signature must be over the payload the coordinator computed for that entry, under the node's
     * enrolled key, and that key must weigh in the entry's account; otherwise nothing of the decision is kept.
     */
    verify(round, nodeId, stellarKey, d, at): Fault | Approval {
      const { rec, state } = round;
      if (d.hash !== rec.hash)
        return invalid('hash_mismatch', `node computed digest ${d.hash}, the proposal's is ${rec.hash}`);
      const sigs = d.authSignatures ?? [];
      if (sigs.length === 0) return invalid('missing_signature', 'an approval without signatures');
      const key = publicKeyFromAddress(stellarKey);
      const authSignatures = [];
      for (const s of sigs) {
        const t = state.targets.get(s.index);
        if (!t) return invalid('unknown_entry', `entry ${s.index} is not one the cluster signs`);
        if (s.payload !== t.hex)
          return invalid('payload_mismatch', `entry ${s.index}: the node signed another payload`);
        if (!ed25519Weights(round.accounts.get(t.account) as AccountAuth).has(stellarKey))
          return invalid('not_a_signer', `${stellarKey} is not a signer of ${t.account}`);
        const signature = Buffer.from(s.signature, 'base64');
        if (!verifyEd25519(key, t.payload, signature))
          return invalid('invalid_signature', `entry ${s.index}: the signature does not verify`);
        authSignatures.push({
          proposalId: rec.id,
          entryIndex: s.index,
          signerKey: stellarKey,
          nodeId,
          payload: s.payload,
          signature: signature.toString('base64'),
          createdAt: at,
        });
      }
      return { rows: { authSignatures }, event: { entries: sigs.map((s) => s.index) } };
    },
    signers: (round) => step(store.authSignatures(round.rec.id), (sigs) => new Set(sigs.map((s) => s.signerKey))),
    // Entries that expired while the round ran are not handed out as signed: ask the network first.
    beforeApproval: () => o.clock.refresh(),
    complete: (round) =>
      step(store.authSignatures(round.rec.id), (sigs): Completion | null => {
        const signed = assemble(o, round, sigs);
        if (signed === null) return null;
        const latest = o.clock.latest;
        const { expiresAtLedger } = round.state;
        if (latest !== null && !usableAt(expiresAtLedger, latest)) {
          return {
            end: 'expired',
            reason: `the signatures were collected, but an entry's signatureExpirationLedger (${expiresAtLedger}) was reached (latest ledger ${latest}): the entries can no longer be used and are not returned`,
            code: 'COORD_SOROBAN_ENTRY_EXPIRED' as const,
          };
        }
        return {
          envelope: r.envelope(round, signed),
          signedEntries: signed.map((e) => e.toXdr('base64')),
          ...(r.followUp ? { followUp: r.followUp } : {}),
          event: { entries: round.state.targets.size },
        };
      }),
    afterSigned: r.afterSigned,
    ...(r.resumeSigned ? { resumeSigned: r.resumeSigned } : {}),
    /**
     * While auth rounds are open, ask the network for its latest ledger every `expiryCheckMs`: a round whose
     * earliest entry expiry has been reached ends `expired` (the host refuses an entry once the ledger sequence
     * passes its signatureExpirationLedger, and the next ledger is the earliest one a transaction can reach), so
     * a round held for review, or waiting for a node that never comes back, does not stay pending forever. An
     * unreachable network skips a check; it never ends a round.
     */
    sweep: {
      everyMs: o.limits.expiryCheckMs,
      async check(rounds) {
        const latest = await o.clock.refresh();
        if (latest === null) return [];
        return rounds
          .filter((round) => !usableAt(round.state.expiresAtLedger, latest))
          .map((round) => ({
            round,
            end: 'expired' as const,
            reason: `an entry's signatureExpirationLedger (${round.state.expiresAtLedger}) was reached (latest ledger ${latest}) before a quorum signed`,
            code: 'COORD_SOROBAN_ENTRY_EXPIRED' as const,
          }));
      },
    },
  };
}

/** Every entry, the targets with their assembled credential (or null if one lacks weight). */
function assemble(
  o: AuthDeps,
  round: Round<AuthState>,
  sigs: readonly AuthSignatureRecord[],
): xdr.SorobanAuthorizationEntry[] | null {
  const { rec, state } = round;
  const out = [...state.entries];
  for (const t of state.targets.values()) {
    const account = round.accounts.get(t.account) as AccountAuth;
    const weights = ed25519Weights(account);
    const candidates = sigs
      .filter((s) => s.entryIndex === t.index && s.payload === t.hex)
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
      o.logger.error({ proposalId: rec.id, entry: t.index, verdict }, 'assembled auth entry fails the check');
      return null;
    }
    out[t.index] = attachAuthSignatures(state.entries[t.index] as xdr.SorobanAuthorizationEntry, vector);
  }
  return out;
}

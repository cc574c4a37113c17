import type { Signer } from '@cosigner/keys/signer';
import { checkSorobanResources, evaluateAuthEntries, ledgerLowerBound } from '@cosigner/policy/evaluate';
import type { Policy } from '@cosigner/policy/schema';
import { authBundleHash } from '@cosigner/protocol/auth-bundle';
import { SIGNER_UNAVAILABLE } from '@cosigner/protocol/reasons';
import { type DecodedTransaction, decodeEnvelope, xdrTransactionOf } from '@cosigner/stellar/decode';
import { authEntryPayload, decodeAuthEntry, describeAuthEntry } from '@cosigner/stellar/soroban';
import type { AuthEntrySummary } from '@cosigner/stellar/types';
import type { xdr } from '@stellar/stellar-sdk';
import type { Logger } from 'pino';
import type { AuditLog } from './audit.ts';
import type { Outcome, Reason, SignatureRecord, SigningLedger } from './ledger.ts';
import type { NodeMetrics } from './metrics.ts';
import type { DecisionBody, ProposalBody } from './review.ts';

/**
 * Review and signing of Soroban authorization entries: a proposal of kind `authEntries` carries either
 * standalone entries (`authEntries`, base64 SorobanAuthorizationEntry) or an already simulated
 * invokeHostFunction transaction (`xdr`) whose entries with address credentials name accounts this node
 * cosigns for. The node, by itself:
 *
 * - decodes every entry and its invocation tree (packages/stellar), and for a transaction its
 *   SorobanTransactionData, whose resource fee and footprint its policy bounds;
 * - computes each payload itself, sha256(XDR(HashIdPreimage)) for ITS pinned network, nonce, expiration ledger
 *   and invocation (soroban-env-host auth.rs); the coordinator's claim is only compared;
 * - evaluates its policy (contracts, functions, argument rules, token amounts and recipients, velocity) and the
 *   expiration window against a lower bound of the current ledger from its policy's ledger clock (it cannot see
 *   the network; see services/cosigner/README.md "Soroban");
 * - records each signature as a slot `(address, "auth:<nonce>")` in the signing ledger, in the same transaction
 *   as the policy's velocity reads: the host consumes a nonce once (auth.rs `consume_nonce`), so two different
 *   payloads for one nonce are mutually exclusive, like two transactions for one sequence number. The slot is
 *   held until the expiration ledger has surely passed (the clock's slowest close interval), plus the grace;
 * - only then signs each payload through its key backend and audits the release.
 */

/** The ledger slot sequence of an auth nonce: never a decimal sequence number, so it cannot meet a tx slot. */
export function nonceSlot(nonce: bigint | string): string {
  return `auth:${nonce.toString()}`;
}

export interface SorobanDeps {
  network: string;
  policy: Policy;
  ledger: SigningLedger;
  audit: AuditLog;
  signer: Pick<Signer, 'address' | 'kind' | 'sign'>;
  logger: Logger;
  metrics?: NodeMetrics;
  now?: () => number;
}

/** One entry of the proposal: its position, decoded XDR, plain-terms summary and the payload we computed. */
export interface PreparedEntry {
  index: number;
  entry: xdr.SorobanAuthorizationEntry;
  summary: AuthEntrySummary;
  payload: Buffer;
}

export type PreparedAuth =
  | { ok: true; hash: string; entries: PreparedEntry[]; ours: PreparedEntry[]; resourceReasons: Reason[] }
  | { ok: false; hash: string; reasons: Reason[] };

const NO_HASH = '0'.repeat(64);

function reason(code: string, message: string, field?: string): Reason {
  return field === undefined ? { code, message } : { code, message, field };
}

function codeOf(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : 'invalid';
}

/** The auth entries of a transaction's single invokeHostFunction operation, and its declared resources. */
function transactionEntries(
  d: DecodedTransaction,
  policy: Policy,
): { entries: xdr.SorobanAuthorizationEntry[]; resourceReasons: Reason[] } | Reason {
  if (d.kind !== 'transaction') {
    return reason('UNSUPPORTED_PROPOSAL', 'Auth entries are signed inside a plain transaction, not a fee bump.', 'xdr');
  }
  const x = xdrTransactionOf(d) as xdr.Transaction;
  // stellar-core refuses a Soroban transaction with more than one operation (txMALFORMED), so the first is the one.
  const op = x.operations[0];
  if (x.operations.length !== 1 || op === undefined || op.body.type !== 'invokeHostFunction') {
    return reason(
      'UNSUPPORTED_PROPOSAL',
      'The transaction must hold exactly one invokeHostFunction operation.',
      'operations',
    );
  }
  if (x.ext.type !== 'sorobanData') {
    return reason(
      'NO_SOROBAN_DATA',
      'The transaction carries no SorobanTransactionData: simulate it before proposing.',
      'sorobanData',
    );
  }
  const data = x.ext.sorobanData;
  const resourceReasons = checkSorobanResources(policy, {
    resourceFee: BigInt(data.resourceFee.toString()),
    instructions: data.resources.instructions,
    readOnlyEntries: data.resources.footprint.readOnly.length,
    readWriteEntries: data.resources.footprint.readWrite.length,
  });
  return { entries: op.body.invokeHostFunctionOp.auth, resourceReasons };
}

/**
 * Decode the proposal's entries with OUR network, compute every payload, compare the coordinator's digest and
 * pick the entries this node signs: address credentials naming an account of its policy. Pure (no clock).
 */
export function prepareAuthProposal(p: ProposalBody, network: string, policy: Policy): PreparedAuth {
  const claimed = p.hash ?? NO_HASH;
  if (p.networkPassphrase !== network) {
    return {
      ok: false,
      hash: claimed,
      reasons: [
        reason('WRONG_NETWORK', 'The proposal names a network this node does not sign for.', 'networkPassphrase'),
      ],
    };
  }
  const standalone = p.authEntries !== undefined;
  if (standalone === (p.xdr !== undefined)) {
    return {
      ok: false,
      hash: claimed,
      reasons: [reason('MALFORMED_PROPOSAL', 'An auth proposal carries either entries or a transaction.', 'kind')],
    };
  }
  let raw: xdr.SorobanAuthorizationEntry[];
  let resourceReasons: Reason[] = [];
  try {
    if (standalone) {
      raw = (p.authEntries as string[]).map((b64) => decodeAuthEntry(b64));
    } else {
      const t = transactionEntries(decodeEnvelope(p.xdr as string, network), policy);
      if ('code' in t) return { ok: false, hash: claimed, reasons: [t] };
      raw = t.entries;
      resourceReasons = t.resourceReasons;
    }
  } catch (e) {
    return {
      ok: false,
      hash: claimed,
      reasons: [
        reason('MALFORMED_XDR', `The entries could not be decoded (${codeOf(e)}).`, standalone ? 'authEntries' : 'xdr'),
      ],
    };
  }
  const entries: PreparedEntry[] = [];
  for (const [index, entry] of raw.entries()) {
    if (entry.credentials.type === 'sorobanCredentialsSourceAccount') {
      if (standalone) {
        return {
          ok: false,
          hash: claimed,
          reasons: [
            reason(
              'AUTH_CREDENTIALS_NOT_SIGNABLE',
              'A source-account entry has no payload to sign: the envelope signatures cover it.',
              `authEntries[${index}]`,
            ),
          ],
        };
      }
      continue;
    }
    try {
      entries.push({ index, entry, summary: describeAuthEntry(entry), payload: authEntryPayload(entry, network) });
    } catch (e) {
      return {
        ok: false,
        hash: claimed,
        reasons: [reason('MALFORMED_XDR', `Entry ${index} could not be read (${codeOf(e)}).`, `authEntries[${index}]`)],
      };
    }
  }
  const hash = authBundleHash(entries.map((e) => e.payload));
  if (p.hash !== undefined && p.hash !== hash) {
    return {
      ok: false,
      hash,
      reasons: [
        reason('HASH_MISMATCH', 'The digest the coordinator sent differs from the one this node computed.', 'hash'),
      ],
    };
  }
  const ours = entries.filter(
    (e) =>
      (e.summary.credentials === 'address' || e.summary.credentials === 'addressV2') &&
      e.summary.address !== undefined &&
      policy.accounts.has(e.summary.address),
  );
  // Standalone: every entry is ours to judge (the policy names the foreign ones). In a transaction, entries of
  // other addresses are signed by others and entries with no address credentials ride on the envelope.
  return { ok: true, hash, entries, ours: standalone ? entries : ours, resourceReasons };
}

/**
 * When an expiration ledger has surely passed, in unix seconds: the clock's anchor plus every ledger up to it at
 * the slowest assumed close interval. The nonce slot is held until then (plus the ledger's grace).
 */
export function expirationTime(policy: Policy, expirationLedger: number): number {
  const c = policy.soroban.ledgerClock;
  // Without a clock nothing is signed (review refuses first); hold forever if ever reached.
  if (c === undefined) return 0;
  return c.closedAt + Math.ceil(Math.max(0, expirationLedger + 1 - c.ledger) * c.maxCloseSeconds);
}

export class SorobanReviewer {
  readonly #d: SorobanDeps;

  constructor(deps: SorobanDeps) {
    this.#d = deps;
  }

  #nowMs(): number {
    return this.#d.now ? this.#d.now() : Date.now();
  }

  /** Review an `authEntries` proposal; never throws for bad input; signs only on approval, after recording. */
  async review(p: ProposalBody): Promise<DecisionBody> {
    const { ledger, policy } = this.#d;
    const prep = prepareAuthProposal(p, this.#d.network, policy);
    if (!prep.ok) return this.#finish(p.proposalId, prep.hash, 'reject', prep.reasons);
    const nowMs = this.#nowMs();
    const now = Math.floor(nowMs / 1000);
    // What the audit keeps of each entry this node judged: enough to find the on-chain use of a signature.
    const judged = prep.ours.map((e) => ({
      index: e.index,
      address: e.summary.address ?? null,
      nonce: e.summary.nonce ?? null,
      expiration: e.summary.signatureExpirationLedger ?? null,
      payload: e.payload.toString('hex'),
    }));
    // A re-ask (reconnect, coordinator restart): the payloads already recorded are completed, not re-evaluated.
    const known = prep.ours.map((e) => ledger.byHash(e.payload.toString('hex')));
    if (prep.ours.length > 0 && known.every((r) => r !== undefined)) {
      return this.#signAll(p.proposalId, prep.hash, prep.ours, known as SignatureRecord[]);
    }
    const currentLedger = ledgerLowerBound(policy, now);
    if (currentLedger === undefined) {
      return this.#finish(p.proposalId, prep.hash, 'reject', [
        reason(
          'NO_LEDGER_CLOCK',
          'This node has no ledger clock (policy soroban.ledgerClock): it cannot check an expiration window.',
          'signatureExpirationLedger',
        ),
      ]);
    }
    type Step = { kind: 'sign'; records: SignatureRecord[] } | { kind: 'decided'; outcome: Outcome; reasons: Reason[] };
    const step = ledger.atomically((): Step => {
      const evaluation = evaluateAuthEntries(policy, {
        entries: prep.ours.map((e) => e.summary),
        now,
        currentLedger,
        spent: (assetKey, windowSeconds) => ledger.spent(assetKey, windowSeconds, now),
      });
      const reasons: Reason[] = [...prep.resourceReasons, ...evaluation.reasons];
      const slots = prep.ours.map((e) => ({
        e,
        source: e.summary.address as string,
        seq: nonceSlot(e.summary.nonce ?? ''),
        hash: e.payload.toString('hex'),
      }));
      for (const s of slots) {
        const holder = ledger.liveConflict(s.source, s.seq, s.hash, now);
        if (holder) {
          reasons.push(
            reason(
              'NONCE_TAKEN',
              `This node already signed a different payload for ${s.source} nonce ${s.e.summary.nonce} (entry ${s.e.index}).`,
              `authEntries[${s.e.index}].nonce`,
            ),
          );
        }
      }
      if (evaluation.outcome !== 'approve' || reasons.length > 0) {
        // Manual approval of auth entries is not offered: a hold is answered as a reject with its reasons.
        this.#record(p.proposalId, prep.hash, 'reject', reasons, now, nowMs, judged);
        return { kind: 'decided', outcome: 'reject', reasons };
      }
      const records = slots.map((s, i) => {
        const r = ledger.reserveInTransaction(
          {
            proposalId: p.proposalId,
            signHash: s.hash,
            txHash: s.hash,
            source: s.source,
            seq: s.seq,
            maxTime: expirationTime(policy, s.e.summary.signatureExpirationLedger ?? 0),
            signer: this.#d.signer.address,
            // Velocity is charged once per proposal, on its first entry.
            spend: i === 0 ? evaluation.spend : [],
            manual: false,
          },
          now,
        );
        // Inside this transaction the conflicts were checked above, so this is 'reserved' or 'existing'.
        return (r as { record: SignatureRecord }).record;
      });
      this.#record(p.proposalId, prep.hash, 'approve', [], now, nowMs, judged);
      return { kind: 'sign', records };
    });
    if (step.kind === 'decided') return this.#finish(p.proposalId, prep.hash, step.outcome, step.reasons, false);
    return this.#signAll(p.proposalId, prep.hash, prep.ours, step.records);
  }

  async #signAll(
    proposalId: string,
    hash: string,
    ours: readonly PreparedEntry[],
    records: readonly SignatureRecord[],
  ): Promise<DecisionBody> {
    const { ledger, audit, signer, logger, metrics } = this.#d;
    const out: { index: number; payload: string; signature: string }[] = [];
    for (const [i, e] of ours.entries()) {
      const rec = records[i] as SignatureRecord;
      let b64 = rec.state === 'signed' ? rec.signature : null;
      if (b64 === null) {
        const started = process.hrtime.bigint();
        try {
          b64 = (await signer.sign(e.payload)).toString('base64');
        } catch (err) {
          logger.error(
            { hash: rec.signHash, code: codeOf(err) },
            'key backend failed to sign; the intent keeps the nonce',
          );
          return this.#finish(
            proposalId,
            hash,
            'reject',
            [reason(SIGNER_UNAVAILABLE, `The key backend could not sign (${codeOf(err)}); ask again later.`)],
            false,
          );
        }
        metrics?.signLatency.observe({ backend: signer.kind }, Number(process.hrtime.bigint() - started) / 1e9);
        const sig = b64;
        ledger.atomically(() => {
          ledger.storeSignature(rec.signHash, sig, Math.floor(this.#nowMs() / 1000));
          audit.append(
            'signature.released',
            {
              proposalId,
              hash: rec.signHash,
              signer: signer.address,
              signature: sig,
              source: rec.source,
              seq: rec.seq,
            },
            this.#nowMs(),
          );
        });
      }
      out.push({ index: e.index, payload: e.payload.toString('hex'), signature: b64 });
    }
    metrics?.decisions.inc({ outcome: 'approve', reason: 'none' });
    logger.info({ proposalId, hash, entries: out.length }, 'auth entries signed');
    return { ...this.#body(proposalId, hash, 'approve', []), authSignatures: out };
  }

  #record(
    proposalId: string,
    hash: string,
    outcome: Outcome,
    reasons: readonly Reason[],
    now: number,
    nowMs: number,
    entries?: readonly object[],
  ) {
    this.#d.ledger.recordDecision(proposalId, hash, outcome, reasons, now);
    this.#d.audit.append(
      'decision',
      { proposalId, hash, outcome, reasons, ...(entries ? { authEntries: entries } : {}) },
      nowMs,
    );
  }

  #finish(proposalId: string, hash: string, outcome: Outcome, reasons: Reason[], record = true): DecisionBody {
    const { ledger, logger, metrics } = this.#d;
    const nowMs = this.#nowMs();
    if (record)
      ledger.atomically(() => this.#record(proposalId, hash, outcome, reasons, Math.floor(nowMs / 1000), nowMs));
    for (const r of reasons.length > 0 ? reasons : [reason('NONE', '')])
      metrics?.decisions.inc({ outcome, reason: r.code });
    logger.info({ proposalId, hash, outcome, reasons: reasons.map((r) => r.code) }, 'auth decision');
    return this.#body(proposalId, hash, outcome, reasons);
  }

  #body(proposalId: string, hash: string, outcome: Outcome, reasons: readonly Reason[]): DecisionBody {
    return {
      proposalId,
      hash,
      outcome,
      reasons: reasons
        .slice(0, 64)
        .map((r) => ({ ...r, code: r.code.slice(0, 64), message: r.message.slice(0, 1024) })),
      signerKey: this.#d.signer.address,
    };
  }
}

import { checkSorobanResources, evaluateAuthEntries, ledgerLowerBound, policyReasons } from '@cosigner/policy/evaluate';
import type { Policy } from '@cosigner/policy/schema';
import { authBundleHash } from '@cosigner/protocol/auth-bundle';
import { decodeEnvelope, xdrTransactionOf } from '@cosigner/stellar/decode';
import {
  authCredentials,
  authEntryPayload,
  decodeAuthEntry,
  describeAuthEntry,
  sorobanShape,
} from '@cosigner/stellar/soroban';
import type { AuthEntrySummary } from '@cosigner/stellar/types';
import type { xdr } from '@stellar/stellar-sdk/base';
import type { Reason } from './ledger.ts';
import {
  type DecisionBody,
  NO_HASH,
  type PipelineDeps,
  type PolicyEvaluation,
  type ProposalBody,
  SigningPipeline,
  type SlotClaim,
} from './pipeline.ts';
import { hashMismatch, malformedXdr, nodeReasons, wrongNetwork } from './reasons.ts';

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
 *
 * Everything from the policy on is the review pipeline's (pipeline.ts), the one transactions go through too.
 */

/** The ledger slot sequence of an auth nonce: never a decimal sequence number, so it cannot meet a tx slot. */
export function nonceSlot(nonce: bigint | string): string {
  return `auth:${nonce.toString()}`;
}

export interface SorobanDeps extends PipelineDeps {
  network: string;
  policy: Policy;
  /** The pipeline to run on (shared with the transaction reviewer); one of its own over these deps otherwise. */
  pipeline?: SigningPipeline;
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

/** The auth entries of a transaction's single invokeHostFunction operation, and its declared resources. */
function transactionEntries(
  x: xdr.Transaction,
  policy: Policy,
): { entries: xdr.SorobanAuthorizationEntry[]; resourceReasons: Reason[] } | Reason {
  // The shape rules (one Soroban operation, with its resources) are packages/stellar's; this node signs entries of
  // an invokeHostFunction only, and bounds the resources by its policy.
  const shape = sorobanShape(x);
  if (
    shape.kind === 'classic' ||
    (shape.kind === 'malformed' && shape.problem === 'operationCount') ||
    x.operations[0]?.body.type !== 'invokeHostFunction'
  ) {
    return nodeReasons.reason('UNSUPPORTED_PROPOSAL', {
      message: 'The transaction must hold exactly one invokeHostFunction operation.',
      field: 'operations',
    });
  }
  if (shape.kind === 'malformed') return nodeReasons.reason('NO_SOROBAN_DATA', { field: 'sorobanData' });
  const resourceReasons = checkSorobanResources(policy, shape.resources);
  return { entries: shape.auth, resourceReasons };
}

/**
 * Decode the proposal's entries with OUR network, compute every payload, compare the coordinator's digest and
 * pick the entries this node signs: address credentials naming an account of its policy. Pure (no clock).
 */
export function prepareAuthProposal(p: ProposalBody, network: string, policy: Policy): PreparedAuth {
  const claimed = p.hash ?? NO_HASH;
  const refuse = (hash: string, reason: Reason): PreparedAuth => ({ ok: false, hash, reasons: [reason] });
  if (p.networkPassphrase !== network) return refuse(claimed, wrongNetwork());
  const standalone = p.authEntries !== undefined;
  if (standalone === (p.xdr !== undefined)) {
    return refuse(claimed, nodeReasons.reason('MALFORMED_PROPOSAL', { field: 'kind' }));
  }
  let raw: xdr.SorobanAuthorizationEntry[];
  let resourceReasons: Reason[] = [];
  try {
    if (standalone) {
      raw = (p.authEntries as string[]).map((b64) => decodeAuthEntry(b64));
    } else {
      const d = decodeEnvelope(p.xdr as string, network);
      if (d.kind !== 'transaction') {
        const message = 'Auth entries are signed inside a plain transaction, not a fee bump.';
        return refuse(claimed, nodeReasons.reason('UNSUPPORTED_PROPOSAL', { message, field: 'xdr' }));
      }
      const t = transactionEntries(xdrTransactionOf(d) as xdr.Transaction, policy);
      if ('code' in t) return refuse(claimed, t);
      raw = t.entries;
      resourceReasons = t.resourceReasons;
    }
  } catch (e) {
    return refuse(claimed, malformedXdr('The entries', e, standalone ? 'authEntries' : 'xdr'));
  }
  const entries: PreparedEntry[] = [];
  for (const [index, entry] of raw.entries()) {
    if (authCredentials(entry).credentials === 'sourceAccount') {
      if (!standalone) continue;
      const message = 'A source-account entry has no payload to sign: the envelope signatures cover it.';
      return refuse(
        claimed,
        policyReasons.reason('AUTH_CREDENTIALS_NOT_SIGNABLE', { message, field: `authEntries[${index}]` }),
      );
    }
    try {
      entries.push({ index, entry, summary: describeAuthEntry(entry), payload: authEntryPayload(entry, network) });
    } catch (e) {
      return refuse(claimed, malformedXdr(`Entry ${index}`, e, `authEntries[${index}]`));
    }
  }
  const hash = authBundleHash(entries.map((e) => e.payload));
  if (p.hash !== undefined && p.hash !== hash) return refuse(hash, hashMismatch());
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

/** An entry's slot on the pipeline: its (address, nonce), held until its expiration ledger has surely passed. */
function nonceClaim(policy: Policy, e: PreparedEntry): SlotClaim {
  const payload = e.payload.toString('hex');
  const source = e.summary.address as string;
  return {
    signHash: payload,
    txHash: payload,
    source,
    seq: nonceSlot(e.summary.nonce ?? ''),
    maxTime: expirationTime(policy, e.summary.signatureExpirationLedger ?? 0),
    taken: () =>
      nodeReasons.reason('NONCE_TAKEN', {
        message: `This node already signed a different payload for ${source} nonce ${e.summary.nonce} (entry ${e.index}).`,
        field: `authEntries[${e.index}].nonce`,
      }),
  };
}

export class SorobanReviewer {
  readonly #d: SorobanDeps;
  readonly #pipe: SigningPipeline;

  constructor(deps: SorobanDeps) {
    this.#d = deps;
    this.#pipe = deps.pipeline ?? new SigningPipeline(deps);
  }

  /**
   * Review an `authEntries` proposal; never throws for bad input; signs only on approval, after recording.
   * `first` runs first in the transaction that records the decision (the `proposal.seen` audit entry).
   */
  async review(p: ProposalBody, first?: () => void): Promise<DecisionBody> {
    // Read once: a policy reload during this review changes the next one only.
    const policy = this.#d.policy;
    const prep = prepareAuthProposal(p, this.#d.network, policy);
    const kind = 'authEntries';
    if (!prep.ok) return this.#pipe.finish(p.proposalId, prep.hash, 'reject', prep.reasons, { first, kind });
    const { ours, resourceReasons } = prep;
    return this.#pipe.review({
      kind,
      proposalId: p.proposalId,
      hash: prep.hash,
      slots: ours.map((e) => nonceClaim(policy, e)),
      ...(first ? { first } : {}),
      // What the audit keeps of each entry this node judged: enough to find the on-chain use of a signature.
      auditData: {
        authEntries: ours.map((e) => ({
          index: e.index,
          address: e.summary.address ?? null,
          nonce: e.summary.nonce ?? null,
          expiration: e.summary.signatureExpirationLedger ?? null,
          payload: e.payload.toString('hex'),
        })),
      },
      evaluate: (now): PolicyEvaluation => {
        const currentLedger = ledgerLowerBound(policy, now);
        if (currentLedger === undefined) {
          const reason = nodeReasons.reason('NO_LEDGER_CLOCK', { field: 'signatureExpirationLedger' });
          return { outcome: 'reject', reasons: [reason], spend: [] };
        }
        const { ledger } = this.#d;
        const evaluation = evaluateAuthEntries(policy, {
          entries: ours.map((e) => e.summary),
          now,
          currentLedger,
          spent: (assetKey, windowSeconds) => ledger.spent(assetKey, windowSeconds, now),
        });
        if (resourceReasons.length === 0) return evaluation;
        return { ...evaluation, outcome: 'reject', reasons: [...resourceReasons, ...evaluation.reasons] };
      },
      // Manual approval of auth entries is not offered (no `hold`): a hold is answered as a reject with its reasons.
      answer: (signatures) => ({
        authSignatures: ours.map((e, i) => ({
          index: e.index,
          payload: e.payload.toString('hex'),
          signature: signatures[i] as string,
        })),
      }),
    });
  }
}

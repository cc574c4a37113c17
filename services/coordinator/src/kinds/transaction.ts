import type { Body } from '@cosigner/protocol/messages';
import type { Logger } from '@cosigner/runtime/logger';
import { type DecodedTransaction, decodeEnvelope } from '@cosigner/stellar/decode';
import { checkAuth, computeRequirements, neededLevels } from '@cosigner/stellar/quorum';
import { assembleEnvelope, selectMinimalSignatures } from '@cosigner/stellar/sigset';
import type { AccountAuth, Requirement } from '@cosigner/stellar/types';
import { publicKeyFromAddress, verifyEd25519 } from '@cosigner/stellar/verify';
import { accountsHelpedBy, maxTimeOf, progress } from '../quorum.ts';
import { type CoordinatorStore, type ProposalRecord, type SignatureRecord, step } from '../store.ts';
import type { Submitter } from '../submit.ts';
import { type Approval, type Completion, type Fault, proposalFrame, type Round, type RoundKind } from './kind.ts';

/**
 * A classic transaction (or fee bump) round: every node that signs for a needed account signs the transaction
 * hash; the result is a MINIMAL signature set (stellar-core TransactionFrame::checkAllSignaturesUsed refuses
 * unused signatures with txBAD_AUTH_EXTRA), submitted when the client asked.
 */

export interface TransactionState {
  decoded: DecodedTransaction;
}

/** What an approval is checked against: the proposal's hash (bytes and hex) and the accounts it needs. */
interface ApprovalTarget {
  hash: Buffer;
  rec: Pick<ProposalRecord, 'hash' | 'accounts'>;
}

export interface PreparedTransaction {
  decoded: DecodedTransaction;
  accounts: AccountAuth[];
  requirements: Requirement[];
}

/**
 * Decode, load the source accounts, compute what is needed. Pure of side effects on the store.
 * @throws STELLAR_* decode errors, COORD_ACCOUNT_NOT_FOUND, COORD_HORIZON_UNAVAILABLE
 */
export async function prepareTransaction(
  xdr: string,
  network: string,
  loadAccount: (id: string) => Promise<AccountAuth>,
): Promise<PreparedTransaction> {
  const decoded = decodeEnvelope(xdr, network);
  const ids = [...neededLevels(decoded).keys()];
  const accounts = await Promise.all(ids.map((id) => loadAccount(id)));
  const requirements = computeRequirements(decoded, new Map(accounts.map((a) => [a.accountId, a])));
  return { decoded, accounts, requirements };
}

/** Insert-time record fields of a transaction proposal (app.ts adds id, client fields, timestamps). */
export function transactionFields(p: PreparedTransaction, xdr: string, submit: boolean) {
  return {
    kind: p.decoded.kind,
    xdr,
    hash: p.decoded.hash.toString('hex'),
    requirements: p.requirements,
    accounts: p.accounts,
    submit,
    submitFollowUp: false,
    maxTime: maxTimeOf(p.decoded),
  };
}

/**
 * Why an approval cannot count, or the signature it carries: it must name OUR hash, carry a signature that
 * verifies over it under the node's enrolled key, and that key must be a signer of an account the transaction
 * needs. One rule for decisions on open proposals and for those that arrive after the close.
 */
function approvalFault(stellarKey: string, d: Body<'decision'>, p: ApprovalTarget): Fault | { signature: Buffer } {
  if (d.hash !== p.rec.hash)
    return { kind: 'hash_mismatch', detail: `node computed hash ${d.hash}, the proposal hash is ${p.rec.hash}` };
  if (d.signature === undefined) return { kind: 'missing_signature', detail: 'an approval without a signature' };
  const signature = Buffer.from(d.signature, 'base64');
  if (!verifyEd25519(publicKeyFromAddress(stellarKey), p.hash, signature)) {
    return {
      kind: 'invalid_signature',
      detail: 'the signature does not verify over the proposal hash under the enrolled key',
    };
  }
  if (accountsHelpedBy(p.rec, stellarKey).length === 0) {
    return { kind: 'not_a_signer', detail: `${stellarKey} is not a signer of any account this transaction needs` };
  }
  return { signature };
}

export function transactionKind(o: {
  store: CoordinatorStore;
  submitter: Submitter;
  logger: Logger;
}): RoundKind<TransactionState, ApprovalTarget> {
  const { store } = o;
  const signatures = (round: Round<TransactionState>) => store.signatures(round.rec.id);
  /** The minimal signature set once the stored signatures `sigs` meet every requirement, checked as core would. */
  function assemble(round: Round<TransactionState>, sigs: readonly SignatureRecord[]): Completion | null {
    const { rec, state, accounts } = round;
    if (!progress(rec, new Set(sigs.map((s) => s.signerKey))).every((p) => p.met)) return null;
    const chosen = selectMinimalSignatures(
      state.decoded,
      accounts as Map<string, AccountAuth>,
      sigs.map((s) => ({ publicKey: s.signerKey, signature: Buffer.from(s.signature, 'base64') })),
    );
    if (chosen === null) return null;
    const envelope = assembleEnvelope(state.decoded, chosen);
    // Belt and braces: core's own verdict on what we are about to store (a bug here must never ship an envelope).
    const verdict = checkAuth(decodeEnvelope(envelope, rec.network), accounts as Map<string, AccountAuth>);
    if (!verdict.ok) {
      o.logger.error({ proposalId: rec.id, verdict }, 'assembled envelope fails the signature check');
      return null;
    }
    return { envelope, event: { signatures: chosen.length } };
  }
  return {
    kinds: ['transaction', 'feeBump'],
    open(rec, prepared) {
      const d = prepared as DecodedTransaction | undefined;
      // The route's decoding of these very bytes when it matches the row: one decode per envelope per process.
      const decoded =
        d !== undefined && d.hash.toString('hex') === rec.hash ? d : decodeEnvelope(rec.xdr!, rec.network);
      return { decoded };
    },
    request: ({ rec }, _node, accounts) => proposalFrame(rec, accounts, { kind: 'transaction', xdr: rec.xdr! }),
    verify(round, nodeId, stellarKey, d, at): Fault | Approval {
      const checked = approvalFault(stellarKey, d, { hash: round.state.decoded.hash, rec: round.rec });
      if ('kind' in checked) return checked;
      const signature = checked.signature.toString('base64');
      return {
        rows: { signatures: [{ proposalId: round.rec.id, signerKey: stellarKey, nodeId, signature, createdAt: at }] },
      };
    },
    signers: (round) => step(signatures(round), (sigs) => new Set(sigs.map((s) => s.signerKey))),
    complete: (round) => step(signatures(round), (sigs) => assemble(round, sigs)),
    afterSigned(round, envelope) {
      if (!round.rec.submit || envelope === null) return false;
      void o.submitter.submit(round.rec, envelope, false);
      return true;
    },
    resumeSigned(rec) {
      void o.submitter.submit(rec, rec.envelope!, true);
    },
    lateTarget: (round) => ({
      hash: round.state.decoded.hash,
      rec: { hash: round.rec.hash, accounts: round.rec.accounts },
    }),
    lateTargetOf: (rec) => ({ hash: Buffer.from(rec.hash, 'hex'), rec }),
    verifyLate(target, stellarKey, d) {
      const f = approvalFault(stellarKey, d, target);
      return 'kind' in f ? f : null;
    },
  };
}

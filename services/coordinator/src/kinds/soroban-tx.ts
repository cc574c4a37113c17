import { randomUUID } from 'node:crypto';
import type { DecodedTransaction } from '@cosigner/stellar/decode';
import { type Transaction, xdr } from '@stellar/stellar-sdk/base';
import { ed25519Weights, maxTimeOf } from '../quorum.ts';
import { checkSorobanTransaction, entryAccount } from '../soroban.ts';
import type { ProposalRecord } from '../store.ts';
import { type AuthDeps, type AuthState, authRound, type PreparedAuthRound, prepareAuthRound } from './auth.ts';
import type { RoundControl, RoundKind } from './kind.ts';
import { prepareTransaction, transactionFields } from './transaction.ts';

/**
 * An already simulated invokeHostFunction transaction whose entries have address credentials naming an account
 * the cluster signs for. The signed entries are put into the transaction; then, when the transaction's source is
 * itself a cluster account, a second proposal (kind `transaction`, idempotency key `soroban:<id>`) has the nodes
 * sign the new transaction hash and submits it: the envelope hash covers the auth entries, signatures included,
 * so it can only be signed once every entry is final.
 *
 * Opening the follow-up needs the network (the source account's signers), so it cannot share the `signed` commit.
 * That commit marks the row instead (followUpDue), and the mark is cleared only once the follow-up exists, was found
 * unneeded or its failure was reported: a coordinator (or replica) that dies in between leaves the row open, and
 * the restart (or the replica that takes the lapsed round over) opens the follow-up through `resumeSigned`, under
 * the same idempotency key, so exactly one follow-up exists whoever gets there.
 */

/** The idempotency key of the transaction proposal that follows a Soroban round. */
export const followUpKey = (id: string): string => `soroban:${id}`;

/**
 * A Soroban transaction's auth round, or null when no entry has address credentials of an account some enrolled
 * node signs for (the transaction round alone serves it).
 * @throws COORD_SOROBAN_NO_RESOURCES, COORD_SOROBAN_LIMIT, COORD_BAD_REQUEST, COORD_SOROBAN_BAD_ENTRY,
 *   COORD_SOROBAN_ENTRY_EXPIRED, COORD_SOROBAN_V2_DISABLED
 */
export async function prepareSorobanTx(
  o: AuthDeps,
  decoded: DecodedTransaction,
  xdrB64: string,
  submit: boolean,
): Promise<PreparedAuthRound | null> {
  const entries = checkSorobanTransaction(decoded, o.limits);
  if (entries === null || entries.length === 0 || decoded.kind !== 'transaction') return null;
  if (!entries.some((e, i) => entryAccount(e, o.limits, i).account !== null)) return null;
  const round = { kind: 'sorobanTx' as const, tx: xdrB64, submitFollowUp: submit, maxTime: maxTimeOf(decoded) };
  const r = await prepareAuthRound(o, round, entries, true);
  return r.fields.requirements.length === 0 ? null : r;
}

/** The transaction with the signed entries in its one invokeHostFunction operation, unsigned. */
function withSignedEntries(txB64: string, signed: xdr.SorobanAuthorizationEntry[]): string {
  // prepareSorobanTx admitted only a v1 envelope with one invokeHostFunction operation.
  const env = xdr.TransactionEnvelope.fromXdr(txB64, 'base64') as xdr.TransactionEnvelopeTx;
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
  return xdr.TransactionEnvelope.envelopeTypeTx(new xdr.TransactionV1Envelope({ tx, signatures: [] })).toXdr('base64');
}

export function sorobanTxKind(o: AuthDeps): RoundKind<AuthState> {
  /**
   * The entries are final; when the transaction's source is a cluster account, its envelope is the next
   * proposal (the nodes review the transaction, signed entries included, and sign its hash).
   */
  async function followUp(rec: ProposalRecord, envelope: string, ctl: RoundControl): Promise<void> {
    await openFollowUp(rec, envelope, ctl);
    // Only now: a death before this line leaves the row marked, and the restart or a takeover opens it.
    await o.store.followUpDone(rec.id);
  }

  async function openFollowUp(rec: ProposalRecord, envelope: string, ctl: RoundControl): Promise<void> {
    const idem = followUpKey(rec.id);
    try {
      const existing = await o.store.getByIdempotencyKey(idem);
      // Inserted, then the coordinator died before starting it: the pending row resumes like any other.
      if (existing) return;
      const prepared = await prepareTransaction(envelope, rec.network, o.loadAccount);
      const nodeKeys = new Set((await o.store.listNodes()).map((n) => n.stellarKey));
      const source = prepared.accounts.find((a) => a.accountId === (prepared.decoded.tx as Transaction).source);
      if (!source || ![...ed25519Weights(source).keys()].some((k) => nodeKeys.has(k))) return;
      const now = Date.now();
      const { proposal, created } = await o.store.insertProposal({
        ...transactionFields(prepared, envelope, rec.submitFollowUp),
        id: randomUUID(),
        idempotencyKey: idem,
        apiKeyId: rec.apiKeyId,
        network: rec.network,
        status: 'pending',
        statusReason: null,
        callbackUrl: rec.callbackUrl,
        note: `envelope of Soroban proposal ${rec.id}`,
        envelope: null,
        result: null,
        createdAt: now,
        updatedAt: now,
        signedAt: null,
      });
      if (created) await ctl.start(proposal, prepared.decoded);
    } catch (err) {
      o.logger.error({ err, proposalId: rec.id }, 'could not open the envelope proposal');
      ctl.emit(rec, 'proposal.failed', {
        reason: `the envelope proposal could not be opened: ${(err as Error).message}`,
        code: 'COORD_FOLLOW_UP_FAILED',
      });
    }
  }
  return authRound(o, {
    kind: 'sorobanTx',
    envelope: (round, signed) => withSignedEntries(round.rec.xdr!, signed),
    followUp: true,
    // Awaited: with replicas the round's lease is held until the follow-up exists, so no other replica races it.
    async afterSigned(round, envelope, ctl) {
      if (envelope !== null) await followUp(round.rec, envelope, ctl);
      return false;
    },
    async resumeSigned(rec, ctl) {
      // A signed sorobanTx row always carries its envelope; were it missing, opening fails, is reported
      // (COORD_FOLLOW_UP_FAILED) and the row is closed.
      await followUp(rec, rec.envelope ?? '', ctl);
    },
  });
}

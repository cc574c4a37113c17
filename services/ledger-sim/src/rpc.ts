import { type DecodedTransaction, decodeEnvelope } from '@cosigner/stellar/decode';
import { accountIdOf } from '@cosigner/stellar/quorum';
import { Address, Keypair, nativeToScVal, SignerKey, type Transaction, xdr } from '@stellar/stellar-sdk/base';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { LedgerSim } from './ledger-sim.ts';
import { escrowBalanceKey, nonceKey, simulateInvocation } from './soroban.ts';
import {
  type AccountState,
  BASE_FEE,
  BASE_RESERVE,
  type LedgerHeader,
  type LedgerState,
  MAX_LEDGERS_KEPT,
  MAX_TX_SET_SIZE,
  numSubEntries,
  PROTOCOL_VERSION,
  type TxRecord,
} from './state.ts';

/**
 * A small Stellar RPC (JSON-RPC 2.0 over `POST /rpc`) with the methods a Soroban client needs: getHealth,
 * getNetwork, getLatestLedger, getLedgerEntries, simulateTransaction, sendTransaction, getTransaction. Shapes
 * follow stellar-rpc (cmd/stellar-rpc/internal/methods; int64 times as decimal strings) and what js-stellar-sdk's
 * rpc.Server parses (src/rpc/parsers.ts), so `new rpc.Server(url + '/rpc', { allowHttp: true })` works unchanged.
 */

/** JSON-RPC 2.0 error codes (section 5.1). */
export const RPC_ERRORS = Object.freeze({
  parse: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internal: -32603,
});

class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

type Params = Record<string, unknown>;

const ZERO32 = Buffer.alloc(32);

/** The LedgerHeader XDR of a closed ledger (fields the sim does not track are zero). */
export function ledgerHeaderXdr(l: LedgerHeader): xdr.LedgerHeader {
  return new xdr.LedgerHeader({
    ledgerVersion: PROTOCOL_VERSION,
    previousLedgerHash: Buffer.from(l.prevHash, 'hex'),
    scpValue: new xdr.StellarValue({
      txSetHash: ZERO32,
      closeTime: BigInt(l.closedAt),
      upgrades: [],
      ext: xdr.StellarValueExt.stellarValueBasic(),
    }),
    txSetResultHash: ZERO32,
    bucketListHash: ZERO32,
    ledgerSeq: l.sequence,
    totalCoins: l.totalCoins,
    feePool: l.feePool,
    inflationSeq: 0,
    idPool: 0n,
    baseFee: Number(BASE_FEE),
    baseReserve: Number(BASE_RESERVE),
    maxTxSetSize: MAX_TX_SET_SIZE,
    skipList: [ZERO32, ZERO32, ZERO32, ZERO32],
    ext: xdr.LedgerHeaderExt.v0(),
  });
}

/** A LedgerCloseMeta (v0) holding only the header: the sim keeps no per-ledger transaction meta. */
function ledgerCloseMetaXdr(l: LedgerHeader): xdr.LedgerCloseMeta {
  return xdr.LedgerCloseMeta.v0(
    new xdr.LedgerCloseMetaV0({
      ledgerHeader: new xdr.LedgerHeaderHistoryEntry({
        hash: Buffer.from(l.hash, 'hex'),
        header: ledgerHeaderXdr(l),
        ext: xdr.LedgerHeaderHistoryEntryExt.v0(),
      }),
      txSet: new xdr.TransactionSet({ previousLedgerHash: Buffer.from(l.prevHash, 'hex'), txs: [] }),
      txProcessing: [],
      upgradesProcessing: [],
      scpInfo: [],
    }),
  );
}

/** A diagnostic event carrying the sim's reason, as the host reports an error (topics ["error"], data a string). */
export function diagnosticEventXdr(message: string): string {
  return new xdr.DiagnosticEvent({
    inSuccessfulContractCall: false,
    event: new xdr.ContractEvent({
      ext: xdr.ExtensionPoint.v0(),
      contractId: null,
      type: xdr.ContractEventType.diagnostic,
      body: xdr.ContractEventBody.v0(
        new xdr.ContractEventV0({ topics: [xdr.ScVal.scvSymbol('error')], data: xdr.ScVal.scvString(message) }),
      ),
    }),
  }).toXdr('base64');
}

/** Horizon's empty meta for classic transactions; a TransactionMeta v3 with the return value for Soroban ones. */
function resultMetaXdr(r: TxRecord): string {
  if (r.returnValue === undefined) return 'AAAAAAAAAAA=';
  return xdr.TransactionMeta.v3(
    new xdr.TransactionMetaV3({
      ext: xdr.ExtensionPoint.v0(),
      txChangesBefore: [],
      operations: [new xdr.OperationMeta({ changes: [] })],
      txChangesAfter: [],
      sorobanMeta: new xdr.SorobanTransactionMeta({
        ext: xdr.SorobanTransactionMetaExt.v0(),
        events: [],
        returnValue: xdr.ScVal.fromXdr(r.returnValue, 'base64'),
        diagnosticEvents: [],
      }),
    }),
  ).toXdr('base64');
}

/** stellar-rpc's getLedgerEntries limit on keys per request. */
export const MAX_LEDGER_ENTRY_KEYS = 200;

function accountEntryXdr(a: AccountState): xdr.LedgerEntryData {
  return xdr.LedgerEntryData.account(
    new xdr.AccountEntry({
      accountId: Keypair.fromPublicKey(a.id).xdrPublicKey(),
      balance: a.balance,
      seqNum: a.seq,
      numSubEntries: numSubEntries(a),
      inflationDest: a.inflationDest === null ? null : Keypair.fromPublicKey(a.inflationDest).xdrPublicKey(),
      flags: a.flags,
      homeDomain: a.homeDomain,
      thresholds: Buffer.from([a.masterWeight, a.thresholds.low, a.thresholds.medium, a.thresholds.high]),
      signers: a.signers.map((x) => new xdr.Signer({ key: SignerKey.decodeAddress(x.key), weight: x.weight })),
      ext: xdr.AccountEntryExt.v0(),
    }),
  );
}

function contractDataXdr(key: xdr.LedgerKey, val: xdr.ScVal): xdr.LedgerEntryData {
  const k = (key as xdr.LedgerKeyContractDataArm).contractData;
  return xdr.LedgerEntryData.contractData(
    new xdr.ContractDataEntry({
      ext: xdr.ExtensionPoint.v0(),
      contract: k.contract,
      key: k.key,
      durability: k.durability,
      val,
    }),
  );
}

/**
 * The ledger entries getLedgerEntries can show: accounts, the escrow's balance entries (i128 values) and consumed
 * nonces (void values, with their live-until ledger). Missing keys are left out, as stellar-rpc does; the escrow
 * instance is not shown (there is no WASM behind it).
 */
function ledgerEntries(state: LedgerState, keysB64: readonly unknown[]): Record<string, unknown>[] {
  const balances = new Map(
    [...state.escrow.keys()].map((who) => [escrowBalanceKey(state.networkPassphrase, who).toXdr('base64'), who]),
  );
  const nonces = new Map(
    [...state.nonces.keys()].map((id) => {
      const [address, nonce] = id.split(' ') as [string, string];
      return [nonceKey(address, BigInt(nonce)).toXdr('base64'), id];
    }),
  );
  const out: Record<string, unknown>[] = [];
  for (const b64 of keysB64) {
    let key: xdr.LedgerKey;
    try {
      key = xdr.LedgerKey.fromXdr(String(b64), 'base64');
    } catch {
      throw new RpcError(RPC_ERRORS.invalidParams, 'keys must be base64 LedgerKeys');
    }
    const id = key.toXdr('base64');
    let data: xdr.LedgerEntryData | undefined;
    let lastModified = 0;
    let liveUntil: number | undefined;
    if (key.type === 'account') {
      const a = state.accounts.get(Address.account(key.account.accountId.ed25519.value).toString());
      if (a !== undefined) {
        data = accountEntryXdr(a);
        lastModified = a.lastModifiedLedger;
      }
    } else if (balances.has(id)) {
      data = contractDataXdr(key, nativeToScVal(state.escrow.get(balances.get(id)!)!, { type: 'i128' }));
    } else if (nonces.has(id)) {
      data = contractDataXdr(key, xdr.ScVal.scvVoid());
      liveUntil = state.nonces.get(nonces.get(id)!)!;
    }
    if (data === undefined) continue;
    out.push({
      key: id,
      xdr: data.toXdr('base64'),
      lastModifiedLedgerSeq: lastModified,
      ...(liveUntil !== undefined ? { liveUntilLedgerSeq: liveUntil } : {}),
    });
  }
  return out;
}

function stringParam(params: Params, name: string): string {
  const v = params[name];
  if (typeof v !== 'string' || v.length === 0) throw new RpcError(RPC_ERRORS.invalidParams, `${name} must be a string`);
  return v;
}

/** The JSON-RPC methods over one ledger; `base` is the simulator's own URL (for friendbotUrl). */
function methods(ledger: LedgerSim, base: string): Record<string, (params: Params) => unknown> {
  const { state } = ledger;
  const latest = () => ({
    latestLedger: state.lastClosed.sequence,
    latestLedgerCloseTime: String(state.lastClosed.closedAt),
  });
  const decode = (b64: string): DecodedTransaction => {
    try {
      return decodeEnvelope(b64, state.networkPassphrase);
    } catch (e) {
      throw new RpcError(RPC_ERRORS.invalidParams, `invalid transaction: ${(e as Error).message}`);
    }
  };
  return {
    getHealth: () => ({
      status: 'healthy',
      latestLedger: state.lastClosed.sequence,
      oldestLedger: state.ledgers[0]!.sequence,
      ledgerRetentionWindow: MAX_LEDGERS_KEPT,
    }),
    getNetwork: () => ({
      friendbotUrl: `${base}/friendbot`,
      passphrase: state.networkPassphrase,
      protocolVersion: PROTOCOL_VERSION,
    }),
    getLatestLedger: () => {
      const l = state.lastClosed;
      return {
        id: l.hash,
        sequence: l.sequence,
        protocolVersion: PROTOCOL_VERSION,
        closeTime: String(l.closedAt),
        headerXdr: ledgerHeaderXdr(l).toXdr('base64'),
        metadataXdr: ledgerCloseMetaXdr(l).toXdr('base64'),
      };
    },
    simulateTransaction: (params) => {
      const d = decode(stringParam(params, 'transaction'));
      const v1 = d.kind === 'feeBump' ? d.inner! : d;
      const tx = (v1.tx as Transaction).tx as xdr.Transaction;
      const latestLedger = state.lastClosed.sequence;
      const op = tx.operations[0];
      if (tx.operations.length !== 1 || op!.body.type !== 'invokeHostFunction') {
        return {
          latestLedger,
          events: [],
          error: 'simulation: the transaction must hold exactly one invokeHostFunction operation',
        };
      }
      const sim = simulateInvocation(op!.body.invokeHostFunctionOp, {
        networkPassphrase: state.networkPassphrase,
        ledgerSeq: state.openSequence,
        sourceAccount: op!.sourceAccount === null ? accountIdOf(tx.sourceAccount) : accountIdOf(op!.sourceAccount),
        accounts: state.accounts,
        escrow: state.escrow,
        nonces: state.nonces,
      });
      if (!sim.ok) return { latestLedger, events: [diagnosticEventXdr(sim.error)], error: sim.error };
      const r = sim.transactionData.resources;
      return {
        latestLedger,
        minResourceFee: sim.minResourceFee.toString(),
        transactionData: sim.transactionData.toXdr('base64'),
        results: [{ auth: sim.auth.map((e) => e.toXdr('base64')), xdr: sim.returnValue.toXdr('base64') }],
        events: [],
        cost: { cpuInsns: String(r.instructions), memBytes: '0' },
      };
    },
    getLedgerEntries: (params) => {
      const keys = params.keys;
      if (!Array.isArray(keys) || keys.length === 0 || keys.length > MAX_LEDGER_ENTRY_KEYS) {
        throw new RpcError(RPC_ERRORS.invalidParams, `keys must be 1 to ${MAX_LEDGER_ENTRY_KEYS} base64 LedgerKeys`);
      }
      return { latestLedger: state.lastClosed.sequence, entries: ledgerEntries(state, keys) };
    },
    sendTransaction: (params) => {
      const b64 = stringParam(params, 'transaction');
      decode(b64);
      const out = ledger.submit(b64);
      // decode() above refused what submit would call malformed.
      if ('malformed' in out) throw new RpcError(RPC_ERRORS.invalidParams, out.reason);
      if (out.duplicate === true) return { status: 'DUPLICATE', hash: out.hash, ...latest() };
      if (!out.applied) {
        return {
          status: 'ERROR',
          hash: out.hash,
          ...latest(),
          errorResultXdr: out.resultXdr,
          ...(out.diagnostic !== undefined
            ? { diagnosticEventsXdr: [diagnosticEventXdr(out.diagnostic)], diagnostic: out.diagnostic }
            : {}),
        };
      }
      return { status: 'PENDING', hash: out.hash, ...latest() };
    },
    getTransaction: (params) => {
      const hash = stringParam(params, 'hash').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(hash)) throw new RpcError(RPC_ERRORS.invalidParams, 'hash must be 64 hex characters');
      const oldest = state.ledgers[0]!;
      const common = {
        txHash: hash,
        ...latest(),
        oldestLedger: oldest.sequence,
        oldestLedgerCloseTime: String(oldest.closedAt),
      };
      const r = state.txByHash.get(hash);
      if (r === undefined) return { status: 'NOT_FOUND', ...common };
      return {
        status: r.successful ? 'SUCCESS' : 'FAILED',
        ...common,
        ledger: r.ledger,
        createdAt: String(r.createdAt),
        applicationOrder: state.txs.filter((t) => t.ledger === r.ledger && t.order <= r.order).length,
        feeBump: r.innerHash !== undefined,
        envelopeXdr: r.envelopeXdr,
        resultXdr: r.resultXdr,
        resultMetaXdr: resultMetaXdr(r),
        ...(r.diagnostic !== undefined
          ? { diagnosticEventsXdr: [diagnosticEventXdr(r.diagnostic)], diagnostic: r.diagnostic }
          : {}),
      };
    },
  };
}

/** Registers `POST /rpc`. Errors are JSON-RPC error objects (HTTP 200), as stellar-rpc answers them. */
export function registerRpc(app: FastifyInstance, ledger: LedgerSim): void {
  const answerError = (reply: FastifyReply, id: unknown, code: number, message: string) =>
    reply.code(200).send({ jsonrpc: '2.0', id: id ?? null, error: { code, message } });
  app.post<{ Body: unknown }>(
    '/rpc',
    {
      // A body that is not JSON is a JSON-RPC parse error, not a Horizon problem.
      errorHandler: (err: Error & { statusCode?: number }, req, reply) => {
        const status = err.statusCode ?? 500;
        if (status === 413) {
          return reply
            .code(413)
            .send({ jsonrpc: '2.0', id: null, error: { code: RPC_ERRORS.invalidRequest, message: err.message } });
        }
        if (status >= 400 && status < 500)
          return answerError(reply, null, RPC_ERRORS.parse, `parse error: ${err.message}`);
        req.log.error({ err }, 'rpc request failed');
        return answerError(reply, null, RPC_ERRORS.internal, 'internal error');
      },
    },
    async (req, reply) => {
      const body = req.body as Record<string, unknown> | null;
      if (body === null || typeof body !== 'object' || Array.isArray(body) || body.jsonrpc !== '2.0') {
        return answerError(reply, null, RPC_ERRORS.invalidRequest, 'a JSON-RPC 2.0 request object is expected');
      }
      const id = body.id;
      const method = body.method;
      const table = methods(ledger, `${req.protocol}://${req.host}`);
      if (typeof method !== 'string' || !Object.hasOwn(table, method)) {
        return answerError(reply, id, RPC_ERRORS.methodNotFound, `method not found: ${String(method)}`);
      }
      const params = body.params ?? {};
      if (typeof params !== 'object' || params === null || Array.isArray(params)) {
        return answerError(reply, id, RPC_ERRORS.invalidParams, 'params must be an object');
      }
      try {
        return { jsonrpc: '2.0', id: id ?? null, result: table[method]!(params as Params) };
      } catch (e) {
        if (!(e instanceof RpcError)) throw e;
        return answerError(reply, id, e.code, e.message);
      }
    },
  );
}

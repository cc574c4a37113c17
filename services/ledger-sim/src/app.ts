import { join } from 'node:path';
import { hostCheck } from '@cosigner/runtime/hosts';
import type { Logger } from '@cosigner/runtime/logger';
import formbody from '@fastify/formbody';
import { Account, Operation, TimeoutInfinite, TransactionBuilder } from '@stellar/stellar-sdk/base';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { Engine, type SubmitOutcome } from './engine.ts';
import {
  accountJson,
  badRequest,
  feeStatsJson,
  isAccountId,
  ledgerJson,
  notFound,
  type Problem,
  page,
  rootJson,
  serverError,
  tooLarge,
  transactionFailed,
  transactionJson,
  transactionMalformed,
} from './horizon.ts';
import type { LedgerSim } from './ledger-sim.ts';
import { registerRpc } from './rpc.ts';
import {
  type AccountState,
  loadSnapshot,
  rootKeypair,
  LedgerState as State,
  saveSnapshot,
  type TxRecord,
} from './state.ts';

/** stellar-core's standalone network passphrase (Config.cpp), the simulator's default. */
export const STANDALONE_PASSPHRASE = 'Standalone Network ; February 2017';
/** Largest request body: a base64 envelope of the largest Soroban transaction fits with room to spare. */
export const DEFAULT_BODY_LIMIT = 256 * 1024;
/** Friendbot's gift, as the SDF friendbot gives on testnet: 10000 XLM. */
export const FRIENDBOT_AMOUNT = '10000';
export const SNAPSHOT_FILE = 'ledger.json';

export interface LedgerSimOptions {
  networkPassphrase?: string;
  /** Milliseconds between ledger closes; 0 closes only when `ledger.close()` is called (tests). Default 1000. */
  closeMs?: number;
  /** Directory of the snapshot file; undefined keeps state in memory only. */
  dataDir?: string;
  bodyLimit?: number;
  logger?: Logger;
  /** Clock in milliseconds (tests move time). */
  now?: () => number;
  /** Host names it answers for besides loopback literals and `localhost` (`--allowed-host`, compose: ledger). */
  allowedHosts?: readonly string[];
  /** The address it listens on (a specific IP literal is served too). */
  listenHost?: string;
}

export type { LedgerSim };

declare module 'fastify' {
  interface FastifyInstance {
    ledger: LedgerSim;
  }
}

interface ListQuery {
  order: 'asc' | 'desc';
  limit: number;
  cursor: string;
}

/** Horizon's paging parameters: order asc|desc (default asc), limit 1..200 (default 10), cursor. */
function listQuery(q: Record<string, unknown>): ListQuery | Problem {
  const order = q.order ?? 'asc';
  if (order !== 'asc' && order !== 'desc') return badRequest('order', 'order must be asc or desc');
  const limitRaw = q.limit ?? '10';
  const limit = typeof limitRaw === 'string' && /^\d{1,3}$/.test(limitRaw) ? Number(limitRaw) : Number.NaN;
  if (!(limit >= 1 && limit <= 200)) return badRequest('limit', 'limit must be an integer from 1 to 200');
  const cursor = q.cursor ?? '';
  if (typeof cursor !== 'string' || !/^(now|\d{0,19})$/.test(cursor)) {
    return badRequest('cursor', 'cursor must be a paging token');
  }
  return { order, limit, cursor };
}

function isProblem(x: unknown): x is Problem {
  return typeof x === 'object' && x !== null && 'type' in x && 'status' in x;
}

function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.code(p.status).type('application/problem+json; charset=utf-8').send(p);
}

function pageTxs(list: readonly TxRecord[], q: ListQuery): TxRecord[] {
  const c = q.cursor === '' ? null : q.cursor === 'now' ? Number.MAX_SAFE_INTEGER : Number(q.cursor);
  const sorted = q.order === 'asc' ? list : [...list].reverse();
  const after = sorted.filter((r) => c === null || (q.order === 'asc' ? r.order > c : r.order < c));
  return after.slice(0, q.limit);
}

/**
 * Builds the simulator's fastify app: Horizon's endpoints over an in-memory LedgerState, loaded from
 * `<dataDir>/ledger.json` when present. Ledger closes run every `closeMs` until the app closes, which also
 * writes a last snapshot.
 * @throws LEDGER_SNAPSHOT_CORRUPT, LEDGER_SNAPSHOT_WRONG_NETWORK when the snapshot cannot be used.
 */
export async function build(opts: LedgerSimOptions = {}): Promise<FastifyInstance> {
  const networkPassphrase = opts.networkPassphrase ?? STANDALONE_PASSPHRASE;
  const now = opts.now ?? Date.now;
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const snapshotPath = opts.dataDir === undefined ? undefined : join(opts.dataDir, SNAPSHOT_FILE);
  const nowSec = (): number => Math.floor(now() / 1000);
  const state =
    (snapshotPath === undefined ? undefined : await loadSnapshot(snapshotPath, networkPassphrase, nowSec())) ??
    new State(networkPassphrase, nowSec());
  const engine = new Engine(state, now);
  const root = rootKeypair(networkPassphrase);
  const listeners = new Set<(r: TxRecord) => void>();
  const streams = new Set<import('node:http').ServerResponse>();

  let dirty = snapshotPath !== undefined;
  /** The last closed ledger the latest snapshot holds: shutdown saves when ledgers closed since (even empty ones). */
  let savedLedger = state.lastClosed.sequence;
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    if (snapshotPath === undefined) return Promise.resolve();
    dirty = false;
    savedLedger = state.lastClosed.sequence;
    // Writes are chained so two snapshots never race on the temporary file.
    saving = saving
      .then(() => saveSnapshot(snapshotPath, state))
      .catch((e: unknown) => {
        dirty = true;
        opts.logger?.error({ err: e }, 'snapshot write failed');
      });
    return saving;
  };
  const ledger: LedgerSim = {
    state,
    engine,
    async close() {
      state.close(nowSec());
      if (dirty) await save();
    },
    save,
    submit(envelopeXdr) {
      const out = engine.submit(envelopeXdr);
      if ('record' in out && out.record !== undefined && out.duplicate !== true) {
        dirty = true;
        for (const l of listeners) l(out.record);
      }
      return out;
    },
  };

  const app = Fastify({
    bodyLimit,
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
  });
  app.decorate('ledger', ledger);
  // DNS rebinding guard (runtime/hosts.ts). Origin is not checked: browser tools (Stellar Laboratory, wallets)
  // talk to Horizon from their own origins, and the Host check alone keeps a rebinding name out.
  const checkHost = hostCheck({ allowedHosts: opts.allowedHosts, listenHost: opts.listenHost });
  app.addHook('onRequest', async (req, reply) => {
    const refused = checkHost(req.headers);
    if (refused) return reply.status(refused.status).send(refused.toJSON());
  });
  await app.register(formbody, { bodyLimit });

  const baseOf = (req: { protocol: string; host: string }): string => `${req.protocol}://${req.host}`;

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendProblem(reply, tooLarge(bodyLimit));
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return sendProblem(reply, { ...badRequest('body', err.message), status });
    }
    opts.logger?.error({ err }, 'request failed');
    return sendProblem(reply, serverError());
  });
  app.setNotFoundHandler((_req, reply) => sendProblem(reply, notFound()));

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async () => ({ status: 'ok', ledger: state.lastClosed.sequence }));
  app.get('/', async (req) => rootJson(state, baseOf(req)));
  app.get('/fee_stats', async () => feeStatsJson(state));

  // Horizon's account list, filtered by signer (GET /accounts?signer=G...): the accounts in which the key is an added
  // signer, or whose master key it is while the master weight is above 0 (what Horizon's accounts_signers table
  // holds), ordered by account id, the account id being the paging token. Horizon also filters by sponsor, asset
  // and liquidity pool; the simulator does not, and says so rather than answering an unfiltered list.
  app.get<{ Querystring: Record<string, unknown> }>('/accounts', async (req, reply) => {
    const { signer, cursor = '', order = 'asc', limit: limitRaw = '10' } = req.query;
    if (signer === undefined) {
      return sendProblem(reply, badRequest('signer', 'this simulator lists accounts by signer only (?signer=G...)'));
    }
    if (typeof signer !== 'string' || !isAccountId(signer)) {
      return sendProblem(reply, badRequest('signer', 'signer must be a G... account id'));
    }
    if (order !== 'asc' && order !== 'desc')
      return sendProblem(reply, badRequest('order', 'order must be asc or desc'));
    const limit = typeof limitRaw === 'string' && /^\d{1,3}$/.test(limitRaw) ? Number(limitRaw) : Number.NaN;
    if (!(limit >= 1 && limit <= 200)) {
      return sendProblem(reply, badRequest('limit', 'limit must be an integer from 1 to 200'));
    }
    if (typeof cursor !== 'string' || (cursor !== '' && !isAccountId(cursor))) {
      return sendProblem(reply, badRequest('cursor', 'cursor must be an account id'));
    }
    const signs = (a: AccountState): boolean =>
      a.signers.some((x) => x.key === signer) || (a.id === signer && a.masterWeight > 0);
    const ids = [...state.accounts.values()].filter(signs).map((a) => a.id);
    ids.sort();
    if (order === 'desc') ids.reverse();
    const after = ids.filter((id) => cursor === '' || (order === 'asc' ? id > cursor : id < cursor)).slice(0, limit);
    const base = baseOf(req);
    return page(
      after.map((id) => accountJson(state.accounts.get(id) as AccountState, base)),
      `${base}/accounts`,
      { order, limit },
    );
  });

  app.get<{ Params: { id: string } }>('/accounts/:id', async (req, reply) => {
    if (!isAccountId(req.params.id)) return sendProblem(reply, badRequest('account_id', 'invalid account id'));
    const a = state.accounts.get(req.params.id);
    return a === undefined ? sendProblem(reply, notFound()) : accountJson(a, baseOf(req));
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>(
    '/accounts/:id/transactions',
    async (req, reply) => {
      if (!isAccountId(req.params.id)) return sendProblem(reply, badRequest('account_id', 'invalid account id'));
      const q = listQuery(req.query);
      if (isProblem(q)) return sendProblem(reply, q);
      const id = req.params.id;
      const base = baseOf(req);
      if (wantsStream(req)) return stream(reply, base, q, (r) => r.accounts.includes(id));
      const mine = state.txs.filter((r) => r.accounts.includes(id));
      if (mine.length === 0 && !state.accounts.has(id)) return sendProblem(reply, notFound());
      return page(
        pageTxs(mine, q).map((r) => transactionJson(r, base)),
        `${base}/accounts/${id}/transactions`,
        q,
      );
    },
  );

  const wantsStream = (req: { headers: { accept?: string } }): boolean =>
    String(req.headers.accept ?? '').includes('text/event-stream');

  // Server-sent events, as Horizon streams: a hello, then every matching transaction after the cursor (up to 200),
  // then new ones as they are applied. `cursor=now` skips history.
  const stream = (reply: FastifyReply, base: string, q: ListQuery, match: (r: TxRecord) => boolean): void => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (r: TxRecord): void => {
      if (match(r)) res.write(`id: ${r.order}\ndata: ${JSON.stringify(transactionJson(r, base))}\n\n`);
    };
    res.write('retry: 1000\nevent: open\ndata: "hello"\n\n');
    if (q.cursor !== 'now')
      for (const r of pageTxs(state.txs.filter(match), { ...q, order: 'asc', limit: 200 })) send(r);
    listeners.add(send);
    streams.add(res);
    res.on('close', () => {
      listeners.delete(send);
      streams.delete(res);
    });
  };

  app.get<{ Querystring: Record<string, unknown> }>('/transactions', async (req, reply) => {
    const q = listQuery(req.query);
    if (isProblem(q)) return sendProblem(reply, q);
    const base = baseOf(req);
    if (!wantsStream(req)) {
      return page(
        pageTxs(state.txs, q).map((r) => transactionJson(r, base)),
        `${base}/transactions`,
        q,
      );
    }
    return stream(reply, base, q, () => true);
  });

  app.get<{ Params: { hash: string } }>('/transactions/:hash', async (req, reply) => {
    if (!/^[0-9a-f]{64}$/i.test(req.params.hash)) {
      return sendProblem(reply, badRequest('tx_id', 'must be a hex-encoded transaction hash'));
    }
    const r = state.txByHash.get(req.params.hash.toLowerCase());
    return r === undefined ? sendProblem(reply, notFound()) : transactionJson(r, baseOf(req));
  });

  /**
   * A synchronous submission as Horizon answers it: once the ledger holding the transaction has closed
   * (services/horizon/internal/txsub waits for the ledger to be ingested). So the open ledger the transaction was
   * applied in is closed before the answer, and the client's next transaction lands in a later ledger, as on the
   * network. That matters for every rule that reads the ledger sequence: MergeOpFrame refuses a source whose
   * sequence number is not below the applying ledger's starting sequence (ledgerSeq << 32), so an account created
   * by one answered submission can be merged by the next; minSeqLedgerGap and ledger bounds count from there.
   */
  const submitAndClose = (envelope: string): ReturnType<Engine['submit']> => {
    const out = ledger.submit(envelope);
    // The snapshot is written by the next timed close (or at shutdown), as before: one write per close period,
    // not one per submission.
    if ('applied' in out && out.applied && out.ledger === state.openSequence) state.close(nowSec());
    return out;
  };

  const answerSubmit = (reply: FastifyReply, out: ReturnType<Engine['submit']>, envelope: string, base: string) => {
    if ('malformed' in out) return sendProblem(reply, transactionMalformed(envelope, out.reason));
    const o: SubmitOutcome = out;
    if (o.record !== undefined && o.successful) return transactionJson(o.record, base);
    return sendProblem(reply, transactionFailed(o.outcome, o.envelopeXdr, o.resultXdr, o.hash, o.diagnostic));
  };

  app.post<{ Body: unknown }>('/transactions', async (req, reply) => {
    const body = req.body;
    const tx = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).tx : undefined;
    if (typeof tx !== 'string' || tx.length === 0) {
      return sendProblem(reply, badRequest('tx', 'the form field tx must hold a base64 transaction envelope'));
    }
    return answerSubmit(reply, submitAndClose(tx), tx, baseOf(req));
  });

  // Horizon's async submission (POST /transactions_async, SDK submitAsyncTransaction): core's verdict on admission
  // only: PENDING (201) once accepted, DUPLICATE (409) when already in history, ERROR (400) with the result XDR.
  app.post<{ Body: unknown }>('/transactions_async', async (req, reply) => {
    const body = req.body;
    const tx = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).tx : undefined;
    if (typeof tx !== 'string' || tx.length === 0) {
      return sendProblem(reply, badRequest('tx', 'the form field tx must hold a base64 transaction envelope'));
    }
    const out = ledger.submit(tx);
    if ('malformed' in out) return sendProblem(reply, transactionMalformed(tx, out.reason));
    if (out.duplicate === true) return reply.code(409).send({ tx_status: 'DUPLICATE', hash: out.hash });
    if (!out.applied) {
      return reply.code(400).send({
        tx_status: 'ERROR',
        hash: out.hash,
        error_result_xdr: out.resultXdr,
        ...(out.diagnostic !== undefined ? { diagnostic: out.diagnostic } : {}),
      });
    }
    return reply.code(201).send({ tx_status: 'PENDING', hash: out.hash });
  });

  // Friendbot: a real createAccount transaction from the network root account, signed with the root key.
  const friendbot = async (
    req: { query: Record<string, unknown>; protocol: string; host: string },
    reply: FastifyReply,
  ): Promise<unknown> => {
    const addr = req.query.addr;
    if (!isAccountId(addr)) return sendProblem(reply, badRequest('addr', 'addr must be a G... account id'));
    const r = state.accounts.get(root.publicKey())!;
    const tx = new TransactionBuilder(new Account(root.publicKey(), r.seq.toString()), {
      fee: '100',
      networkPassphrase,
    })
      .addOperation(Operation.createAccount({ destination: addr, startingBalance: FRIENDBOT_AMOUNT }))
      .setTimeout(TimeoutInfinite)
      .build();
    tx.sign(root);
    const envelope = tx.toEnvelope().toXdr('base64');
    return answerSubmit(reply, submitAndClose(envelope), envelope, baseOf(req));
  };
  app.get<{ Querystring: Record<string, unknown> }>('/friendbot', (req, reply) => friendbot(req, reply));
  app.post<{ Querystring: Record<string, unknown> }>('/friendbot', (req, reply) => friendbot(req, reply));

  registerRpc(app as unknown as FastifyInstance, ledger);

  app.get<{ Querystring: Record<string, unknown> }>('/ledgers', async (req, reply) => {
    const q = listQuery(req.query);
    if (isProblem(q)) return sendProblem(reply, q);
    const c = q.cursor === '' ? null : q.cursor === 'now' ? Number.MAX_SAFE_INTEGER : Number(BigInt(q.cursor) >> 32n);
    const sorted = q.order === 'asc' ? state.ledgers : [...state.ledgers].reverse();
    const list = sorted
      .filter((l) => c === null || (q.order === 'asc' ? l.sequence > c : l.sequence < c))
      .slice(0, q.limit);
    const base = baseOf(req);
    return page(
      list.map((l) => ledgerJson(l, base)),
      `${base}/ledgers`,
      q,
    );
  });

  app.get<{ Params: { seq: string } }>('/ledgers/:seq', async (req, reply) => {
    if (!/^\d{1,10}$/.test(req.params.seq))
      return sendProblem(reply, badRequest('sequence', 'must be a ledger number'));
    const seq = Number(req.params.seq);
    const l = state.ledgers.find((x) => x.sequence === seq);
    return l === undefined ? sendProblem(reply, notFound()) : ledgerJson(l, baseOf(req));
  });

  const closeMs = opts.closeMs ?? 1000;
  const timer =
    closeMs > 0
      ? setInterval(() => {
          ledger.close().catch((e: unknown) => opts.logger?.error({ err: e }, 'ledger close failed'));
        }, closeMs)
      : undefined;
  app.addHook('onClose', async () => {
    if (timer !== undefined) clearInterval(timer);
    listeners.clear();
    await saving;
    if (dirty || savedLedger !== state.lastClosed.sequence) await save();
  });
  // Hijacked SSE responses would hold server.close() open: end them before the server closes.
  app.addHook('preClose', async () => {
    for (const res of streams) res.end();
    streams.clear();
  });
  return app as unknown as FastifyInstance;
}

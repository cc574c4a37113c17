import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CosignerError } from '@cosigner/errors/errors';
import { MAX_FRAME_BYTES } from '@cosigner/protocol/frame';
import { type Identity, loadOrCreateIdentity } from '@cosigner/protocol/identity';
import { TokenBucket } from '@cosigner/protocol/replay';
import { hostCheck } from '@cosigner/runtime/hosts';
import { createLogger, type Logger } from '@cosigner/runtime/logger';
import { newSecret, readSecretFile, writePrivateFile } from '@cosigner/runtime/secrets';
import { writeBatch } from '@cosigner/runtime/write-batch';
import type { AccountAuth } from '@cosigner/stellar/types';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import { type TSchema, Type } from 'typebox';
import { authenticate, ensureAdminKey, type Scope } from './apikeys.ts';
import type { CoordinatorConfig } from './config.ts';
import { consoleSocketKey, registerConsoleRoutes } from './console-routes.ts';
import { coordinatorErrors } from './errors.ts';
import { EVENT_TYPES, EventBus, EventSchema, eventJson } from './events.ts';
import { FrostDkgRelay } from './frost/dkg.ts';
import { importLegacyFrostFiles } from './frost/legacy.ts';
import { prepareFrost } from './frost/proposals.ts';
import { FrostRefreshRelay } from './frost/refresh.ts';
import { registerFrostRoutes } from './frost/routes.ts';
import { createHorizonClient, type LedgerClient } from './horizon.ts';
import { NodeHub } from './hub.ts';
import type { AuthDeps } from './kinds/auth.ts';
import { authEntriesKind, prepareAuthEntries } from './kinds/auth-entries.ts';
import { frostKind } from './kinds/frost.ts';
import type { Prepared } from './kinds/kind.ts';
import { followUpKey, prepareSorobanTx, sorobanTxKind } from './kinds/soroban-tx.ts';
import { prepareTransaction, transactionFields, transactionKind } from './kinds/transaction.ts';
import { registerLifecycleRoutes } from './lifecycle.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { openStore } from './open-store.ts';
import { PgRoundLeases, replicaId } from './pg/replicas.ts';
import { PgStore } from './pg/store.ts';
import { ProposalIdParams, proposalOr404 } from './proposal-params.ts';
import { progress } from './quorum.ts';
import { RoundEngine } from './round.ts';
import { LedgerClock } from './soroban.ts';
import {
  type ApiKeyRecord,
  type CoordinatorStore,
  type EventRecord,
  type ProposalRecord,
  type ProposalStatus,
  step,
} from './store.ts';
import { Submitter } from './submit.ts';

/**
 * The coordinator's HTTP surface (fastify): the proposals API for clients, the node WebSocket endpoint, the
 * event stream, health and metrics. Every route declares its request AND response schema: the response
 * schema is also the leak guard (fastify serialises only declared fields). Errors answer `{code, message,
 * details?}` with COORD_* codes (src/errors.ts) or the STELLAR_* code of the decoder.
 */

export interface BuildOptions {
  config: Readonly<CoordinatorConfig>;
  store: CoordinatorStore;
  /** The coordinator message key: signs every frame sent to nodes. */
  identity: Identity;
  /** HMAC secret for callback signatures. */
  callbackSecret: string;
  /** The resolver callback sockets use (tests only: point a name at loopback). Default: the system's. */
  callbackLookup?: typeof import('node:dns').lookup;
  /** Defaults to Horizon at config.horizonUrl. */
  ledger?: LedgerClient;
  logger?: Logger;
}

export interface Coordinator {
  store: CoordinatorStore;
  hub: NodeHub;
  engine: RoundEngine;
  events: EventBus;
  metrics: Metrics;
  ledger: LedgerClient;
  invalidateAccounts(ids: readonly string[]): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    coordinator: Coordinator;
  }
  interface FastifyRequest {
    apiKey: ApiKeyRecord | null;
  }
  interface FastifyContextConfig {
    scope?: Scope;
  }
}

const ErrorBody = Type.Object(
  { code: Type.String(), message: Type.String(), details: Type.Optional(Type.Record(Type.String(), Type.Unknown())) },
  { $id: 'ErrorBody' },
);
const errorRef = Type.Ref('ErrorBody');
const errors = (...codes: number[]): Record<number, TSchema> => Object.fromEntries(codes.map((c) => [c, errorRef]));

const STATUS = Type.Union([
  Type.Literal('pending'),
  Type.Literal('signed'),
  Type.Literal('submitted'),
  Type.Literal('failed'),
  Type.Literal('rejected'),
  Type.Literal('expired'),
  Type.Literal('cancelled'),
]);
const Reason = Type.Object({
  code: Type.String(),
  message: Type.String(),
  opIndex: Type.Optional(Type.Integer()),
  field: Type.Optional(Type.String()),
});
const ProposalView = Type.Object({
  id: Type.String(),
  status: STATUS,
  statusReason: Type.Union([Type.String(), Type.Null()]),
  kind: Type.Union([
    Type.Literal('transaction'),
    Type.Literal('feeBump'),
    Type.Literal('authEntries'),
    Type.Literal('sorobanTx'),
    Type.Literal('frostTx'),
  ]),
  hash: Type.String({ description: 'Transaction hash, or for auth rounds the digest of the entry payloads' }),
  network: Type.String(),
  submit: Type.Boolean(),
  idempotencyKey: Type.Union([Type.String(), Type.Null()]),
  callbackUrl: Type.Union([Type.String(), Type.Null()]),
  note: Type.Union([Type.String(), Type.Null()]),
  maxTime: Type.Integer({ description: 'Unix seconds of the upper time bound; 0 = none' }),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  signedAt: Type.Union([Type.String(), Type.Null()]),
  requirements: Type.Array(
    Type.Object({
      accountId: Type.String(),
      level: Type.String(),
      weight: Type.Integer(),
      collected: Type.Integer(),
      met: Type.Boolean(),
      signers: Type.Array(Type.String()),
    }),
  ),
  signatures: Type.Array(Type.Object({ nodeId: Type.String(), signerKey: Type.String(), createdAt: Type.String() })),
  decisions: Type.Array(
    Type.Object({
      nodeId: Type.String(),
      outcome: Type.String(),
      reasons: Type.Array(Reason),
      createdAt: Type.String(),
    }),
  ),
  rejections: Type.Array(Type.Object({ nodeId: Type.String(), outcome: Type.String(), reasons: Type.Array(Reason) })),
  envelope: Type.Union([Type.String(), Type.Null()], { description: 'The signed envelope once complete' }),
  authEntries: Type.Union([Type.Array(Type.String()), Type.Null()], {
    description: 'authEntries proposals: the signed SorobanAuthorizationEntry values (base64) once complete',
  }),
  transactionProposal: Type.Union([Type.String(), Type.Null()], {
    description: 'sorobanTx proposals: the proposal that signs and submits the envelope with the signed entries',
  }),
  group: Type.Union([Type.String(), Type.Null()], {
    description: 'frostTx proposals: the FROST group (G... address) that signs it',
  }),
  result: Type.Union([
    Type.Null(),
    Type.Object({
      outcome: Type.String(),
      code: Type.Union([Type.String(), Type.Null()]),
      message: Type.String(),
      operationCodes: Type.Array(Type.String()),
      ledger: Type.Union([Type.Integer(), Type.Null()]),
      attempts: Type.Integer(),
    }),
  ]),
});

const TransactionProposalBody = Type.Object(
  {
    kind: Type.Optional(Type.Literal('transaction')),
    xdr: Type.String({ minLength: 1, description: 'base64 TransactionEnvelope (v1 or fee bump)' }),
    network: Type.Optional(
      Type.String({ minLength: 1, maxLength: 256, description: 'Network passphrase; must match the coordinator' }),
    ),
    submit: Type.Optional(Type.Boolean({ description: 'Submit once signed (default false)' })),
    callbackUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' })),
    note: Type.Optional(Type.String({ maxLength: 512 })),
    group: Type.Optional(
      Type.String({
        pattern: '^G[A-Z2-7]{55}$',
        description:
          'Sign with this FROST group of the cluster (its key, G...): t of its nodes make one signature for the ' +
          'group key, which must be a signer reaching the needed weight alone (docs/architecture.md "FROST signing")',
      }),
    ),
  },
  { additionalProperties: false },
);

/**
 * Standalone Soroban authorization entries to sign: the result is the signed entries (GET shows them
 * in `authEntries`), for a transaction someone else submits; nothing is submitted.
 */
const AuthEntriesProposalBody = Type.Object(
  {
    kind: Type.Literal('authEntries'),
    network: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    account: Type.Optional(
      Type.String({ pattern: '^G[A-Z2-7]{55}$', description: 'When set, every entry must name this account' }),
    ),
    entries: Type.Array(Type.String({ minLength: 1, maxLength: 100_000 }), {
      minItems: 1,
      maxItems: 20,
      description: 'base64 SorobanAuthorizationEntry with address credentials and a signatureExpirationLedger',
    }),
    callbackUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' })),
    note: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

const ProposalBody = Type.Union([TransactionProposalBody, AuthEntriesProposalBody]);

const NodeView = Type.Object({
  id: Type.String(),
  identityKey: Type.String(),
  stellarKey: Type.String(),
  connected: Type.Boolean(),
  connectedAt: Type.Union([Type.String(), Type.Null()]),
  lastSeen: Type.Union([Type.String(), Type.Null()]),
  latencyMs: Type.Union([Type.Number(), Type.Null()]),
  approvals: Type.Integer(),
  rejections: Type.Integer(),
  misbehaviours: Type.Integer(),
  recentMisbehaviour: Type.Array(
    Type.Object({
      kind: Type.String(),
      detail: Type.String(),
      proposalId: Type.Union([Type.String(), Type.Null()]),
      at: Type.String(),
    }),
  ),
});

/** The OpenAPI path item of the event stream (a WebSocket route, which the generator would leave out). */
const eventsPath = {
  get: {
    summary: 'WebSocket: the event stream (send ?since=<seq> to replay stored events first)',
    description:
      'Upgrade to a WebSocket with an API key of the read scope (`Authorization: Bearer <key>` or `x-api-key`). ' +
      'With `?since=<seq>` the server first sends the stored events after that position (at most 1000; reconnect ' +
      'with the last `seq` seen for more), then every new event as it happens. Each text frame is one JSON `Event` ' +
      '(components.schemas.Event: `seq`, `proposalId`, `type`, `data`, `createdAt`); the types are ' +
      `${EVENT_TYPES.map((t) => `\`${t}\``).join(', ')}. The server reads nothing from the client. The same JSON ` +
      "is POSTed to a proposal's `callbackUrl`, signed: `x-cosigner-signature: sha256=<hex HMAC-SHA256(secret, " +
      '"<x-cosigner-timestamp>.<body>")>`.',
    parameters: [
      {
        name: 'since',
        in: 'query',
        required: false,
        schema: { type: 'integer', minimum: 0 },
        description: 'Replay the stored events with a larger seq first',
      },
    ],
    responses: {
      101: {
        description: 'Switching Protocols; then one text frame per event',
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Event' } } },
      },
      ...Object.fromEntries(
        [401, 403, 429].map((c) => [
          c,
          {
            description: 'Refused before the upgrade',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } },
          },
        ]),
      ),
    },
  },
};

const iso = (ms: number): string => new Date(ms).toISOString();

/** One row per signer of an auth round (a signer signs one payload per entry). */
function uniqueSigners<T extends { signerKey: string }>(rows: readonly T[]): T[] {
  const seen = new Map<string, T>();
  for (const r of rows) if (!seen.has(r.signerKey)) seen.set(r.signerKey, r);
  return [...seen.values()];
}

/** The signed entries of a finished standalone auth round (null otherwise), for the proposal view. */
async function signedEntriesOf(store: CoordinatorStore, rec: ProposalRecord): Promise<string[] | null> {
  if (rec.kind !== 'authEntries' || rec.signedAt === null) return null;
  const entries = (await store.authEntries(rec.id)).map((e) => e.signed);
  return entries.every((e) => e !== null) ? (entries as string[]) : null;
}

async function view(store: CoordinatorStore, rec: ProposalRecord) {
  const auth = rec.kind === 'authEntries' || rec.kind === 'sorobanTx';
  const sigs = auth ? uniqueSigners(await store.authSignatures(rec.id)) : await store.signatures(rec.id);
  const decisions = await store.decisions(rec.id);
  const authEntries = await signedEntriesOf(store, rec);
  const transactionProposal =
    rec.kind === 'sorobanTx' ? ((await store.getByIdempotencyKey(followUpKey(rec.id)))?.id ?? null) : null;
  const group = rec.kind === 'frostTx' ? ((await store.frostProposalGroup(rec.id)) ?? null) : null;
  return {
    id: rec.id,
    status: rec.status,
    statusReason: rec.statusReason,
    kind: rec.kind,
    hash: rec.hash,
    network: rec.network,
    submit: rec.submit,
    idempotencyKey: rec.idempotencyKey,
    callbackUrl: rec.callbackUrl,
    note: rec.note,
    maxTime: rec.maxTime,
    createdAt: iso(rec.createdAt),
    updatedAt: iso(rec.updatedAt),
    signedAt: rec.signedAt === null ? null : iso(rec.signedAt),
    requirements: progress(rec, new Set(sigs.map((s) => s.signerKey))),
    signatures: sigs.map((s) => ({ nodeId: s.nodeId, signerKey: s.signerKey, createdAt: iso(s.createdAt) })),
    decisions: decisions.map((d) => ({
      nodeId: d.nodeId,
      outcome: d.outcome,
      reasons: d.reasons,
      createdAt: iso(d.createdAt),
    })),
    rejections: decisions
      .filter((d) => d.outcome === 'reject' || d.outcome === 'invalid')
      .map((d) => ({ nodeId: d.nodeId, outcome: d.outcome, reasons: d.reasons })),
    envelope: rec.envelope,
    authEntries,
    transactionProposal,
    group,
    result: rec.result,
  };
}

function presentedKey(req: FastifyRequest): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7).trim();
  const x = req.headers['x-api-key'];
  if (typeof x === 'string') return x.trim();
  return consoleSocketKey(req.headers['sec-websocket-protocol']);
}

function sendError(reply: FastifyReply, e: CosignerError): FastifyReply {
  return reply.code(e.status).send(e.toJSON());
}

const CURSOR_RE = /^[0-9]{1,15}$/;

/** Build the app. Call `ready()`/`listen()`; `close()` ends sessions, timers and the store. */
export async function build(opts: BuildOptions): Promise<FastifyInstance> {
  const { config, store } = opts;
  const logger = opts.logger ?? createLogger({ name: 'coordinator', level: config.logLevel });
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: config.limits.bodyBytes,
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // DNS rebinding guard (runtime/hosts.ts): before routing, so it covers the REST API and the node WebSocket
  // upgrade alike (@fastify/websocket runs onRequest hooks on the upgrade request).
  const checkHost = hostCheck({ allowedHosts: config.allowedHosts, listenHost: config.host });
  app.addHook('onRequest', async (req, reply) => {
    const refused = checkHost(req.headers);
    if (!refused) return;
    // A refused WebSocket upgrade owns its socket (no HTTP keep-alive after it): close it once answered, or the
    // socket would stay open and hold up the server's close.
    if (req.headers.upgrade !== undefined) reply.raw.once('finish', () => req.raw.socket.destroy());
    return reply.code(refused.status).header('connection', 'close').send(refused.toJSON());
  });

  const metrics = createMetrics();
  const ledger = opts.ledger ?? createHorizonClient(config.horizonUrl);
  // This process's name as a lease and callback-claim holder (replicas; harmless alone).
  const holder = replicaId();
  const events = new EventBus(
    store,
    logger,
    {
      secret: opts.callbackSecret,
      ...config.callbacks,
      production: config.production,
      lookup: opts.callbackLookup,
      holder,
      onFailed: () => metrics.callbacksFailed.inc(),
    },
    (fn) => store.afterCommit(fn),
    (fn) => store.grouped(fn),
  );

  // Signers/thresholds reused for about one ledger (config.round.accountCacheMs), concurrent loads shared.
  const cache = new Map<string, { at: number; value: Promise<AccountAuth> }>();
  const loadAccount = (id: string): Promise<AccountAuth> => {
    const hit = cache.get(id);
    if (hit && Date.now() - hit.at < config.round.accountCacheMs) return hit.value;
    const value = ledger.loadAccount(id);
    cache.set(id, { at: Date.now(), value });
    value.catch(() => cache.delete(id));
    return value;
  };
  const invalidateAccounts = (ids: readonly string[]): void => {
    for (const id of ids) cache.delete(id);
  };

  // Several replicas on one PostgreSQL database: rounds driven under leases, the event stream tailed from the table
  // (docs/architecture.md "Coordinator replicas on PostgreSQL"). SQLite: one process, as before.
  const leaseMs = config.store.type === 'postgres' ? config.store.leaseMs : 0;
  const replicas =
    store instanceof PgStore && leaseMs > 0
      ? { store, leases: new PgRoundLeases(store, holder, leaseMs), scanMs: Math.min(500, leaseMs / 4) }
      : undefined;
  const leases = replicas?.leases;
  const submitter = new Submitter({
    store,
    ledger,
    events,
    metrics,
    logger,
    submitAttempts: config.round.submitAttempts,
    submitBackoffMs: config.round.submitBackoffMs,
    submitMaxBackoffMs: config.round.submitMaxBackoffMs,
    ledgerSettleMs: config.round.ledgerSettleMs,
    invalidateAccounts,
    leases,
  });
  const auth: AuthDeps = {
    store,
    logger,
    network: config.network,
    limits: config.soroban,
    clock: new LedgerClock(() => ledger.latestLedger()),
    loadAccount,
  };
  // FROST records are in the store (every replica sees every group); a data directory still holding the files of
  // an older coordinator (frost.sqlite, frost-refresh.sqlite) has them imported once, the files renamed *.imported.
  await importLegacyFrostFiles(config.dataDir, store, logger);
  const exclusive = config.store.type === 'sqlite';
  const frost = await FrostDkgRelay.open({ store, nodes: store, logger, exclusive });
  const frostRefresh = await FrostRefreshRelay.open({ store, dkg: frost, logger, exclusive });
  // One round engine; one module per kind of round (docs/architecture.md "Kinds of round").
  const engine = new RoundEngine({
    store,
    events,
    metrics,
    logger,
    signerRetryMs: config.round.signerRetryMs,
    signerRetryMaxMs: config.round.signerRetryMaxMs,
    leases,
  })
    .register(transactionKind({ store, submitter, logger }))
    .register(sorobanTxKind(auth))
    .register(authEntriesKind(auth))
    .register(
      frostKind({
        store,
        submitter,
        logger,
        groupOf: (id) => frost.proposalGroup(id),
        connected: () => hub.connected().map((n) => n.nodeId),
        flag: (nodeId, kind, detail, proposalId) => engine.onMisbehaviour(nodeId, kind, detail, proposalId),
      }),
    );
  const hub = new NodeHub({
    identity: opts.identity,
    network: config.network,
    nodes: store,
    logger,
    metrics,
    heartbeatMs: config.round.heartbeatMs,
    handshakeTimeoutMs: config.round.handshakeTimeoutMs,
    framesPerSecond: config.limits.nodeFramesPerSecond,
    frameBurst: config.limits.nodeFrameBurst,
    handlers: {
      onSync: (nodeId) => {
        engine.sync(nodeId);
        frost.sync(nodeId);
        frostRefresh
          .sync(nodeId)
          .catch((e: unknown) => logger.warn({ err: (e as Error).message, nodeId }, 'FROST refresh sync failed'));
      },
      onDecision: (nodeId, key, body) => engine.onDecision(nodeId, key, body),
      onMisbehaviour: (nodeId, kind, detail) => engine.onMisbehaviour(nodeId, kind, detail),
      onFrostDkgReply: (nodeId, body) => frost.onReply(nodeId, body),
      onFrostRefreshReply: (nodeId, body) => frostRefresh.onReply(nodeId, body),
    },
  });
  engine.attach(hub);
  frost.attach(hub);
  frostRefresh.attach(hub);
  app.decorate('coordinator', { store, hub, engine, events, metrics, ledger, invalidateAccounts });
  app.decorateRequest('apiKey', null);

  for (const n of config.nodes) await store.enrollNode(n, Date.now());

  app.addSchema(ErrorBody);
  app.addSchema(EventSchema);
  await app.register(fastifySwagger, {
    // Shared schemas keep their $id as their name under components.schemas (ErrorBody, Event), not def-<n>.
    refResolver: {
      buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
    // @fastify/websocket hides WebSocket routes from the document; the event stream is added back, described.
    transformObject: (doc) => {
      /* v8 ignore next -- this app registers an OpenAPI 3 document, never a Swagger 2 one */
      if (!('openapiObject' in doc)) return doc.swaggerObject;
      return { ...doc.openapiObject, paths: { ...doc.openapiObject.paths, '/v1/events': eventsPath } };
    },
    openapi: {
      info: { title: 'Stellar cosigner coordinator', version: '1', description: 'Proposals, nodes, events.' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
        },
      },
      security: [{ bearer: [] }, { apiKey: [] }],
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  await app.register(fastifyWebsocket, { options: { maxPayload: MAX_FRAME_BYTES } });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof CosignerError) return sendError(reply, err);
    const e = err as { code?: string; statusCode?: number; validation?: unknown; message: string };
    // A schema failure and any other client error Fastify raises are one code, with Fastify's sentence; a body over
    // the limit has its own, which names the limit.
    const badRequest = () =>
      sendError(
        reply,
        coordinatorErrors.error(
          'COORD_BAD_REQUEST',
          { problem: e.message },
          { message: `Invalid request: ${e.message}.` },
        ),
      );
    if (e.validation) return badRequest();
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, coordinatorErrors.error('COORD_BODY_TOO_LARGE', { limit: config.limits.bodyBytes }));
    }
    if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) return badRequest();
    req.log.error({ err }, 'unhandled error');
    return sendError(reply, coordinatorErrors.error('COORD_INTERNAL'));
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(
      reply,
      coordinatorErrors.error('COORD_NOT_FOUND', { path: req.url.split('?')[0] }, { message: 'No such route.' }),
    ),
  );

  // Per-key token buckets (config.limits.ratePerSecond / rateBurst); a key's bucket lives with the process.
  const buckets = new Map<string, TokenBucket>();
  app.addHook('onRequest', async (req, reply) => {
    const scope = req.routeOptions.config?.scope;
    if (scope === undefined) return;
    const presented = presentedKey(req);
    const key = presented === undefined ? undefined : await authenticate(store, presented);
    if (!key) return sendError(reply, coordinatorErrors.error('COORD_UNAUTHENTICATED'));
    if (!key.scopes.includes(scope) && !key.scopes.includes('admin')) {
      return sendError(reply, coordinatorErrors.error('COORD_FORBIDDEN', { needed: scope, has: key.scopes }));
    }
    let bucket = buckets.get(key.id);
    if (!bucket) {
      bucket = new TokenBucket(config.limits.ratePerSecond, config.limits.rateBurst);
      buckets.set(key.id, bucket);
    }
    if (!bucket.take()) {
      metrics.httpRateLimited.inc();
      reply.header('retry-after', String(Math.max(1, Math.ceil(1 / config.limits.ratePerSecond))));
      return sendError(reply, coordinatorErrors.error('COORD_RATE_LIMITED'));
    }
    req.apiKey = key;
  });

  app.post(
    '/v1/proposals',
    {
      config: { scope: 'propose' },
      schema: {
        summary: 'Propose a transaction for co-signing',
        body: ProposalBody,
        response: { 200: ProposalView, 201: ProposalView, ...errors(400, 401, 403, 409, 413, 422, 429, 500, 503) },
      },
    },
    async (req, reply) => {
      const b = req.body;
      if (b.network !== undefined && b.network !== config.network) {
        throw coordinatorErrors.error('COORD_WRONG_NETWORK', { expected: config.network });
      }
      // What the client sent, as the stored row keeps it: an idempotent retry must send the same thing.
      const sentBy = async (rec: ProposalRecord): Promise<string> =>
        rec.xdr ?? JSON.stringify((await store.authEntries(rec.id)).map((e) => e.entry));
      const sent = b.kind === 'authEntries' ? JSON.stringify(b.entries) : b.xdr;
      const same = async (rec: ProposalRecord) => {
        if ((await sentBy(rec)) !== sent) throw coordinatorErrors.error('COORD_IDEMPOTENCY_CONFLICT', { id: rec.id });
        return reply.code(200).send(await view(store, rec));
      };
      // Callback bodies are signed but not encrypted: in production they travel over TLS only.
      if (config.production && b.callbackUrl !== undefined && !b.callbackUrl.startsWith('https://')) {
        throw coordinatorErrors.error(
          'COORD_BAD_REQUEST',
          { field: 'callbackUrl' },
          { message: 'callbackUrl must use https in production mode.' },
        );
      }
      const destination = b.callbackUrl === undefined ? undefined : events.callbackUrlRefusal(b.callbackUrl);
      if (destination !== undefined) {
        throw coordinatorErrors.error(
          'COORD_CALLBACK_NOT_ALLOWED',
          { field: 'callbackUrl' },
          { message: `callbackUrl is refused: ${destination}.` },
        );
      }
      if (b.idempotencyKey !== undefined) {
        const existing = await store.getByIdempotencyKey(b.idempotencyKey);
        if (existing) return same(existing);
      }
      const refuseWhenFull = (open: number): void => {
        if (open >= config.limits.maxOpenProposals) {
          throw coordinatorErrors.error('COORD_TOO_MANY_OPEN', { limit: config.limits.maxOpenProposals });
        }
      };
      refuseWhenFull(await store.countOpen());
      const now = Date.now();
      const common = {
        id: randomUUID(),
        idempotencyKey: b.idempotencyKey ?? null,
        apiKeyId: req.apiKey?.id ?? null,
        network: config.network,
        status: 'pending' as const,
        statusReason: null,
        callbackUrl: b.callbackUrl ?? null,
        note: b.note ?? null,
        envelope: null,
        result: null,
        createdAt: now,
        updatedAt: now,
        signedAt: null,
      };
      // Each kind prepares its row: what the nodes are asked, and who must answer.
      let prepared: Prepared;
      if (b.kind === 'authEntries') {
        prepared = await prepareAuthEntries(auth, b.entries, b.account);
      } else if (b.group !== undefined) {
        const tx = await prepareTransaction(b.xdr, config.network, loadAccount);
        prepared = await prepareFrost(frost, tx, b.group, {
          fields: transactionFields(tx, b.xdr, b.submit === true),
          decoded: tx.decoded,
        });
        await frost.bindProposal(common.id, b.group);
      } else {
        const tx = await prepareTransaction(b.xdr, config.network, loadAccount);
        const submit = b.submit === true;
        // Soroban transactions: resources checked; address-credential entries of cluster accounts first.
        prepared = (await prepareSorobanTx(auth, tx.decoded, b.xdr, submit)) ?? {
          fields: transactionFields(tx, b.xdr, submit),
          decoded: tx.decoded,
        };
      }
      // The row and its `proposal.created` event in one unit of the group commit: the 201 and the fan-out to the
      // nodes follow the commit that made the proposal durable.
      // Synchronous on SQLite (`step` continues at once on a value), one transaction on PostgreSQL.
      const { proposal, created } = await store.grouped(() =>
        // Checked again here: the proposals queued before this one in the same commit count too (a retry of one
        // of them is answered with it below, not refused).
        step(b.idempotencyKey === undefined ? undefined : store.getByIdempotencyKey(b.idempotencyKey), (known) =>
          step(known === undefined ? store.countOpen() : 0, (open) => {
            refuseWhenFull(open);
            return step(store.insertProposal({ ...common, ...prepared.fields }, prepared.authEntries), (r) =>
              r.created ? step(engine.announce(r.proposal), () => r) : r,
            );
          }),
        ),
      );
      if (!created) return same(proposal);
      await engine.start(proposal, true, prepared.decoded);
      return reply.code(201).send(await view(store, (await store.getProposal(proposal.id))!));
    },
  );

  app.get(
    '/v1/proposals/:id',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'A proposal with its progress, decisions and signed envelope',
        params: ProposalIdParams,
        response: { 200: ProposalView, ...errors(401, 403, 404, 429) },
      },
    },
    async (req) => view(store, await proposalOr404(store, req.params.id)),
  );

  app.get(
    '/v1/proposals',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'List proposals, newest first',
        querystring: Type.Object(
          {
            status: Type.Optional(STATUS),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
            cursor: Type.Optional(Type.String({ maxLength: 32 })),
            idempotencyKey: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 128,
                pattern: '^[A-Za-z0-9._:-]+$',
                description: 'Only the proposal created with this idempotency key (zero or one item)',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(ProposalView), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
          ...errors(400, 401, 403, 429),
        },
      },
    },
    async (req) => {
      const { status, limit, cursor, idempotencyKey } = req.query;
      if (cursor !== undefined && !CURSOR_RE.test(cursor)) throw coordinatorErrors.error('COORD_BAD_CURSOR');
      // A client that lost the answer to its POST (it crashed with the request in flight) finds what it created.
      if (idempotencyKey !== undefined) {
        const rec = await store.getByIdempotencyKey(idempotencyKey);
        const hit = rec && (status === undefined || rec.status === status) ? [await view(store, rec)] : [];
        return { items: hit, nextCursor: null };
      }
      const page = await store.listProposals({
        status: status as ProposalStatus | undefined,
        limit,
        before: cursor === undefined ? undefined : Number(cursor),
      });
      return {
        items: await Promise.all(page.items.map((r) => view(store, r))),
        nextCursor: page.next === null ? null : String(page.next),
      };
    },
  );

  app.post(
    '/v1/proposals/:id/cancel',
    {
      config: { scope: 'propose' },
      schema: {
        summary: 'Cancel a pending proposal',
        params: ProposalIdParams,
        body: Type.Object({ reason: Type.Optional(Type.String({ maxLength: 256 })) }, { additionalProperties: false }),
        response: { 200: ProposalView, ...errors(400, 401, 403, 404, 409, 429) },
      },
      // The body is optional: an empty POST cancels without a reason.
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req) => {
      const reason = `cancelled by the client${req.body.reason ? `: ${req.body.reason}` : ''}`;
      return view(store, await engine.cancel(req.params.id, reason));
    },
  );

  app.get(
    '/v1/nodes',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'Enrolled nodes, their sessions and counts',
        response: { 200: Type.Object({ nodes: Type.Array(NodeView) }), ...errors(401, 403, 429) },
      },
    },
    async () => {
      const live = new Map(hub.connected().map((c) => [c.nodeId, c]));
      const enrolled = await store.listNodes();
      const recent = await Promise.all(enrolled.map((n) => store.misbehaviours(n.id, 10)));
      return {
        nodes: enrolled.map((n, i) => ({
          id: n.id,
          identityKey: n.identityKey,
          stellarKey: n.stellarKey,
          connected: live.has(n.id),
          connectedAt: live.has(n.id) ? iso(live.get(n.id)!.connectedAt) : null,
          lastSeen: n.lastSeen === null ? null : iso(n.lastSeen),
          latencyMs: n.lastLatencyMs,
          approvals: n.approvals,
          rejections: n.rejections,
          misbehaviours: n.misbehaviours,
          recentMisbehaviour: recent[i]!.map((m) => ({
            kind: m.kind,
            detail: m.detail,
            proposalId: m.proposalId,
            at: iso(m.createdAt),
          })),
        })),
      };
    },
  );

  // Client event stream: every stored event after `since`, then live ones, one JSON text frame each.
  app.get(
    '/v1/events',
    {
      websocket: true,
      config: { scope: 'read' },
      schema: {
        summary: 'WebSocket: the event stream (described in the document by eventsPath, see the swagger options)',
        querystring: Type.Object({ since: Type.Optional(Type.Integer({ minimum: 0 })) }),
      },
    },
    (socket, req) => {
      const since = (req.query as { since?: number }).since;
      // The events of one group commit reach a subscriber in one write (runtime/write-batch.ts), each serialised
      // once for every subscriber (eventJson).
      const batch = writeBatch(req.raw.socket);
      const send = (e: EventRecord): void => {
        if (socket.readyState !== socket.OPEN) return;
        batch.beforeWrite();
        socket.send(eventJson(e));
      };
      if (since === undefined) {
        socket.on('close', events.subscribe(send));
        return;
      }
      // Subscribed before the stored events are read (a read may take a round trip): the live events of that
      // moment wait in `held` and follow the stored ones, each once, in order.
      let held: EventRecord[] | undefined = [];
      let last = since;
      const off = events.subscribe((e) => {
        if (held) held.push(e);
        else if (e.seq > last) send(e);
      });
      socket.on('close', off);
      void (async () => {
        try {
          for (const e of await store.eventsSince(since, 1000)) {
            send(e);
            last = e.seq;
          }
        } catch (err) {
          req.log.warn({ err: (err as Error).message }, 'event replay failed: store unavailable');
          socket.close(1013, 'store unavailable; reconnect with since');
        }
        const queued = held ?? [];
        held = undefined;
        for (const e of queued) if (e.seq > last) send(e);
      })();
    },
  );

  registerLifecycleRoutes(app as unknown as FastifyInstance, { nodes: store, events, invalidateAccounts });
  registerConsoleRoutes(app as unknown as FastifyInstance, { store, config });
  registerFrostRoutes(app as unknown as FastifyInstance, { relay: frost, refresh: frostRefresh });

  // Nodes dial out to here; authentication is the protocol handshake (hub.ts), not an API key.
  app.get('/v1/nodes/connect', { websocket: true, schema: { hide: true } }, (socket, req) =>
    hub.handle(socket, req.raw.socket),
  );

  app.get(
    '/healthz',
    { schema: { summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } },
    async () => ({ status: 'ok' as const }),
  );

  const Ready = Type.Object({
    status: Type.Union([Type.Literal('ready'), Type.Literal('unready')]),
    checks: Type.Object({ database: Type.Boolean(), horizon: Type.Boolean() }),
  });
  app.get(
    '/readyz',
    { schema: { summary: 'Readiness: database and Horizon', response: { 200: Ready, 503: Ready } } },
    async (_req, reply) => {
      const checks = { database: await store.ping(), horizon: await ledger.reachable() };
      const ok = checks.database && checks.horizon;
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'unready', checks });
    },
  );

  app.get(
    '/metrics',
    { schema: { summary: 'Prometheus metrics', response: { 200: Type.String() } } },
    async (_req, reply) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );

  let scanner: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    if (replicas) {
      // Woken by NOTIFY within milliseconds; the poll is the fallback for a notification lost with its connection.
      await events.tail(replicas.store, 1000);
      events.subscribe((e) => engine.observe(e));
    }
    const resumed = await engine.resume();
    if (resumed > 0) logger.info({ resumed }, 'open proposals resumed');
    // Callbacks a restart (or a dead replica) left in the outbox, and retries, from now on.
    events.startOutbox();
    if (replicas) {
      // A replica that dies leaves its rounds' leases to lapse: every replica looks for them and takes them over
      // within the lease time plus this period.
      let scanning = false;
      scanner = setInterval(() => {
        if (scanning) return;
        scanning = true;
        engine
          .resume()
          .finally(() => {
            scanning = false;
          })
          .then(
            (taken) => {
              if (taken > 0) logger.info({ taken }, 'rounds taken over from a replica whose lease lapsed');
            },
            (err: unknown) => logger.warn({ err: (err as Error).message }, 'scan for orphaned rounds failed'),
          );
      }, replicas.scanMs);
      scanner.unref();
    }
  });
  app.addHook('preClose', async () => {
    clearInterval(scanner);
    hub.close();
  });
  app.addHook('onClose', async () => {
    engine.close();
    submitter.close();
    // A clean stop hands its rounds over at once instead of after the lease time.
    await leases?.releaseAll();
    await frostRefresh.close();
    await frost.close();
    await events.close();
    await store.close();
  });
  // The type-provider-specialised instance is a FastifyInstance; callers only need the base type.
  return app as unknown as FastifyInstance;
}

/**
 * Everything `build` needs from the data directory: the store, the message key, the admin key file and the
 * callback secret (each created 0600 when absent). Logs the PATHS of created secrets, never their contents.
 */
export async function prepareRuntime(config: Readonly<CoordinatorConfig>, logger: Logger): Promise<BuildOptions> {
  const store = await openStore(config, logger);
  try {
    const { identity, created } = await loadOrCreateIdentity(config.messageKeyFile);
    if (created) logger.info({ path: config.messageKeyFile }, 'created the coordinator message key');
    const admin = await ensureAdminKey(store, config.adminKeyFile);
    if (admin.created)
      logger.info({ path: config.adminKeyFile }, 'created the admin API key (shown nowhere else: read the file)');
    let callbackSecret: string;
    try {
      await readFile(config.callbackSecretFile);
      callbackSecret = await readSecretFile(config.callbackSecretFile, 'callback secret');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      callbackSecret = newSecret();
      await writePrivateFile(config.callbackSecretFile, `${callbackSecret}\n`);
      logger.info({ path: config.callbackSecretFile }, 'created the callback signing secret');
    }
    return { config, store, identity, callbackSecret, logger };
  } catch (e) {
    await store.close();
    throw e;
  }
}

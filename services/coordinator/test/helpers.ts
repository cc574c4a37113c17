import { rm } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { decodeFrame, encodeFrame } from '@cosigner/protocol/frame';
import { generateIdentity, type Identity } from '@cosigner/protocol/identity';
import type { Body, MessageType } from '@cosigner/protocol/messages';
import { ReplayGuard } from '@cosigner/protocol/replay';
import { createLogger } from '@cosigner/runtime/logger';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import type { AccountAuth } from '@cosigner/stellar/types';
import { tempDir } from '@cosigner/testkit/process';
import { Account, Asset, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { Compile } from 'typebox/compile';
import WebSocket from 'ws';
import { createApiKey } from '../src/apikeys.ts';
import { build } from '../src/app.ts';
import { parseConfig } from '../src/config.ts';
import { coordinatorErrors } from '../src/errors.ts';
import { EventSchema } from '../src/events.ts';
import type { LedgerClient, SubmitAttempt } from '../src/horizon.ts';
import type { ProposalRecord, Store } from '../src/store.ts';
import { openSqliteStore } from '../src/store.ts';

export const NETWORK = 'Coordinator Test Network ; 2026';

/** A test double of the network: accounts by id, a scripted submission outcome, a record of what was sent. */
export class FakeLedger implements LedgerClient {
  accounts = new Map<string, AccountAuth>();
  submitted: string[] = [];
  loads = 0;
  outcomes: SubmitAttempt[] = [];
  applied = new Set<string>();
  up = true;
  /** Simulates Horizon's 504: the transaction applied although the answer was lost. */
  applyOnTransient = false;
  /** Like applyOnTransient, but the transaction applied as failed (fee charged, sequence used). */
  failOnTransient = false;
  failed = new Set<string>();
  /** Submissions do not get through (connection refused), and lookups by hash neither. */
  submitDown = false;
  statusDown = false;
  /** The same, for given transaction hashes only; lostFor: every submission applies but its answer is lost. */
  downFor = new Set<string>();
  statusDownFor = new Set<string>();
  lostFor = new Set<string>();
  async loadAccount(id: string): Promise<AccountAuth> {
    this.loads++;
    if (!this.up) throw coordinatorErrors.error('COORD_HORIZON_UNAVAILABLE', { accountId: id });
    const a = this.accounts.get(id);
    if (!a) throw coordinatorErrors.error('COORD_ACCOUNT_NOT_FOUND', { accountId: id });
    return structuredClone(a);
  }
  async submit(xdr: string, network: string): Promise<SubmitAttempt> {
    this.submitted.push(xdr);
    const hash = decodeEnvelope(xdr, network).hash.toString('hex');
    if (this.submitDown || this.downFor.has(hash)) return { kind: 'transient', message: 'connect ECONNREFUSED' };
    if (this.lostFor.has(hash)) {
      this.applied.add(hash);
      return { kind: 'transient', message: 'Horizon answered 504' };
    }
    const r = this.outcomes.shift() ?? { kind: 'accepted', ledger: 7 };
    if (r.kind === 'accepted' || (r.kind === 'transient' && this.applyOnTransient)) this.applied.add(hash);
    if (r.kind === 'transient' && this.failOnTransient) this.failed.add(hash);
    return r;
  }
  statusCalls = 0;
  async transactionStatus(hash: string): Promise<'success' | 'failed' | 'missing' | 'unknown'> {
    this.statusCalls++;
    if (this.statusDown || this.statusDownFor.has(hash)) return 'unknown';
    if (this.failed.has(hash)) return 'failed';
    return this.applied.has(hash) ? 'success' : 'missing';
  }
  async reachable(): Promise<boolean> {
    return this.up;
  }
  /** The latest closed ledger the fake reports (null while down). */
  ledgerSeq = 100;
  async latestLedger(): Promise<number | null> {
    return this.up ? this.ledgerSeq : null;
  }
}

/** A multisig account: master weight 0, the given signer keys weight 1 each, all thresholds `threshold`. */
export function multisig(accountId: string, signers: string[], threshold: number): AccountAuth {
  return {
    accountId,
    masterWeight: 0,
    thresholds: { low: threshold, medium: threshold, high: threshold },
    signers: signers.map((key) => ({ key, weight: 1 })),
  };
}

/** A stored proposal row for store- and engine-level tests: a pending transaction unless `over` says otherwise. */
export function proposalRecord(over: Partial<ProposalRecord> = {}): ProposalRecord {
  return {
    id: 'p1',
    idempotencyKey: null,
    apiKeyId: null,
    kind: 'transaction',
    xdr: 'AAAA',
    hash: 'ab'.repeat(32),
    network: 'N',
    status: 'pending',
    statusReason: null,
    requirements: [],
    accounts: [],
    submit: false,
    submitFollowUp: false,
    callbackUrl: null,
    note: null,
    maxTime: 0,
    envelope: null,
    result: null,
    createdAt: 1,
    updatedAt: 1,
    signedAt: null,
    ...over,
  };
}

/** An unsigned payment from `source`, valid for `timeoutSec` (0 = no upper bound is refused by the SDK). */
export function payment(
  source: string,
  opts: { seq?: string; timeoutSec?: number; amount?: string; network?: string } = {},
): string {
  const tx = new TransactionBuilder(new Account(source, opts.seq ?? '100'), {
    fee: '100',
    networkPassphrase: opts.network ?? NETWORK,
  })
    .addOperation(
      Operation.payment({
        destination: Keypair.random().publicKey(),
        asset: Asset.native(),
        amount: opts.amount ?? '10',
      }),
    )
    .setTimeout(opts.timeoutSec ?? 300)
    .build();
  return tx.toEnvelope().toXDR('base64');
}

export type Behaviour =
  | 'approve'
  | 'reject'
  | 'hold'
  | 'silent'
  | 'garbage'
  | 'otherHash'
  | 'wrongKey'
  | ((p: Body<'proposal'>, node: TestNode) => Body<'decision'> | undefined);

/**
 * A test-double cosigner node speaking the real protocol over a real socket: identity key generated at run
 * time, Stellar key random. It decodes the XDR and hashes it itself, like a real node, unless told to misbehave.
 */
export class TestNode {
  readonly identity: Identity;
  readonly keypair: Keypair;
  ws: WebSocket | undefined;
  session: string | null = null;
  readonly proposals: Body<'proposal'>[] = [];
  readonly cancels: Body<'cancel'>[] = [];
  closed: { code: number; reason: string } | undefined;
  readonly #replay = new ReplayGuard({ ttlMs: 60_000 });
  #waiters: (() => void)[] = [];

  constructor(
    readonly id: string,
    public behaviour: Behaviour = 'approve',
    opts: { keypair?: Keypair; network?: string; identity?: Identity } = {},
  ) {
    // The same identity and keys as another TestNode: one node's second session (with another replica).
    this.identity = opts.identity ?? generateIdentity().identity;
    this.keypair = opts.keypair ?? Keypair.random();
    this.network = opts.network ?? NETWORK;
  }
  network: string;
  autoSync = true;
  answerPings = true;

  get stellarKey(): string {
    return this.keypair.publicKey();
  }

  enrolment(): { id: string; identityKey: string; stellarKey: string } {
    return { id: this.id, identityKey: this.identity.publicKeyB64, stellarKey: this.stellarKey };
  }

  /** Dial, authenticate; resolves with the welcome (or the close code when refused). */
  connect(
    baseUrl: string,
    coordinatorKey: Buffer,
    authOverride: Partial<Body<'auth'>> = {},
  ): Promise<'welcome' | number> {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/nodes/connect`);
    this.ws = ws;
    this.closed = undefined;
    return new Promise((resolve, reject) => {
      ws.on('error', reject);
      ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        resolve(code);
        this.#notify();
      });
      ws.on('message', (data: Buffer) => {
        const { envelope } = decodeFrame(data, {
          trustedKeys: [coordinatorKey],
          sender: 'coordinator',
          self: this.id,
          session: this.session,
          replay: this.#replay,
        });
        switch (envelope.type) {
          case 'hello': {
            const h = envelope.body as Body<'hello'>;
            this.sendRaw('auth', {
              nodeId: this.id,
              identityKey: this.identity.publicKeyB64,
              stellarKey: this.stellarKey,
              challenge: h.challenge,
              networkPassphrase: this.network,
              version: 'test',
              ...authOverride,
            });
            break;
          }
          case 'welcome':
            this.session = (envelope.body as Body<'welcome'>).sessionId;
            // Like a real node: ask for every open proposal right after the session opens.
            if (this.autoSync) this.send('sync', {});
            resolve('welcome');
            break;
          case 'proposal':
            this.proposals.push(envelope.body as Body<'proposal'>);
            this.#decide(envelope.body as Body<'proposal'>);
            break;
          case 'cancel':
            this.cancels.push(envelope.body as Body<'cancel'>);
            break;
          case 'ping':
            if (this.answerPings) this.send('pong', { nonce: (envelope.body as Body<'ping'>).nonce });
            break;
          default:
            break;
        }
        this.#notify();
      });
    });
  }

  #notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Wait until `cond` holds, re-checked on every frame (bounded by the test timeout). */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await new Promise<void>((r) => this.#waiters.push(r));
  }

  sendRaw<T extends MessageType>(
    type: T,
    body: Body<T>,
    opts: { session?: string | null; identity?: Identity; from?: string } = {},
  ): void {
    this.ws!.send(
      encodeFrame(opts.identity ?? this.identity, {
        type,
        body,
        from: opts.from ?? this.id,
        to: 'coordinator',
        session: opts.session === undefined ? null : opts.session,
      }),
    );
  }

  send<T extends MessageType>(type: T, body: Body<T>): void {
    this.sendRaw(type, body, { session: this.session });
  }

  #decide(p: Body<'proposal'>): void {
    const d = this.decision(p);
    if (d) this.send('decision', d);
  }

  decision(p: Body<'proposal'>): Body<'decision'> | undefined {
    const b = this.behaviour;
    if (typeof b === 'function') return b(p, this);
    if (b === 'silent') return undefined;
    const hash = decodeEnvelope(p.xdr!, this.network).hash;
    const base = { proposalId: p.proposalId, hash: hash.toString('hex'), signerKey: this.stellarKey, reasons: [] };
    switch (b) {
      case 'reject':
        return {
          ...base,
          outcome: 'reject',
          reasons: [{ code: 'POLICY_AMOUNT', message: `${this.id}: amount above limit` }],
        };
      case 'hold':
        return { ...base, outcome: 'hold', reasons: [{ code: 'POLICY_MANUAL', message: 'needs a person' }] };
      case 'garbage':
        return { ...base, outcome: 'approve', signature: Buffer.alloc(64, 7).toString('base64') };
      case 'otherHash': {
        const other = Buffer.alloc(32, 9);
        return { ...base, outcome: 'approve', signature: Buffer.from(this.keypair.sign(other)).toString('base64') };
      }
      case 'wrongKey': {
        const kp = Keypair.random();
        return {
          ...base,
          outcome: 'approve',
          signerKey: kp.publicKey(),
          signature: Buffer.from(kp.sign(hash)).toString('base64'),
        };
      }
      default:
        return { ...base, outcome: 'approve', signature: Buffer.from(this.keypair.sign(hash)).toString('base64') };
    }
  }

  close(): void {
    this.ws?.close();
  }
}

export async function waitFor<T>(
  f: () => T | undefined | Promise<T | undefined>,
  what = 'condition',
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface Harness {
  dir: string;
  app: FastifyInstance;
  store: Store;
  ledger: FakeLedger;
  identity: Identity;
  adminKey: string;
  url?: string;
  close(): Promise<void>;
}

/** Close a harness and delete its data directory (an `afterEach` of every suite that builds one); undefined after. */
export async function disposeHarness(h: Harness | undefined): Promise<undefined> {
  if (!h) return undefined;
  await h.close();
  await rm(h.dir, { recursive: true, force: true });
  return undefined;
}

/** Request headers presenting an API key in the `Authorization: Bearer` scheme. */
export function bearer(key: string): { authorization: string } {
  return { authorization: `Bearer ${key}` };
}

/** POST `payload` to `url` on the harness's app, authenticated with its admin key. */
export function postAsAdmin(h: Harness, url: string, payload: unknown) {
  return h.app.inject({ method: 'POST', url, headers: bearer(h.adminKey), payload: payload as object });
}

/**
 * A harness whose fake ledger holds one 2-of-3 multisig account (`source`). Enrolled nodes n0..n2 hold the three
 * signer keys (`keys`), so the quorum is reachable and proposals stay pending.
 */
export async function harnessWithAccount(
  opts: { config?: Record<string, unknown>; listen?: boolean } = {},
): Promise<{ source: string; keys: string[]; ledger: FakeLedger; h: Harness }> {
  const ledger = new FakeLedger();
  const source = Keypair.random().publicKey();
  const keys = [Keypair.random().publicKey(), Keypair.random().publicKey(), Keypair.random().publicKey()];
  ledger.accounts.set(source, multisig(source, keys, 2));
  const h = await harness({ ledger, ...opts });
  keys.forEach((k, i) => {
    h.store.enrollNode(
      { id: `n${i}`, identityKey: Buffer.alloc(32, i + 1).toString('base64'), stellarKey: k },
      Date.now(),
    );
  });
  return { source, keys, ledger, h };
}

/** An in-process coordinator on a temp data dir with a FakeLedger; `listen` gives it a real port for nodes. */
export async function harness(
  opts: {
    config?: Record<string, unknown>;
    nodes?: TestNode[];
    listen?: boolean;
    dir?: string;
    ledger?: FakeLedger;
    identity?: Identity;
  } = {},
): Promise<Harness> {
  const dir = opts.dir ?? (await tempDir('coord-test-'));
  const config = parseConfig({
    dataDir: dir,
    network: NETWORK,
    nodes: (opts.nodes ?? []).map((n) => n.enrolment()),
    round: { submitBackoffMs: 10, heartbeatMs: 1000 },
    ...opts.config,
  });
  const store = openSqliteStore(dir);
  const identity = opts.identity ?? generateIdentity().identity;
  const ledger = opts.ledger ?? new FakeLedger();
  const adminKey = (await createApiKey(store, ['admin'])).key;
  const app = await build({
    config,
    store,
    identity,
    callbackSecret: 'test-secret',
    ledger,
    logger: createLogger({ name: 'test', level: 'silent' }),
  });
  // Every event a test makes the coordinator emit must match the documented Event schema (the OpenAPI document's
  // components.schemas.Event): a test that emits a shape the document does not describe fails at close.
  const mismatched: string[] = [];
  app.coordinator.events.subscribe((e) => {
    const wire = JSON.parse(JSON.stringify(e)) as unknown;
    if (!checkEvent.Check(wire)) mismatched.push(`${e.type} ${JSON.stringify(e.data)}`);
  });
  let url: string | undefined;
  if (opts.listen) url = await app.listen({ host: '127.0.0.1', port: 0 });
  else await app.ready();
  return {
    dir,
    app,
    store,
    ledger,
    identity,
    adminKey,
    url,
    close: async () => {
      await app.close();
      if (mismatched.length > 0) {
        throw new Error(`events that do not match the documented Event schema:\n${mismatched.join('\n')}`);
      }
    },
  };
}

const checkEvent = Compile(EventSchema);

/**
 * A TCP relay in front of the coordinator that can go silent: once `partition()` is called it keeps both
 * connections open but drops every byte either way (no FIN, no RST), like a network partition that loses packets.
 */
export class SilentProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #silent = false;
  url = '';

  constructor(readonly upstreamPort: number) {
    this.#server = createServer((client) => {
      const up = connect(upstreamPort, '127.0.0.1');
      for (const s of [client, up]) {
        this.#sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => this.#sockets.delete(s));
      }
      client.on('data', (b) => {
        if (!this.#silent) up.write(b);
      });
      up.on('data', (b) => {
        if (!this.#silent) client.write(b);
      });
      client.on('end', () => this.#silent || up.end());
      up.on('end', () => this.#silent || client.end());
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.url;
  }

  partition(): void {
    this.#silent = true;
  }

  close(): void {
    for (const s of this.#sockets) s.destroy();
    this.#server.close();
  }
}

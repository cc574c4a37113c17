import { spawn } from 'node:child_process';
import { dirname } from 'node:path';
import { COSIGNER_BIN, REPO_ROOT } from '@cosigner/testkit/process';
import { Account, Asset, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { type ClusterDriver, isReplicated, type ReplicatedClusterDriver } from './driver.ts';

/**
 * The chaos scenarios and the invariants checked after each, written against ClusterDriver
 * only, so the process suite and the compose suite run exactly the same code.
 *
 * Every scenario runs under a stream of proposals: payments within the nodes' policy from the operator
 * accounts, one lane per account (a source account's transactions must apply in sequence order, stellar-core
 * TransactionFrame::isBadSeq, so one lane keeps one proposal in flight). A lane behaves as a careful client:
 * it retries a POST with the same idempotency key until the coordinator answers, polls until the proposal is
 * terminal, and when a submission ended with an unknown fate (`submission_unavailable`) it proposes the very
 * same XDR again (the nodes return the signature they already hold for that hash; the ledger answers a known
 * hash from history).
 *
 * Waits are bounded polls; nothing asserts on time.
 */

export const TERMINAL = ['submitted', 'failed', 'rejected', 'expired', 'cancelled'];

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One proposal the stream got back from the coordinator. */
export interface StreamRecord {
  id: string;
  lane: number;
  account: string;
  /** Sequence number of the transaction (the slot). */
  seq: string;
  hash: string;
  idempotencyKey: string;
  /** Last status seen. */
  status: string;
  statusReason: string | null;
  resultCode: string | null;
  /** Submission attempts the coordinator made (0 before submission). */
  attempts: number;
  /** Coordinator timestamps (ms). */
  createdAt: number;
  signedAt: number | null;
  /** Client clock when the stream saw the terminal status. */
  doneAt: number | null;
  /** Nodes the scenario had faulted when the proposal was made (for time-to-quorum under failure). */
  faulted: string[];
  /** The id of an earlier proposal of the same XDR whose submission ended with an unknown fate. */
  retryOf: string | null;
}

interface View {
  id: string;
  status: string;
  statusReason: string | null;
  createdAt: string;
  signedAt: string | null;
  hash: string;
  result: { code: string | null; attempts: number } | null;
  decisions: { nodeId: string; outcome: string; createdAt: string }[];
}

/** A coordinator client that rides out restarts: transport errors, 5xx and 429 are retried until `deadline`. */
export class CoordinatorClient {
  constructor(private readonly d: ClusterDriver) {}

  async request(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    timeoutMs = 60_000,
  ): Promise<{ status: number; body: unknown }> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const res = await fetch(`${this.d.coordinatorUrl()}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${this.d.apiKey()}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        if (res.status < 500 && res.status !== 429) return { status: res.status, body: JSON.parse(text) as unknown };
        last = `${res.status} ${text.slice(0, 200)}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`${method} ${path}: no answer within ${timeoutMs} ms (${last})`);
      await sleep(100);
    }
  }

  async proposal(id: string): Promise<View> {
    const r = await this.request('GET', `/v1/proposals/${id}`);
    if (r.status !== 200) throw new Error(`GET /v1/proposals/${id} answered ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body as View;
  }

  /** Every proposal id the coordinator lists (all pages). */
  async allIds(): Promise<Set<string>> {
    const ids = new Set<string>();
    let cursor: string | null = null;
    do {
      const r = await this.request('GET', `/v1/proposals?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      if (r.status !== 200) throw new Error(`GET /v1/proposals answered ${r.status}: ${JSON.stringify(r.body)}`);
      const page = r.body as { items: { id: string }[]; nextCursor: string | null };
      for (const p of page.items) ids.add(p.id);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return ids;
  }

  async nodes(): Promise<{ id: string; connected: boolean; approvals: number }[]> {
    const r = await this.request('GET', '/v1/nodes');
    return (r.body as { nodes: { id: string; connected: boolean; approvals: number }[] }).nodes;
  }
}

/** GET a Horizon path, retrying while the ledger simulator is down. */
async function horizonGet(
  d: ClusterDriver,
  path: string,
  timeoutMs = 60_000,
): Promise<{ status: number; body: unknown }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${d.horizonUrl()}${path}`, { signal: AbortSignal.timeout(10_000) });
      if (res.status < 500) return { status: res.status, body: (await res.json()) as unknown };
    } catch {
      // Down or restarting: retry below.
    }
    if (Date.now() > deadline) throw new Error(`Horizon ${path}: no answer within ${timeoutMs} ms`);
    await sleep(100);
  }
}

export interface StreamOptions {
  /** Lanes (operator accounts used; at most the driver's accounts). Default 2. */
  lanes?: number;
  /** Payment amount in XLM, within the nodes' policy. Default '1'. */
  amount?: string;
  /** Transaction validity in seconds (policy allows up to 300). Default 120. */
  timeoutSeconds?: number;
  /** Pause between a lane's proposals (default 0). */
  gapMs?: number;
}

/** A stream of in-policy payments, one proposal in flight per lane. */
export class ProposalStream {
  readonly records: StreamRecord[] = [];
  readonly errors: string[] = [];
  /** Nodes currently faulted by the scenario (recorded on each proposal made meanwhile). */
  readonly faulted = new Set<string>();
  readonly client: CoordinatorClient;
  #stopping = false;
  #lanes: Promise<void>[] = [];
  #passphrase = '';
  #destination = '';
  readonly #inFlight = new Map<number, StreamRecord>();
  #made = 0;
  readonly #run = Math.random().toString(36).slice(2, 10);

  constructor(
    private readonly d: ClusterDriver,
    private readonly o: StreamOptions = {},
  ) {
    this.client = new CoordinatorClient(d);
  }

  /** Proposals that reached a terminal status. */
  get done(): number {
    return this.records.filter((r) => TERMINAL.includes(r.status)).length;
  }

  /** The proposals each lane is waiting on right now. */
  inFlight(): StreamRecord[] {
    return [...this.#inFlight.values()];
  }

  async start(): Promise<void> {
    const root = await horizonGet(this.d, '/');
    this.#passphrase = String((root.body as { network_passphrase: string }).network_passphrase);
    this.#destination = Keypair.fromSecret(this.d.funder().secret).publicKey();
    const accounts = this.d.accounts?.() ?? [this.d.account()];
    const lanes = Math.max(1, Math.min(this.o.lanes ?? 2, accounts.length));
    this.#lanes = accounts.slice(0, lanes).map((a, i) =>
      this.#lane(i, a).catch((e: unknown) => {
        this.errors.push(`lane ${i}: ${(e as Error).message}`);
      }),
    );
  }

  /** Wait until `n` more proposals than now are terminal (bounded; a stuck stream throws with its state). */
  async waitFor(n: number, timeoutMs = 90_000): Promise<void> {
    const target = this.done + n;
    const deadline = Date.now() + timeoutMs;
    while (this.done < target) {
      if (this.errors.length > 0) throw new Error(`the stream failed: ${this.errors.join('; ')}`);
      if (Date.now() > deadline) {
        const open = this.inFlight().map((r) => `${r.id} ${r.status}`);
        throw new Error(
          `only ${this.done}/${target} proposals terminal after ${timeoutMs} ms; open: ${open.join(', ')}`,
        );
      }
      await sleep(50);
    }
  }

  /** Stop making proposals, let each lane finish the one in flight. */
  async stop(): Promise<StreamRecord[]> {
    this.#stopping = true;
    await Promise.all(this.#lanes);
    return this.records;
  }

  async #lane(lane: number, account: string): Promise<void> {
    let seq: bigint | undefined;
    while (!this.#stopping) {
      if (seq === undefined) {
        const r = await horizonGet(this.d, `/accounts/${account}`);
        if (r.status !== 200) throw new Error(`account ${account}: Horizon answered ${r.status}`);
        seq = BigInt((r.body as { sequence: string }).sequence);
      }
      const tx = new TransactionBuilder(new Account(account, seq.toString()), {
        fee: '100',
        networkPassphrase: this.#passphrase,
      })
        .addOperation(
          Operation.payment({ destination: this.#destination, asset: Asset.native(), amount: this.o.amount ?? '1' }),
        )
        .setTimeout(this.o.timeoutSeconds ?? 120)
        .build();
      const xdr = tx.toXDR();
      const maxTime = Number(tx.timeBounds?.maxTime ?? 0);
      let retryOf: string | null = null;
      for (let attempt = 0; ; attempt++) {
        const rec = await this.#propose(lane, account, tx.sequence, xdr, retryOf);
        if (rec.status === 'submitted') {
          seq += 1n;
          break;
        }
        // Not submitted (the scenario reports it unless it was a lost submission). While the transaction is
        // valid, ask again with the SAME bytes: a node that already signed this slot signs only this hash again
        // (ledger.ts), so a fresh transaction for the slot would be refused until this one's time bound passes.
        if (!this.#stopping && attempt < 4 && Date.now() / 1000 < maxTime - 10) {
          retryOf = rec.id;
          if (rec.resultCode !== 'submission_unavailable') await sleep(500);
          continue;
        }
        seq = undefined;
        break;
      }
      if (this.o.gapMs) await sleep(this.o.gapMs);
    }
  }

  async #propose(
    lane: number,
    account: string,
    seq: string,
    xdr: string,
    retryOf: string | null,
  ): Promise<StreamRecord> {
    const idempotencyKey = `chaos-${this.#run}-${lane}-${seq}-${++this.#made}`;
    const faulted = [...this.faulted];
    // The same idempotency key on every retry: a POST whose answer was lost (coordinator killed) is not doubled.
    const res = await this.client.request('POST', '/v1/proposals', { xdr, submit: true, idempotencyKey }, 120_000);
    if (res.status !== 200 && res.status !== 201) {
      throw new Error(`POST /v1/proposals answered ${res.status}: ${JSON.stringify(res.body)}`);
    }
    const v = res.body as View;
    const rec: StreamRecord = {
      id: v.id,
      lane,
      account,
      seq,
      hash: v.hash,
      idempotencyKey,
      status: v.status,
      statusReason: v.statusReason,
      resultCode: null,
      attempts: 0,
      createdAt: Date.parse(v.createdAt),
      signedAt: null,
      doneAt: null,
      faulted,
      retryOf,
    };
    this.records.push(rec);
    this.#inFlight.set(lane, rec);
    // Bounded by the transaction's validity: past it the coordinator must have expired or settled it.
    const deadline = Date.now() + ((this.o.timeoutSeconds ?? 120) + 60) * 1000;
    for (;;) {
      const p = await this.client.proposal(rec.id);
      rec.status = p.status;
      rec.statusReason = p.statusReason;
      rec.resultCode = p.result?.code ?? null;
      rec.attempts = p.result?.attempts ?? 0;
      rec.signedAt = p.signedAt === null ? null : Date.parse(p.signedAt);
      if (TERMINAL.includes(p.status)) break;
      if (Date.now() > deadline) throw new Error(`proposal ${rec.id} still '${p.status}' past its time bound`);
      await sleep(40);
    }
    rec.doneAt = Date.now();
    this.#inFlight.delete(lane);
    return rec;
  }
}

/** What the invariant checks saw. */
export interface InvariantReport {
  violations: string[];
  /** Proposals checked, and how many ended submitted. */
  proposals: number;
  submitted: number;
  /** Signature records read from the nodes' ledgers, and audit entries verified. */
  ledgerRows: number;
  auditOutput: string[];
}

/**
 * The invariants: every accepted proposal reaches a terminal state; none is lost (the coordinator
 * lists every id the stream got back); every submitted envelope is on the ledger and successful; no node holds
 * two live signatures for one (account, sequence) slot (its signing ledger); every node's audit chain verifies
 * (`cosigner node audit verify`, the operators' own tool).
 *
 * @param slotGraceSeconds the nodes' `limits.slotGraceSeconds` (default 60): a slot record stays live until
 *   maxTime + grace, so a second record for a different transaction is a violation when it was created by then.
 */
export async function checkInvariants(
  d: ClusterDriver,
  records: readonly StreamRecord[],
  opts: { slotGraceSeconds?: number; timeoutMs?: number } = {},
): Promise<InvariantReport> {
  const violations: string[] = [];
  const client = new CoordinatorClient(d);
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);

  // 1. Terminal, as the coordinator itself reports it now.
  const final = new Map<string, View>();
  for (const r of records) {
    for (;;) {
      const v = await client.proposal(r.id);
      if (TERMINAL.includes(v.status)) {
        final.set(r.id, v);
        break;
      }
      if (Date.now() > deadline) {
        violations.push(`proposal ${r.id} is still '${v.status}' (not terminal)`);
        break;
      }
      await sleep(100);
    }
  }

  // 2. None lost.
  const listed = await client.allIds();
  for (const r of records) if (!listed.has(r.id)) violations.push(`proposal ${r.id} is missing from GET /v1/proposals`);

  // 3. Submitted means on the ledger and successful.
  let submitted = 0;
  for (const v of final.values()) {
    if (v.status !== 'submitted') continue;
    submitted += 1;
    const t = await horizonGet(d, `/transactions/${v.hash}`);
    if (t.status !== 200) violations.push(`proposal ${v.id} is submitted but ${v.hash} is not on the ledger`);
    else if ((t.body as { successful?: boolean }).successful !== true) {
      violations.push(`proposal ${v.id} is submitted but ${v.hash} failed on the ledger`);
    }
  }

  // 4 and 5. Each node's signing ledger: one live signature per slot; the audit chain verifies.
  const grace = opts.slotGraceSeconds ?? 60;
  let ledgerRows = 0;
  const auditOutput: string[] = [];
  const audits: Promise<void>[] = [];
  for (const nodeId of d.nodeIds) {
    const file = await d.nodeLedgerFiles(nodeId);
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const rows = db
        .prepare<[], { tx_hash: string; source: string; seq: string; max_time: number; created_at: number }>(
          'SELECT tx_hash, source, seq, max_time, created_at FROM signatures ORDER BY source, seq, created_at, rowid',
        )
        .all();
      ledgerRows += rows.length;
      violations.push(...slotViolations(nodeId, rows, grace));
    } finally {
      db.close();
    }
    audits.push(
      auditVerify(dirname(file)).then((audit) => {
        auditOutput.push(`${nodeId}: ${audit.out.trim()}`);
        if (audit.code !== 0) violations.push(`${nodeId}: audit chain does not verify: ${audit.out.trim()}`);
      }),
    );
  }
  await Promise.all(audits);
  auditOutput.sort();
  return { violations, proposals: records.length, submitted, ledgerRows, auditOutput };
}

/**
 * Pairs of records for one slot and different transactions where the later one was written while the earlier
 * was still live (ledger.ts isLive: maxTime + grace >= now; maxTime 0 is live forever).
 */
export function slotViolations(
  nodeId: string,
  rows: readonly { tx_hash: string; source: string; seq: string; max_time: number; created_at: number }[],
  graceSeconds: number,
): string[] {
  const out: string[] = [];
  const bySlot = new Map<string, typeof rows>();
  for (const r of rows) {
    const k = `${r.source}:${r.seq}`;
    bySlot.set(k, [...(bySlot.get(k) ?? []), r]);
  }
  for (const [slot, rs] of bySlot) {
    for (let i = 0; i < rs.length; i++) {
      for (let j = i + 1; j < rs.length; j++) {
        const a = rs[i]!;
        const b = rs[j]!;
        if (a.tx_hash === b.tx_hash) continue;
        if (a.max_time === 0 || b.created_at <= a.max_time + graceSeconds) {
          out.push(`${nodeId} holds two live signatures for slot ${slot}: ${a.tx_hash} and ${b.tx_hash}`);
        }
      }
    }
  }
  return out;
}

/** `cosigner node audit verify --data-dir <dir>` as a process. */
export async function auditVerify(dataDir: string): Promise<{ code: number | null; out: string }> {
  const proc = spawn(process.execPath, [COSIGNER_BIN, 'node', 'audit', 'verify', '--data-dir', dataDir], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  proc.stderr.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const code = await new Promise<number | null>((res) => proc.once('exit', (c) => res(c)));
  return { code, out };
}

/**
 * Every proposal ended submitted, except one whose submission ended with an unknown fate and whose XDR a later
 * proposal of the stream got submitted (the client's retry).
 */
export function notSubmitted(records: readonly StreamRecord[]): string[] {
  const submittedHashes = new Set(records.filter((r) => r.status === 'submitted').map((r) => r.hash));
  return records
    .filter((r) => r.status !== 'submitted')
    .filter((r) => !(r.status === 'failed' && r.resultCode === 'submission_unavailable' && submittedHashes.has(r.hash)))
    .map((r) => `proposal ${r.id} (lane ${r.lane}, seq ${r.seq}) ended '${r.status}': ${r.statusReason ?? ''}`);
}

/** The q-quantile (0..1) of the values, nearest rank; null when there are none. */
export function quantile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** Poll until `cond` holds (bounded). */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** What a scenario body gets. */
export interface ScenarioContext {
  readonly d: ClusterDriver;
  readonly stream: ProposalStream;
  /** Facts the scenario adds to its report (e.g. proposals in flight when the coordinator died). */
  note(line: string): void;
  /** A scenario-specific check that failed. */
  violation(line: string): void;
}

export interface Scenario {
  readonly name: string;
  run(ctx: ScenarioContext): Promise<void>;
}

export interface ScenarioReport extends InvariantReport {
  name: string;
  notes: string[];
  records: StreamRecord[];
}

/** Do the fault; the proposals made once it holds are marked with it. */
async function fault(ctx: ScenarioContext, nodeId: string, f: () => Promise<void>): Promise<void> {
  await f();
  ctx.stream.faulted.add(nodeId);
}

/** Unmark, then undo the fault; returns when the undoing began. */
async function recover(ctx: ScenarioContext, nodeId: string, f: () => Promise<void>): Promise<number> {
  const t = Date.now();
  ctx.stream.faulted.delete(nodeId);
  await f();
  return t;
}

/**
 * A node that is dead, stopped or cut off cannot decide: proposals made while the fault held and finished before
 * it was undone must hold no decision from it. This proves the fault was real (a fault that did nothing would
 * let every scenario pass).
 */
async function silentDuring(ctx: ScenarioContext, nodeId: string, undoneAt: number): Promise<void> {
  const rs = ctx.stream.records.filter((r) => r.faulted.includes(nodeId) && r.doneAt !== null && r.doneAt < undoneAt);
  if (rs.length === 0) ctx.violation(`no proposal was made and finished while ${nodeId} was faulted`);
  for (const r of rs) {
    const v = await ctx.stream.client.proposal(r.id);
    if (v.decisions.some((x) => x.nodeId === nodeId)) ctx.violation(`${nodeId} decided on ${r.id} while faulted`);
  }
  ctx.note(`${rs.length} proposals finished without ${nodeId}`);
}

/**
 * Wait (bounded) until `nodeId` has answered "not now" during the fault: a node whose key backend cannot sign
 * answers SIGNER_UNAVAILABLE, which the coordinator records as `unavailable` (asked again later, never counted
 * against the quorum), not as a `reject`. The coordinator records only answers that arrive while a proposal is
 * open; when the other two nodes reach the quorum first (a slow KMS failure under load), the proof is in the
 * node's own ledger: its decisions table gains SIGNER_UNAVAILABLE refusals while the fault lasts.
 */
async function refusesDuring(ctx: ScenarioContext, nodeId: string): Promise<void> {
  const unavailableInLedger = async (): Promise<number> => {
    const db = new Database(await ctx.d.nodeLedgerFiles(nodeId), { readonly: true, fileMustExist: true });
    try {
      return db
        .prepare<[], { n: number }>(
          `SELECT count(*) AS n FROM decisions WHERE outcome = 'reject' AND reasons LIKE '%"SIGNER_UNAVAILABLE"%'`,
        )
        .get()!.n;
    } finally {
      db.close();
    }
  };
  const before = await unavailableInLedger();
  let polls = 0;
  await until(async () => {
    for (const r of ctx.stream.records.filter((x) => x.faulted.includes(nodeId)).slice(-4)) {
      const v = await ctx.stream.client.proposal(r.id);
      if (v.decisions.some((x) => x.nodeId === nodeId && x.outcome === 'unavailable')) return true;
    }
    // A copy of the node's ledger is not free (VACUUM INTO): look at it every 2 s.
    return ++polls % 20 === 0 && (await unavailableInLedger()) > before;
  }, `an unavailable answer from ${nodeId} while its KMS is down`);
}

/**
 * Wait (bounded) until a proposal made after `since` holds an approval from `nodeId`; returns when it was seen.
 * A decision arriving after the quorum is not recorded, so this looks at several proposals in turn.
 */
export async function approvedAgain(stream: ProposalStream, nodeId: string, since: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    for (const r of stream.records.filter((x) => x.createdAt >= since).slice(-4)) {
      const v = await stream.client.proposal(r.id);
      if (v.decisions.some((x) => x.nodeId === nodeId && x.outcome === 'approve')) return Date.now();
    }
    if (Date.now() > deadline) throw new Error(`${nodeId} did not approve any proposal within 60 s`);
    await sleep(100);
  }
}

/** Wait at least `ms` since `t0` (lets a fault last long enough for heartbeats to notice it). */
async function atLeast(t0: number, ms: number): Promise<void> {
  const left = t0 + ms - Date.now();
  if (left > 0) await sleep(left);
}

const node = (d: ClusterDriver, i: number): string => {
  const id = d.nodeIds[i % d.nodeIds.length];
  if (id === undefined) throw new Error('the cluster has no node');
  return id;
};

export const scenarios: readonly Scenario[] = [
  {
    name: 'SIGKILL one of three nodes, then restart it',
    async run(ctx) {
      const { d, stream } = ctx;
      const victim = node(d, 2);
      await stream.waitFor(3);
      await fault(ctx, victim, () => d.kill(victim));
      await stream.waitFor(4);
      const back = await recover(ctx, victim, () => d.start(victim));
      await silentDuring(ctx, victim, back);
      await stream.waitFor(4);
    },
  },
  {
    name: 'kill two of three: proposals wait without error, then finish once one is back',
    async run(ctx) {
      const { d, stream } = ctx;
      const [a, b] = [node(d, 1), node(d, 2)];
      await stream.waitFor(2);
      await fault(ctx, a, () => d.kill(a));
      await fault(ctx, b, () => d.kill(b));
      const killedAt = Date.now();
      // Proposals that had their quorum before the kill may still finish; every other one must wait, not fail.
      await sleep(2500);
      const waiting: StreamRecord[] = [];
      for (const r of stream.inFlight()) {
        const v = await stream.client.proposal(r.id);
        // One that had its quorum before the kill may be signed or submitted by now; none may have failed.
        if (v.status === 'pending') waiting.push(r);
        else if (v.status !== 'signed' && v.status !== 'submitted') {
          ctx.violation(`with two nodes down, proposal ${r.id} became '${v.status}'`);
        }
      }
      if (waiting.length === 0) ctx.violation('no proposal was waiting while two nodes were down');
      const endedMeanwhile = stream.records.filter((r) => (r.doneAt ?? 0) > killedAt && r.status !== 'submitted');
      for (const r of endedMeanwhile) ctx.violation(`proposal ${r.id} ended '${r.status}' while two nodes were down`);
      ctx.note(`${waiting.length} proposals waited while two nodes were down`);
      await recover(ctx, a, () => d.start(a));
      await stream.waitFor(4);
      for (const r of waiting) {
        const v = await stream.client.proposal(r.id);
        if (v.status !== 'submitted') ctx.violation(`proposal ${r.id} that waited ended '${v.status}'`);
      }
      await recover(ctx, b, () => d.start(b));
      await stream.waitFor(2);
    },
  },
  {
    name: 'pause a node (SIGSTOP), then resume it',
    async run(ctx) {
      const { d, stream } = ctx;
      const victim = node(d, 0);
      await stream.waitFor(2);
      const t0 = Date.now();
      await fault(ctx, victim, () => d.pause(victim));
      await stream.waitFor(4);
      await atLeast(t0, 4000);
      const back = await recover(ctx, victim, () => d.resume(victim));
      await silentDuring(ctx, victim, back);
      await stream.waitFor(3);
      await until(
        async () => (await stream.client.nodes()).find((n) => n.id === victim)?.connected === true,
        `${victim} connected again`,
      );
    },
  },
  {
    name: 'partition a node from the coordinator (no RST), then heal',
    async run(ctx) {
      const { d, stream } = ctx;
      const victim = node(d, 1);
      await stream.waitFor(2);
      const t0 = Date.now();
      await fault(ctx, victim, () => d.partition(victim));
      await stream.waitFor(4);
      // Long enough for both sides' heartbeats (3 missed beats) to give up on the silent connection.
      await atLeast(t0, 5000);
      const healed = await recover(ctx, victim, () => d.heal(victim));
      await silentDuring(ctx, victim, healed);
      await stream.waitFor(3);
      await until(
        async () => (await stream.client.nodes()).find((n) => n.id === victim)?.connected === true,
        `${victim} connected again after the heal`,
      );
    },
  },
  {
    name: 'kill -9 the coordinator mid-round, then restart it',
    async run(ctx) {
      const { d, stream } = ctx;
      await stream.waitFor(3);
      await until(() => stream.inFlight().length > 0, 'a proposal in flight');
      const open = stream.inFlight().map((r) => r.id);
      await d.killCoordinator();
      ctx.note(`${open.length} proposals in flight when the coordinator died`);
      await sleep(1000);
      await d.startCoordinator();
      await stream.waitFor(5);
      for (const id of open) {
        const v = await stream.client.proposal(id);
        if (v.status !== 'submitted') ctx.violation(`proposal ${id}, in flight at the crash, ended '${v.status}'`);
      }
    },
  },
  {
    name: "stop a node's KMS (outage), then throttle it",
    async run(ctx) {
      const { d, stream } = ctx;
      const victim = node(d, 0);
      await stream.waitFor(2);
      await fault(ctx, victim, () => d.stopKms(victim));
      await refusesDuring(ctx, victim);
      await stream.waitFor(3);
      const restarted = Date.now();
      await recover(ctx, victim, () => d.startKms(victim));
      // Its key backend's circuit breaker lets a probe through only after its cool-down (packages/keys
      // resilience.ts): wait for the node to sign again before the next fault, so faults never overlap.
      const back = await approvedAgain(stream, victim, restarted);
      ctx.note(`${victim} signed again ${back - restarted} ms after its KMS restarted`);
      if (d.throttleKms) {
        const slow = node(d, 1);
        await fault(ctx, slow, () => d.throttleKms!(slow, true));
        await stream.waitFor(4);
        await recover(ctx, slow, () => d.throttleKms!(slow, false));
        await stream.waitFor(2);
      } else {
        ctx.note('the backend cannot throttle a KMS: outage only');
      }
    },
  },
  {
    name: 'stop the ledger simulator during submission, then restart it',
    async run(ctx) {
      const { d, stream } = ctx;
      await stream.waitFor(3);
      const stoppedAt = Date.now();
      await d.stopLedger();
      await sleep(2000);
      await d.startLedger();
      await stream.waitFor(4);
      const hit = stream.records.filter((r) => r.attempts > 1 || r.retryOf !== null);
      ctx.note(
        `${hit.length} proposals needed more than one submission; ${stream.records.filter((r) => r.createdAt > stoppedAt).length} made after the stop`,
      );
    },
  },
];

/** An error body of the coordinator's API: its registered code. */
const codeOf = (body: unknown): string | undefined =>
  typeof body === 'object' && body !== null ? (body as { code?: string }).code : undefined;

/** One request straight to a replica (no retry): its status and error code, or the transport error. */
async function askReplica(d: ReplicatedClusterDriver, replica: string, path: string): Promise<string> {
  try {
    const res = await fetch(`${d.replicaUrl(replica)}${path}`, {
      headers: { authorization: `Bearer ${d.apiKey()}` },
      signal: AbortSignal.timeout(20_000),
    });
    const body = (await res.json().catch(() => undefined)) as unknown;
    return `${res.status}${codeOf(body) ? ` ${codeOf(body)}` : ''}`;
  } catch (e) {
    return `no answer (${(e as Error).message})`;
  }
}

/**
 * Hold every round open: cut two of the three nodes from the coordinator (a quorum needs two), so a round in flight
 * waits for them with a live lease, whoever drives it. Returns the nodes cut.
 */
async function holdRounds(ctx: ScenarioContext): Promise<string[]> {
  const held = [node(ctx.d, 1), node(ctx.d, 2)];
  for (const n of held) await fault(ctx, n, () => ctx.d.partition(n));
  return held;
}

async function releaseRounds(ctx: ScenarioContext, held: readonly string[]): Promise<void> {
  for (const n of held) await recover(ctx, n, () => ctx.d.heal(n));
}

/** A proposal of the stream still pending on the coordinator whose round a replica holds a live lease on. */
async function drivenRound(
  ctx: ScenarioContext,
  d: ReplicatedClusterDriver,
): Promise<{ id: string; replica: string; token: number }> {
  let found: { id: string; replica: string; token: number } | undefined;
  await until(
    async () => {
      for (const r of ctx.stream.inFlight()) {
        const h = await d.leaseHolder(r.id);
        if (h?.live && (await ctx.stream.client.proposal(r.id)).status === 'pending') {
          found = { id: r.id, replica: h.replica, token: h.token };
          return true;
        }
      }
      return false;
    },
    'a pending round in flight with a live lease',
    60_000,
  );
  return found!;
}

/** Wait until another replica than `from` holds the round's lease with a higher token (a violation if it never does). */
async function takenOver(
  ctx: ScenarioContext,
  d: ReplicatedClusterDriver,
  round: { id: string; replica: string; token: number },
  since: number,
): Promise<void> {
  let by: { replica: string; token: number } | undefined;
  try {
    await until(
      async () => {
        const h = await d.leaseHolder(round.id);
        if (h && h.replica !== round.replica) by = h;
        return by !== undefined;
      },
      `another replica to take over ${round.id} from ${round.replica}`,
      90_000,
    );
  } catch (e) {
    ctx.violation((e as Error).message);
    return;
  }
  if (by!.token <= round.token) ctx.violation(`${round.id} taken over with token ${by!.token} <= ${round.token}`);
  ctx.note(`${round.id} taken over by ${by!.replica} (token ${by!.token}) ${Date.now() - since} ms after the fault`);
}

/**
 * The scenarios of a coordinator run as several replicas on one database (ReplicatedClusterDriver): the stream
 * goes through the load balancer throughout. Besides the invariants of every scenario, runScenario checks on such a
 * driver that no proposal holds two terminal events (completed twice). The replica faults are made while two nodes
 * are cut off, so the round hit is still collecting signatures: it cannot finish before the fault, and its new
 * driver must ask the nodes again once they are back.
 */
export const replicaScenarios: readonly Scenario[] = [
  {
    name: 'kill -9 the replica driving a round, then restart it',
    async run(ctx) {
      const d = ctx.d as ReplicatedClusterDriver;
      const { stream } = ctx;
      await stream.waitFor(3);
      const held = await holdRounds(ctx);
      const round = await drivenRound(ctx, d);
      const open = stream.inFlight().map((r) => r.id);
      const killedAt = Date.now();
      await d.killReplica(round.replica);
      ctx.note(`killed ${round.replica}, driving ${round.id} (lease token ${round.token}); ${open.length} in flight`);
      await takenOver(ctx, d, round, killedAt);
      await releaseRounds(ctx, held);
      await stream.waitFor(4);
      await d.startReplica(round.replica);
      await stream.waitFor(2);
      for (const id of open) {
        const v = await stream.client.proposal(id);
        if (v.status !== 'submitted') ctx.violation(`proposal ${id}, in flight at the kill, ended '${v.status}'`);
      }
    },
  },
  {
    name: 'kill -9 PostgreSQL under load, then start it: 503 with a registered code meanwhile, nothing lost',
    async run(ctx) {
      const d = ctx.d as ReplicatedClusterDriver;
      const { stream } = ctx;
      await stream.waitFor(3);
      await until(() => stream.inFlight().length > 0, 'a proposal in flight');
      const open = stream.inFlight().map((r) => r.id);
      await d.killDatabase();
      ctx.note(`${open.length} proposals in flight when PostgreSQL died`);
      const seen = new Set<string>();
      for (const r of d.replicas) seen.add(await askReplica(d, r, '/v1/proposals?limit=1'));
      for (const answer of seen) {
        if (!answer.startsWith('503 COORD_STORE_UNAVAILABLE'))
          ctx.violation(
            `a replica answered '${answer}' while the database was down (want 503 COORD_STORE_UNAVAILABLE)`,
          );
      }
      await sleep(2000);
      await d.startDatabase();
      await stream.waitFor(5);
      for (const id of open) {
        const v = await stream.client.proposal(id);
        if (v.status !== 'submitted') ctx.violation(`proposal ${id}, in flight at the crash, ended '${v.status}'`);
      }
    },
  },
  {
    name: 'partition one replica from PostgreSQL (network disconnect), then reconnect it',
    async run(ctx) {
      const d = ctx.d as ReplicatedClusterDriver;
      const { stream } = ctx;
      await stream.waitFor(2);
      const held = await holdRounds(ctx);
      const round = await drivenRound(ctx, d);
      const cutAt = Date.now();
      await d.partitionFromDatabase(round.replica);
      ctx.note(`cut ${round.replica} (driving ${round.id}) from PostgreSQL`);
      // The cut replica can no longer renew its lease: the other takes the round over once it expires.
      await takenOver(ctx, d, round, cutAt);
      const answer = await askReplica(d, round.replica, '/v1/proposals?limit=1');
      if (!answer.startsWith('503 COORD_STORE_UNAVAILABLE'))
        ctx.violation(`${round.replica}, cut from the database, answered '${answer}'`);
      await releaseRounds(ctx, held);
      // The rest of the cluster carries on through the balancer while the replica is cut off.
      await stream.waitFor(4);
      let status = '';
      await until(
        async () => {
          status = (await stream.client.proposal(round.id)).status;
          return TERMINAL.includes(status);
        },
        `${round.id}, driven by the cut replica, to end`,
        90_000,
      ).catch((e: unknown) => ctx.violation((e as Error).message));
      if (status !== 'submitted') ctx.violation(`${round.id}, driven by the cut replica, ended '${status}'`);
      await d.healDatabase(round.replica);
      await until(
        async () => (await askReplica(d, round.replica, '/readyz')) === '200',
        `${round.replica} ready again`,
        60_000,
      );
      await stream.waitFor(2);
    },
  },
];

/** Put every fault of a scenario back (idempotent), so one failed scenario does not poison the next. */
export async function restoreAll(d: ClusterDriver): Promise<void> {
  if (isReplicated(d)) {
    await d.startDatabase();
    for (const r of d.replicas) await d.healDatabase(r);
  }
  await d.startLedger();
  await d.startCoordinator();
  for (const id of d.nodeIds) {
    await d.heal(id);
    await d.resume(id);
    await d.startKms(id);
    if (d.throttleKms) await d.throttleKms(id, false);
  }
  for (const id of d.nodeIds) await d.start(id);
}

/** Run one scenario under a fresh stream, then stop the stream and check every invariant. */
export async function runScenario(
  d: ClusterDriver,
  sc: Scenario,
  opts: StreamOptions & { slotGraceSeconds?: number } = {},
): Promise<ScenarioReport> {
  const stream = new ProposalStream(d, opts);
  const notes: string[] = [];
  const violations: string[] = [];
  await stream.start();
  try {
    await sc.run({ d, stream, note: (l) => notes.push(l), violation: (l) => violations.push(l) });
  } catch (e) {
    violations.push(`scenario stopped: ${(e as Error).message}`);
  } finally {
    await restoreAll(d);
  }
  const records = await stream.stop();
  violations.push(...stream.errors.map((e) => `stream: ${e}`));
  const inv = await checkInvariants(d, records, { slotGraceSeconds: opts.slotGraceSeconds });
  violations.push(...inv.violations, ...notSubmitted(records));
  if (isReplicated(d)) {
    // Completed once: one terminal event per proposal, whichever replica drove or took over its round.
    const ends = await d.terminalEvents();
    for (const r of records) {
      const n = ends.get(r.id) ?? 0;
      if (n > 1) violations.push(`proposal ${r.id} completed ${n} times (terminal events in the database)`);
    }
  }
  return { ...inv, violations, name: sc.name, notes, records };
}

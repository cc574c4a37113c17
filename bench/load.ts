/**
 * The client side and the measuring loop of the cluster benches (bench/cluster.bench.ts, bench/frost-cluster.bench.ts,
 * bench/store.bench.ts): one keep-alive HTTP client that proposes and learns of each completion from the client event
 * stream (/v1/events), and one throughput loop that keeps `concurrency` proposals in flight over a warm-up and a
 * measured window.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import WebSocket from 'ws';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The events that end a proposal without the awaited completion. */
const FAILED = ['proposal.rejected', 'proposal.failed', 'proposal.expired', 'proposal.cancelled'];

/**
 * Keep-alive HTTP for proposals, one event-stream socket per coordinator for completions. With several coordinators
 * (replicas on one database) the proposals go to each in turn, as a load balancer without affinity would send them,
 * and a completion counts from whichever replica reports it first.
 */
export class ProposalClient {
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 256 });
  readonly #urls: URL[];
  readonly #apiKey: string;
  readonly #sockets: WebSocket[] = [];
  #turn = 0;
  /** proposal id -> resolver, for proposals whose completion is awaited. */
  readonly #waiting = new Map<string, { done: (at: number) => void; fail: (e: Error) => void }>();
  /** Completions that arrived before the POST answered (the event can beat the HTTP response). */
  readonly #early = new Map<string, number | Error>();
  #completion = 'quorum.reached';
  /**
   * When set, the arrival of every `node.approved` event is kept per proposal and `propose` returns them: the c=1
   * breakdown of where a proposal's time goes (POST answered, each approval, the completion).
   */
  traceApprovals = false;
  readonly #approvals = new Map<string, number[]>();

  /** `coordinators`: the base URL of each coordinator; `apiKey`: the key every request carries. */
  constructor(coordinators: readonly string[], apiKey: string) {
    this.#urls = coordinators.map((u) => new URL(u));
    this.#apiKey = apiKey;
  }

  async open(): Promise<void> {
    for (const url of this.#urls) this.#sockets.push(await this.#listen(url));
  }

  async #listen(url: URL): Promise<WebSocket> {
    const ws = new WebSocket(new URL('/v1/events', url), { headers: { authorization: `Bearer ${this.#apiKey}` } });
    await new Promise<void>((res, rej) => {
      ws.once('open', () => res());
      ws.once('error', rej);
    });
    ws.on('message', (data: Buffer) => {
      const at = performance.now();
      const e = JSON.parse(data.toString()) as { proposalId: string | null; type: string; data: unknown };
      if (e.proposalId === null) return;
      if (this.traceApprovals && e.type === 'node.approved') {
        const seen = this.#approvals.get(e.proposalId);
        if (seen) seen.push(at);
        else this.#approvals.set(e.proposalId, [at]);
      }
      let outcome: number | Error | undefined;
      if (e.type === this.#completion) outcome = at;
      else if (FAILED.includes(e.type)) {
        outcome = new Error(`proposal ${e.proposalId} ended ${e.type}: ${JSON.stringify(e.data)}`);
      }
      if (outcome === undefined) return;
      const w = this.#waiting.get(e.proposalId);
      if (!w) {
        if (!this.#early.has(e.proposalId)) this.#early.set(e.proposalId, outcome);
        return;
      }
      this.#waiting.delete(e.proposalId);
      if (typeof outcome === 'number') w.done(outcome);
      else w.fail(outcome);
    });
    return ws;
  }

  /** Which event ends a proposal for this phase: `quorum.reached` (signed) or `proposal.submitted`. */
  set completion(type: 'quorum.reached' | 'proposal.submitted') {
    this.#completion = type;
  }

  /**
   * Open `n` keep-alive connections before a throughput phase (one GET /healthz each, at once), so the phase
   * measures the steady state of n clients. A burst of new connections while the cluster is loaded is answered
   * slowly (bench/README.md, "the c=64 tail"): without this, the first burst made the whole p99 of the phase.
   */
  async warm(n: number): Promise<void> {
    await Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          new Promise<void>((res, rej) => {
            const url = this.#urls[i % this.#urls.length]!;
            const req = request(
              { host: url.hostname, port: url.port, path: '/healthz', method: 'GET', agent: this.#agent },
              (r) => {
                r.resume();
                r.on('end', () => res());
              },
            );
            req.on('error', rej);
            req.end();
          }),
      ),
    );
  }

  #post(url: URL, body: string): Promise<{ status: number; text: string }> {
    return new Promise((res, rej) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: '/v1/proposals',
          method: 'POST',
          agent: this.#agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            authorization: `Bearer ${this.#apiKey}`,
          },
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => res({ status: r.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        },
      );
      req.on('error', rej);
      req.end(body);
    });
  }

  /**
   * Propose (signed by the FROST `group` when given) and wait for the completion event; returns
   * [ms until the POST answered, ms until completion, ms until each approval arrived (with `traceApprovals`)].
   */
  async propose(
    xdr: string,
    opts: { submit?: boolean; group?: string | undefined } = {},
  ): Promise<[number, number, number[]]> {
    const url = this.#urls[this.#turn++ % this.#urls.length]!;
    const t0 = performance.now();
    const r = await this.#post(
      url,
      JSON.stringify({
        xdr,
        submit: opts.submit ?? false,
        idempotencyKey: `bench-${randomBytes(12).toString('hex')}`,
        ...(opts.group ? { group: opts.group } : {}),
      }),
    );
    const accepted = performance.now();
    if (r.status !== 201) throw new Error(`POST ${url.origin}/v1/proposals answered ${r.status}: ${r.text}`);
    const id = (JSON.parse(r.text) as { id: string }).id;
    const early = this.#early.get(id);
    let doneAt: number;
    if (early !== undefined) {
      this.#early.delete(id);
      if (early instanceof Error) throw early;
      doneAt = early;
    } else {
      doneAt = await new Promise<number>((done, fail) => {
        this.#waiting.set(id, { done, fail });
      });
    }
    const approvals = this.#approvals.get(id) ?? [];
    this.#approvals.delete(id);
    return [accepted - t0, doneAt - t0, approvals.map((a) => a - t0)];
  }

  close(): void {
    for (const ws of this.#sockets) ws.close();
    this.#agent.destroy();
  }
}

/** The transactions of `pool` one after another; running out is an error of the bench's sizing, said so. */
export function drawFrom(pool: readonly string[]): () => string {
  let next = 0;
  return () => {
    const xdr = pool[next++];
    if (xdr === undefined) throw new Error(`the pool of ${pool.length} transactions ran out: raise it`);
    return xdr;
  };
}

/** What one throughput window measured. */
export interface WindowRun<S> {
  /** Proposals that completed inside the window, and for each the ms to completion and to the POST's answer. */
  completed: number;
  latencies: number[];
  posted: number[];
  /** The window's length as it happened (timers fire late on a loaded machine). */
  windowMs: number;
  /** `sample()` at the window's start and at its end (CPU counters, audit-log counts, ...). */
  before: S;
  after: S;
}

/**
 * The throughput loop: `concurrency` clients each propose (`propose()`, which returns [answered ms, done ms]) one
 * after another; after `warmupMs` the window opens with `sample()`, after `windowMs` more it closes with `sample()`
 * again, and the loops stop. A proposal counts for the window when it completed between the two samples, so the
 * counters and the count cover the same span.
 *
 * With `ratePerSecond` the load is open-loop instead: proposals start on a fixed schedule (one every 1000 / rate
 * ms, taken by whichever client is free), so two clusters can be compared at the same rate. CPU per proposal falls
 * as the rate rises (commits and socket writes are shared by more proposals), so a comparison between runs at
 * different rates shows the batching as much as the code. The rate holds while fewer than `concurrency` are in
 * flight; a cluster that cannot keep up shows it as a completed count below rate x window.
 */
export async function measureWindow<S>(opts: {
  concurrency: number;
  warmupMs: number;
  windowMs: number;
  ratePerSecond?: number | undefined;
  propose: () => Promise<readonly [number, number, ...unknown[]]>;
  sample: () => S;
}): Promise<WindowRun<S>> {
  let stop = false;
  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  const latencies: number[] = [];
  const posted: number[] = [];
  const interval = opts.ratePerSecond ? 1000 / opts.ratePerSecond : 0;
  const begin = performance.now();
  let slot = 0;
  const loops = Array.from({ length: opts.concurrency }, async () => {
    while (!stop) {
      if (interval > 0) {
        const due = begin + slot++ * interval;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        if (stop) break;
      }
      const t0 = performance.now();
      const [answered, done] = await opts.propose();
      const at = t0 + done;
      if (at >= windowStart && at < windowEnd) {
        latencies.push(done);
        posted.push(answered);
      }
    }
  });
  // A loop that throws ends the run now, not after the window, and stops the other loops.
  const failed = Promise.all(loops).then(
    () => undefined,
    (e: unknown) => {
      stop = true;
      throw e;
    },
  );
  const wait = (ms: number) => Promise.race([sleep(ms), failed]);
  await wait(opts.warmupMs);
  const before = opts.sample();
  windowStart = performance.now();
  await wait(opts.windowMs);
  const after = opts.sample();
  windowEnd = performance.now();
  stop = true;
  await failed;
  return { completed: latencies.length, latencies, posted, windowMs: windowEnd - windowStart, before, after };
}

import { createServer as httpServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, createConnection, createServer, type Socket } from 'node:net';

/**
 * Fault-injecting proxies for the process backend. This kernel has no netem and the node processes share one
 * network namespace (KEYS-AND-CLUSTER-NOTES.md "Containers and chaos"), so a partition between one node and the
 * coordinator is made in the harness: every node dials the coordinator through its own TcpProxy.
 */

/** Wait for a listening server's address. */
async function listen(server: Server | ReturnType<typeof createServer>): Promise<number> {
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', rej);
      res();
    });
  });
  return (server.address() as AddressInfo).port;
}

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
}

/**
 * A TCP proxy to one target that can be cut silently. `cut()` stops reading from both sides of every connection
 * and holds new connections without dialling the target: bytes stay in the kernel's buffers, nothing is dropped,
 * and no RST or FIN reaches either peer, exactly what a partition looks like to TCP (the peers only learn of it
 * through their own timeouts). A close seen during the cut is passed on only after `heal()`. `heal()` resumes
 * every connection: whatever was queued flows, as TCP retransmission would deliver it.
 */
export class TcpProxy {
  readonly #server = createServer((client) => this.#accept(client));
  readonly #pairs = new Set<Pair>();
  #deferred: (() => void)[] = [];
  #cut = false;
  #port = 0;

  private constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const p = new TcpProxy(target.host, target.port);
    p.#port = await listen(p.#server);
    return p;
  }

  get port(): number {
    return this.#port;
  }

  get isCut(): boolean {
    return this.#cut;
  }

  /** Connections currently open through the proxy. */
  get connections(): number {
    return this.#pairs.size;
  }

  cut(): void {
    this.#cut = true;
    for (const p of this.#pairs) {
      p.client.pause();
      p.upstream?.pause();
    }
  }

  heal(): void {
    if (!this.#cut) return;
    this.#cut = false;
    for (const p of this.#pairs) {
      if (p.upstream) {
        p.client.resume();
        p.upstream.resume();
      } else {
        this.#dial(p);
      }
    }
    const deferred = this.#deferred;
    this.#deferred = [];
    for (const f of deferred) f();
  }

  async close(): Promise<void> {
    for (const p of this.#pairs) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    this.#pairs.clear();
    await new Promise<void>((res) => this.#server.close(() => res()));
  }

  #accept(client: Socket): void {
    const pair: Pair = { client, upstream: undefined };
    this.#pairs.add(pair);
    client.on('error', () => {});
    client.once('close', () => this.#later(() => this.#drop(pair)));
    if (this.#cut) client.pause();
    else this.#dial(pair);
  }

  #dial(pair: Pair): void {
    if (pair.client.destroyed) return;
    const upstream = createConnection({ host: this.targetHost, port: this.targetPort });
    pair.upstream = upstream;
    upstream.on('error', () => {});
    upstream.once('close', () => this.#later(() => this.#drop(pair)));
    this.#forward(pair.client, upstream);
    this.#forward(upstream, pair.client);
    if (this.#cut) {
      pair.client.pause();
      upstream.pause();
    } else {
      // A connection held during a cut was paused explicitly; a new 'data' listener does not resume it.
      pair.client.resume();
    }
  }

  /** Copy `from` to `to` with backpressure; never resumes a side while the proxy is cut. */
  #forward(from: Socket, to: Socket): void {
    from.on('data', (d: Buffer) => {
      if (!to.write(d)) from.pause();
    });
    to.on('drain', () => {
      if (!this.#cut) from.resume();
    });
    // A FIN read during the cut (the socket may still read EOF while paused) is held like any other byte.
    from.once('end', () => this.#later(() => to.end()));
  }

  /** Run now, or after `heal()` while cut (a peer must not learn of a close across a partition). */
  #later(f: () => void): void {
    if (this.#cut) this.#deferred.push(f);
    else f();
  }

  #drop(pair: Pair): void {
    pair.client.destroy();
    pair.upstream?.destroy();
    this.#pairs.delete(pair);
  }
}

/**
 * An HTTP proxy in front of one KMS emulator that can throttle: while on, every request is delayed and every
 * other one answered as AWS KMS answers a request over its rate (HTTP 400, `ThrottlingException`, which the
 * SDK's standard retry strategy retries with backoff: KEYS-AND-CLUSTER-NOTES.md "The KMS wire protocol").
 * Requests pass unchanged otherwise, Host header included, so the emulator's SigV4 check still holds.
 */
export class KmsProxy {
  readonly #server = httpServer((req, res) => void this.#handle(req, res));
  #throttled = false;
  #count = 0;
  #port = 0;
  /** Requests answered with ThrottlingException so far. */
  throttledRequests = 0;

  private constructor(private readonly target: URL) {}

  static async start(targetUrl: string, opts: { delayMs?: number } = {}): Promise<KmsProxy> {
    const p = new KmsProxy(new URL(targetUrl));
    p.delayMs = opts.delayMs ?? 150;
    p.#port = await listen(p.#server);
    return p;
  }

  delayMs = 150;

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  throttle(on: boolean): void {
    this.#throttled = on;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((res) => this.#server.close(() => res()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.#throttled) {
      await new Promise((r) => setTimeout(r, this.delayMs));
      this.#count += 1;
      if (this.#count % 2 === 1) {
        this.throttledRequests += 1;
        req.resume();
        res.writeHead(400, {
          'content-type': 'application/x-amz-json-1.1',
          'x-amzn-requestid': `throttle-${this.#count}`,
        });
        res.end(JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' }));
        return;
      }
    }
    const up = request(
      {
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => {
      // The emulator is down (a KMS outage scenario): the client sees its connection dropped, as it would see a
      // refused one without the proxy.
      res.destroy();
    });
    req.pipe(up);
  }
}

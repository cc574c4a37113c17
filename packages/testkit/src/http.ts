import { request } from 'node:http';

/**
 * One HTTP request over a real socket with exactly the headers given, Host included: fetch (undici) does not
 * let a caller choose Host, and the DNS-rebinding tests need to send the Host a browser would send for an
 * attacker's name. No keep-alive, so nothing is left open when the test closes its server.
 */
export function rawRequest(
  url: string,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(opts.path, url),
      {
        method: opts.method ?? 'GET',
        agent: false,
        headers: {
          connection: 'close',
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A call to the coordinator's HTTP API: the status and the parsed JSON body. */
export type CoordinatorApi = (
  method: string,
  path: string,
  body?: unknown,
) => Promise<{ status: number; body: unknown }>;

/** The coordinator's API with the cluster's admin key (`authorization: Bearer`), JSON in and out. */
export function coordinatorApi(cluster: { coordinator: { url: string }; apiKey: string }): CoordinatorApi {
  return async (method, path, body) => {
    const r = await fetch(`${cluster.coordinator.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${cluster.apiKey}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as unknown };
  };
}

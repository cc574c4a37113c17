import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCosigner } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TestNode, waitFor } from '../helpers.ts';
import { api, useProcessEnv } from './processes.ts';

/**
 * The `cosigner coordinator` process on a real PostgreSQL server (config `store: {type: postgres}`), with the real
 * ledger simulator and test-double nodes over real sockets: nodes enrolled and an API key created by the CLI
 * against the configured store, a proposal signed and submitted, then the database stopped (a crash) and started:
 * 503 COORD_STORE_UNAVAILABLE meanwhile, service back by itself, nothing acknowledged lost.
 */
const NETWORK = 'Coordinator PostgreSQL Process Test ; 2026';
const env = useProcessEnv(NETWORK);

describe('coordinator process on PostgreSQL', () => {
  it('CLI enrols and creates a key in the configured database; a payment is signed and submitted; PostgreSQL down: 503, then back by itself', async () => {
    const nodes = ['approve', 'approve', 'silent'].map(
      (b, i) => new TestNode(`node-${i}`, b as 'approve' | 'silent', { network: NETWORK }),
    );
    const { db: pg, server, sim } = env;
    const dir = await env.dir('coord-pg-proc-');
    const database = await pg.createDatabase('coordinator');
    await writeFile(join(dir, 'db.password'), `${pg.password}\n`, { mode: 0o600 });
    const configFile = join(dir, 'coordinator.yaml');
    await writeFile(
      configFile,
      stringify({
        network: NETWORK,
        dataDir: join(dir, 'data'),
        // The password from a file next to the config (resolved against it), TLS off on loopback.
        store: {
          type: 'postgres',
          url: database,
          passwordFile: 'db.password',
          tls: { mode: 'disable' },
          connectTimeoutMs: 1000,
        },
        round: { submitBackoffMs: 50 },
      }),
    );
    // Enrolment and a client key through the CLI, into PostgreSQL (no SQLite file is made).
    for (const n of nodes) {
      const e = n.enrolment();
      const r = await runCosigner([
        'coordinator',
        'enroll',
        '--config',
        configFile,
        '--node-id',
        e.id,
        '--identity-key',
        e.identityKey,
        '--stellar-key',
        e.stellarKey,
      ]);
      expect(r.code, r.out).toBe(0);
    }
    const created = await runCosigner([
      'coordinator',
      'api-key',
      'create',
      '--config',
      configFile,
      '--scopes',
      'propose,read',
    ]);
    expect(created.code, created.out).toBe(0);
    const key = (JSON.parse(created.out.trim().split('\n').at(-1)!) as { key: string }).key;

    const master = await env.multisigAccount(nodes.map((n) => n.stellarKey));
    const dest = Keypair.random();
    await env.fund(dest);
    const proc = await env.start(['coordinator', '--config', configFile, '--horizon-url', sim.url]);
    const messageKey = Buffer.from(String(proc.ready.messageKey), 'base64');
    for (const n of nodes) expect(await n.connect(proc.url, messageKey)).toBe('welcome');
    await expect(readFile(join(dir, 'data', 'coordinator.db'))).rejects.toMatchObject({ code: 'ENOENT' });

    const submitted = async (amount: string, idempotencyKey: string): Promise<Record<string, unknown>> => {
      const xdr = await env.paymentXdr(master.publicKey(), dest.publicKey(), amount);
      const res = await api(proc.url, key, '/v1/proposals', { xdr, submit: true, idempotencyKey });
      expect(res.status, JSON.stringify(res.json)).toBe(201);
      return waitFor(async () => {
        const p = (await api(proc.url, key, `/v1/proposals/${res.json.id}`)).json;
        return p.status === 'submitted' || p.status === 'failed' ? p : undefined;
      }, 'submission');
    };
    const first = await submitted('7', 'pg-1');
    expect(first.status).toBe('submitted');
    expect((await server.transactions().transaction(String(first.hash)).call()).successful).toBe(true);

    // PostgreSQL crashes: every call that needs the database answers 503 with the registered code.
    await pg.stop('immediate');
    const down = await api(proc.url, key, `/v1/proposals/${first.id}`);
    expect(down.status).toBe(503);
    expect(down.json.code).toBe('COORD_STORE_UNAVAILABLE');
    const refused = await api(proc.url, key, '/v1/proposals', {
      xdr: await env.paymentXdr(master.publicKey(), dest.publicKey(), '1'),
      submit: true,
    });
    expect(refused.status).toBe(503);
    expect(refused.json.code).toBe('COORD_STORE_UNAVAILABLE');
    const ready = await fetch(`${proc.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: { database: boolean } }).checks.database).toBe(false);
    expect(proc.proc.exitCode).toBeNull();

    // Back: the same process serves again without a restart; what was acknowledged is there.
    await pg.start();
    const back = await waitFor(async () => {
      const r = await api(proc.url, key, `/v1/proposals/${first.id}`);
      return r.status === 200 ? r.json : undefined;
    }, 'service back after PostgreSQL restarted');
    expect(back.status).toBe('submitted');
    const second = await submitted('2', 'pg-2');
    expect(second.status).toBe('submitted');
    for (const n of nodes) n.close();
  }, 180_000);
});

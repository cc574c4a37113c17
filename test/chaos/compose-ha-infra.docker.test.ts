import { join } from 'node:path';
import { REPO_ROOT } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from './backends/compose.ts';

/**
 * The infrastructure of docker-compose.ha.yml, on its own: the setup service, PostgreSQL (image cosigner-pg:local)
 * and haproxy (cosigner-lb:local), without the coordinator replicas (the chaos suite of the whole HA stack is
 * compose-ha.docker.test.ts). What is checked is what the compose file promises an operator:
 * - the database password exists only in its volume (0600), in no container's environment and not in the
 *   rendered compose file;
 * - PostgreSQL admits the coordinators' role only over TLS, with that password, and presents a certificate the
 *   coordinators can verify by name (verify-full against the certificate put beside the password); no superuser and
 *   no plain-text connection over the network; it keeps its data across a crash (SIGKILL) and restart;
 * - haproxy answers on the published port and, with no replica alive, says so itself (503).
 * Runs with COSIGNER_DOCKER_SUITES=1 after .ci/docker.sh (the three images).
 */
const FILE = join(REPO_ROOT, 'docker-compose.ha.yml');
const project = `cosigner-ha-infra-${process.pid}`;
const lbPort = 20_000 + (process.pid % 20_000);
const env: NodeJS.ProcessEnv = {
  ...process.env,
  COSIGNER_COORDINATOR_PORT: String(lbPort),
  COSIGNER_COORDINATOR_1_PORT: String(lbPort + 1),
  COSIGNER_COORDINATOR_2_PORT: String(lbPort + 2),
  COSIGNER_LEDGER_PORT: String(lbPort + 3),
  COSIGNER_LEDGER_CLOSE_MS: '200',
};
const compose = (args: string[], timeoutMs = 240_000) =>
  run('docker-compose', ['-f', FILE, '-p', project, ...args], { env, timeoutMs });
const docker = (args: string[], timeoutMs = 60_000) => run('docker', args, { timeoutMs });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A psql client container on the database network, with the pg-secrets volume read-only at /s. */
const client = (script: string) =>
  docker([
    'run',
    '--rm',
    '--network',
    `${project}_db`,
    '-v',
    `${project}_pg-secrets:/s:ro`,
    '--user',
    '1000:1000',
    '--read-only',
    process.env.COSIGNER_PG_IMAGE ?? 'cosigner-pg:local',
    'sh',
    '-c',
    script,
  ]);
/** Connect as the coordinators do; prints the query's result or psql's error (exit status ignored). */
const connect = (settings: string, query: string) =>
  client(`${settings} psql -X -q -A -t -h postgres -U cosigner_coordinator -d cosigner -c "${query}" 2>&1 || true`);
const PW = 'PGPASSWORD=$(cat /s/password)';

describe('compose HA infrastructure: PostgreSQL and haproxy', () => {
  beforeAll(async () => {
    await compose(['down', '-v', '-t', '1']).catch(() => '');
    await compose(['up', '-d', '--no-build', 'postgres', 'lb']);
    const deadline = Date.now() + 180_000;
    for (;;) {
      const ps = await compose(['ps']);
      if (/_postgres_1 .*\(healthy\)/.test(ps) && /_lb_1 .*\(healthy\)/.test(ps)) break;
      if (Date.now() > deadline) throw new Error(`postgres and lb not healthy in 180 s:\n${ps}`);
      await sleep(1000);
    }
  }, 300_000);

  afterAll(async () => {
    await compose(['down', '-v', '-t', '2'], 120_000);
  }, 150_000);

  it('validates as a compose file', async () => {
    await compose(['config', '-q'], 30_000);
  });

  it('keeps the database password in its volume only: 0600, in no environment, not in the compose file', async () => {
    const listing = await client('stat -c "%a %u %s" /s/password; cat /s/password');
    const [meta, password] = listing.trim().split('\n') as [string, string];
    expect(meta).toMatch(/^600 1000 \d+$/);
    expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await compose(['config'], 30_000)).not.toContain(password);
    const ids = (await compose(['ps', '-q', '-a'])).trim().split('\n');
    expect(ids.length).toBeGreaterThanOrEqual(6);
    for (const id of ids) {
      const seen = await docker(['inspect', '-f', '{{json .Config.Env}} {{json .Args}} {{json .Config.Cmd}}', id]);
      expect(seen).not.toContain(password);
    }
  }, 60_000);

  it('admits the coordinator role over verified TLS with the password, and nothing else over the network', async () => {
    const verified = 'PGSSLMODE=verify-full PGSSLROOTCERT=/s/server.crt';
    expect(
      (
        await connect(
          `${PW} ${verified}`,
          'SELECT current_user, ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE pid = pg_backend_pid()',
        )
      ).trim(),
    ).toBe('cosigner_coordinator|t');
    // The database belongs to the role: it can create the schema it migrates.
    expect((await connect(`${PW} ${verified}`, 'CREATE TABLE t (x int); DROP TABLE t; SELECT 1')).trim()).toBe('1');
    expect(await connect(`PGPASSWORD=wrong-password ${verified}`, 'SELECT 1')).toMatch(
      /password authentication failed for user "cosigner_coordinator"/,
    );
    expect(await connect(`${PW} PGSSLMODE=disable`, 'SELECT 1')).toMatch(/no pg_hba.conf entry .* no encryption/);
    const asSuperuser = await client(
      `${PW} PGSSLMODE=require psql -X -h postgres -U postgres -d postgres -c "SELECT 1" 2>&1 || true`,
    );
    expect(asSuperuser).toMatch(/no pg_hba.conf entry for host .* user "postgres"/);
    // verify-full checks the name: the same server reached by its address is refused.
    const ip = (
      await docker([
        'inspect',
        '-f',
        '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}',
        (await compose(['ps', '-q', 'postgres'])).trim(),
      ])
    ).trim();
    const byAddress = await client(
      `${PW} ${verified} psql -X -h ${ip} -U cosigner_coordinator -d cosigner -c "SELECT 1" 2>&1 || true`,
    );
    expect(byAddress).toMatch(/server certificate for "postgres" .*does not match host name/);
  }, 90_000);

  it('keeps its data across a crash (SIGKILL) and a restart', async () => {
    const verified = `${PW} PGSSLMODE=verify-full PGSSLROOTCERT=/s/server.crt`;
    await connect(verified, 'CREATE TABLE survives (x int); INSERT INTO survives VALUES (42)');
    const id = (await compose(['ps', '-q', 'postgres'])).trim();
    await docker(['kill', id]);
    await docker(['start', id]);
    const deadline = Date.now() + 60_000;
    let out = '';
    while (Date.now() < deadline) {
      out = (await connect(verified, 'SELECT x FROM survives')).trim();
      if (out === '42') break;
      await sleep(500);
    }
    expect(out).toBe('42');
  }, 120_000);

  it('haproxy answers on the published port; with no replica alive it answers 503 itself', async () => {
    const res = await fetch(`http://127.0.0.1:${lbPort}/v1/proposals`, { signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(503);
    expect(await res.text()).toMatch(/No server is available/);
  }, 30_000);
});

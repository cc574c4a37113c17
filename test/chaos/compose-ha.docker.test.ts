import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComposeDriver, run, startComposeDriver } from './backends/compose.ts';
import type { ReplicatedClusterDriver } from './driver.ts';
import { runScenario, scenarios } from './scenarios.ts';

/**
 * The chaos suite against docker-compose.ha.yml: two coordinator replicas on PostgreSQL behind haproxy, nodes with
 * a session to each replica, every proposal of the stream sent through the balancer. Here: each replica serves the
 * one database and sees every node, the balancer rides out a replica's death, and the single-coordinator scenarios
 * whose meaning changes with replicas (a node killed must come back to both replicas; every replica killed at once).
 * Invariants as in compose.docker.test.ts plus: no proposal completed twice (one terminal event each in the
 * database). Runs with COSIGNER_DOCKER_SUITES=1 after .ci/docker.sh.
 *
 * The replica scenarios proper (scenarios.ts replicaScenarios: kill the replica driving a round, kill PostgreSQL,
 * cut one replica from PostgreSQL) need the coordinator's round leases and takeover between replicas; they are run
 * by compose-ha-replicas.pending.ts, which is not a suite yet (see its header).
 */
describe('chaos, docker compose backend, two coordinator replicas on PostgreSQL', () => {
  let driver: ComposeDriver & ReplicatedClusterDriver;

  beforeAll(async () => {
    driver = await startComposeDriver({ ha: true, onStep: (l) => console.log(`compose-ha: ${l}`) });
  }, 300_000);

  afterAll(async () => {
    await driver?.close();
  }, 120_000);

  it('every replica serves the one state and sees every node; the balancer keeps answering while one is killed', async () => {
    const apiKey = driver.apiKey();
    const ask = async (): Promise<number> => {
      try {
        const res = await fetch(`${driver.coordinatorUrl()}/v1/proposals?limit=1`, {
          headers: { authorization: `Bearer ${apiKey}` },
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        return res.status;
      } catch {
        return 0;
      }
    };
    // Every replica answers on its own port and reads the same database.
    for (const r of driver.replicas) {
      const res = await fetch(`${driver.replicaUrl(r)}/v1/nodes`, { headers: { authorization: `Bearer ${apiKey}` } });
      expect(res.status).toBe(200);
      const { nodes } = (await res.json()) as { nodes: { id: string; connected: boolean }[] };
      // Each node holds a session with this replica too.
      expect(nodes.filter((n) => n.connected).map((n) => n.id)).toEqual(driver.nodeIds);
    }
    const victim = driver.replicas[0]!;
    await driver.killReplica(victim);
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push(await ask());
    await driver.startReplica(victim);
    // Connection failures to the dead replica are retried on the other by haproxy: no request fails.
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  }, 240_000);

  it('serves a client on the compose network at http://lb:8080 (the replicas answer that Host)', async () => {
    // The ledger simulator's container sits on `edge` with haproxy and has node: a stand-in for a client container.
    const status = await driver.exec('ledger', [
      'node',
      '-e',
      "fetch('http://lb:8080/healthz').then(r=>console.log(r.status),e=>console.log('error '+e.message))",
    ]);
    expect(status.trim()).toBe('200');
  }, 60_000);

  it('lets only the replicas reach PostgreSQL', async () => {
    const pgIp = Object.values(
      JSON.parse(
        await run('docker', ['inspect', '-f', '{{json .NetworkSettings.Networks}}', driver.container('postgres')]),
      ) as Record<string, { IPAddress: string }>,
    )[0]!.IPAddress;
    /** From inside a service's container: does a TCP connection to PostgreSQL open within 2 s? */
    const reaches = async (from: string): Promise<boolean> =>
      (
        await driver.exec(from, [
          'node',
          '-e',
          `const s=require('net').connect(5432,'${pgIp}');s.setTimeout(2000);` +
            `s.on('connect',()=>{console.log('open');s.destroy()});s.on('timeout',()=>{console.log('closed');s.destroy()});` +
            `s.on('error',()=>console.log('closed'))`,
        ])
      ).trim() === 'open';
    for (const r of driver.replicas) expect(await reaches(r)).toBe(true);
    for (const other of ['node-0', 'ledger', 'kms-0']) expect(await reaches(other)).toBe(false);
  }, 60_000);

  const chosen = scenarios.filter((s) => /^SIGKILL one of three nodes|^kill -9 the coordinator/.test(s.name));
  for (const sc of chosen) {
    it(sc.name, async () => {
      const report = await runScenario(driver, sc, { lanes: 2 });
      console.log(
        `${sc.name}: ${report.proposals} proposals, ${report.submitted} submitted; ${report.notes.join('; ')}`,
      );
      expect(report.violations).toEqual([]);
      expect(report.submitted).toBeGreaterThan(0);
      expect(report.auditOutput.every((l) => l.includes('audit chain ok'))).toBe(true);
    }, 300_000);
  }
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComposeDriver, run, startComposeDriver } from './backends/compose.ts';
import { runScenario, scenarios } from './scenarios.ts';

/**
 * The chaos scenarios (scenarios.ts, the very ones the process suite runs) against the docker-compose stack:
 * docker-compose.yml as an operator runs it (3 KMS emulators on private networks, the ledger simulator, the
 * setup service, the coordinator and 3 nodes), faults made with docker kill/pause and iptables inside a node's
 * network namespace. Runs with COSIGNER_DOCKER_SUITES=1 after .ci/docker.sh (engine + image cosigner:local).
 * One stack serves every scenario in turn; each ends with every fault undone and every invariant checked.
 */
describe('chaos, docker compose backend', () => {
  let driver: ComposeDriver;

  beforeAll(async () => {
    driver = await startComposeDriver({ onStep: (l) => console.log(`compose: ${l}`) });
  }, 300_000);

  afterAll(async () => {
    await driver?.close();
  }, 120_000);

  /** Connect from inside a service's container to host:port; true when a TCP connection opens within 2 s. */
  const reaches = async (from: string, host: string, port: number): Promise<boolean> => {
    const out = await driver.exec(from, [
      'node',
      '-e',
      `const s=require('net').connect(${port},'${host}');s.setTimeout(2000);` +
        `s.on('connect',()=>{console.log('open');s.destroy()});s.on('timeout',()=>{console.log('closed');s.destroy()});` +
        `s.on('error',()=>console.log('closed'))`,
    ]);
    return out.trim() === 'open';
  };

  it('isolates each node: its coordinator and its own KMS, nothing else; read-only root, non-root user', async () => {
    const ip = async (service: string, networkSuffix: string): Promise<string> => {
      const json = await run('docker', [
        'inspect',
        '-f',
        '{{json .NetworkSettings.Networks}}',
        driver.container(service),
      ]);
      const nets = JSON.parse(json) as Record<string, { IPAddress: string }>;
      const key = Object.keys(nets).find((k) => k.endsWith(networkSuffix));
      if (!key) throw new Error(`${service} is not on a network named *${networkSuffix}`);
      return nets[key]!.IPAddress;
    };
    expect(await reaches('node-0', await ip('coordinator', '_node-0'), 8080)).toBe(true);
    expect(await reaches('node-0', await ip('kms-0', '_kms-0'), 4566)).toBe(true);
    // Another node's KMS, the other nodes' coordinator links, the ledger: no route from node-0.
    expect(await reaches('node-0', await ip('kms-1', '_kms-1'), 4566)).toBe(false);
    expect(await reaches('node-0', await ip('coordinator', '_node-1'), 8080)).toBe(false);
    expect(await reaches('node-0', await ip('ledger', '_edge'), 8000)).toBe(false);
    expect(await reaches('node-0', await ip('node-1', '_node-1'), 7400)).toBe(false);
    expect((await driver.exec('node-0', ['id', '-u'])).trim()).toBe('1000');
    await expect(driver.exec('node-0', ['touch', '/app/written'])).rejects.toThrow(/Read-only file system/);
  }, 60_000);

  for (const sc of scenarios) {
    it(sc.name, async () => {
      const report = await runScenario(driver, sc, { lanes: 2 });
      console.log(
        `${sc.name}: ${report.proposals} proposals, ${report.submitted} submitted; ${report.notes.join('; ')}`,
      );
      expect(report.violations).toEqual([]);
      expect(report.submitted).toBeGreaterThan(0);
      expect(report.auditOutput.every((l) => l.includes('audit chain ok'))).toBe(true);
    }, 240_000);
  }
});

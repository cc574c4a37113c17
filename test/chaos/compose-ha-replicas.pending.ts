import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComposeDriver, startComposeDriver } from './backends/compose.ts';
import type { ReplicatedClusterDriver } from './driver.ts';
import { replicaScenarios, runScenario } from './scenarios.ts';

/**
 * NOT A SUITE YET: no vitest pattern picks this file up, so `pnpm test:docker` and CI do not run it.
 *
 * The replica scenarios (scenarios.ts replicaScenarios) against docker-compose.ha.yml: kill -9 the replica driving
 * a round, kill -9 PostgreSQL under load, cut one replica from PostgreSQL (docker network disconnect); invariants:
 * none lost, none completed twice, every proposal in flight at the fault submitted. They need the coordinator's
 * replica mode: round leases written to `round_leases` (the driver reads the holder from there), fenced writes and
 * the takeover of a dead or cut-off replica's rounds. Until the coordinator has it, they cannot pass: run on a
 * coordinator with the store setting but without leases, "kill -9 PostgreSQL" ended one proposal of the stream
 * 'expired' (its round did not finish after the database returned; twice in two runs) and the other two time out
 * waiting for a lease that no replica takes.
 *
 * Once the coordinator drives rounds under leases: rename this file to compose-ha-replicas.docker.test.ts (it then
 * runs in `pnpm test:docker` and CI) and state its duration in docs/operations/compose.md.
 * To run it meanwhile: copy it to a *.docker.test.ts name and run that with COSIGNER_DOCKER_SUITES=1.
 */
describe('chaos, docker compose backend, replica scenarios', () => {
  let driver: ComposeDriver & ReplicatedClusterDriver;

  beforeAll(async () => {
    driver = await startComposeDriver({ ha: true, onStep: (l) => console.log(`compose-ha: ${l}`) });
  }, 300_000);

  afterAll(async () => {
    await driver?.close();
  }, 120_000);

  for (const sc of replicaScenarios) {
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

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComposeDriver, startComposeDriver } from './backends/compose.ts';
import type { ReplicatedClusterDriver } from './driver.ts';
import { replicaScenarios, runScenario } from './scenarios.ts';

/**
 * The replica scenarios (scenarios.ts replicaScenarios) against docker-compose.ha.yml, every proposal of the stream
 * sent through haproxy: kill -9 the replica driving a round (its round taken over by the other replica with a
 * higher fencing token), kill -9 PostgreSQL under load (each replica answers 503 COORD_STORE_UNAVAILABLE meanwhile),
 * cut one replica from PostgreSQL with `docker network disconnect` (it answers 503, its round ends on the other
 * replica, it is ready again once reconnected). Invariants as in compose.docker.test.ts plus: every proposal in
 * flight at the fault submitted, none completed twice (one terminal event each in the database). The driver reads
 * lease holders and terminal events from PostgreSQL itself. Its own stack (a 3 s lease), apart from
 * compose-ha.docker.test.ts, so a scenario that leaves a slot poisoned cannot fail the other suite. Runs with
 * COSIGNER_DOCKER_SUITES=1 after .ci/docker.sh.
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

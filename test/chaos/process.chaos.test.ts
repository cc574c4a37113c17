import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ProcessDriver, startProcessDriver } from './backends/process.ts';
import { runScenario, scenarios } from './scenarios.ts';

/**
 * The chaos scenarios (scenarios.ts) against a cluster of real processes: 3 KMS emulators, the ledger simulator,
 * the coordinator and 3 nodes (2-of-3), every node dialling the coordinator through a proxy the harness can cut.
 * One cluster serves every scenario in turn (two cores); each scenario ends with every fault undone and every
 * invariant checked, so a later scenario also checks what the earlier ones left behind.
 */
describe('chaos, process backend', () => {
  let driver: ProcessDriver;

  beforeAll(async () => {
    driver = await startProcessDriver();
  }, 180_000);

  afterAll(async () => {
    await driver?.close();
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
    }, 180_000);
  }
});

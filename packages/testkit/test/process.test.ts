import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { randomKeypairs } from '../src/keypairs.ts';
import { COSIGNER_BIN, clusterFlags, startCosignerProcess, tempDir } from '../src/process.ts';

describe('testkit', () => {
  it('points at the cosigner executable', () => {
    expect(COSIGNER_BIN).toMatch(/apps\/cli\/bin\/cosigner\.js$/);
  });

  it("points a lifecycle command at a cluster's Horizon, coordinator and admin key file", () => {
    expect(
      clusterFlags({ horizonUrl: 'http://h', coordinator: { url: 'http://c' }, adminKeyFile: '/k/admin.key' }),
    ).toEqual(['--horizon-url', 'http://h', '--coordinator-url', 'http://c', '--api-key-file', '/k/admin.key']);
  });

  it('reports a process that exits before it is ready, with its output', async () => {
    await expect(startCosignerProcess({ args: ['no-such-command'], readyTimeoutMs: 10_000 })).rejects.toThrow(
      /exited before it was ready/,
    );
  });

  it('starts a real service, reads its ready file, and stops it with SIGTERM or SIGKILL', async () => {
    const dir = await tempDir();
    try {
      const args = ['ledger-sim', '--in-memory', '--data-dir', dir];
      const a = await startCosignerProcess({ args, readyTimeoutMs: 60_000 });
      expect((await fetch(`${a.url}/healthz`)).ok).toBe(true);
      expect(a.ready.pid).toBe(a.pid);
      expect(await a.stop()).toBe(0);
      expect(await a.stop()).toBe(0);
      const b = await startCosignerProcess({ args, readyTimeoutMs: 60_000 });
      await b.kill9();
      expect(await b.exited).toBeNull();
      await b.kill9();
      expect(b.output()).toBeTypeOf('string');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('gives up on a process that is not ready in time, and kills it', async () => {
    await expect(startCosignerProcess({ args: ['ledger-sim', '--in-memory'], readyTimeoutMs: 1 })).rejects.toThrow(
      /was not ready in time/,
    );
  }, 30_000);

  it('makes distinct random keypairs', () => {
    const [a, b] = randomKeypairs(2);
    expect(a!.publicKey()).not.toBe(b!.publicKey());
  });
});

import { describe, expect, it } from 'vitest';
import { randomKeypairs } from '../src/keypairs.ts';
import { COSIGNER_BIN, startCosignerProcess } from '../src/process.ts';

describe('testkit', () => {
  it('points at the cosigner executable', () => {
    expect(COSIGNER_BIN).toMatch(/packages\/cli\/bin\/cosigner\.js$/);
  });

  it('reports a process that exits before it is ready, with its output', async () => {
    await expect(startCosignerProcess({ args: ['no-such-command'], readyTimeoutMs: 10_000 })).rejects.toThrow(
      /exited before it was ready/,
    );
  });

  it('makes distinct random keypairs', () => {
    const [a, b] = randomKeypairs(2);
    expect(a!.publicKey()).not.toBe(b!.publicKey());
  });
});

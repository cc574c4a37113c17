import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  ClusterStartError,
  demoPolicyYaml,
  mergeConfig,
  nodeSocketUrl,
  spawnService,
  startCluster,
  tailFile,
} from '../src/cluster.ts';
import { tempDir } from '../src/process.ts';

// The launcher's pieces that need no running cluster. The whole launcher runs in test/e2e/cluster.test.ts.

const dirs: string[] = [];
async function dir(): Promise<string> {
  const d = await tempDir('cosigner-launcher-');
  dirs.push(d);
  return d;
}

afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('cluster launcher helpers', () => {
  it('tails a log file, and an absent one as empty', async () => {
    const d = await dir();
    const f = join(d, 'x.log');
    expect(tailFile(f)).toBe('');
    await writeFile(f, 'a\nb\nc\nd\n');
    expect(tailFile(f, 2)).toBe('c\nd');
    expect(tailFile(f)).toBe('a\nb\nc\nd');
  });

  it('derives the node dial URL from the coordinator URL', () => {
    expect(nodeSocketUrl('http://127.0.0.1:4100')).toBe('ws://127.0.0.1:4100');
    expect(nodeSocketUrl('https://coord.example:443/')).toBe('wss://coord.example');
    expect(nodeSocketUrl('http://[::1]:80/x')).toBe('ws://[::1]');
  });

  it('merges extra config one level deep, keeping the fields it does not name', () => {
    const base = { network: 'n', limits: { ratePerSecond: 500, rateBurst: 1000 }, nodes: [{ id: 'a' }] };
    const merged = mergeConfig(base, { limits: { nodeFramesPerSecond: 2000 }, logLevel: 'warn', nodes: [] });
    expect(merged).toEqual({
      network: 'n',
      limits: { ratePerSecond: 500, rateBurst: 1000, nodeFramesPerSecond: 2000 },
      nodes: [],
      logLevel: 'warn',
    });
    expect(base.limits).toEqual({ ratePerSecond: 500, rateBurst: 1000 });
    expect(mergeConfig(base)).toEqual(base);
  });

  it('writes a policy whose maximum is the one asked for', () => {
    const doc = parse(demoPolicyYaml({ network: 'Net', account: 'GACCT', maxXlm: '123.5' })) as Record<string, unknown>;
    expect(doc).toMatchObject({ network: 'Net', accounts: ['GACCT'], operations: ['payment'] });
    expect(doc.assets).toEqual([expect.objectContaining({ asset: 'native', maxPerTx: '123.5' })]);
  });

  it('lists every operator account in the policy, the main one first', () => {
    const doc = parse(
      demoPolicyYaml({ network: 'Net', account: 'GA', maxXlm: '1', extraAccounts: ['GB', 'GC'] }),
    ) as Record<string, unknown>;
    expect(doc.accounts).toEqual(['GA', 'GB', 'GC']);
  });

  it('refuses a node count or threshold the account cannot have, before starting anything', async () => {
    const d = await dir();
    await expect(startCluster({ dir: d, nodes: 0 })).rejects.toThrow(/nodes must be 1..20/);
    await expect(startCluster({ dir: d, nodes: 3, threshold: 4 })).rejects.toThrow(/threshold must be 1..3/);
    await expect(startCluster({ dir: d, nodes: 2, threshold: 0 })).rejects.toThrow(/threshold must be 1..2/);
    await expect(startCluster({ dir: d, operatorAccounts: 0 })).rejects.toThrow(/operatorAccounts must be 1..64/);
  });

  it('names a child that exits before it is ready and quotes its last output', async () => {
    const d = await dir();
    const err = await spawnService({ name: 'bogus', args: ['no-such-command'], dir: d, readyTimeoutMs: 30_000 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ClusterStartError);
    const e = err as ClusterStartError;
    expect(e.code).toBe('TESTKIT_CLUSTER_START_FAILED');
    expect(e.child).toBe('bogus');
    expect(e.message).toMatch(/^bogus exited before it was ready/);
    expect(e.message).toMatch(/\|\s+help \[command\]/);
    expect(e.logFile).toBe(join(d, 'logs', 'bogus.log'));
  });

  it('kills a child that is not ready in time', async () => {
    const d = await dir();
    // `--help` of a group command prints and exits 0 quickly, but a 1 ms deadline passes first.
    const err = await spawnService({ name: 'slow', args: ['cluster', '--help'], dir: d, readyTimeoutMs: 1 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ClusterStartError);
    expect((err as Error).message).toMatch(/^slow (was not ready within 1 ms|exited before it was ready)/);
  });

  it('stops a starting child when the start is aborted', async () => {
    const d = await dir();
    const ac = new AbortController();
    ac.abort();
    await expect(
      spawnService({ name: 'x', args: ['cluster', '--help'], dir: d, readyTimeoutMs: 30_000, signal: ac.signal }),
    ).rejects.toThrow(/start of x interrupted|x exited before it was ready/);
    await expect(startCluster({ dir: d, signal: ac.signal })).rejects.toThrow(/interrupted/);
  });
});

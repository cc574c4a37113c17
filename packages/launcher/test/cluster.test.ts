import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  ClusterResumeError,
  ClusterStartError,
  demoPolicyYaml,
  fillPolicy,
  LAUNCHER_STATE_FILE,
  mergeConfig,
  nodeCoordinatorSection,
  nodeSocketUrl,
  readLauncherState,
  spawnService,
  startCluster,
  tailFile,
  writeFileDurably,
} from '../src/cluster.ts';

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

  it("writes a node's coordinator section: url for one coordinator, urls for several replicas", () => {
    expect(nodeCoordinatorSection('ws://127.0.0.1:4100', ['k'])).toEqual({
      url: 'ws://127.0.0.1:4100',
      publicKeys: ['k'],
    });
    expect(nodeCoordinatorSection(['ws://a:1'], ['k'])).toEqual({ url: 'ws://a:1', publicKeys: ['k'] });
    expect(nodeCoordinatorSection(['ws://a:1', 'ws://b:2'], ['k', 'l'])).toEqual({
      urls: ['ws://a:1', 'ws://b:2'],
      publicKeys: ['k', 'l'],
    });
    expect(() => nodeCoordinatorSection([], ['k'])).toThrow(/at least one coordinator URL/);
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

  it('lets the demo policy sign signer changes for roster keys only when asked, never below the threshold', () => {
    const plain = parse(demoPolicyYaml({ network: 'N', account: 'GA', maxXlm: '1' })) as Record<string, unknown>;
    expect(plain.operations).toEqual(['payment']);
    expect(plain.signerChanges).toBeUndefined();
    const doc = parse(
      demoPolicyYaml({
        network: 'N',
        account: 'GA',
        maxXlm: '1',
        extraAccounts: ['GB'],
        signerChanges: { threshold: 2 },
      }),
    ) as Record<string, unknown>;
    expect(doc.operations).toEqual(['payment', 'setOptions']);
    expect(doc.signerChanges).toEqual({
      accounts: ['GA', 'GB'],
      clusterMembers: true,
      maxWeight: 1,
      minThresholds: { low: 2, medium: 2, high: 2 },
    });
  });

  it("fills a policy file's network, accounts and ledger clock, keeping what the file states", () => {
    const clock = { ledger: 500, closedAt: 1_000, closeMs: 200 };
    const doc = parse(fillPolicy('version: 1\noperations: [payment]\n', { network: 'N', accounts: ['GA'], clock }));
    // closedAt one second late: the anchor's whole seconds must not put the node's estimate ahead of the network.
    expect(doc).toEqual({
      version: 1,
      operations: ['payment'],
      network: 'N',
      accounts: ['GA'],
      soroban: { ledgerClock: { ledger: 500, closedAt: 1_001, maxCloseSeconds: 0.2 } },
    });
    const own = parse(
      fillPolicy(
        JSON.stringify({
          network: 'Mine',
          accounts: ['GX'],
          soroban: { maxAuthExpirationLedgers: 50, ledgerClock: { ledger: 1, closedAt: 1, maxCloseSeconds: 1 } },
        }),
        { network: 'N', accounts: ['GA'], clock },
      ),
    );
    expect(own).toEqual({
      network: 'Mine',
      accounts: ['GX'],
      soroban: { maxAuthExpirationLedgers: 50, ledgerClock: { ledger: 500, closedAt: 1_001, maxCloseSeconds: 1 } },
    });
    expect(parse(fillPolicy('accounts: []', { network: 'N', accounts: ['GA'] }))).toEqual({
      accounts: ['GA'],
      network: 'N',
    });
    expect(() => fillPolicy('- a list', { network: 'N', accounts: [] })).toThrow(/must be a YAML mapping/);
  });

  it('reads the launcher state: none in a new directory, a refusal for a cluster it cannot resume', async () => {
    const d = await dir();
    expect(await readLauncherState(d)).toBeUndefined();
    expect(await readLauncherState(join(d, 'absent'))).toBeUndefined();
    const state = {
      version: 1,
      nodes: 3,
      threshold: 2,
      closeMs: 200,
      keys: [],
      accounts: ['GA'],
      ports: { ledger: 1 },
    };
    writeFileDurably(join(d, LAUNCHER_STATE_FILE), JSON.stringify(state));
    expect(await readLauncherState(d)).toEqual(state);
    // Written whole, with no temporary file left behind.
    expect(await readdir(d)).toEqual([LAUNCHER_STATE_FILE]);
    expect(JSON.parse(await readFile(join(d, LAUNCHER_STATE_FILE), 'utf8'))).toEqual(state);

    await writeFile(join(d, LAUNCHER_STATE_FILE), '{"version":1,"keys":');
    const torn = readLauncherState(d);
    await expect(torn).rejects.toBeInstanceOf(ClusterResumeError);
    await expect(torn).rejects.toThrow(
      /is not a launcher state this launcher wrote; start over with `cosigner cluster up --fresh`/,
    );

    // A cluster from before the launcher recorded its state: say so, and how to start over.
    const old = await dir();
    await mkdir(join(old, 'node-0'));
    await expect(readLauncherState(old)).rejects.toThrow(
      `the cluster under ${old} cannot be resumed: it holds a cluster but no launcher.json to resume it from; start over with \`cosigner cluster up --fresh\`, which deletes that directory: its KMS keys, ledger, accounts, coordinator and node histories`,
    );
  });

  it('refuses to resume a cluster with another size than asked for, before starting anything', async () => {
    const d = await dir();
    const state = { version: 1, nodes: 3, threshold: 2, closeMs: 200, keys: [], accounts: [], ports: {} };
    writeFileDurably(join(d, LAUNCHER_STATE_FILE), JSON.stringify(state));
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 4 })).rejects.toThrow(
      /it is a 2-of-3 cluster, not the 2-of-4 cluster asked for \(start it without --nodes and --threshold to resume it\)/,
    );
    // The same size on another layout (fewer signing nodes, shared KMS emulators) is another cluster too.
    await expect(
      startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 3, operatorSigners: 2, kmsEmulators: 1 }),
    ).rejects.toThrow(
      /it is a 2-of-3 cluster, not the 2-of-3 cluster \(2 signing for the operator accounts\) on 1 KMS emulators asked for/,
    );
    expect(await readdir(d)).toEqual([LAUNCHER_STATE_FILE]);
  });

  it('refuses to resume when the ledger lost an account it recorded, and leaves nothing running', async () => {
    const d = await dir();
    const gone = Keypair.random().publicKey();
    // The port the ledger had is taken by another program meanwhile: the ledger takes another one.
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', () => r()));
    const taken = (squatter.address() as AddressInfo).port;
    const state = {
      version: 1,
      nodes: 1,
      threshold: 1,
      closeMs: 200,
      keys: [],
      accounts: [gone],
      ports: { ledger: taken },
    };
    writeFileDurably(join(d, LAUNCHER_STATE_FILE), JSON.stringify(state));
    const steps: string[] = [];
    const err = await startCluster({ cosignerBin: COSIGNER_BIN, dir: d, onStep: (l) => steps.push(l) })
      .catch((e: unknown) => e)
      .finally(() => squatter.close());
    expect(steps).toContain(`ledger: port ${taken} is in use; taking another`);
    expect(steps.find((l) => l.startsWith('ledger ready at'))).not.toContain(`:${taken} `);
    expect(err).toBeInstanceOf(ClusterResumeError);
    expect((err as Error).message).toBe(
      `the cluster under ${d} cannot be resumed: the ledger no longer holds its operator account ${gone}; start over with \`cosigner cluster up --fresh\`, which deletes that directory: its KMS keys, ledger, accounts, coordinator and node histories`,
    );
    // The key it had to create is recorded, so a later start would not create another.
    const after = JSON.parse(await readFile(join(d, LAUNCHER_STATE_FILE), 'utf8')) as { keys: unknown[] };
    expect(after.keys).toHaveLength(1);
    for (const f of await readdir(join(d, 'run'))) {
      const pid = (JSON.parse(await readFile(join(d, 'run', f), 'utf8')) as { pid: number }).pid;
      expect(() => process.kill(pid, 0)).toThrow();
    }
  }, 120_000);

  it('lists every operator account in the policy, the main one first', () => {
    const doc = parse(
      demoPolicyYaml({ network: 'Net', account: 'GA', maxXlm: '1', extraAccounts: ['GB', 'GC'] }),
    ) as Record<string, unknown>;
    expect(doc.accounts).toEqual(['GA', 'GB', 'GC']);
  });

  it('refuses a node count or threshold the account cannot have, before starting anything', async () => {
    const d = await dir();
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 0 })).rejects.toThrow(/nodes must be 1..64/);
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 65 })).rejects.toThrow(/nodes must be 1..64/);
    // More than 20 nodes: the operator account cannot hold them all as signers; the few that sign are named.
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 25 })).rejects.toThrow(
      /operatorSigners must be 1..20 \(a Stellar account holds at most 20 signers\), got 25/,
    );
    await expect(
      startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 25, operatorSigners: 3, threshold: 4 }),
    ).rejects.toThrow(/threshold must be 1..3 \(one weight per signing node\)/);
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 3, operatorSigners: 0 })).rejects.toThrow(
      /operatorSigners must be 1..3/,
    );
    // Shared KMS emulators: at least one, at most one per node, at most 26 nodes' accounts in one emulator.
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 3, kmsEmulators: 0 })).rejects.toThrow(
      /kmsEmulators must be 1..3/,
    );
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 3, kmsEmulators: 4 })).rejects.toThrow(
      /kmsEmulators must be 1..3/,
    );
    await expect(
      startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 27, operatorSigners: 3, kmsEmulators: 1 }),
    ).rejects.toThrow(/at most 26 nodes to an emulator, got 1/);
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 3, threshold: 4 })).rejects.toThrow(
      /threshold must be 1..3/,
    );
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, nodes: 2, threshold: 0 })).rejects.toThrow(
      /threshold must be 1..2/,
    );
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, operatorAccounts: 0 })).rejects.toThrow(
      /operatorAccounts must be 1..64/,
    );
  });

  it('names a child that exits before it is ready and quotes its last output', async () => {
    const d = await dir();
    const err = await spawnService({
      cosignerBin: COSIGNER_BIN,
      name: 'bogus',
      args: ['no-such-command'],
      dir: d,
      readyTimeoutMs: 30_000,
    }).catch((e: unknown) => e);
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
    const err = await spawnService({
      cosignerBin: COSIGNER_BIN,
      name: 'slow',
      args: ['cluster', '--help'],
      dir: d,
      readyTimeoutMs: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClusterStartError);
    expect((err as Error).message).toMatch(/^slow (was not ready within 1 ms|exited before it was ready)/);
  });

  it('stops a starting child when the start is aborted', async () => {
    const d = await dir();
    const ac = new AbortController();
    ac.abort();
    await expect(
      spawnService({
        cosignerBin: COSIGNER_BIN,
        name: 'x',
        args: ['cluster', '--help'],
        dir: d,
        readyTimeoutMs: 30_000,
        signal: ac.signal,
      }),
    ).rejects.toThrow(/start of x interrupted|x exited before it was ready/);
    await expect(startCluster({ cosignerBin: COSIGNER_BIN, dir: d, signal: ac.signal })).rejects.toThrow(/interrupted/);
  });
});

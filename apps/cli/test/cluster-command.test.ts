import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cluster, ClusterFile } from '@cosigner/launcher/cluster';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type ClusterUpOptions,
  clusterDown,
  clusterUp,
  endpointLines,
  launcherEntries,
  progressLines,
  upUntilSignalled,
} from '../src/commands/cluster.ts';
import { main } from '../src/main.ts';

// `cosigner cluster`: the pure parts and `down` here; `up` with a whole cluster runs in test/e2e/cluster.test.ts.

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  process.exitCode = undefined;
  vi.restoreAllMocks();
  for (const f of cleanup.splice(0)) await f();
});

/** A real process whose command line names cosigner (what `down` checks before it signals a pid). */
async function fakeChild(ignoreTerm: boolean): Promise<ChildProcess> {
  const code = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} setInterval(() => {}, 1000); console.log('up');`;
  const p = spawn(process.execPath, ['-e', code, 'cosigner-fake'], { stdio: ['ignore', 'pipe', 'ignore'] });
  cleanup.push(async () => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });
  // Wait until its SIGTERM handler is installed.
  await new Promise((r) => p.stdout?.once('data', r));
  return p;
}

describe('cluster progress lines', () => {
  it('reports each new decision once, with reasons for a refusal, then the status', () => {
    const p1 = { id: 'p1', status: 'pending', decisions: [{ nodeId: 'node-0', outcome: 'approve', reasons: [] }] };
    expect(progressLines(undefined, p1)).toEqual(['  node-0: approve', '  proposal p1: pending']);
    const p2 = {
      ...p1,
      decisions: [
        ...p1.decisions,
        { nodeId: 'node-1', outcome: 'reject', reasons: [{ code: 'POLICY_AMOUNT', message: 'amount over 1000' }] },
      ],
    };
    expect(progressLines(p1, p2)).toEqual(['  node-1: reject (amount over 1000)']);
    const p3 = { ...p2, status: 'signed' };
    expect(progressLines(p2, p3)).toEqual(['  proposal p1: quorum reached, envelope signed']);
    const p4 = { ...p3, status: 'submitted', result: { ledger: 42 } };
    expect(progressLines(p3, p4)).toEqual(['  proposal p1: submitted (ledger 42)']);
    const p5 = { ...p2, status: 'rejected', statusReason: 'quorum unreachable' };
    expect(progressLines(p2, p5)).toEqual(['  proposal p1: rejected (quorum unreachable)']);
    const p6 = { ...p2, status: 'submitted', signatures: [{}, {}], result: { ledger: 7 } };
    expect(progressLines(p2, p6)).toEqual([
      '  proposal p1: quorum reached (2 signatures)',
      '  proposal p1: submitted (ledger 7)',
    ]);
  });

  it('accepts decisions keyed by node, and reasons given only by code', () => {
    const p = {
      id: 'p2',
      status: 'pending',
      decisions: { 'node-2': { outcome: 'reject', reasons: [{ code: 'X' }] } },
    };
    expect(progressLines({ id: 'p2', status: 'pending' }, p)).toEqual(['  node-2: reject (X)']);
    expect(progressLines({ id: 'p2', status: 'pending' }, { id: 'p2', status: 'pending', decisions: 'junk' })).toEqual(
      [],
    );
    expect(progressLines(undefined, { id: 'p3', status: 'pending', decisions: [{}] })).toEqual([
      '  a node: decided',
      '  proposal p3: pending',
    ]);
  });

  it('lists endpoints and the admin key file, never the key', () => {
    const proc = (name: string, url: string) => ({ name, url, pid: 1 });
    const c = {
      dir: '/d',
      coordinator: proc('coordinator', 'http://c'),
      adminKeyFile: '/d/coordinator/admin.key',
      apiKey: 'cak.secret',
      horizonUrl: 'http://h',
      networkPassphrase: 'Net',
      nodes: [proc('node-0', 'http://n0'), proc('node-1', 'http://n1')],
      nodeInfo: [{ stellarKey: 'GABC' }, { stellarKey: 'GDEF' }],
      kms: [proc('kms-0', 'http://k0')],
      account: { id: 'GACCT', threshold: 1, signers: ['GABC'] },
      operatorAccounts: ['GACCT', 'GROT'],
      kmsAccounts: [{ region: 'eu-west-3', accountsFile: '/d/kms-0/accounts.json', profile: 'kms-0-admin' }],
      aws: { configFile: '/d/aws/config' },
      policyFile: '/d/policy.yaml',
    } as unknown as Cluster;
    const text = endpointLines(c).join('\n');
    for (const s of ['http://c', '/d/coordinator/admin.key', 'http://h', 'http://n0', 'GABC', 'http://k0', 'GACCT']) {
      expect(text).toContain(s);
    }
    expect(text).not.toContain('cak.secret');
    expect(text).toContain('web console   http://c/console/');
    // Both accounts, the second named as the rotations' --tx-source; where the KMS admin credentials and region are.
    expect(text).toMatch(/multisig account GACCT \(1-of-2\): payments/);
    expect(text).toMatch(/second account\s+GROT .*--tx-source/);
    expect(text).toContain('region eu-west-3, key admin profile kms-0-admin');
    expect(text).toContain('KMS credentials  AWS_CONFIG_FILE=/d/aws/config with AWS_PROFILE=kms-<i>-admin (key admin)');
    expect(text).toContain('/d/policy.yaml (kill -HUP <node pid> reloads it)');
    expect(text).toContain('AWS_CONFIG_FILE=/d/aws/config AWS_PROFILE=kms-0-admin \\');
    expect(text).toMatch(/--account GACCT --account GROT --tx-source GROT/);
    expect(text).toMatch(/--kms-endpoint http:\/\/k0 --region eu-west-3/);
    expect(text).toMatch(/--admin-url http:\/\/n0 --peer-admin-url http:\/\/n1 --state-dir \/d\/rotations/);
    expect(text).toContain('curl -s -H "authorization: Bearer $(cat /d/coordinator/admin.key)" http://c/v1/proposals');
  });
});

describe('cluster up over an earlier run', () => {
  /** A real process whose command line names cosigner and `dir`, as every child of a cluster under `dir` does. */
  async function orphan(dir: string): Promise<ChildProcess> {
    const p = spawn(process.execPath, ['-e', "setInterval(() => {}, 1000); console.log('up');", 'cosigner', dir], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    cleanup.push(async () => {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    });
    await new Promise((r) => p.stdout?.once('data', r));
    return p;
  }

  it('stops the children a killed launcher left running (only those naming the directory), then resumes', async () => {
    const d = await tempDir();
    cleanup.push(() => rm(d, { recursive: true, force: true }));
    const [node, ledger, stranger] = await Promise.all([orphan(d), orphan(d), fakeChild(false)]);
    const deadLauncher = await fakeChild(false);
    deadLauncher.kill('SIGKILL');
    await new Promise((r) => deadLauncher.once('exit', r));
    const file: ClusterFile = {
      launcherPid: deadLauncher.pid as number,
      coordinator: { url: 'http://c', pid: stranger.pid as number, adminKeyFile: '/x' },
      ledger: { url: 'http://l', pid: ledger.pid as number, networkPassphrase: 'n' },
      kms: [],
      nodes: [{ name: 'node-0', url: 'http://n', pid: node.pid as number, stellarKey: 'G' }],
      account: 'G',
    };
    await writeFile(join(d, 'cluster.json'), JSON.stringify(file));
    // A torn launcher state: the start stops after the leftovers, saying it cannot resume (no cluster is started).
    await writeFile(join(d, 'launcher.json'), '{"version":');
    const lines: string[] = [];
    await expect(clusterUp({ dir: d, demo: false, out: (l) => lines.push(l) })).rejects.toThrow(
      /cannot be resumed: .*launcher\.json is not a launcher state this launcher wrote; start over with `cosigner cluster up --fresh`/,
    );
    expect(lines[0]).toBe('stopping 2 process(es) an earlier launcher left running');
    const ended = (c: ChildProcess): Promise<unknown> =>
      c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r));
    await Promise.all([ended(node), ended(ledger)]);
    // A process whose command line does not name the directory is not ours, whatever cluster.json says.
    expect(stranger.exitCode === null && stranger.signalCode === null).toBe(true);
  });

  it('--fresh deletes the earlier cluster and nothing else; a torn cluster.json is ignored', async () => {
    const d = await tempDir();
    cleanup.push(() => rm(d, { recursive: true, force: true }));
    for (const x of ['node-0', 'kms-0', 'ledger', 'notes']) await mkdir(join(d, x));
    await writeFile(join(d, 'launcher.json'), '{"version":');
    await writeFile(join(d, 'cluster.json'), '{"launcherPid": 12');
    await writeFile(join(d, 'keep.txt'), 'mine');
    const lines: string[] = [];
    // nodes: 0 makes the start itself refuse right after the deletion, so no cluster runs in this unit test.
    await expect(clusterUp({ dir: d, nodes: 0, fresh: true, demo: false, out: (l) => lines.push(l) })).rejects.toThrow(
      /nodes must be 1..64/,
    );
    expect(lines[0]).toBe(
      `--fresh: deleting the cluster under ${d} (KMS keys, ledger, accounts, coordinator and node histories)`,
    );
    expect((await readdir(d)).sort()).toEqual(['keep.txt', 'notes']);
  });
});

describe('cluster up --fresh', () => {
  it('deletes only what the launcher creates, never anything else in the directory', () => {
    const names = ['launcher.json', 'cluster.json', 'policy.yaml', 'ledger', 'coordinator', 'logs', 'run', 'aws'];
    const ours = [...names, 'rotations', 'node-0', 'node-12', 'kms-3', 'launcher.json.123.tmp', 'cluster.json.9.tmp'];
    const theirs = ['.bashrc', 'Documents', 'node-x', 'kms', 'notes.json', 'node_modules', 'policy.yaml.bak'];
    expect(launcherEntries([...ours, ...theirs]).sort()).toEqual([...ours].sort());
  });
});

describe('cosigner cluster down', () => {
  it('says clearly when there is no cluster to stop', async () => {
    const d = await tempDir();
    cleanup.push(() => rm(d, { recursive: true, force: true }));
    await expect(clusterDown(d, () => {})).rejects.toThrow(/no running cluster under/);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await main(['node', 'cosigner', 'cluster', 'down', '--dir', d]);
    expect(process.exitCode).toBe(1);
    expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(/no running cluster under/);
  });

  it('stops every pid of cluster.json, killing one that ignores SIGTERM, skipping dead ones', async () => {
    const d = await tempDir();
    cleanup.push(() => rm(d, { recursive: true, force: true }));
    const [polite, stubborn, gone] = await Promise.all([fakeChild(false), fakeChild(true), fakeChild(false)]);
    gone.kill('SIGKILL');
    await new Promise((r) => gone.once('exit', r));
    const file: ClusterFile = {
      launcherPid: polite.pid as number,
      coordinator: { url: 'http://c', pid: gone.pid as number, adminKeyFile: '/x' },
      ledger: { url: 'http://l', pid: stubborn.pid as number, networkPassphrase: 'n' },
      kms: [],
      nodes: [],
      account: 'G',
    };
    await writeFile(join(d, 'cluster.json'), JSON.stringify(file));
    const lines: string[] = [];
    expect(await clusterDown(d, (l) => lines.push(l), 1_000)).toBe(2);
    const ended = (c: ChildProcess): Promise<NodeJS.Signals | null> =>
      c.exitCode !== null || c.signalCode !== null
        ? Promise.resolve(c.signalCode)
        : new Promise((r) => c.once('exit', (_code, sig) => r(sig)));
    expect(await ended(polite)).toBe('SIGTERM');
    expect(await ended(stubborn)).toBe('SIGKILL');
    expect(lines[0]).toMatch(/^stopping launcher \(pid \d+\)$/);
    expect(lines.join('\n')).not.toContain('coordinator');
    expect(lines.join('\n')).toMatch(/ledger \(pid \d+\) ignored SIGTERM; killing it/);
  });

  it('refuses to start a second cluster over a running one', async () => {
    const d = await tempDir();
    cleanup.push(() => rm(d, { recursive: true, force: true }));
    const launcher = await fakeChild(false);
    await writeFile(join(d, 'cluster.json'), JSON.stringify({ launcherPid: launcher.pid }));
    await expect(clusterUp({ dir: d, nodes: 1, threshold: 1, demo: false, out: () => {} })).rejects.toThrow(
      `a cluster is already running under ${d} (launcher pid ${launcher.pid}); stop it with: cosigner cluster down --dir ${d}`,
    );
  });

  it('refuses a threshold above the node count and a non-numeric node count', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await main(['node', 'cosigner', 'cluster', 'up', '--nodes', '2', '--threshold', '3']);
    expect(process.exitCode).toBe(1);
    expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(/--threshold 3 exceeds --nodes 2/);
    process.exitCode = undefined;
    await main(['node', 'cosigner', 'cluster', 'up', '--nodes', 'many']);
    expect(process.exitCode).toBe(1);
    expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(/whole number from 1 to 20/);
  });
});

describe('cosigner cluster up: running until Ctrl-C', () => {
  /** A stand-in for a started cluster: what upUntilSignalled touches, with a child whose exit the test controls. */
  function fakeCluster() {
    let exitNode: (code: number | null) => void = () => {};
    const never = new Promise<number | null>(() => {});
    const proc = (name: string, exited = never) => ({ name, pid: 1, logFile: `/d/logs/${name}.log`, exited });
    const stop = vi.fn(async () => {});
    const cluster = {
      nodes: [
        proc(
          'node-0',
          new Promise<number | null>((r) => {
            exitNode = r;
          }),
        ),
      ],
      coordinator: proc('coordinator'),
      ledger: proc('ledger'),
      kms: [proc('kms-0')],
      stop,
    } as unknown as Cluster;
    return { cluster, stop, exitNode: (c: number | null) => exitNode(c) };
  }

  it('warns when a child dies, and on SIGINT stops the cluster and returns', async () => {
    const signals = new EventEmitter();
    const lines: string[] = [];
    const f = fakeCluster();
    let seen: ClusterUpOptions | undefined;
    const done = upUntilSignalled(
      { dir: '/d', nodes: 1, threshold: 1, demo: false, out: (l) => lines.push(l) },
      {
        signals,
        start: async (o) => {
          seen = o;
          return f.cluster;
        },
      },
    );
    await vi.waitFor(() => expect(lines).toContain('cluster running; press Ctrl-C to stop'));
    f.exitNode(137);
    await vi.waitFor(() => expect(lines).toContain('warning: node-0 (pid 1) exited with 137; see /d/logs/node-0.log'));
    expect(f.stop).not.toHaveBeenCalled();
    signals.emit('SIGINT');
    await done;
    expect(f.stop).toHaveBeenCalledTimes(1);
    expect(lines.slice(-2)).toEqual(['stopping the cluster', 'cluster stopped']);
    expect(seen?.signal?.aborted).toBe(true);
    expect(signals.listenerCount('SIGINT') + signals.listenerCount('SIGTERM')).toBe(0);
  });

  it('stops right away when SIGTERM came while the cluster was starting', async () => {
    const signals = new EventEmitter();
    const lines: string[] = [];
    const f = fakeCluster();
    await upUntilSignalled(
      { dir: '/d', nodes: 1, threshold: 1, demo: false, out: (l) => lines.push(l) },
      {
        signals,
        start: async () => {
          signals.emit('SIGTERM');
          return f.cluster;
        },
      },
    );
    expect(f.stop).toHaveBeenCalledTimes(1);
    expect(lines).toEqual(['stopping the cluster', 'cluster stopped']);
  });

  it('cluster down through the CLI reports how many processes it stopped', async () => {
    const d = await tempDir();
    cleanup.push(() => rm(d, { recursive: true, force: true }));
    const gone = await fakeChild(false);
    gone.kill('SIGKILL');
    await new Promise((r) => gone.once('exit', r));
    const pid = gone.pid as number;
    const file: ClusterFile = {
      launcherPid: pid,
      coordinator: { url: 'http://c', pid, adminKeyFile: '/x' },
      ledger: { url: 'http://l', pid, networkPassphrase: 'n' },
      kms: [{ name: 'kms-0', url: 'http://k', pid }],
      nodes: [{ name: 'node-0', url: 'http://n', pid, stellarKey: 'G' }],
      account: 'G',
    };
    await writeFile(join(d, 'cluster.json'), JSON.stringify(file));
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    await main(['node', 'cosigner', 'cluster', 'down', '--dir', d]);
    expect(process.exitCode).toBeUndefined();
    expect(out).toHaveBeenCalledWith('stopped 0 process(es)\n');
  });
});

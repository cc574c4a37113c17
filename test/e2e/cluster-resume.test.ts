import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClusterFile } from '@cosigner/launcher/cluster';
import { alive, COSIGNER_BIN, REPO_ROOT, runCosigner, tempDir, until } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `pnpm start` (`cosigner cluster up`) stopped every way a user, a terminal, a service manager or the machine
 * stops it, then started again in the same directory: each start must resume the same cluster (the same node
 * keys, multisig accounts, ledger, coordinator and node histories) and end with the demo payment applied.
 * Every process is real: the launcher runs as `pnpm start` runs it, as its own process group, exactly as a shell
 * starts a foreground job.
 *
 * The ways of stopping, each run ROUNDS times in a row (default 2; COSIGNER_RESUME_ROUNDS): Ctrl-C (SIGINT to
 * the group), SIGTERM to the process group (`kill -- -pgid`, `timeout`, a service manager), SIGHUP to the group
 * with the terminal gone (stdout closed), kill -9 of the launcher and every child, kill -9 of the launcher alone
 * (its children keep running), and a simulated power cut. Then the first signer change an operator makes, a
 * rotation of node-0's key with the command `cluster up` printed, and one more start that resumes with the
 * rotated key. Duration: 14 starts of an eight-process cluster and one rotation: 8-15 minutes on a loaded
 * 2-core machine (30-60 s per start; 10 and 13 min measured), so one suite, one cluster directory.
 *
 * The power cut: every process of the cluster SIGKILLed in one instant, so none writes another byte, then what
 * a power cut does to files written without fsync: cluster.json torn in half, a launcher-state temporary file
 * half written, the ready files of the dead run left behind. What it cannot simulate is the kernel losing
 * written pages; the launcher's own state is written with fsync and a synced rename for that case.
 */

const ROUNDS = Number(process.env.COSIGNER_RESUME_ROUNDS ?? 2);
const WAYS = [
  'SIGINT',
  'SIGTERM to the group',
  'SIGHUP, terminal gone',
  'kill -9 all',
  'kill -9 launcher',
  'power cut',
];

interface Run {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function pidsOf(file: ClusterFile): number[] {
  return [file.coordinator.pid, file.ledger.pid, ...file.kms.map((k) => k.pid), ...file.nodes.map((n) => n.pid)];
}

/** The `rotate` command `cluster up` printed, as argv (after `cosigner`) and environment. */
function rotateCommand(out: string): { argv: string[]; env: Record<string, string> } {
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.includes("rotate node-0's key"));
  expect(at).toBeGreaterThan(0);
  // The command's lines: each but the last ends with a shell continuation.
  const command: string[] = [];
  for (const l of lines.slice(at + 1)) {
    command.push(l.replace(/\\$/, ''));
    if (!l.endsWith('\\')) break;
  }
  const words = command.join(' ').trim().split(/\s+/);
  const env: Record<string, string> = {};
  while (words[0]?.includes('=')) {
    const [k, v] = (words.shift() as string).split('=') as [string, string];
    env[k] = v;
  }
  expect(words.slice(0, 2)).toEqual(['pnpm', 'cosigner']);
  return { argv: words.slice(2), env };
}

/**
 * What an operator needs from the first start alone: the two accounts on the ledger with the nodes as signers,
 * every member on each node's roster, a ledger clock that fits the simulator, and KMS administrator credentials
 * on the standard AWS chain.
 */
async function checkOperatorKit(out: string, signers: string[]): Promise<void> {
  const horizon = /ledger \(Horizon\) (\S+)/.exec(out)?.[1] as string;
  for (const id of [/multisig account (G\S+)/.exec(out)?.[1], /second account\s+(G\S+)/.exec(out)?.[1]]) {
    const acct = (await (await fetch(`${horizon}/accounts/${id}`)).json()) as {
      signers: { key: string; weight: number }[];
      thresholds: Record<string, number>;
    };
    expect(
      acct.signers
        .filter((x) => x.weight === 1)
        .map((x) => x.key)
        .sort(),
    ).toEqual([...signers].sort());
    expect(acct.thresholds).toMatchObject({ low_threshold: 2, med_threshold: 2, high_threshold: 2 });
  }
  const nodeUrls = [...out.matchAll(/(node-\d)\s+(http:\S+)\s+signer/g)].map((m) => m[2] as string);
  for (const [i, url] of nodeUrls.entries()) {
    const view = (await (await fetch(`${url}/v1/keyring`)).json()) as { roster: { address: string; nodeId: string }[] };
    expect(view.roster.map((r) => r.address).sort()).toEqual(signers.filter((_, j) => j !== i).sort());
  }
  const policyFile = /nodes' policy\s+(\S+)/.exec(out)?.[1] as string;
  const policy = await readFile(policyFile, 'utf8');
  // The ledger clock fits the simulator's 200 ms closes; signer changes for roster keys are allowed.
  expect(policy).toMatch(/ledgerClock:\n\s+ledger: \d+\n\s+closedAt: \d+\n\s+maxCloseSeconds: 0\.2\n/);
  expect(policy).toMatch(/clusterMembers: true/);
  // The KMS administrator credentials and region are where the output says: the rotation below creates its new
  // key with the printed AWS_PROFILE, from that config file, through the AWS SDK's standard credential chain.
  expect(out).toMatch(/KMS credentials\s+AWS_CONFIG_FILE=\S+\/aws\/config with AWS_PROFILE=kms-<i>-admin/);
  expect(out).toMatch(/kms-0\s+http:\S+\s+region us-east-1, key admin profile kms-0-admin/);
}

describe('pnpm start resumes the same cluster however it stopped', () => {
  let dir: string;
  let running: Run | undefined;
  const everyPid = new Set<number>();

  /** `cosigner cluster up --dir <dir>` as its own process group, as a shell runs a foreground job. */
  const start = (): Run => {
    const proc = spawn(process.execPath, [COSIGNER_BIN, 'cluster', 'up', '--dir', dir], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
    everyPid.add(proc.pid as number);
    return { proc, out: () => out, exited };
  };

  const clusterFile = async (): Promise<ClusterFile> =>
    JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as ClusterFile;

  beforeAll(async () => {
    dir = await tempDir('cosigner-resume-');
  });

  afterAll(async () => {
    // Whatever happened, leave no process behind: every pid any run had, launcher or child.
    try {
      for (const pid of pidsOf(await clusterFile())) everyPid.add(pid);
    } catch {
      // No cluster.json (stopped cleanly, or torn): the pids seen so far are all there is.
    }
    for (const pid of everyPid) if (alive(pid)) process.kill(pid, 'SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  /** Start, wait until it runs, check it is the same cluster with the demo applied; returns what it printed. */
  const startAndCheck = async (
    expected: { account?: string; second?: string; signers?: string[] },
    label: string,
  ): Promise<{ run: Run; account: string; second: string; signers: string[]; proposal: string }> => {
    const run = start();
    running = run;
    await until(() => run.out().includes('press Ctrl-C') || run.proc.exitCode !== null, 240_000, 'cluster up').catch(
      (e) => {
        throw new Error(`${label}: ${(e as Error).message}; output so far:\n${run.out()}`);
      },
    );
    const out = run.out();
    expect(run.proc.exitCode, `${label}: cluster up exited:\n${out}`).toBeNull();
    // The demo payment went through the quorum and was applied on the ledger.
    expect(out, label).toMatch(/proposal \S+: submitted \(ledger \d+\)/);
    expect(out, label).toMatch(/destination balance 10000\.0000000 -> 10010\.0000000 XLM/);
    const account = /multisig account (G[A-Z2-7]{55})/.exec(out)?.[1] as string;
    const second = /second account\s+(G[A-Z2-7]{55})/.exec(out)?.[1] as string;
    const signers = [...out.matchAll(/node-\d\s+\S+\s+signer (G[A-Z2-7]{55})/g)].map((m) => m[1] as string);
    const proposal = /proposal (\S+): submitted/.exec(out)?.[1] as string;
    expect(signers, label).toHaveLength(3);
    if (expected.account) {
      expect(out, label).toContain('resuming the 2-of-3 cluster recorded in');
      expect(out, label).toContain('reusing 3 node keys recorded by an earlier start');
      expect(out, label).not.toContain('created 3 node keys');
      expect(account, label).toBe(expected.account);
      expect(second, label).toBe(expected.second);
      expect(signers, label).toEqual(expected.signers);
    }
    for (const pid of pidsOf(await clusterFile())) everyPid.add(pid);
    return { run, account, second, signers, proposal };
  };

  const stop = async (run: Run, way: string): Promise<void> => {
    const file = await clusterFile();
    const children = pidsOf(file);
    const pgid = run.proc.pid as number;
    switch (way) {
      case 'SIGINT':
        process.kill(-pgid, 'SIGINT');
        break;
      case 'SIGTERM to the group':
        process.kill(-pgid, 'SIGTERM');
        break;
      case 'SIGHUP, terminal gone':
        // The terminal is gone: nobody reads the launcher's output any more, then the group gets SIGHUP.
        run.proc.stdout?.destroy();
        run.proc.stderr?.destroy();
        process.kill(-pgid, 'SIGHUP');
        break;
      case 'kill -9 all':
        for (const pid of [pgid, ...children]) process.kill(pid, 'SIGKILL');
        break;
      case 'kill -9 launcher':
        // Its children keep running, holding the ports and data directories; the next start must deal with them.
        process.kill(pgid, 'SIGKILL');
        break;
      case 'power cut': {
        for (const pid of [pgid, ...children]) process.kill(pid, 'SIGKILL');
        const text = await readFile(join(dir, 'cluster.json'), 'utf8');
        await writeFile(join(dir, 'cluster.json'), text.slice(0, Math.floor(text.length / 2)));
        const state = await readFile(join(dir, 'launcher.json'), 'utf8');
        await writeFile(join(dir, 'launcher.json.99999.tmp'), state.slice(0, 40));
        break;
      }
      default:
        throw new Error(`unknown way ${way}`);
    }
    const code = await run.exited;
    if (way === 'kill -9 launcher') {
      expect(children.every(alive), way).toBe(true);
      return;
    }
    if (way.startsWith('SIG')) {
      // A stop by signal is an orderly one: every child stopped, the launcher exits 0.
      expect(code, `${way}:\n${run.out()}`).toBe(0);
      if (way !== 'SIGHUP, terminal gone') expect(run.out()).toContain('cluster stopped');
    }
    await until(() => children.every((p) => !alive(p)), 20_000, `${way}: every child gone`);
    if (way === 'power cut') {
      expect((await readdir(join(dir, 'run'))).some((f) => f.endsWith('.ready.json'))).toBe(true);
    }
  };

  it(
    `${WAYS.length} ways of stopping, ${ROUNDS} rounds: each start resumes the same cluster and applies a demo payment`,
    async () => {
      const first = await startAndCheck({}, 'first start');
      expect(first.run.out()).toContain('created 3 node keys');
      await checkOperatorKit(first.run.out(), first.signers);
      const expected = { account: first.account, second: first.second, signers: first.signers };
      const proposals = [first.proposal];
      let run = first.run;
      for (let round = 1; round <= ROUNDS; round++) {
        for (const way of WAYS) {
          const label = `round ${round}, after ${way}`;
          await stop(run, way);
          const next = await startAndCheck(expected, label);
          if (way === 'kill -9 launcher') {
            expect(next.run.out(), label).toMatch(/stopping 8 process\(es\) an earlier launcher left running/);
          }
          proposals.push(next.proposal);
          run = next.run;
        }
      }
      // The coordinator's history is kept: every demo proposal of every start is still there, submitted; and the
      // nodes' signing ledgers hold a signature of each (at least two nodes signed every one).
      const file = await clusterFile();
      const key = (await readFile(file.coordinator.adminKeyFile, 'utf8')).trim();
      for (const id of proposals) {
        const res = await fetch(`${file.coordinator.url}/v1/proposals/${id}`, {
          headers: { authorization: `Bearer ${key}` },
        });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { status: string }).status).toBe('submitted');
      }
      let signatures = 0;
      for (const n of file.nodes) {
        const metrics = await (await fetch(`${n.url}/metrics`)).text();
        signatures += Number(/ledger_rows\{kind="signatures"\} (\d+)/.exec(metrics)?.[1] ?? 0);
      }
      expect(signatures).toBeGreaterThanOrEqual(2 * proposals.length);

      // A signer change right after a start, as the printed command runs it: node-0's key is rotated (the other
      // nodes approve adding the new key: it is on their rosters). The next start resumes with the rotated key.
      const rotate = rotateCommand(run.out());
      const rotated = await runCosigner(rotate.argv, rotate.env);
      expect(rotated.code, rotated.out).toBe(0);
      expect(rotated.out).toMatch(/\[rotate\] deletion-scheduled \(node-0\)/);
      const newKey = ((await (await fetch(`${file.nodes[0]!.url}/v1/keyring`)).json()) as { active: string }).active;
      expect(newKey).not.toBe(expected.signers[0]);
      const signedBy0 = async (url: string): Promise<number> =>
        Number(/ledger_rows\{kind="signatures"\} (\d+)/.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? 0);
      const before = await signedBy0(file.nodes[0]!.url);
      await stop(run, 'SIGINT');
      const resumed = await startAndCheck(
        { ...expected, signers: [newKey, ...expected.signers.slice(1)] },
        'after the rotation',
      );
      expect(resumed.run.out()).toContain(`node-0 signs with ${newKey} (rotated); the coordinator enrols that key`);
      // node-0 signs the demo payment with its new key. The demo prints only the answers that made the quorum, and
      // two of three suffice, so its own signing ledger is where to look: it grows past what it held before the stop.
      const url0 = (await clusterFile()).nodes[0]!.url;
      await until(async () => (await signedBy0(url0)) > before, 30_000, 'node-0 signs after the rotation');

      // Finally an orderly stop, as a user ends the day.
      const last = running as Run;
      process.kill(-(last.proc.pid as number), 'SIGINT');
      expect(await last.exited).toBe(0);
    },
    30 * 60_000,
  );
});

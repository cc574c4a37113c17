import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CreateKeyCommand, GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type Cluster, startCluster } from '@cosigner/testkit/cluster';
import { REPO_ROOT, type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as testkitSrc from '../../packages/testkit/src/process.ts';

/**
 * The optional build (`pnpm build`, scripts/build.ts) and the plain-JS start it enables (packages/cli/bin/cosigner.js):
 * real processes started through the testkit helpers with `--conditions=cosigner-dist` in NODE_OPTIONS, as the
 * production image starts them.
 *
 * What proves that no tsx loader runs: Node's diagnostic report (`--report-on-signal`, SIGUSR2) lists the worker
 * threads of a process, and tsx's loader (module.register) runs its hooks on one. A process started through the
 * fallback path (tsx) has that thread; a process run from dist has none (these services start no worker of their
 * own). The first test checks both sides, so the observable is shown to tell them apart.
 */

const run = promisify(execFile);

const BUILD_CONDITION = '--conditions=cosigner-dist';

/** NODE_OPTIONS for a child: whatever the runner had, plus ours. */
function nodeOptions(...extra: string[]): string {
  return [process.env.NODE_OPTIONS ?? '', ...extra].join(' ').trim();
}

/** SIGUSR2 to a process started with --report-on-signal, then its report (written into `dir`). */
async function reportOf(
  pid: number,
  dir: string,
): Promise<{ workers: unknown[]; environmentVariables: Record<string, string> }> {
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 15_000;
  for (;;) {
    const name = (await readdir(dir)).find((f) => f.startsWith('report.') && f.includes(`.${pid}.`));
    if (name) {
      try {
        return JSON.parse(await readFile(join(dir, name), 'utf8'));
      } catch {
        // Still being written.
      }
    }
    if (Date.now() > deadline) throw new Error(`no diagnostic report from pid ${pid} in ${dir}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Run the bin with the condition and return its exit code and stderr (for the refusals). */
function runBin(bin: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BUILD_CONDITION, bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('exit', (code) => resolve({ code, stderr }));
  });
}

describe('pnpm build and the dist mode', () => {
  let work: string;
  let buildOutput = '';

  beforeAll(async () => {
    work = await tempDir('cosigner-build-test-');
    // As `pnpm build` runs it (the tsx CLI is tsx's own --import hook plus the script).
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/build.ts'], { cwd: REPO_ROOT });
    buildOutput = stdout;
  }, 60_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('leaves vitest on the sources: a package import is the very module of its src/ file', () => {
    // The condition is unknown to vitest (and to tsc and tsx), so the `default` export, src/*.ts, applies.
    expect(startCosignerProcess).toBe(testkitSrc.startCosignerProcess);
  });

  it('transpiles every workspace package to dist/ and copies the migrations beside the modules', async () => {
    expect(buildOutput).toMatch(/built 12 packages \(\d+ modules\)/);
    for (const pkg of ['packages/cli', 'packages/stellar', 'services/coordinator', 'services/cosigner']) {
      expect(buildOutput).toContain(`${pkg}/dist:`);
      const info = JSON.parse(await readFile(join(REPO_ROOT, pkg, 'dist/BUILD.json'), 'utf8'));
      expect(info.sourceDigest).toMatch(/^[0-9a-f]{64}$/);
    }
    for (const svc of ['coordinator', 'cosigner']) {
      const src = (await readdir(join(REPO_ROOT, 'services', svc, 'src/migrations'))).sort();
      expect(src.length).toBeGreaterThan(0);
      expect((await readdir(join(REPO_ROOT, 'services', svc, 'dist/migrations'))).sort()).toEqual(src);
    }
    // Relative imports point at the .js files; no specifier is left pointing at a .ts file.
    const main = await readFile(join(REPO_ROOT, 'packages/cli/dist/main.js'), 'utf8');
    expect(main).toMatch(/import\(['"]\.\/commands\/keys\.js['"]\)/);
    expect(main).not.toMatch(/['"]\.{1,2}\/[^'"]*\.ts['"]/);
  });

  it('a KMS emulator started with the condition serves from dist with no loader thread; without it, tsx runs', async () => {
    const reports = join(work, 'reports-kms');
    await mkdir(reports);
    const report = `--report-on-signal --report-directory=${reports}`;
    let dist: RunningProcess | undefined;
    let viaTsx: RunningProcess | undefined;
    try {
      [dist, viaTsx] = await Promise.all([
        startCosignerProcess({
          args: ['kms-emulator', '--data-dir', join(work, 'kms-dist'), '--accounts', '1'],
          env: { NODE_OPTIONS: nodeOptions(BUILD_CONDITION, report) },
        }),
        startCosignerProcess({
          args: ['kms-emulator', '--data-dir', join(work, 'kms-tsx'), '--accounts', '1'],
          env: { NODE_OPTIONS: nodeOptions(report) },
          readyTimeoutMs: 60_000,
        }),
      ]);

      // It serves: a real KMS client creates an Ed25519 key and reads its public key back.
      expect((await fetch(`${dist.url}/healthz`)).status).toBe(200);
      const accounts = JSON.parse(await readFile(String(dist.ready.accountsFile), 'utf8')).accounts as {
        region: string;
        principals: { role: string; accessKeyId: string; secretAccessKey: string }[];
      }[];
      const admin = accounts[0]!.principals.find((p) => p.role === 'admin')!;
      const kms = new KMSClient({
        endpoint: dist.url,
        region: accounts[0]!.region,
        credentials: { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey },
      });
      try {
        const created = await kms.send(
          new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }),
        );
        const pub = await kms.send(new GetPublicKeyCommand({ KeyId: created.KeyMetadata!.KeyId! }));
        expect(pub.PublicKey?.length).toBe(44);
      } finally {
        kms.destroy();
      }

      const distReport = await reportOf(dist.pid, reports);
      expect(distReport.environmentVariables.NODE_OPTIONS).toContain(BUILD_CONDITION);
      expect(distReport.workers).toHaveLength(0);
      const tsxReport = await reportOf(viaTsx.pid, reports);
      expect(tsxReport.workers.length).toBeGreaterThanOrEqual(1);
    } finally {
      await Promise.all([dist?.stop(), viaTsx?.stop()]);
    }
  }, 90_000);

  it('a whole 2-of-2 cluster runs from dist: it signs and submits a payment, and no process runs a loader', async () => {
    const reports = join(work, 'reports-cluster');
    await mkdir(reports);
    // startCluster's children inherit this process's environment (testkit spawnService).
    const saved = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = nodeOptions(BUILD_CONDITION, `--report-on-signal --report-directory=${reports}`);
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster({ dir: join(work, 'cluster'), nodes: 2, threshold: 2, closeMs: 100 });
    } finally {
      if (saved === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = saved;
    }
    try {
      const dest = await cluster.fundedAccount();
      const before = await cluster.nativeBalance(dest.publicKey());
      const p = await cluster.propose({
        xdr: await cluster.paymentXdr({ destination: dest.publicKey(), amount: '5' }),
      });
      const done = await cluster.waitForProposal(p.id);
      expect(done.status).toBe('submitted');
      expect(Number(await cluster.nativeBalance(dest.publicKey()))).toBe(Number(before) + 5);

      const procs = [...cluster.kms, cluster.ledger, cluster.coordinator, ...cluster.nodes];
      expect(procs).toHaveLength(6);
      for (const proc of procs) {
        const r = await reportOf(proc.pid, reports);
        expect({ name: proc.name, workers: r.workers.length }).toEqual({ name: proc.name, workers: 0 });
      }
    } finally {
      await cluster.stop();
    }
  }, 90_000);

  it('refuses, in one clear sentence, a missing dist and a dist built from other sources', async () => {
    // A copy of the CLI package (never the real dist, which other processes may be using).
    const root = join(work, 'copy');
    const cli = join(root, 'packages/cli');
    for (const part of ['bin', 'src', 'package.json']) {
      await cp(join(REPO_ROOT, 'packages/cli', part), join(cli, part), { recursive: true });
    }
    const bin = join(cli, 'bin/cosigner.js');

    const missing = await runBin(bin, ['--help']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain('packages/cli/dist is missing or incomplete');
    expect(missing.stderr).toContain('run `pnpm build` first');

    await cp(join(REPO_ROOT, 'packages/cli/dist'), join(cli, 'dist'), { recursive: true });
    await writeFile(join(cli, 'src/main.ts'), '\n// edited after the build\n', { flag: 'a' });
    const stale = await runBin(bin, ['--help']);
    expect(stale.code).toBe(1);
    expect(stale.stderr.trim().split('\n')).toHaveLength(1);
    expect(stale.stderr).toContain('packages/cli/dist was built from other sources than packages/cli/src');
    expect(stale.stderr).toContain('run `pnpm build` first');
    expect(existsSync(join(REPO_ROOT, 'packages/cli/dist/main.js'))).toBe(true);
  });
});

import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { CreateKeyCommand, GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import {
  COSIGNER_BIN,
  REPO_ROOT,
  type RunningProcess,
  startCosignerProcess,
  tempDir,
  useBuiltJs,
} from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as testkitSrc from '../../packages/testkit/src/process.ts';

/**
 * The optional build (`pnpm build`, scripts/build.ts) and the plain-JS start it enables (apps/cli/bin/cosigner.js):
 * real processes started through the testkit helpers with `--conditions=cosigner-dist` in NODE_OPTIONS, as the
 * production image starts them.
 *
 * What proves which code runs: each process is started with its inspector on a free loopback port, and the test
 * asks it (Debugger.enable) for every script it has parsed. A process run from dist has parsed
 * `apps/cli/dist/main.js` and its service's `dist/*.js`, and no `.ts` file and no module of tsx; one started
 * through the fallback path has parsed tsx's loader API and the `src/*.ts` files. The first process test checks
 * both sides, so the observation is shown to tell them apart (on Node 20, where tsx's hooks run on a loader
 * thread, and on Node 24, where tsx registers them in the main thread).
 */

const run = promisify(execFile);

const BUILD_CONDITION = '--conditions=cosigner-dist';
/** Each child's inspector on a free loopback port, printed in its output (parsedScripts reads it). */
const INSPECT = '--inspect=127.0.0.1:0';

/** NODE_OPTIONS for a child: whatever the runner had, plus ours. */
function nodeOptions(...extra: string[]): string {
  return [process.env.NODE_OPTIONS ?? '', ...extra].join(' ').trim();
}

/** Every script a process started with `--inspect=127.0.0.1:0` has parsed (its inspector's Debugger.scriptParsed). */
async function parsedScripts(proc: { output(): string }): Promise<string[]> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(proc.output())?.[1];
  if (!url) throw new Error(`no inspector URL in the process output:\n${proc.output()}`);
  const ws = new WebSocket(url);
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const urls: string[] = [];
      ws.once('error', reject);
      ws.once('open', () => ws.send(JSON.stringify({ id: 1, method: 'Debugger.enable' })));
      // V8 reports every script already parsed before it answers the enable.
      ws.on('message', (data: Buffer) => {
        const m = JSON.parse(data.toString()) as { id?: number; method?: string; params?: { url: string } };
        if (m.method === 'Debugger.scriptParsed' && m.params) urls.push(m.params.url);
        else if (m.id === 1) resolve(urls);
      });
    });
  } finally {
    ws.close();
  }
}

const file = (rel: string): string => pathToFileURL(join(REPO_ROOT, rel)).href;
const isTsx = (u: string): boolean => u.includes('/node_modules/tsx/') || /\/tsx@[^/]+\//.test(u);
const isTs = (u: string): boolean => /\.ts([?#].*)?$/.test(u);

/** The process ran from dist: the CLI's and `service`'s dist modules are loaded, no TypeScript file, nothing of tsx. */
function expectDist(name: string, scripts: string[], service: string): void {
  expect({ name, tsx: scripts.filter(isTsx), ts: scripts.filter(isTs) }).toEqual({ name, tsx: [], ts: [] });
  expect(scripts).toContain(file('apps/cli/dist/main.js'));
  expect(scripts.some((u) => u.startsWith(file(`${service}/dist/`)))).toBe(true);
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
    expect(buildOutput).toMatch(/built 14 packages \(\d+ modules\)/);
    for (const pkg of ['apps/cli', 'packages/stellar', 'services/coordinator', 'services/cosigner']) {
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
    const main = await readFile(join(REPO_ROOT, 'apps/cli/dist/main.js'), 'utf8');
    expect(main).toMatch(/import\(['"]\.\/commands\/keys\.js['"]\)/);
    expect(main).not.toMatch(/['"]\.{1,2}\/[^'"]*\.ts['"]/);
  });

  it('a KMS emulator started with the condition serves from dist, tsx nowhere; without it, tsx runs src', async () => {
    let dist: RunningProcess | undefined;
    let viaTsx: RunningProcess | undefined;
    try {
      [dist, viaTsx] = await Promise.all([
        startCosignerProcess({
          args: ['kms-emulator', '--data-dir', join(work, 'kms-dist'), '--accounts', '1'],
          env: { NODE_OPTIONS: nodeOptions(BUILD_CONDITION, INSPECT) },
        }),
        startCosignerProcess({
          args: ['kms-emulator', '--data-dir', join(work, 'kms-tsx'), '--accounts', '1'],
          env: { NODE_OPTIONS: nodeOptions(INSPECT) },
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

      expectDist('kms-emulator', await parsedScripts(dist), 'services/kms-emulator');
      // The control: the same observation on the fallback path sees tsx and the sources.
      const tsxScripts = await parsedScripts(viaTsx);
      expect(tsxScripts.some(isTsx)).toBe(true);
      expect(tsxScripts).toContain(file('apps/cli/src/main.ts'));
      expect(tsxScripts).not.toContain(file('apps/cli/dist/main.js'));
    } finally {
      await Promise.all([dist?.stop(), viaTsx?.stop()]);
    }
  }, 90_000);

  it('a whole 2-of-2 cluster runs from dist: it signs and submits a payment, and no process loads tsx', async () => {
    // startCluster's children inherit this process's environment (testkit spawnService).
    const saved = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = nodeOptions(BUILD_CONDITION, INSPECT);
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster({
        cosignerBin: COSIGNER_BIN,
        dir: join(work, 'cluster'),
        nodes: 2,
        threshold: 2,
        closeMs: 100,
      });
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

      const services: [{ name: string; output(): string }, string][] = [
        ...cluster.kms.map((k): [typeof k, string] => [k, 'services/kms-emulator']),
        [cluster.ledger, 'services/ledger-sim'],
        [cluster.coordinator, 'services/coordinator'],
        ...cluster.nodes.map((n): [typeof n, string] => [n, 'services/cosigner']),
      ];
      expect(services).toHaveLength(6);
      for (const [proc, service] of services) expectDist(proc.name, await parsedScripts(proc), service);
    } finally {
      await cluster.stop();
    }
  }, 90_000);

  it('useBuiltJs (the bench and the soak) builds and puts the condition in NODE_OPTIONS once', () => {
    const saved = process.env.NODE_OPTIONS;
    try {
      process.env.NODE_OPTIONS = '--max-semi-space-size=8';
      expect(useBuiltJs()).toMatch(/^built \d+ packages/);
      expect(useBuiltJs()).toMatch(/^built \d+ packages/);
      expect(process.env.NODE_OPTIONS).toBe(`--max-semi-space-size=8 ${BUILD_CONDITION}`);
      expect(existsSync(join(REPO_ROOT, 'services/cosigner/dist/node.js'))).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = saved;
    }
  });

  it('refuses, in one clear sentence, a missing dist and a dist built from other sources', async () => {
    // A copy of the CLI package (never the real dist, which other processes may be using).
    const root = join(work, 'copy');
    const cli = join(root, 'apps/cli');
    for (const part of ['bin', 'src', 'package.json']) {
      await cp(join(REPO_ROOT, 'apps/cli', part), join(cli, part), { recursive: true });
    }
    const bin = join(cli, 'bin/cosigner.js');

    const missing = await runBin(bin, ['--help']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain('apps/cli/dist is missing or incomplete');
    expect(missing.stderr).toContain('run `pnpm build` first');

    await cp(join(REPO_ROOT, 'apps/cli/dist'), join(cli, 'dist'), { recursive: true });
    await writeFile(join(cli, 'src/main.ts'), '\n// edited after the build\n', { flag: 'a' });
    const stale = await runBin(bin, ['--help']);
    expect(stale.code).toBe(1);
    expect(stale.stderr.trim().split('\n')).toHaveLength(1);
    expect(stale.stderr).toContain('apps/cli/dist was built from other sources than apps/cli/src');
    expect(stale.stderr).toContain('run `pnpm build` first');
    expect(existsSync(join(REPO_ROOT, 'apps/cli/dist/main.js'))).toBe(true);
  });
});

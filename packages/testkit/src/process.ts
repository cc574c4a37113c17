import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunningProcess } from '@cosigner/launcher/cluster';

export type { RunningProcess };

/** The repository root, from this file's location. */
export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
/** The `cosigner` executable every process test runs. */
export const COSIGNER_BIN = join(REPO_ROOT, 'apps/cli/bin/cosigner.js');

/**
 * Run every child process started from now on as production runs it: build the workspace (`pnpm build`'s script,
 * scripts/build.ts) and add `--conditions=cosigner-dist` to NODE_OPTIONS, which children inherit, so they run
 * dist/ as plain JavaScript with no loader (apps/cli/bin/cosigner.js). For the benchmarks and the soak, whose
 * figures (memory, start-up, recovery time) should be production's. Returns the build's summary line.
 * @throws Error when the build fails (its diagnostics went to stderr)
 */
export function useBuiltJs(): string {
  const built = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/build.ts')], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (built.status !== 0) throw new Error('the build failed (see above)');
  const condition = '--conditions=cosigner-dist';
  const current = process.env.NODE_OPTIONS ?? '';
  if (!current.split(/\s+/).includes(condition)) process.env.NODE_OPTIONS = `${current} ${condition}`.trim();
  return built.stdout.trim().split('\n').at(-1) ?? '';
}

/** How a `cosigner` command ended and what it printed (stdout and stderr in the order they came). */
export interface CommandRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
}

/** A `cosigner` command left running: `seen(re, from)` waits until its output after offset `from` matches. */
export interface CommandInProgress {
  /** How it ended, once it has. */
  done: Promise<CommandRun>;
  /** The output so far (stdout and stderr in the order they came). */
  out(): string;
  /**
   * Wait until the output after offset `from` matches `re`; the match and the offset just after it.
   * @throws Error with the output so far when the command exits first or `timeoutMs` passes
   */
  seen(re: RegExp, from?: number, timeoutMs?: number): Promise<{ match: RegExpMatchArray; end: number }>;
}

/** Start `cosigner <args>` in development mode, as an operator's shell would, with `env` added. */
export function spawnCosigner(args: string[], env: NodeJS.ProcessEnv = {}): CommandInProgress {
  const p = spawn(process.execPath, [COSIGNER_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, NODE_ENV: 'development', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  p.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  let exited = false;
  const done = new Promise<CommandRun>((res) =>
    p.once('exit', (code, signal) => {
      exited = true;
      res({ code, signal, out });
    }),
  );
  return {
    done,
    out: () => out,
    seen: async (re, from = 0, timeoutMs = 180_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = out.slice(from).match(re);
        if (m) return { match: m, end: from + (m.index ?? 0) + m[0].length };
        if (exited || Date.now() > deadline) throw new Error(`not seen: ${re}\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

/** Run `cosigner <args>` to its end in development mode, as an operator's shell would, with `env` added. */
export function runCosigner(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CommandRun> {
  return spawnCosigner(args, env).done;
}

/**
 * The flags that point a `cosigner` lifecycle command (`account setup`, `node add`, `thresholds set`, ...) at a
 * running cluster: its Horizon, its coordinator and the admin API key's file.
 */
export function clusterFlags(c: { horizonUrl: string; coordinator: { url: string }; adminKeyFile: string }): string[] {
  return ['--horizon-url', c.horizonUrl, '--coordinator-url', c.coordinator.url, '--api-key-file', c.adminKeyFile];
}

/** Whether a process with this pid exists (signal 0 probes without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Poll `cond` every 100 ms until it holds.
 * @throws Error naming `what` when `timeoutMs` passes first
 */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A fresh temporary directory; remove it with `rm(dir, { recursive: true, force: true })`. */
export async function tempDir(prefix = 'cosigner-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface StartOptions {
  /** Arguments after `cosigner`, e.g. ['kms-emulator', '--data-dir', dir]. `--port 0 --ready-file` are added. */
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  readyTimeoutMs?: number;
  /** Node executable; defaults to the one running the tests. */
  nodePath?: string;
  /** Do not add `--port 0` (for commands that pick several ports themselves). */
  noPort?: boolean;
}

/**
 * Start `cosigner <args> --port 0 --ready-file <tmp>` as a real child process and wait until it serves.
 * Rejects with the process output if it exits or does not become ready in time.
 */
export async function startCosignerProcess(opts: StartOptions): Promise<RunningProcess> {
  const dir = await tempDir('cosigner-ready-');
  const readyFile = join(dir, 'ready.json');
  const args = [COSIGNER_BIN, ...opts.args, ...(opts.noPort ? [] : ['--port', '0']), '--ready-file', readyFile];
  const proc = spawn(opts.nodePath ?? process.execPath, args, {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((res) => {
    proc.once('exit', (code, signal) => res(code ?? (signal ? null : 0)));
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
  let ready: Record<string, unknown> | undefined;
  while (!ready) {
    if (done) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cosigner ${opts.args.join(' ')} exited before it was ready:\n${out}`);
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cosigner ${opts.args.join(' ')} was not ready in time:\n${out}`);
    }
    try {
      ready = JSON.parse(await readFile(readyFile, 'utf8')) as Record<string, unknown>;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  await rm(dir, { recursive: true, force: true });

  const stop = async (graceMs = 5_000): Promise<number | null> => {
    if (done) return exited;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  return {
    proc,
    pid: proc.pid as number,
    url: String(ready.url),
    ready,
    output: () => out,
    stop,
    kill9: async () => {
      if (!done) proc.kill('SIGKILL');
      await exited;
    },
    exited,
  };
}

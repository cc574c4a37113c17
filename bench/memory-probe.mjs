// Preloaded into every cluster child by bench/memory.bench.ts (NODE_OPTIONS=--import ...; BENCH_MEMORY=<dir>), and
// into the one-module processes of its `imports` mode. Samples process.memoryUsage() every 100 ms (an unref'd timer,
// so it never keeps a process alive) and writes <dir>/<pid>-<role>.json twice a second and at exit: the current
// figures, the peak of each (RSS is also read by the bench from /proc as VmHWM, which sees between samples), V8's
// heap spaces, and the modules the process loaded grouped by package (a module.registerHooks resolve hook, in-thread
// and synchronous, so it records ESM and CommonJS alike; `process.moduleLoadList` lists only Node's builtins), with
// the size of their source files (each module's source text stays in the heap as a string).
// BENCH_MEMORY_SNAPSHOT=1 also writes a heap snapshot <dir>/<pid>-<role>.heapsnapshot on SIGUSR2.
import { renameSync, statSync, writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { join } from 'node:path';
import v8 from 'node:v8';

const dir = process.env.BENCH_MEMORY;
if (dir) {
  const name = process.argv.slice(2).find((a) => !a.startsWith('-')) ?? 'main';
  const nodeId = process.argv.includes('--config')
    ? (process.argv[process.argv.indexOf('--config') + 1] ?? '').split('/').slice(-2, -1)[0]
    : undefined;
  const role = process.env.BENCH_MEMORY_ROLE ?? nodeId ?? name;
  const file = join(dir, `${process.pid}-${role}.json`);

  /** package name (or workspace folder) -> modules loaded from it, and the bytes of their source files. */
  const modules = new Map();
  const bytes = new Map();
  const packageOf = (url) => {
    if (url.startsWith('node:')) return 'node:';
    const path = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
    const nm = path.lastIndexOf('/node_modules/');
    if (nm >= 0) {
      const rest = path.slice(nm + 14).split('/');
      return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
    }
    const ws = /\/(packages|services|bench)\/([^/]+)\//.exec(path);
    return ws ? `${ws[1]}/${ws[2]}` : path;
  };
  const seen = new Set();
  registerHooks({
    resolve(specifier, context, next) {
      const r = next(specifier, context);
      if (!seen.has(r.url)) {
        seen.add(r.url);
        const p = packageOf(r.url);
        modules.set(p, (modules.get(p) ?? 0) + 1);
        if (r.url.startsWith('file:')) {
          try {
            bytes.set(p, (bytes.get(p) ?? 0) + statSync(new URL(r.url)).size);
          } catch {
            // A module that is not a plain file: counted, not sized.
          }
        }
      }
      return r;
    },
  });

  const keys = ['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers'];
  const mb = (n) => Math.round(n / 104857.6) / 10;
  const peak = Object.fromEntries(keys.map((k) => [k, 0]));
  let now = peak;
  const sample = () => {
    const m = process.memoryUsage();
    now = Object.fromEntries(keys.map((k) => [k, mb(m[k])]));
    for (const k of keys) peak[k] = Math.max(peak[k], now[k]);
  };
  const write = () => {
    sample();
    const spaces = Object.fromEntries(
      v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: mb(s.space_size), used: mb(s.space_used_size) }]),
    );
    const byPackage = Object.fromEntries([...modules].sort((a, b) => b[1] - a[1]));
    const sourceKb = Object.fromEntries(
      [...bytes].sort((a, b) => b[1] - a[1]).map(([p, n]) => [p, Math.round(n / 1024)]),
    );
    try {
      writeFileSync(
        file,
        JSON.stringify({ role, pid: process.pid, now, peak, spaces, modules: seen.size, byPackage, sourceKb }),
      );
    } catch {
      // The bench removed the folder: nothing left to report to.
    }
  };
  setInterval(sample, 100).unref();
  setInterval(write, 500).unref();
  process.on('exit', write);
  if (process.env.BENCH_MEMORY_SNAPSHOT === '1') {
    // Written under another name and renamed, so that a reader polling for the file sees it whole.
    process.on('SIGUSR2', () => {
      const to = join(dir, `${process.pid}-${role}.heapsnapshot`);
      renameSync(v8.writeHeapSnapshot(`${to}.part`), to);
    });
  }
}

/**
 * Summarise V8 CPU profiles (`node --cpu-prof`, e.g. from `BENCH_PROFILE=<dir> pnpm bench cluster`): self time
 * per function and per package/file, largest first. Run: `pnpm exec tsx bench/profile-summary.ts <dir|file>...
 * [--top N] [--match <substring of the file name>] [--last S]`. `--last S` keeps only the samples of the last S
 * seconds of each profile (the steady-state load phase, not start-up). The built-in profiler only: no extra tool.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const matchAt = args.indexOf('--match');
const match = matchAt >= 0 ? args[matchAt + 1] : undefined;
const lastAt = args.indexOf('--last');
const lastUs = lastAt >= 0 ? Number(args[lastAt + 1]) * 1e6 : Number.POSITIVE_INFINITY;
// The value after each flag that was given (an absent flag's index is -1: it must not drop the first argument).
const values = new Set([topAt, matchAt, lastAt].filter((at) => at >= 0).map((at) => at + 1));
const paths = args.filter((a, i) => !a.startsWith('--') && !values.has(i));
if (paths.length === 0) {
  console.error('usage: tsx bench/profile-summary.ts <dir|file.cpuprofile>... [--top N] [--match text]');
  process.exit(2);
}

/** Where a frame's code lives: a package name under node_modules, a workspace path, or a node builtin. */
function owner(url: string): string {
  if (url === '') return '(native/V8)';
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 14).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const ws = /\/(packages|services|bench)\/([^/]+)\/(.*)$/.exec(url);
  return ws ? `${ws[1]}/${ws[2]}/${ws[3]}` : url.replace(/^file:\/\//, '');
}

const files = paths.flatMap((p) =>
  statSync(p).isDirectory()
    ? readdirSync(p)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(p, f))
    : [p],
);
for (const file of files) {
  if (match && !basename(file).includes(match)) continue;
  const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const from = prof.endTime - lastUs;
  let t = prof.startTime;
  let totalUs = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    t += dt;
    if (t < from) return;
    totalUs += dt;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  });
  const perFn = new Map<string, number>();
  const perOwner = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    const fn = `${functionName || '(anonymous)'} ${owner(url)}:${lineNumber + 1}`;
    perFn.set(fn, (perFn.get(fn) ?? 0) + us);
    const o = ['(idle)', '(program)', '(garbage collector)'].includes(functionName) ? functionName : owner(url);
    perOwner.set(o, (perOwner.get(o) ?? 0) + us);
  }
  const busy = totalUs - (perOwner.get('(idle)') ?? 0);
  const pct = (us: number): string => `${((us * 100) / busy).toFixed(1).padStart(5)}%`;
  console.log(`\n${basename(file)}: ${(totalUs / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy`);
  console.log('  self time by package/file (share of busy time):');
  for (const [o, us] of [...perOwner]
    .filter(([o]) => o !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    console.log(`  ${pct(us)}  ${o}`);
  }
  console.log('  self time by function:');
  for (const [fn, us] of [...perFn]
    .filter(([f]) => !f.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    console.log(`  ${pct(us)}  ${fn}`);
  }
}

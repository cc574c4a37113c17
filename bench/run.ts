/**
 * `pnpm bench [name...]`: run the benchmarks one after another, each in its own process (so one's start-up and
 * memory never colour another's figures), printing their figures. Names: stellar, keys, kms, cluster, store, rotation, frost, frost-cluster, memory (default: all).
 * Each writes bench/results/<name>.json. Settings per bench are environment variables (see bench/README.md).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCHES = ['stellar', 'keys', 'kms', 'cluster', 'store', 'rotation', 'frost', 'frost-cluster', 'memory'] as const;
const dir = fileURLToPath(new URL('.', import.meta.url));
const asked = process.argv.slice(2);
const unknown = asked.filter((a) => !(BENCHES as readonly string[]).includes(a));
if (unknown.length > 0) {
  console.error(`unknown bench ${unknown.join(', ')}; choose from ${BENCHES.join(', ')}`);
  process.exit(2);
}
let failed = 0;
for (const name of asked.length > 0 ? asked : BENCHES) {
  console.log(`\n### bench: ${name}`);
  // The tsx CLI, as `pnpm exec tsx bench/<name>.bench.ts` runs it (pnpm puts node_modules/.bin on PATH).
  const r = spawnSync('tsx', [join(dir, `${name}.bench.ts`)], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench ${name} failed (exit ${r.status ?? r.signal})`);
    failed++;
  }
}
process.exit(failed > 0 ? 1 : 0);

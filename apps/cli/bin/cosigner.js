#!/usr/bin/env node
// The `cosigner` executable. Two ways to run, chosen by module resolution itself:
// - default: the TypeScript sources through tsx's loader (Node 22 and 24 alike), so there is no build step between
//   a change and a running process. Tests, `pnpm start` and the benchmarks' tsx mode run this way.
// - started with `--conditions=cosigner-dist` (on the command line or in NODE_OPTIONS, which child processes
//   inherit): every workspace package resolves to its `dist/*.js` (`pnpm build`, scripts/build.ts) and runs as
//   plain JavaScript with no loader, which saves what tsx costs (85-95 MB per node, measured on Node 20: its loader
//   thread, the transformed modules with their inline source maps; bench/README.md "Build") and its start-up.
//   The production image runs this way. A missing dist, or one built from other sources than those in src/, is
//   refused: dist is never used unless asked for, and never when it is stale.
// Before either, a runtime below the project's Node.js floor is refused with one line (node-check.js).
import { fileURLToPath } from 'node:url';
import { nodeProblem } from './node-check.js';

const tooOld = nodeProblem(process.versions);
if (tooOld) {
  process.stderr.write(`cosigner: ${tooOld}\n`);
  process.exit(1);
}

const entry = import.meta.resolve('@cosigner/cli/main');
if (entry === new URL('../dist/main.js', import.meta.url).href) {
  const { distProblem } = await import('./dist-check.js');
  const problem = distProblem(fileURLToPath(new URL('../../..', import.meta.url)));
  if (problem) {
    process.stderr.write(`cosigner: ${problem}\n`);
    process.exit(1);
  }
  const { main } = await import(entry);
  await main(process.argv);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import('../src/main.ts');
  await main(process.argv);
}

// The guard between the optional build (`pnpm build`, scripts/build.ts) and the plain-JS start in bin/cosigner.js.
// Plain JavaScript on purpose: it runs before any loader, and scripts/build.ts imports it to write the digest
// this file later checks, so both sides always hash the sources the same way.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** The export condition that selects `dist/*.js` over `src/*.ts` (every workspace package.json). */
export const DIST_CONDITION = 'cosigner-dist';
/** Written into each package's dist/ by the build: which sources it was built from. */
export const BUILD_INFO = 'BUILD.json';
/** The workspace folders whose packages are built (pnpm-workspace.yaml lists test and bench too; they have no src). */
export const PACKAGE_PARENTS = ['apps', 'packages', 'services'];

/** Every workspace package with a src/ folder, as paths relative to `root`, sorted. */
export function workspacePackages(root) {
  const out = [];
  for (const parent of PACKAGE_PARENTS) {
    let names;
    try {
      names = readdirSync(join(root, parent), { withFileTypes: true });
    } catch {
      continue;
    }
    for (const d of names) {
      if (!d.isDirectory()) continue;
      const dir = join(parent, d.name);
      if (existsSync(join(root, dir, 'package.json')) && existsSync(join(root, dir, 'src'))) out.push(dir);
    }
  }
  return out.sort();
}

/** Every file under `dir`, as '/'-separated paths relative to it, sorted (the same order on every machine). */
export function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(relative(dir, p).split('\\').join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

/** sha256 over the names and contents of every file under a package's src/: what its dist/ was built from. */
export function sourceDigest(pkgDir) {
  const src = join(pkgDir, 'src');
  const h = createHash('sha256');
  for (const f of listFiles(src)) {
    h.update(f);
    h.update('\0');
    h.update(readFileSync(join(src, f)));
    h.update('\0');
  }
  return h.digest('hex');
}

/**
 * Why the build under `root` cannot be run, or null when every package's dist/ exists and was built from the
 * sources now in its src/. A package whose src/ is absent is not compared (an image may ship dist/ alone).
 */
export function distProblem(root) {
  const fix = `run \`pnpm build\` first, or start without --conditions=${DIST_CONDITION} to run the TypeScript sources through tsx`;
  for (const pkg of workspacePackages(root)) {
    let info;
    try {
      info = JSON.parse(readFileSync(join(root, pkg, 'dist', BUILD_INFO), 'utf8'));
    } catch {
      return `this process was started with --conditions=${DIST_CONDITION} but ${pkg}/dist is missing or incomplete: ${fix}.`;
    }
    if (info.sourceDigest !== sourceDigest(join(root, pkg))) {
      return `this process was started with --conditions=${DIST_CONDITION} but ${pkg}/dist was built from other sources than ${pkg}/src (changed since the last build): ${fix}.`;
    }
  }
  return null;
}

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/**
 * The layers of the workspace, from the bottom: `packages/*` (libraries), `services/*` (one process each),
 * `apps/*` (the `cosigner` command on top of every service). An import may only point down or sideways within its
 * layer, and production code (a package's `src/`) never imports the testkit, which exists for tests.
 * This walks the imports of every file under `packages/` as text (static `import`/`export ... from`, dynamic
 * `import('...')`, `require('...')`) and the dependencies in each package.json, and names every one that breaks
 * the rule.
 */

export interface LayerViolation {
  /** The importing file or package.json, relative to the root, '/'-separated. */
  readonly file: string;
  readonly specifier: string;
  readonly why: string;
}

interface WorkspacePackage {
  readonly name: string;
  /** Relative to the root, '/'-separated, e.g. `services/coordinator`. */
  readonly dir: string;
  readonly layer: 'packages' | 'services' | 'apps';
}

const LAYERS = ['packages', 'services', 'apps'] as const;
/** The test kit's folder: helpers for tests, never a dependency of production code. */
const TESTKIT_DIR = 'packages/testkit';

function workspace(root: string): WorkspacePackage[] {
  const out: WorkspacePackage[] = [];
  for (const layer of LAYERS) {
    const parent = join(root, layer);
    if (!existsSync(parent)) continue;
    for (const d of readdirSync(parent, { withFileTypes: true })) {
      const manifest = join(parent, d.name, 'package.json');
      if (!d.isDirectory() || !existsSync(manifest)) continue;
      const { name } = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string };
      out.push({ name, dir: `${layer}/${d.name}`, layer });
    }
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name === 'dist') continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mts|cts|js|mjs|cjs)$/.test(e.name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

// Comments are blanked first so that a sentence quoting an import does not count as one.
const stripComments = (text: string): string =>
  text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`])\/\/.*$/gm, '$1');

/** Every module specifier `text` imports, re-exports, imports dynamically or requires. */
export function importSpecifiers(text: string): string[] {
  const code = stripComments(text);
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) out.push(m[1] as string);
  return out;
}

/** The imports under `root`/packages that point at a service, an app, or (from production code) the testkit. */
export function layerViolations(root: string): LayerViolation[] {
  const pkgs = workspace(root);
  const above = new Map(pkgs.filter((p) => p.layer !== 'packages').map((p) => [p.name, p]));
  const posix = (p: string): string => p.split(sep).join('/');
  const testkit = pkgs.find((p) => p.dir === TESTKIT_DIR)?.name;
  const out: LayerViolation[] = [];
  for (const pkg of pkgs.filter((p) => p.layer === 'packages')) {
    const manifest = JSON.parse(readFileSync(join(root, pkg.dir, 'package.json'), 'utf8')) as Record<
      string,
      Record<string, string> | undefined
    >;
    for (const section of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
      for (const dep of Object.keys(manifest[section] ?? {})) {
        const target = above.get(dep);
        if (target) {
          out.push({ file: `${pkg.dir}/package.json`, specifier: dep, why: `depends on ${target.dir} (${section})` });
        } else if (dep === testkit && section !== 'devDependencies' && pkg.dir !== TESTKIT_DIR) {
          out.push({ file: `${pkg.dir}/package.json`, specifier: dep, why: `production ${section} on the testkit` });
        }
      }
    }
    for (const file of sourceFiles(join(root, pkg.dir))) {
      const rel = posix(relative(root, file));
      const production = rel.startsWith(`${pkg.dir}/src/`) && pkg.dir !== TESTKIT_DIR;
      for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
        if (spec.startsWith('.')) {
          const target = posix(relative(root, resolve(dirname(file), spec)));
          const layer = LAYERS.find((l) => l !== 'packages' && target.startsWith(`${l}/`));
          if (layer) out.push({ file: rel, specifier: spec, why: `reaches into ${target} (${layer}/ sits above)` });
          else if (production && target.startsWith(`${TESTKIT_DIR}/`)) {
            out.push({ file: rel, specifier: spec, why: 'production code imports the testkit' });
          }
          continue;
        }
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string);
        const target = above.get(name);
        if (target)
          out.push({ file: rel, specifier: spec, why: `imports ${target.dir} (${target.layer}/ sits above)` });
        else if (production && name === testkit) {
          out.push({ file: rel, specifier: spec, why: 'production code imports the testkit' });
        }
      }
    }
  }
  return out;
}

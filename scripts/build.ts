/**
 * `pnpm build`: the optional build that lets a process run plain JavaScript with no loader (the production image
 * does). For every workspace package under apps/*, packages/* and services/*, each `src/**\/*.ts` is transpiled to
 * `dist/**\/*.js` (TypeScript's transpileModule: one file at a time, no type check; `pnpm typecheck` does that)
 * and every other file under src (the SQL migrations, read through `new URL('./migrations/', import.meta.url)`) is
 * copied to the same relative place. Relative `./x.ts` specifiers become `./x.js`; type-only imports go.
 *
 * Nothing picks dist up unless asked: each package.json maps `./*` to `./dist/*.js` only under the export
 * condition `cosigner-dist` (`node --conditions=cosigner-dist`, or in NODE_OPTIONS), and apps/cli/bin/cosigner.js
 * refuses a dist that is missing or was built from other sources than those now in src (the digest in
 * `dist/BUILD.json`, apps/cli/bin/dist-check.js).
 *
 * Every package is transpiled into a temporary folder first; only when all succeeded does each replace its dist/
 * (one rename), so a failed build leaves the previous one whole and a concurrent reader never sees half a tree.
 *
 *   pnpm build                          # the repository's own packages
 *   tsx scripts/build.ts --root <dir>   # another copy of the workspace (.ci/docker.sh builds its staged context)
 */
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { BUILD_INFO, listFiles, sourceDigest, workspacePackages } from '../apps/cli/bin/dist-check.js';

const COMPILER_OPTIONS: ts.CompilerOptions = {
  module: ts.ModuleKind.ESNext,
  target: ts.ScriptTarget.ES2022,
  rewriteRelativeImportExtensions: true,
  verbatimModuleSyntax: true,
  // A separate .js.map per module: used only when a process runs with --enable-source-maps, so it costs nothing
  // otherwise (an inline map would sit in every module's source string in the heap).
  sourceMap: true,
  newLine: ts.NewLineKind.LineFeed,
  // Comments would stay in every module's source string in the heap; the maps point back to the commented sources.
  removeComments: true,
};

interface Built {
  pkg: string;
  tmp: string;
  modules: number;
  assets: number;
}

function parseRoot(argv: string[]): string {
  const i = argv.indexOf('--root');
  if (i < 0) return resolve(fileURLToPath(new URL('..', import.meta.url)));
  const dir = argv[i + 1];
  if (!dir) throw new Error('--root needs a folder');
  return resolve(dir);
}

/** Transpile one package into `tmp`; diagnostics are pushed to `errors`, as `file:line:col message`. */
function buildPackage(root: string, pkg: string, tmp: string, errors: string[]): Built {
  const src = join(root, pkg, 'src');
  let modules = 0;
  let assets = 0;
  for (const file of listFiles(src)) {
    const from = join(src, file);
    if (file.endsWith('.d.ts')) continue;
    if (!file.endsWith('.ts')) {
      const to = join(tmp, file);
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(from, to);
      assets++;
      continue;
    }
    const to = join(tmp, file.replace(/\.ts$/, '.js'));
    const out = ts.transpileModule(readFileSync(from, 'utf8'), {
      compilerOptions: COMPILER_OPTIONS,
      fileName: from,
      reportDiagnostics: true,
    });
    for (const d of out.diagnostics ?? []) {
      const where =
        d.file && d.start !== undefined
          ? (() => {
              const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
              return `${relative(root, d.file.fileName)}:${line + 1}:${character + 1}`;
            })()
          : relative(root, from);
      errors.push(`${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    }
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, out.outputText);
    if (out.sourceMapText) {
      const map = JSON.parse(out.sourceMapText) as { file: string; sources: string[]; sourceRoot?: string };
      map.file = basename(to);
      map.sources = [
        relative(dirname(join(root, pkg, 'dist', file)), from)
          .split('\\')
          .join('/'),
      ];
      delete map.sourceRoot;
      writeFileSync(`${to}.map`, JSON.stringify(map));
    }
    modules++;
  }
  const info = {
    sourceDigest: sourceDigest(join(root, pkg)),
    typescript: ts.version,
    builtAt: new Date().toISOString(),
  };
  writeFileSync(join(tmp, BUILD_INFO), `${JSON.stringify(info, null, 2)}\n`);
  return { pkg, tmp, modules, assets };
}

/** Replace `<pkg>/dist` with `tmp`: the old tree is moved aside (one rename), the new one moved in, the old removed. */
function swapIn(root: string, b: Built): void {
  const dist = join(root, b.pkg, 'dist');
  const old = join(root, b.pkg, `.dist-old-${process.pid}`);
  for (let attempt = 0; ; attempt++) {
    try {
      renameSync(dist, old);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    try {
      renameSync(b.tmp, dist);
      break;
    } catch (e) {
      // Another build swapped its own dist in between our two renames: move that one aside too and retry.
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || attempt >= 5) throw e;
      rmSync(old, { recursive: true, force: true });
    }
  }
  rmSync(old, { recursive: true, force: true });
}

function main(): void {
  const started = performance.now();
  const root = parseRoot(process.argv.slice(2));
  const packages = workspacePackages(root);
  if (packages.length === 0) throw new Error(`no workspace package with a src/ folder under ${root}`);
  const errors: string[] = [];
  const built: Built[] = [];
  const tmps: string[] = [];
  try {
    for (const pkg of packages) {
      const tmp = join(root, pkg, `.dist-tmp-${process.pid}`);
      tmps.push(tmp);
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      built.push(buildPackage(root, pkg, tmp, errors));
    }
    if (errors.length > 0) {
      process.stderr.write(
        `build failed: TypeScript reported ${errors.length} problem(s); no dist/ was changed.\n${errors.map((e) => `  ${e}\n`).join('')}`,
      );
      process.exitCode = 1;
      return;
    }
    for (const b of built) swapIn(root, b);
  } finally {
    for (const tmp of tmps) rmSync(tmp, { recursive: true, force: true });
  }
  for (const b of built) console.log(`  ${b.pkg}/dist: ${b.modules} modules, ${b.assets} other files`);
  const modules = built.reduce((s, b) => s + b.modules, 0);
  console.log(
    `built ${built.length} packages (${modules} modules) under ${root} with TypeScript ${ts.version} in ${Math.round(performance.now() - started)} ms; ` +
      'run with NODE_OPTIONS=--conditions=cosigner-dist to use them',
  );
}

main();

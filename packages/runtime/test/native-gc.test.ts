import { spawn } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The native modules the services load must survive the garbage collector on every supported Node.
 *
 * From 24.19.0, Node's node_object_wrap.h (a header compiled into each addon) registers an environment cleanup hook
 * in every node::ObjectWrap and removes it in the destructor; when V8 collects such an object while no JavaScript
 * context is entered, node::RemoveEnvironmentCleanupHook CHECK-fails and the process aborts. better-sqlite3 12 built
 * its Statement and Database on ObjectWrap: a cosigner node or the coordinator could abort at any collection.
 * better-sqlite3 13 is a Node-API addon (one prebuilt binary for every Node >= 22.14, no node.h inside).
 *
 * Measured with the child below: better-sqlite3 12.11.1 built against 24.22.3's headers aborts on Node 24.19.0 in the
 * first rounds (exit 134, "Assertion failed: (env) != nullptr"); 24.22.3's runtime no longer aborts on it. So the
 * run under whatever Node runs the suite shows the installed addon survives, and the check of the binary below
 * catches an ObjectWrap addon on any runtime, including ones that do not abort.
 */
const ROOT = realpathSync(fileURLToPath(new URL('../../..', import.meta.url)));
const CHILD = fileURLToPath(new URL('./fixtures/sqlite-gc-child.mjs', import.meta.url));

/** The directory of a package as a workspace package resolves it (the services are what must survive). */
function packageDir(from: string, name: string): string {
  return dirname(createRequire(join(ROOT, from, 'package.json')).resolve(`${name}/package.json`));
}

function run(
  args: string[],
): Promise<{ status: number | null; signal: NodeJS.Signals | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, out, err }));
  });
}

/** An addon registered through Node-API, with no node::ObjectWrap cleanup hook compiled in. */
function expectNodeApiOnly(addon: string): void {
  const bytes = readFileSync(addon).toString('latin1');
  expect(bytes.includes('napi_register_module_v1'), `${addon} registers through Node-API`).toBe(true);
  expect(bytes.includes('RemoveEnvironmentCleanupHook'), `${addon} carries node::ObjectWrap's cleanup hook`).toBe(
    false,
  );
}

describe('native modules and the garbage collector', () => {
  const sqliteDirs = [
    ...new Set(['services/cosigner', 'services/coordinator'].map((s) => packageDir(s, 'better-sqlite3'))),
  ];

  it.each(sqliteDirs.map((dir) => [relative(ROOT, dir), dir]))(
    'better-sqlite3 (%s): statements collected while running, while idle and at exit',
    async (_name, dir) => {
      const data = await mkdtemp(join(tmpdir(), 'native-gc-'));
      try {
        const r = await run(['--expose-gc', CHILD, dir, data]);
        expect(r.err).not.toMatch(/Assertion failed|RemoveEnvironmentCleanupHook/);
        expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
        const report = JSON.parse(r.out.trim().split('\n').at(-1) ?? '') as {
          node: string;
          addons: string[];
          statements: number;
          databases: number;
        };
        expect(report.node).toBe(process.version);
        // 42,000 statements were made garbage before the report: the collector really destroyed them (at least the
        // 40,000 of the allocation-triggered rounds), so a clean exit means something.
        expect(report.statements).toBeGreaterThanOrEqual(40_000);
        expect(report.addons).toHaveLength(1);
        expectNodeApiOnly(report.addons[0]!);
      } finally {
        await rm(data, { recursive: true, force: true });
      }
    },
    60_000,
  );

  it('pkcs11js (the PKCS#11 backend) is a Node-API addon too', () => {
    const addon = createRequire(join(packageDir('packages/keys', 'pkcs11js'), 'package.json')).resolve(
      './build/Release/pkcs11.node',
    );
    expectNodeApiOnly(addon);
  });
});

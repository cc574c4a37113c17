import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '@cosigner/testkit/process';
import { describe, expect, it } from 'vitest';

/**
 * Supply chain (docs/threat-model.md, A8): what the repository itself can guarantee about the code it installs.
 * Every install is reproducible from the lockfile, every package is pinned by an sha512 integrity from the
 * registry (no git, tarball or path dependencies), and no dependency runs an install script unless it is named.
 */
const read = (p: string) => readFile(join(REPO_ROOT, p), 'utf8');

/** `name@version` -> its lines, for the `packages:` section of a pnpm v9 lockfile. */
function lockPackages(lock: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let inPackages = false;
  let current: string | undefined;
  for (const line of lock.split('\n')) {
    if (/^\S/.test(line)) {
      inPackages = line === 'packages:';
      current = undefined;
      continue;
    }
    if (!inPackages) continue;
    const entry = /^ {2}(\S.*):$/.exec(line);
    if (entry) {
      current = entry[1]!.replace(/^'|'$/g, '');
      out.set(current, []);
    } else if (current && line.trim()) out.get(current)!.push(line.trim());
  }
  return out;
}

async function workspaceManifests(): Promise<string[]> {
  const out = ['package.json', 'test/package.json', 'bench/package.json'];
  for (const parent of ['apps', 'packages', 'services']) {
    for (const d of await readdir(join(REPO_ROOT, parent))) out.push(`${parent}/${d}/package.json`);
  }
  return out;
}

describe('supply chain', () => {
  it('pins pnpm exactly, and CI installs only from the lockfile', async () => {
    const pkg = JSON.parse(await read('package.json')) as { packageManager: string };
    expect(pkg.packageManager).toMatch(/^pnpm@\d+\.\d+\.\d+$/);
    const ci = await read('.ci/run');
    const installs = ci.split('\n').filter((l) => /\bpnpm install\b/.test(l));
    expect(installs.length).toBeGreaterThan(0);
    for (const l of installs) expect(l).toContain('--frozen-lockfile');
  });

  it('every locked package comes from the registry with an sha512 integrity', async () => {
    const packages = lockPackages(await read('pnpm-lock.yaml'));
    expect(packages.size).toBeGreaterThan(100);
    const bad: string[] = [];
    for (const [name, lines] of packages) {
      const resolution = lines.find((l) => l.startsWith('resolution:')) ?? '';
      if (!/^resolution: \{integrity: sha512-[A-Za-z0-9+/]+=*\}$/.test(resolution)) bad.push(`${name}: ${resolution}`);
    }
    expect(bad).toEqual([]);
  });

  it('no manifest depends on a URL, git, a path or an unbounded version', async () => {
    const bad: string[] = [];
    for (const m of await workspaceManifests()) {
      const pkg = JSON.parse(await read(m).catch(() => '{}')) as Record<string, Record<string, string> | undefined>;
      for (const field of ['dependencies', 'devDependencies', 'optionalDependencies']) {
        for (const [name, spec] of Object.entries(pkg[field] ?? {})) {
          const ok = spec === 'workspace:*' || /^[\^~]?\d+\.\d+\.\d+(-[\w.]+)?$/.test(spec);
          if (!ok) bad.push(`${m} ${name}@${spec}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('runs install scripts only for the dependencies named in pnpm-workspace.yaml', async () => {
    const ws = await read('pnpm-workspace.yaml');
    expect(ws).not.toMatch(/dangerouslyAllowAllBuilds\s*:\s*true/);
    const block = /onlyBuiltDependencies:\n((?:\s+- .+\n)+)/.exec(ws);
    expect(block).not.toBeNull();
    const names = block![1]!
      .split('\n')
      .map((l) => l.replace(/^\s+- /, '').trim())
      .filter(Boolean);
    expect(names.length).toBeGreaterThan(0);
    for (const n of names) expect(n).toMatch(/^(@[a-z0-9-]+\/)?[a-z0-9.-]+$/);
  });

  it('the lockfile parser reads entries and their resolution', () => {
    const lock =
      "lockfileVersion: '9.0'\n\npackages:\n\n  'a@1.0.0':\n    resolution: {tarball: http://x}\n\n  b@2.0.0:\n    resolution: {integrity: sha512-AA==}\n\nsnapshots:\n\n  c@1.0.0: {}\n";
    expect([...lockPackages(lock)]).toEqual([
      ['a@1.0.0', ['resolution: {tarball: http://x}']],
      ['b@2.0.0', ['resolution: {integrity: sha512-AA==}']],
    ]);
  });
});

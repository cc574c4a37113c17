import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SERVICE_V8_FLAGS } from '../src/cluster.ts';

const REPO_ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '../../..');

/**
 * The service processes' V8 flags live in two places: the launcher's SERVICE_V8_FLAGS (`cosigner cluster up`, the
 * benchmarks, the end-to-end tests) and the image's entrypoint. What the benchmarks measured must be what the image
 * runs, and every flag must be one this Node accepts on its command line (V8 refuses some in NODE_OPTIONS, which is
 * why they are not set there).
 */
describe('service V8 flags', () => {
  it("the image's entrypoint runs the same flags as the launcher", () => {
    const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    const line = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(line).toBeDefined();
    expect(JSON.parse(line as string)).toEqual(['node', ...SERVICE_V8_FLAGS, '/app/apps/cli/bin/cosigner.js']);
  });

  it('this Node accepts each flag on its command line', () => {
    for (const flag of SERVICE_V8_FLAGS) {
      const r = spawnSync(process.execPath, [flag, '-e', '0'], { encoding: 'utf8' });
      expect(r.status, `${flag}: ${r.stderr}`).toBe(0);
      expect(r.stderr, flag).toBe('');
    }
    // A flag V8 does not know fails the same check, so the check can fail.
    const bad = spawnSync(process.execPath, ['--no-such-v8-flag-here', '-e', '0'], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
  });
});

import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, tempDir } from '@cosigner/testkit/process';
import { afterEach, describe, expect, it } from 'vitest';
import { importSpecifiers, layerViolations } from './layers.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tree(files: Record<string, string>): Promise<string> {
  const root = await tempDir('cosigner-layers-');
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

const manifest = (name: string, deps: Record<string, string> = {}, dev: Record<string, string> = {}): string =>
  JSON.stringify({ name, dependencies: deps, devDependencies: dev });

describe('layers: nothing in packages/ imports a service, the CLI, or (from src/) the testkit', () => {
  it('holds for this repository', () => {
    expect(layerViolations(REPO_ROOT)).toEqual([]);
  });

  it('finds static, type-only, re-exported, dynamic and required imports, and skips commented ones', () => {
    const text = [
      "import { a } from '@x/one';",
      "import type { B } from '@x/two/deep';",
      "export { c } from './three.ts';",
      "import './four.ts';",
      "const d = await import('@x/five');",
      "const e = require('six');",
      "// import { f } from '@x/seven';",
      "/* import { g } from '@x/eight'; */",
      "const url = 'http://example.com'; import {\n  h,\n} from '@x/nine';",
    ].join('\n');
    expect(importSpecifiers(text).sort()).toEqual(
      ['./four.ts', './three.ts', '@x/five', '@x/nine', '@x/one', '@x/two/deep', 'six'].sort(),
    );
  });

  it('names each kind of upward import in a made-up workspace', async () => {
    const root = await tree({
      'packages/lib/package.json': manifest('@w/lib', { '@w/svc': 'workspace:*', '@w/testkit': 'workspace:*' }),
      'packages/lib/src/a.ts': "import { x } from '@w/svc/app';\nimport { k } from '@w/testkit/process';\n",
      'packages/lib/src/b.ts': "import { y } from '../../../services/svc/src/app.ts';\n",
      'packages/lib/src/c.ts': "import { z } from '../../testkit/src/process.ts';\n",
      'packages/lib/test/a.test.ts': "import { k } from '@w/testkit/process';\nimport { run } from '@w/cli/main';\n",
      'packages/testkit/package.json': manifest('@w/testkit', { '@w/lib': 'workspace:*' }),
      'packages/testkit/src/process.ts': "import { x } from '@w/lib/a';\n",
      'packages/ok/package.json': manifest('@w/ok', { '@w/lib': 'workspace:*' }, { '@w/testkit': 'workspace:*' }),
      'packages/ok/src/ok.ts': "import { x } from '@w/lib/a';\nimport { join } from 'node:path';\n",
      'services/svc/package.json': manifest('@w/svc', { '@w/lib': 'workspace:*' }),
      'services/svc/src/app.ts': "import { x } from '@w/lib/a';\n",
      'apps/cli/package.json': manifest('@w/cli', { '@w/svc': 'workspace:*' }),
      'apps/cli/src/main.ts': "import { x } from '@w/svc/app';\n",
    });
    const found = layerViolations(root).map((v) => `${v.file} ${v.specifier}: ${v.why}`);
    expect(found.sort()).toEqual(
      [
        'packages/lib/package.json @w/svc: depends on services/svc (dependencies)',
        'packages/lib/package.json @w/testkit: production dependencies on the testkit',
        'packages/lib/src/a.ts @w/svc/app: imports services/svc (services/ sits above)',
        'packages/lib/src/a.ts @w/testkit/process: production code imports the testkit',
        'packages/lib/src/b.ts ../../../services/svc/src/app.ts: reaches into services/svc/src/app.ts (services/ sits above)',
        'packages/lib/src/c.ts ../../testkit/src/process.ts: production code imports the testkit',
        'packages/lib/test/a.test.ts @w/cli/main: imports apps/cli (apps/ sits above)',
      ].sort(),
    );
  });
});

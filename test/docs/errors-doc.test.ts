import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ERRORS_DOC, errorModules, renderCurrentDoc } from '../../scripts/errors-doc.ts';

// A documentation check, not a behaviour test: it loads only the errors.ts registries.
describe('docs/reference/errors.md', () => {
  it('lists every error code of every package, as the code declares it (run `pnpm docs:errors`)', async () => {
    expect((await errorModules()).length).toBeGreaterThanOrEqual(3);
    const expected = await renderCurrentDoc();
    const actual = await readFile(ERRORS_DOC, 'utf8');
    expect(actual).toBe(expected);
  });
});

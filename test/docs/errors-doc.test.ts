import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ERRORS_DOC, errorModules, reasonModules, renderCurrentDoc } from '../../scripts/errors-doc.ts';

// A documentation check, not a behaviour test: it loads only the modules that declare errors and reasons.
describe('docs/reference/errors.md', () => {
  it('lists every error code of every package, as the code declares it (run `pnpm docs:errors`)', async () => {
    expect((await errorModules()).length).toBeGreaterThanOrEqual(3);
    // The node's, the policy's and the wire-level (packages/protocol) decision reasons.
    expect((await reasonModules()).length).toBeGreaterThanOrEqual(3);
    const expected = await renderCurrentDoc();
    const actual = await readFile(ERRORS_DOC, 'utf8');
    expect(actual).toBe(expected);
  });
});

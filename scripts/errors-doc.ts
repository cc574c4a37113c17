/**
 * Loads every app's, package's and service's src/errors.ts and renders docs/reference/errors.md.
 * `pnpm docs:errors` writes it; test/docs/errors-doc.test.ts checks it is current.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderErrorsDoc } from '../packages/errors/src/doc.ts';
import { registeredErrors } from '../packages/errors/src/errors.ts';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
export const ERRORS_DOC = join(ROOT, 'docs/reference/errors.md');

export async function errorModules(): Promise<string[]> {
  const found: string[] = [];
  for (const top of ['apps', 'packages', 'services']) {
    for (const name of await readdir(join(ROOT, top))) {
      const src = join(ROOT, top, name, 'src');
      const files = await readdir(src).catch(() => [] as string[]);
      if (files.includes('errors.ts')) found.push(join(src, 'errors.ts'));
    }
  }
  return found.sort();
}

export async function renderCurrentDoc(): Promise<string> {
  for (const file of await errorModules()) await import(pathToFileURL(file).href);
  // the errors package's own test registries are not product errors
  return renderErrorsDoc(registeredErrors().filter((r) => !r.scope.startsWith('errors-test')));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await writeFile(ERRORS_DOC, await renderCurrentDoc());
  console.log(`wrote ${ERRORS_DOC}`);
}

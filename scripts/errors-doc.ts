/**
 * Loads every app's, package's and service's registry modules (src/errors.ts, and every src file that declares
 * decision reasons with `defineReasons`) and renders docs/reference/errors.md.
 * `pnpm docs:errors` writes it; test/docs/errors-doc.test.ts checks it is current.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderErrorsDoc } from '../packages/errors/src/doc.ts';
import { registeredErrors, registeredReasons, registeredRecordCodes } from '../packages/errors/src/errors.ts';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
export const ERRORS_DOC = join(ROOT, 'docs/reference/errors.md');

/** Where registries live: the apps (the CLI), the packages and the services. */
const TOPS = ['apps', 'packages', 'services'] as const;

export async function errorModules(): Promise<string[]> {
  const found: string[] = [];
  for (const top of TOPS) {
    for (const name of await readdir(join(ROOT, top))) {
      const src = join(ROOT, top, name, 'src');
      const files = await readdir(src).catch(() => [] as string[]);
      if (files.includes('errors.ts')) found.push(join(src, 'errors.ts'));
    }
  }
  return found.sort();
}

/** The src files (top level of src/) that declare decision reasons or record codes: `defineReasons('…'`. */
export async function reasonModules(): Promise<string[]> {
  const found: string[] = [];
  for (const top of TOPS) {
    for (const name of await readdir(join(ROOT, top))) {
      const src = join(ROOT, top, name, 'src');
      for (const file of await readdir(src).catch(() => [] as string[])) {
        if (!file.endsWith('.ts')) continue;
        if (/\bdefine(Reasons|RecordCodes)\(\s*'/.test(await readFile(join(src, file), 'utf8')))
          found.push(join(src, file));
      }
    }
  }
  return found.sort();
}

export async function renderCurrentDoc(): Promise<string> {
  for (const file of [...(await errorModules()), ...(await reasonModules())]) await import(pathToFileURL(file).href);
  // the errors package's own test registries are not product errors
  const product = <T extends { scope: string }>(r: T): boolean => !r.scope.startsWith('errors-test');
  return renderErrorsDoc(
    registeredErrors().filter(product),
    registeredReasons().filter(product),
    registeredRecordCodes().filter(product),
  );
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await writeFile(ERRORS_DOC, await renderCurrentDoc());
  console.log(`wrote ${ERRORS_DOC}`);
}

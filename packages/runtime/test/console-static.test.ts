import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONSOLE_CSP, CONSOLE_HEADERS, loadConsole } from '../src/console-static.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dirWith(files: Record<string, string>): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'console-static-'));
  dirs.push(d);
  for (const [name, text] of Object.entries(files)) await writeFile(join(d, name), text);
  return d;
}

describe('loadConsole', () => {
  it('serves exactly the listed files and the shared ones, each with its type and the CSP headers', async () => {
    const d = await dirWith({ 'index.html': '<!doctype html>', 'page.js': 'export {};', 'secret.txt': 'no' });
    const file = loadConsole(d, ['page.js']);
    expect(file('')?.body.toString()).toBe('<!doctype html>');
    expect(file('index.html')?.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(file('page.js')?.headers).toEqual({ ...CONSOLE_HEADERS, 'content-type': 'text/javascript; charset=utf-8' });
    expect(file('dom.js')?.body.toString()).toContain('export function h(');
    expect(file('console.css')?.headers['content-type']).toBe('text/css; charset=utf-8');
    for (const name of ['secret.txt', '../package.json', 'page.js/', 'PAGE.JS', 'index']) {
      expect(file(name), name).toBeUndefined();
    }
    expect(CONSOLE_CSP.split('; ')).toContain("frame-ancestors 'none'");
    expect(CONSOLE_CSP).not.toMatch(/unsafe|\*/);
  });

  it('refuses at load time a listed file that is missing or of an unknown type', async () => {
    const d = await dirWith({ 'index.html': '', 'notes.txt': '' });
    expect(() => loadConsole(d, ['missing.js'])).toThrow(/ENOENT/);
    expect(() => loadConsole(d, ['notes.txt'])).toThrow('console file notes.txt has no known content type');
  });
});

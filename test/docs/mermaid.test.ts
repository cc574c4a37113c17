import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '@cosigner/testkit/process';
import { JSDOM } from 'jsdom';
import { beforeAll, describe, expect, it } from 'vitest';

// Every ```mermaid block under docs/ must parse with mermaid's own parser (the one GitHub renders with).
// mermaid needs a DOM to load (DOMPurify); jsdom provides one.
async function markdownFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await markdownFiles(p)));
    else if (e.name.endsWith('.md')) out.push(p);
  }
  return out;
}

describe('mermaid diagrams in docs/', () => {
  let parse: (text: string) => Promise<unknown>;
  beforeAll(async () => {
    const dom = new JSDOM('<!doctype html><html><body></body></html>');
    Object.assign(globalThis, { window: dom.window, document: dom.window.document });
    const mermaid = (await import('mermaid')).default;
    parse = (text) => mermaid.parse(text);
  });

  it('has diagrams, and every one parses', async () => {
    const blocks: { file: string; text: string }[] = [];
    for (const file of [...(await markdownFiles(join(REPO_ROOT, 'docs'))), join(REPO_ROOT, 'README.md')]) {
      const md = await readFile(file, 'utf8');
      for (const m of md.matchAll(/```mermaid\n([\s\S]*?)```/g))
        blocks.push({ file: relative(REPO_ROOT, file), text: m[1]! });
    }
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    for (const b of blocks) {
      await expect(parse(b.text), b.file).resolves.toBeTruthy();
    }
  });

  it('would catch a broken diagram', async () => {
    await expect(parse('flowchart LR\n  a -->')).rejects.toThrow(/Parse error/);
  });
});

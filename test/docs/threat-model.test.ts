import { access, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '@cosigner/testkit/process';
import { describe, expect, it } from 'vitest';

/**
 * docs/threat-model.md: every row of a table with a "tests" column names the tests that demonstrate its control,
 * as `path/to/file.test.ts > words of the test title` (a describe title may come first:
 * `file.test.ts > describe words > test words`). This fails when a named file does not exist, when a named
 * title is not the title of a test in it, when a row names no test, and when an attacker section names no
 * control of the table, so the document cannot claim a control nobody tests.
 */
interface Ref {
  file: string;
  name?: string;
}

function testRefs(markdown: string): { row: string; refs: Ref[] }[] {
  const rows: { row: string; refs: Ref[] }[] = [];
  let testCol = -1;
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|')) {
      testCol = -1;
      continue;
    }
    const cells = line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((c) => c.trim());
    if (testCol < 0) {
      testCol = cells.findIndex((c) => /^tests?\b/i.test(c));
      continue;
    }
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue;
    const cell = cells[testCol] ?? '';
    const refs = [...cell.matchAll(/`([^`]+?\.test\.ts)(?:\s*>\s*([^`]+))?`/g)].map((m) =>
      m[2] ? { file: m[1]!, name: m[2].trim() } : { file: m[1]! },
    );
    rows.push({ row: cells[0] ?? line, refs });
  }
  return rows;
}

/**
 * The literal titles of describe/it/test calls in a test file. A template title (`${point}: no second ...`)
 * gives one title per literal piece between its placeholders: those words are in every title it generates.
 */
function testTitles(src: string): { kind: 'describe' | 'test'; title: string }[] {
  const out: { kind: 'describe' | 'test'; title: string }[] = [];
  const re = /\b(describe|it|test)(?:\.\w+)*\(\s*(['"`])((?:\\.|(?!\2)[^\\])*)\2/g;
  for (const m of src.matchAll(re)) {
    const kind = m[1] === 'describe' ? 'describe' : 'test';
    const pieces = m[2] === '`' ? m[3]!.split(/\$\{[^}]*\}/) : [m[3]!];
    for (const p of pieces) out.push({ kind, title: p.replace(/\\(['"`\\])/g, '$1') });
  }
  return out;
}

/**
 * The `name: '...'` properties of a module a test file imports: table-driven suites (`for (const sc of
 * scenarios) it(sc.name, ...)`) take their test titles from such a table.
 */
function tableTitles(src: string): string[] {
  return [...src.matchAll(/\bname:\s*(['"`])((?:\\.|(?!\1)[^\\])*)\1/g)].map((m) =>
    m[2]!.replace(/\\(['"`\\])/g, '$1'),
  );
}

/** The sources of the modules `src` imports by a relative path (one level), for their title tables. */
async function importedSources(file: string, src: string): Promise<string[]> {
  const out: string[] = [];
  for (const m of src.matchAll(/^import [^;]*?from '(\.{1,2}\/[^']+\.ts)';/gm)) {
    out.push(await readFile(join(dirname(file), m[1]!), 'utf8'));
  }
  return out;
}

/**
 * Does `name` (`describe words > test words`, or just test words) name a test of this file? The test words
 * match a literal test title, or, when the file builds its tests from a table (`it(sc.name, ...)`), a `name:`
 * of a module it imports.
 */
function namesATest(src: string, name: string, imported: string[] = []): boolean {
  const titles = testTitles(src);
  const parts = name.split(/\s+>\s+/);
  const last = parts.pop()!;
  const tableDriven = /\b(?:it|test)(?:\.\w+)*\(\s*\w+\.name\b/.test(src);
  const table = tableDriven ? imported.flatMap(tableTitles) : [];
  return (
    parts.every((p) => titles.some((t) => t.kind === 'describe' && t.title.includes(p))) &&
    (titles.some((t) => t.kind === 'test' && t.title.includes(last)) || table.some((t) => t.includes(last)))
  );
}

/** `### A1. ...` sections and the control ids (`C12`) each one names. */
function attackerControls(markdown: string): { attacker: string; controls: string[] }[] {
  return [...markdown.matchAll(/^### (A\d+)\b[^\n]*\n([\s\S]*?)(?=^#{2,3} |(?![\s\S]))/gm)].map((m) => ({
    attacker: m[1]!,
    controls: [...new Set([...m[2]!.matchAll(/\bC\d+\b/g)].map((c) => c[0]))],
  }));
}

describe('docs/threat-model.md', () => {
  it('parses rows and references', () => {
    const md = '| threat | test |\n| --- | --- |\n| a | `x/y.test.ts > does z` and `p.test.ts` |\n| b | none |\n';
    expect(testRefs(md)).toEqual([
      { row: 'a', refs: [{ file: 'x/y.test.ts', name: 'does z' }, { file: 'p.test.ts' }] },
      { row: 'b', refs: [] },
    ]);
  });

  it('matches a name against test titles, not against any text of the file', () => {
    const src = [
      "describe('frames', () => {",
      "  it('refuses a forged signature, a tampered payload', () => {});",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the source text of a template title, on purpose.
      '  it(`${point}: no second signature for the slot`, () => {});',
      "  it('it\\'s quoted', () => {});",
      '});',
      '// refuses replays (a comment, not a test)',
      "const s = 'approves everything';",
    ].join('\n');
    expect(namesATest(src, 'refuses a forged signature')).toBe(true);
    expect(namesATest(src, 'frames > refuses a forged signature')).toBe(true);
    expect(namesATest(src, 'no second signature for the slot')).toBe(true);
    expect(namesATest(src, '{point}: no second')).toBe(false);
    expect(namesATest(src, "it's quoted")).toBe(true);
    expect(namesATest(src, 'refuses replays')).toBe(false);
    expect(namesATest(src, 'approves everything')).toBe(false);
    expect(namesATest(src, 'other describe > refuses a forged signature')).toBe(false);
    expect(namesATest(src, 'frames')).toBe(false);
  });

  it('matches a table-driven test by the name in the table it imports, and only then', () => {
    const table =
      "export const scenarios = [{ name: 'kill one node, then restart it' }, { name: \"stop a node's KMS\" }];";
    const driven = "describe('chaos', () => {\n  for (const sc of scenarios) it(sc.name, async () => {});\n});";
    expect(namesATest(driven, 'chaos > kill one node', [table])).toBe(true);
    expect(namesATest(driven, "stop a node's KMS", [table])).toBe(true);
    expect(namesATest(driven, 'partition a node', [table])).toBe(false);
    const literal = "describe('x', () => { it('a literal title', () => {}); });";
    expect(namesATest(literal, 'kill one node', [table])).toBe(false);
  });

  it('finds the controls each attacker section names', () => {
    const md = '## Attackers\n\n### A1. API tier\nstopped by C1, C2 and C1.\n\n### A2. Node\nC3\n\n## Controls\nC9\n';
    expect(attackerControls(md)).toEqual([
      { attacker: 'A1', controls: ['C1', 'C2'] },
      { attacker: 'A2', controls: ['C3'] },
    ]);
  });

  it('links every control to a test that exists, by file and test title', async () => {
    const md = await readFile(join(REPO_ROOT, 'docs/threat-model.md'), 'utf8');
    const rows = testRefs(md);
    expect(rows.length).toBeGreaterThanOrEqual(8);
    for (const { row, refs } of rows) {
      expect(refs.length, `row "${row}" names no test`).toBeGreaterThan(0);
      for (const ref of refs) {
        const path = join(REPO_ROOT, ref.file);
        await expect(access(path), `row "${row}": ${ref.file} does not exist`).resolves.toBeUndefined();
        expect(ref.name, `row "${row}": name a test title in ${ref.file}`).toBeDefined();
        const src = await readFile(path, 'utf8');
        const ok = namesATest(src, ref.name!, await importedSources(path, src));
        expect(ok, `row "${row}": no test titled "${ref.name}" in ${ref.file}`).toBe(true);
      }
    }
  });

  it('every attacker names controls of the table, and every control row is used', async () => {
    const md = await readFile(join(REPO_ROOT, 'docs/threat-model.md'), 'utf8');
    const ids = new Set(testRefs(md).map((r) => r.row));
    const attackers = attackerControls(md);
    expect(attackers.map((a) => a.attacker)).toEqual(['A1', 'A2', 'A3', 'A4', 'A5', 'A6', 'A7', 'A8', 'A9', 'A10']);
    const used = new Set<string>();
    for (const a of attackers) {
      expect(a.controls.length, `${a.attacker} names no control`).toBeGreaterThan(0);
      for (const c of a.controls) {
        expect(ids.has(c), `${a.attacker} names ${c}, which is not a row of the controls table`).toBe(true);
        used.add(c);
      }
    }
    expect([...ids].filter((id) => !used.has(id))).toEqual([]);
  });
});

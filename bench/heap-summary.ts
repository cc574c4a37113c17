/**
 * Summarise a V8 heap snapshot (`v8.writeHeapSnapshot`, e.g. from `MEM_SNAPSHOT=1 pnpm bench memory`): the heap's
 * self size by kind of object (strings, compiled code, arrays, object shapes, closures...) and the largest groups
 * within the kinds worth splitting (objects by constructor, code by what it is, strings by where they come from).
 * Self sizes only: what each object holds itself, summed; enough to see what fills a heap, not who keeps it alive.
 * Run: `pnpm exec tsx bench/heap-summary.ts <file.heapsnapshot>... [--top N]`. The built-in format only: no extra tool.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export interface HeapSummary {
  totalMb: number;
  objects: number;
  byType: [string, number][];
  byName: Record<string, [string, number][]>;
}

const mb = (n: number): number => Math.round(n / 104857.6) / 10;

/** Group a snapshot's nodes: by node type, and within some types by name (constructor, code kind, string head). */
export function summarise(snap: Snapshot, top = 12): HeapSummary {
  const f = snap.snapshot.meta.node_fields;
  const width = f.length;
  const typeAt = f.indexOf('type');
  const nameAt = f.indexOf('name');
  const sizeAt = f.indexOf('self_size');
  const types = snap.snapshot.meta.node_types[0];
  const byType = new Map<string, number>();
  const byName = new Map<string, Map<string, number>>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!] ?? 'unknown';
    const size = snap.nodes[i + sizeAt]!;
    total += size;
    byType.set(type, (byType.get(type) ?? 0) + size);
    let key: string | undefined;
    const name = snap.strings[snap.nodes[i + nameAt]!] ?? '';
    if (type === 'object' || type === 'closure' || type === 'native' || type === 'hidden') key = name.slice(0, 60);
    else if (type === 'code') key = name.startsWith('(') ? name.slice(0, 40) : 'functions and their bytecode';
    // A module's source is one long string; name the big ones by their head, the rest by length class.
    else if (type === 'string')
      key =
        size >= 64 * 1024
          ? `one string >= 64 KB: ${name.slice(0, 40).replace(/\s+/g, ' ')}`
          : size >= 1024
            ? 'strings 1-64 KB'
            : 'strings < 1 KB';
    if (key !== undefined) {
      const m = byName.get(type) ?? new Map<string, number>();
      m.set(key, (m.get(key) ?? 0) + size);
      byName.set(type, m);
    }
  }
  const sorted = (m: Map<string, number>): [string, number][] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => [k, mb(v)]);
  return {
    totalMb: mb(total),
    objects: snap.nodes.length / width,
    byType: sorted(byType),
    byName: Object.fromEntries([...byName].map(([t, m]) => [t, sorted(m)])),
  };
}

export function summariseFile(path: string, top = 12): HeapSummary {
  return summarise(JSON.parse(readFileSync(path, 'utf8')) as Snapshot, top);
}

export function print(name: string, s: HeapSummary): void {
  console.log(`\n${name}: ${s.totalMb} MB in ${s.objects} heap objects (self sizes)`);
  console.log(`  by kind: ${s.byType.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  for (const [type, rows] of Object.entries(s.byName)) {
    console.log(`  ${type}: ${rows.map(([k, v]) => `${k || '(anonymous)'} ${v}`).join(', ')}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 12;
  const files = args.filter((a, i) => !a.startsWith('--') && (topAt < 0 || i !== topAt + 1));
  if (files.length === 0) {
    console.error('usage: tsx bench/heap-summary.ts <file.heapsnapshot>... [--top N]');
    process.exit(2);
  }
  for (const f of files) print(basename(f), summariseFile(f, top));
}

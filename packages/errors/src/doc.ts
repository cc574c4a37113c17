import type { ErrorRegistry, ReasonRegistry, RecordCodeRegistry } from './errors.ts';

const cell = (s: string): string => s.replaceAll('|', '\\|');

/**
 * Render docs/reference/errors.md from the registries: one table of error codes per package, codes sorted; then,
 * in a section of its own, one table of decision reasons per package (code, outcome, meaning); last, the record
 * codes services write about what they observed (code, meaning).
 */
export function renderErrorsDoc(
  registries: readonly ErrorRegistry<string>[],
  reasons: readonly ReasonRegistry<string>[] = [],
  records: readonly RecordCodeRegistry<string>[] = [],
): string {
  const lines = [
    '# Error codes',
    '',
    'Every error the product raises, by package. APIs answer `{ "code", "message", "details"? }` with the HTTP',
    "status shown; the CLI prints the message. Generated from each package's `src/errors.ts` by",
    '`pnpm docs:errors`; a test fails when this page and the code disagree.',
    '',
  ];
  for (const reg of [...registries].sort((a, b) => a.scope.localeCompare(b.scope))) {
    lines.push(`## ${reg.scope}`, '', '| code | HTTP | meaning |', '| --- | --- | --- |');
    for (const code of Object.keys(reg.specs).sort()) {
      const spec = reg.specs[code]!;
      lines.push(`| \`${code}\` | ${spec.status} | ${cell(spec.message)} |`);
    }
    lines.push('');
  }
  if (reasons.length > 0) renderReasons(lines, reasons);
  if (records.length > 0) renderRecords(lines, records);
  return lines.join('\n');
}

function renderReasons(lines: string[], reasons: readonly ReasonRegistry<string>[]): void {
  lines.push(
    '## Decision reasons',
    '',
    'A refusal to sign is not an error: a node answers a proposal with a decision (`approve`, `reject` or `hold`)',
    'and the reasons for it, each `{ "code", "message", "field"?, "opIndex"? }`. The outcome column is what the',
    'reason does to the decision; a reason message may be more precise than the sentence below. Generated from',
    'the `defineReasons` registries (packages/protocol for the codes other processes branch on, packages/policy',
    'for the policy, services/cosigner for the node itself).',
    '',
  );
  for (const reg of [...reasons].sort((a, b) => a.scope.localeCompare(b.scope))) {
    lines.push(`### ${reg.scope}`, '', '| code | outcome | meaning |', '| --- | --- | --- |');
    for (const code of Object.keys(reg.specs).sort()) {
      const spec = reg.specs[code]!;
      lines.push(`| \`${code}\` | ${spec.outcome} | ${cell(spec.message)} |`);
    }
    lines.push('');
  }
}

function renderRecords(lines: string[], records: readonly RecordCodeRegistry<string>[]): void {
  lines.push(
    '## Recorded codes',
    '',
    'Codes a service writes into its own records and events about what it observed: not errors it raised, not',
    "reasons a node gave. They are lower_snake_case like the network's result codes beside them (Horizon's",
    '`tx_bad_seq`, passed on verbatim). Generated from the `defineRecordCodes` registries.',
    '',
  );
  const order = (a: RecordCodeRegistry<string>, b: RecordCodeRegistry<string>) =>
    a.scope.localeCompare(b.scope) || a.title.localeCompare(b.title);
  for (const reg of [...records].sort(order)) {
    lines.push(`### ${reg.scope}: ${reg.title}`, '', '| code | meaning |', '| --- | --- |');
    for (const code of Object.keys(reg.specs).sort()) {
      lines.push(`| \`${code}\` | ${cell(reg.specs[code]!.message)} |`);
    }
    lines.push('');
  }
}

import type { ErrorRegistry } from './errors.ts';

/** Render docs/reference/errors.md from the registries: one table per package, codes sorted. */
export function renderErrorsDoc(registries: readonly ErrorRegistry<string>[]): string {
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
      lines.push(`| \`${code}\` | ${spec.status} | ${spec.message.replaceAll('|', '\\|')} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

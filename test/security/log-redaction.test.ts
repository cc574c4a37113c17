import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
// The shared logger every service builds on; imported by path because test/ has no runtime dependency of its own.
import { createLogger, REDACT_PATHS } from '../../packages/runtime/src/logger.ts';

function capture(): { dest: Writable; lines: () => Record<string, unknown>[] } {
  let out = '';
  const dest = new Writable({
    write(chunk, _e, cb) {
      out += chunk.toString();
      cb();
    },
  });
  return {
    dest,
    lines: () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const SECRET_FIELDS = [
  'secretAccessKey',
  'sessionToken',
  'secret',
  'seed',
  'pin',
  'password',
  'apiKey',
  'privateKey',
  'signedXdr',
  'envelopeXdr',
];

// What packages/runtime/src/logger.ts promises: these names are redacted at the top level of a log call and one
// level down, at every level. pino paths do not recurse, so deeper nesting is NOT covered (asserted below, so
// this page changes if the logger ever does more): services must not log whole config or credential objects.
describe('log redaction (packages/runtime/src/logger.ts)', () => {
  it('lists every secret field name at the top level and one level down', () => {
    for (const f of SECRET_FIELDS) {
      expect(REDACT_PATHS).toContain(f);
      expect(REDACT_PATHS).toContain(`*.${f}`);
    }
    expect(REDACT_PATHS).toContain('req.headers.authorization');
  });

  it('redacts each field at the top level and one level down, at info and at debug', () => {
    const { dest, lines } = capture();
    const log = createLogger({ name: 'redaction', level: 'debug', destination: dest });
    for (const f of SECRET_FIELDS) {
      log.info({ [f]: `top-${f}-value`, nested: { [f]: `nested-${f}-value` } }, 'info line');
      log.debug({ [f]: `debug-${f}-value` }, 'debug line');
    }
    log.info({ req: { headers: { authorization: 'Bearer header-value' } } }, 'request');
    const text = JSON.stringify(lines());
    expect(lines()).toHaveLength(SECRET_FIELDS.length * 2 + 1);
    expect(text).not.toMatch(/-value/);
    expect(text).toContain('[redacted]');
  });

  it('does not reach two levels down (a documented limit, not a promise)', () => {
    const { dest, lines } = capture();
    createLogger({ name: 'redaction', destination: dest }).info({ a: { b: { seed: 'two-down' } } }, 'nested twice');
    expect((lines()[0]!.a as { b: { seed: string } }).b.seed).toBe('two-down');
  });
});

import { describe, expect, it } from 'vitest';
import { asCosignerError, CosignerError, defineErrors, registeredErrors } from '../src/errors.ts';

describe('defineErrors', () => {
  const reg = defineErrors('errors-test', {
    TEST_THING_BROKEN: { status: 400, message: 'The thing is broken.' },
    TEST_OTHER: { status: 503, message: 'Other.' },
  });

  it('builds coded errors with the registry sentence and status', () => {
    const e = reg.error('TEST_THING_BROKEN', { field: 'x' });
    expect(e).toBeInstanceOf(CosignerError);
    expect(e.code).toBe('TEST_THING_BROKEN');
    expect(e.status).toBe(400);
    expect(e.message).toBe('The thing is broken.');
    expect(e.toJSON()).toEqual({ code: 'TEST_THING_BROKEN', message: 'The thing is broken.', details: { field: 'x' } });
    expect(reg.error('TEST_OTHER').toJSON()).toEqual({ code: 'TEST_OTHER', message: 'Other.' });
  });

  it('lets a case override the sentence and keeps the cause', () => {
    const cause = new Error('inner');
    const e = reg.error('TEST_OTHER', undefined, { message: 'More precise.', cause });
    expect(e.message).toBe('More precise.');
    expect(e.cause).toBe(cause);
  });

  it('recognises its own codes', () => {
    expect(reg.is(reg.error('TEST_OTHER'))).toBe(true);
    expect(reg.is(reg.error('TEST_OTHER'), 'TEST_THING_BROKEN')).toBe(false);
    expect(reg.is(new Error('x'))).toBe(false);
    expect(reg.is(new CosignerError('ELSEWHERE_CODE', 400, 'x'))).toBe(false);
  });

  it('refuses malformed and duplicate codes', () => {
    expect(() => defineErrors('bad', { 'not-a-code': { status: 400, message: 'x' } })).toThrow(/SCREAMING/);
    expect(() => defineErrors('dup', { TEST_OTHER: { status: 400, message: 'x' } })).toThrow(/both/);
  });

  it('keeps one registry per scope and lists them', () => {
    defineErrors('errors-test-2', { TEST_TWO: { status: 400, message: 'x' } });
    defineErrors('errors-test-2', { TEST_TWO: { status: 400, message: 'x' } });
    expect(registeredErrors().filter((r) => r.scope === 'errors-test-2')).toHaveLength(1);
  });

  it('wraps foreign errors', () => {
    const coded = reg.error('TEST_OTHER');
    expect(asCosignerError(coded, { code: 'F', status: 500, message: 'f' })).toBe(coded);
    const wrapped = asCosignerError(new Error('boom'), { code: 'INTERNAL', status: 500, message: 'Internal.' });
    expect(wrapped.code).toBe('INTERNAL');
    expect(wrapped.status).toBe(500);
  });
});

import { describe, expect, it } from 'vitest';
import { renderErrorsDoc } from '../src/doc.ts';
import {
  asCosignerError,
  CosignerError,
  defineErrors,
  defineReasons,
  defineRecordCodes,
  reasonOutcomes,
  registeredErrors,
  registeredReasons,
  registeredRecordCodes,
} from '../src/errors.ts';

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

describe('defineReasons', () => {
  const reasons = defineReasons('errors-test-reasons', {
    TEST_REASON_NO: { outcome: 'reject', message: 'No.' },
    TEST_REASON_WAIT: { outcome: 'hold', message: 'Wait | see.' },
  });

  it('builds decision reasons with the registry sentence, or a more precise one, and only the fields given', () => {
    expect(reasons.reason('TEST_REASON_NO')).toEqual({ code: 'TEST_REASON_NO', message: 'No.' });
    expect(reasons.reason('TEST_REASON_WAIT', { message: 'Wait for bob.', field: 'amount', opIndex: 0 })).toEqual({
      code: 'TEST_REASON_WAIT',
      message: 'Wait for bob.',
      field: 'amount',
      opIndex: 0,
    });
    expect(reasonOutcomes(reasons)).toEqual({ TEST_REASON_NO: 'reject', TEST_REASON_WAIT: 'hold' });
    expect(Object.isFrozen(reasonOutcomes(reasons))).toBe(true);
  });

  it('refuses malformed codes, unknown outcomes and a code two registries declare', () => {
    expect(() => defineReasons('errors-test-bad', { 'no-way': { outcome: 'reject', message: 'x' } })).toThrow(
      /SCREAMING/,
    );
    expect(() =>
      defineReasons('errors-test-bad', { TEST_BAD_OUTCOME: { outcome: 'approve' as 'reject', message: 'x' } }),
    ).toThrow(/not reject or hold/);
    expect(() => defineReasons('errors-test-dup', { TEST_REASON_NO: { outcome: 'reject', message: 'x' } })).toThrow(
      /both errors-test-reasons and errors-test-dup/,
    );
  });

  it('keeps one registry per scope and lists them', () => {
    defineReasons('errors-test-reasons-2', { TEST_REASON_TWO: { outcome: 'reject', message: 'x' } });
    defineReasons('errors-test-reasons-2', { TEST_REASON_TWO: { outcome: 'reject', message: 'x' } });
    expect(registeredReasons().filter((r) => r.scope === 'errors-test-reasons-2')).toHaveLength(1);
  });

  it('renders reasons in a section of their own, after the error codes, with their outcome', () => {
    const errors = defineErrors('errors-test-doc', { TEST_DOC_ERR: { status: 409, message: 'Conflict.' } });
    const doc = renderErrorsDoc([errors], [reasons]);
    expect(doc).toContain('| `TEST_DOC_ERR` | 409 | Conflict. |');
    expect(doc.indexOf('## Decision reasons')).toBeGreaterThan(doc.indexOf('TEST_DOC_ERR'));
    expect(doc).toContain('### errors-test-reasons\n\n| code | outcome | meaning |');
    expect(doc).toContain('| `TEST_REASON_NO` | reject | No. |');
    expect(doc).toContain('| `TEST_REASON_WAIT` | hold | Wait \\| see. |');
    expect(renderErrorsDoc([errors])).not.toContain('Decision reasons');
  });
});

describe('record codes', () => {
  it('declares lower_snake_case codes per scope and title, refuses others and a code in two sets of a scope', () => {
    const a = defineRecordCodes('errors-test-records', 'kinds a', { some_kind: { message: 'A kind.' } });
    expect(a.specs.some_kind.message).toBe('A kind.');
    expect(registeredRecordCodes()).toContain(a);
    // Declaring the same set again replaces it (a module loaded twice).
    const again = defineRecordCodes('errors-test-records', 'kinds a', { some_kind: { message: 'Again.' } });
    expect(registeredRecordCodes()).toContain(again);
    expect(registeredRecordCodes()).not.toContain(a);
    expect(() => defineRecordCodes('errors-test-records', 'kinds b', { SomeKind: { message: 'x' } })).toThrow(
      /not lower_snake_case/,
    );
    expect(() => defineRecordCodes('errors-test-records', 'kinds b', { some_kind: { message: 'x' } })).toThrow(
      /declared by both kinds a and kinds b/,
    );
    // Another scope may use the same code.
    expect(() => defineRecordCodes('errors-test-records-2', 'kinds', { some_kind: { message: 'x' } })).not.toThrow();
  });

  it('renders a section per scope and title after the reasons', () => {
    const records = defineRecordCodes('errors-test-render', 'things seen', {
      b_thing: { message: 'B | pipe.' },
      a_thing: { message: 'A.' },
    });
    const doc = renderErrorsDoc([], [], [records]);
    expect(doc).toContain('## Recorded codes');
    expect(doc).toContain('### errors-test-render: things seen');
    expect(doc.indexOf('`a_thing`')).toBeLessThan(doc.indexOf('`b_thing`'));
    expect(doc).toContain('| `b_thing` | B \\| pipe. |');
    expect(renderErrorsDoc([], [], [])).not.toContain('Recorded codes');
  });
});

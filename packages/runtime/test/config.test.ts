import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type } from 'typebox';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type ConfigProblem,
  deepFreeze,
  describeSchemaErrors,
  readConfigFile,
  TOP_LEVEL,
  validateConfig,
} from '../src/config.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

class Problem extends Error {
  constructor(readonly p: ConfigProblem) {
    super(`${p.field}: ${p.problem}`);
  }
}
const fail = (p: ConfigProblem): Error => new Problem(p);

function problemOf(f: () => unknown): ConfigProblem {
  try {
    f();
  } catch (e) {
    if (e instanceof Problem) return e.p;
    throw e;
  }
  throw new Error('no problem reported');
}

const Schema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
    limits: Type.Object(
      { bodyBytes: Type.Integer({ minimum: 1024, default: 4096 }) },
      { additionalProperties: false, default: {} },
    ),
    key: Type.Optional(
      Type.Union([
        Type.Object({ type: Type.Literal('local'), keyFile: Type.String() }, { additionalProperties: false }),
        Type.Object({ type: Type.Literal('kms'), keyId: Type.String() }, { additionalProperties: false }),
      ]),
    ),
  },
  { additionalProperties: false },
);

describe('validateConfig', () => {
  it('fills in the defaults, nested ones too, on a copy of the input', () => {
    const input = { name: 'a' };
    const cfg = validateConfig(Schema, input, fail);
    expect(cfg).toEqual({ name: 'a', port: 8080, limits: { bodyBytes: 4096 } });
    expect(input).toEqual({ name: 'a' });
    expect(validateConfig(Schema, { name: 'a', key: { type: 'kms', keyId: 'k' } }, fail).key).toEqual({
      type: 'kms',
      keyId: 'k',
    });
  });

  it('names the field of the first problem, nested, unknown, missing, or inside a union', () => {
    expect(problemOf(() => validateConfig(Schema, { name: 'a', limits: { bodyBytes: 1 } }, fail))).toMatchObject({
      field: 'limits.bodyBytes',
    });
    expect(problemOf(() => validateConfig(Schema, { name: 'a', surprise: 1, more: 2 }, fail))).toEqual({
      field: 'surprise',
      problem: 'unknown field(s) surprise, more',
    });
    expect(problemOf(() => validateConfig(Schema, { name: 'a', limits: { x: 1 } }, fail))).toEqual({
      field: 'limits.x',
      problem: 'unknown field(s) x',
    });
    expect(problemOf(() => validateConfig(Schema, {}, fail))).toEqual({ field: TOP_LEVEL, problem: 'missing name' });
    expect(problemOf(() => validateConfig(Schema, { name: 'a', key: { type: 'local' } }, fail))).toEqual({
      field: 'key',
      problem: 'missing keyFile',
    });
    expect(problemOf(() => validateConfig(Schema, { name: 'a', port: 'x' }, fail)).field).toBe('port');
  });

  it('refuses anything but a mapping at the top level', () => {
    for (const bad of [null, undefined, [], 'text', 3]) {
      expect(problemOf(() => validateConfig(Schema, bad, fail))).toEqual({
        field: TOP_LEVEL,
        problem: 'must be a mapping of fields',
      });
    }
  });
});

describe('describeSchemaErrors', () => {
  it('reports a lone unknown-property error, a union error, and an empty list', () => {
    expect(describeSchemaErrors([{ keyword: 'boolean', instancePath: '/a/b', message: 'schema is false' }])).toEqual({
      field: 'a.b',
      problem: 'unknown field',
    });
    expect(describeSchemaErrors([{ keyword: 'anyOf', instancePath: '/k', message: 'must match' }])).toEqual({
      field: 'k',
      problem: 'must match',
    });
    expect(describeSchemaErrors([])).toEqual({ field: TOP_LEVEL, problem: 'invalid' });
  });
});

describe('deepFreeze', () => {
  it('freezes every object and array it reaches, and leaves byte arrays alone', () => {
    const bytes = Buffer.from([1, 2]);
    const o = deepFreeze({ a: { b: [1, { c: 2 }] }, bytes });
    expect(Object.isFrozen(o)).toBe(true);
    expect(Object.isFrozen(o.a)).toBe(true);
    expect(Object.isFrozen(o.a.b)).toBe(true);
    expect(Object.isFrozen(o.a.b[1])).toBe(true);
    expect(Object.isFrozen(o.bytes)).toBe(false);
    expect(() => {
      (o.a as { b: unknown }).b = 1;
    }).toThrow(TypeError);
    expect(deepFreeze(null)).toBe(null);
    expect(deepFreeze(3)).toBe(3);
  });
});

describe('readConfigFile', () => {
  it('reads YAML and JSON, and names --config for an unreadable or unparsable file', async () => {
    const d = await mkdtemp(join(tmpdir(), 'runtime-config-'));
    dirs.push(d);
    const y = join(d, 'c.yaml');
    await writeFile(y, 'name: a\nlimits: {bodyBytes: 2048}\n');
    const read = await readConfigFile(y, fail);
    expect(read).toEqual({
      path: y,
      text: 'name: a\nlimits: {bodyBytes: 2048}\n',
      doc: { name: 'a', limits: { bodyBytes: 2048 } },
    });
    const j = join(d, 'c.json');
    await writeFile(j, '{"name": "b"}');
    expect((await readConfigFile(j, fail, 'json')).doc).toEqual({ name: 'b' });

    await writeFile(j, 'name: b');
    const notJson = await readConfigFile(j, fail, 'json').catch((e: Problem) => e.p);
    expect(notJson).toMatchObject({ field: '--config', problem: expect.stringMatching(/is not valid JSON/) });
    await writeFile(y, 'a: [1,\n');
    const notYaml = (await readConfigFile(y, fail).catch((e: Problem) => e.p)) as ConfigProblem;
    expect(notYaml).toMatchObject({ field: '--config', problem: expect.stringMatching(/is not valid YAML/) });
    expect(notYaml.cause).toBeInstanceOf(Error);
    const missing = await readConfigFile(join(d, 'missing.yaml'), fail).catch((e: Problem) => e.p);
    expect(missing).toMatchObject({ field: '--config', problem: expect.stringMatching(/cannot read .*: ENOENT/) });
  });
});

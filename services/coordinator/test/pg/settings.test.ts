import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { type PostgresStoreSettings, parseStoreSettings, poolConfig } from '../../src/pg/settings.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const PG = { type: 'postgres', url: 'postgres://coord@db.internal:5433/cosigner' };
const problem = (input: unknown, opts: Parameters<typeof parseStoreSettings>[1] = {}) => {
  try {
    parseStoreSettings(input, opts);
  } catch (e) {
    const err = e as { code: string; details: { field: string }; message: string };
    return { code: err.code, field: err.details.field, message: err.message };
  }
  throw new Error('accepted');
};

/** Parsed settings that must be PostgreSQL ones. */
const pgs = (input: unknown, opts?: Parameters<typeof parseStoreSettings>[1]) =>
  parseStoreSettings(input, opts) as Readonly<PostgresStoreSettings>;

describe('store settings', () => {
  it('defaults to the embedded SQLite store', () => {
    expect(parseStoreSettings(undefined)).toEqual({ type: 'sqlite' });
    // `store:` left empty in YAML is null: the default too.
    expect(parseStoreSettings(null)).toEqual({ type: 'sqlite' });
    expect(parseStoreSettings({ type: 'sqlite' })).toEqual({ type: 'sqlite' });
    expect(Object.isFrozen(parseStoreSettings(undefined))).toBe(true);
  });

  it('PostgreSQL: defaults applied, relative files resolved against the config directory, frozen', () => {
    const s = parseStoreSettings(
      { ...PG, passwordFile: 'secrets/pg.pw', tls: { caFile: 'ca.pem', certFile: '/abs/c.pem', keyFile: 'k.pem' } },
      { baseDir: '/etc/cosigner' },
    );
    expect(s).toEqual({
      ...PG,
      passwordFile: '/etc/cosigner/secrets/pg.pw',
      tls: {
        mode: 'verify-full',
        caFile: '/etc/cosigner/ca.pem',
        certFile: '/abs/c.pem',
        keyFile: '/etc/cosigner/k.pem',
      },
      poolSize: 10,
      connectTimeoutMs: 5000,
      statementTimeoutMs: 15_000,
      leaseMs: 10_000,
    });
    expect(Object.isFrozen(s) && Object.isFrozen((s as { tls: object }).tls)).toBe(true);
    expect(parseStoreSettings({ ...PG, passwordEnv: 'PGPASS', tls: { mode: 'require' } })).toMatchObject({
      passwordEnv: 'PGPASS',
      tls: { mode: 'require' },
    });
  });

  it('refuses a password in the URL, naming the field, without echoing the password', () => {
    const p = problem({ ...PG, url: 'postgres://coord:hunter2@db.internal/cosigner' }, { field: 'store' });
    expect(p).toMatchObject({ code: 'COORD_BAD_CONFIG', field: 'store.url' });
    expect(p.message).toMatch(/carries a password/);
    expect(p.message).not.toContain('hunter2');
  });

  it('names the field of every other mistake', () => {
    const cases: [unknown, string, RegExp][] = [
      [{ type: 'mysql' }, 'store.type', /sqlite or postgres/],
      [{ type: 'sqlite', path: 'x' }, 'store.path', /unknown field/],
      [{ type: 'postgres' }, 'store', /missing url/],
      [{ ...PG, poolSize: 0 }, 'store.poolSize', /./],
      [{ ...PG, tls: { mode: 'prefer' } }, 'store.tls.mode', /./],
      [{ ...PG, url: 'not a url' }, 'store.url', /not a URL/],
      [{ ...PG, url: 'mysql://u@h/d' }, 'store.url', /postgres:\/\//],
      [{ ...PG, url: 'postgres://u@h/d?sslmode=disable' }, 'store.url', /query options/],
      [{ ...PG, url: 'postgres://u@h/d?password=x' }, 'store.url', /query options/],
      [{ ...PG, url: 'postgres:///d' }, 'store.url', /no host/],
      [{ ...PG, url: 'postgres://h/d' }, 'store.url', /no user/],
      [{ ...PG, url: 'postgres://u@h' }, 'store.url', /no database/],
      [{ ...PG, passwordFile: 'a', passwordEnv: 'B' }, 'store.passwordEnv', /not both/],
      [{ ...PG, passwordEnv: 'not-a-name' }, 'store.passwordEnv', /./],
      [{ ...PG, tls: { certFile: 'c.pem' } }, 'store.tls.keyFile', /go together/],
      [{ ...PG, tls: { mode: 'disable', caFile: 'ca.pem' } }, 'store.tls.mode', /TLS files/],
    ];
    for (const [input, field, message] of cases) {
      const p = problem(input);
      expect(p.code, JSON.stringify(input)).toBe('COORD_BAD_CONFIG');
      expect(p.field, JSON.stringify(input)).toBe(field);
      expect(p.message, JSON.stringify(input)).toMatch(message);
    }
  });

  it('production: no TLS only to a loopback host', () => {
    const off = { ...PG, tls: { mode: 'disable' } };
    expect(problem(off, { production: true })).toMatchObject({ field: 'store.tls.mode' });
    expect(parseStoreSettings(off)).toMatchObject({ tls: { mode: 'disable' } });
    for (const host of ['127.0.0.1', 'localhost', '[::1]'])
      expect(parseStoreSettings({ ...off, url: `postgres://u@${host}/d` }, { production: true })).toMatchObject({
        type: 'postgres',
      });
  });
});

describe('pool configuration', () => {
  it('reads the password from a private file or from the environment, never from the URL', async () => {
    const d = await tempDir('coord-pgset-');
    dirs.push(d);
    const pw = join(d, 'pg.pw');
    await writeFile(pw, 's3cret-value\n', { mode: 0o600 });
    const fromFile = await poolConfig(pgs({ ...PG, passwordFile: pw, tls: { mode: 'disable' } }));
    expect(fromFile).toMatchObject({
      host: 'db.internal',
      port: 5433,
      user: 'coord',
      database: 'cosigner',
      password: 's3cret-value',
      ssl: false,
      max: 10,
      connectionTimeoutMillis: 5000,
      statement_timeout: 15_000,
    });
    const fromEnv = await poolConfig(
      pgs({
        ...PG,
        url: 'postgres://coord@[::1]/cosigner',
        passwordEnv: 'PGPW',
        tls: { mode: 'require' },
      }),
      { PGPW: 'from-env' },
    );
    expect(fromEnv).toMatchObject({
      host: '::1',
      port: 5432,
      password: 'from-env',
      ssl: { rejectUnauthorized: false },
    });
    const none = await poolConfig(pgs(PG));
    expect(none.password).toBeUndefined();
    expect(none.ssl).toEqual({ rejectUnauthorized: true });

    await chmod(pw, 0o644);
    await expect(poolConfig(pgs({ ...PG, passwordFile: pw }))).rejects.toThrow(
      expect.objectContaining({
        code: 'COORD_BAD_CONFIG',
        details: expect.objectContaining({ field: 'store.passwordFile' }),
      }),
    );
    await writeFile(pw, '', { mode: 0o600 });
    await chmod(pw, 0o600);
    await expect(poolConfig(pgs({ ...PG, passwordFile: pw }))).rejects.toThrow(/is empty/);
    await expect(poolConfig(pgs({ ...PG, passwordFile: join(d, 'missing') }))).rejects.toThrow(/cannot read .*ENOENT/);
    await expect(poolConfig(pgs({ ...PG, passwordEnv: 'UNSET_VAR' }), {})).rejects.toThrow(
      /UNSET_VAR is unset or empty/,
    );
  });

  it('reads the TLS files; the client key must be private', async () => {
    const d = await tempDir('coord-pgset-');
    dirs.push(d);
    await writeFile(join(d, 'ca.pem'), 'CA', { mode: 0o644 });
    await writeFile(join(d, 'c.pem'), 'CERT', { mode: 0o644 });
    await writeFile(join(d, 'k.pem'), 'KEY', { mode: 0o600 });
    const tls = { caFile: 'ca.pem', certFile: 'c.pem', keyFile: 'k.pem' };
    const cfg = await poolConfig(pgs({ ...PG, tls }, { baseDir: d }));
    expect(cfg.ssl).toEqual({ rejectUnauthorized: true, ca: 'CA', cert: 'CERT', key: 'KEY' });
    await chmod(join(d, 'k.pem'), 0o640);
    await expect(poolConfig(pgs({ ...PG, tls }, { baseDir: d }))).rejects.toThrow(/store\.tls\.keyFile/);
  });
});

describe('the store setting in the coordinator config', () => {
  it('SQLite by default; a postgres section checked with the config (paths against its directory, field named)', () => {
    expect(parseConfig({}).store).toEqual({ type: 'sqlite' });
    const cfg = parseConfig(
      { store: { ...PG, passwordFile: 'pg.pw' } },
      { baseDir: '/etc/cosigner', env: { NODE_ENV: 'development' } },
    );
    expect(cfg.store).toMatchObject({ type: 'postgres', passwordFile: '/etc/cosigner/pg.pw', leaseMs: 10_000 });
    expect(Object.isFrozen(cfg.store)).toBe(true);
    expect(() => parseConfig({ store: { ...PG, url: 'postgres://coord:secret@db/cosigner' } })).toThrow(
      expect.objectContaining({ code: 'COORD_BAD_CONFIG', details: expect.objectContaining({ field: 'store.url' }) }),
    );
    // Production mode reaches the store check: no TLS to a remote host is refused there only.
    const plain = { store: { ...PG, tls: { mode: 'disable' } } };
    expect(parseConfig(plain).store).toMatchObject({ tls: { mode: 'disable' } });
    expect(() => parseConfig({ ...plain, mode: 'production' }, { env: {} })).toThrow(/store\.tls\.mode/);
  });
});

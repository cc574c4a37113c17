import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateIdentity } from '@cosigner/protocol/identity';
import { afterAll, describe, expect, it } from 'vitest';
import { assertProductionSafe, isLoopback, loadConfig, parseConfig } from '../src/config.ts';
import { crashPointFromEnv } from '../src/node.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const coordKey = generateIdentity().identity.publicKeyB64;

function base(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    nodeId: 'node-a',
    dataDir: 'data',
    coordinator: { url: 'ws://127.0.0.1:9', publicKeys: [coordKey] },
    network: 'Test SDF Network ; September 2015',
    key: { type: 'local', keyFile: 'k.key' },
    policy: 'policy.yaml',
    ...over,
  };
}

function codeAndMessage(f: () => unknown): { code?: string; message?: string } {
  try {
    f();
  } catch (e) {
    return e as { code?: string; message?: string };
  }
  return {};
}

describe('node config', () => {
  it('applies defaults, resolves paths against the file, applies flags, freezes', () => {
    const c = parseConfig(base(), { baseDir: '/etc/node', overrides: { port: 7400, host: '::1' } });
    expect(c).toMatchObject({
      mode: 'development',
      dataDir: '/etc/node/data',
      identityKeyFile: '/etc/node/data/identity.pem',
      policy: '/etc/node/policy.yaml',
      key: { type: 'local', keyFile: '/etc/node/k.key' },
      admin: { host: '::1', port: 7400 },
      limits: { slotGraceSeconds: 60, reconnectMaxMs: 10_000, maxSkewMs: 30_000 },
      production: false,
      logLevel: 'info',
    });
    expect(c.coordinatorKeys[0]?.toString('base64')).toBe(coordKey);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.admin)).toBe(true);
    const o = parseConfig(base({ identityKeyFile: '/abs/id.pem', admin: { tokenFile: 'tok' } }), {
      baseDir: '/b',
      overrides: { dataDir: '/d', mode: 'production' },
    });
    expect(o).toMatchObject({
      dataDir: '/d',
      identityKeyFile: '/abs/id.pem',
      production: true,
      admin: { tokenFile: '/b/tok' },
    });
    const hsm = parseConfig(
      base({ key: { type: 'pkcs11', module: 'lib.so', tokenLabel: 't', keyIdHex: '01', pinFile: 'pin' } }),
      { baseDir: '/h' },
    );
    expect(hsm.key).toMatchObject({ module: '/h/lib.so', pinFile: '/h/pin' });
    expect(parseConfig(base(), { baseDir: '/', env: { NODE_ENV: 'production' } }).production).toBe(true);
  });

  it('names the offending field', () => {
    const cases: [unknown, RegExp][] = [
      [[], /YAML mapping/],
      [base({ nodeId: 'bad id!' }), /nodeId/],
      [base({ extra: 1 }), /unknown field\(s\) extra/],
      [Object.fromEntries(Object.entries(base()).filter(([k]) => k !== 'network')), /missing network/],
      [base({ coordinator: { url: 'http://x', publicKeys: [coordKey] } }), /coordinator\.url/],
      [base({ coordinator: { url: 'ws://x', publicKeys: ['nope'] } }), /coordinator\.publicKeys\.0/],
      [base({ key: { type: 'local' } }), /key/],
      [base({ limits: { slotGraceSeconds: -1 } }), /limits\.slotGraceSeconds/],
    ];
    for (const [input, re] of cases) {
      const e = codeAndMessage(() => parseConfig(input, { baseDir: '/' }));
      expect(e.code).toBe('NODE_CONFIG_INVALID');
      expect(e.message).toMatch(re);
    }
  });

  it('loads a YAML file and reports unreadable or invalid files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cosigner-config-'));
    dirs.push(dir);
    const f = join(dir, 'node.yaml');
    await writeFile(
      f,
      `nodeId: node-a\ndataDir: data\ncoordinator: {url: 'ws://127.0.0.1:1', publicKeys: ['${coordKey}']}\nnetwork: n\nkey: {type: local, keyFile: k}\npolicy: p.yaml\n`,
    );
    const c = await loadConfig(f, { port: 1 });
    expect(c).toMatchObject({ configFile: f, dataDir: join(dir, 'data'), admin: { port: 1 } });
    expect(c.configSha256).toMatch(/^[0-9a-f]{64}$/);
    await expect(loadConfig(join(dir, 'missing.yaml'))).rejects.toMatchObject({ code: 'NODE_CONFIG_INVALID' });
    await writeFile(join(dir, 'bad.yaml'), 'a: [');
    await expect(loadConfig(join(dir, 'bad.yaml'))).rejects.toThrow(/not valid YAML/);
  });

  it('production mode refuses the local backend, static KMS keys, readable files, an open admin API, plain ws', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cosigner-prod-'));
    dirs.push(dir);
    const cfgFile = join(dir, 'node.yaml');
    const ledger = join(dir, 'ledger.sqlite');
    const identity = join(dir, 'identity.pem');
    for (const f of [cfgFile, ledger, identity]) await writeFile(f, 'x', { mode: 0o644 });
    const c = parseConfig(
      base({
        mode: 'production',
        identityKeyFile: identity,
        coordinator: { url: 'ws://coordinator.example:443', publicKeys: [coordKey] },
        admin: { host: '0.0.0.0' },
      }),
      { baseDir: dir, configFile: cfgFile },
    );
    const err = (await assertProductionSafe(c, { ledger }).catch((e: unknown) => e)) as {
      code: string;
      details: { problems: string[] };
    };
    expect(err.code).toBe('NODE_CONFIG_UNSAFE');
    expect(err.details.problems.join('\n')).toMatch(/local is for development only/);
    expect(err.details.problems.join('\n')).toMatch(/admin\.tokenFile is not set \(the admin API at 0\.0\.0\.0/);
    expect(err.details.problems.join('\n')).toMatch(/wss/);
    expect(err.details.problems.join('\n')).toMatch(/config file .* readable by others/);
    expect(err.details.problems.join('\n')).toMatch(/identity key .* readable/);
    expect(err.details.problems.join('\n')).toMatch(/signing ledger .* readable/);
    const kms = parseConfig(
      base({
        mode: 'production',
        key: { type: 'aws-kms', keyId: 'k', region: 'r', credentials: { accessKeyId: 'a', secretAccessKey: 's' } },
      }),
      { baseDir: dir },
    );
    await expect(assertProductionSafe(kms)).rejects.toThrow(/static keys/);
    for (const f of [cfgFile, ledger, identity]) await chmod(f, 0o600);
    const tokenFile = join(dir, 'admin.token');
    await writeFile(tokenFile, 'token', { mode: 0o600 });
    const good = parseConfig(
      base({
        mode: 'production',
        identityKeyFile: identity,
        key: { type: 'aws-kms', keyId: 'k', region: 'r' },
        coordinator: { url: 'wss://c.example', publicKeys: [coordKey] },
        admin: { tokenFile },
      }),
      { baseDir: dir, configFile: cfgFile },
    );
    await expect(assertProductionSafe(good, { ledger: join(dir, 'absent.sqlite') })).resolves.toBeUndefined();
    await expect(assertProductionSafe(parseConfig(base(), { baseDir: dir }))).resolves.toBeUndefined(); // development
    expect(isLoopback('127.0.0.2')).toBe(true);
    expect(isLoopback('10.0.0.1')).toBe(false);
  });

  it('production mode requires the admin token on loopback too (a browser reaches loopback through DNS rebinding)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cosigner-prod-'));
    dirs.push(dir);
    const c = parseConfig(
      base({
        mode: 'production',
        key: { type: 'aws-kms', keyId: 'k', region: 'r' },
        coordinator: { url: 'wss://c.example', publicKeys: [coordKey] },
        admin: { host: '127.0.0.1', allowedHosts: ['node-0'] },
      }),
      { baseDir: dir },
    );
    expect(c.admin.allowedHosts).toEqual(['node-0']);
    await expect(assertProductionSafe(c)).rejects.toThrow(/admin\.tokenFile is not set/);
  });

  it('loopback means an IP literal in 127.0.0.0/8, ::1 or localhost; 127.evil.example is a name like any other', async () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) {
      expect(isLoopback(h), h).toBe(true);
    }
    for (const h of [
      '127.evil.example',
      '127.0.0.1.nip.io',
      '127.',
      '128.0.0.1',
      '10.0.0.1',
      '::2',
      'localhost.evil',
    ]) {
      expect(isLoopback(h), h).toBe(false);
    }
    const dir = await mkdtemp(join(tmpdir(), 'cosigner-prod-'));
    dirs.push(dir);
    const tokenFile = join(dir, 'admin.token');
    await writeFile(tokenFile, 'token', { mode: 0o600 });
    const withUrl = (url: string) =>
      parseConfig(
        base({
          mode: 'production',
          key: { type: 'aws-kms', keyId: 'k', region: 'r' },
          coordinator: { url, publicKeys: [coordKey] },
          admin: { tokenFile },
        }),
        { baseDir: dir },
      );
    await expect(assertProductionSafe(withUrl('ws://127.evil.example:8080'))).rejects.toThrow(/wss/);
    await expect(assertProductionSafe(withUrl('ws://127.0.0.1:8080'))).resolves.toBeUndefined();
    await expect(assertProductionSafe(withUrl('ws://[::1]:8080'))).resolves.toBeUndefined();
    await expect(assertProductionSafe(withUrl('ws://localhost:8080'))).resolves.toBeUndefined();
  });

  it('takes several coordinator URLs (coordinator.urls), or one (coordinator.url), never both, none or a repeat', async () => {
    const one = parseConfig(base(), { baseDir: '/' });
    expect(one.coordinator).toEqual({ urls: ['ws://127.0.0.1:9'], publicKeys: [coordKey], field: 'coordinator.url' });
    const urls = ['ws://127.0.0.1:9', 'wss://replica-b.example/base'];
    const two = parseConfig(base({ coordinator: { urls, publicKeys: [coordKey] } }), { baseDir: '/' });
    expect(two.coordinator).toEqual({ urls, publicKeys: [coordKey], field: 'coordinator.urls' });
    expect(Object.isFrozen(two.coordinator.urls)).toBe(true);
    const refused: [Record<string, unknown>, RegExp][] = [
      [
        { url: 'ws://a', urls: ['ws://b'] },
        /coordinator\.urls: give coordinator\.url .* or coordinator\.urls .*not both/,
      ],
      [{}, /coordinator\.urls: missing/],
      [{ urls: [] }, /coordinator\.urls/],
      [{ urls: ['ws://a', 'http://b'] }, /coordinator\.urls\.1/],
      [{ urls: Array.from({ length: 17 }, (_, i) => `ws://h${i}`) }, /coordinator\.urls/],
      // The same coordinator however it is written: case, default port, trailing slash.
      [
        { urls: ['ws://Replica.example:80/', 'wss://b', 'ws://replica.example'] },
        /coordinator\.urls\.2: the same coordinator as coordinator\.urls\.0/,
      ],
      [{ urls: ['wss://b/x/', 'wss://b/x'] }, /coordinator\.urls\.1: the same coordinator/],
      [{ urls: ['wss://b', 'wss://user:secret@c'] }, /coordinator\.urls\.1: must not carry a user name or password/],
      [{ url: 'ws://[bad' }, /coordinator\.url: "ws:\/\/\[bad" is not a URL/],
    ];
    for (const [coordinator, re] of refused) {
      const e = codeAndMessage(() =>
        parseConfig(base({ coordinator: { ...coordinator, publicKeys: [coordKey] } }), { baseDir: '/' }),
      );
      expect(e.code, JSON.stringify(coordinator)).toBe('NODE_CONFIG_INVALID');
      expect(e.message, JSON.stringify(coordinator)).toMatch(re);
    }
    // Different paths or ports are different coordinators.
    expect(
      parseConfig(base({ coordinator: { urls: ['ws://h:1', 'ws://h:2', 'ws://h:2/b'], publicKeys: [coordKey] } }), {
        baseDir: '/',
      }).coordinator.urls,
    ).toHaveLength(3);

    // Production: plain ws:// off this host is refused for each replica, named by its index.
    const dir = await mkdtemp(join(tmpdir(), 'cosigner-prod-'));
    dirs.push(dir);
    const tokenFile = join(dir, 'admin.token');
    await writeFile(tokenFile, 'token', { mode: 0o600 });
    const prod = (coordinator: Record<string, unknown>) =>
      parseConfig(
        base({
          mode: 'production',
          key: { type: 'aws-kms', keyId: 'k', region: 'r' },
          coordinator: { ...coordinator, publicKeys: [coordKey] },
          admin: { tokenFile },
        }),
        { baseDir: dir },
      );
    const err = (await assertProductionSafe(
      prod({ urls: ['wss://a.example', 'ws://b.example', 'ws://127.0.0.1:7', 'ws://c.example'] }),
    ).catch((e: unknown) => e)) as { details: { problems: string[] } };
    expect(err.details.problems).toEqual([
      'coordinator.urls.1 must use wss:// off this host',
      'coordinator.urls.3 must use wss:// off this host',
    ]);
    await expect(assertProductionSafe(prod({ url: 'ws://b.example' }))).rejects.toThrow(
      /coordinator\.url must use wss:\/\/ off this host/,
    );
    await expect(assertProductionSafe(prod({ urls: ['wss://a.example', 'wss://b.example'] }))).resolves.toBeUndefined();
  });

  it('reads the crash hook only in development mode', () => {
    expect(crashPointFromEnv(false, { COSIGNER_CRASH_AT: 'after-sign' })).toBe('after-sign');
    expect(crashPointFromEnv(true, { COSIGNER_CRASH_AT: 'after-sign' })).toBeUndefined();
    expect(crashPointFromEnv(false, { COSIGNER_CRASH_AT: 'whenever' })).toBeUndefined();
    expect(crashPointFromEnv(false, {})).toBeUndefined();
  });
});

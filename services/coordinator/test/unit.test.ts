import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateIdentity } from '@cosigner/protocol/identity';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { authenticate, createApiKey, ensureAdminKey, hashKey, parseScopes } from '../src/apikeys.ts';
import { prepareRuntime } from '../src/app.ts';
import { apiKeyCreate, enroll, register } from '../src/command.ts';
import { loadConfig, parseConfig, TESTNET_PASSPHRASE } from '../src/config.ts';
import { accountAuthFromHorizon, classifySubmitError, explainResultCode } from '../src/horizon.ts';
import { backoffMs, ed25519Weights, isUnavailable, progress } from '../src/quorum.ts';
import { openCoordinatorDb, openSqliteStore } from '../src/store.ts';
import { proposalRecord } from './helpers.ts';

const dirs: string[] = [];
async function dir(): Promise<string> {
  const d = await tempDir('coord-unit-');
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const idKey = () => generateIdentity().identity.publicKeyB64;

describe('config', () => {
  it('embedded defaults with no file; flags override; the result is frozen', async () => {
    const c = await loadConfig(undefined, { dataDir: '/tmp/x', port: 0, network: 'N' }, {});
    expect(c.dataDir).toBe('/tmp/x');
    expect(c.port).toBe(0);
    expect(c.network).toBe('N');
    expect(c.adminKeyFile).toBe('/tmp/x/admin.key');
    expect(c.messageKeyFile).toBe('/tmp/x/message-key.pem');
    expect(c.callbackSecretFile).toBe('/tmp/x/callback.key');
    expect(c.limits.bodyBytes).toBe(256 * 1024);
    expect(c.production).toBe(false);
    expect(Object.isFrozen(c) && Object.isFrozen(c.limits)).toBe(true);
    expect(parseConfig({}).network).toBe(TESTNET_PASSPHRASE);
    // --allowed-host adds to the file's list; a malformed name is refused by field.
    expect(parseConfig({ allowedHosts: ['a'] }, { overrides: { allowedHosts: ['coordinator'] } }).allowedHosts).toEqual(
      ['a', 'coordinator'],
    );
    expect(parseConfig({}, { overrides: { allowedHosts: ['b'] } }).allowedHosts).toEqual(['b']);
    expect(() => parseConfig({ allowedHosts: ['a b'] })).toThrow(/allowedHosts\.0/);
  });

  it('reads YAML, resolves relative paths against the file, and names the offending field', async () => {
    const d = await dir();
    const f = join(d, 'c.yaml');
    const stellarKey = Keypair.random().publicKey();
    await writeFile(
      f,
      `mode: production\ndataDir: data\nmessageKeyFile: keys/m.pem\nnodes:\n  - {id: a, identityKey: "${idKey()}", stellarKey: ${stellarKey}}\ncallbacks: {secretFile: cb.key}\n`,
    );
    const c = await loadConfig(f, {}, {});
    expect(c.dataDir).toBe(join(d, 'data'));
    expect(c.messageKeyFile).toBe(join(d, 'keys/m.pem'));
    expect(c.callbackSecretFile).toBe(join(d, 'cb.key'));
    expect(c.production).toBe(true);
    expect(c.configFile).toBe(f);
    const bad = async (text: string) => {
      await writeFile(f, text);
      return loadConfig(f, {}, {}).then(
        () => 'ok',
        (e: { code: string; message: string }) => `${e.code}: ${e.message}`,
      );
    };
    expect(await bad('limits: {bodyBytes: 1}\n')).toMatch(/COORD_BAD_CONFIG: .*limits\.bodyBytes/);
    expect(await bad('surprise: 1\n')).toMatch(/surprise: unknown field/);
    expect(await bad('nodes: [{id: a}]\n')).toMatch(/nodes\.0/);
    expect(await bad(`nodes: [{id: a, identityKey: "${'A'.repeat(44)}", stellarKey: ${stellarKey}}]\n`)).toMatch(
      /nodes\.0\.identityKey/,
    );
    expect(await bad(`nodes: [{id: a, identityKey: "${idKey()}", stellarKey: G${'A'.repeat(55)}}]\n`)).toMatch(
      /nodes\.0\.stellarKey/,
    );
    const k = idKey();
    expect(
      await bad(
        `nodes: [{id: a, identityKey: "${k}", stellarKey: ${stellarKey}}, {id: a, identityKey: "${idKey()}", stellarKey: ${Keypair.random().publicKey()}}]\n`,
      ),
    ).toMatch(/duplicate node id/);
    expect(
      await bad(
        `nodes: [{id: a, identityKey: "${k}", stellarKey: ${stellarKey}}, {id: b, identityKey: "${idKey()}", stellarKey: ${stellarKey}}]\n`,
      ),
    ).toMatch(/share one Stellar key/);
    expect(await bad('- a list\n')).toMatch(/top level/);
    expect(await bad('a: [unclosed\n')).toMatch(/not valid YAML/);
    expect(await loadConfig(join(d, 'missing.yaml')).catch((e: Error) => e.message)).toMatch(/cannot read/);
  });
});

describe('store', () => {
  it('creates the database 0600 with WAL, migrates once, and keeps signatures unique per signer', async () => {
    const d = await dir();
    const s = openSqliteStore(d);
    expect((await stat(join(d, 'coordinator.db'))).mode & 0o777).toBe(0o600);
    const source = Keypair.random().publicKey();
    const rec = proposalRecord({
      idempotencyKey: 'k',
      requirements: [{ accountId: source, level: 'medium' as const, weight: 2 }],
    });
    expect(s.insertProposal(rec).created).toBe(true);
    expect(s.insertProposal({ ...rec, id: 'p2' })).toMatchObject({ created: false, proposal: { id: 'p1' } });
    const sig = { proposalId: 'p1', signerKey: source, nodeId: 'n', signature: 'c2ln', createdAt: 2 };
    expect(s.addSignature(sig)).toBe(true);
    expect(s.addSignature({ ...sig, signature: 'b3RoZXI=' })).toBe(false);
    expect(s.signatures('p1')).toHaveLength(1);
    expect(s.transition('p1', ['signed'], 'submitted')).toBe(false);
    expect(s.transition('p1', ['pending'], 'signed', { envelope: 'ENV', signedAt: 3 })).toBe(true);
    expect(s.openProposals()).toHaveLength(0);
    s.setResult('p1', { outcome: 'accepted', code: null, message: 'ok', operationCodes: [], ledger: 1, attempts: 1 });
    expect(s.getProposal('p1')).toMatchObject({
      status: 'signed',
      envelope: 'ENV',
      signedAt: 3,
      result: { outcome: 'accepted' },
    });
    expect(s.ping()).toBe(true);
    s.close();
    expect(s.ping()).toBe(false);
    s.close();
    const again = openSqliteStore(d);
    expect(again.getProposal('p1')?.envelope).toBe('ENV');
    again.close();
  });

  it('migrate is idempotent', async () => {
    const d = await dir();
    const s = openSqliteStore(d);
    s.close();
    const db = openCoordinatorDb(join(d, 'coordinator.db'));
    expect(db.pragma('user_version', { simple: true })).toBe(8);
    db.close();
    const again = openCoordinatorDb(join(d, 'coordinator.db'));
    expect(again.pragma('user_version', { simple: true })).toBe(8);
    // A file written by a newer coordinator is refused, not written to.
    again.pragma('user_version = 99');
    again.close();
    expect(() => openSqliteStore(d)).toThrow(expect.objectContaining({ code: 'COORD_NEWER_SCHEMA' }));
  });

  it('nodes: enrolment keeps counters; a Stellar key moves with a re-enrolment', async () => {
    const s = openSqliteStore(await dir());
    const k = Keypair.random().publicKey();
    s.enrollNode({ id: 'a', identityKey: 'x', stellarKey: k }, 1);
    s.countNode('a', 'approvals');
    s.enrollNode({ id: 'a', identityKey: 'x', stellarKey: k }, 5);
    expect(s.getNode('a')).toMatchObject({ approvals: 1, enrolledAt: 1 });
    s.enrollNode({ id: 'b', identityKey: 'y', stellarKey: k }, 6);
    expect(s.listNodes().map((n) => n.id)).toEqual(['b']);
    s.close();
  });

  it('atomically: everything or nothing (a throw rolls back and is rethrown); nested calls join', async () => {
    const s = openSqliteStore(await dir());
    s.enrollNode({ id: 'a', identityKey: 'x', stellarKey: Keypair.random().publicKey() }, 1);
    expect(() =>
      s.atomically(() => {
        s.countNode('a', 'approvals');
        s.atomically(() => s.countNode('a', 'rejections'));
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(s.getNode('a')).toMatchObject({ approvals: 0, rejections: 0 });
    expect(
      s.atomically(() => {
        s.countNode('a', 'approvals');
        return s.atomically(() => {
          s.countNode('a', 'rejections');
          return 7;
        });
      }),
    ).toBe(7);
    expect(s.getNode('a')).toMatchObject({ approvals: 1, rejections: 1 });
    s.close();
  });
});

describe('api keys', () => {
  it('stores only the hash, compares in constant time, checks scopes', async () => {
    const s = openSqliteStore(await dir());
    const { id, key } = await createApiKey(s, ['read']);
    expect(s.getApiKey(id)!.hash).toBe(hashKey(key));
    expect(JSON.stringify(s.getApiKey(id))).not.toContain(key.split('.')[2]);
    expect((await authenticate(s, key))?.id).toBe(id);
    expect(await authenticate(s, `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`)).toBeUndefined();
    expect(await authenticate(s, '')).toBeUndefined();
    expect(parseScopes('propose, read,read')).toEqual(['propose', 'read']);
    expect(() => parseScopes('root')).toThrow(/Unknown scope root/);
    expect(() => parseScopes(' , ')).toThrow(/At least one scope/);
    s.close();
  });

  it('ensureAdminKey creates the file 0600 once and re-registers it in a fresh database', async () => {
    const d = await dir();
    const file = join(d, 'admin.key');
    const s = openSqliteStore(join(d, 'db1'));
    expect(await ensureAdminKey(s, file)).toEqual({ created: true });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await ensureAdminKey(s, file)).toEqual({ created: false });
    const key = (await readFile(file, 'utf8')).trim();
    const fresh = openSqliteStore(join(d, 'db2'));
    expect(await authenticate(fresh, key)).toBeUndefined();
    await ensureAdminKey(fresh, file);
    expect((await authenticate(fresh, key))?.scopes).toEqual(['propose', 'read', 'admin']);
    await writeFile(file, 'nonsense', { mode: 0o600 });
    await expect(ensureAdminKey(fresh, file)).rejects.toThrow(/does not hold a coordinator API key/);
    s.close();
    fresh.close();
  });
});

describe('runtime preparation and CLI subcommands', () => {
  it('prepareRuntime creates message key, admin key and callback secret 0600, logging paths only', async () => {
    const d = await dir();
    const config = parseConfig({ dataDir: d });
    const lines: string[] = [];
    const logger = createLogger({ name: 't', destination: { write: (l: string) => lines.push(l) } });
    const rt = await prepareRuntime(config, logger);
    for (const f of [config.messageKeyFile, config.adminKeyFile, config.callbackSecretFile]) {
      expect((await stat(f)).mode & 0o777).toBe(0o600);
    }
    const admin = (await readFile(config.adminKeyFile, 'utf8')).trim();
    const log = lines.join('');
    expect(log).toContain(config.adminKeyFile);
    expect(log).not.toContain(admin);
    expect(log).not.toContain(rt.callbackSecret);
    rt.store.close();
    const again = await prepareRuntime(config, logger);
    expect(again.callbackSecret).toBe(rt.callbackSecret);
    expect(again.identity.publicKeyB64).toBe(rt.identity.publicKeyB64);
    again.store.close();
    await chmod(config.callbackSecretFile, 0o644);
    await expect(prepareRuntime(config, logger)).rejects.toThrow(/chmod 600|restrict/);
  });

  it('enroll and api-key create write to the database; bad input is refused with the flag named', async () => {
    const d = await dir();
    const out: string[] = [];
    const stellarKey = Keypair.random().publicKey();
    await enroll({ dataDir: d, nodeId: 'n1', identityKey: idKey(), stellarKey }, (s) => out.push(s));
    expect(out[0]).toContain('enrolled node n1');
    await apiKeyCreate({ dataDir: d, scopes: 'propose,read', label: 'ci' }, (s) => out.push(s));
    const created = JSON.parse(out[1]!) as { key: string; scopes: string[] };
    expect(created.scopes).toEqual(['propose', 'read']);
    const s = openSqliteStore(d);
    expect(s.getNode('n1')?.stellarKey).toBe(stellarKey);
    expect((await authenticate(s, created.key))?.label).toBe('ci');
    s.close();
    await expect(
      enroll({ dataDir: d, nodeId: 'bad id', identityKey: idKey(), stellarKey }, () => undefined),
    ).rejects.toThrow(/--node-id/);
    await expect(enroll({ dataDir: d, nodeId: 'n2', identityKey: 'abc', stellarKey }, () => undefined)).rejects.toThrow(
      /--identity-key/,
    );
    await expect(
      enroll({ dataDir: d, nodeId: 'n2', identityKey: idKey(), stellarKey: 'GABC' }, () => undefined),
    ).rejects.toThrow(/--stellar-key/);
    await expect(apiKeyCreate({ dataDir: d, scopes: 'root' }, () => undefined)).rejects.toThrow(/Unknown scope/);
  });

  it('registers `coordinator` with enroll and api-key create subcommands and checks --port', async () => {
    const program = new Command().exitOverride();
    register(program);
    const cmd = program.commands.find((c) => c.name() === 'coordinator')!;
    expect(cmd.commands.map((c) => c.name())).toEqual(['enroll', 'api-key', 'copy-to-postgres']);
    expect(cmd.helpInformation()).toContain('--horizon-url');
    cmd.configureOutput({ writeErr: () => undefined });
    const d = await dir();
    await mkdir(d, { recursive: true });
    await expect(program.parseAsync(['node', 'x', 'coordinator', '--port', '70000'])).rejects.toThrow(/--port must be/);
    const writes: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => {
      writes.push(s);
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(['node', 'x', 'coordinator', 'api-key', 'create', '--data-dir', d, '--scopes', 'read']);
      await program.parseAsync([
        'node',
        'x',
        'coordinator',
        'enroll',
        '--data-dir',
        d,
        '--node-id',
        'z',
        '--identity-key',
        idKey(),
        '--stellar-key',
        Keypair.random().publicKey(),
      ]);
    } finally {
      process.stdout.write = orig;
    }
    expect(writes.join('')).toContain('"scopes":["read"]');
    expect(writes.join('')).toContain('enrolled node z');
  });
});

describe('retry helpers', () => {
  it('backoff doubles from the base up to the cap, with half of it jittered', () => {
    expect([1, 2, 3, 4].map((a) => backoffMs(a, 100, 1000, () => 1))).toEqual([100, 200, 400, 800]);
    expect(backoffMs(5, 100, 1000, () => 1)).toBe(1000);
    expect(backoffMs(5, 100, 1000, () => 0)).toBe(500);
    expect(backoffMs(10_000, 100, 1000, () => 0.5)).toBe(750);
  });

  it('only a reject whose every reason is SIGNER_UNAVAILABLE is a transient refusal', () => {
    const u = { code: 'SIGNER_UNAVAILABLE', message: 'down' };
    const p = { code: 'POLICY_AMOUNT', message: 'too much' };
    expect(isUnavailable({ outcome: 'reject', reasons: [u] })).toBe(true);
    expect(isUnavailable({ outcome: 'reject', reasons: [u, p] })).toBe(false);
    expect(isUnavailable({ outcome: 'reject', reasons: [] })).toBe(false);
    expect(isUnavailable({ outcome: 'hold', reasons: [u] })).toBe(false);
  });
});

describe('horizon mapping and quorum helpers', () => {
  it('maps Horizon accounts, result codes and transport failures', () => {
    const id = Keypair.random().publicKey();
    const other = Keypair.random().publicKey();
    const a = accountAuthFromHorizon({
      account_id: id,
      thresholds: { low_threshold: 1, med_threshold: 2, high_threshold: 3 },
      signers: [
        { key: other, weight: 1 },
        { key: id, weight: 0 },
      ],
    });
    expect(a).toEqual({
      accountId: id,
      masterWeight: 0,
      thresholds: { low: 1, medium: 2, high: 3 },
      signers: [{ key: other, weight: 1 }],
    });
    expect(
      accountAuthFromHorizon({
        account_id: id,
        thresholds: { low_threshold: 0, med_threshold: 0, high_threshold: 0 },
        signers: [],
      }).masterWeight,
    ).toBe(0);
    expect(
      classifySubmitError({
        response: {
          status: 400,
          data: { title: 'Transaction Failed', extras: { result_codes: { transaction: 'tx_bad_seq' } } },
        },
      }),
    ).toEqual({ kind: 'rejected', code: 'tx_bad_seq', operationCodes: [], message: 'Transaction Failed' });
    expect(classifySubmitError({ response: { status: 400, data: {} } })).toMatchObject({
      kind: 'rejected',
      code: 'http_400',
      message: 'Horizon answered 400',
    });
    expect(classifySubmitError({ response: { status: 504 } })).toEqual({
      kind: 'transient',
      message: 'Horizon answered 504',
    });
    expect(classifySubmitError({ response: { status: 429 } }).kind).toBe('transient');
    expect(classifySubmitError(new Error('ECONNREFUSED'))).toEqual({ kind: 'transient', message: 'ECONNREFUSED' });
    expect(classifySubmitError({})).toEqual({ kind: 'transient', message: 'network error' });
    for (const c of [
      'tx_bad_auth',
      'tx_bad_auth_extra',
      'tx_bad_seq',
      'tx_too_late',
      'tx_too_early',
      'tx_insufficient_fee',
      'tx_insufficient_balance',
      'tx_no_source_account',
    ]) {
      expect(explainResultCode(c, [])).toContain(`(${c})`);
    }
    expect(explainResultCode('tx_failed', ['op_success', 'op_underfunded'])).toContain('op_underfunded');
    expect(explainResultCode('tx_failed', [])).toContain('tx_failed');
    expect(explainResultCode('tx_failed', ['op_bad_auth'])).toContain('op_bad_auth');
    expect(explainResultCode('tx_weird', [])).toContain('tx_weird');
  });

  it('counts master weight, clamps to 255, ignores non-ed25519 signers, reports progress per requirement', () => {
    const id = Keypair.random().publicKey();
    const k = Keypair.random().publicKey();
    const w = ed25519Weights({
      accountId: id,
      masterWeight: 300,
      thresholds: { low: 1, medium: 1, high: 1 },
      signers: [
        { key: k, weight: 2 },
        { key: `T${'A'.repeat(55)}`, weight: 1 },
        { key: Keypair.random().publicKey(), weight: 0 },
      ],
    });
    expect([...w]).toEqual([
      [id, 255],
      [k, 2],
    ]);
    const rec = {
      requirements: [{ accountId: id, level: 'low' as const, weight: 257 }],
      accounts: [
        {
          accountId: id,
          masterWeight: 1,
          thresholds: { low: 1, medium: 1, high: 1 },
          signers: [{ key: k, weight: 2 }],
        },
      ],
    };
    expect(progress(rec as never, new Set([k]))).toEqual([
      { accountId: id, level: 'low', weight: 257, collected: 2, met: false, signers: [k] },
    ]);
  });
});

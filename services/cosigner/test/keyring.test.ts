import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSigner } from '@cosigner/keys/factory';
import { createLocalKey } from '@cosigner/keys/local/local-signer';
import type { Signer, SignerConfig } from '@cosigner/keys/signer';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { build } from '../src/app.ts';
import { AuditLog, verifyAuditChain } from '../src/audit.ts';
import { Keyring, successorConfig, withBase } from '../src/keyring.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics } from '../src/metrics.ts';
import { Reviewer } from '../src/review.ts';
import { NETWORK } from './helpers.ts';

const logger = createLogger({ name: 'keyring-test', level: 'silent' });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function setup(opts: { open?: (c: SignerConfig) => Promise<Signer> } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'keyring-'));
  dirs.push(dir);
  const db = openLedgerDb(ledgerPath(dir));
  const audit = new AuditLog(db);
  const open = opts.open ?? ((c: SignerConfig) => createSigner(c, { production: false }));
  const base: SignerConfig = { type: 'local', keyFile: join(dir, 'k0.key') };
  const keyring = await Keyring.open({ db, audit, logger, base, open });
  return { dir, db, audit, base, open, keyring };
}

const verify = (address: string, payload: Buffer, sig: Buffer): boolean =>
  Keypair.fromPublicKey(address).verify(payload, sig);

describe('keyring', () => {
  it('starts with the config key as active and records it', async () => {
    const { keyring, db } = await setup();
    expect(keyring.kind).toBe('local');
    expect(StrKey.isValidEd25519PublicKey(keyring.address)).toBe(true);
    expect(keyring.publicKey.length).toBe(32);
    expect(keyring.keyId).toMatch(/k0\.key$/);
    expect(keyring.entries()).toEqual([expect.objectContaining({ address: keyring.address, state: 'active' })]);
    expect(await keyring.health()).toEqual({ ok: true });
    expect(keyring.pendingAddress).toBeUndefined();
    expect(verifyAuditChain(db)).toMatchObject({ ok: true, entries: 1 });
    await keyring.close();
  });

  it('prepares, switches in one step, signs with exactly one key, and survives a reopen', async () => {
    const { keyring, dir, db, audit, base, open } = await setup();
    const old = keyring.address;
    const made = await createLocalKey(join(dir, 'k1.key'));
    const switched: string[] = [];
    keyring.onSwitch((a) => switched.push(a));
    const p = await keyring.prepare(made.keyId, { by: 'admin:op', expectedAddress: made.address });
    expect(p).toMatchObject({ address: made.address, state: 'pending' });
    // Idempotent: the same key again is returned unchanged.
    expect((await keyring.prepare(made.keyId, { by: 'admin:op' })).state).toBe('pending');
    expect(keyring.pendingAddress).toBe(made.address);
    const payload = Buffer.alloc(32, 7);
    expect(verify(old, payload, await keyring.sign(payload))).toBe(true);

    // A signature in flight completes with the old key; the switch waits for it.
    const inflight = keyring.sign(payload);
    const act = keyring.activate(made.address, 'admin:op');
    expect(verify(old, payload, await inflight)).toBe(true);
    expect((await act).state).toBe('active');
    expect(keyring.address).toBe(made.address);
    expect(switched).toEqual([made.address]);
    const after = await keyring.sign(payload);
    expect(verify(made.address, payload, after)).toBe(true);
    expect(verify(old, payload, after)).toBe(false);
    // Activating the active key again is a no-op.
    expect((await keyring.activate(made.address, 'admin:op')).state).toBe('active');
    expect(keyring.entries().map((e) => [e.address, e.state])).toEqual([
      [old, 'retired'],
      [made.address, 'active'],
    ]);
    // Members: both of our keys (retired and active) and, with an empty roster, nothing else.
    expect(keyring.roster()).toEqual([]);
    expect(keyring.isMember(old)).toBe(true);
    expect(keyring.isMember(made.address)).toBe(true);
    expect(keyring.isMember(Keypair.random().publicKey())).toBe(false);
    await keyring.close();

    // Reopened with the config still naming the old key: the keyring's active key wins.
    const again = await Keyring.open({ db, audit, logger, base, open });
    expect(again.address).toBe(made.address);
    const types = audit.tail(20).map((e) => e.type);
    expect(types).toContain('keyring.prepared');
    expect(types).toContain('keyring.activated');
    expect(verifyAuditChain(db).ok).toBe(true);
    // A retired key cannot come back.
    await expect(again.prepare(join(dir, 'k0.key'), { by: 'x' })).rejects.toMatchObject({
      code: 'NODE_KEYRING_CONFLICT',
    });
    await again.close();
  });

  it('keeps a pending key across a restart, refuses a second one, and can abandon it', async () => {
    const { keyring, dir, db, audit, base, open } = await setup();
    const k1 = await createLocalKey(join(dir, 'k1.key'));
    const k2 = await createLocalKey(join(dir, 'k2.key'));
    await keyring.prepare(k1.keyId, { by: 'a' });
    await expect(keyring.prepare(k2.keyId, { by: 'a' })).rejects.toMatchObject({ code: 'NODE_KEYRING_CONFLICT' });
    await expect(keyring.activate(k2.address, 'a')).rejects.toMatchObject({ code: 'NODE_KEYRING_NOT_FOUND' });
    await keyring.close();
    const again = await Keyring.open({ db, audit, logger, base, open });
    expect(again.pendingAddress).toBe(k1.address);
    await expect(again.abandon(k2.address, 'a')).rejects.toMatchObject({ code: 'NODE_KEYRING_NOT_FOUND' });
    await again.abandon(k1.address, 'a');
    expect(again.pendingAddress).toBeUndefined();
    expect(again.entries().find((e) => e.address === k1.address)?.state).toBe('retired');
    await again.close();
  });

  it('drops a pending key that no longer opens, and keeps emulator credentials out of the database', async () => {
    const { dir, db, audit } = await setup();
    const seen: SignerConfig[] = [];
    const fake = (address: string): Signer => ({
      kind: 'aws-kms',
      keyId: `arn:${address}`,
      publicKey: Buffer.from(StrKey.decodeEd25519PublicKey(address)),
      address,
      sign: async () => Buffer.alloc(64),
      health: async () => ({ ok: true }),
      close: async () => {},
    });
    const a = Keypair.random().publicKey();
    const b = Keypair.random().publicKey();
    const open = async (c: SignerConfig): Promise<Signer> => {
      seen.push(c);
      if (c.type !== 'aws-kms') throw new Error('unexpected');
      if (c.keyId === 'gone') throw Object.assign(new Error('disabled'), { code: 'KEYS_KEY_DISABLED' });
      return fake(c.keyId === 'new' ? b : a);
    };
    const base: SignerConfig = {
      type: 'aws-kms',
      keyId: 'old',
      region: 'r',
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SECRET' },
    };
    const db2 = openLedgerDb(ledgerPath(join(dir, 'kms')));
    const audit2 = new AuditLog(db2);
    const k = await Keyring.open({ db: db2, audit: audit2, logger, base, open });
    await k.prepare('new', { by: 'a' });
    const stored = db2.prepare('SELECT config FROM keyring').all() as { config: string }[];
    expect(stored.map((r) => r.config).join()).not.toContain('SECRET');
    // The new key is opened with the config's credentials.
    expect(seen.at(-1)).toMatchObject({ keyId: 'new', credentials: { accessKeyId: 'AK' } });
    db2.prepare("UPDATE keyring SET config = json_set(config, '$.keyId', 'gone') WHERE state = 'pending'").run();
    const again = await Keyring.open({ db: db2, audit: audit2, logger, base, open });
    expect(again.pendingAddress).toBeUndefined();
    expect(again.address).toBe(a);
    db.close();
    void audit;
  });

  it('reopens a recorded key where the node config says the backend now is, and only if it is the same key', async () => {
    // A development cluster's KMS emulator comes back on another port: the recorded endpoint is dead, the key is not.
    const stored: SignerConfig = { type: 'aws-kms', keyId: 'k', region: 'r', endpoint: 'http://127.0.0.1:1111' };
    const base: SignerConfig = {
      type: 'aws-kms',
      keyId: 'other',
      region: 'r2',
      endpoint: 'http://127.0.0.1:2222',
      credentials: { accessKeyId: 'AK', secretAccessKey: 'S' },
      timeoutMs: 900,
    };
    expect(withBase(stored, base, 'GREC')).toEqual({
      type: 'aws-kms',
      keyId: 'k',
      region: 'r',
      endpoint: 'http://127.0.0.1:2222',
      credentials: { accessKeyId: 'AK', secretAccessKey: 'S' },
      timeoutMs: 900,
      expectedAddress: 'GREC',
    });
    // Real AWS: no endpoint in the config means the SDK's own, not the recorded one.
    expect(withBase(stored, { type: 'aws-kms', keyId: 'x', region: 'r' })).toEqual({
      type: 'aws-kms',
      keyId: 'k',
      region: 'r',
    });
    expect(withBase({ type: 'local', keyFile: 'f' }, base, 'GREC')).toEqual({
      type: 'local',
      keyFile: 'f',
      expectedAddress: 'GREC',
    });

    // With real keys: the recorded key file now holds another key, so the node refuses to start with it.
    const { keyring, dir, db, audit, base: localBase, open } = await setup();
    const recorded = keyring.address;
    await keyring.close();
    await rm(join(dir, 'k0.key'));
    await createLocalKey(join(dir, 'k0.key'));
    await expect(Keyring.open({ db, audit, logger, base: localBase, open })).rejects.toMatchObject({
      code: 'KEYS_ADDRESS_MISMATCH',
      details: expect.objectContaining({ expected: recorded }),
    });
  });

  it('successorConfig keeps the backend settings and changes only the key id', () => {
    expect(
      successorConfig({ type: 'aws-kms', keyId: 'a', region: 'r', endpoint: 'http://e', expectedAddress: 'GOLD' }, 'b'),
    ).toEqual({ type: 'aws-kms', keyId: 'b', region: 'r', endpoint: 'http://e' });
    expect(
      successorConfig({ type: 'pkcs11', module: 'm', tokenLabel: 't', keyIdHex: '01', pinFile: 'p' }, '02', 'GNEW'),
    ).toEqual({ type: 'pkcs11', module: 'm', tokenLabel: 't', keyIdHex: '02', pinFile: 'p', expectedAddress: 'GNEW' });
    expect(successorConfig({ type: 'local', keyFile: 'a' }, 'b')).toEqual({ type: 'local', keyFile: 'b' });
  });

  it('roster: allow (idempotent), list, remove', async () => {
    const { keyring } = await setup();
    const m = Keypair.random().publicKey();
    expect(keyring.allowMember(m, 'node-9', 'admin:op')).toMatchObject({ address: m, nodeId: 'node-9' });
    keyring.allowMember(m, 'node-9', 'admin:op');
    expect(keyring.roster()).toHaveLength(1);
    expect(keyring.roster().map((r) => r.address)).toEqual([m]);
    expect(keyring.isMember(m)).toBe(true);
    expect(keyring.isMember(keyring.address)).toBe(true); // our own key
    expect(keyring.isMember(Keypair.random().publicKey())).toBe(false);
    expect(keyring.removeMember(m, 'admin:op')).toBe(true);
    expect(keyring.isMember(m)).toBe(false);
    expect(keyring.removeMember(m, 'admin:op')).toBe(false);
    await keyring.close();
  });
});

describe('keyring admin API', () => {
  async function app(token?: string) {
    const s = await setup();
    const ledger = new SigningLedger(s.db);
    const reviewer = new Reviewer({
      network: NETWORK,
      accounts: new Set(),
      evaluate: () => ({ outcome: 'reject', reasons: [], spend: [] }),
      ledger,
      audit: s.audit,
      signer: s.keyring,
      logger,
    });
    const a = build({
      reviewer,
      ledger,
      metrics: createMetrics(),
      keyHealth: () => s.keyring.health(),
      sessionUp: () => true,
      sendDecision: () => true,
      keyring: s.keyring,
      ...(token ? { adminToken: token } : {}),
    });
    return { ...s, app: a };
  }

  it('prepares, activates, abandons and edits the roster, with audit entries', async () => {
    const { app: a, dir, keyring } = await app();
    const k1 = await createLocalKey(join(dir, 'k1.key'));
    const k2 = await createLocalKey(join(dir, 'k2.key'));
    const first = keyring.address;
    let r = await a.inject({ method: 'GET', url: '/v1/keyring' });
    expect(r.json()).toMatchObject({ active: first, pending: null, roster: [] });
    r = await a.inject({
      method: 'POST',
      url: '/v1/keyring/prepare',
      payload: { keyId: k1.keyId, expectedAddress: k1.address, by: 'alice' },
    });
    expect(r.statusCode).toBe(200);
    expect(r.json().pending).toBe(k1.address);
    r = await a.inject({ method: 'POST', url: '/v1/keyring/activate', payload: { address: k1.address } });
    expect(r.json()).toMatchObject({ active: k1.address, pending: null });
    r = await a.inject({ method: 'POST', url: '/v1/keyring/prepare', payload: { keyId: k2.keyId } });
    r = await a.inject({ method: 'POST', url: '/v1/keyring/abandon', payload: { address: k2.address } });
    expect(r.json().pending).toBeNull();
    r = await a.inject({ method: 'POST', url: '/v1/keyring/activate', payload: { address: k2.address } });
    expect(r.statusCode).toBe(404);
    expect(r.json().code).toBe('NODE_KEYRING_NOT_FOUND');
    const m = Keypair.random().publicKey();
    r = await a.inject({ method: 'POST', url: '/v1/roster', payload: { address: m, nodeId: 'node-2', by: 'bob' } });
    expect(r.json().roster).toEqual([expect.objectContaining({ address: m, nodeId: 'node-2', addedBy: 'admin:bob' })]);
    r = await a.inject({ method: 'DELETE', url: `/v1/roster/${m}?by=bob` });
    expect(r.json().roster).toEqual([]);
    r = await a.inject({ method: 'DELETE', url: `/v1/roster/${m}` });
    expect(r.statusCode).toBe(404);
    r = await a.inject({ method: 'POST', url: '/v1/roster', payload: { address: 'not-a-key' } });
    expect(r.statusCode).toBe(400);
  });

  it('requires the admin token when one is set', async () => {
    const { app: a } = await app('t0ken');
    expect((await a.inject({ method: 'GET', url: '/v1/keyring' })).statusCode).toBe(401);
    const ok = await a.inject({ method: 'GET', url: '/v1/keyring', headers: { authorization: 'Bearer t0ken' } });
    expect(ok.statusCode).toBe(200);
  });
});

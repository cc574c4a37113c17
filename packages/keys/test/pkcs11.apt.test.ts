import { randomBytes } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import pkcs11js from 'pkcs11js';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSigner } from '../src/factory.ts';
import { createKeyMetrics } from '../src/metrics.ts';
import {
  CKK_EC_EDWARDS,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  createPkcs11Key,
  createPkcs11Signer,
  ED25519_EC_PARAMS,
  mapP11Error,
  type Pkcs11SignerConfig,
} from '../src/pkcs11/pkcs11-signer.ts';
import { createSoftHsmStore, initSoftHsmToken, SOFTHSM_MODULE } from '../src/pkcs11/softhsm.ts';
import { runSignerConformance } from './conformance.ts';

// Needs SoftHSM2 from apt (named *.apt.test.ts; `.ci/run` installs it). Without softhsm2-util the beforeAll
// below throws and the whole suite FAILS: a missing HSM must never pass as a skipped suite.

const PIN = randomBytes(6).toString('hex');
let dir: string;
let pinFile: string;
let key: { keyIdHex: string; address: string };
const ids = { extractable: 'e1', notSensitive: 'e2', p256: 'ec', twice: 'dd', noPublic: 'de' };

/**
 * Generate odd keys with a raw pkcs11js handle (what an careless operator could have made), before any signer
 * loads the module: the signer's module registry must own C_Initialize/C_Finalize while signers are open.
 */
function makeBadKeys(): void {
  const p11 = new pkcs11js.PKCS11();
  p11.load(SOFTHSM_MODULE);
  p11.C_Initialize();
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === 'keys-a')!;
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p11.C_Login(session, pkcs11js.CKU_USER, PIN);
    const edPair = (idHex: string, priv: { extractable: boolean; sensitive: boolean }): void => {
      const id = Buffer.from(idHex, 'hex');
      p11.C_GenerateKeyPair(
        session,
        { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN },
        [
          { type: pkcs11js.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_VERIFY, value: true },
          { type: pkcs11js.CKA_EC_PARAMS, value: ED25519_EC_PARAMS },
          { type: pkcs11js.CKA_ID, value: id },
        ],
        [
          { type: pkcs11js.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_SENSITIVE, value: priv.sensitive },
          { type: pkcs11js.CKA_EXTRACTABLE, value: priv.extractable },
          { type: pkcs11js.CKA_SIGN, value: true },
          { type: pkcs11js.CKA_ID, value: id },
        ],
      );
    };
    edPair(ids.extractable, { extractable: true, sensitive: true });
    edPair(ids.notSensitive, { extractable: false, sensitive: false });
    // A NIST P-256 key (secp256r1, OID 1.2.840.10045.3.1.7): a signing key of the wrong curve.
    const p256 = Buffer.from(ids.p256, 'hex');
    p11.C_GenerateKeyPair(
      session,
      { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
      [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') },
        { type: pkcs11js.CKA_ID, value: p256 },
      ],
      [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_ID, value: p256 },
      ],
    );
    // Two key pairs under one CKA_ID, and a private key whose public half was deleted.
    edPair(ids.twice, { extractable: false, sensitive: true });
    edPair(ids.twice, { extractable: false, sensitive: true });
    edPair(ids.noPublic, { extractable: false, sensitive: true });
    p11.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(ids.noPublic, 'hex') },
    ]);
    const [pub] = p11.C_FindObjects(session, 1);
    p11.C_FindObjectsFinal(session);
    p11.C_DestroyObject(session, pub!);
    p11.C_CloseSession(session);
  } finally {
    p11.C_Finalize();
    p11.close();
  }
}

/**
 * Close every session of a token through a second handle on the same, already initialised module, as a token
 * reset or an HSM fail-over would. (No C_Finalize here: it would end the signer's module too.)
 */
function closeAllSessions(label: string): void {
  const other = new pkcs11js.PKCS11();
  other.load(SOFTHSM_MODULE);
  expect(() => other.C_Initialize()).toThrow(/CKR_CRYPTOKI_ALREADY_INITIALIZED/);
  const slot = other.C_GetSlotList(true).find((s) => other.C_GetTokenInfo(s).label.trim() === label)!;
  other.C_CloseAllSessions(slot);
}

beforeAll(async () => {
  dir = await tempDir('cosigner-keys-hsm-');
  const conf = await createSoftHsmStore(dir);
  // SoftHSM2 reads SOFTHSM2_CONF when the module initialises, in this (forked) test process.
  process.env.SOFTHSM2_CONF = conf;
  await initSoftHsmToken(conf, { label: 'keys-a', pin: PIN });
  await initSoftHsmToken(conf, { label: 'keys-b', pin: PIN });
  await initSoftHsmToken(conf, { label: 'keys-dup', pin: PIN });
  await initSoftHsmToken(conf, { label: 'keys-dup', pin: PIN });
  pinFile = join(dir, 'pin');
  await writeFile(pinFile, `${PIN}\n`, { mode: 0o600 });
  key = await createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'keys-a', pin: PIN, label: 'node-a' });
  makeBadKeys();
});
afterAll(async () => {
  delete process.env.SOFTHSM2_CONF;
  await rm(dir, { recursive: true, force: true });
});

const config = (over: Partial<Pkcs11SignerConfig> = {}): Pkcs11SignerConfig => ({
  type: 'pkcs11',
  module: SOFTHSM_MODULE,
  tokenLabel: 'keys-a',
  keyIdHex: key.keyIdHex,
  pinFile,
  ...over,
});

runSignerConformance('pkcs11 (SoftHSM2)', ({ metrics }) => createSigner(config(), { production: true, metrics }), {
  kind: 'pkcs11',
});

runSignerConformance(
  'pkcs11 with one session (signs queue for it)',
  ({ metrics }) => createSigner(config({ sessions: 1 }), { production: true, metrics }),
  { kind: 'pkcs11' },
);

describe('pkcs11 backend', () => {
  it('createPkcs11Key makes a key whose address the signer derives, keyed by token label and CKA_ID', async () => {
    const made = await createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'keys-b', pin: PIN, keyIdHex: 'AB01' });
    expect(made.keyIdHex).toBe('ab01');
    expect(made.keyId).toBe('keys-b/ab01');
    const signer = await createPkcs11Signer(
      { ...config(), tokenLabel: 'keys-b', keyIdHex: 'ab01', expectedAddress: made.address },
      {},
    );
    expect(signer.keyId).toBe('keys-b/ab01');
    expect(signer.address).toBe(made.address);
    const payload = randomBytes(32);
    expect(Keypair.fromPublicKey(made.address).verify(payload, await signer.sign(payload))).toBe(true);
    await signer.close();
  });

  it('refuses to create a key over an existing CKA_ID, or with a bad id', async () => {
    await expect(
      createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'keys-a', pin: PIN, keyIdHex: key.keyIdHex }),
    ).rejects.toMatchObject({ code: 'KEYS_KEY_EXISTS' });
    await expect(
      createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'keys-a', pin: PIN, keyIdHex: 'xyz' }),
    ).rejects.toMatchObject({ code: 'KEYS_BAD_CONFIG' });
  });

  it('names a missing token', async () => {
    await expect(createPkcs11Signer(config({ tokenLabel: 'no-such-token' }))).rejects.toMatchObject({
      code: 'KEYS_TOKEN_NOT_FOUND',
    });
    await expect(
      createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'no-such-token', pin: PIN }),
    ).rejects.toMatchObject({ code: 'KEYS_TOKEN_NOT_FOUND' });
  });

  it('names a wrong PIN (CKR_PIN_INCORRECT)', async () => {
    const wrong = join(dir, 'wrong-pin');
    await writeFile(wrong, 'not-the-pin', { mode: 0o600 });
    await expect(createPkcs11Signer(config({ tokenLabel: 'keys-b', pinFile: wrong }))).rejects.toMatchObject({
      code: 'KEYS_BAD_PIN',
      details: { ckr: '0xa0' },
    });
    await expect(
      createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'keys-b', pin: 'not-the-pin' }),
    ).rejects.toMatchObject({ code: 'KEYS_BAD_PIN' });
  });

  it('names a missing key', async () => {
    await expect(createPkcs11Signer(config({ keyIdHex: 'deadbeef' }))).rejects.toMatchObject({
      code: 'KEYS_KEY_NOT_FOUND',
    });
  });

  it('refuses a private key that is extractable or not sensitive', async () => {
    await expect(createPkcs11Signer(config({ keyIdHex: ids.extractable }))).rejects.toMatchObject({
      code: 'KEYS_KEY_EXTRACTABLE',
      details: { extractable: true, sensitive: true },
    });
    await expect(createPkcs11Signer(config({ keyIdHex: ids.notSensitive }))).rejects.toMatchObject({
      code: 'KEYS_KEY_EXTRACTABLE',
      details: { extractable: false, sensitive: false },
    });
  });

  it('refuses ambiguous tokens and keys, and a key pair missing its public half', async () => {
    await expect(createPkcs11Signer(config({ tokenLabel: 'keys-dup' }))).rejects.toMatchObject({
      code: 'KEYS_BAD_CONFIG',
      details: { tokens: 2 },
    });
    await expect(createPkcs11Signer(config({ keyIdHex: ids.twice }))).rejects.toMatchObject({
      code: 'KEYS_BAD_CONFIG',
    });
    await expect(createPkcs11Signer(config({ keyIdHex: ids.noPublic }))).rejects.toMatchObject({
      code: 'KEYS_KEY_NOT_FOUND',
      details: { publicKeys: 0 },
    });
  });

  it('replaces sessions the token dropped, so signing recovers by itself', async () => {
    const signer = await createPkcs11Signer(config({ sessions: 2 }), { resilience: { retries: 2, baseDelayMs: 1 } });
    const payload = randomBytes(32);
    expect(Keypair.fromPublicKey(key.address).verify(payload, await signer.sign(payload))).toBe(true);
    closeAllSessions('keys-a');
    // The first attempt hits a dead session, which is replaced; the retry signs on a fresh one.
    expect(Keypair.fromPublicKey(key.address).verify(payload, await signer.sign(payload))).toBe(true);
    await signer.sign(payload);
    expect(await signer.health()).toEqual({ ok: true });
    await signer.close();
  });

  it('fails as unavailable when a call meets a dropped session, and opens the circuit', async () => {
    const registry = new Registry();
    const signer = await createPkcs11Signer(config({ sessions: 1 }), {
      metrics: createKeyMetrics(registry),
      resilience: { retries: 0, failureThreshold: 1, resetAfterMs: 60_000 },
    });
    closeAllSessions('keys-a');
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_UNAVAILABLE' });
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_CIRCUIT_OPEN' });
    expect(await signer.health()).toEqual({ ok: false, detail: 'KEYS_CIRCUIT_OPEN' });
    const gauge = (await registry.getMetricsAsJSON()).find((m) => m.name === 'cosigner_keys_circuit_state');
    expect(gauge?.values[0]?.value).toBe(2);
    await signer.close();
  });

  it('maps Cryptoki return values to KEYS_* codes', () => {
    const cases: [number, string][] = [
      [0x30, 'KEYS_BACKEND_UNAVAILABLE'],
      [0xe0, 'KEYS_BACKEND_UNAVAILABLE'],
      [0x101, 'KEYS_BACKEND_UNAVAILABLE'],
      [0x60, 'KEYS_KEY_NOT_FOUND'],
      [0x82, 'KEYS_KEY_NOT_FOUND'],
      [0x68, 'KEYS_WRONG_KEY_SPEC'],
      [0x70, 'KEYS_WRONG_KEY_SPEC'],
      [0x5, 'KEYS_BACKEND_ERROR'],
    ];
    for (const [ckr, code] of cases) {
      const mapped = mapP11Error(new pkcs11js.Pkcs11Error('CKR', ckr, 'C_Sign'), 'k');
      expect(mapped, ckr.toString(16)).toMatchObject({ code, details: { ckr: `0x${ckr.toString(16)}` } });
    }
    expect(mapP11Error(new Error('other'), 'k')).toMatchObject({ code: 'KEYS_BACKEND_ERROR' });
  });

  it('initSoftHsmToken fails with a clear error when softhsm2-util is missing', async () => {
    await expect(
      initSoftHsmToken(join(dir, 'softhsm2.conf'), { label: 'x', pin: PIN, util: join(dir, 'no-softhsm2-util') }),
    ).rejects.toMatchObject({ code: 'KEYS_BAD_CONFIG' });
  });

  it('refuses a key of another curve', async () => {
    await expect(createPkcs11Signer(config({ keyIdHex: ids.p256 }))).rejects.toMatchObject({
      code: 'KEYS_WRONG_KEY_SPEC',
    });
  });

  it('stops start-up on an address mismatch', async () => {
    await expect(
      createSigner(config({ expectedAddress: Keypair.random().publicKey() }), { production: true }),
    ).rejects.toMatchObject({ code: 'KEYS_ADDRESS_MISMATCH' });
  });

  it('reads the PIN from a named environment variable, and refuses ambiguous or missing PIN sources', async () => {
    const env = { COSIGNER_TEST_PIN: PIN };
    const signer = await createPkcs11Signer(config({ pinFile: undefined, pinEnv: 'COSIGNER_TEST_PIN' }), { env });
    expect(signer.address).toBe(key.address);
    await signer.close();
    await expect(createPkcs11Signer(config({ pinEnv: 'COSIGNER_TEST_PIN' }), { env })).rejects.toMatchObject({
      code: 'KEYS_BAD_CONFIG',
    });
    await expect(
      createPkcs11Signer(config({ pinFile: undefined, pinEnv: 'COSIGNER_NO_SUCH_PIN' }), { env }),
    ).rejects.toMatchObject({ code: 'KEYS_BAD_CONFIG' });
    await expect(createPkcs11Signer(config({ pinFile: undefined }), { env })).rejects.toMatchObject({
      code: 'KEYS_BAD_CONFIG',
    });
  });

  it('refuses a PIN file that others can read', async () => {
    const open = join(dir, 'open-pin');
    await writeFile(open, PIN, { mode: 0o600 });
    await chmod(open, 0o640);
    await expect(createPkcs11Signer(config({ pinFile: open }))).rejects.toMatchObject({
      code: 'RUNTIME_FILE_NOT_PRIVATE',
    });
  });

  it('refuses a bad module path, session count or key id', async () => {
    await expect(createPkcs11Signer(config({ module: join(dir, 'no-such-module.so') }))).rejects.toMatchObject({
      code: 'KEYS_BAD_CONFIG',
    });
    for (const sessions of [0, 65, 1.5]) {
      await expect(createPkcs11Signer(config({ sessions }))).rejects.toMatchObject({ code: 'KEYS_BAD_CONFIG' });
    }
    await expect(createPkcs11Signer(config({ keyIdHex: '' }))).rejects.toMatchObject({ code: 'KEYS_BAD_CONFIG' });
  });

  it('serves two signers on two tokens at once, and each keeps working when the other closes', async () => {
    const b = await createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'keys-b', pin: PIN });
    const sa = await createPkcs11Signer(config());
    const sb = await createPkcs11Signer(config({ tokenLabel: 'keys-b', keyIdHex: b.keyIdHex }));
    const payload = randomBytes(32);
    const [sigA, sigB] = await Promise.all([sa.sign(payload), sb.sign(payload)]);
    expect(Keypair.fromPublicKey(key.address).verify(payload, sigA)).toBe(true);
    expect(Keypair.fromPublicKey(b.address).verify(payload, sigB)).toBe(true);
    await sa.close();
    expect(Keypair.fromPublicKey(b.address).verify(payload, await sb.sign(payload))).toBe(true);
    expect(await sb.health()).toEqual({ ok: true });
    await sb.close();
  });
});

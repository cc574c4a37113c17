import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPkcs11Key, createPkcs11Signer } from '@cosigner/keys/pkcs11/pkcs11-signer';
import { createSoftHsmStore, initSoftHsmToken, SOFTHSM_MODULE } from '@cosigner/keys/pkcs11/softhsm';
import { tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShareSealer } from '../src/sealer.ts';
import { createPkcs11Sealer, createPkcs11SealingKey, type Pkcs11SealerConfig } from '../src/sealing/pkcs11.ts';
import { CTX, code, conformance } from './sealer-conformance.ts';

// Needs SoftHSM2 from apt (named *.apt.test.ts, run with COSIGNER_APT_SUITES=1). Without softhsm2-util the
// beforeAll throws and the suite FAILS: a missing HSM must never pass as a skipped suite.

const PIN = randomBytes(6).toString('hex');
const TOKEN = 'frost-seal';
let dir: string;
let pinFile: string;
let sealingKeyId: string;
const bad = { extractable: 'b1', notSensitive: 'b2', imported: 'b3', aes128: 'b4', noDecrypt: 'b5', twice: 'b6' };

/**
 * Make the keys a careless operator could have made, with a raw pkcs11js handle before any sealer loads the
 * module (the sealers' shared module registry must own C_Initialize/C_Finalize while they are open).
 */
function makeBadKeys(): void {
  const p11 = new pkcs11js.PKCS11();
  p11.load(SOFTHSM_MODULE);
  p11.C_Initialize();
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === TOKEN)!;
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p11.C_Login(session, pkcs11js.CKU_USER, PIN);
    const aes = (idHex: string, o: { len?: number; extractable?: boolean; sensitive?: boolean; decrypt?: boolean }) =>
      p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: o.len ?? 32 },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: o.sensitive ?? true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: o.extractable ?? false },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: o.decrypt ?? true },
        { type: pkcs11js.CKA_ID, value: Buffer.from(idHex, 'hex') },
      ]);
    aes(bad.extractable, { extractable: true });
    aes(bad.notSensitive, { sensitive: false });
    aes(bad.aes128, { len: 16 });
    aes(bad.noDecrypt, { decrypt: false });
    aes(bad.twice, {});
    aes(bad.twice, {});
    // Imported in the clear: sensitive and not extractable now, but it has existed outside the HSM, which
    // the token records as CKA_ALWAYS_SENSITIVE = CKA_NEVER_EXTRACTABLE = false.
    p11.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE, value: randomBytes(32) },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_ID, value: Buffer.from(bad.imported, 'hex') },
    ]);
    p11.C_CloseSession(session);
  } finally {
    p11.C_Finalize();
    p11.close();
  }
}

beforeAll(async () => {
  dir = await tempDir('frost-seal-hsm-');
  const conf = await createSoftHsmStore(dir);
  // SoftHSM2 reads SOFTHSM2_CONF when the module initialises, in this (forked) test process.
  process.env.SOFTHSM2_CONF = conf;
  await initSoftHsmToken(conf, { label: TOKEN, pin: PIN });
  await initSoftHsmToken(conf, { label: 'frost-other', pin: PIN });
  pinFile = join(dir, 'pin');
  await writeFile(pinFile, `${PIN}\n`, { mode: 0o600 });
  makeBadKeys();
  sealingKeyId = (await createPkcs11SealingKey({ module: SOFTHSM_MODULE, tokenLabel: TOKEN, pin: PIN })).keyIdHex;
});
afterAll(async () => {
  delete process.env.SOFTHSM2_CONF;
  await rm(dir, { recursive: true, force: true });
});

const config = (over: Partial<Pkcs11SealerConfig> = {}): Pkcs11SealerConfig => ({
  type: 'pkcs11',
  module: SOFTHSM_MODULE,
  tokenLabel: TOKEN,
  keyIdHex: sealingKeyId,
  pinFile,
  ...over,
});

async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** A second handle on the already initialised module, to look at the token as an attacker with the PIN would. */
function withRawSession<T>(fn: (p11: InstanceType<typeof pkcs11js.PKCS11>, session: Buffer) => T): T {
  const p11 = new pkcs11js.PKCS11();
  p11.load(SOFTHSM_MODULE);
  try {
    p11.C_Initialize();
  } catch {
    // already initialised by the sealer under test: this handle shares it
  }
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === TOKEN)!;
  const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  try {
    return fn(p11, session);
  } finally {
    p11.C_CloseSession(session);
  }
}

describe('share sealing: PKCS#11 (SoftHSM2), AES-256-GCM in the token', () => {
  it('seals and opens in the HSM, bound to its context, and passes the conformance checks', async () => {
    const sealer = await createShareSealer(config(), { production: true });
    expect(sealer.kind).toBe('pkcs11');
    expect(sealer.keyId).toBe(`${TOKEN}/${sealingKeyId}`);
    const blob = await conformance(sealer);
    // IV + ciphertext + tag: 12 bytes, then 32 + 16.
    expect(Buffer.from(blob.iv, 'base64')).toHaveLength(12);
    expect(Buffer.from(blob.ciphertext, 'base64')).toHaveLength(48);
    expect(blob.wrappedKey).toBeUndefined();
    // Nothing of a sealed share reaches the disk in the clear: not the token store, not anything under the
    // test's directory (the HSM sees the share only inside C_Encrypt, and stores no copy of it).
    const share = randomBytes(32);
    const sealedShare = await sealer.seal(Buffer.from(share), CTX);
    for (const file of await filesUnder(dir)) {
      const data = await readFile(file);
      for (const form of [share, Buffer.from(share.toString('hex')), Buffer.from(share.toString('base64'))]) {
        expect(data.includes(form), `${file} holds the share`).toBe(false);
      }
    }
    expect(Buffer.from(await sealer.unseal(sealedShare, CTX))).toEqual(share);
    await expect(sealer.unseal({ ...blob, kind: 'local' } as never, CTX)).rejects.toThrow(code('FROST_OUT_OF_RANGE'));
    await expect(sealer.unseal({ ...blob, wrappedKey: 'AAAA' }, CTX)).rejects.toThrow(code('FROST_BAD_INPUT'));
    // A blob naming another key id is bound to that id (associated data): it does not open here.
    await expect(sealer.unseal({ ...blob, keyId: `${TOKEN}/00` }, CTX)).rejects.toThrow(code('FROST_UNSEAL_FAILED'));
    await sealer.close();
    await sealer.close();
    await expect(sealer.seal(randomBytes(32), CTX)).rejects.toThrow(code('FROST_SEALER_CONFIG'));

    // Reopened (the PIN from an environment variable this time): opens what the first instance sealed.
    const again = await createPkcs11Sealer(config({ pinFile: undefined, pinEnv: 'SEAL_PIN' }), {
      env: { SEAL_PIN: PIN },
    });
    expect((await again.unseal(blob, CTX)).length).toBe(32);
    // Another AES key on the token, as good as the first: does not open it.
    const other = await createPkcs11SealingKey({ module: SOFTHSM_MODULE, tokenLabel: TOKEN, pin: PIN });
    const otherSealer = await createPkcs11Sealer(config({ keyIdHex: other.keyIdHex }));
    await expect(otherSealer.unseal({ ...blob, keyId: otherSealer.keyId }, CTX)).rejects.toThrow(
      code('FROST_UNSEAL_FAILED'),
    );
    await otherSealer.close();
    await again.close();
  });

  it('keeps the key in the token: its value cannot be read, even with the PIN', async () => {
    const sealer = await createPkcs11Sealer(config());
    withRawSession((p11, session) => {
      try {
        p11.C_Login(session, pkcs11js.CKU_USER, PIN);
      } catch {
        // logged in already through the sealer's session: login state is per application
      }
      p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_ID, value: Buffer.from(sealingKeyId, 'hex') }]);
      const [key] = p11.C_FindObjects(session, 1);
      p11.C_FindObjectsFinal(session);
      expect(() => p11.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_VALUE }])).toThrow(
        /CKR_ATTRIBUTE_SENSITIVE/,
      );
      const [extractable, neverExtractable] = p11.C_GetAttributeValue(session, key!, [
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      ]);
      expect(extractable?.value).toEqual(Buffer.from([0]));
      expect(neverExtractable?.value).toEqual(Buffer.from([1]));
    });
    await sealer.close();
  });

  it('refuses a key that is or was extractable, one that is not sensitive, and the wrong kind of key', async () => {
    for (const id of [bad.extractable, bad.notSensitive, bad.imported]) {
      await expect(createPkcs11Sealer(config({ keyIdHex: id }))).rejects.toThrow(code('FROST_SEALING_KEY_EXTRACTABLE'));
    }
    await expect(createPkcs11Sealer(config({ keyIdHex: bad.imported }))).rejects.toThrow(
      code('FROST_SEALING_KEY_EXTRACTABLE', { extractable: false, neverExtractable: false, alwaysSensitive: false }),
    );
    await expect(createPkcs11Sealer(config({ keyIdHex: bad.aes128 }))).rejects.toThrow(
      code('FROST_SEALER_CONFIG', { length: 16 }),
    );
    await expect(createPkcs11Sealer(config({ keyIdHex: bad.noDecrypt }))).rejects.toThrow(code('FROST_SEALER_CONFIG'));
    await expect(createPkcs11Sealer(config({ keyIdHex: bad.twice }))).rejects.toThrow(
      code('FROST_SEALER_CONFIG', { found: 2 }),
    );
    await expect(createPkcs11Sealer(config({ keyIdHex: 'ffff' }))).rejects.toThrow(
      code('FROST_SEALER_CONFIG', { found: 0 }),
    );
  });

  it('names what is wrong in the configuration: id, token, PIN, module', async () => {
    await expect(createPkcs11Sealer(config({ keyIdHex: 'xyz' }))).rejects.toThrow(code('FROST_SEALER_CONFIG'));
    await expect(createPkcs11Sealer(config({ tokenLabel: 'absent' }))).rejects.toThrow(code('KEYS_TOKEN_NOT_FOUND'));
    await expect(createPkcs11Sealer(config({ pinFile: undefined, pinEnv: 'NOPE' }), { env: {} })).rejects.toThrow(
      code('KEYS_BAD_CONFIG'),
    );
    const wrongPin = join(dir, 'wrong-pin');
    await writeFile(wrongPin, 'not-the-pin', { mode: 0o600 });
    await expect(createPkcs11Sealer(config({ tokenLabel: 'frost-other', pinFile: wrongPin }))).rejects.toThrow(
      code('KEYS_BAD_PIN'),
    );
    await expect(createPkcs11Sealer(config({ module: join(dir, 'missing.so') }))).rejects.toThrow(
      code('KEYS_BAD_CONFIG'),
    );
    await expect(
      createPkcs11SealingKey({ module: SOFTHSM_MODULE, tokenLabel: TOKEN, pin: PIN, keyIdHex: sealingKeyId }),
    ).rejects.toThrow(code('FROST_SEALER_CONFIG', { keyId: `${TOKEN}/${sealingKeyId}` }));
    await expect(
      createPkcs11SealingKey({ module: SOFTHSM_MODULE, tokenLabel: TOKEN, pin: PIN, keyIdHex: 'no' }),
    ).rejects.toThrow(code('FROST_SEALER_CONFIG'));
    await expect(createPkcs11SealingKey({ module: SOFTHSM_MODULE, tokenLabel: 'absent', pin: PIN })).rejects.toThrow(
      code('KEYS_TOKEN_NOT_FOUND'),
    );
  });

  it('shares the module with the node signer on the same token, and survives a token that closed its sessions', async () => {
    const signingKey = await createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: TOKEN, pin: PIN });
    const signer = await createPkcs11Signer({
      type: 'pkcs11',
      module: SOFTHSM_MODULE,
      tokenLabel: TOKEN,
      keyIdHex: signingKey.keyIdHex,
      pinFile,
    });
    const sealer = await createPkcs11Sealer(config());
    const blob = await sealer.seal(randomBytes(32), CTX);
    // A token reset (here: C_CloseAllSessions through another handle): the next call rebuilds the session.
    const raw = new pkcs11js.PKCS11();
    raw.load(SOFTHSM_MODULE);
    expect(() => raw.C_Initialize()).toThrow(/CKR_CRYPTOKI_ALREADY_INITIALIZED/);
    raw.C_CloseAllSessions(raw.C_GetSlotList(true).find((s) => raw.C_GetTokenInfo(s).label.trim() === TOKEN)!);
    expect((await sealer.unseal(blob, CTX)).length).toBe(32);
    // Closing the sealer must not finalize the module under the signer.
    await sealer.close();
    const payload = randomBytes(32);
    expect(Keypair.fromPublicKey(signingKey.address).verify(payload, await signer.sign(payload))).toBe(true);
    await signer.close();
  });
});

import { randomBytes } from 'node:crypto';
import {
  acquireModule,
  attrBool,
  attrNumber,
  findObjects,
  findSlot,
  login,
  mapP11Error,
  p11Code,
  readPkcs11Pin,
  releaseModule,
} from '@cosigner/keys/pkcs11/pkcs11-signer';
import pkcs11js from 'pkcs11js';
import { frostErrors } from '../errors.ts';
import { bytes } from '../input.ts';
import {
  checkBlob,
  checkContext,
  type SealContext,
  type SealedBlob,
  type SealerConfig,
  type ShareSealer,
  sealAad,
} from './shared.ts';

/**
 * The PKCS#11 sealer: AES-256-GCM computed by the HSM (CKM_AES_GCM, PKCS#11 v2.40 section 2.12.3) under an AES key
 * generated in the token as sensitive and never extractable. The key never leaves the HSM, so a copy of the node's
 * disk and memory without the token and its PIN opens nothing. The blob is the IV, the ciphertext and the 16-byte
 * tag, the context bound as the GCM associated data (the same `sealAad` as the other backends).
 *
 * - The key is found by CKA_ID on the token found by label, as the PKCS#11 signer finds its key, and through the
 *   same per-process module registry (one C_Initialize for the signer and the sealer of a node).
 * - At open the key must be an AES key of 32 bytes allowed to encrypt and decrypt, CKA_SENSITIVE, not
 *   CKA_EXTRACTABLE, and CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE (v2.40 section 4.10): a key imported in the
 *   clear, or once extractable, has existed outside the HSM and is refused (FROST_SEALING_KEY_EXTRACTABLE).
 * - The IV is 96 random bits drawn here (NIST SP 800-38D section 8.2.2): the key seals a few shares per group
 *   and refresh, far below the 2^32 invocations that random IVs allow under one key.
 * - Every Cryptoki call here is synchronous and short (a few hundred bytes), so one session serves every seal and
 *   unseal without interleaving: a JavaScript turn runs C_EncryptInit to C_Encrypt whole. A session the token
 *   dropped (reset, fail-over) is rebuilt at the next call.
 */

export type Pkcs11SealerConfig = Extract<SealerConfig, { type: 'pkcs11' }>;

const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/** Cryptoki answers that mean "this blob does not open under this key": a wrong tag, IV or length. */
const CKR_WONT_OPEN = new Set([0x40 /* ENCRYPTED_DATA_INVALID */, 0x41 /* ENCRYPTED_DATA_LEN_RANGE */]);
const CKR_GENERAL_ERROR = 0x5;
/** Session or handle lost (token reset): rebuild the session before the next call. */
const CKR_LOST = new Set([0xb0, 0xb3, 0x101, 0x60, 0x82]);

type PKCS11 = InstanceType<typeof pkcs11js.PKCS11>;
type Handle = Buffer;

/** CKM_AES_GCM with the v2.40 CK_GCM_PARAMS layout (with ulIvBits), the one SoftHSM2 and current HSMs read. */
function gcm(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
  const parameter: pkcs11js.AesGCM = {
    type: pkcs11js.CK_PARAMS_AES_GCM_v240,
    iv,
    aad,
    ivBits: GCM_IV_BYTES * 8,
    tagBits: GCM_TAG_BYTES * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

/** Find the sealing key by CKA_ID and check it (see the module comment). */
function locateSealingKey(p11: PKCS11, session: Handle, config: Pkcs11SealerConfig, keyId: string): Handle {
  const found = findObjects(p11, session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_ID, value: Buffer.from(config.keyIdHex, 'hex') },
  ]);
  if (found.length !== 1) {
    throw frostErrors.error(
      'FROST_SEALER_CONFIG',
      { keyId, found: found.length },
      { message: `The token must hold exactly one secret key with CKA_ID ${config.keyIdHex}; found ${found.length}.` },
    );
  }
  const key = found[0]!;
  const a = p11.C_GetAttributeValue(session, key, [
    { type: pkcs11js.CKA_KEY_TYPE },
    { type: pkcs11js.CKA_VALUE_LEN },
    { type: pkcs11js.CKA_ENCRYPT },
    { type: pkcs11js.CKA_DECRYPT },
    { type: pkcs11js.CKA_SENSITIVE },
    { type: pkcs11js.CKA_EXTRACTABLE },
    { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
    { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
  ]);
  const keyType = attrNumber(a[0]?.value);
  const length = attrNumber(a[1]?.value);
  if (keyType !== pkcs11js.CKK_AES || length !== 32 || !attrBool(a[2]?.value) || !attrBool(a[3]?.value)) {
    throw frostErrors.error(
      'FROST_SEALER_CONFIG',
      { keyId, keyType, length },
      { message: 'The PKCS#11 sealing key must be a 256-bit AES key (CKK_AES) allowed to encrypt and decrypt.' },
    );
  }
  const flags = {
    sensitive: attrBool(a[4]?.value),
    extractable: attrBool(a[5]?.value),
    alwaysSensitive: attrBool(a[6]?.value),
    neverExtractable: attrBool(a[7]?.value),
  };
  if (!flags.sensitive || flags.extractable || !flags.alwaysSensitive || !flags.neverExtractable) {
    throw frostErrors.error('FROST_SEALING_KEY_EXTRACTABLE', { keyId, ...flags });
  }
  return key;
}

/**
 * Open the PKCS#11 sealer: token by label, login with the PIN (file or environment variable, as the signer),
 * the AES key by CKA_ID, checked.
 * @throws FROST_SEALER_CONFIG (not one 256-bit AES key), FROST_SEALING_KEY_EXTRACTABLE, KEYS_TOKEN_NOT_FOUND,
 *   KEYS_BAD_PIN, KEYS_BAD_CONFIG (module, PIN source), KEYS_BACKEND_UNAVAILABLE
 */
export async function createPkcs11Sealer(
  config: Pkcs11SealerConfig,
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<ShareSealer> {
  if (!/^([0-9a-f]{2})+$/i.test(config.keyIdHex ?? '')) {
    throw frostErrors.error(
      'FROST_SEALER_CONFIG',
      { keyIdHex: config.keyIdHex ?? null },
      { message: 'keyIdHex must be non-empty hex.' },
    );
  }
  const pin = await readPkcs11Pin(config, opts.env ?? process.env);
  const keyId = `${config.tokenLabel}/${config.keyIdHex.toLowerCase()}`;
  const p11 = acquireModule(config.module);
  let session: Handle | undefined;
  let key: Handle | undefined;
  let slot: Handle;
  const open = (): { session: Handle; key: Handle } => {
    if (session && key) return { session, key };
    const s = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    try {
      login(p11, s, pin, config.tokenLabel);
      key = locateSealingKey(p11, s, config, keyId);
      session = s;
      return { session, key };
    } catch (e) {
      p11.C_CloseSession(s);
      throw e;
    }
  };
  let closed = false;
  /**
   * Run one operation on the session; a session or handle the token dropped (reset, fail-over) is rebuilt and
   * the operation run once more on the fresh one.
   */
  const run = <T>(fn: (s: { session: Handle; key: Handle }) => T): T => {
    if (closed) throw frostErrors.error('FROST_SEALER_CONFIG', { keyId }, { message: 'The sealer is closed.' });
    try {
      return fn(open());
    } catch (e) {
      const code = p11Code(e);
      if (code === undefined || !CKR_LOST.has(code)) throw e;
      session = undefined;
      key = undefined;
      return fn(open());
    }
  };
  /**
   * Does the key still seal and open? SoftHSM2 answers a GCM tag mismatch with CKR_GENERAL_ERROR where the
   * standard says CKR_ENCRYPTED_DATA_INVALID; a round trip of random bytes tells a blob that does not open from
   * a token that is failing.
   */
  const healthy = (): boolean => {
    try {
      const probe = randomBytes(16);
      const iv = randomBytes(GCM_IV_BYTES);
      const aad = Buffer.from('cosigner-frost-seal/probe', 'utf8');
      const back = run((s) => {
        p11.C_EncryptInit(s.session, gcm(iv, aad), s.key);
        const ct = p11.C_Encrypt(s.session, probe, Buffer.alloc(probe.length + GCM_TAG_BYTES));
        p11.C_DecryptInit(s.session, gcm(iv, aad), s.key);
        return p11.C_Decrypt(s.session, ct, Buffer.alloc(ct.length));
      });
      return back.equals(probe);
    } catch {
      return false;
    }
  };
  try {
    slot = findSlot(p11, config.tokenLabel);
    open();
  } catch (e) {
    releaseModule(config.module);
    if (frostErrors.is(e)) throw e;
    throw mapP11Error(e, keyId);
  }
  return {
    kind: 'pkcs11',
    keyId,
    async seal(plaintext: Uint8Array, context: SealContext): Promise<SealedBlob> {
      // Our own copy (bytes() copies), seen as a Buffer without another copy, zeroed once sealed.
      const u = bytes(plaintext, 'plaintext');
      const p = Buffer.from(u.buffer, u.byteOffset, u.length);
      const ctx = checkContext(context);
      const iv = randomBytes(GCM_IV_BYTES);
      try {
        const ct = run((s) => {
          p11.C_EncryptInit(s.session, gcm(iv, sealAad('pkcs11', keyId, ctx)), s.key);
          return p11.C_Encrypt(s.session, p, Buffer.alloc(p.length + GCM_TAG_BYTES));
        });
        return { v: 1, kind: 'pkcs11', keyId, iv: iv.toString('base64'), ciphertext: ct.toString('base64') };
      } catch (e) {
        if (frostErrors.is(e)) throw e;
        throw mapP11Error(e, keyId);
      } finally {
        p.fill(0);
      }
    },
    async unseal(blob: SealedBlob, context: SealContext): Promise<Uint8Array> {
      const b = checkBlob(blob, 'pkcs11');
      const ctx = checkContext(context);
      const iv = Buffer.from(b.iv, 'base64');
      const ct = Buffer.from(b.ciphertext, 'base64');
      if (iv.length !== GCM_IV_BYTES || ct.length < GCM_TAG_BYTES) {
        throw frostErrors.error('FROST_UNSEAL_FAILED', { kind: 'pkcs11', keyId, reason: 'IV or ciphertext too short' });
      }
      let out: Buffer | undefined;
      try {
        out = run((s) => {
          p11.C_DecryptInit(s.session, gcm(iv, sealAad('pkcs11', b.keyId, ctx)), s.key);
          return p11.C_Decrypt(s.session, ct, Buffer.alloc(ct.length));
        });
        return new Uint8Array(out);
      } catch (e) {
        if (frostErrors.is(e)) throw e;
        const code = p11Code(e);
        if (code !== undefined && (CKR_WONT_OPEN.has(code) || (code === CKR_GENERAL_ERROR && healthy()))) {
          throw frostErrors.error(
            'FROST_UNSEAL_FAILED',
            { kind: 'pkcs11', keyId, ckr: `0x${code.toString(16)}` },
            { cause: e },
          );
        }
        throw mapP11Error(e, keyId);
      } finally {
        out?.fill(0);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        if (session) p11.C_CloseSession(session);
      } catch {
        // the token already closed it
      } finally {
        session = undefined;
        releaseModule(config.module);
      }
    },
  };
}

/**
 * Generate the node's sealing key on a token: AES-256 (CKM_AES_KEY_GEN), CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
 * not CKA_EXTRACTABLE, ENCRYPT and DECRYPT only (no WRAP, UNWRAP, SIGN or DERIVE), under a CKA_ID (random 16 bytes
 * unless given) by which the sealer finds it.
 * @returns the key id (`token-label/CKA_ID hex`) and the CKA_ID; never key material
 * @throws KEYS_KEY_EXISTS (the CKA_ID is taken), KEYS_TOKEN_NOT_FOUND, KEYS_BAD_PIN, KEYS_BACKEND_ERROR
 */
export async function createPkcs11SealingKey(params: {
  module: string;
  tokenLabel: string;
  pin: string;
  keyIdHex?: string;
  label?: string;
}): Promise<{ keyId: string; keyIdHex: string }> {
  const keyIdHex = (params.keyIdHex ?? randomBytes(16).toString('hex')).toLowerCase();
  if (!/^([0-9a-f]{2})+$/.test(keyIdHex)) {
    throw frostErrors.error('FROST_SEALER_CONFIG', { keyIdHex }, { message: 'keyIdHex must be non-empty hex.' });
  }
  const keyId = `${params.tokenLabel}/${keyIdHex}`;
  const id = Buffer.from(keyIdHex, 'hex');
  const p11 = acquireModule(params.module);
  let session: Handle | undefined;
  try {
    const slot = findSlot(p11, params.tokenLabel);
    session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    login(p11, session, params.pin, params.tokenLabel);
    if (findObjects(p11, session, [{ type: pkcs11js.CKA_ID, value: id }]).length > 0) {
      throw frostErrors.error(
        'FROST_SEALER_CONFIG',
        { keyId },
        { message: `The token already holds an object with CKA_ID ${keyIdHex}.` },
      );
    }
    p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: params.label ?? `cosigner-frost-seal-${keyIdHex.slice(0, 8)}` },
    ]);
    return { keyId, keyIdHex };
  } catch (e) {
    if (frostErrors.is(e)) throw e;
    throw mapP11Error(e, keyId);
  } finally {
    if (session) p11.C_CloseSession(session);
    releaseModule(params.module);
  }
}

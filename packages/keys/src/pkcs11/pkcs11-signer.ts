import { randomBytes } from 'node:crypto';
import { readSecretFile } from '@cosigner/runtime/secrets';
import type { Logger } from 'pino';
import pkcs11js from 'pkcs11js';
import { addressOf, publicKeyFromEcPoint } from '../ed25519.ts';
import { keysErrors } from '../errors.ts';
import { guardSigner } from '../guarded.ts';
import type { KeyMetrics } from '../metrics.ts';
import { Resilience, type ResilienceOptions } from '../resilience.ts';
import type { Signer, SignerConfig } from '../signer.ts';

/**
 * The PKCS#11 backend: an HSM (SoftHSM2 in tests) holding a non-extractable Ed25519 key.
 *
 * - The token is found by label (slot numbers are assigned at random by SoftHSM and differ between HSMs) and
 *   the key by CKA_ID (labels are not unique, PKCS#11 v2.40 section 4.4).
 * - Signing is CKM_EDDSA without parameters: pure Ed25519 (PKCS#11 v3.0 section 2.3.14), what Stellar verifies.
 * - pkcs11js 2.1.7 predates PKCS#11 3.0 and has no EdDSA constants, hence the numbers below.
 * - A PKCS#11 session runs one operation at a time (a second C_SignInit gives CKR_OPERATION_ACTIVE, v2.40
 *   section 5.12), so signs draw a session from a pool. pkcs11js calls are synchronous on the event loop
 *   except C_Sign, which has a callback form run on libuv's thread pool: the one slow call (the signature
 *   itself) stays off the event loop; C_SignInit and the pool bookkeeping are microseconds.
 */

export type Pkcs11SignerConfig = Extract<SignerConfig, { type: 'pkcs11' }>;

export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
export const CKK_EC_EDWARDS = 0x40;
/** DER OID 1.3.101.112 (id-Ed25519, RFC 8410): the CKA_EC_PARAMS of an Ed25519 key. */
export const ED25519_EC_PARAMS = Buffer.from('06032b6570', 'hex');

type PKCS11 = InstanceType<typeof pkcs11js.PKCS11>;
type Handle = Buffer;

/** Cryptoki return values this module reacts to (PKCS#11 v2.40 section 3.6 / pkcs11t.h). */
const CKR = {
  PIN_INCORRECT: 0xa0,
  PIN_INVALID: 0xa1,
  PIN_LEN_RANGE: 0xa2,
  PIN_EXPIRED: 0xa3,
  PIN_LOCKED: 0xa4,
  USER_ALREADY_LOGGED_IN: 0x100,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
  DEVICE_ERROR: 0x30,
  DEVICE_MEMORY: 0x31,
  DEVICE_REMOVED: 0x32,
  SESSION_CLOSED: 0xb0,
  SESSION_HANDLE_INVALID: 0xb3,
  TOKEN_NOT_PRESENT: 0xe0,
  USER_NOT_LOGGED_IN: 0x101,
  KEY_HANDLE_INVALID: 0x60,
  OBJECT_HANDLE_INVALID: 0x82,
  KEY_FUNCTION_NOT_PERMITTED: 0x68,
  KEY_TYPE_INCONSISTENT: 0x63,
  MECHANISM_INVALID: 0x70,
} as const;

/** Return values after which a session (or the handles it found) must be rebuilt. */
const LOST = new Set<number>([
  CKR.SESSION_HANDLE_INVALID,
  CKR.SESSION_CLOSED,
  CKR.USER_NOT_LOGGED_IN,
  CKR.KEY_HANDLE_INVALID,
  CKR.OBJECT_HANDLE_INVALID,
]);

export function p11Code(e: unknown): number | undefined {
  return e instanceof pkcs11js.Pkcs11Error ? e.code : undefined;
}

/** Map a Cryptoki error on a live key to a KEYS_* error (PIN and lookup errors are mapped where they occur). */
export function mapP11Error(e: unknown, keyId: string): Error {
  if (keysErrors.is(e)) return e;
  const code = p11Code(e);
  const details = { keyId, ckr: code === undefined ? undefined : `0x${code.toString(16)}` };
  switch (code) {
    case CKR.DEVICE_ERROR:
    case CKR.DEVICE_MEMORY:
    case CKR.DEVICE_REMOVED:
    case CKR.SESSION_CLOSED:
    case CKR.SESSION_HANDLE_INVALID:
    case CKR.TOKEN_NOT_PRESENT:
    case CKR.USER_NOT_LOGGED_IN:
      return keysErrors.error('KEYS_BACKEND_UNAVAILABLE', details, { cause: e });
    case CKR.KEY_HANDLE_INVALID:
    case CKR.OBJECT_HANDLE_INVALID:
      return keysErrors.error('KEYS_KEY_NOT_FOUND', details, { cause: e });
    case CKR.KEY_FUNCTION_NOT_PERMITTED:
    case CKR.KEY_TYPE_INCONSISTENT:
    case CKR.MECHANISM_INVALID:
      return keysErrors.error('KEYS_WRONG_KEY_SPEC', details, { cause: e });
    default:
      return keysErrors.error('KEYS_BACKEND_ERROR', details, { cause: e });
  }
}

/**
 * One loaded, initialized module per library path and process: C_Initialize may run once per process
 * (CKR_CRYPTOKI_ALREADY_INITIALIZED otherwise) and login state is shared by every session of the application.
 * Exported with the lookup helpers below for the FROST share sealer (@cosigner/frost, sealing/pkcs11.ts): a node
 * that signs and seals on one token must hold one C_Initialize between them, or the first to close would
 * C_Finalize the other's sessions.
 */
const modules = new Map<string, { p11: PKCS11; refs: number }>();

export function acquireModule(path: string): PKCS11 {
  const known = modules.get(path);
  if (known) {
    known.refs++;
    return known.p11;
  }
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(path);
  } catch (e) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { module: path },
      { message: `The PKCS#11 module ${path} cannot be loaded.`, cause: e },
    );
  }
  try {
    // CKF_OS_LOCKING_OK: C_Sign runs on libuv's thread pool while the event loop calls C_SignInit, C_OpenSession
    // and the like, so the module is used from several threads at once. C_Initialize(NULL) promises the module
    // that it never will (PKCS#11 v2.40 section 5.4), and SoftHSM2 then takes no locks: concurrent signs
    // corrupted its heap (SIGSEGV, glibc "unaligned tcache chunk") in about half of the runs.
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (p11Code(e) !== CKR.CRYPTOKI_ALREADY_INITIALIZED) {
      p11.close();
      throw keysErrors.error('KEYS_BACKEND_UNAVAILABLE', { module: path }, { cause: e });
    }
  }
  modules.set(path, { p11, refs: 1 });
  return p11;
}

export function releaseModule(path: string): void {
  const known = modules.get(path);
  if (!known) return;
  known.refs--;
  if (known.refs > 0) return;
  modules.delete(path);
  try {
    known.p11.C_Finalize();
  } finally {
    known.p11.close();
  }
}

/** The slot holding the token labelled `label` (trailing blanks are padding, PKCS#11 CK_TOKEN_INFO). */
export function findSlot(p11: PKCS11, label: string): Handle {
  const matches = p11.C_GetSlotList(true).filter((slot) => p11.C_GetTokenInfo(slot).label.trim() === label);
  if (matches.length === 0) throw keysErrors.error('KEYS_TOKEN_NOT_FOUND', { tokenLabel: label });
  if (matches.length > 1) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { tokenLabel: label, tokens: matches.length },
      { message: `Several PKCS#11 tokens are labelled ${label}; labels must identify one token.` },
    );
  }
  return matches[0]!;
}

export function login(p11: PKCS11, session: Handle, pin: string, tokenLabel: string): void {
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (e) {
    const code = p11Code(e);
    // Login state belongs to the application, not the session (v2.40 section 5.6): another signer of this
    // process on the same token has already logged in.
    if (code === CKR.USER_ALREADY_LOGGED_IN) return;
    if (
      code === CKR.PIN_INCORRECT ||
      code === CKR.PIN_INVALID ||
      code === CKR.PIN_LEN_RANGE ||
      code === CKR.PIN_EXPIRED ||
      code === CKR.PIN_LOCKED
    ) {
      throw keysErrors.error(
        'KEYS_BAD_PIN',
        { tokenLabel, ckr: `0x${(code ?? 0).toString(16)}` },
        code === CKR.PIN_LOCKED ? { message: 'The PKCS#11 user PIN is locked; the token officer must reset it.' } : {},
      );
    }
    throw keysErrors.error('KEYS_BACKEND_ERROR', { tokenLabel }, { cause: e });
  }
}

export function findObjects(p11: PKCS11, session: Handle, template: pkcs11js.Template): Handle[] {
  p11.C_FindObjectsInit(session, template);
  try {
    return p11.C_FindObjects(session, 2);
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

export function attrBool(value: unknown): boolean {
  return Buffer.isBuffer(value) ? value.length > 0 && value[0] !== 0 : value === true;
}

export function attrNumber(value: unknown): number {
  return Buffer.isBuffer(value) ? value.readUIntLE(0, Math.min(value.length, 6)) : Number(value);
}

/**
 * Read the user PIN from its file (must be private) or its named environment variable; exactly one of them.
 * @throws CosignerError KEYS_BAD_CONFIG, RUNTIME_FILE_NOT_PRIVATE
 */
export async function readPkcs11Pin(
  config: { pinFile?: string | undefined; pinEnv?: string | undefined },
  env: NodeJS.ProcessEnv,
): Promise<string> {
  if (config.pinFile !== undefined && config.pinEnv !== undefined) {
    throw keysErrors.error('KEYS_BAD_CONFIG', undefined, {
      message: 'Give the PKCS#11 PIN as pinFile or pinEnv, not both.',
    });
  }
  if (config.pinFile !== undefined) return readSecretFile(config.pinFile, 'PKCS#11 user PIN');
  const pin = config.pinEnv === undefined ? undefined : env[config.pinEnv];
  if (pin === undefined || pin === '') {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { pinEnv: config.pinEnv },
      { message: 'The PKCS#11 user PIN is missing: set pinFile (preferred) or pinEnv to a non-empty variable.' },
    );
  }
  return pin;
}

/**
 * Find the key pair by CKA_ID and check it: exactly one private key, Ed25519, allowed to sign, sensitive and
 * not extractable; exactly one public key, whose CKA_EC_POINT gives the raw public key.
 */
function locateKey(
  p11: PKCS11,
  session: Handle,
  config: Pkcs11SignerConfig,
  keyId: string,
): { privateKey: Handle; publicKey: Buffer } {
  const id = Buffer.from(config.keyIdHex, 'hex');
  const privs = findObjects(p11, session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_ID, value: id },
  ]);
  if (privs.length === 0) throw keysErrors.error('KEYS_KEY_NOT_FOUND', { keyId });
  if (privs.length > 1) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { keyId },
      { message: `Several private keys on token ${config.tokenLabel} have CKA_ID ${config.keyIdHex}.` },
    );
  }
  const privateKey = privs[0]!;
  const attrs = p11.C_GetAttributeValue(session, privateKey, [
    { type: pkcs11js.CKA_KEY_TYPE },
    { type: pkcs11js.CKA_SIGN },
    { type: pkcs11js.CKA_EXTRACTABLE },
    { type: pkcs11js.CKA_SENSITIVE },
  ]);
  if (attrNumber(attrs[0]?.value) !== CKK_EC_EDWARDS || !attrBool(attrs[1]?.value)) {
    throw keysErrors.error('KEYS_WRONG_KEY_SPEC', { keyId, keyType: attrNumber(attrs[0]?.value) });
  }
  if (attrBool(attrs[2]?.value) || !attrBool(attrs[3]?.value)) {
    throw keysErrors.error('KEYS_KEY_EXTRACTABLE', {
      keyId,
      extractable: attrBool(attrs[2]?.value),
      sensitive: attrBool(attrs[3]?.value),
    });
  }
  const pubs = findObjects(p11, session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_ID, value: id },
  ]);
  if (pubs.length !== 1) {
    throw keysErrors.error(
      'KEYS_KEY_NOT_FOUND',
      { keyId, publicKeys: pubs.length },
      { message: `The token must hold exactly one public key with CKA_ID ${config.keyIdHex}; found ${pubs.length}.` },
    );
  }
  const [point] = p11.C_GetAttributeValue(session, pubs[0]!, [{ type: pkcs11js.CKA_EC_POINT }]);
  const publicKey = publicKeyFromEcPoint(point?.value as Buffer);

  return { privateKey, publicKey };
}

/** A fixed set of logged-in sessions; callers wait for a free one (FIFO) so signs never share a session. */
class SessionPool {
  private readonly free: Handle[];
  private readonly waiters: { resolve: (s: Handle) => void; reject: (e: Error) => void }[] = [];
  private closed = false;

  constructor(readonly all: Handle[]) {
    this.free = [...all];
  }

  acquire(signal: AbortSignal): Promise<Handle> {
    if (this.closed) return Promise.reject(keysErrors.error('KEYS_BACKEND_UNAVAILABLE', { reason: 'closed' }));
    const session = this.free.pop();
    if (session) return Promise.resolve(session);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (s: Handle) => {
          signal.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject,
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(keysErrors.error('KEYS_BACKEND_TIMEOUT', { reason: 'no free PKCS#11 session in time' }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(session: Handle): void {
    const next = this.waiters.shift();
    if (next) next.resolve(session);
    else this.free.push(session);
  }

  /** Wake every waiter with an error; sessions still signing are closed by the caller afterwards. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0))
      w.reject(keysErrors.error('KEYS_BACKEND_UNAVAILABLE', { reason: 'closed' }));
  }
}

export interface Pkcs11SignerOptions {
  metrics?: KeyMetrics | undefined;
  logger?: Logger | undefined;
  env?: NodeJS.ProcessEnv;
  resilience?: Omit<ResilienceOptions, 'onStateChange'>;
}

/**
 * Open a PKCS#11-backed signer: token by label, login, private key by CKA_ID (refused if extractable or not
 * sensitive), public key from CKA_EC_POINT, then a pool of `config.sessions` (default 4) sessions.
 * @throws CosignerError KEYS_TOKEN_NOT_FOUND, KEYS_BAD_PIN, KEYS_KEY_NOT_FOUND, KEYS_KEY_EXTRACTABLE,
 *   KEYS_WRONG_KEY_SPEC, KEYS_ADDRESS_MISMATCH, KEYS_BAD_CONFIG, RUNTIME_FILE_NOT_PRIVATE (PIN file)
 */
export async function createPkcs11Signer(config: Pkcs11SignerConfig, opts: Pkcs11SignerOptions = {}): Promise<Signer> {
  const size = config.sessions ?? 4;
  if (!Number.isInteger(size) || size < 1 || size > 64) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { sessions: size },
      { message: 'sessions must be an integer from 1 to 64.' },
    );
  }
  if (!/^([0-9a-f]{2})+$/i.test(config.keyIdHex)) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { keyIdHex: config.keyIdHex },
      { message: 'keyIdHex must be non-empty hex.' },
    );
  }
  const pin = await readPkcs11Pin(config, opts.env ?? process.env);
  const keyId = `${config.tokenLabel}/${config.keyIdHex.toLowerCase()}`;
  const p11 = acquireModule(config.module);
  const sessions: Handle[] = [];
  const closeAll = (): void => {
    for (const s of sessions.splice(0)) {
      try {
        p11.C_CloseSession(s);
      } catch {
        // already closed by the token (removed, finalized): nothing left to release
      }
    }
    releaseModule(config.module);
  };
  try {
    const slot = findSlot(p11, config.tokenLabel);
    for (let i = 0; i < size; i++) sessions.push(p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION));
    login(p11, sessions[0]!, pin, config.tokenLabel);
    const s0 = sessions[0]!;
    const located = locateKey(p11, s0, config, keyId);
    let privateKey = located.privateKey;
    const publicKey = located.publicKey;

    const pool = new SessionPool([...sessions]);
    const resilience = new Resilience({
      timeoutMs: config.timeoutMs,
      // A token answers locally: no network to wait out, so retry quickly and give up quickly.
      retries: 1,
      baseDelayMs: 5,
      ...opts.resilience,
      onStateChange: (state) => {
        opts.metrics?.setCircuitState('pkcs11', keyId, state);
        opts.logger?.warn({ keyId, state }, 'PKCS#11 circuit breaker state changed');
      },
    });
    /**
     * A session the token dropped (token reset, HSM fail-over, C_CloseAllSessions elsewhere) is replaced by a
     * fresh, logged-in one before it goes back to the pool, so the signer recovers without a restart: the
     * failed call is KEYS_BACKEND_UNAVAILABLE and the resilience layer's retry lands on the new session.
     */
    const replaceLost = (lost: Handle): Handle => {
      const i = sessions.indexOf(lost);
      try {
        const fresh = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
        login(p11, fresh, pin, config.tokenLabel);
        // Object handles may not survive a token reset (SoftHSM2 invalidates them): find the key again, and
        // refuse a token that now holds a different key under this CKA_ID.
        const again = locateKey(p11, fresh, config, keyId);
        if (!again.publicKey.equals(publicKey)) {
          p11.C_CloseSession(fresh);
          opts.logger?.error({ keyId }, 'the PKCS#11 key under this CKA_ID changed; not using it');
          return lost;
        }
        privateKey = again.privateKey;
        if (i >= 0) sessions[i] = fresh;
        opts.logger?.warn({ keyId }, 'replaced a PKCS#11 session the token had closed');
        return fresh;
      } catch {
        // The token is still unreachable: keep the dead handle; the next call tries again.
        return lost;
      }
    };
    const withSession = async <T>(signal: AbortSignal, fn: (session: Handle) => Promise<T>): Promise<T> => {
      let session = await pool.acquire(signal);
      try {
        return await fn(session);
      } catch (e) {
        const code = p11Code(e);
        if (code !== undefined && LOST.has(code)) {
          session = replaceLost(session);
        }
        throw mapP11Error(e, keyId);
      } finally {
        pool.release(session);
      }
    };
    const signer = guardSigner(
      {
        kind: 'pkcs11',
        keyId,
        publicKey,
        rawSign: (payload, signal) =>
          withSession(signal, (session) => {
            p11.C_SignInit(session, { mechanism: CKM_EDDSA }, privateKey);
            return new Promise<Buffer>((resolve, reject) => {
              p11.C_Sign(session, payload, Buffer.alloc(64), (err, sig) => (err ? reject(err) : resolve(sig)));
            });
          }),
        probe: (signal) =>
          withSession(signal, async (session) => {
            // CKS_RO_USER_FUNCTIONS (1) / CKS_RW_USER_FUNCTIONS (3): the session is still logged in.
            const state = p11.C_GetSessionInfo(session).state;
            if (state !== 1 && state !== 3) {
              throw keysErrors.error('KEYS_BACKEND_UNAVAILABLE', { keyId, sessionState: state });
            }
          }),
        close: async () => {
          pool.close();
          closeAll();
        },
      },
      { expectedAddress: config.expectedAddress, resilience, metrics: opts.metrics, logger: opts.logger },
    );
    opts.logger?.info({ keyId, address: signer.address, sessions: size }, 'PKCS#11 signer ready');
    return signer;
  } catch (e) {
    closeAll();
    throw mapP11Error(e, keyId);
  }
}

/**
 * Generate a non-extractable Ed25519 key pair on a token (for `cosigner keys create --backend pkcs11`).
 * Private template: TOKEN, PRIVATE, SENSITIVE, not EXTRACTABLE, SIGN; the pair shares a CKA_ID (random 16
 * bytes unless given) by which the signer finds it.
 * @returns the key id (`token-label/CKA_ID hex`), the public key and Stellar address; never key material
 * @throws CosignerError KEYS_TOKEN_NOT_FOUND, KEYS_BAD_PIN, KEYS_KEY_EXISTS, KEYS_BAD_CONFIG, KEYS_BACKEND_ERROR
 */
export async function createPkcs11Key(params: {
  module: string;
  tokenLabel: string;
  pin: string;
  keyIdHex?: string;
  label?: string;
}): Promise<{ keyId: string; keyIdHex: string; publicKey: Buffer; address: string }> {
  const keyIdHex = (params.keyIdHex ?? randomBytes(16).toString('hex')).toLowerCase();
  if (!/^([0-9a-f]{2})+$/.test(keyIdHex)) {
    throw keysErrors.error('KEYS_BAD_CONFIG', { keyIdHex }, { message: 'keyIdHex must be non-empty hex.' });
  }
  const keyId = `${params.tokenLabel}/${keyIdHex}`;
  const id = Buffer.from(keyIdHex, 'hex');
  const p11 = acquireModule(params.module);
  let session: Handle | undefined;
  try {
    const slot = findSlot(p11, params.tokenLabel);
    session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    login(p11, session, params.pin, params.tokenLabel);
    const existing = findObjects(p11, session, [{ type: pkcs11js.CKA_ID, value: id }]);
    if (existing.length > 0) throw keysErrors.error('KEYS_KEY_EXISTS', { keyId });
    const label = params.label ?? `cosigner-${keyIdHex.slice(0, 8)}`;
    const keys = p11.C_GenerateKeyPair(
      session,
      { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN },
      [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_VERIFY, value: true },
        { type: pkcs11js.CKA_EC_PARAMS, value: ED25519_EC_PARAMS },
        { type: pkcs11js.CKA_ID, value: id },
        { type: pkcs11js.CKA_LABEL, value: label },
      ],
      [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_ID, value: id },
        { type: pkcs11js.CKA_LABEL, value: label },
      ],
    );
    const [point] = p11.C_GetAttributeValue(session, keys.publicKey, [{ type: pkcs11js.CKA_EC_POINT }]);
    const publicKey = publicKeyFromEcPoint(point?.value as Buffer);
    return { keyId, keyIdHex, publicKey, address: addressOf(publicKey) };
  } catch (e) {
    throw mapP11Error(e, keyId);
  } finally {
    if (session) p11.C_CloseSession(session);
    releaseModule(params.module);
  }
}

import { sign as edSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import { Keypair } from '@stellar/stellar-sdk';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  addressOf,
  checkPayload,
  publicKeyFromEcPoint,
  publicKeyFromSpki,
  publicKeyObject,
  SPKI_ED25519_PREFIX,
  verifyWith,
} from '../src/ed25519.ts';
import { type BackendCore, guardSigner } from '../src/guarded.ts';
import { createKeyMetrics } from '../src/metrics.ts';
import { Resilience } from '../src/resilience.ts';

function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  return { privateKey, raw };
}

function core(over: Partial<BackendCore> = {}): BackendCore {
  const { privateKey, raw } = keyPair();
  return {
    kind: 'local',
    keyId: 'test-key',
    publicKey: raw,
    rawSign: async (p) => edSign(null, p, privateKey),
    probe: async () => {},
    close: async () => {},
    ...over,
  };
}

describe('ed25519 helpers', () => {
  it('checkPayload tells a wrong type from a wrong length', () => {
    expect(() => checkPayload('x'.repeat(32))).toThrow(/must be bytes/);
    expect(() => checkPayload(randomBytes(31), 'txHash')).toThrow(/txHash must be exactly 32 bytes, got 31/);
    const view = new Uint8Array(randomBytes(40).buffer, 3, 32);
    const out = checkPayload(view);
    expect(Buffer.isBuffer(out)).toBe(true);
    expect(out.equals(Buffer.from(view))).toBe(true);
  });

  it('decodes SPKI and CKA_EC_POINT forms and refuses anything else', () => {
    const { raw } = keyPair();
    expect(publicKeyFromSpki(Buffer.concat([SPKI_ED25519_PREFIX, raw])).equals(raw)).toBe(true);
    // An ECDSA P-256 SPKI is a wrong key spec.
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' });
    expect(() => publicKeyFromSpki(p256)).toThrow(expect.objectContaining({ code: 'KEYS_WRONG_KEY_SPEC' }));
    const wrongPrefix = Buffer.concat([Buffer.alloc(12), raw]);
    expect(() => publicKeyFromSpki(wrongPrefix)).toThrow(expect.objectContaining({ code: 'KEYS_WRONG_KEY_SPEC' }));
    expect(publicKeyFromEcPoint(Buffer.concat([Buffer.from('0420', 'hex'), raw])).equals(raw)).toBe(true);
    expect(publicKeyFromEcPoint(raw).equals(raw)).toBe(true);
    expect(() => publicKeyFromEcPoint(Buffer.concat([Buffer.from('0421', 'hex'), raw, Buffer.alloc(1)]))).toThrow(
      expect.objectContaining({ code: 'KEYS_WRONG_KEY_SPEC' }),
    );
  });

  it('derives the same address as the SDK and verifies without throwing on garbage', () => {
    const kp = Keypair.random();
    expect(addressOf(kp.rawPublicKey())).toBe(kp.publicKey());
    const key = publicKeyObject(kp.rawPublicKey());
    const payload = randomBytes(32);
    const sig = kp.sign(payload);
    expect(verifyWith(key, payload, sig)).toBe(true);
    expect(verifyWith(key, payload, sig.subarray(1))).toBe(false);
    expect(verifyWith(key, payload, Buffer.alloc(64, 0xff))).toBe(false);
  });
});

describe('guardSigner', () => {
  it('refuses a signature that does not verify (a misbehaving or swapped backend) with KEYS_BAD_SIGNATURE', async () => {
    const registry = new Registry();
    const other = keyPair();
    const signer = guardSigner(core({ rawSign: async (p) => edSign(null, p, other.privateKey) }), {
      metrics: createKeyMetrics(registry),
    });
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BAD_SIGNATURE' });
    const garbage = guardSigner(core({ rawSign: async () => Buffer.alloc(10) }), {});
    await expect(garbage.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BAD_SIGNATURE' });
    const metrics = await registry.getMetricsAsJSON();
    const errors = metrics.find((m) => m.name === 'cosigner_keys_errors_total');
    expect(errors?.values).toEqual([{ value: 1, labels: { backend: 'local', code: 'KEYS_BAD_SIGNATURE' } }]);
  });

  it('wraps a foreign backend failure as KEYS_BACKEND_ERROR, keeping the cause', async () => {
    const boom = new Error('native crash');
    const signer = guardSigner(
      core({
        rawSign: async () => {
          throw boom;
        },
        probe: async () => {
          throw boom;
        },
      }),
      {},
    );
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_ERROR', cause: boom });
    expect(await signer.health()).toEqual({ ok: false, detail: 'unexpected error' });
  });

  it('reports an open circuit in health and keeps the breaker in the sign path', async () => {
    const registry = new Registry();
    const metrics = createKeyMetrics(registry);
    let up = false;
    const resilience = new Resilience({
      retries: 0,
      failureThreshold: 2,
      resetAfterMs: 60_000,
      onStateChange: (s) => metrics.setCircuitState('local', 'test-key', s),
    });
    const base = core();
    const signer = guardSigner(
      {
        ...base,
        rawSign: async (p, signal) => {
          if (!up) throw new Error('down');
          return base.rawSign(p, signal);
        },
      },
      { resilience, metrics },
    );
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_ERROR' });
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_ERROR' });
    up = true;
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_CIRCUIT_OPEN' });
    expect(await signer.health()).toEqual({ ok: false, detail: 'KEYS_CIRCUIT_OPEN' });
    const gauge = (await registry.getMetricsAsJSON()).find((m) => m.name === 'cosigner_keys_circuit_state');
    expect(gauge?.values).toEqual([{ value: 2, labels: { backend: 'local', key: 'test-key' } }]);
  });

  it('refuses a mismatched expected address at construction', () => {
    expect(() => guardSigner(core(), { expectedAddress: Keypair.random().publicKey() })).toThrow(
      expect.objectContaining({ code: 'KEYS_ADDRESS_MISMATCH' }),
    );
  });
});

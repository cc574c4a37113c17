import { createPublicKey, verify as cryptoVerify, randomBytes } from 'node:crypto';
import { CosignerError } from '@cosigner/errors/errors';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyMetrics, type KeyMetrics } from '../src/metrics.ts';
import type { Signer, SignerKind } from '../src/signer.ts';

/**
 * The one conformance suite every Signer backend passes (local, aws-kms through the emulator, pkcs11 through
 * SoftHSM). It checks only the interface's promises, so a new backend is conformant when this passes.
 */

export interface ConformanceOptions {
  kind: SignerKind;
  /** Concurrent signs in the concurrency check. Default 50. */
  concurrency?: number;
}

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function nodeVerify(publicKey: Buffer, payload: Buffer, signature: Buffer): boolean {
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  return cryptoVerify(null, payload, key, signature);
}

async function signCount(registry: Registry): Promise<number> {
  const metric = await registry.getSingleMetric('cosigner_keys_sign_seconds')?.get();
  return (metric?.values ?? [])
    .filter((v) => (v as { metricName?: string }).metricName === 'cosigner_keys_sign_seconds_count')
    .reduce((n, v) => n + v.value, 0);
}

export function runSignerConformance(
  name: string,
  makeSigner: (ctx: { metrics: KeyMetrics }) => Promise<Signer>,
  opts: ConformanceOptions,
): void {
  describe(`Signer conformance: ${name}`, () => {
    const registry = new Registry();
    let signer: Signer;

    beforeAll(async () => {
      signer = await makeSigner({ metrics: createKeyMetrics(registry) });
    });
    afterAll(async () => {
      await signer?.close();
    });

    it('derives the Stellar address from the 32-byte public key', () => {
      expect(signer.kind).toBe(opts.kind);
      expect(signer.keyId.length).toBeGreaterThan(0);
      expect(signer.publicKey).toHaveLength(32);
      expect(signer.address).toBe(StrKey.encodeEd25519PublicKey(signer.publicKey));
      expect(StrKey.isValidEd25519PublicKey(signer.address)).toBe(true);
      expect(Buffer.from(Keypair.fromPublicKey(signer.address).rawPublicKey()).equals(signer.publicKey)).toBe(true);
    });

    it('signs 32 bytes with a signature that verifies under node:crypto and the SDK', async () => {
      const payload = randomBytes(32);
      const signature = await signer.sign(payload);
      expect(signature).toHaveLength(64);
      expect(nodeVerify(signer.publicKey, payload, signature)).toBe(true);
      expect(Keypair.fromPublicKey(signer.address).verify(payload, signature)).toBe(true);
      // The signature is over these bytes and no others.
      const other = Buffer.from(payload);
      other[0] = other[0]! ^ 1;
      expect(nodeVerify(signer.publicKey, other, signature)).toBe(false);
      // Pure Ed25519 is deterministic (RFC 8032 section 5.1.6): a prehash or randomized scheme would differ.
      expect((await signer.sign(payload)).equals(signature)).toBe(true);
    });

    it('accepts any Uint8Array view of 32 bytes, not only Buffers', async () => {
      const backing = randomBytes(40);
      const view = new Uint8Array(backing.buffer, backing.byteOffset + 4, 32);
      const signature = await signer.sign(view);
      expect(nodeVerify(signer.publicKey, Buffer.from(view), signature)).toBe(true);
    });

    it('refuses payloads that are not 32 bytes with KEYS_BAD_PAYLOAD, without signing', async () => {
      const before = await signCount(registry);
      const bad: unknown[] = [
        Buffer.alloc(0),
        randomBytes(31),
        randomBytes(33),
        randomBytes(64),
        'a'.repeat(32),
        Array.from({ length: 32 }, () => 1),
        null,
        undefined,
      ];
      for (const payload of bad) {
        const err = await signer.sign(payload as Uint8Array).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, String(payload)).toBeInstanceOf(CosignerError);
        expect((err as CosignerError).code).toBe('KEYS_BAD_PAYLOAD');
      }
      // No sign call was started or recorded for any refused payload.
      expect(await signCount(registry)).toBe(before);
    });

    it('signs concurrently: every signature is valid for its own payload', async () => {
      const n = opts.concurrency ?? 50;
      const payloads = Array.from({ length: n }, () => randomBytes(32));
      const signatures = await Promise.all(payloads.map((p) => signer.sign(p)));
      signatures.forEach((sig, i) => {
        expect(nodeVerify(signer.publicKey, payloads[i]!, sig), `signature ${i}`).toBe(true);
      });
    });

    it('reports healthy and records sign latency', async () => {
      expect(await signer.health()).toEqual({ ok: true });
      expect(await signCount(registry)).toBeGreaterThan(0);
    });

    it('closes: later signs fail with a code, health says not ok, a second close is harmless', async () => {
      const extra = await makeSigner({ metrics: createKeyMetrics(new Registry()) });
      expect(extra.address).toBe(signer.address);
      await extra.close();
      await extra.close();
      await expect(extra.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_UNAVAILABLE' });
      expect((await extra.health()).ok).toBe(false);
      // Closing one signer leaves another on the same key working (shared module / client state).
      const payload = randomBytes(32);
      expect(nodeVerify(signer.publicKey, payload, await signer.sign(payload))).toBe(true);
    });
  });
}

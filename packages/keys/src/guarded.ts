import { CosignerError } from '@cosigner/errors/errors';
import type { Logger } from 'pino';
import { addressOf, checkExpectedAddress, checkPayload, publicKeyObject, verifyWith } from './ed25519.ts';
import { keysErrors } from './errors.ts';
import type { KeyMetrics } from './metrics.ts';
import type { Resilience } from './resilience.ts';
import type { Signer, SignerKind } from './signer.ts';

/** What a backend provides: the raw operations, without checks, metrics or resilience. */
export interface BackendCore {
  readonly kind: SignerKind;
  readonly keyId: string;
  readonly publicKey: Buffer;
  /** Sign exactly the 32 checked bytes. `signal` aborts when the call's deadline passes. */
  rawSign(payload: Buffer, signal: AbortSignal): Promise<Buffer>;
  /** Throws when the backend cannot sign now. */
  probe(signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface GuardOptions {
  expectedAddress?: string | undefined;
  resilience?: Resilience | undefined;
  metrics?: KeyMetrics | undefined;
  logger?: Logger | undefined;
}

/**
 * Wrap a backend into a Signer with the checks every backend shares: the payload is 32 bytes before anything
 * is sent; the derived address matches the configuration; every signature verifies under the key's public key
 * (node:crypto) before it is returned, so a misbehaving KMS/HSM or a swapped key never leaks a bad signature.
 * @throws CosignerError KEYS_ADDRESS_MISMATCH (at construction)
 */
export function guardSigner(core: BackendCore, opts: GuardOptions): Signer {
  const address = addressOf(core.publicKey);
  checkExpectedAddress(address, opts.expectedAddress, core.keyId);
  const verifyKey = publicKeyObject(core.publicKey);
  const run = <T>(op: (signal: AbortSignal) => Promise<T>): Promise<T> =>
    opts.resilience ? opts.resilience.run(op) : op(new AbortController().signal);
  let closed = false;

  const signOnce = async (payload: Buffer, signal: AbortSignal): Promise<Buffer> => {
    const signature = await core.rawSign(payload, signal);
    if (!verifyWith(verifyKey, payload, signature)) {
      opts.logger?.error(
        { keyId: core.keyId, backend: core.kind },
        'key backend returned a signature that does not verify',
      );
      throw keysErrors.error('KEYS_BAD_SIGNATURE', { keyId: core.keyId, backend: core.kind });
    }
    return signature;
  };

  return {
    kind: core.kind,
    keyId: core.keyId,
    publicKey: Buffer.from(core.publicKey),
    address,
    async sign(payload: Uint8Array): Promise<Buffer> {
      const checked = checkPayload(payload);
      if (closed) throw keysErrors.error('KEYS_BACKEND_UNAVAILABLE', { keyId: core.keyId, reason: 'closed' });
      const started = process.hrtime.bigint();
      try {
        const signature = await run((signal) => signOnce(checked, signal));
        opts.metrics?.observeSign(core.kind, Number(process.hrtime.bigint() - started) / 1e9, 'ok');
        return signature;
      } catch (e) {
        opts.metrics?.observeSign(core.kind, Number(process.hrtime.bigint() - started) / 1e9, 'error');
        const code = e instanceof CosignerError ? e.code : 'unexpected';
        opts.metrics?.countError(core.kind, code);
        throw e instanceof CosignerError
          ? e
          : keysErrors.error('KEYS_BACKEND_ERROR', { keyId: core.keyId, backend: core.kind }, { cause: e });
      }
    },
    async health(): Promise<{ ok: boolean; detail?: string }> {
      if (closed) return { ok: false, detail: 'closed' };
      try {
        await run((signal) => core.probe(signal));
        return { ok: true };
      } catch (e) {
        return { ok: false, detail: e instanceof CosignerError ? e.code : 'unexpected error' };
      }
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await core.close();
    },
  };
}

import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { ShareSealer } from '../src/sealer.ts';

export const code = (c: string, details?: Record<string, unknown>) =>
  expect.objectContaining(details ? { code: c, details: expect.objectContaining(details) } : { code: c });

export const CTX = { purpose: 'frost-share', node: 'node-a', group: 'GROUPKEY' };

/** What every backend must do (the same checks for each). */
export async function conformance(sealer: ShareSealer) {
  const share = randomBytes(32);
  const copy = Buffer.from(share);
  const blob = await sealer.seal(share, CTX);
  // The caller keeps its buffer (the sealer zeroes only its own copy); the blob holds no part of it in the clear.
  expect(share).toEqual(copy);
  const text = JSON.stringify(blob);
  expect(text).not.toContain(copy.toString('hex'));
  expect(text).not.toContain(copy.toString('base64'));
  expect(Buffer.from(blob.ciphertext, 'base64').includes(copy)).toBe(false);
  expect(Buffer.from(await sealer.unseal(blob, { group: 'GROUPKEY', node: 'node-a', purpose: 'frost-share' }))).toEqual(
    copy,
  );
  // Another node, group or purpose, or a changed blob: does not open.
  for (const ctx of [{ ...CTX, node: 'node-b' }, { ...CTX, group: 'OTHER' }, { purpose: 'frost-share' }]) {
    await expect(sealer.unseal(blob, ctx)).rejects.toThrow(code('FROST_UNSEAL_FAILED'));
  }
  const ct = Buffer.from(blob.ciphertext, 'base64');
  ct[0]! ^= 1;
  await expect(sealer.unseal({ ...blob, ciphertext: ct.toString('base64') }, CTX)).rejects.toThrow(
    code('FROST_UNSEAL_FAILED'),
  );
  await expect(sealer.unseal({ ...blob, iv: Buffer.alloc(12).toString('base64') }, CTX)).rejects.toThrow(
    code('FROST_UNSEAL_FAILED'),
  );
  await expect(sealer.unseal({ ...blob, iv: 'AAAA' }, CTX)).rejects.toThrow(code('FROST_UNSEAL_FAILED'));
  await expect(sealer.unseal({ ...blob, v: 2 } as never, CTX)).rejects.toThrow(code('FROST_OUT_OF_RANGE'));
  await expect(sealer.unseal({ ...blob, ciphertext: '%%' }, CTX)).rejects.toThrow(code('FROST_OUT_OF_RANGE'));
  await expect(sealer.seal('share' as never, CTX)).rejects.toThrow(code('FROST_BAD_INPUT'));
  await expect(sealer.seal(randomBytes(32), {})).rejects.toThrow(code('FROST_OUT_OF_RANGE'));
  // Two seals of the same share differ (fresh IV, and for KMS a fresh data key).
  const again = await sealer.seal(Buffer.from(copy), CTX);
  expect(again.ciphertext).not.toBe(blob.ciphertext);
  return blob;
}

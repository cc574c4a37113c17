import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CreateKeyCommand, DisableKeyCommand, EnableKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmulatorAccount, emulatorCredentials, readEmulatorAccounts } from '../src/aws-kms/emulator-accounts.ts';
import {
  createKmsClient,
  createKmsKey,
  createKmsSigner,
  KMS_USER_AGENT,
  type KmsSignerConfig,
  kmsSign,
  mapAwsError,
  REMOVED_MIDDLEWARE,
} from '../src/aws-kms/kms-signer.ts';
import { createSigner } from '../src/factory.ts';
import { createKeyMetrics } from '../src/metrics.ts';
import { runSignerConformance } from './conformance.ts';

// The aws-kms backend with the real @aws-sdk/client-kms against a real `cosigner kms-emulator` process.

let dir: string;
let emulator: RunningProcess;
let accounts: EmulatorAccount[];
let admin: KMSClient;
let key: { keyArn: string; address: string };

const nodeConfig = (over: Partial<KmsSignerConfig> = {}, account = 'node-a'): KmsSignerConfig => {
  const { region, credentials } = emulatorCredentials(accounts, account, 'node');
  return { type: 'aws-kms', keyId: key.keyArn, region, endpoint: emulator.url, credentials, ...over };
};

beforeAll(async () => {
  dir = await tempDir('cosigner-keys-kms-');
  emulator = await startCosignerProcess({ args: ['kms-emulator', '--data-dir', dir], readyTimeoutMs: 60_000 });
  accounts = await readEmulatorAccounts(String(emulator.ready.accountsFile));
  const a = emulatorCredentials(accounts, 'node-a', 'admin');
  admin = createKmsClient({ region: a.region, endpoint: emulator.url, credentials: a.credentials });
  key = await createKmsKey(admin, { alias: 'conformance-node-a', tags: { purpose: 'test' } });
});
afterAll(async () => {
  admin?.destroy();
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

runSignerConformance(
  'aws-kms (emulator, node credentials)',
  ({ metrics }) => createSigner(nodeConfig(), { production: true, metrics }),
  { kind: 'aws-kms' },
);

describe('aws-kms backend against the emulator', () => {
  it('createKmsKey returns the ARN and the address the signer derives; the alias resolves to the same key', async () => {
    expect(key.keyArn).toMatch(/^arn:aws:kms:us-east-1:111111111111:key\//);
    const byAlias = await createKmsSigner(
      nodeConfig({ keyId: 'alias/conformance-node-a', expectedAddress: key.address }),
    );
    expect(byAlias.keyId).toBe(key.keyArn);
    expect(byAlias.address).toBe(key.address);
    const payload = randomBytes(32);
    expect(Keypair.fromPublicKey(key.address).verify(payload, await byAlias.sign(payload))).toBe(true);
    await byAlias.close();
  });

  it('refuses a key of the wrong spec (SYMMETRIC_DEFAULT)', async () => {
    const made = await admin.send(new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }));
    await expect(createKmsSigner(nodeConfig({ keyId: made.KeyMetadata!.Arn! }))).rejects.toMatchObject({
      code: 'KEYS_WRONG_KEY_SPEC',
      details: { keySpec: 'SYMMETRIC_DEFAULT' },
    });
  });

  it('refuses a disabled key at start-up, and a key disabled while running fails signs and health', async () => {
    const other = await createKmsKey(admin);
    const signer = await createKmsSigner(nodeConfig({ keyId: other.keyArn }));
    await admin.send(new DisableKeyCommand({ KeyId: other.keyArn }));
    await expect(createKmsSigner(nodeConfig({ keyId: other.keyArn }))).rejects.toMatchObject({
      code: 'KEYS_KEY_DISABLED',
    });
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_KEY_DISABLED' });
    expect(await signer.health()).toEqual({ ok: false, detail: 'KEYS_KEY_DISABLED' });
    await admin.send(new EnableKeyCommand({ KeyId: other.keyArn }));
    expect(await signer.health()).toEqual({ ok: true });
    await signer.close();
  });

  it("refuses another account's key with KEYS_ACCESS_DENIED (no cross-account grant)", async () => {
    await expect(createKmsSigner(nodeConfig({}, 'node-b'))).rejects.toMatchObject({ code: 'KEYS_ACCESS_DENIED' });
  });

  it('refuses a wrong secret and an unknown access key with KEYS_ACCESS_DENIED', async () => {
    const good = nodeConfig();
    await expect(
      createKmsSigner({ ...good, credentials: { ...good.credentials!, secretAccessKey: 'wrong-secret' } }),
    ).rejects.toMatchObject({ code: 'KEYS_ACCESS_DENIED', details: { awsError: 'InvalidSignatureException' } });
    await expect(
      createKmsSigner({ ...good, credentials: { accessKeyId: 'AKIANOSUCHKEY0000000', secretAccessKey: 'x' } }),
    ).rejects.toMatchObject({ code: 'KEYS_ACCESS_DENIED', details: { awsError: 'UnrecognizedClientException' } });
  });

  it('names a missing key, and the node principal may not create keys', async () => {
    await expect(
      createKmsSigner(
        nodeConfig({ keyId: 'arn:aws:kms:us-east-1:111111111111:key/00000000-0000-0000-0000-000000000000' }),
      ),
    ).rejects.toMatchObject({ code: 'KEYS_KEY_NOT_FOUND' });
    const n = emulatorCredentials(accounts, 'node-a', 'node');
    const nodeClient = createKmsClient({ region: n.region, endpoint: emulator.url, credentials: n.credentials });
    await expect(createKmsKey(nodeClient)).rejects.toMatchObject({ code: 'KEYS_ACCESS_DENIED' });
    nodeClient.destroy();
  });

  it('stops start-up on an address mismatch', async () => {
    await expect(
      createSigner(nodeConfig({ expectedAddress: Keypair.random().publicKey() }), { production: true }),
    ).rejects.toMatchObject({ code: 'KEYS_ADDRESS_MISMATCH', details: { derived: key.address } });
  });

  it('reads credentials from the emulator accounts file and refuses unknown principals', () => {
    expect(emulatorCredentials(accounts, '222222222222', 'admin').accountId).toBe('222222222222');
    expect(() => emulatorCredentials(accounts, 'node-z', 'node')).toThrow(
      expect.objectContaining({ code: 'KEYS_BAD_CONFIG' }),
    );
  });

  it('the tuned client: one kept-alive socket, a constant user agent, no per-call SDK headers, still SigV4', async () => {
    // A recording relay between the signer and the emulator (real sockets both ways).
    const seen: Record<string, string | string[] | undefined>[] = [];
    let connections = 0;
    const target = new URL(emulator.url);
    const relay = createServer((req, res) => {
      seen.push(req.headers);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const out = httpRequest(
          { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        out.end(Buffer.concat(chunks));
      });
    });
    relay.on('connection', () => connections++);
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    const port = (relay.address() as AddressInfo).port;
    const signer = await createKmsSigner(nodeConfig({ endpoint: `http://127.0.0.1:${port}` }));
    for (let i = 0; i < 20; i++) {
      const payload = randomBytes(32);
      expect(Keypair.fromPublicKey(key.address).verify(payload, await signer.sign(payload))).toBe(true);
    }
    await signer.close();
    await new Promise<void>((r) => relay.close(() => r()));
    expect(seen).toHaveLength(22); // DescribeKey, GetPublicKey, 20 Signs
    expect(connections).toBe(1);
    for (const h of seen) {
      expect(h['user-agent']).toBe(KMS_USER_AGENT);
      expect(h['x-amz-user-agent']).toBe(KMS_USER_AGENT);
      expect(h['amz-sdk-invocation-id']).toBeUndefined();
      expect(h['amz-sdk-request']).toBeUndefined();
      expect(String(h.authorization)).toMatch(/^AWS4-HMAC-SHA256 Credential=.+\/kms\/aws4_request/);
    }
    // What is left of the SDK's stack: the removed steps are gone (a renamed step in a newer SDK fails here).
    const client = createKmsClient({ region: 'us-east-1', endpoint: emulator.url });
    const names = client.middlewareStack.identify().join('\n');
    for (const name of REMOVED_MIDDLEWARE.filter((n) => n !== 'retryMiddleware')) expect(names).not.toContain(name);
    expect(names).toMatch(/httpSigningMiddleware/);
    expect(names).toMatch(/cosignerUserAgent - build/);
    client.destroy();
  });

  it('a KMS that never answers is a timeout within the deadline, and the socket is dropped', async () => {
    const sockets: Socket[] = [];
    let closed = 0;
    const silent = createServer(() => undefined);
    silent.on('connection', (s) => {
      sockets.push(s);
      s.on('close', () => closed++);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as AddressInfo).port;
    const client = createKmsClient({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${port}`,
      credentials: nodeConfig().credentials,
      timeoutMs: 300,
    });
    const started = Date.now();
    const err = await kmsSign(client, key.keyArn, randomBytes(32), AbortSignal.timeout(300)).catch((e: Error) => e);
    expect(mapAwsError(err, key.keyArn).code).toBe('KEYS_BACKEND_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(2000);
    for (let i = 0; i < 50 && closed < sockets.length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(sockets.length).toBeGreaterThan(0);
    expect(closed).toBe(sockets.length);
    client.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  });

  // Last: it stops the emulator.
  it('fails as unavailable when KMS goes away, then opens the circuit', async () => {
    const registry = new Registry();
    const signer = await createKmsSigner(nodeConfig(), {
      metrics: createKeyMetrics(registry),
      resilience: { retries: 1, baseDelayMs: 1, failureThreshold: 2, resetAfterMs: 60_000 },
    });
    await emulator.stop();
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_UNAVAILABLE' });
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_BACKEND_UNAVAILABLE' });
    await expect(signer.sign(randomBytes(32))).rejects.toMatchObject({ code: 'KEYS_CIRCUIT_OPEN' });
    expect(await signer.health()).toEqual({ ok: false, detail: 'KEYS_CIRCUIT_OPEN' });
    const text = await registry.metrics();
    expect(text).toMatch(/cosigner_keys_errors_total\{backend="aws-kms",code="KEYS_BACKEND_UNAVAILABLE"\} 2/);
    expect(text).toMatch(/cosigner_keys_errors_total\{backend="aws-kms",code="KEYS_CIRCUIT_OPEN"\} 1/);
    await signer.close();
  });
});

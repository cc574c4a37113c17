/**
 * Sign latency and throughput per key backend on this machine, and what the AWS SDK costs on top of a KMS
 * round trip. Run: `pnpm exec tsx bench/keys.bench.ts`. Prints figures and writes bench/results/keys.json.
 * Never run by tests (no timing assertions anywhere).
 *
 * It starts its own `cosigner kms-emulator` process (loopback) and its own SoftHSM2 token in a temp dir.
 * 1. Per backend, through the Signer interface (payload check + backend + verify-before-return):
 *    sequential sign latency (median, p99) and throughput with 16 signs in flight.
 * 2. KMS, side by side, one Sign (ED25519_SHA_512, RAW) each:
 *    - SDK: `KMSClient.send(SignCommand)` (SigV4 by the SDK, middleware stack, keep-alive agent);
 *    - raw: one keep-alive `node:http` POST with a hand-made SigV4 header (AWS SigV4 spec, "Create a signed
 *      AWS API request"), body and headers exactly as the SDK sends them;
 *    - in-process: `crypto.sign` with an Ed25519 key in memory (what the local backend does).
 *    Loopback hides network latency: against real KMS add the round trip to the region (milliseconds).
 */
import { sign as cryptoSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Agent } from 'node:http';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { SignCommand } from '@aws-sdk/client-kms';
import { emulatorCredentials, readEmulatorAccounts } from '@cosigner/keys/aws-kms/emulator-accounts';
import { createKmsClient, createKmsKey } from '@cosigner/keys/aws-kms/kms-signer';
import { publicKeyObject, verifyWith } from '@cosigner/keys/ed25519';
import { createSigner } from '@cosigner/keys/factory';
import { createPkcs11Key } from '@cosigner/keys/pkcs11/pkcs11-signer';
import { createSoftHsmStore, initSoftHsmToken, SOFTHSM_MODULE } from '@cosigner/keys/pkcs11/softhsm';
import type { Signer } from '@cosigner/keys/signer';
import { REPO_ROOT, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { rawKmsCall } from './kms-raw.ts';

const N = Number(process.env.BENCH_N ?? 2000);
const N_KMS = Number(process.env.BENCH_N_KMS ?? 1000);
const IN_FLIGHT = 16;

interface Latency {
  n: number;
  medianMs: number;
  p99Ms: number;
  meanMs: number;
}

function summarize(samples: number[]): Latency {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  const round = (x: number): number => Math.round(x * 10_000) / 10_000;
  return {
    n: s.length,
    medianMs: round(at(0.5)),
    p99Ms: round(at(0.99)),
    meanMs: round(s.reduce((a, b) => a + b, 0) / s.length),
  };
}

/** Sequential latency of `fn`, after a warm-up of a tenth of `n`. */
async function latency(n: number, fn: () => Promise<unknown> | unknown): Promise<Latency> {
  for (let i = 0; i < Math.max(20, n / 10); i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  return summarize(samples);
}

/** Signs per second with IN_FLIGHT concurrent callers. */
async function throughput(n: number, fn: () => Promise<unknown>): Promise<number> {
  let left = n;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (left-- > 0) await fn();
    }),
  );
  return Math.round((n * 1000) / (performance.now() - start));
}

const dir = await tempDir('cosigner-bench-keys-');
// SoftHSM2 reads SOFTHSM2_CONF when the module initialises in this process.
const conf = await createSoftHsmStore(join(dir, 'hsm'));
process.env.SOFTHSM2_CONF = conf;
const pin = randomBytes(6).toString('hex');
await initSoftHsmToken(conf, { label: 'bench', pin });
const pinFile = join(dir, 'pin');
writeFileSync(pinFile, pin, { mode: 0o600 });
const hsmKey = await createPkcs11Key({ module: SOFTHSM_MODULE, tokenLabel: 'bench', pin });

const emulator = await startCosignerProcess({
  args: ['kms-emulator', '--data-dir', join(dir, 'kms')],
  readyTimeoutMs: 60_000,
});
const results: Record<string, unknown> = {};
const signers: Signer[] = [];
try {
  const accounts = await readEmulatorAccounts(String(emulator.ready.accountsFile));
  const admin = emulatorCredentials(accounts, 'node-a', 'admin');
  const node = emulatorCredentials(accounts, 'node-a', 'node');
  const adminClient = createKmsClient({ region: admin.region, endpoint: emulator.url, credentials: admin.credentials });
  const kmsKey = await createKmsKey(adminClient, { alias: 'bench' });
  adminClient.destroy();

  const local = await createSigner({ type: 'local', keyFile: join(dir, 'local.key') }, { production: false });
  const pkcs11 = await createSigner(
    { type: 'pkcs11', module: SOFTHSM_MODULE, tokenLabel: 'bench', keyIdHex: hsmKey.keyIdHex, pinFile },
    { production: false },
  );
  const kms = await createSigner(
    {
      type: 'aws-kms',
      keyId: kmsKey.keyArn,
      region: node.region,
      endpoint: emulator.url,
      credentials: node.credentials,
    },
    { production: false },
  );
  signers.push(local, pkcs11, kms);

  const payload = randomBytes(32);
  const perBackend: Record<string, { latency: Latency; signsPerSecond: number }> = {};
  for (const [name, signer, n] of [
    ['local', local, N],
    ['pkcs11 (SoftHSM2)', pkcs11, N],
    ['aws-kms (SDK -> emulator, loopback)', kms, N_KMS],
  ] as const) {
    const lat = await latency(n, () => signer.sign(payload));
    const tput = await throughput(n, () => signer.sign(payload));
    perBackend[name] = { latency: lat, signsPerSecond: tput };
  }
  results.perBackend = perBackend;

  // KMS: SDK vs raw HTTP + SigV4 vs in-process, one Sign each, signatures checked once for correctness.
  const sdk = createKmsClient({ region: node.region, endpoint: emulator.url, credentials: node.credentials });
  const signInput = {
    KeyId: kmsKey.keyArn,
    Message: payload,
    MessageType: 'RAW',
    SigningAlgorithm: 'ED25519_SHA_512',
  } as const;
  const verifyKey = publicKeyObject(kmsKey.publicKey);
  const sdkSig = Buffer.from((await sdk.send(new SignCommand(signInput))).Signature!);
  const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT });
  const rawBody = JSON.stringify({
    KeyId: kmsKey.keyArn,
    Message: payload.toString('base64'),
    MessageType: 'RAW',
    SigningAlgorithm: 'ED25519_SHA_512',
  });
  const raw = () =>
    rawKmsCall({
      url: new URL(emulator.url),
      agent,
      region: node.region,
      credentials: node.credentials,
      target: 'Sign',
      body: rawBody,
    });
  const rawFirst = await raw();
  const rawSig = Buffer.from((JSON.parse(rawFirst.body) as { Signature: string }).Signature, 'base64');
  if (rawFirst.status !== 200 || !verifyWith(verifyKey, payload, rawSig) || !rawSig.equals(sdkSig)) {
    throw new Error(`raw SigV4 call did not return the SDK's signature: ${rawFirst.status} ${rawFirst.body}`);
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const inProcessKey = privateKey;
  const sdkLat = await latency(N_KMS, () => sdk.send(new SignCommand(signInput)));
  const rawLat = await latency(N_KMS, raw);
  const localLat = await latency(N, () => cryptoSign(null, payload, inProcessKey));
  const sdkTput = await throughput(N_KMS, () => sdk.send(new SignCommand(signInput)));
  const rawTput = await throughput(N_KMS, raw);
  const ratio = (a: number, b: number): number => Math.round((a / b) * 10) / 10;
  results.kmsOverhead = {
    sdkSign: { latency: sdkLat, signsPerSecond: sdkTput },
    rawHttpSigV4: { latency: rawLat, signsPerSecond: rawTput },
    inProcessNodeCrypto: { latency: localLat },
    ratios: {
      sdkOverRawMedian: ratio(sdkLat.medianMs, rawLat.medianMs),
      rawOverInProcessMedian: ratio(rawLat.medianMs, localLat.medianMs),
      sdkOverInProcessMedian: ratio(sdkLat.medianMs, localLat.medianMs),
    },
  };
  sdk.destroy();
  agent.destroy();

  results.machine = {
    node: process.version,
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    date: new Date().toISOString(),
  };
  results.notes =
    'Loopback emulator (SigV4 verified per request, sealed keys, audit log) on a shared 2-core machine; ' +
    'Signer figures include the payload check and the node:crypto verify of every signature.';

  const line = (name: string, l: Latency, tput?: number): string =>
    `${name.padEnd(40)} median ${l.medianMs.toFixed(3).padStart(8)} ms   p99 ${l.p99Ms.toFixed(3).padStart(8)} ms` +
    (tput === undefined ? '' : `   ${String(tput).padStart(6)} signs/s (${IN_FLIGHT} in flight)`);
  console.log('\nSigner.sign per backend (sequential latency; throughput with concurrency)');
  for (const [name, r] of Object.entries(perBackend)) console.log(line(name, r.latency, r.signsPerSecond));
  console.log('\nKMS Sign: SDK vs raw keep-alive HTTP + hand-made SigV4 vs in-process node:crypto');
  console.log(line('SDK KMSClient.send(SignCommand)', sdkLat, sdkTput));
  console.log(line('raw HTTP + SigV4 (keep-alive)', rawLat, rawTput));
  console.log(line('in-process crypto.sign', localLat));
  const r = (results.kmsOverhead as { ratios: Record<string, number> }).ratios;
  console.log(
    `ratios (median): SDK/raw ${r.sdkOverRawMedian}x, raw/in-process ${r.rawOverInProcessMedian}x, SDK/in-process ${r.sdkOverInProcessMedian}x`,
  );
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(REPO_ROOT, 'bench/results/keys.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log('\nwrote bench/results/keys.json');
} finally {
  for (const s of signers) await s.close();
  await emulator.stop();
  await rm(dir, { recursive: true, force: true });
}

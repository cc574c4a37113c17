/**
 * The KMS path's CPU cost: one Sign (ED25519_SHA_512, RAW) against the project's KMS emulator process, three ways,
 * with the CPU each side spends per Sign. Run: `pnpm bench kms` (or `pnpm exec tsx bench/kms.bench.ts`). Prints
 * figures and writes bench/results/kms.json. Never run by tests (no timing assertions anywhere).
 *
 * - raw: one keep-alive `node:http` POST with a hand-made SigV4 header (bench/kms-raw.ts): the floor;
 * - SDK default: `new KMSClient({ region, endpoint, credentials, maxAttempts: 1 })` and `send(SignCommand, {
 *   abortSignal })`, which is how a node called KMS before the client was tuned;
 * - SDK tuned: the node's own client and call (`createKmsClient` and `kmsSign` in packages/keys/src/aws-kms).
 *
 * Per way: sequential latency (p50, p99) and the CPU per Sign of this client process (`process.cpuUsage`) and of
 * the emulator process (`/proc/<pid>/stat`); then the same with 16 Signs in flight (signs per second and CPU per
 * Sign, the figure the cluster bench's emulators add up); last, the SDK's own work per Sign with a canned reply
 * and no socket (default vs tuned client), the part the tuning can change, and the emulator's own work per Sign
 * in process (no socket). Those two are CPU per call, best of several rounds: the figures a loaded machine moves
 * least. The emulator verifies SigV4, evaluates the key policy
 * and writes an audit line on every call, as always. BENCH_DIST (default 1) runs the emulator from dist/ as the
 * image and the cluster bench do; BENCH_N_KMS (default 2000) sets the samples per figure; BENCH_PROFILE=<dir>
 * profiles the emulator as in the cluster bench.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Agent } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { KMSClient, SignCommand } from '@aws-sdk/client-kms';
import { emulatorCredentials, readEmulatorAccounts } from '@cosigner/keys/aws-kms/emulator-accounts';
import { createKmsClient, createKmsKey, kmsSign } from '@cosigner/keys/aws-kms/kms-signer';
import { publicKeyObject, verifyWith } from '@cosigner/keys/ed25519';
import { REPO_ROOT, startCosignerProcess, tempDir, useBuiltJs } from '@cosigner/testkit/process';
import { rawKmsCall } from './kms-raw.ts';
import { cpuSeconds } from './proc.ts';

const N = Number(process.env.BENCH_N_KMS ?? 2000);
const IN_FLIGHT = 16;
const DIST = (process.env.BENCH_DIST ?? '1') !== '0';

interface Figures {
  p50Ms: number;
  p99Ms: number;
  /** CPU per Sign of this process (the caller) and of the emulator process, in ms. */
  clientCpuMs: number;
  emulatorCpuMs: number;
}
interface Way {
  sequential: Figures;
  concurrent: { signsPerSecond: number; clientCpuMs: number; emulatorCpuMs: number };
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

async function measure(emulatorPid: number, fn: () => Promise<unknown>): Promise<Way> {
  for (let i = 0; i < Math.max(50, N / 10); i++) await fn();
  const samples: number[] = [];
  let cpu0 = process.cpuUsage();
  let emu0 = cpuSeconds(emulatorPid);
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  let cpu = process.cpuUsage(cpu0);
  let emu = cpuSeconds(emulatorPid) - emu0;
  samples.sort((a, b) => a - b);
  const at = (q: number): number => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
  const sequential = {
    p50Ms: round3(at(0.5)),
    p99Ms: round3(at(0.99)),
    clientCpuMs: round3((cpu.user + cpu.system) / 1000 / N),
    emulatorCpuMs: round3((emu * 1000) / N),
  };
  let left = N;
  cpu0 = process.cpuUsage();
  emu0 = cpuSeconds(emulatorPid);
  const start = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (left-- > 0) await fn();
    }),
  );
  const elapsed = performance.now() - start;
  cpu = process.cpuUsage(cpu0);
  emu = cpuSeconds(emulatorPid) - emu0;
  return {
    sequential,
    concurrent: {
      signsPerSecond: Math.round((N * 1000) / elapsed),
      clientCpuMs: round3((cpu.user + cpu.system) / 1000 / N),
      emulatorCpuMs: round3((emu * 1000) / N),
    },
  };
}

/**
 * The SDK's own work per Sign with no network: a request handler that answers at once with a canned KMS reply
 * (no socket). CPU per call, best of 6 rounds (the least disturbed by other processes), default vs tuned client.
 */
async function sdkOnly(): Promise<Record<string, number>> {
  const reply = JSON.stringify({
    KeyId: 'arn:aws:kms:us-east-1:111111111111:key/canned',
    Signature: Buffer.alloc(64).toString('base64'),
    SigningAlgorithm: 'ED25519_SHA_512',
  });
  const handler = {
    handle: async () => ({
      response: {
        statusCode: 200,
        headers: { 'content-type': 'application/x-amz-json-1.1' },
        body: Readable.from([Buffer.from(reply)]),
      },
    }),
    updateHttpClientConfig: () => undefined,
    httpHandlerConfigs: () => ({}),
  };
  const credentials = { accessKeyId: 'AKIACANNEDCANNED0000', secretAccessKey: 'canned' };
  const endpoint = 'http://127.0.0.1:9';
  const untuned = new KMSClient({ region: 'us-east-1', endpoint, credentials, maxAttempts: 1 });
  const tuned = createKmsClient({ region: 'us-east-1', endpoint, credentials });
  for (const c of [untuned, tuned]) c.config.requestHandler = handler as never;
  const input = {
    KeyId: 'k',
    Message: Buffer.alloc(32),
    MessageType: 'RAW',
    SigningAlgorithm: 'ED25519_SHA_512',
  } as const;
  const calls = {
    'SDK default': () => untuned.send(new SignCommand(input), { abortSignal: new AbortController().signal }),
    'SDK tuned': () => kmsSign(tuned, 'k', input.Message, new AbortController().signal),
  };
  const best: Record<string, number> = {};
  for (let round = 0; round < 7; round++) {
    for (const [name, call] of Object.entries(calls)) {
      const n = 2000;
      const before = process.cpuUsage();
      for (let i = 0; i < n; i++) await call();
      const used = process.cpuUsage(before);
      // Round 0 warms up the JIT.
      if (round > 0) best[name] = Math.min(best[name] ?? Number.POSITIVE_INFINITY, (used.user + used.system) / n);
    }
  }
  return Object.fromEntries(Object.entries(best).map(([k, us]) => [k, Math.round(us)]));
}

/**
 * The emulator's own work per Sign, in this process and with no socket: one SigV4-signed Sign request replayed
 * through `app.inject` (the emulator's test harness: a temp data dir, a fixed clock, so the signature stays within
 * the skew window). Every check runs as over HTTP (SigV4, key policy, audit line); what is left out is the
 * kernel's socket work. CPU per call, best of 7 rounds.
 */
async function emulatorInProcess(): Promise<number> {
  // Relative: the bench is not a dependency of the service, and this is the service's own harness.
  const { b64, harness, sign } = await import('../services/kms-emulator/test/helpers.ts');
  const h = await harness();
  try {
    const created = await h.call(h.admin(), 'CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' });
    const arn = (created.body.KeyMetadata as { Arn: string }).Arn;
    const body = JSON.stringify({
      KeyId: arn,
      Message: b64(Buffer.alloc(32, 1)),
      MessageType: 'RAW',
      SigningAlgorithm: 'ED25519_SHA_512',
    });
    const headers = await sign(
      h.node(),
      body,
      { host: 'localhost', 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.Sign' },
      'us-east-1',
      h.clock.now,
    );
    let best = Number.POSITIVE_INFINITY;
    for (let round = 0; round < 8; round++) {
      const n = 2000;
      const before = process.cpuUsage();
      for (let i = 0; i < n; i++) {
        const res = await h.app.inject({ method: 'POST', url: '/', headers, payload: body });
        if (res.statusCode !== 200) throw new Error(`in-process Sign answered ${res.statusCode}: ${res.body}`);
      }
      const used = process.cpuUsage(before);
      if (round > 0) best = Math.min(best, (used.user + used.system) / n);
    }
    return Math.round(best);
  } finally {
    await h.close();
  }
}

if (DIST) console.log(useBuiltJs());
const PROFILE_DIR = process.env.BENCH_PROFILE ? resolve(process.env.BENCH_PROFILE) : undefined;
if (PROFILE_DIR) {
  // As in the cluster bench: the emulator preloads V8's sampling profiler and writes <pid>-kms-emulator.cpuprofile
  // when it stops (summarise with bench/profile-summary.ts).
  mkdirSync(PROFILE_DIR, { recursive: true });
  process.env.BENCH_PROFILE = PROFILE_DIR;
  process.env.NODE_OPTIONS =
    `${process.env.NODE_OPTIONS ?? ''} --import ${join(REPO_ROOT, 'bench/cpu-profile.mjs')}`.trim();
}
const dir = await tempDir('cosigner-bench-kms-');
const emulator = await startCosignerProcess({
  args: ['kms-emulator', '--data-dir', join(dir, 'kms')],
  readyTimeoutMs: 60_000,
});
try {
  const loadAtStart = loadavg().map((x) => Math.round(x * 100) / 100);
  const accounts = await readEmulatorAccounts(String(emulator.ready.accountsFile));
  const admin = emulatorCredentials(accounts, 'node-a', 'admin');
  const node = emulatorCredentials(accounts, 'node-a', 'node');
  const adminClient = createKmsClient({ region: admin.region, endpoint: emulator.url, credentials: admin.credentials });
  const key = await createKmsKey(adminClient, { alias: 'bench' });
  adminClient.destroy();
  const payload = randomBytes(32);
  const verifyKey = publicKeyObject(key.publicKey);

  const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT });
  const rawBody = JSON.stringify({
    KeyId: key.keyArn,
    Message: payload.toString('base64'),
    MessageType: 'RAW',
    SigningAlgorithm: 'ED25519_SHA_512',
  });
  const url = new URL(emulator.url);
  const raw = async (): Promise<Buffer> => {
    const r = await rawKmsCall({
      url,
      agent,
      region: node.region,
      credentials: node.credentials,
      target: 'Sign',
      body: rawBody,
    });
    if (r.status !== 200) throw new Error(`raw Sign answered ${r.status}: ${r.body}`);
    return Buffer.from((JSON.parse(r.body) as { Signature: string }).Signature, 'base64');
  };
  const defaultClient = new KMSClient({
    region: node.region,
    endpoint: emulator.url,
    credentials: { ...node.credentials },
    maxAttempts: 1,
  });
  const signInput = {
    KeyId: key.keyArn,
    Message: payload,
    MessageType: 'RAW',
    SigningAlgorithm: 'ED25519_SHA_512',
  } as const;
  const sdkDefault = async (): Promise<Buffer> => {
    const out = await defaultClient.send(new SignCommand(signInput), { abortSignal: new AbortController().signal });
    return Buffer.from(out.Signature!);
  };
  const tunedClient = createKmsClient({ region: node.region, endpoint: emulator.url, credentials: node.credentials });
  const sdkTuned = (): Promise<Buffer> => kmsSign(tunedClient, key.keyArn, payload, new AbortController().signal);

  // Each way must return the same valid signature (Ed25519 is deterministic) before it is timed.
  const ways = { raw, 'SDK default': sdkDefault, 'SDK tuned': sdkTuned } as const;
  for (const [name, fn] of Object.entries(ways)) {
    const sig = await fn();
    if (!verifyWith(verifyKey, payload, sig)) throw new Error(`${name} returned a signature that does not verify`);
  }
  const results: Record<string, Way> = {};
  for (const [name, fn] of Object.entries(ways)) results[name] = await measure(emulator.pid, fn);
  defaultClient.destroy();
  tunedClient.destroy();
  agent.destroy();

  console.log(
    `\nKMS Sign against the emulator (loopback), ${N} each; loadavg ${loadAtStart.join(' ')} -> ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}; emulator from ${DIST ? 'dist/' : 'sources (tsx)'}`,
  );
  console.log(
    `${'way'.padEnd(12)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'client CPU'.padStart(11)} ${'emulator CPU'.padStart(13)}   ${`c=${IN_FLIGHT} signs/s`.padStart(14)} ${'client CPU'.padStart(11)} ${'emulator CPU'.padStart(13)}`,
  );
  for (const [name, w] of Object.entries(results)) {
    const s = w.sequential;
    const c = w.concurrent;
    console.log(
      `${name.padEnd(12)} ${s.p50Ms.toFixed(3).padStart(8)} ${s.p99Ms.toFixed(3).padStart(8)} ${`${s.clientCpuMs.toFixed(3)} ms`.padStart(11)} ${`${s.emulatorCpuMs.toFixed(3)} ms`.padStart(13)}   ${String(c.signsPerSecond).padStart(14)} ${`${c.clientCpuMs.toFixed(3)} ms`.padStart(11)} ${`${c.emulatorCpuMs.toFixed(3)} ms`.padStart(13)}`,
    );
  }
  const own = await sdkOnly();
  console.log(
    `SDK's own work per Sign, no network (canned reply, best of 6 rounds): ${Object.entries(own)
      .map(([k, us]) => `${k} ${us} us`)
      .join(', ')}`,
  );
  const inProcess = await emulatorInProcess();
  console.log(`emulator's own work per Sign, in process (app.inject, no socket; best of 7 rounds): ${inProcess} us`);
  const worstEmu = Math.max(...Object.values(results).map((w) => w.concurrent.emulatorCpuMs));
  console.log(
    `${worstEmu <= 0.5 ? 'PASS' : 'MISS'}  KMS emulator <= 0.5 ms CPU per Sign (worst way, ${IN_FLIGHT} in flight): ${worstEmu} ms`,
  );
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  writeFileSync(
    join(REPO_ROOT, 'bench/results/kms.json'),
    `${JSON.stringify(
      {
        machine: { node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, date: new Date().toISOString() },
        loadavgAtStart: loadAtStart,
        loadavgAtEnd: loadavg(),
        samples: N,
        inFlight: IN_FLIGHT,
        emulatorFrom: DIST ? 'dist' : 'tsx',
        ways: results,
        sdkOwnWorkUsPerSign: own,
        emulatorInProcessUsPerSign: inProcess,
      },
      null,
      2,
    )}\n`,
  );
  console.log('wrote bench/results/kms.json');
} finally {
  await emulator.stop();
  await rm(dir, { recursive: true, force: true });
}

import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { forbiddenIn, type ModuleRule, readTrace, SDK_ROOT_RULES, traceEnv } from '@cosigner/testkit/module-trace';
import { runCosigner, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { CoordinatorDouble } from './coordinator-double.ts';
import { buildTx, NETWORK, pay, writeNodeFiles } from './helpers.ts';

/**
 * What a running node process loads (bench/README.md, "memory"): every module stays in the heap as source text,
 * bytecode and objects, so a node loads what it uses and nothing else. A node talks to its coordinator, never to
 * Horizon or Stellar RPC, so it must not load the Stellar SDK's root entry (axios and the Horizon and RPC clients:
 * about 75 modules, 10 MB of RSS) where `@stellar/stellar-sdk/base` has the XDR and the keys it needs; nor a key
 * backend it is not configured with; nor the CLI's other commands. The trace is the process's own module
 * resolution (packages/testkit/src/module-trace-hook.mjs), run as `cosigner node` runs, through the CLI.
 */

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const NOT_FOR_A_LOCAL_KEY: readonly ModuleRule[] = [
  { name: 'the AWS SDK', pattern: /\/node_modules\/@aws-sdk\// },
  { name: 'pkcs11js', pattern: /\/node_modules\/pkcs11js\// },
  { name: 'the CLI account and membership commands', pattern: /\/apps\/cli\/(src|dist)\/commands\// },
];

interface Principal {
  role: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * Run `cosigner node --config ...` traced, with the given key config (local by default), through one approved
 * proposal (a full review, durable intent and signature, so that what loads on first use is loaded too), stop it,
 * and return the modules it resolved and the WebSocket extensions it offered its coordinator.
 */
async function tracedNode(key?: Record<string, unknown>): Promise<{ urls: string[]; offered: (string | undefined)[] }> {
  const dir = await tempDir('cosigner-node-imports-');
  dirs.push(dir);
  const trace = join(dir, 'modules.json');
  const account = Keypair.random().publicKey();
  const dest = Keypair.random().publicKey();
  const coord = await CoordinatorDouble.start({ network: NETWORK, heartbeatMs: 500 });
  const offered: (string | undefined)[] = [];
  coord.wss.on('connection', (_ws, req) => offered.push(req.headers['sec-websocket-extensions']));
  try {
    const files = await writeNodeFiles(dir, {
      coordinatorUrl: coord.url,
      coordinatorKeys: [coord.identity.publicKeyB64],
      policy: { accounts: [account], allow: [dest], maxPerTx: '100', maxFee: 1000 },
      ...(key ? { key } : {}),
    });
    const node = await startCosignerProcess({
      args: ['node', '--config', files.config],
      env: traceEnv(trace),
      readyTimeoutMs: 120_000,
    });
    try {
      await coord.waitNode('node-a');
      coord.propose('node-a', {
        proposalId: 'p-1',
        kind: 'transaction',
        networkPassphrase: NETWORK,
        xdr: buildTx({ source: account, seq: '101', ops: [pay(dest, '1')] }),
      });
      expect((await coord.waitDecision('p-1')).outcome).toBe('approve');
    } finally {
      expect(await node.stop()).toBe(0);
    }
  } finally {
    await coord.close();
  }
  const urls = await readTrace(trace);
  // The trace did see the node's modules, the SDK's /base entry among them.
  expect(urls.some((u) => /\/services\/cosigner\/(src|dist)\/pipeline\.(ts|js)$/.test(u))).toBe(true);
  expect(urls.some((u) => /\/@stellar\/stellar-sdk\/lib\/esm\/base\/index\.js$/.test(u))).toBe(true);
  return { urls, offered };
}

describe('modules of a node process', () => {
  it('a node with a local key serves a proposal without the SDK root, axios, Horizon, RPC, AWS SDK, pkcs11js or deflate', {
    timeout: 150_000,
  }, async () => {
    const { urls, offered } = await tracedNode();
    expect(forbiddenIn(urls, [...SDK_ROOT_RULES, ...NOT_FOR_A_LOCAL_KEY])).toEqual([]);
    // Nor does it offer permessage-deflate (a zlib context per connection) to its coordinator.
    expect(offered.length).toBeGreaterThan(0);
    expect(offered.filter((x) => x !== undefined)).toEqual([]);
  });

  it('a node with an aws-kms key (KMS emulator process) loads the KMS client, and neither pkcs11js nor the SDK root', {
    timeout: 200_000,
  }, async () => {
    const dir = await tempDir('cosigner-node-imports-kms-');
    dirs.push(dir);
    const kms = await startCosignerProcess({
      args: ['kms-emulator', '--data-dir', join(dir, 'kms')],
      readyTimeoutMs: 90_000,
    });
    try {
      const accounts = JSON.parse(await readFile(String(kms.ready.accountsFile), 'utf8')) as {
        accounts: { region: string; principals: Principal[] }[];
      };
      const acct = accounts.accounts[0]!;
      const admin = acct.principals.find((p) => p.role === 'admin') as Principal;
      const nodeCreds = acct.principals.find((p) => p.role === 'node') as Principal;
      const client = new KMSClient({ endpoint: kms.url, region: acct.region, credentials: admin });
      const created = await client.send(
        new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }),
      );
      client.destroy();
      const { urls } = await tracedNode({
        type: 'aws-kms',
        keyId: String(created.KeyMetadata?.KeyId),
        region: acct.region,
        endpoint: kms.url,
        credentials: { accessKeyId: nodeCreds.accessKeyId, secretAccessKey: nodeCreds.secretAccessKey },
        timeoutMs: 5000,
      });
      expect(urls.some((u) => /\/node_modules\/@aws-sdk\/client-kms\//.test(u))).toBe(true);
      expect(
        forbiddenIn(urls, [...SDK_ROOT_RULES, ...NOT_FOR_A_LOCAL_KEY.filter((r) => r.name !== 'the AWS SDK')]),
      ).toEqual([]);
    } finally {
      await kms.stop();
    }
  });

  it('the same trace catches the SDK root where a command does load it (`cosigner account`)', async () => {
    const dir = await tempDir('cosigner-node-imports-');
    dirs.push(dir);
    const trace = join(dir, 'modules.json');
    const r = await runCosigner(['account', '--help'], traceEnv(trace));
    expect(r.code).toBe(0);
    const hits = forbiddenIn(await readTrace(trace), SDK_ROOT_RULES);
    expect(hits.map((h) => h.split(':')[0])).toEqual([
      '@stellar/stellar-sdk root entry',
      'the SDK Horizon client',
      'the SDK RPC client',
      'the SDK HTTP client',
      'axios or feaxios',
    ]);
  });
});

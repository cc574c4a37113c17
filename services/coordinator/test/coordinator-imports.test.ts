import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { forbiddenIn, readTrace, SDK_ROOT_RULES, traceEnv } from '@cosigner/testkit/module-trace';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Asset, Horizon, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TestNode, waitFor } from './helpers.ts';

/**
 * What a running coordinator process loads (bench/README.md, "memory"): every module stays in the heap, so the
 * coordinator talks to Horizon with plain fetch (src/horizon.ts) and takes XDR and keys from
 * `@stellar/stellar-sdk/base`, never the SDK's root entry (the Horizon and RPC clients and their HTTP stack). The
 * trace is the process's own module resolution (packages/testkit/src/module-trace-hook.mjs), run as
 * `cosigner coordinator` runs, through one proposal from creation to a submission the ledger simulator applies,
 * so that what loads on first use (the Horizon calls included) is in it.
 */
const NETWORK = 'Coordinator Imports Test ; 2026';
const dirs: string[] = [];
const procs: RunningProcess[] = [];
afterAll(async () => {
  for (const p of procs) await p.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('modules of a coordinator process', () => {
  it('a coordinator serves a proposal to submission without the SDK root, Horizon or RPC client, or axios', {
    timeout: 180_000,
  }, async () => {
    const dir = await tempDir('coord-imports-');
    dirs.push(dir);
    const sim = await startCosignerProcess({
      args: ['ledger-sim', '--in-memory', '--network', NETWORK, '--close-ms', '100'],
      readyTimeoutMs: 60_000,
    });
    procs.push(sim);
    const server = new Horizon.Server(sim.url, { allowHttp: true });
    const nodes = ['approve', 'approve', 'silent'].map(
      (b, i) => new TestNode(`node-${i}`, b as 'approve' | 'silent', { network: NETWORK }),
    );
    // A 2-of-3 account: friendbot, then the master adds the nodes' keys and drops its own weight.
    const master = Keypair.random();
    const dest = Keypair.random();
    for (const kp of [master, dest])
      expect((await fetch(`${sim.url}/friendbot?addr=${kp.publicKey()}`)).status).toBe(200);
    const setup = new TransactionBuilder(await server.loadAccount(master.publicKey()), {
      fee: '100',
      networkPassphrase: NETWORK,
    });
    for (const n of nodes)
      setup.addOperation(Operation.setOptions({ signer: { ed25519PublicKey: n.stellarKey, weight: 1 } }));
    setup.addOperation(Operation.setOptions({ masterWeight: 0, lowThreshold: 2, medThreshold: 2, highThreshold: 2 }));
    const setupTx = setup.setTimeout(60).build();
    setupTx.sign(master);
    await server.submitTransaction(setupTx, { skipMemoRequiredCheck: true });
    const xdr = new TransactionBuilder(await server.loadAccount(master.publicKey()), {
      fee: '100',
      networkPassphrase: NETWORK,
    })
      .addOperation(Operation.payment({ destination: dest.publicKey(), asset: Asset.native(), amount: '1' }))
      .setTimeout(120)
      .build()
      .toEnvelope()
      .toXDR('base64');

    const configFile = join(dir, 'coordinator.yaml');
    await writeFile(configFile, stringify({ network: NETWORK, nodes: nodes.map((n) => n.enrolment()) }));
    const trace = join(dir, 'modules.json');
    const coord = await startCosignerProcess({
      args: ['coordinator', '--config', configFile, '--data-dir', join(dir, 'data'), '--horizon-url', sim.url],
      env: traceEnv(trace),
      readyTimeoutMs: 90_000,
    });
    try {
      const key = (await readFile(String(coord.ready.adminKeyFile), 'utf8')).trim();
      const messageKey = Buffer.from(String(coord.ready.messageKey), 'base64');
      for (const n of nodes) expect(await n.connect(coord.url, messageKey)).toBe('welcome');
      const auth = { authorization: `Bearer ${key}` };
      const created = await fetch(`${coord.url}/v1/proposals`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ xdr, submit: true, network: NETWORK }),
      });
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: string };
      const done = await waitFor(async () => {
        const p = (await (await fetch(`${coord.url}/v1/proposals/${id}`, { headers: auth })).json()) as {
          status: string;
          hash?: string;
        };
        return p.status === 'submitted' || p.status === 'failed' ? p : undefined;
      }, 'submission');
      expect(done.status).toBe('submitted');
      expect((await server.transactions().transaction(String(done.hash)).call()).successful).toBe(true);
      for (const n of nodes) n.close();
    } finally {
      expect(await coord.stop()).toBe(0);
    }
    const urls = await readTrace(trace);
    // The trace did see the coordinator's round engine and the SDK's /base entry.
    expect(urls.some((u) => /\/services\/coordinator\/(src|dist)\/round\.(ts|js)$/.test(u))).toBe(true);
    expect(urls.some((u) => /\/@stellar\/stellar-sdk\/lib\/esm\/base\/index\.js$/.test(u))).toBe(true);
    expect(forbiddenIn(urls, SDK_ROOT_RULES)).toEqual([]);
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../src/audit.ts';
import { loadConfig } from '../src/config.ts';
import { createNode } from '../src/node.ts';
import { CoordinatorDouble } from './coordinator-double.ts';
import { buildTx, NETWORK, nodeAgainstDouble, OTHER_NETWORK, pay, writeNodeFiles } from './helpers.ts';

/** The node wired in-process (what server.ts runs), against the protocol double. */
const logger = createLogger({ name: 'node-test', level: 'silent' });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'cosigner-node-'));
  dirs.push(d);
  return d;
}

describe('createNode', () => {
  it('wires policy, identity, ledger, key and session: signs through the coordinator session, audits its start', async () => {
    const d = await dir();
    const { coord, account, dest, files } = await nodeAgainstDouble(
      d,
      (p) => ({ accounts: [p.account], allow: [p.dest] }),
      { network: NETWORK },
    );
    const crashes: string[] = [];
    const node = await createNode(await loadConfig(files.config), {
      logger,
      env: { COSIGNER_CRASH_AT: 'before-reply' },
      crash: (p) => crashes.push(p),
    });
    try {
      node.start();
      await node.session.waitUp();
      const xdr = buildTx({ source: account, seq: '2', ops: [pay(dest, '1')] });
      coord.propose('node-a', { proposalId: 'p1', kind: 'transaction', networkPassphrase: NETWORK, xdr });
      const dec = await coord.waitDecision('p1');
      const hash = Buffer.from(TransactionBuilder.fromXDR(xdr, NETWORK).hash());
      expect(
        Keypair.fromPublicKey(node.signer.address).verify(hash, Buffer.from(dec.signature as string, 'base64')),
      ).toBe(true);
      expect(crashes).toEqual(['before-reply']); // the dev-mode hook was armed and called
      coord.send('node-a', 'cancel', { proposalId: 'p1', reason: 'done' });
      const types = node.audit.tail(100).map((e) => e.type);
      expect(types).toEqual(
        expect.arrayContaining(['config.loaded', 'policy.loaded', 'node.started', 'session.up', 'signature.released']),
      );
      expect(node.adminToken).toBeUndefined();
      expect(verifyAuditChain(node.ledger.db).ok).toBe(true);
    } finally {
      await node.close();
      await node.close();
      await coord.close();
    }
  });

  it('with two coordinator replicas: the same transaction asked by both gets one signature; another one for the slot none', async () => {
    const d = await dir();
    const [a, b] = await Promise.all([
      CoordinatorDouble.start({ network: NETWORK }),
      CoordinatorDouble.start({ network: NETWORK }),
    ]);
    const account = Keypair.random().publicKey();
    const dest = Keypair.random().publicKey();
    const files = await writeNodeFiles(d, {
      coordinatorUrl: a.url,
      coordinatorKeys: [],
      policy: { accounts: [account], allow: [dest] },
      extra: {
        coordinator: { urls: [a.url, b.url], publicKeys: [a.identity.publicKeyB64, b.identity.publicKeyB64] },
      },
    });
    const node = await createNode(await loadConfig(files.config), { logger });
    try {
      node.start();
      await a.waitFor(() => node.session.status().every((s) => s.up), 'a session with each replica');
      const xdr = buildTx({ source: account, seq: '7', ops: [pay(dest, '1')] });
      const ask = (c: CoordinatorDouble, id: string, x: string) => {
        c.propose('node-a', { proposalId: id, kind: 'transaction', networkPassphrase: NETWORK, xdr: x });
        return c.waitDecision(id);
      };
      // At once, as when a replica takes a round over while the first one's request is in flight.
      const [da, db] = await Promise.all([ask(a, 'p-1', xdr), ask(b, 'p-1', xdr)]);
      expect(da).toMatchObject({ outcome: 'approve' });
      expect(db.signature).toBe(da.signature);
      expect(db.hash).toBe(da.hash);
      // Asked again later, under another proposal id: the same signature, from the ledger.
      expect((await ask(b, 'p-1-again', xdr)).signature).toBe(da.signature);
      expect(node.ledger.counts().signatures).toBe(1);
      // Another transaction for the same (source, sequence) slot, from either replica: refused, never signed.
      const other = buildTx({ source: account, seq: '7', ops: [pay(dest, '2')] });
      const refused = await ask(b, 'p-2', other);
      expect(refused).toMatchObject({ outcome: 'reject', reasons: [expect.objectContaining({ code: 'SLOT_TAKEN' })] });
      expect(refused.signature).toBeUndefined();
      expect(node.ledger.counts().signatures).toBe(1);
    } finally {
      await node.close();
      await a.close();
      await b.close();
    }
  });

  it('reads an admin token file, and refuses a policy for another network, an unreadable policy, an uncapped or unsafe production config and a bad key', async () => {
    const d = await dir();
    const account = Keypair.random().publicKey();
    const tokenFile = join(d, 'admin.token');
    await writeFile(tokenFile, 'tkn\n', { mode: 0o600 });
    const files = await writeNodeFiles(d, {
      coordinatorUrl: 'ws://127.0.0.1:1',
      coordinatorKeys: [Buffer.alloc(32, 1).toString('base64')],
      policy: { accounts: [account] },
      extra: { admin: { tokenFile } },
    });
    const ok = await createNode(await loadConfig(files.config), { logger });
    expect(ok.adminToken).toBe('tkn');
    await ok.close();

    const wrongNet = await writeNodeFiles(await dir(), {
      coordinatorUrl: 'ws://127.0.0.1:1',
      coordinatorKeys: [Buffer.alloc(32, 1).toString('base64')],
      policy: { accounts: [account], network: OTHER_NETWORK },
      extra: { network: NETWORK },
    });
    await expect(createNode(await loadConfig(wrongNet.config), { logger })).rejects.toMatchObject({
      code: 'NODE_CONFIG_INVALID',
    });

    const noPolicy = await loadConfig(files.config, { dataDir: join(d, 'other') });
    await rm(files.policy);
    await expect(createNode(noPolicy, { logger })).rejects.toThrow(/Cannot read the policy file/);

    // Production refuses a policy that does not cap the fee of a fee bump (or of a transaction), naming the field.
    const uncapped = await writeNodeFiles(await dir(), {
      coordinatorUrl: 'ws://127.0.0.1:1',
      coordinatorKeys: [Buffer.alloc(32, 1).toString('base64')],
      policy: { accounts: [account] },
      mode: 'production',
    });
    await expect(createNode(await loadConfig(uncapped.config), { logger })).rejects.toMatchObject({
      code: 'POLICY_NO_FEE_CAP',
      details: { field: 'fees.maxFeeBump' },
      message: expect.stringContaining('fees.maxFeeBump'),
    });

    const prod = await writeNodeFiles(await dir(), {
      coordinatorUrl: 'ws://127.0.0.1:1',
      coordinatorKeys: [Buffer.alloc(32, 1).toString('base64')],
      policy: { accounts: [account], maxFeeBump: 2000 },
      mode: 'production',
    });
    await expect(createNode(await loadConfig(prod.config), { logger })).rejects.toMatchObject({
      code: 'NODE_CONFIG_UNSAFE',
    });

    const badKeyDir = await dir();
    const badKey = join(badKeyDir, 'short.key');
    await writeFile(badKey, 'short', { mode: 0o600 });
    const bk = await writeNodeFiles(badKeyDir, {
      coordinatorUrl: 'ws://127.0.0.1:1',
      coordinatorKeys: [Buffer.alloc(32, 1).toString('base64')],
      policy: { accounts: [account] },
      key: { type: 'local', keyFile: badKey },
    });
    await expect(createNode(await loadConfig(bk.config), { logger })).rejects.toMatchObject({
      code: 'KEYS_BAD_CONFIG',
    });
  });
});

import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Keypair, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { CoordinatorDouble } from './coordinator-double.ts';
import { buildTx, NETWORK, pay, writeNodeFiles } from './helpers.ts';

/**
 * The node with its production key backend: AWS KMS (ECC_NIST_EDWARDS25519, ED25519_SHA_512 RAW), here the
 * project's KMS emulator as a real process, reached by the real @aws-sdk/client-kms with the node's own
 * credentials (which may Sign and GetPublicKey only).
 */

interface Principal {
  role: string;
  accessKeyId: string;
  secretAccessKey: string;
}

describe('cosigner node with the aws-kms backend (KMS emulator process)', () => {
  let kms: RunningProcess;
  let node: RunningProcess;
  let coord: CoordinatorDouble;
  let dir: string;
  let dataDir: string;
  let stellarKey: string;
  const account = Keypair.random().publicKey();
  const dest = Keypair.random().publicKey();

  beforeAll(async () => {
    dir = await tempDir('cosigner-node-kms-');
    kms = await startCosignerProcess({
      args: ['kms-emulator', '--data-dir', join(dir, 'kms')],
      readyTimeoutMs: 90_000,
    });
    const accounts = JSON.parse(await readFile(String(kms.ready.accountsFile), 'utf8')) as {
      accounts: { region: string; principals: Principal[] }[];
    };
    const acct = accounts.accounts[0];
    if (!acct) throw new Error('the emulator lists no account');
    const admin = acct.principals.find((p) => p.role === 'admin') as Principal;
    const nodeCreds = acct.principals.find((p) => p.role === 'node') as Principal;
    const client = new KMSClient({ endpoint: kms.url, region: acct.region, credentials: admin });
    const created = await client.send(
      new CreateKeyCommand({ KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }),
    );
    const keyId = String(created.KeyMetadata?.KeyId);
    const pub = await client.send(new GetPublicKeyCommand({ KeyId: keyId }));
    client.destroy();
    stellarKey = StrKey.encodeEd25519PublicKey(Buffer.from(pub.PublicKey as Uint8Array).subarray(12));

    coord = await CoordinatorDouble.start({ network: NETWORK });
    const files = await writeNodeFiles(dir, {
      coordinatorUrl: coord.url,
      coordinatorKeys: [coord.identity.publicKeyB64],
      policy: { accounts: [account], allow: [dest] },
      key: {
        type: 'aws-kms',
        keyId,
        region: acct.region,
        endpoint: kms.url,
        credentials: { accessKeyId: nodeCreds.accessKeyId, secretAccessKey: nodeCreds.secretAccessKey },
        expectedAddress: stellarKey,
        timeoutMs: 2000,
      },
    });
    dataDir = files.dataDir;
    node = await startCosignerProcess({ args: ['node', '--config', files.config], readyTimeoutMs: 90_000 });
    await coord.waitNode('node-a');
  }, 200_000);
  afterAll(async () => {
    await node?.stop();
    await kms?.stop();
    await coord?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('signs through KMS with the key named in the config', async () => {
    expect(node.ready.stellarKey).toBe(stellarKey);
    expect(coord.conns.get('node-a')?.stellarKey).toBe(stellarKey);
    const xdr = buildTx({ source: account, seq: '5', ops: [pay(dest, '3')] });
    coord.propose('node-a', { proposalId: 'k1', kind: 'transaction', networkPassphrase: NETWORK, xdr });
    const d = await coord.waitDecision('k1');
    const hash = Buffer.from(TransactionBuilder.fromXDR(xdr, NETWORK).hash());
    expect(d.outcome).toBe('approve');
    expect(Keypair.fromPublicKey(stellarKey).verify(hash, Buffer.from(d.signature as string, 'base64'))).toBe(true);
    expect(await (await fetch(`${node.url}/readyz`)).json()).toMatchObject({ ready: true, key: true });
  });

  it('with KMS gone: not ready, nothing signed, and the recorded intent still holds the slot', {
    timeout: 60_000,
  }, async () => {
    await kms.stop();
    const xdr = buildTx({ source: account, seq: '6', ops: [pay(dest, '3')] });
    coord.propose('node-a', { proposalId: 'k2', kind: 'transaction', networkPassphrase: NETWORK, xdr });
    const d = await coord.waitDecision('k2', 30_000);
    expect(d.outcome).toBe('reject');
    expect(d.signature).toBeUndefined();
    expect(d.reasons.map((r) => r.code)).toEqual(['SIGNER_UNAVAILABLE']);
    const ready = await fetch(`${node.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ key: false, session: true });
    const l = new SigningLedger(openLedgerDb(ledgerPath(dataDir), { readonly: true }));
    expect(l.slot(account, '6')).toEqual([expect.objectContaining({ state: 'intent', signature: null })]);
    l.close();
  });
});

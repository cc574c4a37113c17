import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Cluster, nodeSocketUrl, type ProposalView, startCluster, waitForNodes } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Account, Asset, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * One node process holding a session with each of two coordinator processes (docs/architecture.md, "The session
 * set"). Real processes only: a KMS emulator holding the node's key, the ledger simulator, coordinator A (the
 * launcher's) and coordinator B (the same config and message key, its own SQLite database: the node side does not
 * care whether the replicas share a database), and the node, configured by the launcher with
 * `coordinator.urls: [A, B]`. The operator account is 1-of-1 so that each coordinator alone completes a proposal;
 * nothing is submitted (submit: false), so one transaction can be asked by both.
 */

interface ReadyView {
  ready: boolean;
  session: boolean;
  sessions: { url: string; state: string; up: boolean }[];
}

async function until<T>(f: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The one signature of a signed envelope, base64. */
function signatureOf(envelope: string | null | undefined, network: string): string {
  const { signatures } = TransactionBuilder.fromXDR(String(envelope), network);
  expect(signatures).toHaveLength(1);
  return Buffer.from(signatures[0]!.signature.value).toString('base64');
}

describe('a node with two coordinator processes', () => {
  let dir: string;
  let cluster: Cluster;
  let second: RunningProcess | undefined;
  let secondArgs: string[] = [];
  let secondKey = '';
  let seq = 0n;
  let destination = '';

  const nodeUrl = (): string => cluster.nodes[0]!.url;
  const readyz = async (): Promise<ReadyView> => (await fetch(`${nodeUrl()}/readyz`)).json() as Promise<ReadyView>;
  const metrics = async (): Promise<string> => (await fetch(`${nodeUrl()}/metrics`)).text();
  const metric = async (line: RegExp): Promise<number> => Number((await metrics()).match(line)?.[1] ?? Number.NaN);

  /** An unsigned payment from the operator account with sequence number `s` (nothing is submitted). */
  const payment = (s: bigint, amount: string): string =>
    new TransactionBuilder(new Account(cluster.account.id, (s - 1n).toString()), {
      fee: '100',
      networkPassphrase: cluster.networkPassphrase,
    })
      .addOperation(Operation.payment({ destination, asset: Asset.native(), amount }))
      .setTimeout(240)
      .build()
      .toXDR();

  /** Propose to one coordinator (its URL and API key) and wait until it holds the node's signature. */
  const signedBy = async (url: string, apiKey: string, tx: string, key: string): Promise<ProposalView> => {
    const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const res = await fetch(`${url}/v1/proposals`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ xdr: tx, submit: false, idempotencyKey: key }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { id } = (await res.json()) as { id: string };
    return until(
      async () => {
        const p = (await (await fetch(`${url}/v1/proposals/${id}`, { headers })).json()) as ProposalView;
        if (p.status === 'signed') return p;
        expect(p.status, JSON.stringify(p)).toBe('pending');
        return undefined;
      },
      60_000,
      `proposal ${id} on ${url} to be signed`,
    );
  };

  beforeAll(async () => {
    dir = await tempDir('cosigner-replicas-');
    cluster = await startCluster({
      dir,
      cosignerBin: COSIGNER_BIN,
      nodes: 1,
      threshold: 1,
      readyTimeoutMs: 120_000,
      // Called once coordinator A runs and its config is written: B starts from the same config and message key.
      nodeCoordinatorUrl: async (_nodeId, socketUrl) => {
        const dataDir = join(dir, 'coordinator-b');
        await mkdir(dataDir, { recursive: true, mode: 0o700 });
        secondArgs = ['coordinator', '--config', join(dir, 'coordinator', 'coordinator.yaml'), '--data-dir', dataDir];
        second = await startCosignerProcess({ args: secondArgs, readyTimeoutMs: 120_000 });
        secondKey = (await readFile(String(second.ready.adminKeyFile), 'utf8')).trim();
        return [socketUrl, nodeSocketUrl(second.url)];
      },
    });
    await waitForNodes(second!.url, secondKey, ['node-0'], 60_000);
    seq = BigInt((await cluster.horizon.loadAccount(cluster.account.id)).sequenceNumber());
    destination = (await cluster.fundedAccount()).publicKey();
  }, 300_000);

  afterAll(async () => {
    await second?.stop();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('the launcher wrote coordinator.urls; the node is ready with a session to each, listed by URL', async () => {
    const yaml = await readFile(cluster.nodeInfo[0]!.configFile, 'utf8');
    expect(yaml).toMatch(/urls:\n\s+- ws:\/\/127\.0\.0\.1:\d+\n\s+- ws:\/\/127\.0\.0\.1:\d+/);
    const r = await until(
      async () => {
        const v = await readyz();
        return v.sessions.every((s) => s.up) ? v : undefined;
      },
      30_000,
      'both sessions up',
    );
    expect(r).toMatchObject({ ready: true, session: true });
    expect(r.sessions.map((s) => s.url)).toEqual([nodeSocketUrl(cluster.coordinator.url), nodeSocketUrl(second!.url)]);
    const text = await metrics();
    expect(text).toContain('cosigner_node_session_up 1');
    for (const s of r.sessions)
      expect(text).toContain(`cosigner_node_coordinator_session_up{coordinator="${s.url}"} 1`);
  });

  it('the same transaction asked by both coordinators at once gets one signature value', async () => {
    const tx = payment(seq + 1n, '1');
    const [a, b] = await Promise.all([
      signedBy(cluster.coordinator.url, cluster.apiKey, tx, 'same-1'),
      signedBy(second!.url, secondKey, tx, 'same-1'),
    ]);
    expect(b.hash).toBe(a.hash);
    expect(signatureOf(b.envelope as string, cluster.networkPassphrase)).toBe(
      signatureOf(a.envelope as string, cluster.networkPassphrase),
    );
    expect(await metric(/^cosigner_node_ledger_rows\{kind="signatures"\} (\d+)/m)).toBe(1);
  });

  it('kill -9 of one coordinator: the node keeps serving the other and reconnects when it returns', async () => {
    const bSocket = nodeSocketUrl(second!.url);
    const port = new URL(second!.url).port;
    await second!.kill9();
    const down = await until(
      async () => {
        const v = await readyz();
        return v.sessions[1]!.up ? undefined : v;
      },
      30_000,
      'the node to see B gone',
    );
    expect(down).toMatchObject({ ready: true, session: true });
    expect(down.sessions[0]).toMatchObject({ up: true });
    expect(await metric(new RegExp(`cosigner_node_coordinator_session_up\\{coordinator="${bSocket}"\\} (\\d+)`))).toBe(
      0,
    );

    // A alone signs while B is gone.
    const tx = payment(seq + 2n, '2');
    const a = await signedBy(cluster.coordinator.url, cluster.apiKey, tx, 'while-b-down');

    // B returns on its port with its database: the node's backoff brings the session back.
    second = await startCosignerProcess({
      args: [...secondArgs, '--port', port],
      noPort: true,
      readyTimeoutMs: 120_000,
    });
    await waitForNodes(second.url, secondKey, ['node-0'], 60_000);
    await until(async () => ((await readyz()).sessions[1]!.up ? true : undefined), 30_000, 'B session up again');
    expect(
      await metric(new RegExp(`cosigner_node_coordinator_sessions_total\\{coordinator="${bSocket}"\\} (\\d+)`)),
    ).toBeGreaterThanOrEqual(2);

    // B asks the transaction A had signed (as a replica taking a round over re-asks): the same signature.
    const b = await signedBy(second.url, secondKey, tx, 'after-return');
    expect(signatureOf(b.envelope as string, cluster.networkPassphrase)).toBe(
      signatureOf(a.envelope as string, cluster.networkPassphrase),
    );
    expect(await metric(/^cosigner_node_ledger_rows\{kind="signatures"\} (\d+)/m)).toBe(2);
  });
});

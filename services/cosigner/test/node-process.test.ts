import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateIdentity } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import { COSIGNER_BIN, REPO_ROOT, type RunningProcess, startCosignerProcess } from '@cosigner/testkit/process';
import { Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { CoordinatorDouble } from './coordinator-double.ts';
import { buildTx, NETWORK, nodeAgainstDouble, OTHER_NETWORK, pay, policyYaml, writeNodeFiles } from './helpers.ts';

/**
 * The node as a real process (`cosigner node --config node.yaml`), a real ws peer speaking the protocol,
 * the real policy, a real key backend (local) and the node's real SQLite ledger, read from the test.
 */

const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function hashOf(xdr: string, network = NETWORK): string {
  return Buffer.from(TransactionBuilder.fromXDR(xdr, network).hash()).toString('hex');
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [COSIGNER_BIN, ...args], { cwd: REPO_ROOT });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

function verifies(stellarKey: string, hash: string, sig: string | undefined): boolean {
  return (
    sig !== undefined && Keypair.fromPublicKey(stellarKey).verify(Buffer.from(hash, 'hex'), Buffer.from(sig, 'base64'))
  );
}

function readLedger(dataDir: string): SigningLedger {
  return new SigningLedger(openLedgerDb(ledgerPath(dataDir), { readonly: true }));
}

describe('cosigner node process', () => {
  let coord: CoordinatorDouble;
  let node: RunningProcess;
  let dataDir: string;
  let configFile: string;
  let policyFile: string;
  let stellarKey: string;
  const account = Keypair.random().publicKey();
  const dest = Keypair.random().publicKey();
  let seq = 100;
  let pid = 0;
  const nextSeq = (): string => String(++seq);
  const propose = async (xdr: string, over: Partial<Body<'proposal'>> = {}): Promise<Body<'decision'>> => {
    pid += 1;
    const id = `prop-${pid}`;
    coord.propose('node-a', { proposalId: id, kind: 'transaction', networkPassphrase: NETWORK, xdr, ...over });
    return coord.waitDecision(id);
  };

  beforeAll(async () => {
    // Generous: on a loaded shared machine a tsx start alone can take 20 s.
    const dir = await mkdtemp(join(tmpdir(), 'cosigner-node-proc-'));
    dirs.push(dir);
    coord = await CoordinatorDouble.start({ network: NETWORK, heartbeatMs: 500 });
    const files = await writeNodeFiles(dir, {
      coordinatorUrl: coord.url,
      coordinatorKeys: [coord.identity.publicKeyB64],
      policy: {
        accounts: [account],
        allow: [dest],
        maxPerTx: '100',
        velocity: [{ window: '1h', max: '250' }],
        maxFee: 1000,
        holdAbove: '95',
      },
    });
    dataDir = files.dataDir;
    configFile = files.config;
    policyFile = files.policy;
    node = await startCosignerProcess({ args: ['node', '--config', configFile], readyTimeoutMs: 90_000 });
    stellarKey = String(node.ready.stellarKey);
    expect(node.ready).toMatchObject({ nodeId: 'node-a', pid: node.pid });
    expect(String(node.ready.identityKey)).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    await coord.waitNode('node-a');
  }, 120_000);
  afterAll(async () => {
    await node?.stop();
    await coord?.close();
  });

  it('enrols with the ready-file keys, serves health, readiness and metrics', async () => {
    expect(coord.conns.get('node-a')).toMatchObject({ stellarKey });
    expect(coord.conns.get('node-a')?.identityKey.toString('base64')).toBe(node.ready.identityKey);
    expect((await fetch(`${node.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${node.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, key: true, session: true });
    const d = await propose(buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '1')] }));
    expect(d.outcome).toBe('approve');
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toContain('cosigner_node_decisions_total{outcome="approve",reason="none"}');
    expect(metrics).toContain('cosigner_node_session_up 1');
    expect(metrics).toMatch(/cosigner_node_ledger_rows\{kind="signed"\} [1-9]/);
    expect(metrics).toContain('cosigner_node_sign_seconds_bucket');
    // The process's own figures, for the memory and event-loop dashboards.
    expect(metrics).toMatch(/^process_resident_memory_bytes [1-9]/m);
    expect(metrics).toContain('nodejs_heap_space_size_used_bytes{space="old"}');
    expect(metrics).toContain('nodejs_eventloop_lag_p99_seconds');
  });

  it('approves a good payment with a signature over the hash it computed itself', async () => {
    const xdr = buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '5')] });
    const d = await propose(xdr, { hash: hashOf(xdr) });
    expect(d).toMatchObject({ outcome: 'approve', hash: hashOf(xdr), signerKey: stellarKey });
    expect(verifies(stellarKey, d.hash, d.signature)).toBe(true);
    const l = readLedger(dataDir);
    expect(l.byHash(d.hash)).toMatchObject({ state: 'signed', signature: d.signature });
    l.close();
  });

  it('holds a large payment; `cosigner node approve` releases the signature to the coordinator', {
    timeout: 120_000,
  }, async () => {
    const xdr = buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '96')] });
    pid += 1;
    const id = `prop-${pid}`;
    coord.propose('node-a', { proposalId: id, kind: 'transaction', networkPassphrase: NETWORK, xdr });
    const held = await coord.waitDecision(id);
    expect(held).toMatchObject({ outcome: 'hold', reasons: [expect.objectContaining({ code: 'HOLD_AMOUNT_ABOVE' })] });
    expect(held.signature).toBeUndefined();
    const list = await cli(['node', 'pending', '--admin-url', node.url]);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).pending.map((p: { id: string }) => p.id)).toEqual([id]);
    const res = await cli(['node', 'approve', id, '--admin-url', node.url, '--by', 'alice']);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ outcome: 'approve', delivered: true, hash: hashOf(xdr) });
    await coord.waitFor(
      () => coord.decisions.some((d) => d.proposalId === id && d.outcome === 'approve'),
      'the approval',
    );
    const approved = coord.decisions.find((d) => d.proposalId === id && d.outcome === 'approve');
    expect(verifies(stellarKey, hashOf(xdr), approved?.signature)).toBe(true);
    const again = await cli(['node', 'reject', id, '--admin-url', node.url]);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout)).toMatchObject({ code: 'NODE_PENDING_CLOSED' });
  });

  it('ADVERSARIAL TABLE: zero signatures in every case', { timeout: 120_000 }, async () => {
    const stranger = Keypair.random().publicKey();
    const now = Math.floor(Date.now() / 1000);
    type Row = { name: string; xdr: string; over?: Partial<Body<'proposal'>>; expect: string };
    const liveSlot = nextSeq();
    const first = await propose(buildTx({ source: account, seq: liveSlot, ops: [pay(dest, '2')] }));
    expect(first.outcome).toBe('approve');
    const wrongNet = buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '1')], network: OTHER_NETWORK });
    const rows: Row[] = [
      {
        name: 'hidden extra operation',
        xdr: buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '1'), pay(stranger, '90')] }),
        expect: 'DESTINATION_NOT_ALLOWED',
      },
      {
        name: 'hidden extra operation of another type',
        xdr: buildTx({
          source: account,
          seq: nextSeq(),
          ops: [pay(dest, '1'), Operation.setOptions({ masterWeight: 1 })],
        }),
        expect: 'OP_NOT_ALLOWED',
      },
      {
        name: 'changed destination',
        xdr: buildTx({ source: account, seq: nextSeq(), ops: [pay(stranger, '1')] }),
        expect: 'DESTINATION_NOT_ALLOWED',
      },
      {
        name: 'wrong network (claimed)',
        xdr: wrongNet,
        over: { networkPassphrase: OTHER_NETWORK },
        expect: 'WRONG_NETWORK',
      },
      {
        name: 'wrong network (hash for another network)',
        xdr: wrongNet,
        over: { hash: hashOf(wrongNet, OTHER_NETWORK) },
        expect: 'HASH_MISMATCH',
      },
      {
        name: 'fee above cap',
        xdr: buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '1')], fee: '5000' }),
        expect: 'FEE_TOO_HIGH',
      },
      {
        name: 'expired time bounds',
        xdr: buildTx({
          source: account,
          seq: nextSeq(),
          ops: [pay(dest, '1')],
          timebounds: { minTime: 0, maxTime: now - 60 },
        }),
        expect: 'VALIDITY_EXPIRED',
      },
      {
        name: 'unbounded time',
        xdr: buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '1')], timeout: 0 }),
        expect: 'UNBOUNDED_VALIDITY',
      },
      {
        name: 'validity window too long',
        xdr: buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '1')], timeout: 86_400 }),
        expect: 'VALIDITY_TOO_LONG',
      },
      {
        name: 'second transaction for a live slot',
        xdr: buildTx({ source: account, seq: liveSlot, ops: [pay(dest, '3')] }),
        expect: 'SLOT_TAKEN',
      },
      {
        name: 'account the node does not cosign for',
        xdr: buildTx({ source: stranger, seq: nextSeq(), ops: [pay(dest, '1')] }),
        expect: 'ACCOUNT_NOT_COSIGNED',
      },
    ];
    const attackHashes: string[] = [];
    for (const row of rows) {
      const d = await propose(row.xdr, row.over);
      expect(d.outcome, row.name).toBe('reject');
      expect(d.signature, row.name).toBeUndefined();
      expect(
        d.reasons.map((r) => r.code),
        row.name,
      ).toContain(row.expect);
      attackHashes.push(hashOf(row.xdr), hashOf(row.xdr, OTHER_NETWORK));
    }

    // Over-velocity sequence of small payments (each inside the 100 XLM per-transaction cap): 250 XLM an hour.
    // 104 XLM were signed above (1 + 5 + 96 + 2), so the first small one passes and the next ones cross 250.
    const smalls: Body<'decision'>[] = [];
    for (let i = 0; i < 3; i++) {
      smalls.push(await propose(buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '80')] })));
    }
    expect(smalls.map((d) => d.outcome)).toEqual(['approve', 'reject', 'reject']);
    for (const over of smalls.slice(1)) {
      expect(over.reasons.map((r) => r.code)).toContain('VELOCITY_EXCEEDED');
      expect(over.signature).toBeUndefined();
      attackHashes.push(over.hash);
    }

    // Forged coordinator signature: a GOOD transaction in a frame signed by someone else: no decision at all.
    const forgedXdr = buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '1')] });
    const evil = generateIdentity().identity;
    const before = coord.decisions.length;
    coord.sendRaw(
      'node-a',
      coord.frame(
        'node-a',
        'proposal',
        { proposalId: 'forged', kind: 'transaction', networkPassphrase: NETWORK, xdr: forgedXdr },
        { signer: evil },
      ),
    );
    // Replayed message: a frame the node already answered (a rejected one), sent again in the same session.
    const replayId = 'replayed';
    const replayRaw = coord.send('node-a', 'proposal', {
      proposalId: replayId,
      kind: 'transaction',
      networkPassphrase: NETWORK,
      xdr: buildTx({ source: account, seq: nextSeq(), ops: [pay(stranger, '1')] }),
    });
    await coord.waitDecision(replayId);
    coord.sendRaw('node-a', replayRaw);
    // A marker proposal after both: once it is answered, the node has processed (and refused) the two above.
    const marker = await propose(buildTx({ source: account, seq: nextSeq(), ops: [pay(stranger, '1')] }));
    expect(marker.outcome).toBe('reject');
    expect(coord.decisions.filter((d) => d.proposalId === 'forged')).toEqual([]);
    expect(coord.decisions.filter((d) => d.proposalId === replayId)).toHaveLength(1);
    expect(coord.decisions.length).toBe(before + 2);
    attackHashes.push(hashOf(forgedXdr));
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toContain('cosigner_node_refused_frames_total{code="PROTOCOL_BAD_SIGNATURE"} 1');
    expect(metrics).toContain('cosigner_node_refused_frames_total{code="PROTOCOL_REPLAY"} 1');
    expect(node.output()).toContain('refused a coordinator frame');

    // The ledger holds no signature (nor intent) for any attack hash, and still one transaction for the live slot.
    const l = readLedger(dataDir);
    for (const h of attackHashes) expect(l.byHash(h), h).toBeUndefined();
    expect(l.slot(account, liveSlot)).toHaveLength(1);
    l.close();
    // Logs never carry a full envelope.
    expect(node.output()).not.toContain(forgedXdr);
  });

  it('`cosigner node audit verify` checks the chain of the running node', { timeout: 120_000 }, async () => {
    const ok = await cli(['node', 'audit', 'verify', '--data-dir', dataDir]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/audit chain ok: \d+ entries/);
  });

  it('SIGHUP reloads the policy; a bad file keeps the old one; `cosigner node policy` shows and reloads', {
    timeout: 120_000,
  }, async () => {
    const shown = async (): Promise<string> =>
      ((await (await fetch(`${node.url}/v1/policy`)).json()) as { sha256: string }).sha256;
    const until = async (cond: () => Promise<boolean> | boolean, what: string): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!(await cond())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const original = await readFile(policyFile, 'utf8');
    const before = await shown();
    const options = { accounts: [account], allow: [dest], velocity: [{ window: '1h', max: '250' }], holdAbove: '95' };
    const lower = policyYaml({ ...options, maxPerTx: '5' });
    await writeFile(policyFile, lower);
    process.kill(node.pid, 'SIGHUP');
    await until(async () => (await shown()) !== before, 'the reload');
    expect(await shown()).toBe(createHash('sha256').update(lower).digest('hex'));
    expect(node.proc.exitCode).toBeNull();
    expect((await propose(buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '6')] }))).outcome).toBe('reject');

    await writeFile(policyFile, 'version: 1\nassets: [\n');
    process.kill(node.pid, 'SIGHUP');
    await until(() => node.output().includes('policy reload refused'), 'the refusal in the log');
    expect(node.output()).toMatch(/policy reload refused, the old policy stays: The policy is not valid YAML/);
    expect(await shown()).toBe(createHash('sha256').update(lower).digest('hex'));
    expect((await propose(buildTx({ source: account, seq: nextSeq(), ops: [pay(dest, '4')] }))).outcome).toBe(
      'approve',
    );

    // The same through the CLI, as the runbook shows it: a refusal exits 1 and says why.
    const refused = await cli(['node', 'policy', 'reload', '--admin-url', node.url, '--by', 'ops']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /policy not reloaded: The policy was not reloaded; the node keeps the policy it had/,
    );
    await writeFile(policyFile, original);
    const ok = await cli(['node', 'policy', 'reload', '--admin-url', node.url, '--by', 'ops']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^policy reloaded: [0-9a-f]{64} -> [0-9a-f]{64}$/m);
    expect(await shown()).toBe(before);
    const show = await cli(['node', 'policy', 'show', '--admin-url', node.url]);
    expect(JSON.parse(show.stdout)).toMatchObject({ file: policyFile, sha256: before });
    const chain = await cli(['node', 'audit', 'verify', '--data-dir', dataDir]);
    expect(chain.code).toBe(0);
  });
});

describe('crash safety: kill -9 at injected points', () => {
  for (const point of ['after-record', 'after-sign', 'before-reply'] as const) {
    it(`${point}: no second signature for the slot and nothing recorded lost`, { timeout: 240_000 }, async () => {
      const dir = await mkdtemp(join(tmpdir(), `cosigner-crash-${point}-`));
      dirs.push(dir);
      const { coord, account, dest, files } = await nodeAgainstDouble(
        dir,
        (p) => ({ accounts: [p.account], allow: [p.dest] }),
        { network: NETWORK, heartbeatMs: 500 },
      );
      try {
        const crashing = await startCosignerProcess({
          args: ['node', '--config', files.config],
          env: { COSIGNER_CRASH_AT: point },
        });
        await coord.waitNode('node-a');
        const xdr = buildTx({ source: account, seq: '7', ops: [pay(dest, '10')] });
        const hash = hashOf(xdr);
        coord.propose('node-a', { proposalId: 'p-crash', kind: 'transaction', networkPassphrase: NETWORK, xdr });
        expect(await crashing.exited).toBeNull(); // killed by a signal
        expect(coord.decisions).toEqual([]); // nothing left the process
        const l = readLedger(files.dataDir);
        expect(l.byHash(hash)?.state).toBe(point === 'before-reply' ? 'signed' : 'intent');
        l.close();

        // Restart: the coordinator re-sends the open proposal on sync; the node completes the same hash.
        coord.conns.clear();
        const restarted = await startCosignerProcess({
          args: ['node', '--config', files.config],
          readyTimeoutMs: 90_000,
        });
        try {
          const d = await coord.waitDecision('p-crash');
          expect(d).toMatchObject({ outcome: 'approve', hash });
          expect(verifies(String(restarted.ready.stellarKey), hash, d.signature)).toBe(true);
          // A different transaction for the same slot stays refused.
          const other = buildTx({ source: account, seq: '7', ops: [pay(dest, '11')] });
          coord.propose('node-a', {
            proposalId: 'p-other',
            kind: 'transaction',
            networkPassphrase: NETWORK,
            xdr: other,
          });
          const refused = await coord.waitDecision('p-other');
          expect(refused.signature).toBeUndefined();
          expect(refused.reasons.map((r) => r.code)).toContain('SLOT_TAKEN');
          const after = readLedger(files.dataDir);
          expect(after.slot(account, '7')).toEqual([
            expect.objectContaining({ signHash: hash, state: 'signed', signature: d.signature }),
          ]);
          after.close();
        } finally {
          await restarted.stop();
        }
        const audit = await cli(['node', 'audit', 'verify', '--config', files.config]);
        expect(audit.code).toBe(0);
      } finally {
        await coord.close();
      }
    });
  }
});

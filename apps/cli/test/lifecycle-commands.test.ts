import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { setOptionsOps } from '@cosigner/policy/account-setup';
import { signerChangePolicy } from '@cosigner/testkit/policy';
import { COSIGNER_BIN, clusterFlags, tempDir } from '@cosigner/testkit/process';
import { Asset, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  accountSetup,
  byte,
  changesInEnvelope,
  DisjointQuorumsError,
  http,
  httpOk,
  Lifecycle,
  LockoutError,
  type Out,
  ProposalEndedError,
  parseSigner,
  registerAccount,
} from '../src/commands/account.ts';
import { clusterUp, runDemo } from '../src/commands/cluster.ts';
import { membershipChange, registerMembership } from '../src/commands/membership.ts';
import {
  findTaggedKmsKey,
  ROTATION_TAG,
  type RotateFlags,
  registerRotate,
  rotate,
  rotationId,
  rotationKey,
} from '../src/commands/rotate.ts';
import { registerThresholds, thresholdsSet } from '../src/commands/thresholds.ts';

/**
 * The lifecycle commands called in-process against a real 2-of-3 cluster of child processes (testkit
 * startCluster: KMS emulators, ledger simulator, coordinator, nodes), so the command code itself is measured by
 * coverage; test/e2e/lifecycle.test.ts drives the same commands as child processes. The nodes' policy is opened
 * to signer changes on the cluster's accounts for keys on their rosters, as an operator would.
 */

class Capture implements Out {
  lines: string[] = [];
  errs: string[] = [];
  out(l: string): void {
    this.lines.push(l);
  }
  err(l: string): void {
    this.errs.push(l);
  }
  get text(): string {
    return [...this.lines, ...this.errs].join('\n');
  }
}

/** A local port nobody listens on (taken, then released). */
async function closedPort(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

async function post(url: string, body: unknown): Promise<void> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`POST ${url}: ${r.status} ${await r.text()}`);
}

async function signers(c: Cluster, account: string): Promise<Record<string, number>> {
  const a = await c.horizon.loadAccount(account);
  return Object.fromEntries(a.signers.map((s) => [s.key, s.weight]));
}

describe('lifecycle commands in-process against a real cluster', () => {
  let dir: string;
  let cluster: Cluster;
  let b: Keypair;
  let c: Keypair;
  let dead: string;
  const t = () => ({
    horizonUrl: cluster.horizonUrl,
    coordinatorUrl: cluster.coordinator.url,
    apiKeyFile: cluster.adminKeyFile,
  });
  const signerList = () => cluster.nodeInfo.map((x) => ({ key: x.stellarKey, weight: 1, node: x.id }));

  beforeAll(async () => {
    dir = await tempDir('cosigner-cli-lifecycle-');
    dead = await closedPort();
    cluster = await startCluster({ cosignerBin: COSIGNER_BIN, dir, nodes: 3, threshold: 2 });
    b = await cluster.fundedAccount();
    c = await cluster.fundedAccount();
    const accounts = [cluster.account.id, b.publicKey(), c.publicKey()];
    await writeFile(join(dir, 'policy.yaml'), signerChangePolicy({ network: cluster.networkPassphrase, accounts }), {
      mode: 0o600,
    });
    for (let i = 0; i < 3; i++) {
      await cluster.restartNode(i);
      for (const x of cluster.nodeInfo) {
        await post(`${cluster.nodes[i]!.url}/v1/roster`, { address: x.stellarKey, nodeId: x.id, by: 'test' });
      }
    }
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  afterEach(() => {
    process.exitCode = undefined;
    vi.unstubAllEnvs();
  });

  it('parses signer and byte flags, naming what is wrong', () => {
    const k = Keypair.random().publicKey();
    expect(parseSigner(`node-0=${k}:3`)).toEqual({ key: k, weight: 3, node: 'node-0' });
    expect(parseSigner(k)).toEqual({ key: k, weight: 1 });
    expect(() => parseSigner('node-0=GNOPE')).toThrow(/expected \[node-id=\]G\.\.\.\[:weight\]/);
    expect(() => parseSigner(`${k}:0`)).toThrow(/weight must be 1-255/);
    expect(() => parseSigner(`${k}:256`)).toThrow(/weight must be 1-255/);
    expect(byte('0')).toBe(0);
    expect(byte('255')).toBe(255);
    for (const bad of ['-1', '256', '1.5', 'x']) expect(() => byte(bad), bad).toThrow(/must be 0-255/);
  });

  it('reads back the changes a signed envelope holds, and refuses any other operation or source', async () => {
    const a = cluster.account.id;
    const k = Keypair.random().publicKey();
    const src = await cluster.horizon.loadAccount(a);
    const build = (ops: ReturnType<typeof Operation.setOptions>[]) => {
      const tb = new TransactionBuilder(src, { fee: '100', networkPassphrase: cluster.networkPassphrase });
      for (const op of ops) tb.addOperation(op);
      return tb.setTimeout(60).build().toXDR();
    };
    const ops = setOptionsOps(a, {
      signers: [{ key: k, weight: 2 }],
      masterWeight: 0,
      thresholds: { low: 1, high: 3 },
    });
    expect(ops).toHaveLength(2);
    expect(setOptionsOps(a, { signers: [] })).toHaveLength(0);
    expect(changesInEnvelope(build(ops), cluster.networkPassphrase, a)).toEqual({
      signers: [{ key: k, weight: 2 }],
      masterWeight: 0,
      thresholds: { low: 1, high: 3 },
    });
    expect(changesInEnvelope(build([Operation.setOptions({ medThreshold: 2 })]), cluster.networkPassphrase, a)).toEqual(
      { signers: [], thresholds: { med: 2 } },
    );
    const pay = new TransactionBuilder(src, { fee: '100', networkPassphrase: cluster.networkPassphrase })
      .addOperation(Operation.payment({ destination: k, asset: Asset.native(), amount: '1' }))
      .setTimeout(60)
      .build()
      .toXDR();
    expect(() => changesInEnvelope(pay, cluster.networkPassphrase, a)).toThrow(
      /operation 0 is payment, not setOptions/,
    );
    const other = build([Operation.setOptions({ source: b.publicKey(), lowThreshold: 1 })]);
    expect(() => changesInEnvelope(other, cluster.networkPassphrase, a)).toThrow(/operation 0 is not sourced by/);
    const hashSigner = build([Operation.setOptions({ signer: { sha256Hash: Buffer.alloc(32, 1), weight: 1 } })]);
    expect(() => changesInEnvelope(hashSigner, cluster.networkPassphrase, a)).toThrow(/not an ed25519 key/);
    const inner = TransactionBuilder.fromXDR(build(ops), cluster.networkPassphrase) as ReturnType<
      TransactionBuilder['build']
    >;
    const feeKey = Keypair.random();
    const bump = TransactionBuilder.buildFeeBumpTransaction(feeKey, '1000', inner, cluster.networkPassphrase).toXDR();
    expect(() => changesInEnvelope(bump, cluster.networkPassphrase, a)).toThrow(/fee-bump envelope is not accepted/);
  });

  it('account setup offline: refuses lock-out, writes the unsigned transaction, re-checks and submits the signed one', async () => {
    const io = new Capture();
    const base = { ...t(), account: b.publicKey(), signer: signerList() };
    const single = accountSetup({ ...base, low: 1, med: 2, high: 2 }, io);
    await expect(single).rejects.toBeInstanceOf(LockoutError);
    await expect(accountSetup({ ...base, low: 1, med: 2, high: 2 }, io)).rejects.toThrow(
      /LOCKOUT_SINGLE_PARTY thresholds\.low: node node-0 alone/,
    );
    await expect(accountSetup({ ...base, low: 2, med: 2, high: 4 }, io)).rejects.toThrow(
      /LOCKOUT_UNREACHABLE thresholds\.high/,
    );
    expect(await accountSetup({ ...base, low: 2, med: 2, high: 2, dryRun: true }, io)).toEqual({ via: 'dry-run' });
    expect(io.text).toMatch(/plan for G[A-Z2-7]+: node-0=1, node-1=1, node-2=1; thresholds 2\/2\/2; master weight 0/);
    await expect(accountSetup({ ...base, low: 2, med: 2, high: 2 }, io)).rejects.toThrow(
      /not multisig yet: pass --master-key-file/,
    );

    const unsigned = join(dir, 'b-setup.xdr');
    expect(await accountSetup({ ...base, low: 2, med: 2, high: 2, unsignedOut: unsigned }, io)).toEqual({
      via: 'unsigned-out',
    });
    const tx = TransactionBuilder.fromXDR((await readFile(unsigned, 'utf8')).trim(), cluster.networkPassphrase);
    tx.sign(b);
    const signed = join(dir, 'b-setup.signed.xdr');
    await writeFile(signed, `${tx.toXDR()}\n`);

    // An envelope signed offline that would hand the account to one node is refused before submission.
    const src = await cluster.horizon.loadAccount(b.publicKey());
    const bad = new TransactionBuilder(src, { fee: '100', networkPassphrase: cluster.networkPassphrase });
    for (const op of setOptionsOps(b.publicKey(), {
      signers: [{ key: cluster.nodeInfo[0]!.stellarKey, weight: 2 }],
      masterWeight: 0,
      thresholds: { low: 2, med: 2, high: 2 },
    }))
      bad.addOperation(op);
    const badTx = bad.setTimeout(60).build();
    badTx.sign(b);
    const badFile = join(dir, 'b-bad.signed.xdr');
    await writeFile(badFile, badTx.toXDR());
    await expect(accountSetup({ ...base, low: 2, med: 2, high: 2, submitSigned: badFile }, io)).rejects.toThrow(
      /refusing the signed transaction[\s\S]*LOCKOUT_SINGLE_PARTY/,
    );

    const done = await accountSetup({ ...base, low: 2, med: 2, high: 2, submitSigned: signed }, io);
    expect(done.via).toBe('signed-xdr');
    const after = await signers(cluster, b.publicKey());
    // Master weight 0 removes the master key: Horizon leaves it out of signers (AccountEntry.SignerSummary).
    expect(after[b.publicKey()]).toBeUndefined();
    for (const x of cluster.nodeInfo) expect(after[x.stellarKey]).toBe(1);
  }, 120_000);

  it('account setup with the master key file, then again through the quorum once the account is multisig', async () => {
    const io = new Capture();
    const masterFile = join(dir, 'c-master.secret');
    await writeFile(masterFile, `${c.secret()}\n`, { mode: 0o600 });
    const base = { ...t(), account: c.publicKey(), signer: signerList(), low: 2, med: 2, high: 2 };
    const first = await accountSetup({ ...base, masterKeyFile: masterFile }, io);
    expect(first.via).toBe('master-key');
    expect(io.text).toMatch(/now multisig, master weight 0/);
    expect(io.text).not.toContain(c.secret());
    expect((await signers(cluster, c.publicKey()))[c.publicKey()]).toBeUndefined();

    const again = await accountSetup(base, io);
    expect(again.via).toBe('proposal');
    expect(io.text).toMatch(/\[setup\] applied/);
  }, 120_000);

  it('thresholds set: needs a level, refuses single-node control, checks only on --dry-run, applies through the quorum', async () => {
    const io = new Capture();
    const a = cluster.account.id;
    await expect(thresholdsSet({ ...t(), account: [a] }, io)).rejects.toMatchObject({
      code: 'LIFECYCLE_OPTION_REQUIRED',
      message: expect.stringMatching(/at least one of --low, --med, --high/),
    });
    await expect(thresholdsSet({ ...t(), account: [a], med: 1 }, io)).rejects.toThrow(
      /LOCKOUT_SINGLE_PARTY thresholds\.med/,
    );
    expect(await thresholdsSet({ ...t(), account: [a], low: 2, dryRun: true }, io)).toBeUndefined();
    const id = await thresholdsSet({ ...t(), account: [a, c.publicKey()], txSource: a, low: 2, med: 2, high: 2 }, io);
    expect(id).toMatch(/.+/);
    expect(io.text).toMatch(/\[thresholds\] applied/);
  }, 120_000);

  it('node add is refused by the nodes until the key is on their rosters; add and remove then go through the quorum', async () => {
    const io = new Capture();
    const a = cluster.account.id;
    const fourth = Keypair.random().publicKey();
    await expect(membershipChange('remove', { ...t(), account: [a], nodeId: 'node-9' }, io)).rejects.toThrow(
      /--stellar-key is required \(the coordinator does not list node-9\)/,
    );
    await expect(
      membershipChange('add', { ...t(), account: [a], nodeId: 'node-3', stellarKey: 'GNOTAKEY' }, io),
    ).rejects.toThrow(/expected \[node-id=\]G/);
    // Removing a node that would leave thresholds out of reach: refused before anything is proposed.
    await expect(membershipChange('remove', { ...t(), account: [a], nodeId: 'node-0', high: 3 }, io)).rejects.toThrow(
      /LOCKOUT_UNREACHABLE thresholds\.high/,
    );
    // 2-of-3 plus a fourth node at weight 1 is 2-of-4: {node-0, node-1} and {node-2, node-3} are disjoint quorums.
    const fourthNode = { ...t(), account: [a], nodeId: 'node-3', stellarKey: fourth, weight: 1, dryRun: true };
    const disjoint = membershipChange('add', { ...fourthNode, low: 2, med: 2, high: 2 }, io);
    await expect(disjoint).rejects.toBeInstanceOf(DisjointQuorumsError);
    await expect(membershipChange('add', { ...fourthNode, low: 2, med: 2, high: 2 }, io)).rejects.toThrow(
      /LIFECYCLE_DISJOINT_QUORUMS thresholds\.low 2: \{node node-\d, node node-\d\} and \{node node-\d, node node-\d\}[\s\S]*--allow-disjoint-quorums/,
    );
    // 3-of-4 intersects; 2-of-4 passes with the explicit flag, with a warning.
    expect(await membershipChange('add', { ...fourthNode, low: 3, med: 3, high: 3 }, io)).toBeUndefined();
    expect(
      await membershipChange('add', { ...fourthNode, low: 2, med: 2, high: 2, allowDisjointQuorums: true }, io),
    ).toBeUndefined();
    expect(io.errs.at(-1)).toMatch(/warning: node add node-3 on G[A-Z2-7]+ accepted with --allow-disjoint-quorums/);

    const allowed = { ...t(), account: [a], nodeId: 'node-3', stellarKey: fourth, allowDisjointQuorums: true };
    const refused = membershipChange('add', allowed, io);
    await expect(refused).rejects.toBeInstanceOf(ProposalEndedError);
    await expect(membershipChange('add', allowed, io)).rejects.toThrow(/ended rejected[\s\S]*SIGNER_KEY_NOT_ALLOWED/);

    // The roster commands, through commander as an operator types them.
    const program = new Command('cosigner').exitOverride();
    registerMembership(program.command('node'), io);
    for (const n of cluster.nodes) {
      await program.parseAsync(
        ['node', 'roster', 'allow', '--admin-url', n.url, '--address', fourth, '--member', 'node-3'],
        { from: 'user' },
      );
    }
    expect(io.lines.at(-1)).toContain(fourth);
    await program.parseAsync(['node', 'roster', 'list', '--admin-url', cluster.nodes[0]!.url], { from: 'user' });
    expect(io.lines.at(-1)).toContain(fourth);

    const added = await membershipChange('add', allowed, io);
    expect(added).toMatch(/.+/);
    expect((await signers(cluster, a))[fourth]).toBe(1);
    const removed = await membershipChange(
      'remove',
      { ...t(), account: [a], txSource: a, nodeId: 'node-3', stellarKey: fourth },
      io,
    );
    expect(removed).toMatch(/.+/);
    expect((await signers(cluster, a))[fourth]).toBeUndefined();
    expect(io.text).toMatch(/\[node-remove\] applied \(node-3\)/);

    // Withdrawn from node-0's roster; a second withdrawal answers 404 and sets the exit code.
    await program.parseAsync(['node', 'roster', 'remove', '--admin-url', cluster.nodes[0]!.url, '--address', fourth], {
      from: 'user',
    });
    expect(process.exitCode).toBeUndefined();
    await program.parseAsync(['node', 'roster', 'remove', '--admin-url', cluster.nodes[0]!.url, '--address', fourth], {
      from: 'user',
    });
    expect(process.exitCode).toBe(1);
  }, 180_000);

  it('names the missing flag, the failing call and an unreachable coordinator', async () => {
    const io = new Capture();
    const a = cluster.account.id;
    const noKey = new Lifecycle({ horizonUrl: cluster.horizonUrl, coordinatorUrl: cluster.coordinator.url }, io);
    await expect(noKey.apiKey()).rejects.toThrow(/--api-key-file is required/);
    const noCoord = new Lifecycle({ horizonUrl: cluster.horizonUrl }, io);
    expect(() => noCoord.coordinator('/v1/nodes')).toThrow(/--coordinator-url is required/);
    expect(await noCoord.nodesByKey()).toEqual(new Map());
    await noCoord.step({ action: 'test', step: 'local-only' });
    expect(io.lines.at(-1)).toBe('[test] local-only');

    const lc = new Lifecycle(t(), io);
    // Without a registry map, the configuration names each key's node from the coordinator.
    const named = await lc.configuration(a);
    expect(named.signers.map((s) => s.node).sort()).toEqual(['node-0', 'node-1', 'node-2']);
    // An answer that is not JSON is kept as text and quoted in the error.
    const plain = createHttpServer((_req, res) => res.writeHead(503, { 'content-type': 'text/plain' }).end('busy'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const plainUrl = `http://127.0.0.1:${(plain.address() as { port: number }).port}`;
    try {
      expect(await http(`${plainUrl}/x`)).toEqual({ status: 503, body: 'busy' });
      await expect(httpOk(`${plainUrl}/v1/nodes`, { method: 'POST', body: {} })).rejects.toMatchObject({
        code: 'LIFECYCLE_CALL_FAILED',
        details: { call: 'POST /v1/nodes', status: 503 },
        message: expect.stringMatching(/POST \/v1\/nodes answered 503: "busy"/),
      });
    } finally {
      await new Promise((r) => plain.close(r));
    }
    await expect(lc.waitProposal('no-such-proposal')).rejects.toThrow(
      /GET \/v1\/proposals\/no-such-proposal answered 404/,
    );
    await expect(lc.proposalStatus('no-such-proposal')).rejects.toThrow(/answered 404/);
    await expect(lc.waitAccount(a, () => false, 300)).rejects.toMatchObject({
      code: 'LIFECYCLE_TIMEOUT',
      message: expect.stringMatching(/did not reach the expected signers in time/),
    });

    const wrongKey = join(dir, 'wrong.key');
    await writeFile(wrongKey, 'not-a-key\n', { mode: 0o600 });
    await expect(thresholdsSet({ ...t(), apiKeyFile: wrongKey, account: [a], low: 2 }, io)).rejects.toThrow(
      /GET \/v1\/nodes answered 401/,
    );
    await expect(thresholdsSet({ ...t(), coordinatorUrl: dead, account: [a], low: 2 }, io)).rejects.toThrow(
      /fetch failed/,
    );
    await expect(
      accountSetup({ horizonUrl: dead, account: a, signer: signerList(), low: 2, med: 2, high: 2 }, io),
    ).rejects.toThrow(/fetch failed/);

    // Through commander: a bad flag names the option; a failing action prints `CODE: message` and exits 1.
    const program = new Command('cosigner').exitOverride().configureOutput({
      writeErr: (s) => io.err(s),
      writeOut: (s) => io.out(s),
    });
    registerAccount(program, io);
    registerThresholds(program, io);
    registerRotate(program, io);
    const th = program.commands.find((x) => x.name() === 'thresholds')!.commands[0]!;
    th.exitOverride().configureOutput({ writeErr: (s) => io.err(s) });
    await expect(
      program.parseAsync(['thresholds', 'set', '--horizon-url', cluster.horizonUrl, '--account', a, '--low', '300'], {
        from: 'user',
      }),
    ).rejects.toThrow(/option '--low <n>' argument '300' is invalid\. must be 0-255/);
    const setup = program.commands.find((x) => x.name() === 'account')!.commands[0]!;
    setup.exitOverride().configureOutput({ writeErr: (s) => io.err(s) });
    await expect(
      program.parseAsync(
        ['account', 'setup', '--horizon-url', cluster.horizonUrl, '--account', a, '--signer', 'nope', '--low', '2'],
        { from: 'user' },
      ),
    ).rejects.toThrow(/option '--signer <\[node=\]G\.\.\.\[:weight\]>' argument 'nope' is invalid/);
    await program.parseAsync(
      [
        'account',
        'setup',
        ...clusterFlags(cluster),
        '--account',
        a,
        ...cluster.nodeInfo.flatMap((x) => ['--signer', `${x.id}=${x.stellarKey}`]),
        '--low',
        '1',
        '--med',
        '2',
        '--high',
        '2',
        '--dry-run',
      ],
      { from: 'user' },
    );
    expect(process.exitCode).toBe(1);
    expect(io.errs.at(-1)).toMatch(/^LIFECYCLE_LOCKOUT: refusing this account setup/);
    process.exitCode = undefined;
    // rotate and node add through commander: the action runs the command and reports its failure.
    await program.parseAsync(
      [
        'rotate',
        '--horizon-url',
        cluster.horizonUrl,
        '--node',
        'node-0',
        '--account',
        a,
        '--admin-url',
        dead,
        '--backend',
        'aws-kms',
        '--state-dir',
        join(dir, 'rotate-unreachable'),
      ],
      { from: 'user' },
    );
    expect(process.exitCode).toBe(1);
    expect(io.errs.at(-1)).toMatch(/fetch failed/);
    process.exitCode = undefined;
    const nodeCmd = program.command('node');
    registerMembership(nodeCmd, io);
    await program.parseAsync(
      [
        'node',
        'add',
        ...['--horizon-url', cluster.horizonUrl, '--coordinator-url', cluster.coordinator.url],
        ...['--api-key-file', cluster.adminKeyFile, '--account', a, '--node-id', 'node-7'],
        ...['--stellar-key', Keypair.random().publicKey(), '--weight', '1', '--dry-run'],
      ],
      { from: 'user' },
    );
    // A fourth node at weight 1 makes 2-of-4: refused without the explicit flag, accepted with it.
    expect(process.exitCode).toBe(1);
    expect(io.errs.join('\n')).toMatch(/LIFECYCLE_DISJOINT_QUORUMS/);
    process.exitCode = undefined;
    await program.parseAsync(
      [
        'node',
        'add',
        ...['--horizon-url', cluster.horizonUrl, '--coordinator-url', cluster.coordinator.url],
        ...['--api-key-file', cluster.adminKeyFile, '--account', a, '--node-id', 'node-7'],
        ...['--stellar-key', Keypair.random().publicKey(), '--weight', '1', '--dry-run', '--allow-disjoint-quorums'],
      ],
      { from: 'user' },
    );
    expect(process.exitCode).toBeUndefined();
    expect(io.lines.at(-1)).not.toMatch(/\[node-add\]/);
    process.exitCode = undefined;
    await program.parseAsync(
      ['thresholds', 'set', '--horizon-url', cluster.horizonUrl, '--account', a, '--low', '2', '--dry-run'],
      { from: 'user' },
    );
    expect(process.exitCode).toBeUndefined();
  }, 120_000);

  it("rotates node-2's KMS key in-process, resuming after a failed step, then retires the old key", async () => {
    const io = new Capture();
    const a = cluster.account.id;
    const acct = (
      JSON.parse(await readFile(String(cluster.kms[2]!.ready.accountsFile), 'utf8')) as {
        accounts: { region: string; principals: { role: string; accessKeyId: string; secretAccessKey: string }[] }[];
      }
    ).accounts[0]!;
    const admin = acct.principals.find((p) => p.role === 'admin')!;
    // The KMS client takes its credentials from the standard chain, as for an operator.
    vi.stubEnv('AWS_ACCESS_KEY_ID', admin.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', admin.secretAccessKey);
    vi.stubEnv('AWS_REGION', '');
    vi.stubEnv('AWS_DEFAULT_REGION', '');
    const oldKey = cluster.nodeInfo[2]!.stellarKey;
    // Every account node-2's key signs by now (earlier tests added the nodes' keys to more accounts): a rotation
    // must name them all (the prepare-only test shows the refusal otherwise).
    const listed = (await (await fetch(`${cluster.horizonUrl}/accounts?signer=${oldKey}&limit=200`)).json()) as {
      _embedded: { records: { id: string }[] };
    };
    const signs = listed._embedded.records.map((r) => r.id);
    expect(signs).toContain(a);
    const flags: RotateFlags = {
      ...t(),
      node: 'node-2',
      account: [a, ...signs.filter((x) => x !== a)],
      txSource: a,
      adminUrl: cluster.nodes[2]!.url,
      peerAdminUrl: [cluster.nodes[0]!.url, cluster.nodes[1]!.url],
      stateDir: join(dir, 'rotate'),
      backend: 'aws-kms',
      kmsEndpoint: cluster.kms[2]!.url,
      region: acct.region,
      pendingWindowDays: 7,
    };
    await expect(rotate({ ...flags, account: [] }, io)).rejects.toMatchObject({
      code: 'LIFECYCLE_OPTION_REQUIRED',
      details: { option: '--account' },
      message: expect.stringMatching(/--account is required/),
    });
    const stranger = await cluster.fundedAccount();
    await expect(rotate({ ...flags, account: [stranger.publicKey()] }, io)).rejects.toMatchObject({
      code: 'LIFECYCLE_NOT_A_SIGNER',
      message: expect.stringMatching(/node-2's key G[A-Z2-7]+ is not a signer of/),
    });

    // The first run fails at the roster step (a peer that does not answer): the key exists and is prepared.
    await expect(rotate({ ...flags, peerAdminUrl: [dead] }, io)).rejects.toThrow(/fetch failed/);
    const mid = JSON.parse(await readFile(join(dir, 'rotate', 'rotate-node-2.json'), 'utf8')) as {
      done: string[];
      newKey: string;
    };
    expect(mid.done).toEqual(['key-created', 'prepared']);

    // The second run skips the peers' rosters: node-0 and node-1 refuse to add a key they were never told
    // about, so the add proposal ends rejected, recorded in the state.
    await expect(rotate({ ...flags, peerAdminUrl: [] }, io)).rejects.toThrow(
      /ended rejected[\s\S]*SIGNER_KEY_NOT_ALLOWED/,
    );
    expect(io.text).toMatch(/resuming node-2 after prepared/);
    const rejected = JSON.parse(await readFile(join(dir, 'rotate', 'rotate-node-2.json'), 'utf8')) as {
      done: string[];
      addProposal: string;
    };
    expect(rejected.done).toEqual(['key-created', 'prepared', 'roster']);
    expect(rejected.addProposal).toMatch(/.+/);
    // Their operators accept the key; the third run finds the recorded proposal ended and proposes again.
    for (const i of [0, 1]) {
      await post(`${cluster.nodes[i]!.url}/v1/roster`, { address: mid.newKey, nodeId: 'node-2', by: 'test' });
    }
    const state = await rotate(flags, io);
    expect(io.text).toMatch(/resuming node-2 after roster/);
    expect(io.text).toMatch(/earlier proposal .+ ended rejected; proposing again/);
    expect(state.newKey).toBe(mid.newKey);
    expect(state.done).toHaveLength(9);
    for (const acc of flags.account) {
      const now = await signers(cluster, acc);
      expect(now[mid.newKey]).toBe(1);
      expect(now[oldKey]).toBeUndefined();
    }
    // A rerun after completion does nothing more and says so.
    const again = await rotate(flags, io);
    expect(again.done).toEqual(state.done);
    expect(io.lines.at(-1)).toMatch(/node-2: G[A-Z2-7]+ -> G[A-Z2-7]+ done/);
  }, 300_000);

  it("rotate --prepare-only: node-0's key created once (found again by its tag after a lost answer), prepared, and the roster command printed", async () => {
    const io = new Capture();
    const acct = (
      JSON.parse(await readFile(String(cluster.kms[0]!.ready.accountsFile), 'utf8')) as {
        accounts: { region: string; principals: { role: string; accessKeyId: string; secretAccessKey: string }[] }[];
      }
    ).accounts[0]!;
    const admin = acct.principals.find((p) => p.role === 'admin')!;
    vi.stubEnv('AWS_ACCESS_KEY_ID', admin.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', admin.secretAccessKey);
    const flags: RotateFlags = {
      ...t(),
      node: 'node-0',
      account: [cluster.account.id],
      adminUrl: cluster.nodes[0]!.url,
      stateDir: join(dir, 'rotate-prepare'),
      backend: 'aws-kms',
      kmsEndpoint: cluster.kms[0]!.url,
      region: acct.region,
      prepareOnly: true,
    };
    // A kill point the command does not know is refused before anything is done.
    await expect(rotate(flags, io, { ...process.env, COSIGNER_ROTATE_KILL_AT: 'after:nothing' })).rejects.toMatchObject(
      { code: 'LIFECYCLE_OPTION_REQUIRED', details: { option: 'COSIGNER_ROTATE_KILL_AT' } },
    );

    // node-0's key signs more accounts than the cluster's own (earlier tests added it to two more): a rotation that
    // names only one would leave the others with a key scheduled for deletion, and is refused before anything
    // changes (no key created, no state written). Naming them all lets it run.
    const refused = await rotate(flags, io).then(
      () => null,
      (e: unknown) => e as { code: string; message: string; details: { option: string; missing: string } },
    );
    expect(refused).toMatchObject({ code: 'LIFECYCLE_ACCOUNTS_MISSING', details: { option: '--account' } });
    const missing = refused!.details.missing.split(',');
    expect(missing.length).toBeGreaterThan(0);
    expect(refused!.message).toContain(`also signs ${missing.join(', ')}: name every account it signs with --account`);
    await expect(readFile(join(dir, 'rotate-prepare', 'rotate-node-0.json'), 'utf8')).rejects.toThrow(/ENOENT/);
    flags.account.push(...missing);

    const first = await rotate(flags, io);
    expect(first.done).toEqual(['key-created', 'prepared']);
    expect(first.intents.create?.key).toBe(rotationKey(rotationId('node-0', first.oldKey), 'create', 1));
    expect(io.text).toContain(
      `cosigner node roster allow --admin-url <their node's admin URL> --address ${first.newKey} --member node-0`,
    );
    const keyring = (await (await fetch(`${cluster.nodes[0]!.url}/v1/keyring`)).json()) as { pending: unknown };
    expect(JSON.stringify(keyring)).toContain(first.newKey);

    // As if the run had died inside CreateKey: the intent is recorded, the answer is not. The rerun finds the key by
    // its rotation tag instead of creating a second one.
    const file = join(dir, 'rotate-prepare', 'rotate-node-0.json');
    const { newKey, newKeyId, ...lost } = first;
    await writeFile(file, JSON.stringify({ ...lost, done: [], reported: ['started'] }));
    const again = await rotate(flags, io);
    expect(io.text).toMatch(/resuming node-0 after start/);
    expect(io.text).toContain(`found the key an earlier run created: ${newKey}`);
    expect(again.newKey).toBe(newKey);
    expect(again.newKeyId).toBe(newKeyId);

    // The lookup itself: a tag no key carries finds nothing.
    const client = new KMSClient({
      endpoint: cluster.kms[0]!.url,
      region: acct.region,
      credentials: { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey },
    });
    try {
      expect(await findTaggedKmsKey(client, ROTATION_TAG, 'rotate.0000000000000000.create.1')).toBeUndefined();
      expect((await findTaggedKmsKey(client, ROTATION_TAG, first.intents.create!.key))?.address).toBe(newKey);
    } finally {
      client.destroy();
    }
    // Leave node-0 as it was: the pending key is dropped.
    const abandoned = await fetch(`${cluster.nodes[0]!.url}/v1/keyring/abandon`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ address: newKey, by: 'test' }),
    });
    expect(abandoned.status).toBeLessThan(300);
  }, 180_000);

  it('cluster up: the demo payment goes through the cluster after these changes; a second launcher on a live dir is refused', async () => {
    const lines: string[] = [];
    const final = await runDemo(cluster, (l) => lines.push(l));
    expect(final.status).toBe('submitted');
    expect(lines.join('\n')).toMatch(/ledger: destination balance 10000(\.0+)? -> 10010(\.0+)? XLM/);

    // cluster.json naming a live cosigner process as launcher: `cluster up` on that dir refuses to start another.
    const live = join(dir, 'live');
    await mkdir(live, { recursive: true });
    await writeFile(join(live, 'cluster.json'), JSON.stringify({ launcherPid: cluster.coordinator.pid }));
    await expect(clusterUp({ dir: live, nodes: 3, threshold: 2, demo: false, out: () => {} })).rejects.toThrow(
      /a cluster is already running under .* \(launcher pid \d+\); stop it with: cosigner cluster down/,
    );
  }, 120_000);

  it('cluster up starts a whole cluster in-process and runs its demo', async () => {
    const own = await tempDir('cosigner-cli-cluster-up-');
    const lines: string[] = [];
    // A stale cluster.json (its launcher is gone) does not stop a new start.
    await writeFile(join(own, 'cluster.json'), JSON.stringify({ launcherPid: 2 ** 22 + 1 }));
    const up = await clusterUp({ dir: own, nodes: 3, threshold: 2, demo: true, out: (l) => lines.push(l) });
    try {
      const text = lines.join('\n');
      expect(text).toMatch(/starting a cluster under/);
      expect(text).toMatch(/started a 2-of-3 cluster under/);
      expect(text).toMatch(/proposal .+: submitted/);
      expect(text).toMatch(/multisig account G[A-Z2-7]+ \(2-of-3\)/);
      expect(text).not.toContain(up.apiKey);
    } finally {
      await up.stop();
      await rm(own, { recursive: true, force: true });
    }
  }, 300_000);
});

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { aggregate, commitNonces, signShare } from '@cosigner/frost/rounds';
import { build } from '@cosigner/ledger-sim/app';
import { tempDir } from '@cosigner/testkit/process';
import { Horizon, Keypair, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeSession, runDkg } from '../../../packages/frost/test/helpers.ts';
import { registerFrost } from '../src/commands/frost.ts';
import { frostSwap, type SwapFlags, type SwapState, swapKey } from '../src/commands/frost-swap.ts';

/**
 * `cosigner frost swap` in process, against the real ledger simulator (HTTP, Horizon's `GET /accounts?signer=`)
 * and a small HTTP stand-in for the coordinator that holds the old group's shares: on a proposal it signs with two
 * of them (a real FROST signature) and submits to the simulator, or, when told to, leaves the proposal pending
 * (a coordinator still running the round when the command stops). Among real node processes, with the command
 * killed after its first proposal: test/e2e/frost-refresh-new-group.test.ts.
 */

const oldDkg = (() => {
  const { session, secrets } = makeSession(3, 2, 'swap-old');
  return runDkg(session, secrets).outputs;
})();
const newDkg = (() => {
  const { session, secrets } = makeSession(3, 2, 'swap-new');
  return runDkg(session, secrets).outputs;
})();
const oldAddress = oldDkg[0]!.address;
const newAddress = newDkg[0]!.address;
const view = (id: string, out: typeof oldDkg, status = 'ready') => ({
  id,
  status,
  step: 'confirm',
  threshold: 2,
  participants: [1, 2, 3].map((i) => ({
    index: i,
    nodeId: `n${i}`,
    identityKey: 'k',
    verifyingShare: out[0]!.group.verifyingShares[String(i)],
  })),
  address: status === 'ready' ? out[0]!.address : null,
  groupPublicKey: out[0]!.group.groupPublicKey,
  commitments: out[0]!.group.commitments,
  transcript: '44'.repeat(32),
  error: null,
});

let ledger: Awaited<ReturnType<typeof build>>;
let horizonUrl: string;
let horizon: Horizon.Server;
let network: string;

beforeAll(async () => {
  ledger = await build({ closeMs: 50 });
  horizonUrl = await ledger.listen({ host: '127.0.0.1', port: 0 });
  horizon = new Horizon.Server(horizonUrl, { allowHttp: true });
  network = String(((await (await fetch(horizonUrl)).json()) as { network_passphrase: string }).network_passphrase);
}, 60_000);
afterAll(async () => {
  await ledger.close();
});

/** A funded account whose only signer is `key` at `weight`, thresholds `t`, master weight 0. */
async function groupAccount(key: string, weight = 1, t = 1): Promise<string> {
  const kp = Keypair.random();
  expect((await fetch(`${horizonUrl}/friendbot?addr=${kp.publicKey()}`)).status).toBe(200);
  const tx = new TransactionBuilder(await horizon.loadAccount(kp.publicKey()), {
    fee: '100',
    networkPassphrase: network,
  })
    .addOperation(
      Operation.setOptions({
        signer: { ed25519PublicKey: key, weight },
        masterWeight: 0,
        lowThreshold: t,
        medThreshold: t,
        highThreshold: t,
      }),
    )
    .setTimeout(60)
    .build();
  tx.sign(kp);
  await horizon.submitTransaction(tx);
  return kp.publicKey();
}

interface Stored {
  id: string;
  key: string;
  xdr: string;
  group: string;
  status: string;
}

let server: Server;
let url: string;
let keyFile: string;
let dir: string;
let proposals: Stored[];
/** How the stand-in answers a proposal: sign and submit, leave it pending, reject it, or refuse the POST. */
let mode: 'submit' | 'pending' | 'reject' | 'refuse' | 'conflict' | 'sneak';
/** The account someone gave the old key while a swap ran (mode 'sneak'). */
let sneaked: string | undefined;
let events: unknown[];

/** Two of the old group's shares sign the transaction; the simulator applies it (or not). */
async function signAndSubmit(p: Stored): Promise<void> {
  const tx = TransactionBuilder.fromXDR(p.xdr, network) as ReturnType<TransactionBuilder['build']>;
  const group = oldDkg[0]!.group;
  const [a, b] = [oldDkg[0]!.share, oldDkg[2]!.share];
  const commits = [commitNonces(a), commitNonces(b)];
  const commitments = commits.map((c) => c.commitment);
  const m = tx.hash();
  const sig = aggregate(group, commitments, m, {
    [String(a.index)]: signShare(group, a, commits[0]!.nonces, commitments, m),
    [String(b.index)]: signShare(group, b, commits[1]!.nonces, commitments, m),
  });
  tx.addSignature(p.group, Buffer.from(sig).toString('base64'));
  await horizon.submitTransaction(tx);
  p.status = 'submitted';
}

beforeEach(async () => {
  dir = await tempDir('cli-frost-swap-');
  keyFile = join(dir, 'api.key');
  await writeFile(keyFile, 'secret-key\n', { mode: 0o600 });
  proposals = [];
  events = [];
  mode = 'submit';
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', async () => {
      const send = (status: number, v: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
      if (req.headers.authorization !== 'Bearer secret-key') return send(401, { code: 'COORD_UNAUTHORIZED' });
      const u = new URL(req.url!, 'http://x');
      if (u.pathname === `/v1/frost/groups/${oldAddress}` || u.pathname === '/v1/frost/groups/old')
        return send(200, view('old', oldDkg));
      if (u.pathname === `/v1/frost/groups/${newAddress}` || u.pathname === '/v1/frost/groups/new')
        return send(200, view('new', newDkg));
      if (u.pathname === '/v1/frost/groups/running') return send(200, view('running', newDkg, 'running'));
      if (u.pathname === '/v1/nodes') return send(200, { nodes: [] });
      if (u.pathname === '/v1/lifecycle/events' && req.method === 'POST') {
        events.push(JSON.parse(body));
        return send(201, { seq: events.length });
      }
      if (u.pathname === '/v1/proposals' && req.method === 'GET') {
        const key = u.searchParams.get('idempotencyKey');
        return send(200, { items: proposals.filter((p) => p.key === key) });
      }
      if (u.pathname === '/v1/proposals' && req.method === 'POST') {
        const b = JSON.parse(body) as { xdr: string; idempotencyKey: string; group: string; submit: boolean };
        expect(b.submit).toBe(true);
        if (mode === 'refuse') return send(422, { code: 'COORD_FROST_GROUP_NOT_SIGNER', message: 'no weight' });
        const p: Stored = {
          id: `p${proposals.length + 1}`,
          key: b.idempotencyKey,
          xdr: b.xdr,
          group: b.group,
          status: 'pending',
        };
        proposals.push(p);
        if (mode === 'conflict') {
          // Another run's request under this key got there first.
          mode = 'submit';
          await signAndSubmit(p);
          return send(409, { code: 'COORD_IDEMPOTENCY_CONFLICT', message: 'another body' });
        }
        if (mode === 'submit' || mode === 'sneak') await signAndSubmit(p);
        if (mode === 'sneak') {
          mode = 'submit';
          sneaked = await groupAccount(oldAddress);
        }
        if (mode === 'reject') p.status = 'rejected';
        return send(201, { id: p.id, status: p.status });
      }
      const one = /^\/v1\/proposals\/([^/]+)$/.exec(u.pathname);
      if (one) {
        const p = proposals.find((x) => x.id === one[1]);
        return p ? send(200, { id: p.id, status: p.status, decisions: [] }) : send(404, { code: 'COORD_NOT_FOUND' });
      }
      send(404, { code: 'COORD_NOT_FOUND', message: req.url });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  await new Promise((r) => server.close(r));
});

const io = () => {
  const lines: string[] = [];
  return { lines, io: { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) } };
};
const flags = (f: Partial<SwapFlags> = {}): SwapFlags => ({
  horizonUrl,
  coordinatorUrl: url,
  apiKeyFile: keyFile,
  from: oldAddress,
  to: newAddress,
  account: [],
  stateFile: join(dir, 'state', 'swap.json'),
  waitSeconds: 20,
  proposalWindow: 120,
  ...f,
});
const signersOf = async (a: string) =>
  (await horizon.loadAccount(a)).signers.filter((s) => s.weight > 0).map((s) => [s.key, s.weight]);
const seqOf = async (a: string) => BigInt((await horizon.loadAccount(a)).sequenceNumber());
const stateOf = async (): Promise<SwapState> => JSON.parse(await readFile(flags().stateFile!, 'utf8')) as SwapState;

/**
 * Each test uses accounts of its own; the simulator lists every account by signer, so an earlier test's account
 * still signed by the old key would be "missing" here: every test leaves its accounts swapped or names them.
 */
describe('cosigner frost swap', () => {
  it('refuses while an account the old key signs is not named, naming it; nothing is proposed', async () => {
    const [a, b] = [await groupAccount(oldAddress), await groupAccount(oldAddress)];
    await expect(frostSwap(flags({ account: [a] }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_ACCOUNTS_MISSING',
      details: expect.objectContaining({ missing: b, option: '--account' }),
    });
    expect(proposals).toHaveLength(0);
    // Both named: both swapped, one transaction each, the old group retired on the event stream; again: nothing.
    const before = [await seqOf(a), await seqOf(b)];
    const o = io();
    const s = await frostSwap(flags({ account: [b, a] }), o.io);
    expect(s.swapped.sort()).toEqual([a, b].sort());
    expect(s.retiredAt).toBeDefined();
    for (const x of [a, b]) expect(await signersOf(x)).toEqual([[newAddress, 1]]);
    expect([await seqOf(a), await seqOf(b)]).toEqual(before.map((n) => n + 1n));
    expect(proposals.map((p) => p.group)).toEqual([oldAddress, oldAddress]);
    expect(events).toEqual([expect.objectContaining({ action: 'frost-swap', step: 'old-group-retired' })]);
    expect(o.lines.join('\n')).toContain(`signed by the old group`);
    const again = io();
    await frostSwap(flags({ account: [a, b] }), again.io);
    expect(proposals).toHaveLength(2);
    expect(again.lines.join('\n')).not.toContain('proposed');
  });

  it('resumes after stopping between proposal and submission: the proposal is waited for, never made twice', async () => {
    const a = await groupAccount(oldAddress);
    mode = 'pending';
    await expect(frostSwap(flags({ account: [a], waitSeconds: 1 }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_TIMEOUT',
    });
    const mid = await stateOf();
    expect(mid.intents[a]).toEqual({ key: swapKey(oldAddress, newAddress, a, 1), attempt: 1, proposalId: 'p1' });
    expect(await signersOf(a)).toEqual([[oldAddress, 1]]);
    // The coordinator finishes the round soon after the command runs again.
    setTimeout(() => void signAndSubmit(proposals[0]!), 300);
    const o = io();
    await frostSwap(flags({ account: [a] }), o.io);
    expect(proposals).toHaveLength(1);
    expect(o.lines.join('\n')).toContain('waiting for proposal p1');
    expect(await signersOf(a)).toEqual([[newAddress, 1]]);
  });

  it('resumes after a crash between the intent and the proposal: the proposal is looked up under its key, or made', async () => {
    const a = await groupAccount(oldAddress);
    const b = await groupAccount(oldAddress);
    const file = flags().stateFile!;
    await mkdir(join(dir, 'state'), { recursive: true });
    // a: the POST reached the coordinator before the crash (its id was never recorded); b: it never left.
    const ka = swapKey(oldAddress, newAddress, a, 1);
    const kb = swapKey(oldAddress, newAddress, b, 1);
    const state: SwapState = {
      version: 1,
      from: oldAddress,
      to: newAddress,
      accounts: [a, b].sort(),
      intents: { [a]: { key: ka, attempt: 1 }, [b]: { key: kb, attempt: 1 } },
      swapped: [],
    };
    await writeFile(file, JSON.stringify(state));
    const seqA = await seqOf(a);
    const tx = new TransactionBuilder(await horizon.loadAccount(a), { fee: '100', networkPassphrase: network })
      .addOperation(Operation.setOptions({ signer: { ed25519PublicKey: oldAddress, weight: 0 } }))
      .addOperation(Operation.setOptions({ signer: { ed25519PublicKey: newAddress, weight: 1 } }))
      .setTimeout(120)
      .build();
    proposals.push({ id: 'early', key: ka, xdr: tx.toXDR(), group: oldAddress, status: 'pending' });
    setTimeout(() => void signAndSubmit(proposals[0]!), 300);
    await frostSwap(flags({ account: [a, b] }), io().io);
    expect(proposals.map((p) => p.key)).toEqual([ka, kb]);
    expect(await seqOf(a)).toBe(seqA + 1n);
    expect((await stateOf()).intents[a]!.proposalId).toBe('early');
    for (const x of [a, b]) expect(await signersOf(x)).toEqual([[newAddress, 1]]);
  });

  it('a proposal under the same key from another run (409) is looked up and waited for', async () => {
    const a = await groupAccount(oldAddress);
    mode = 'conflict';
    await frostSwap(flags({ account: [a] }), io().io);
    expect(proposals).toHaveLength(1);
    expect(await signersOf(a)).toEqual([[newAddress, 1]]);
  });

  it('a proposal that ended unapplied is reported by its run, and proposed again (next key) by the next', async () => {
    const a = await groupAccount(oldAddress);
    mode = 'reject';
    await expect(frostSwap(flags({ account: [a] }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_PROPOSAL_ENDED',
    });
    expect(await signersOf(a)).toEqual([[oldAddress, 1]]);
    mode = 'submit';
    const o = io();
    await frostSwap(flags({ account: [a] }), o.io);
    expect(o.lines.join('\n')).toContain('ended rejected; proposing again');
    expect(proposals.map((p) => p.key)).toEqual([
      swapKey(oldAddress, newAddress, a, 1),
      swapKey(oldAddress, newAddress, a, 2),
    ]);
    expect(await signersOf(a)).toEqual([[newAddress, 1]]);
  });

  it('refuses a change that locks the account out, naming the field, before proposing', async () => {
    const a = await groupAccount(oldAddress, 2, 2);
    await expect(frostSwap(flags({ account: [a], weight: 1 }), io().io)).rejects.toMatchObject({
      code: 'FROST_GROUP_CHANGE_UNSAFE',
      message: expect.stringContaining('thresholds'),
    });
    expect(proposals).toHaveLength(0);
    // The planned weight (the old key's, by default) passes; --json prints the state.
    const o = io();
    await frostSwap(flags({ account: [a], json: true }), o.io);
    expect(JSON.parse(o.lines.join('\n'))).toMatchObject({ swapped: [a] });
    expect(await signersOf(a)).toEqual([[newAddress, 2]]);
  });

  it('refuses bad options, groups that are not ready, another swap in the state file, an account of neither key', async () => {
    const bad: [Partial<SwapFlags>, string][] = [
      [{ horizonUrl: undefined }, '--horizon-url'],
      [{ from: undefined }, '--from'],
      [{ to: undefined }, '--to'],
      [{ account: [] }, '--account'],
      [{ stateFile: undefined }, '--state-file'],
    ];
    for (const [f, option] of bad) {
      await expect(frostSwap(flags({ account: ['GX'], ...f }), io().io)).rejects.toMatchObject({
        code: 'LIFECYCLE_OPTION_REQUIRED',
        message: expect.stringContaining(option),
      });
    }
    const stranger = Keypair.random().publicKey();
    await expect(frostSwap(flags({ account: [stranger], to: 'running' }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_STATE_MISMATCH',
      details: expect.objectContaining({ field: '--to' }),
    });
    await expect(
      frostSwap(flags({ account: [stranger] }), io().io, { COSIGNER_FROST_SWAP_KILL_AT: 'nowhere' }),
    ).rejects.toMatchObject({ code: 'LIFECYCLE_OPTION_REQUIRED' });
    // A funded account signed by neither key.
    const plain = Keypair.random().publicKey();
    expect((await fetch(`${horizonUrl}/friendbot?addr=${plain}`)).status).toBe(200);
    await expect(frostSwap(flags({ account: [plain] }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_NOT_A_SIGNER',
      details: expect.objectContaining({ account: plain }),
    });
    // The state file now records that account: another list is another swap.
    await expect(frostSwap(flags({ account: [stranger] }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_STATE_MISMATCH',
      details: expect.objectContaining({ field: 'accounts' }),
    });
    // The coordinator refusing the proposal is reported with its code; the account keeps its old key.
    const a = await groupAccount(oldAddress);
    mode = 'refuse';
    await expect(frostSwap(flags({ account: [a], stateFile: join(dir, 'other.json') }), io().io)).rejects.toMatchObject(
      { code: 'LIFECYCLE_CALL_FAILED', details: expect.objectContaining({ status: 422 }) },
    );
    expect(await signersOf(a)).toEqual([[oldAddress, 1]]);
    mode = 'submit';
    await frostSwap(flags({ account: [a], stateFile: join(dir, 'other.json') }), io().io);
  });

  it('runs as `cosigner frost swap` with repeated --account; a bad --weight names the option', async () => {
    const [a, b] = [await groupAccount(oldAddress), await groupAccount(oldAddress)];
    const o = io();
    const program = new Command().exitOverride();
    program.configureOutput({ writeOut: () => {}, writeErr: (l) => o.lines.push(l) });
    registerFrost(program, o.io);
    const args = (extra: string[]) => [
      'frost',
      'swap',
      '--from',
      'old',
      '--to',
      'new',
      '--account',
      a,
      '--account',
      b,
      '--horizon-url',
      horizonUrl,
      '--coordinator-url',
      url,
      '--api-key-file',
      keyFile,
      '--state-file',
      join(dir, 'cmd.json'),
      ...extra,
    ];
    await expect(program.parseAsync(args(['--weight', '0']), { from: 'user' })).rejects.toThrow(/--weight/);
    await expect(program.parseAsync(args(['--wait-seconds', 'x']), { from: 'user' })).rejects.toThrow(/--wait-seconds/);
    await program.parseAsync(args(['--weight', '1']), { from: 'user' });
    expect(process.exitCode ?? 0).toBe(0);
    for (const x of [a, b]) expect(await signersOf(x)).toEqual([[newAddress, 1]]);
    expect(o.lines.join('\n')).toContain('is retired');
    // Each old node's operator is told the command that destroys its share (only they can reach their node).
    expect(o.lines.join('\n')).toContain(
      `[frost swap]   cosigner node frost retire --group ${oldAddress} --confirm ${oldAddress} --admin-url`,
    );
  });

  it('does not retire the old group while an account got its key during the swap, and names that account', async () => {
    const a = await groupAccount(oldAddress);
    mode = 'sneak';
    await expect(frostSwap(flags({ account: [a] }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_ACCOUNTS_MISSING',
      message: expect.stringContaining('it is not retired'),
    });
    expect(await signersOf(a)).toEqual([[newAddress, 1]]);
    expect((await stateOf()).retiredAt).toBeUndefined();
    expect(events).toEqual([]);
    // That account swapped too (another swap), the old group is retired.
    await frostSwap(flags({ account: [sneaked!], stateFile: join(dir, 'late.json') }), io().io);
    expect(events).toHaveLength(1);
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from '@cosigner/ledger-sim/app';
import { Horizon, Keypair } from '@stellar/stellar-sdk';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountSetup, LockoutError, type Out, registerAccount } from '../src/commands/account.ts';

/**
 * `cosigner account setup --frost-group` in process, against the real ledger simulator (HTTP) and a small
 * coordinator double that answers GET /v1/frost/groups/:id: the group key becomes a weighted signer (alone if so
 * asked), only once the coordinator says the group is ready; the other lock-out checks still hold. The same
 * command among real processes sets up the account of test/e2e/frost-sign.test.ts.
 */

class Capture implements Out {
  lines: string[] = [];
  out(l: string): void {
    this.lines.push(l);
  }
  err(l: string): void {
    this.lines.push(l);
  }
}

let dir: string;
let ledger: Awaited<ReturnType<typeof build>>;
let horizonUrl: string;
let coordinator: Server;
let coordinatorUrl: string;
let apiKeyFile: string;
const ready = Keypair.random().publicKey();
const running = Keypair.random().publicKey();
const oneOfN = Keypair.random().publicKey();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-frost-setup-'));
  ledger = await build({ closeMs: 50 });
  horizonUrl = await ledger.listen({ host: '127.0.0.1', port: 0 });
  coordinator = createServer((req, res) => {
    const id = req.url?.split('/').pop();
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== 'Bearer test-key') return send(401, { code: 'COORD_UNAUTHORIZED' });
    // The lifecycle step the command records after it submitted.
    if (req.method === 'POST' && req.url === '/v1/lifecycle/events') return send(201, { seq: 1 });
    if (id === ready) return send(200, { id: 'd1', status: 'ready', address: ready, threshold: 2 });
    if (id === running) return send(200, { id: 'd2', status: 'running', address: null, threshold: 2 });
    if (id === oneOfN) return send(200, { id: 'd3', status: 'ready', address: oneOfN, threshold: 1 });
    return send(404, { code: 'COORD_FROST_GROUP_NOT_FOUND' });
  });
  await new Promise<void>((r) => coordinator.listen(0, '127.0.0.1', r));
  coordinatorUrl = `http://127.0.0.1:${(coordinator.address() as AddressInfo).port}`;
  apiKeyFile = join(dir, 'api-key');
  await writeFile(apiKeyFile, 'test-key', { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  await new Promise((r) => coordinator.close(r));
  await ledger.close();
  await rm(dir, { recursive: true, force: true });
});

async function fundedAccount(): Promise<{ kp: Keypair; masterKeyFile: string }> {
  const kp = Keypair.random();
  const r = await fetch(`${horizonUrl}/friendbot?addr=${kp.publicKey()}`);
  expect(r.status).toBe(200);
  const masterKeyFile = join(dir, `${kp.publicKey()}.secret`);
  await writeFile(masterKeyFile, kp.secret(), { mode: 0o600 });
  return { kp, masterKeyFile };
}

describe('cosigner account setup --frost-group', () => {
  it('makes a ready group key the only signer of an account, at the weight asked', async () => {
    const { kp, masterKeyFile } = await fundedAccount();
    const io = new Capture();
    const done = await accountSetup(
      {
        horizonUrl,
        coordinatorUrl,
        apiKeyFile,
        account: kp.publicKey(),
        signer: [],
        frostGroup: [{ key: ready, weight: 2 }],
        low: 2,
        med: 2,
        high: 2,
        masterKeyFile,
      },
      io,
    );
    expect(done.via).toBe('master-key');
    expect(io.lines.join('\n')).toContain(`frost group ${ready}=2`);
    const a = await new Horizon.Server(horizonUrl, { allowHttp: true }).loadAccount(kp.publicKey());
    expect(a.signers.filter((s) => s.weight > 0).map((s) => [s.key, s.weight])).toEqual([[ready, 2]]);
  });

  it('refuses a group the coordinator does not hold ready, a 1-of-n group, and a call without a coordinator', async () => {
    const { kp, masterKeyFile } = await fundedAccount();
    const base = {
      horizonUrl,
      coordinatorUrl,
      apiKeyFile,
      account: kp.publicKey(),
      signer: [],
      low: 2,
      med: 2,
      high: 2,
      masterKeyFile,
    };
    const io = new Capture();
    await expect(accountSetup({ ...base, frostGroup: [{ key: running, weight: 2 }] }, io)).rejects.toMatchObject({
      code: 'LIFECYCLE_FROST_GROUP',
      details: { option: '--frost-group', status: 'running' },
    });
    await expect(accountSetup({ ...base, frostGroup: [{ key: oneOfN, weight: 2 }] }, io)).rejects.toMatchObject({
      code: 'LIFECYCLE_FROST_GROUP',
    });
    await expect(
      accountSetup({ ...base, frostGroup: [{ key: Keypair.random().publicKey(), weight: 2 }] }, io),
    ).rejects.toMatchObject({ code: 'LIFECYCLE_CALL_FAILED', details: { status: 404 } });
    await expect(
      accountSetup({ ...base, coordinatorUrl: undefined, frostGroup: [{ key: ready, weight: 2 }] }, io),
    ).rejects.toMatchObject({ code: 'LIFECYCLE_OPTION_REQUIRED', details: { option: '--coordinator-url' } });
    // Beside the group, a lone key that reaches a threshold alone is still refused; nothing was submitted.
    const lone = Keypair.random().publicKey();
    await expect(
      accountSetup({ ...base, signer: [{ key: lone, weight: 2 }], frostGroup: [{ key: ready, weight: 2 }] }, io),
    ).rejects.toBeInstanceOf(LockoutError);
    const a = await new Horizon.Server(horizonUrl, { allowHttp: true }).loadAccount(kp.publicKey());
    expect(a.signers.map((s) => s.key)).toEqual([kp.publicKey()]);
  });

  it('the command asks for --signer or --frost-group when neither is given', async () => {
    const io = new Capture();
    const program = new Command().exitOverride();
    registerAccount(program, io);
    const before = process.exitCode;
    await program.parseAsync(
      ['account', 'setup', '--horizon-url', horizonUrl, '--account', ready, '--low', '1', '--med', '1', '--high', '1'],
      { from: 'user' },
    );
    expect(io.lines.join('\n')).toContain('LIFECYCLE_OPTION_REQUIRED: --signer or --frost-group is required');
    process.exitCode = before;
  });
});

import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeRefresh, frostRefresh, registerFrost } from '../src/commands/frost.ts';

/**
 * `cosigner frost refresh` against a small HTTP stand-in for the coordinator's refresh API (the real API among
 * real node processes: test/e2e/frost-refresh.test.ts runs the command as a process).
 */

const address = `G${'A'.repeat(55)}`;
const adopted = {
  id: 'r1',
  address,
  status: 'adopted',
  step: 'adopt',
  threshold: 2,
  participants: [
    { index: 1, nodeId: 'a', identityKey: 'k1', verifyingShare: '11'.repeat(32), acknowledged: true },
    { index: 2, nodeId: 'b', identityKey: 'k2', verifyingShare: '22'.repeat(32), acknowledged: false },
  ],
  oldDigest: '33'.repeat(32),
  digest: '44'.repeat(32),
  commitments: null,
  transcript: '55'.repeat(32),
  error: null,
};
const running = {
  ...adopted,
  status: 'running',
  step: 'start',
  digest: null,
  transcript: null,
  participants: adopted.participants.map(({ verifyingShare: _, ...p }) => ({ ...p, acknowledged: false })),
};
const failed = {
  ...running,
  status: 'failed',
  step: 'round3',
  error: {
    code: 'COORD_FROST_REFRESH_REFUSED',
    message: 'a ended it',
    nodeCode: 'FROST_DKG_BAD_SHARE',
    culprits: ['b'],
  },
};

let server: Server;
let url: string;
let keyFile: string;
let polls: unknown[];
let calls: { method: string; url: string; auth: string | undefined }[];

beforeEach(async () => {
  const dir = await tempDir('cli-frost-refresh-');
  keyFile = join(dir, 'api.key');
  await writeFile(keyFile, 'secret-key\n', { mode: 0o600 });
  calls = [];
  polls = [];
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      calls.push({ method: req.method!, url: req.url!, auth: req.headers.authorization });
      const send = (status: number, v: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
      if (req.method === 'POST' && req.url?.startsWith('/v1/frost/groups/missing'))
        return send(404, { code: 'COORD_FROST_GROUP_NOT_FOUND', message: 'No FROST group or key generation.' });
      if (req.method === 'POST') return send(202, running);
      send(200, polls.length > 0 ? polls.shift() : adopted);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  await new Promise((r) => server.close(r));
});

const io = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
};

describe('cosigner frost refresh', () => {
  it('starts a refresh of the group, waits for the outcome and prints each node and whether it switched', async () => {
    const o = io();
    polls.push(running);
    const r = await frostRefresh(
      { group: address, coordinatorUrl: url, apiKeyFile: keyFile, wait: true, timeoutSeconds: 30 },
      o.io,
    );
    expect(r.status).toBe('adopted');
    expect(calls[0]).toMatchObject({
      method: 'POST',
      url: `/v1/frost/groups/${address}/refresh`,
      auth: 'Bearer secret-key',
    });
    expect(calls.slice(1).every((c) => c.url === '/v1/frost/refreshes/r1')).toBe(true);
    const text = o.out.join('\n');
    expect(text).toContain(`share refresh r1 of ${address} started among 2 nodes`);
    expect(text).toContain(`refresh r1 of ${address}: adopted`);
    expect(text).toContain(`group after      ${'44'.repeat(32)}`);
    expect(text).toMatch(/1 a {2}verifying share 1{64} {2}\(switched\)/);
    expect(text).toMatch(/2 b {2}verifying share 2{64} {2}\(not acknowledged yet\)/);
  });

  it('a failed refresh names the culprits and says every node keeps its share; --json prints the refresh', async () => {
    polls.push(failed);
    const o = io();
    await expect(
      frostRefresh(
        { group: address, coordinatorUrl: url, apiKeyFile: keyFile, wait: true, timeoutSeconds: 30, json: true },
        o.io,
      ),
    ).rejects.toMatchObject({ code: 'COORD_FROST_REFRESH_REFUSED', message: expect.stringContaining('Blamed: b.') });
    expect(JSON.parse(o.out.join('\n'))).toMatchObject({ id: 'r1', status: 'failed' });
    const lines = describeRefresh(failed as never).join('\n');
    expect(lines).toContain('blamed           b');
    expect(lines).toContain('every node keeps its current share');
    expect(describeRefresh({ ...failed, error: { ...failed.error, culprits: [] } } as never).join('\n')).not.toContain(
      'blamed',
    );
    expect(describeRefresh(running as never)[0]).toBe(`refresh r1 of ${address}: running (at start)`);
  });

  it('--no-wait returns the running refresh; a wait that runs out is LIFECYCLE_TIMEOUT', async () => {
    const o = io();
    const r = await frostRefresh(
      { group: address, coordinatorUrl: url, apiKeyFile: keyFile, wait: false, timeoutSeconds: 1 },
      o.io,
    );
    expect(r.status).toBe('running');
    expect(calls).toHaveLength(1);
    polls.push(...Array.from({ length: 40 }, () => running));
    await expect(
      frostRefresh({ group: address, coordinatorUrl: url, apiKeyFile: keyFile, wait: true, timeoutSeconds: 1 }, o.io),
    ).rejects.toMatchObject({ code: 'LIFECYCLE_TIMEOUT' });
  });

  it('names a missing flag, and prints the coordinator error through the registered command', async () => {
    await expect(
      frostRefresh({ coordinatorUrl: url, apiKeyFile: keyFile, wait: true, timeoutSeconds: 1 }),
    ).rejects.toMatchObject({
      code: 'LIFECYCLE_OPTION_REQUIRED',
      message: expect.stringContaining('--group'),
    });
    await expect(
      frostRefresh({ group: address, apiKeyFile: keyFile, wait: true, timeoutSeconds: 1 }),
    ).rejects.toMatchObject({
      code: 'LIFECYCLE_OPTION_REQUIRED',
    });
    const program = new Command().exitOverride();
    const e = io();
    registerFrost(program, e.io);
    await program.parseAsync(
      ['frost', 'refresh', '--group', 'missing', '--coordinator-url', url, '--api-key-file', keyFile],
      { from: 'user' },
    );
    expect(e.err[0]).toMatch(/^COORD_FROST_GROUP_NOT_FOUND: /);
    expect(process.exitCode).toBe(1);
    process.exitCode = 0;
  });
});

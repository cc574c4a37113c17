import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeGroup, frostDkg, frostShow, parseParticipants, registerFrost } from '../src/commands/frost.ts';

/**
 * `cosigner frost dkg|show` against a small HTTP stand-in for the coordinator's group API (the real API among
 * real node processes: test/e2e/frost-dkg.test.ts runs both commands as processes).
 */

const ready = {
  id: 'g1',
  status: 'ready',
  step: 'confirm',
  threshold: 2,
  participants: [
    { index: 1, nodeId: 'a', identityKey: 'k1', verifyingShare: '11'.repeat(32) },
    { index: 2, nodeId: 'b', identityKey: 'k2', verifyingShare: '22'.repeat(32) },
  ],
  address: `G${'A'.repeat(55)}`,
  groupPublicKey: '33'.repeat(32),
  transcript: '44'.repeat(32),
  error: null,
};
const failed = {
  ...ready,
  status: 'failed',
  address: null,
  groupPublicKey: null,
  transcript: null,
  participants: ready.participants.map(({ verifyingShare: _, ...p }) => p),
  error: { code: 'COORD_FROST_DKG_REFUSED', message: 'b ended it', reportedBy: 'a', culprits: ['b'] },
};

let server: Server;
let url: string;
let keyFile: string;
let polls: unknown[];
let calls: { method: string; url: string; auth: string | undefined; body: string }[];

beforeEach(async () => {
  const dir = await tempDir('cli-frost-');
  keyFile = join(dir, 'api.key');
  await writeFile(keyFile, 'secret-key\n', { mode: 0o600 });
  calls = [];
  polls = [];
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      calls.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
      const send = (status: number, v: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
      if (req.method === 'POST') return send(202, { ...ready, status: 'running', step: 'start', address: null });
      if (req.url === '/v1/frost/groups/missing')
        return send(404, { code: 'COORD_FROST_GROUP_NOT_FOUND', message: 'No FROST group.' });
      if (req.url === '/v1/frost/groups/text') return res.writeHead(500).end('oops');
      send(200, polls.length > 0 ? polls.shift() : ready);
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

describe('cosigner frost', () => {
  it('dkg starts a key generation, waits for its outcome and prints the group', async () => {
    const o = io();
    polls = [{ ...ready, status: 'running', step: 'round2' }];
    const g = await frostDkg(
      {
        participants: ['a', 'b'],
        threshold: 2,
        wait: true,
        timeoutSeconds: 30,
        coordinatorUrl: url,
        apiKeyFile: keyFile,
      },
      o.io,
    );
    expect(g.status).toBe('ready');
    expect(calls[0]).toMatchObject({ method: 'POST', url: '/v1/frost/groups', auth: 'Bearer secret-key' });
    expect(JSON.parse(calls[0]!.body)).toEqual({ participants: ['a', 'b'], threshold: 2 });
    expect(o.out.join('\n')).toContain(`address          ${ready.address}`);
    expect(o.out.join('\n')).toContain('verifying share 2222');
  });

  it('dkg fails naming the code, the reason and who is blamed; --json prints the group as JSON', async () => {
    polls = [failed];
    const o = io();
    await expect(
      frostDkg(
        {
          participants: ['a', 'b'],
          threshold: 2,
          wait: true,
          timeoutSeconds: 30,
          coordinatorUrl: url,
          apiKeyFile: keyFile,
          json: true,
        },
        o.io,
      ),
    ).rejects.toMatchObject({ code: 'COORD_FROST_DKG_REFUSED', message: expect.stringContaining('Blamed: b.') });
    expect(JSON.parse(o.out.join('\n'))).toMatchObject({ status: 'failed' });
    expect(describeGroup(failed as never).join('\n')).toContain('blamed           b');
  });

  it('dkg gives up waiting after --timeout-seconds, or returns at once with --no-wait', async () => {
    polls = Array.from({ length: 100 }, () => ({ ...ready, status: 'running', step: 'round1' }));
    const base = { participants: ['a', 'b'], threshold: 2, coordinatorUrl: url, apiKeyFile: keyFile };
    await expect(frostDkg({ ...base, wait: true, timeoutSeconds: 1 }, io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_TIMEOUT',
    });
    const o = io();
    const g = await frostDkg({ ...base, wait: false, timeoutSeconds: 1 }, o.io);
    expect(g.status).toBe('running');
    expect(o.out[1]).toContain('running (2-of-2, at start)');
  });

  it('checks its options and names them', async () => {
    expect(parseParticipants('a, b,c')).toEqual(['a', 'b', 'c']);
    expect(() => parseParticipants('a')).toThrow('at least two');
    expect(() => parseParticipants('a,a')).toThrow('twice');
    expect(() => parseParticipants('a,b c')).toThrow("'b c' is not a node id");
    const base = { participants: ['a', 'b'], wait: true, timeoutSeconds: 1 };
    await expect(frostDkg({ ...base, threshold: 3, coordinatorUrl: url, apiKeyFile: keyFile })).rejects.toThrow(
      '--threshold 3 is more than the 2 participants',
    );
    await expect(frostDkg({ ...base, threshold: 2, apiKeyFile: keyFile })).rejects.toMatchObject({
      code: 'LIFECYCLE_OPTION_REQUIRED',
      details: { option: '--coordinator-url' },
    });
    await expect(frostShow('g1', { coordinatorUrl: url })).rejects.toMatchObject({
      details: { option: '--api-key-file' },
    });
    // Through commander: a bad --threshold is refused naming the option, and the error goes to stderr.
    const program = new Command().exitOverride();
    const o = io();
    program.configureOutput({ writeErr: (s) => o.err.push(s), writeOut: () => undefined });
    registerFrost(program, o.io);
    await expect(
      program.parseAsync(['frost', 'dkg', '--participants', 'a,b', '--threshold', 'x'], { from: 'user' }),
    ).rejects.toThrow();
    expect(o.err.join('')).toContain("option '--threshold <t>' argument 'x' is invalid");
  });

  it('show prints a group by id or address, and says why when there is none', async () => {
    const o = io();
    expect((await frostShow(ready.address, { coordinatorUrl: url, apiKeyFile: keyFile }, o.io)).id).toBe('g1');
    expect(o.out[0]).toBe('group g1: ready (2-of-2)');
    const j = io();
    await frostShow('g1', { coordinatorUrl: url, apiKeyFile: keyFile, json: true }, j.io);
    expect(JSON.parse(j.out.join('\n')).id).toBe('g1');
    await expect(frostShow('missing', { coordinatorUrl: url, apiKeyFile: keyFile })).rejects.toMatchObject({
      code: 'COORD_FROST_GROUP_NOT_FOUND',
    });
    await expect(frostShow('text', { coordinatorUrl: url, apiKeyFile: keyFile })).rejects.toMatchObject({
      code: 'LIFECYCLE_CALL_FAILED',
    });
    // Through the registered command: an error prints as CODE: message and sets the exit code.
    const program = new Command().exitOverride();
    const e = io();
    registerFrost(program, e.io);
    await program.parseAsync(['frost', 'show', 'missing', '--coordinator-url', url, '--api-key-file', keyFile], {
      from: 'user',
    });
    expect(e.err[0]).toMatch(/^COORD_FROST_GROUP_NOT_FOUND: /);
    expect(process.exitCode).toBe(1);
    process.exitCode = 0;
  });
});

import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createTransportKey } from '@cosigner/frost/channel';
import { DkgParticipant, type DkgSession } from '@cosigner/frost/dkg';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { frostNewGroup, type NewGroupFlags } from '../src/commands/frost.ts';

/**
 * `cosigner frost new-group` against a small HTTP stand-in for the coordinator's group API, with an old group of
 * real public data (a key generation run in memory). Among real node processes: test/e2e/frost-refresh-new-group.
 */

function realGroup() {
  const keys = [1, 2, 3].map(() => createTransportKey());
  const session: DkgSession = {
    sessionId: 'cli-old',
    threshold: 2,
    members: keys.map((k, i) => ({
      index: i + 1,
      nodeId: `n${i + 1}`,
      transportKey: Buffer.from(k.publicKey).toString('hex'),
    })),
  };
  const parts = keys.map((k, i) => new DkgParticipant({ session, index: i + 1, transportSecretKey: k.secretKey }));
  const r1 = parts.map((p) => p.round1());
  const r2 = parts.flatMap((p) => p.round2(r1.filter((m) => m.from !== p.index)));
  return parts.map((p) => p.round3(r2.filter((m) => m.to === p.index)))[0]!;
}

const out = realGroup();
const oldView = {
  id: 'old',
  status: 'ready',
  step: 'confirm',
  threshold: 2,
  participants: [1, 2, 3].map((i) => ({
    index: i,
    nodeId: `n${i}`,
    identityKey: 'k',
    verifyingShare: out.group.verifyingShares[String(i)],
  })),
  address: out.address,
  groupPublicKey: out.group.groupPublicKey,
  commitments: out.group.commitments,
  transcript: '44'.repeat(32),
  error: null,
};
const newReady = {
  ...oldView,
  id: 'new',
  address: `G${'B'.repeat(55)}`,
  participants: oldView.participants.map((p) => ({ ...p, nodeId: p.index === 3 ? 'n4' : p.nodeId })),
};

let server: Server;
let url: string;
let keyFile: string;
let dir: string;
let posts: string[];
/** What GET /v1/frost/groups/new answers, in turn (the last one repeats). */
let newStates: unknown[];

beforeEach(async () => {
  dir = await tempDir('cli-frost-new-group-');
  keyFile = join(dir, 'api.key');
  await writeFile(keyFile, 'secret-key\n', { mode: 0o600 });
  posts = [];
  newStates = [newReady];
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      const send = (status: number, v: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
      if (req.method === 'POST') {
        posts.push(body);
        return send(202, { ...newReady, status: 'running', step: 'start', address: null });
      }
      if (req.url === '/v1/frost/groups/old' || req.url === `/v1/frost/groups/${out.address}`)
        return send(200, oldView);
      if (req.url === '/v1/frost/groups/running-old') return send(200, { ...oldView, status: 'running' });
      if (req.url === '/v1/frost/groups/new') return send(200, newStates.length > 1 ? newStates.shift() : newStates[0]);
      send(404, { code: 'COORD_FROST_GROUP_NOT_FOUND', message: 'No FROST group.' });
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
const flags = (f: Partial<NewGroupFlags> = {}): NewGroupFlags => ({
  from: 'old',
  participants: ['n4', 'n1', 'n2'],
  threshold: 2,
  stateFile: join(dir, 'state', 'new-group.json'),
  coordinatorUrl: url,
  apiKeyFile: keyFile,
  timeoutSeconds: 30,
  ...f,
});

describe('cosigner frost new-group', () => {
  it('plans, asks for the key generation among the new members in node-id order, records each step, resumes', async () => {
    const o = io();
    newStates = [{ ...newReady, status: 'running', address: null }, newReady];
    const r = await frostNewGroup(flags(), o.io);
    expect(r.plan).toMatchObject({ participants: ['n1', 'n2', 'n4'], joining: ['n4'], leaving: ['n3'] });
    expect(JSON.parse(posts[0]!)).toEqual({ participants: ['n1', 'n2', 'n4'], threshold: 2 });
    const state = JSON.parse(await readFile(flags().stateFile!, 'utf8'));
    expect(state).toEqual({
      version: 1,
      from: out.address,
      participants: ['n1', 'n2', 'n4'],
      threshold: 2,
      dkgId: 'new',
      address: newReady.address,
    });
    const text = o.lines.join('\n');
    expect(text).toContain('new group: 2-of-3 among n1, n2, n4');
    expect(text).toContain('joining          n4');
    expect(text).toContain('next: the old group');
    // again: no second key generation
    const again = io();
    await frostNewGroup(flags(), again.io);
    expect(posts).toHaveLength(1);
    expect(again.lines.join('\n')).toContain('key generation new was asked for already: ready');
    // --json prints the plan, the group and the state
    const j = io();
    await frostNewGroup(flags({ json: true }), j.io);
    expect(JSON.parse(j.lines.join('\n'))).toMatchObject({ state: { dkgId: 'new' }, group: { id: 'new' } });
  });

  it('asks again when the recorded key generation failed, and reports a failure naming the culprits', async () => {
    const failed = {
      ...newReady,
      status: 'failed',
      address: null,
      error: { code: 'COORD_FROST_DKG_REFUSED', message: 'n4 refused', culprits: ['n4'] },
    };
    await writeFile(
      flags().stateFile!.replace('state/new-group.json', 'failed.json'),
      JSON.stringify({ version: 1, from: out.address, participants: ['n1', 'n2', 'n4'], threshold: 2, dkgId: 'new' }),
    );
    newStates = [failed, failed];
    const o = io();
    await expect(frostNewGroup(flags({ stateFile: join(dir, 'failed.json') }), o.io)).rejects.toMatchObject({
      code: 'COORD_FROST_DKG_REFUSED',
      message: expect.stringContaining('Blamed: n4.'),
    });
    expect(posts).toHaveLength(1);
    expect(o.lines.join('\n')).toContain('had failed (COORD_FROST_DKG_REFUSED): asking again');
    const j = io();
    await expect(frostNewGroup(flags({ stateFile: join(dir, 'failed2.json'), json: true }), j.io)).rejects.toThrow();
    expect(JSON.parse(j.lines.join('\n'))).toMatchObject({ group: { status: 'failed' } });
  });

  it('refuses what it must, naming the option or field', async () => {
    await expect(frostNewGroup(flags({ from: undefined }))).rejects.toMatchObject({
      message: expect.stringContaining('--from'),
    });
    await expect(frostNewGroup(flags({ participants: undefined }))).rejects.toMatchObject({
      message: expect.stringContaining('--participants'),
    });
    await expect(frostNewGroup(flags({ threshold: undefined }))).rejects.toMatchObject({
      message: expect.stringContaining('--threshold'),
    });
    await expect(frostNewGroup(flags({ stateFile: undefined }))).rejects.toMatchObject({
      code: 'LIFECYCLE_OPTION_REQUIRED',
      message: expect.stringContaining('--state-file'),
    });
    await expect(frostNewGroup(flags({ from: 'running-old' }))).rejects.toMatchObject({
      code: 'LIFECYCLE_STATE_MISMATCH',
      details: { field: '--from' },
    });
    await expect(frostNewGroup(flags({ participants: ['n1', 'n2', 'n3', 'n4'] }))).rejects.toMatchObject({
      code: 'FROST_GROUP_CHANGE_UNSAFE',
    });
    expect(
      (
        await frostNewGroup(
          flags({ participants: ['n1', 'n2', 'n3', 'n4'], allowDisjointQuorums: true, stateFile: join(dir, 'd.json') }),
          io().io,
        )
      ).plan.threshold,
    ).toBe(2);
    await expect(frostNewGroup(flags({ participants: ['n1', 'n2', 'n3'] }))).rejects.toMatchObject({
      code: 'FROST_OUT_OF_RANGE',
      details: { field: 'members' },
    });
    await frostNewGroup(flags(), io().io);
    await expect(frostNewGroup(flags({ threshold: 3 }))).rejects.toMatchObject({
      code: 'LIFECYCLE_STATE_MISMATCH',
      details: { field: 'threshold' },
    });
  });

  it('a key generation that does not finish in time is LIFECYCLE_TIMEOUT; running again resumes it', async () => {
    newStates = [{ ...newReady, status: 'running', step: 'round2', address: null }];
    await expect(frostNewGroup(flags({ timeoutSeconds: 1 }), io().io)).rejects.toMatchObject({
      code: 'LIFECYCLE_TIMEOUT',
    });
    newStates = [newReady];
    const o = io();
    await frostNewGroup(flags(), o.io);
    expect(posts).toHaveLength(1);
  });
});

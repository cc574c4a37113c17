import { rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, describe, expect, it } from 'vitest';
import { Lifecycle, type Out } from '../src/commands/account.ts';
import { loadState, rotationId, rotationKey, waitApproved } from '../src/commands/rotate.ts';

/**
 * How `cosigner rotate` waits for a proposal the nodes hold for manual approval, against a small HTTP double of
 * the coordinator's proposal view (the whole flow with real nodes is test/e2e/rotate-crash.test.ts).
 */

interface View {
  id: string;
  status: string;
  decisions: { nodeId: string; outcome: string; reasons: { code: string; message: string }[] }[];
}

let server: Server | undefined;
const dirs: string[] = [];
afterEach(async () => {
  const s = server;
  server = undefined;
  if (s?.listening) await new Promise((r) => s.close(r));
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const scratch = async (prefix: string): Promise<string> => {
  const d = await tempDir(prefix);
  dirs.push(d);
  return d;
};

/** Serves GET /v1/proposals/p1 as `next()` returns it, one view per request. */
async function coordinator(next: () => View): Promise<{ lc: Lifecycle; lines: string[]; polls: () => number }> {
  let polls = 0;
  server = createServer((req, res) => {
    polls += 1;
    expect(req.headers.authorization).toBe('Bearer test-key');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(next()));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const dir = await scratch('cosigner-rotate-wait-');
  const keyFile = join(dir, 'admin.key');
  await writeFile(keyFile, 'test-key\n', { mode: 0o600 });
  const lines: string[] = [];
  const io: Out = { out: (l) => lines.push(l), err: (l) => lines.push(l) };
  const url = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
  return {
    lc: new Lifecycle({ horizonUrl: url, coordinatorUrl: url, apiKeyFile: keyFile }, io),
    lines,
    polls: () => polls,
  };
}

const hold = (nodeId: string) => ({
  nodeId,
  outcome: 'hold',
  reasons: [{ code: 'HOLD_SIGNER_CHANGE', message: 'signer and threshold changes need manual approval' }],
});
const approve = (nodeId: string) => ({ nodeId, outcome: 'approve', reasons: [] });

describe('rotate waiting for manual approval', () => {
  it('names the holding nodes once, after their answers settle, and returns when the proposal is submitted', async () => {
    const started = Date.now();
    const c = await coordinator(() => {
      const t = Date.now() - started;
      // node-a holds at once, node-c a little later; both approve after about 2 s; then it is submitted.
      if (t < 300) return { id: 'p1', status: 'pending', decisions: [hold('node-a')] };
      if (t < 2000) return { id: 'p1', status: 'pending', decisions: [hold('node-a'), hold('node-c')] };
      if (t < 2600)
        return { id: 'p1', status: 'pending', decisions: [hold('node-a'), hold('node-c'), approve('node-a')] };
      return { id: 'p1', status: 'submitted', decisions: [approve('node-a'), approve('node-c')] };
    });
    await waitApproved(c.lc, 'p1', Date.now() + 30_000, 'node-b');
    expect(c.lines).toEqual([
      '[rotate] proposal p1 is held for manual approval on node-a, node-c (rotation of node-b); each of their ' +
        "operators reviews it and runs: cosigner node approve p1 --admin-url <their node's admin URL>",
    ]);
  });

  it('stops at --wait with LIFECYCLE_TIMEOUT naming who holds it, and reports a proposal that ended', async () => {
    const c = await coordinator(() => ({ id: 'p1', status: 'pending', decisions: [hold('node-c'), hold('node-a')] }));
    await expect(waitApproved(c.lc, 'p1', Date.now() + 1500, 'node-b')).rejects.toMatchObject({
      code: 'LIFECYCLE_TIMEOUT',
      details: { proposalId: 'p1', status: 'pending', heldBy: ['node-a', 'node-c'] },
      message: expect.stringMatching(/still pending, held by node-a, node-c; run the same command again/),
    });
    expect(c.polls()).toBeGreaterThan(2);
    const first = server!;
    await new Promise((r) => first.close(r));

    const ended = await coordinator(() => ({
      id: 'p1',
      status: 'rejected',
      decisions: [
        { nodeId: 'node-a', outcome: 'reject', reasons: [{ code: 'SIGNER_KEY_NOT_ALLOWED', message: 'no' }] },
      ],
    }));
    await expect(waitApproved(ended.lc, 'p1', Date.now() + 5000, 'node-b')).rejects.toMatchObject({
      code: 'LIFECYCLE_PROPOSAL_ENDED',
      details: { proposalId: 'p1', outcome: 'rejected' },
      message: expect.stringMatching(/node-a: SIGNER_KEY_NOT_ALLOWED no/),
    });
  });

  it('reads a state file written before intents were recorded: its proposals are waited for by id', async () => {
    const dir = await scratch('cosigner-rotate-state-');
    const file = join(dir, 'rotate-node-b.json');
    const old = 'GBG7UDG2R6I6OQQKRAOZZ2RPUNSDMJGIRWMSZM6NZEYBQ62JIIOCEIV3';
    await writeFile(
      file,
      JSON.stringify({ nodeId: 'node-b', oldKey: old, done: ['key-created', 'prepared', 'roster'], addProposal: 'p7' }),
    );
    const s = await loadState(file);
    const rid = rotationId('node-b', old);
    expect(s).toMatchObject({
      rotationId: rid,
      intents: { add: { key: rotationKey(rid, 'add', 0), attempt: 0, proposalId: 'p7' } },
      reported: ['started', 'key-created', 'prepared', 'roster'],
    });
    expect(s?.intents.remove).toBeUndefined();
    expect(await loadState(join(dir, 'missing.json'))).toBeUndefined();
  });
});

import { Keypair } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { createApiKey } from '../src/apikeys.ts';
import { type Harness, harness } from './helpers.ts';

const auth = (key: string) => ({ authorization: `Bearer ${key}` });

describe('lifecycle routes', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('changes an enrolled node key, records node.key_changed once, and refuses unknown nodes', async () => {
    h = await harness();
    const first = Keypair.random().publicKey();
    const next = Keypair.random().publicKey();
    const account = Keypair.random().publicKey();
    h.store.enrollNode({ id: 'n9', identityKey: Buffer.alloc(32, 9).toString('base64'), stellarKey: first }, 1);
    const put = (body: Record<string, unknown>, id = 'n9') =>
      h!.app.inject({ method: 'PUT', url: `/v1/nodes/${id}/stellar-key`, headers: auth(h!.adminKey), payload: body });
    let r = await put({ stellarKey: next, account });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ id: 'n9', stellarKey: next, previous: first });
    expect(h.store.getNode('n9')).toMatchObject({
      stellarKey: next,
      identityKey: Buffer.alloc(32, 9).toString('base64'),
    });
    r = await put({ stellarKey: next });
    expect(r.json().previous).toBe(next);
    const events = h.store.eventsSince(0, 100).filter((e) => e.type === 'node.key_changed');
    expect(events).toEqual([
      expect.objectContaining({ proposalId: null, data: { nodeId: 'n9', stellarKey: next, previous: first } }),
    ]);
    expect((await put({ stellarKey: next }, 'nope')).statusCode).toBe(404);
    expect((await put({ stellarKey: 'GBAD' })).statusCode).toBe(400);
  });

  it('records lifecycle steps as events; admin scope only', async () => {
    h = await harness();
    const account = Keypair.random().publicKey();
    const post = (key: string, body: Record<string, unknown>) =>
      h!.app.inject({ method: 'POST', url: '/v1/lifecycle/events', headers: auth(key), payload: body });
    const r = await post(h.adminKey, {
      action: 'rotate',
      step: 'added',
      account,
      nodeId: 'node-1',
      proposalId: 'p1',
      detail: { newKey: 'G...', attempt: 1, resumed: false, none: null },
    });
    expect(r.statusCode).toBe(200);
    const stored = h.store.eventsSince(0, 100).find((e) => e.seq === r.json().seq);
    expect(stored).toMatchObject({
      type: 'lifecycle.step',
      data: { action: 'rotate', step: 'added', nodeId: 'node-1' },
    });
    expect((await post(h.adminKey, { action: 'explode', step: 'x' })).statusCode).toBe(400);
    const reader = (await createApiKey(h.store, ['read'])).key;
    expect((await post(reader, { action: 'setup', step: 'x' })).statusCode).toBe(403);
    expect((await post(h.adminKey, { action: 'setup', step: 'Bad Step' })).statusCode).toBe(400);
  });
});

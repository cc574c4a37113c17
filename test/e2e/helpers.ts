import type { Cluster } from '@cosigner/launcher/cluster';
import WebSocket from 'ws';

export interface StoredEvent {
  type: string;
  data: Record<string, unknown>;
}

/**
 * Every stored coordinator event, read from the client event stream (`/v1/events?since=0`): the stream replays the
 * stored events first; a second of listening is ample for the few hundred a test cluster holds.
 */
export async function coordinatorEvents(c: Cluster): Promise<StoredEvent[]> {
  const ws = new WebSocket(`${c.coordinator.url.replace(/^http/, 'ws')}/v1/events?since=0`, {
    headers: { authorization: `Bearer ${c.apiKey}` },
  });
  const seen: StoredEvent[] = [];
  ws.on('message', (m: Buffer) => seen.push(JSON.parse(m.toString()) as StoredEvent));
  await new Promise((r) => ws.once('open', r));
  await new Promise((r) => setTimeout(r, 1000));
  ws.close();
  return seen;
}

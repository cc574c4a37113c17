import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createShareSealer, type SealedBlob, type SealerConfig } from '@cosigner/frost/sealer';
import type { Cluster } from '@cosigner/launcher/cluster';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { bytesSecret, filesUnder } from '../security/scan.ts';

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

/**
 * A sealed FROST share opened the way only its node can: through the node's sealer (`config`, with the node's own
 * KMS principal), bound to the node and the group.
 */
export async function unsealShare(
  config: SealerConfig,
  sealedShare: string,
  context: { node: string; group: string },
): Promise<Uint8Array> {
  const sealer = await createShareSealer(config, { production: false });
  try {
    return await sealer.unseal(JSON.parse(sealedShare) as SealedBlob, { purpose: 'frost-share', ...context });
  } finally {
    await sealer.close();
  }
}

/** The sealed share of group `address` in node `i`'s FROST store under the cluster directory `dir`. */
export function sealedShareOf(dir: string, i: number, address: string): string {
  const db = new Database(join(dir, `node-${i}`, 'frost.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT sealed_share FROM frost_groups WHERE address = ?').get(address) as
      | { sealed_share: string }
      | undefined;
    if (!row) throw new Error(`node-${i} holds no share of ${address}`);
    return row.sealed_share;
  } finally {
    db.close();
  }
}

/**
 * Where any of `shares` stands in the clear, in any of its encodings (scan.ts bytesSecret: raw, hex, base64,
 * base64url, an S... seed): each file under `dir` (named relative to it), each process's environment, each text.
 * The same look runs first on a control, the first share written in each of its encodings: `control` says how many
 * of them it found and how many there were, so a caller can show the look would have found a share.
 */
export async function sharesInTheClear(
  shares: readonly { label: string; bytes: Buffer }[],
  where: {
    dir: string;
    processes: readonly { name: string; pid: number }[];
    texts?: readonly { where: string; text: string }[];
  },
): Promise<{ found: string[]; control: { found: number; forms: number }; files: string[] }> {
  if (shares.length === 0) throw new Error('no share to look for');
  const secrets = shares.map((x) => bytesSecret(x.label, x.bytes, []));
  const look = (into: string[], place: string, content: Buffer) => {
    for (const x of secrets) if (x.forms.some((f) => content.includes(f))) into.push(`${place}: ${x.label}`);
  };
  const control: string[] = [];
  for (const f of secrets[0]!.forms) look(control, 'control', Buffer.concat([Buffer.from('x'), f, Buffer.from('y')]));
  const found: string[] = [];
  const files = await filesUnder(where.dir);
  for (const f of files) look(found, relative(where.dir, f), await readFile(f));
  for (const p of where.processes) look(found, `${p.name} environment`, await readFile(`/proc/${p.pid}/environ`));
  for (const t of where.texts ?? []) look(found, t.where, Buffer.from(t.text));
  return { found, control: { found: control.length, forms: secrets[0]!.forms.length }, files };
}

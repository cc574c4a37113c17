import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { COSIGNER_BIN, REPO_ROOT } from '@cosigner/testkit/process';
import Database from 'better-sqlite3';

/**
 * What the attacked side recorded, read the way an operator would: a node's Prometheus metrics (its admin API),
 * its signing ledger and audit log (SQLite, read-only), `cosigner node audit verify`, and the coordinator's
 * metrics. The adversarial tests assert on these, not on what the attacker believes happened.
 */

/** The value of one Prometheus sample (`name{a="b",...}`) whose labels include `labels`; 0 when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[3] ?? '').matchAll(/(\w+)="((?:\\.|[^"\\])*)"/g)].map((x) => [x[1]!, x[2]!] as const),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[4]);
  }
  return total;
}

export async function fetchMetrics(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET ${baseUrl}/metrics answered ${res.status}`);
  return res.text();
}

/** How many coordinator frames a node refused with `code` (cosigner_node_refused_frames_total). */
export async function refusedFrames(nodeUrl: string, code: string): Promise<number> {
  return metricValue(await fetchMetrics(nodeUrl), 'cosigner_node_refused_frames_total', { code });
}

/** Poll until `read()` returns at least `min` (or throw with `what`). */
export async function untilAtLeast(
  read: () => Promise<number> | number,
  min: number,
  what: string,
  timeoutMs = 20_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (v >= min) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${v} < ${min})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface SignatureRow {
  sign_hash: string;
  tx_hash: string;
  source: string;
  seq: string;
  max_time: number;
  proposal_id: string;
  state: string;
  created_at: number;
}

export interface DecisionRow {
  proposal_id: string;
  hash: string;
  outcome: string;
  reasons: string;
}

/** A read-only view of node `i`'s signing ledger (`<dir>/node-<i>/ledger.sqlite`). */
export function readLedger(
  clusterDir: string,
  i: number,
): { signatures: SignatureRow[]; decisions: DecisionRow[]; spentStroops: bigint; auditTypes: string[] } {
  const db = new Database(join(clusterDir, `node-${i}`, 'ledger.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const signatures = db.prepare('SELECT * FROM signatures ORDER BY rowid').all() as SignatureRow[];
    const decisions = db
      .prepare('SELECT proposal_id, hash, outcome, reasons FROM decisions ORDER BY id')
      .all() as DecisionRow[];
    const spend = db.prepare("SELECT amount FROM spend WHERE asset_key = 'native'").all() as { amount: string }[];
    const auditTypes = (db.prepare('SELECT type FROM audit ORDER BY seq').all() as { type: string }[]).map(
      (r) => r.type,
    );
    return { signatures, decisions, spentStroops: spend.reduce((a, r) => a + BigInt(r.amount), 0n), auditTypes };
  } finally {
    db.close();
  }
}

/** (source, seq) slots holding signatures over two different transactions: must always be empty. */
export function doubleSignedSlots(rows: readonly SignatureRow[]): string[] {
  const bySlot = new Map<string, Set<string>>();
  for (const r of rows) {
    const k = `${r.source}:${r.seq}`;
    bySlot.set(k, (bySlot.get(k) ?? new Set()).add(r.tx_hash));
  }
  return [...bySlot].filter(([, hashes]) => hashes.size > 1).map(([k]) => k);
}

/** `cosigner node audit verify --data-dir <dir>`: the operators' own check of the hash-chained audit log. */
export async function auditVerify(dataDir: string): Promise<{ code: number | null; out: string }> {
  const proc = spawn(process.execPath, [COSIGNER_BIN, 'node', 'audit', 'verify', '--data-dir', dataDir], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  proc.stderr.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const code = await new Promise<number | null>((res) => proc.once('exit', (c) => res(c)));
  return { code, out };
}

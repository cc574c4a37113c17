import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, verifyAuditChain } from '../src/audit.ts';
import { ledgerPath, listMigrations, openLedgerDb, SigningLedger, type SlotIntent } from '../src/ledger.ts';

const dirs: string[] = [];
async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'cosigner-ledger-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function intent(over: Partial<SlotIntent> = {}): SlotIntent {
  const signHash = over.signHash ?? 'aa'.repeat(32);
  return {
    proposalId: 'p1',
    signHash,
    txHash: over.txHash ?? signHash,
    source: 'GSOURCE',
    seq: '101',
    maxTime: 1_000,
    signer: 'GSIGNER',
    spend: [{ assetKey: 'native', amount: 50n }],
    manual: false,
    ...over,
  };
}

describe('signing ledger', () => {
  it('creates a private WAL database with the numbered migrations applied', async () => {
    const dir = await freshDir();
    const db = openLedgerDb(ledgerPath(dir));
    expect(statSync(ledgerPath(dir)).mode & 0o777).toBe(0o600);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(db.pragma('user_version', { simple: true })).toBe(listMigrations().at(-1)?.version);
    db.close();
    // Reopening applies nothing twice.
    const again = openLedgerDb(ledgerPath(dir));
    expect(again.pragma('user_version', { simple: true })).toBe(listMigrations().at(-1)?.version);
    again.close();
  });

  it('refuses a ledger written by a newer schema and reports a failing migration', async () => {
    const dir = await freshDir();
    const db = openLedgerDb(ledgerPath(dir));
    db.pragma('user_version = 99');
    db.close();
    expect(() => openLedgerDb(ledgerPath(dir))).toThrow(expect.objectContaining({ code: 'LEDGER_NEWER_SCHEMA' }));
    const migDir = await freshDir();
    writeFileSync(join(migDir, '001_broken.sql'), 'CREATE TABLE broken (;');
    expect(() => openLedgerDb(join(migDir, 'x.sqlite'), { migrationsDir: migDir })).toThrow(
      expect.objectContaining({ code: 'LEDGER_MIGRATION_FAILED' }),
    );
  });

  it('reserves a slot once, returns the same record for the same hash, refuses another hash while live', async () => {
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(await freshDir())), { graceSeconds: 10 });
    const first = ledger.reserve(intent(), 500);
    expect(first.status).toBe('reserved');
    expect(ledger.reserve(intent(), 501)).toMatchObject({ status: 'existing' });
    expect(ledger.spent('native', 3600, 600)).toBe(50n); // counted once
    const other = ledger.reserve(intent({ signHash: 'bb'.repeat(32) }), 900);
    expect(other).toMatchObject({ status: 'slot-taken', holder: { signHash: 'aa'.repeat(32) } });
    // maxTime 1000 + grace 10: still live at 1010, free at 1011.
    expect(ledger.reserve(intent({ signHash: 'bb'.repeat(32) }), 1010).status).toBe('slot-taken');
    expect(ledger.reserve(intent({ signHash: 'bb'.repeat(32) }), 1011).status).toBe('reserved');
    expect(ledger.slot('GSOURCE', '101')).toHaveLength(2);
    ledger.close();
  });

  it('holds a slot forever for a transaction without maxTime, and shares it between fee bumps of one tx', async () => {
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(await freshDir())));
    expect(ledger.reserve(intent({ maxTime: 0 }), 1).status).toBe('reserved');
    expect(ledger.reserve(intent({ signHash: 'cc'.repeat(32) }), 10 ** 9).status).toBe('slot-taken');
    // Two fee bumps (different outer hashes) of the same inner transaction do not conflict: only one can apply.
    const inner = 'dd'.repeat(32);
    const l2 = new SigningLedger(openLedgerDb(ledgerPath(await freshDir())));
    expect(l2.reserve(intent({ signHash: '01'.repeat(32), txHash: inner, seq: '7' }), 1).status).toBe('reserved');
    expect(l2.reserve(intent({ signHash: '02'.repeat(32), txHash: inner, seq: '7' }), 1).status).toBe('reserved');
    ledger.close();
    l2.close();
  });

  it('stores a signature for an intent, idempotently, and refuses an unknown hash', async () => {
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(await freshDir())));
    ledger.reserve(intent(), 1);
    expect(ledger.storeSignature('aa'.repeat(32), 'c2ln', 2)).toMatchObject({
      state: 'signed',
      signature: 'c2ln',
      signedAt: 2,
    });
    expect(ledger.storeSignature('aa'.repeat(32), 'c2ln', 3)).toMatchObject({ signedAt: 2 });
    expect(() => ledger.storeSignature('ff'.repeat(32), 'x', 1)).toThrow(
      expect.objectContaining({ code: 'LEDGER_UNKNOWN_HASH' }),
    );
    expect(ledger.counts()).toEqual({ signatures: 1, signed: 1, decisions: 0 });
    // Signature rows are permanent.
    expect(() => ledger.db.prepare('DELETE FROM signatures').run()).toThrow(/permanent/);
    ledger.close();
  });

  it('sums velocity over a rolling window, across a reopen', async () => {
    const dir = await freshDir();
    let ledger = new SigningLedger(openLedgerDb(ledgerPath(dir)));
    ledger.reserve(intent({ signHash: '01'.repeat(32), seq: '1', spend: [{ assetKey: 'native', amount: 10n }] }), 100);
    ledger.reserve(
      intent({
        signHash: '02'.repeat(32),
        seq: '2',
        spend: [
          { assetKey: 'native', amount: 20n },
          { assetKey: 'USD:G', amount: 0n },
        ],
      }),
      200,
    );
    ledger.close();
    ledger = new SigningLedger(openLedgerDb(ledgerPath(dir)));
    expect(ledger.spent('native', 150, 250)).toBe(20n);
    expect(ledger.spent('native', 1000, 250)).toBe(30n);
    expect(ledger.spent('USD:G', 1000, 250)).toBe(0n);
    ledger.close();
  });

  it('reads a velocity window from minute totals exactly as a scan of every spend row would (property)', async () => {
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(await freshDir())));
    const naive = (asset: string, window: number, now: number): bigint =>
      (
        ledger.db.prepare('SELECT amount FROM spend WHERE asset_key = ? AND at > ?').all(asset, now - window) as {
          amount: string;
        }[]
      ).reduce((a, r) => a + BigInt(r.amount), 0n);
    let n = 0;
    await fc.assert(
      fc.property(
        fc.array(
          fc.record({
            at: fc.integer({ min: 1, max: 600 }),
            asset: fc.constantFrom('native', 'USD:G'),
            // Up to i64 max per amount: the totals must stay exact past 2^53 and past 2^63.
            amount: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
          }),
          { maxLength: 12 },
        ),
        fc.integer({ min: 0, max: 700 }),
        fc.integer({ min: 0, max: 700 }),
        (spends, window, now) => {
          for (const sp of spends.sort((a, b) => a.at - b.at)) {
            n += 1;
            const signHash = n.toString(16).padStart(64, '0');
            ledger.reserve(
              intent({ signHash, seq: String(n), spend: [{ assetKey: sp.asset, amount: sp.amount }] }),
              sp.at,
            );
          }
          for (const asset of ['native', 'USD:G'])
            expect(ledger.spent(asset, window, now)).toBe(naive(asset, window, now));
        },
      ),
      { numRuns: 60 },
    );
    // The window's edges: a spend at exactly now - window is out, one second later is in; here the spend (t=130)
    // is inside the minute the window's start cuts (120-179), so it is read from the rows, not the totals.
    ledger.reserve(intent({ signHash: 'ee'.repeat(32), seq: 'e', spend: [{ assetKey: 'EDGE:G', amount: 7n }] }), 130);
    expect(ledger.spent('EDGE:G', 60, 190)).toBe(0n);
    expect(ledger.spent('EDGE:G', 61, 190)).toBe(7n);
    expect(ledger.spent('EDGE:G', 10, 139)).toBe(7n);
    expect(ledger.spent('EDGE:G', 9, 139)).toBe(0n);
    expect(ledger.spent('EDGE:G', 100, 130)).toBe(7n);
    ledger.close();
  });

  it('fills the minute totals from the spends written before schema 3', async () => {
    const dir = await freshDir();
    const older = join(dir, 'migrations-2');
    mkdirSync(older);
    for (const m of listMigrations().filter((x) => x.version <= 2)) writeFileSync(join(older, m.name), m.sql);
    const before = openLedgerDb(ledgerPath(dir), { migrationsDir: older });
    before
      .prepare(
        "INSERT INTO signatures (sign_hash, tx_hash, source, seq, max_time, proposal_id, signer, state, created_at) VALUES ('h', 'h', 'G', '1', 0, 'p', 'G', 'intent', 1)",
      )
      .run();
    const ins = before.prepare("INSERT INTO spend (sign_hash, asset_key, amount, at) VALUES ('h', ?, ?, ?)");
    ins.run('native', '5', 100);
    ins.run('USD:G', '9000000000000000000', 110);
    ins.run('EUR:G', '3', 170);
    before.close();
    const after = new SigningLedger(openLedgerDb(ledgerPath(dir)));
    expect(after.spent('native', 1000, 200)).toBe(5n);
    expect(after.spent('USD:G', 1000, 200)).toBe(9_000_000_000_000_000_000n);
    expect(after.spent('EUR:G', 40, 200)).toBe(3n);
    expect(after.spent('EUR:G', 29, 200)).toBe(0n);
    after.reserve(intent({ signHash: 'ab'.repeat(32), seq: '2', spend: [{ assetKey: 'native', amount: 6n }] }), 115);
    expect(after.spent('native', 1000, 200)).toBe(11n);
    after.close();
  });

  it('keeps held proposals and closes them once', async () => {
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(await freshDir())));
    const p = {
      proposalId: 'h1',
      hash: 'ab'.repeat(32),
      xdr: 'AAAA',
      network: 'n',
      reasons: [{ code: 'HOLD', message: 'm' }],
      summary: { a: 1 },
    };
    expect(ledger.hold(p, 5)).toMatchObject({ proposalId: 'h1', state: 'held', reasons: p.reasons, summary: { a: 1 } });
    expect(ledger.hold({ ...p, hash: 'cd'.repeat(32) }, 6).hash).toBe('ab'.repeat(32));
    expect(ledger.listHeld().map((x) => x.proposalId)).toEqual(['h1']);
    expect(ledger.closePending('h1', 'approved', 'admin:alice', 7)).toBe(true);
    expect(ledger.closePending('h1', 'rejected', 'admin:bob', 8)).toBe(false);
    expect(ledger.pending('h1')).toMatchObject({ state: 'approved', closedBy: 'admin:alice', closedAt: 7 });
    expect(ledger.pending('nope')).toBeUndefined();
    expect(ledger.listHeld()).toEqual([]);
    ledger.close();
    ledger.close(); // idempotent
  });
});

describe('audit chain', () => {
  it('chains entries, verifies, and reports the first altered, relinked or missing entry', async () => {
    const dir = await freshDir();
    const db = openLedgerDb(ledgerPath(dir));
    const audit = new AuditLog(db);
    audit.append('node.started', { nodeId: 'a' }, 1);
    audit.append('decision', { outcome: 'reject' }, 2);
    audit.append('decision', { outcome: 'approve' }, 3);
    expect(verifyAuditChain(db)).toMatchObject({ ok: true, entries: 3 });
    expect(audit.tail(2).map((e) => e.seq)).toEqual([3, 2]);
    expect(() => db.prepare('UPDATE audit SET data = ? WHERE seq = 2').run('{}')).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit').run()).toThrow(/append-only/);

    // An attacker with the file drops the trigger and edits: the chain names the entry.
    db.exec('DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;');
    db.prepare('UPDATE audit SET data = ? WHERE seq = 2').run('{"outcome":"approve"}');
    expect(verifyAuditChain(db)).toMatchObject({ ok: false, brokenAt: 2, entries: 1 });
    db.prepare('UPDATE audit SET data = ? WHERE seq = 2').run('{"outcome":"reject"}');
    expect(verifyAuditChain(db).ok).toBe(true);
    db.prepare('UPDATE audit SET prev_hash = ? WHERE seq = 3').run('00'.repeat(32));
    expect(verifyAuditChain(db)).toMatchObject({ ok: false, brokenAt: 3 });
    db.prepare('DELETE FROM audit WHERE seq = 2').run();
    expect(verifyAuditChain(db)).toMatchObject({ ok: false, brokenAt: 2, reason: 'entry 2 is missing' });
    db.close();
  });
});

/**
 * Property: whatever the interleaving of proposals (same or different transactions per slot), time passing
 * and crashes (the database closed and reopened at any point, including between intent and signature), no
 * slot ever holds two live signatures, and nothing recorded is lost.
 */
describe('property: never two live signatures for one slot', () => {
  const cmd = fc.oneof(
    fc.record({
      t: fc.constant('propose' as const),
      slot: fc.nat(2),
      tx: fc.nat(3),
      maxIn: fc.integer({ min: 0, max: 200 }),
    }),
    fc.record({ t: fc.constant('sign' as const), pick: fc.nat(50) }),
    fc.record({ t: fc.constant('time' as const), dt: fc.integer({ min: 1, max: 150 }) }),
    fc.constant({ t: 'crash' as const }),
  );

  it('holds for random interleavings with crashes', async () => {
    const dir = await freshDir();
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { maxLength: 40 }), async (cmds) => {
        const path = join(dir, `p${run++}.sqlite`);
        const grace = 5;
        let ledger = new SigningLedger(openLedgerDb(path), { graceSeconds: grace });
        let now = 1_000;
        const signedEver = new Map<string, string>();
        const maxTimeOf = new Map<string, number>();
        for (const c of cmds) {
          if (c.t === 'time') now += c.dt;
          else if (c.t === 'crash') {
            ledger.close();
            ledger = new SigningLedger(openLedgerDb(path), { graceSeconds: grace });
          } else if (c.t === 'propose') {
            // tx identity: (slot, tx, maxIn) -> a hash; the same tx re-proposed later keeps its maxTime.
            const hash = `${c.slot}-${c.tx}`.padEnd(64, '0');
            const maxTime = maxTimeOf.get(hash) ?? (c.maxIn === 0 ? 0 : now + c.maxIn);
            maxTimeOf.set(hash, maxTime);
            ledger.reserve(
              {
                proposalId: hash,
                signHash: hash,
                txHash: hash,
                source: `S${c.slot}`,
                seq: '1',
                maxTime,
                signer: 'G',
                spend: [],
                manual: false,
              },
              now,
            );
          } else {
            const intents = ledger.db
              .prepare<[], { sign_hash: string }>("SELECT sign_hash FROM signatures WHERE state = 'intent'")
              .all();
            const target = intents[c.pick % Math.max(1, intents.length)];
            if (target) {
              ledger.storeSignature(target.sign_hash, `sig-${target.sign_hash}`, now);
              signedEver.set(target.sign_hash, `sig-${target.sign_hash}`);
            }
          }
          // Invariant: for every slot, records whose validity windows overlap are for one transaction only.
          for (const slot of [0, 1, 2]) {
            const rows = ledger.slot(`S${slot}`, '1');
            for (const a of rows) {
              for (const b of rows) {
                if (a.txHash === b.txHash) continue;
                // b was reserved after a: a must have been dead (past maxTime + grace) when b was created.
                if (b.createdAt >= a.createdAt && a !== b) {
                  const aDeadAtB = a.maxTime !== 0 && a.maxTime + grace < b.createdAt;
                  const bDeadAtA = b.maxTime !== 0 && b.maxTime + grace < a.createdAt;
                  if (!aDeadAtB && !bDeadAtA) return false;
                }
              }
            }
          }
          // Nothing recorded is lost across crashes.
          for (const [h, sig] of signedEver) if (ledger.byHash(h)?.signature !== sig) return false;
        }
        ledger.close();
        return true;
      }),
      { numRuns: 150 },
    );
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSigner } from '@cosigner/keys/factory';
import { loadPolicy } from '@cosigner/policy/schema';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../src/audit.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { CRASH_POINTS, type CrashPoint } from '../src/review.ts';
import { buildTx, NETWORK, pay, policyYaml, reviewerFor } from './helpers.ts';

/**
 * PROPERTY: for any interleaving of proposals (the same or a different transaction for a slot),
 * time passing, and crashes at any point of the signing path (the process dies; the ledger is reopened),
 * the node never releases signatures for two different transactions of one (account, sequence) slot whose
 * validity windows overlap, and every signature it released is still in its ledger.
 * The full pipeline runs: SDK-built transactions, the real policy, a real key, a real SQLite file.
 */

const logger = createLogger({ name: 'review-property', level: 'silent' });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
class Crash extends Error {}
const GRACE = 5;

type Cmd =
  | { t: 'propose'; slot: number; variant: number }
  | { t: 'time'; dt: number }
  | { t: 'crash-next'; point: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('propose' as const), slot: fc.nat(1), variant: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('time' as const), dt: fc.integer({ min: 1, max: 90 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('crash-next' as const), point: fc.nat(CRASH_POINTS.length - 1) }),
  },
);

describe('property: no two live signatures for one slot, through crashes', () => {
  it('holds for random interleavings', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cosigner-review-prop-'));
    dirs.push(root);
    const account = Keypair.random().publicKey();
    const dest = Keypair.random().publicKey();
    const policy = loadPolicy(
      policyYaml({ accounts: [account], allow: [dest], velocity: [{ window: '1h', max: '100000' }] }),
    );
    const signer = await createSigner({ type: 'local', keyFile: join(root, 'k.key') }, { production: false });
    let runNo = 0;

    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 25 }), async (cmds) => {
        const dir = join(root, `run-${runNo++}`);
        const clock = { ms: 1_800_000_000_000 };
        const open = (crashAt?: CrashPoint) => {
          const ledger = new SigningLedger(openLedgerDb(ledgerPath(dir)), { graceSeconds: GRACE });
          const reviewer = reviewerFor(policy, {
            ledger,
            signer,
            logger,
            now: () => clock.ms,
            crashAt,
            crash: (p) => {
              throw new Crash(p);
            },
          });
          return { ledger, reviewer };
        };
        let node = open();
        let armed: CrashPoint | undefined;
        const txs = new Map<string, { xdr: string; maxTime: number }>();
        // Every signature that left the node, with the tx window it authorises.
        const released: { slot: number; key: string; hash: string; sig: string; maxTime: number; at: number }[] = [];
        let n = 0;
        for (const c of cmds) {
          if (c.t === 'time') {
            clock.ms += c.dt * 1000;
            continue;
          }
          if (c.t === 'crash-next') {
            armed = CRASH_POINTS[c.point];
            node.ledger.close();
            node = open(armed);
            continue;
          }
          const key = `${c.slot}/${c.variant}`;
          const nowS = Math.floor(clock.ms / 1000);
          let tx = txs.get(key);
          if (!tx) {
            const maxTime = nowS + 60;
            const xdr = buildTx({
              source: account,
              seq: String(1000 + c.slot),
              ops: [pay(dest, String(c.variant + 1))],
              timebounds: { minTime: 0, maxTime },
            });
            tx = { xdr, maxTime };
            txs.set(key, tx);
          }
          n += 1;
          try {
            const d = await node.reviewer.review({
              proposalId: `p${n}`,
              kind: 'transaction',
              networkPassphrase: NETWORK,
              xdr: tx.xdr,
            });
            if (d.signature)
              released.push({ slot: c.slot, key, hash: d.hash, sig: d.signature, maxTime: tx.maxTime, at: nowS });
          } catch (e) {
            if (!(e instanceof Crash)) throw e;
            // The process died: whatever was in memory is gone; the node restarts without the hook.
            node.ledger.close();
            node = open();
            armed = undefined;
          }
        }
        // Invariant 1: two different transactions of one slot were never both live.
        for (const a of released) {
          for (const b of released) {
            if (a.slot !== b.slot || a.key === b.key || b.at < a.at) continue;
            // b released at or after a: a's window (maxTime + grace) must have closed before b's first release.
            const firstB = Math.min(...released.filter((r) => r.key === b.key).map((r) => r.at));
            const firstA = Math.min(...released.filter((r) => r.key === a.key).map((r) => r.at));
            const [early, late] = firstA <= firstB ? [a, b] : [b, a];
            const lateFirst = Math.min(firstA, firstB) === firstA ? firstB : firstA;
            expect(early.maxTime + GRACE < lateFirst, `${early.key} and ${late.key} both live`).toBe(true);
          }
        }
        // Invariant 2: every released signature is in the ledger, signed, with the same bytes.
        for (const r of released)
          expect(node.ledger.byHash(r.hash)).toMatchObject({ state: 'signed', signature: r.sig });
        expect(verifyAuditChain(node.ledger.db).ok).toBe(true);
        node.ledger.close();
      }),
      {
        numRuns: 40,
        examples: [
          // Found by this property (CI, 2026-11-29): an intent recorded before a crash, its window closed, another
          // transaction signed for the slot, then the first asked again: the intent must not be finished.
          [
            [
              { t: 'crash-next', point: 0 },
              { t: 'propose', slot: 0, variant: 0 },
              { t: 'time', dt: 66 },
              { t: 'propose', slot: 0, variant: 1 },
              { t: 'propose', slot: 0, variant: 0 },
            ],
          ],
        ],
      },
    );
  });
});

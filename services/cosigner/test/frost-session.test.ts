import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTransportKey } from '@cosigner/frost/channel';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit.ts';
import { endSession, type RelaySession } from '../src/frost/session.ts';
import { openLedgerDb } from '../src/ledger.ts';

/**
 * The end of a relayed FROST session (src/frost/session.ts), shared by key generation and share refresh: secrets
 * wiped, timer stopped, the session forgotten only if it is still the one under its id, the end audited. The
 * protocols' own suites (frost-dkg.test.ts, test/e2e) drive it through aborts, failures and timeouts.
 */
describe('endSession', () => {
  let dir: string;
  let audit: AuditLog;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'frost-session-'));
    audit = new AuditLog(openLedgerDb(join(dir, 'ledger.sqlite')));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const session = (fired: { timer: boolean; aborted: number }): RelaySession => ({
    step: 'round2',
    transport: createTransportKey(),
    participant: {
      abort: () => {
        fired.aborted++;
      },
    },
    timer: setTimeout(() => {
      fired.timer = true;
    }, 30),
  });

  it('wipes the secrets, stops the timer, releases, forgets the session and audits why', async () => {
    const fired = { timer: false, aborted: 0 };
    const s = session(fired);
    const sessions = new Map([['d1', s]]);
    const order: string[] = [];
    endSession(
      {
        naming: { event: 'frost.dkg.aborted', idField: 'dkgId' },
        sessions,
        audit,
        release: () => order.push(`released, key wiped: ${s.transport.secretKey.every((b) => b === 0)}`),
      },
      'd1',
      s,
      'timed out at this node',
      ['node-2'],
    );
    expect(fired.aborted).toBe(1);
    expect(s.transport.secretKey.every((b) => b === 0)).toBe(true);
    expect(order).toEqual(['released, key wiped: true']);
    expect(sessions.size).toBe(0);
    await new Promise((r) => setTimeout(r, 60));
    expect(fired.timer).toBe(false);
    const [entry] = audit.tail(1);
    expect(entry).toMatchObject({
      type: 'frost.dkg.aborted',
      data: { dkgId: 'd1', step: 'round2', reason: 'timed out at this node', culprits: ['node-2'] },
    });
  });

  it('leaves a newer session under the same id in place, and names a refresh by its own field', () => {
    const old = session({ timer: false, aborted: 0 });
    const newer = session({ timer: false, aborted: 0 });
    const sessions = new Map([['r1', newer]]);
    endSession(
      { naming: { event: 'frost.refresh.aborted', idField: 'refreshId' }, sessions, audit },
      'r1',
      old,
      'node stopping',
      [],
    );
    expect(sessions.get('r1')).toBe(newer);
    expect(newer.transport.secretKey.some((b) => b !== 0)).toBe(true);
    clearTimeout(newer.timer);
    expect(audit.tail(1)[0]).toMatchObject({
      type: 'frost.refresh.aborted',
      data: { refreshId: 'r1', step: 'round2', reason: 'node stopping', culprits: [] },
    });
  });
});

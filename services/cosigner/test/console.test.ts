import { rm } from 'node:fs/promises';
import { CONSOLE_CSP } from '@cosigner/runtime/console-static';
import { createLogger } from '@cosigner/runtime/logger';
import { afterAll, describe, expect, it } from 'vitest';
import { build } from '../src/app.ts';
import { AuditLog } from '../src/audit.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics } from '../src/metrics.ts';
import { buildTx, NETWORK, pay, reviewerFor, reviewFixture } from './helpers.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function setup(token?: string) {
  const { dir, account, dest, policy, signer } = await reviewFixture('cosigner-console-', dirs, { holdAbove: '50' });
  const ledger = new SigningLedger(openLedgerDb(ledgerPath(dir)));
  const audit = new AuditLog(ledger.db);
  const logger = createLogger({ name: 'console-test', level: 'silent' });
  const reviewer = reviewerFor(policy, { ledger, audit, signer, logger, metrics: createMetrics() });
  const app = build({
    reviewer,
    ledger,
    metrics: createMetrics(),
    keyHealth: async () => ({ ok: true }),
    sessionUp: () => true,
    sendDecision: () => true,
    adminToken: token,
  });
  const review = (id: string, seq: string, amount: string) =>
    reviewer.review({
      proposalId: id,
      kind: 'transaction',
      networkPassphrase: NETWORK,
      xdr: buildTx({ source: account, seq, ops: [pay(dest, amount)] }),
    });
  return { app, ledger, audit, review };
}

describe("node operator's console", () => {
  it('serves its page and scripts with the strict CSP, without the token (they hold no data)', async () => {
    const a = await setup('s3cret-token-for-tests');
    expect((await a.app.inject({ url: '/console' })).headers.location).toBe('/console/');
    const page = await a.app.inject({ url: '/console/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(page.body).toContain('src="/console/node-console.js"');
    for (const f of ['node-console.js', 'dom.js', 'words.js', 'console.css']) {
      expect((await a.app.inject({ url: `/console/${f}` })).statusCode, f).toBe(200);
    }
    expect((await a.app.inject({ url: '/console/console.js' })).statusCode).toBe(404);
    expect((await a.app.inject({ url: '/console/..%2fsrc%2fapp.ts' })).statusCode).toBe(404);
  });

  it("GET /v1/decisions: the node's newest decisions first, with reasons; behind the token", async () => {
    const a = await setup('s3cret-token-for-tests');
    expect((await a.review('p-1', '10', '5')).outcome).toBe('approve');
    expect((await a.review('p-2', '11', '60')).outcome).toBe('hold');
    const auth = { authorization: 'Bearer s3cret-token-for-tests' };
    expect((await a.app.inject({ url: '/v1/decisions' })).statusCode).toBe(401);
    const r = await a.app.inject({ url: '/v1/decisions', headers: auth });
    expect(r.statusCode).toBe(200);
    const list = r.json().decisions as { proposalId: string; outcome: string; reasons: { code: string }[] }[];
    expect(list.map((d) => [d.proposalId, d.outcome])).toEqual([
      ['p-2', 'hold'],
      ['p-1', 'approve'],
    ]);
    expect(list[0]!.reasons.length).toBeGreaterThan(0);
    const one = await a.app.inject({ url: '/v1/decisions?limit=1', headers: auth });
    expect(one.json().decisions).toHaveLength(1);
    expect((await a.app.inject({ url: '/v1/decisions?limit=0', headers: auth })).statusCode).toBe(400);
  });

  it('GET /v1/audit verifies the chain and shows the newest entries; an approval keeps its comment', async () => {
    const a = await setup();
    expect((await a.review('h-1', '10', '60')).outcome).toBe('hold');
    const approve = await a.app.inject({
      method: 'POST',
      url: '/v1/pending/h-1/approve',
      payload: { note: 'invoice 42 checked with <b>finance</b>', by: 'alice' },
    });
    expect(approve.statusCode).toBe(200);
    const r = await a.app.inject({ url: '/v1/audit' });
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(body.ok).toBe(true);
    expect(body.entries).toBe(body.recent.length);
    expect(body.head).toBe(body.recent[0].hash);
    const approved = body.recent.find((e: { type: string }) => e.type === 'manual.approved');
    expect(approved).toMatchObject({
      type: 'manual.approved',
      data: { proposalId: 'h-1', by: 'admin:alice', note: 'invoice 42 checked with <b>finance</b>' },
    });
    // Tampering (by someone who first drops the append-only trigger) is reported with the entry it broke at.
    a.ledger.db.exec('DROP TRIGGER audit_no_update');
    a.ledger.db.prepare("UPDATE audit SET data = '{}' WHERE seq = ?").run(approved.seq);
    const broken = (await a.app.inject({ url: '/v1/audit' })).json();
    expect(broken).toMatchObject({ ok: false, brokenAt: approved.seq });
    expect(broken.reason).toContain('altered');
  });
});

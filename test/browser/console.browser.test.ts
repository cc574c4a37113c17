import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, REPO_ROOT, tempDir } from '@cosigner/testkit/process';
import { Asset, Memo, Operation, TransactionBuilder } from '@stellar/stellar-sdk';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The web consoles in a real browser: Debian's Chromium driven by playwright-core, against a 2-of-3 cluster of
 * real processes (KMS emulators, ledger simulator, coordinator, three nodes). The nodes' policy holds native
 * payments above 100 XLM for an operator, and every node's admin listener needs a token. One cluster and one
 * browser for the whole file (the CI machine has 2 cores). The screenshots are taken on every run; they replace the
 * README's (docs/images/) only with COSIGNER_SCREENSHOTS=1, so a test run leaves the working tree as it was.
 *
 * Run with COSIGNER_BROWSER_SUITES=1 (vitest.config.ts); CHROMIUM_PATH overrides /usr/bin/chromium.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const IMAGES =
  process.env.COSIGNER_SCREENSHOTS === '1'
    ? join(REPO_ROOT, 'docs', 'images')
    : join(tmpdir(), `cosigner-console-shots-${process.pid}`);
const HOLD_ABOVE_XLM = '100';

let dir: string;
let cluster: Cluster;
let browser: Browser;
let context: BrowserContext;
const adminToken = randomBytes(32).toString('base64url');
/** Everything the pages printed to their console, and every page error: a CSP violation would show here. */
const browserLog: string[] = [];

beforeAll(async () => {
  dir = await tempDir('cosigner-browser-');
  const tokenFile = join(dir, 'node-admin.token');
  await writeFile(tokenFile, `${adminToken}\n`, { mode: 0o600 });
  cluster = await startCluster({
    cosignerBin: COSIGNER_BIN,
    dir,
    nodes: 3,
    threshold: 2,
    nodeConfig: { admin: { tokenFile } },
    nodePolicy: ({ demoYaml }) =>
      `${demoYaml.trimEnd()}\nmanualApproval:\n  amountAbove:\n    - asset: native\n      amount: '${HOLD_ABOVE_XLM}'\n`,
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Playwright adds --user-data-dir itself: a fresh temporary profile per launch.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  await mkdir(IMAGES, { recursive: true });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (process.env.COSIGNER_SCREENSHOTS !== '1') await rm(IMAGES, { recursive: true, force: true });
}, 60_000);

async function newPage(): Promise<Page> {
  const page = await context.newPage();
  page.on('console', (m) => browserLog.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => browserLog.push(`pageerror: ${e.message}`));
  return page;
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.goto(`${cluster.coordinator.url}/console/`);
  await page.fill('#api-key', key);
  await page.click('#signin button[type=submit]');
}

/** An unsigned payment from the operator account with a text memo. */
async function payment(amount: string, memo?: string): Promise<string> {
  const src = await cluster.horizon.loadAccount(cluster.account.id);
  const b = new TransactionBuilder(src, { fee: '100', networkPassphrase: cluster.networkPassphrase })
    .addOperation(
      Operation.payment({ destination: (await cluster.fundedAccount()).publicKey(), asset: Asset.native(), amount }),
    )
    .setTimeout(120);
  if (memo !== undefined) b.addMemo(Memo.text(memo));
  return b.build().toXDR();
}

describe("the coordinator's console", () => {
  it('refuses a wrong API key and keeps nothing of it', async () => {
    const page = await newPage();
    await signIn(page, `cak.0123456789abcdef.${'A'.repeat(43)}`);
    await expect.poll(() => page.locator('[role=alert]').textContent()).toContain('COORD_UNAUTHENTICATED');
    expect(await page.locator('#api-key').count()).toBe(1);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    // The API refuses the same key, and the event stream too.
    const res = await fetch(`${cluster.coordinator.url}/v1/session`, {
      headers: { authorization: `Bearer cak.0123456789abcdef.${'A'.repeat(43)}` },
    });
    expect(res.status).toBe(401);
    await page.close();
  });

  it('signs in, shows what the key may do, and follows the demo payment to submitted live', async () => {
    const page = await newPage();
    await signIn(page, cluster.apiKey);
    await expect.poll(() => page.locator('#who').textContent()).toContain('everything');
    await expect.poll(() => page.locator('#live').textContent()).toContain('live');
    // The key is in this tab's sessionStorage only, never in localStorage or a cookie.
    expect(await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie])).toEqual([
      1,
      0,
      '',
    ]);
    // A marker that a reload would erase: what follows must arrive through /v1/events, not a page load.
    await page.evaluate(() => Object.assign(window, { stayed: true }));
    const demo = await cluster.propose({ xdr: await payment('10'), note: 'demo payment: 10 XLM' });
    const row = page.locator(`tr[data-id="${demo.id}"]`);
    await row.waitFor({ timeout: 30_000 });
    await expect.poll(() => row.locator('.badge').textContent(), { timeout: 60_000 }).toBe('submitted');
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);

    await row.click();
    await page.locator('#timeline').waitFor();
    // Every node may have signed by now (3 of 2): the level counts as met from 2.
    const collected = (await page.locator('#weights .collected').first().textContent()) ?? '';
    expect(collected).toMatch(/^[23] of 2$/);
    expect(await page.locator('#weights .b-ok').count()).toBe(1);
    const timeline = (await page.locator('#timeline').textContent()) ?? '';
    expect(timeline).toContain('Created');
    expect(timeline).toContain('Quorum reached');
    expect(timeline).toMatch(/Submitted in ledger \d+/);
    expect((await page.locator('#timeline .b-approve').count()) >= 2).toBe(true);
    expect(await page.locator('#decoded').textContent()).toContain('Pay 10.0000000 XLM to');
    expect(await page.locator('#envelope').inputValue()).toMatch(/^AAAA/);
    await page.close();
  }, 180_000);

  it('renders a memo and a note carrying <script> and <img onerror> as text', async () => {
    const page = await newPage();
    await signIn(page, cluster.apiKey);
    await page.locator('#proposals').waitFor();
    const note = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">';
    const memo = '<img src=x onerror=pwned=3>';
    const p = await cluster.propose({ xdr: await payment('1', memo), note });
    // Submitted, so the account's next sequence number is free for the next test's payment.
    expect((await cluster.waitForProposal(p.id, { timeoutMs: 60_000 })).status).toBe('submitted');
    await page.goto(`${cluster.coordinator.url}/console/#/p/${p.id}`);
    await page.locator('#decoded').waitFor();
    expect(await page.locator('#note').textContent()).toBe(note);
    expect(await page.locator('#decoded .memo').textContent()).toBe(memo);
    // In the list too.
    await page.goto(`${cluster.coordinator.url}/console/#/proposals`);
    await page.locator(`tr[data-id="${p.id}"] .note`).waitFor();
    expect(await page.locator(`tr[data-id="${p.id}"] .note`).textContent()).toBe(note);
    expect(await page.locator('main img, main script').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
    await page.close();
  }, 120_000);

  it('decodes a pasted envelope before proposing it, then finds it by idempotency key', async () => {
    const page = await newPage();
    await signIn(page, cluster.apiKey);
    await page.locator('#proposals').waitFor();
    await page.click('a[href="#/new"]');
    const xdr = await payment('2.5');
    await page.fill('#new-xdr', xdr);
    // Nothing can be sent before the decoding was shown.
    expect(await page.locator('#send').isDisabled()).toBe(true);
    await page.click('#decode');
    await expect.poll(() => page.locator('#preview').textContent()).toContain('Pay 2.5000000 XLM to');
    const key = `console-${Date.now()}`;
    await page.fill('#new-note', 'paid from the console');
    await page.fill('#new-idem', key);
    await page.click('#send');
    await page.locator('#timeline').waitFor({ timeout: 30_000 });
    expect(await page.locator('#note').textContent()).toBe('paid from the console');
    await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 60_000 }).toBe('submitted');
    // A bad envelope is refused with the decoder's code, and still nothing can be sent.
    await page.click('a[href="#/new"]');
    await page.fill('#new-xdr', 'AAAA');
    await page.click('#decode');
    await expect.poll(() => page.locator('#preview [role=alert]').textContent()).toContain('STELLAR_MALFORMED_XDR');
    expect(await page.locator('#send').isDisabled()).toBe(true);
    // Search by the idempotency key, then by the account: the list narrows to what matches.
    await page.goto(`${cluster.coordinator.url}/console/#/proposals`);
    await page.fill('#search', key);
    await page.press('#search', 'Enter');
    await expect.poll(() => page.locator('#proposals tbody tr').count()).toBe(1);
    expect(await page.locator('#proposals tbody tr .note').textContent()).toBe('paid from the console');
    await page.selectOption('#status-filter', 'rejected');
    await expect.poll(() => page.locator('#proposals tbody').textContent()).toContain('Nothing matches');
    await page.close();
  }, 120_000);

  it('shows every node connected with its key, counts and latency', async () => {
    const page = await newPage();
    await signIn(page, cluster.apiKey);
    await page.locator('#proposals').waitFor();
    await page.click('a[href="#/nodes"]');
    await page.locator('#nodes').waitFor();
    const rows = page.locator('#nodes tbody tr');
    expect(await rows.count()).toBe(3);
    expect(await page.locator('#nodes .b-connected').count()).toBe(3);
    const text = (await page.locator('#nodes').textContent()) ?? '';
    for (const n of cluster.nodeInfo) expect(text).toContain(n.id);
    expect(await page.locator('#nodes code').first().getAttribute('title')).toBe(cluster.nodeInfo[0]!.stellarKey);
    await page.close();
  }, 60_000);
});

describe("a node operator's console", () => {
  it("approves a held proposal with a comment; the coordinator's console updates live", async () => {
    const coord = await newPage();
    await signIn(coord, cluster.apiKey);
    await coord.locator('#proposals').waitFor();
    const held = await cluster.propose({ xdr: await payment('150'), note: 'supplier invoice 2026-117' });
    await coord.goto(`${cluster.coordinator.url}/console/#/p/${held.id}`);
    // Every node holds it: three hold decisions, no weight yet.
    await expect.poll(() => coord.locator('#timeline .b-hold').count(), { timeout: 60_000 }).toBe(3);
    expect(await coord.locator('#weights .collected').first().textContent()).toBe('0 of 2');

    const nodePage = await newPage();
    const nodeUrl = cluster.nodes[0]!.url;
    await nodePage.goto(`${nodeUrl}/console/`);
    // The token is required: a wrong one is refused.
    await nodePage.fill('#admin-token', 'wrong-token');
    await nodePage.click('#signin button[type=submit]');
    await expect.poll(() => nodePage.locator('[role=alert]').textContent()).toContain('NODE_UNAUTHORIZED');
    await nodePage.fill('#admin-token', adminToken);
    await nodePage.click('#signin button[type=submit]');
    const card = nodePage.locator(`section.held[data-id="${held.id}"]`);
    await card.waitFor({ timeout: 30_000 });
    const text = (await card.textContent()) ?? '';
    expect(text).toContain('150.0000000 XLM');
    expect(text).toMatch(/manual approval|above/i);
    // No decision without a comment.
    expect(await card.locator('button.approve').isDisabled()).toBe(true);
    await card.locator('textarea.comment').fill('Invoice 2026-117 matches the purchase order.');
    await nodePage.screenshot({ path: join(IMAGES, 'node-held.png'), fullPage: true });
    await card.locator('input.by').fill('alice');
    await card.locator('button.approve').click();
    await expect.poll(() => card.locator('.decided').textContent()).toContain('approve');

    // The coordinator's page, untouched, shows the node's approval and 1 of 2.
    await expect
      .poll(() => coord.locator('#weights .collected').first().textContent(), { timeout: 30_000 })
      .toBe('1 of 2');
    expect(await coord.locator('#timeline .b-approve').count()).toBe(1);

    // The node's own records: the decision list and the audit entry with the comment, chain verified.
    await nodePage.goto(`${nodeUrl}/console/#/decisions`);
    await nodePage.locator('#decisions').waitFor();
    expect(await nodePage.locator('#decisions .b-approve').count()).toBeGreaterThan(0);
    await nodePage.goto(`${nodeUrl}/console/#/audit`);
    await nodePage.locator('#audit-status').waitFor();
    expect(await nodePage.locator('#audit-status').textContent()).toContain('verified');
    expect(await nodePage.locator('main').textContent()).toContain('Invoice 2026-117 matches the purchase order.');
    await nodePage.goto(`${nodeUrl}/console/#/keyring`);
    await expect.poll(() => nodePage.locator('main').textContent()).toContain(cluster.nodeInfo[0]!.stellarKey);

    // A second operator approves on node 1: quorum, then submitted, live on the coordinator's page.
    const second = await newPage();
    await second.goto(`${cluster.nodes[1]!.url}/console/`);
    await second.fill('#admin-token', adminToken);
    await second.click('#signin button[type=submit]');
    const card2 = second.locator(`section.held[data-id="${held.id}"]`);
    await card2.waitFor({ timeout: 30_000 });
    await card2.locator('textarea.comment').fill('Second check done.');
    await card2.locator('button.approve').click();
    await expect.poll(() => coord.locator('h1 .badge').textContent(), { timeout: 60_000 }).toBe('submitted');
    expect(await coord.locator('#weights .collected').first().textContent()).toBe('2 of 2');
    // The timeline keeps each node's history: three holds, then the two operators' approvals.
    expect(await coord.locator('#timeline .b-hold').count()).toBe(3);
    expect(await coord.locator('#timeline .b-approve').count()).toBe(2);
    await coord.screenshot({ path: join(IMAGES, 'console-proposal.png'), fullPage: true });
    await Promise.all([coord.close(), nodePage.close(), second.close()]);
  }, 240_000);

  it("cancels a pending proposal from its page; it leaves the node's held list", async () => {
    const coord = await newPage();
    await signIn(coord, cluster.apiKey);
    await coord.locator('#proposals').waitFor();
    const p = await cluster.propose({ xdr: await payment('200'), note: 'entered twice' });
    await coord.goto(`${cluster.coordinator.url}/console/#/p/${p.id}`);
    await expect.poll(() => coord.locator('#timeline .b-hold').count(), { timeout: 60_000 }).toBe(3);
    const nodePage = await newPage();
    await nodePage.goto(`${cluster.nodes[2]!.url}/console/`);
    await nodePage.fill('#admin-token', adminToken);
    await nodePage.click('#signin button[type=submit]');
    await nodePage.locator(`section.held[data-id="${p.id}"]`).waitFor({ timeout: 30_000 });

    coord.once('dialog', (d) => void d.accept());
    await coord.fill('#cancel-reason', 'entered twice');
    await coord.click('#cancel');
    await expect.poll(() => coord.locator('h1 .badge').textContent(), { timeout: 30_000 }).toBe('cancelled');
    expect(await coord.locator('#status-reason').textContent()).toBe('cancelled by the client: entered twice');
    expect(await coord.locator('#cancel').count()).toBe(0);
    // The node closes its hold when the coordinator tells it; its console drops the card on its next look.
    await expect.poll(() => nodePage.locator(`section.held[data-id="${p.id}"]`).count(), { timeout: 30_000 }).toBe(0);
    await Promise.all([coord.close(), nodePage.close()]);
  }, 180_000);

  it('no page broke a Content-Security-Policy rule or threw', () => {
    expect(browserLog.filter((l) => /Content Security Policy|pageerror|Refused to/i.test(l))).toEqual([]);
  });
});

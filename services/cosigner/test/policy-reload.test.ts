import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@cosigner/runtime/logger';
import { afterAll, describe, expect, it } from 'vitest';
import { build } from '../src/app.ts';
import { verifyAuditChain } from '../src/audit.ts';
import { loadConfig } from '../src/config.ts';
import { type CosignerNode, createNode } from '../src/node.ts';
import { buildTx, NETWORK, nodeAgainstDouble, OTHER_NETWORK, pay, policyYaml } from './helpers.ts';

// Reloading the node's policy while it runs: validated first, a bad file keeps the old policy and says why, each
// change an audit entry with both hashes, and the next review judged by the new policy. SIGHUP on a real process
// is in node-process.test.ts.

const logger = createLogger({ name: 'policy-reload-test', level: 'silent' });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

async function rig() {
  const d = await mkdtemp(join(tmpdir(), 'cosigner-reload-'));
  dirs.push(d);
  const { coord, account, dest, files } = await nodeAgainstDouble(
    d,
    (p) => ({ accounts: [p.account], maxPerTx: '100' }),
    {
      network: NETWORK,
    },
  );
  const node = await createNode(await loadConfig(files.config), { logger });
  node.start();
  await node.session.waitUp();
  let seq = 1;
  const propose = async (amount: string): Promise<string> => {
    seq += 1;
    const id = `p${seq}`;
    coord.propose('node-a', {
      proposalId: id,
      kind: 'transaction',
      networkPassphrase: NETWORK,
      xdr: buildTx({ source: account, seq: String(seq), ops: [pay(dest, amount)] }),
    });
    return (await coord.waitDecision(id)).outcome;
  };
  const app = build({
    reviewer: node.reviewer,
    ledger: node.ledger,
    metrics: node.metrics,
    keyHealth: async () => ({ ok: true }),
    sessionUp: () => true,
    sendDecision: () => true,
    policy: node.policy,
  });
  const close = async (): Promise<void> => {
    await app.close();
    await node.close();
    await coord.close();
  };
  return { d, node, files, account, propose, app, close };
}

const audit = (node: CosignerNode, type: string) =>
  node.audit
    .tail(200)
    .filter((e) => e.type === type)
    .map((e) => e.data as Record<string, unknown>);

describe('policy reload', () => {
  it('puts a valid new file in force for the next review, with an audit entry naming both hashes', async () => {
    const r = await rig();
    try {
      const first = await readFile(r.files.policy, 'utf8');
      expect(r.node.policy.state.sha256).toBe(sha(first));
      expect(await r.propose('50')).toBe('approve');

      const lower = policyYaml({ accounts: [r.account], maxPerTx: '10' });
      await writeFile(r.files.policy, lower);
      const res = await r.node.policy.reload('test');
      expect(res).toMatchObject({ changed: true, previous: sha(first), sha256: sha(lower), file: r.files.policy });
      expect(audit(r.node, 'policy.reloaded')).toEqual([
        { file: r.files.policy, previous: sha(first), sha256: sha(lower), by: 'test' },
      ]);
      // The same amount is now over the maximum.
      expect(await r.propose('50')).toBe('reject');

      // The same bytes again: nothing changes, nothing is recorded.
      expect(await r.node.policy.reload('test')).toMatchObject({ changed: false, sha256: sha(lower) });
      expect(audit(r.node, 'policy.reloaded')).toHaveLength(1);
      expect(verifyAuditChain(r.node.ledger.db).ok).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('keeps the old policy and says why for a bad file, a policy of another network and an unreadable file', async () => {
    const r = await rig();
    try {
      const kept = r.node.policy.state.sha256;
      const bad: [string, RegExp, string][] = [
        ['version: 1\nnetwork: [oops', /not valid YAML/, 'POLICY_BAD_YAML'],
        [
          policyYaml({ accounts: [r.account], maxPerTx: 'ten' }),
          /assets\[0\]\.maxPerTx: must be a decimal amount/,
          'POLICY_INVALID',
        ],
        [
          policyYaml({ accounts: [r.account], network: OTHER_NETWORK }),
          /different network passphrase/,
          'POLICY_WRONG_NETWORK',
        ],
      ];
      for (const [text, why, code] of bad) {
        await writeFile(r.files.policy, text);
        const err = await r.node.policy.reload('test').catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'NODE_POLICY_REFUSED', details: expect.objectContaining({ code, kept }) });
        expect((err as Error).message).toMatch(/^The policy was not reloaded; the node keeps the policy it had/);
        expect((err as Error).message).toMatch(why);
        expect(r.node.policy.state.sha256).toBe(kept);
        // Still judged by the old policy: 50 is within its maximum of 100.
        expect(await r.propose('50')).toBe('approve');
      }
      await chmod(r.files.policy, 0o000);
      const unreadable = process.getuid?.() === 0 ? undefined : await r.node.policy.reload('t').catch((e) => e);
      if (unreadable)
        expect(unreadable).toMatchObject({ details: expect.objectContaining({ code: 'POLICY_UNREADABLE' }) });
      await rm(r.files.policy);
      expect(await r.node.policy.reload('test').catch((e: unknown) => e)).toMatchObject({
        code: 'NODE_POLICY_REFUSED',
        details: expect.objectContaining({ code: 'POLICY_UNREADABLE', kept }),
      });
      const refused = audit(r.node, 'policy.reload_refused');
      expect(refused.map((x) => x.code)).toEqual(
        expect.arrayContaining(['POLICY_BAD_YAML', 'POLICY_INVALID', 'POLICY_WRONG_NETWORK', 'POLICY_UNREADABLE']),
      );
      for (const x of refused) expect(x.kept).toBe(kept);
      expect(audit(r.node, 'policy.reloaded')).toEqual([]);
    } finally {
      await r.close();
    }
  });

  it('through the admin API: GET shows the file in force, POST reloads it or answers 422 with the reason', async () => {
    const r = await rig();
    try {
      const before = await r.app.inject({ method: 'GET', url: '/v1/policy' });
      expect(before.statusCode).toBe(200);
      expect(before.json()).toMatchObject({ file: r.files.policy, sha256: r.node.policy.state.sha256 });

      const next = policyYaml({ accounts: [r.account], maxPerTx: '20' });
      await writeFile(r.files.policy, next);
      const ok = await r.app.inject({ method: 'POST', url: '/v1/policy/reload', payload: { by: 'alice' } });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toMatchObject({ changed: true, sha256: sha(next) });
      expect(audit(r.node, 'policy.reloaded').at(-1)).toMatchObject({ by: 'admin:alice', sha256: sha(next) });

      await writeFile(r.files.policy, 'version: 2\n');
      const refused = await r.app.inject({ method: 'POST', url: '/v1/policy/reload', payload: {} });
      expect(refused.statusCode).toBe(422);
      expect(refused.json()).toMatchObject({
        code: 'NODE_POLICY_REFUSED',
        details: { code: 'POLICY_INVALID', kept: sha(next) },
      });
      const junk = await r.app.inject({ method: 'POST', url: '/v1/policy/reload', payload: { by: 'a b', x: 1 } });
      expect(junk.statusCode).toBe(400);
    } finally {
      await r.close();
    }
  });

  it('requires the admin token when one is set', async () => {
    const r = await rig();
    const guarded = build({
      reviewer: r.node.reviewer,
      ledger: r.node.ledger,
      metrics: r.node.metrics,
      keyHealth: async () => ({ ok: true }),
      sessionUp: () => true,
      sendDecision: () => true,
      policy: r.node.policy,
      adminToken: 'tkn',
    });
    try {
      expect((await guarded.inject({ method: 'GET', url: '/v1/policy' })).statusCode).toBe(401);
      expect((await guarded.inject({ method: 'POST', url: '/v1/policy/reload', payload: {} })).statusCode).toBe(401);
      const ok = await guarded.inject({
        method: 'POST',
        url: '/v1/policy/reload',
        headers: { authorization: 'Bearer tkn' },
        payload: {},
      });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toMatchObject({ changed: false });
    } finally {
      await guarded.close();
      await r.close();
    }
  });
});

import { spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cluster, ClusterFile, ProposalView } from '@cosigner/launcher/cluster';
import { alive, COSIGNER_BIN, REPO_ROOT, runCosigner, tempDir, until } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The CLI's own `cluster up` code starts the shared cluster in-process (so its demo and output are checked
// here); every service still runs as a real child process, and no service's src is imported.
import { clusterUp } from '../../apps/cli/src/commands/cluster.ts';

/**
 * End to end, real processes only: 3 KMS emulators (separate simulated accounts), the ledger simulator, the
 * coordinator and 3 cosigner nodes; a 2-of-3 operator account with master weight 0. One cluster is shared by
 * the tests of the first block (the CI machine has 2 cores); the second block runs `cosigner cluster up` as a
 * process, as `pnpm start` does.
 */

interface DecisionView {
  nodeId: string;
  outcome: string;
  reasons: { code: string; message: string }[];
}

function decisions(p: ProposalView): DecisionView[] {
  return (Array.isArray(p.decisions) ? p.decisions : []) as DecisionView[];
}

describe('a 2-of-3 cluster of real processes', () => {
  let dir: string;
  let cluster: Cluster;
  const lines: string[] = [];

  beforeAll(async () => {
    dir = await tempDir('cosigner-e2e-');
    cluster = await clusterUp({ dir, nodes: 3, threshold: 2, demo: true, out: (l) => lines.push(l) });
  }, 240_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('set up the operator account: every node key at weight 1, thresholds 2, master weight 0', async () => {
    const acct = await cluster.horizon.loadAccount(cluster.account.id);
    expect(acct.thresholds).toMatchObject({ low_threshold: 2, med_threshold: 2, high_threshold: 2 });
    const weights = Object.fromEntries(acct.signers.map((s) => [s.key, s.weight]));
    // Master weight 0 removes the master key: Horizon leaves it out of signers (AccountEntry.SignerSummary).
    expect(weights[cluster.account.id]).toBeUndefined();
    for (const key of cluster.account.signers) expect(weights[key]).toBe(1);
    expect(new Set(cluster.account.signers).size).toBe(3);
  });

  it('ran the demo: node decisions, quorum, submitted and the ledger result, with no secret printed', async () => {
    const text = lines.join('\n');
    expect(text).toMatch(/node-\d: approve/);
    expect(text).toMatch(/: submitted/);
    expect(text).toMatch(/destination balance \S+ -> \S+ XLM/);
    expect(text).toContain(cluster.adminKeyFile);
    expect(text).not.toContain(cluster.apiKey);
    for (const p of cluster.nodes) expect(text).toContain(p.url);
    const file = JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as ClusterFile;
    expect(file.nodes.map((n) => n.pid)).toEqual(cluster.nodes.map((p) => p.pid));
    expect(JSON.stringify(file)).not.toContain(cluster.apiKey);
  });

  it("the printed AWS profiles reach each emulator's principals through the SDK's standard credential chain", async () => {
    // `cosigner keys show` with the node profile of kms-0: its credential_process reads kms-0/accounts.json.
    const shown = await runCosigner(
      [
        'keys',
        'show',
        '--backend',
        'aws-kms',
        '--endpoint',
        cluster.kms[0]!.url,
        '--region',
        cluster.kmsAccounts[0]!.region,
        '--key-id',
        cluster.nodeInfo[0]!.kmsKeyId,
      ],
      { AWS_CONFIG_FILE: cluster.aws.configFile, AWS_PROFILE: 'kms-0-node' },
    );
    expect(shown.code, shown.out).toBe(0);
    expect(shown.out).toContain(cluster.nodeInfo[0]!.stellarKey);
    // The credentials are in the emulator's accounts file only, never copied into the config.
    const config = await readFile(cluster.aws.configFile, 'utf8');
    const accounts = await readFile(cluster.kmsAccounts[0]!.accountsFile, 'utf8');
    for (const m of accounts.matchAll(/"secretAccessKey":\s*"([^"]+)"/g)) expect(config).not.toContain(m[1]);
    expect(config).toMatch(/\[profile kms-0-admin\]\nregion = us-east-1\ncredential_process = /);
  });

  it('a payment within policy reaches submitted and the ledger shows the new balance', async () => {
    const dest = await cluster.fundedAccount();
    const before = Number(await cluster.nativeBalance(dest.publicKey()));
    const xdr = await cluster.paymentXdr({ destination: dest.publicKey(), amount: '25.5' });
    const p = await cluster.propose({ xdr, note: 'e2e payment' });
    const final = await cluster.waitForProposal(p.id);
    expect(final.status).toBe('submitted');
    expect(decisions(final).filter((d) => d.outcome === 'approve').length).toBeGreaterThanOrEqual(2);
    expect(Number(await cluster.nativeBalance(dest.publicKey()))).toBeCloseTo(before + 25.5, 7);
    // The coordinator process's own figures on /metrics next to its proposal metrics.
    const metrics = await (await fetch(`${cluster.coordinator.url}/metrics`)).text();
    expect(metrics).toMatch(/^process_resident_memory_bytes [1-9]/m);
    expect(metrics).toContain('coordinator_proposal_seconds');
  });

  it('a payment over the policy maximum ends rejected, with the nodes giving their reasons', async () => {
    const dest = await cluster.fundedAccount();
    const before = await cluster.nativeBalance(dest.publicKey());
    const xdr = await cluster.paymentXdr({ destination: dest.publicKey(), amount: '5000' });
    const p = await cluster.propose({ xdr, note: 'over the policy max' });
    const final = await cluster.waitForProposal(p.id);
    expect(final.status).toBe('rejected');
    const refusals = decisions(final).filter((d) => d.outcome === 'reject');
    expect(refusals.length).toBeGreaterThanOrEqual(2);
    for (const d of refusals) expect(d.reasons.length).toBeGreaterThan(0);
    expect(await cluster.nativeBalance(dest.publicKey())).toBe(before);
  });

  it('with one node killed -9, proposals still complete with the other two; the node restarts', async () => {
    const killed = cluster.nodes[2]!;
    await cluster.kill9Node(2);
    expect(alive(killed.pid)).toBe(false);
    for (const amount of ['1', '2']) {
      const dest = await cluster.fundedAccount();
      const xdr = await cluster.paymentXdr({ destination: dest.publicKey(), amount });
      const final = await cluster.waitForProposal((await cluster.propose({ xdr })).id);
      expect(final.status).toBe('submitted');
      const approvers = decisions(final)
        .filter((d) => d.outcome === 'approve')
        .map((d) => d.nodeId);
      expect(approvers.sort()).toEqual(['node-0', 'node-1']);
    }
    const again = await cluster.restartNode(2);
    expect(again.pid).not.toBe(killed.pid);
    await until(async () => (await fetch(`${again.url}/healthz`)).ok, 20_000, 'the restarted node to answer');
  });

  it('stopped, the same directory resumes the same cluster: keys, accounts, histories; the demo goes through', async () => {
    const before = {
      account: cluster.account.id,
      accounts: cluster.operatorAccounts,
      signers: cluster.account.signers,
    };
    const demo = /proposal (\S+): submitted/.exec(lines.join('\n'))?.[1] as string;
    const coordinatorPort = new URL(cluster.coordinator.url).port;
    await cluster.stop();
    lines.length = 0;
    // Started again with a policy of the operator's own (`cluster up --policy`): no network, no accounts in it (the
    // launcher fills them in), and a lower maximum than the demo policy's 1000 XLM.
    const policy = join(dir, 'my-policy.yaml');
    await writeFile(
      policy,
      'version: 1\noperations: [payment]\nassets:\n  - { asset: native, maxPerTx: "50", velocity: [{ window: 24h, max: "100000" }] }\n',
    );
    cluster = await clusterUp({ dir, demo: true, policy, out: (l) => lines.push(l) });
    const text = lines.join('\n');
    expect(cluster.resumed).toBe(true);
    expect(text).toContain('reusing 3 node keys recorded by an earlier start');
    expect(text).toMatch(/resumed the 2-of-3 cluster under/);
    expect(cluster.account.id).toBe(before.account);
    expect(cluster.operatorAccounts).toEqual(before.accounts);
    expect(cluster.account.signers).toEqual(before.signers);
    // The same port where it was free again, so the URLs handed out before still work.
    expect(new URL(cluster.coordinator.url).port).toBe(coordinatorPort);
    expect(text).toMatch(/: submitted/);
    expect((await cluster.getProposal(demo)).status).toBe('submitted');
    // The operator's policy is in force: 60 XLM is over its maximum, and every node says so.
    const dest = await cluster.fundedAccount();
    const over = await cluster.propose({
      xdr: await cluster.paymentXdr({ destination: dest.publicKey(), amount: '60' }),
    });
    const final = await cluster.waitForProposal(over.id);
    expect(final.status).toBe('rejected');
    const state = JSON.parse(await readFile(join(dir, 'launcher.json'), 'utf8')) as { policyFile?: string };
    expect(state.policyFile).toBe(policy);
    const installed = await readFile(cluster.policyFile, 'utf8');
    expect(installed).toContain(cluster.networkPassphrase);
    for (const a of cluster.operatorAccounts) expect(installed).toContain(a);
  }, 240_000);
});

describe('cosigner cluster up, as pnpm start runs it', () => {
  it('prints the demo through submitted, then Ctrl-C stops every child; no process warns about its Node', async () => {
    const dir = await tempDir('cosigner-up-');
    // Nothing may hide the AWS SDK's Node-version warning (on a supported Node it has nothing to say).
    const { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: _, ...env } = process.env;
    const proc = spawn(process.execPath, [COSIGNER_BIN, 'cluster', 'up', '--dir', dir], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
    try {
      await until(() => out.includes('press Ctrl-C') || proc.exitCode !== null, 240_000, 'cluster up').catch((e) => {
        throw new Error(`${(e as Error).message}; output so far:\n${out}`);
      });
      expect(out).toMatch(/: submitted/);
      expect(out).toContain('endpoints:');
      const file = JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as ClusterFile;
      const pids = [
        file.coordinator.pid,
        file.ledger.pid,
        ...file.kms.map((k) => k.pid),
        ...file.nodes.map((n) => n.pid),
      ];
      expect(pids).toHaveLength(8);
      for (const pid of pids) expect(alive(pid)).toBe(true);

      proc.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(out).toContain('cluster stopped');
      for (const pid of pids) expect(alive(pid)).toBe(false);
      // Every process's log (the KMS client runs in the nodes and in `cluster up` itself), as
      // `grep -r NodeVersionSupportWarning .cosigner/logs` would read them.
      const logs = await readdir(join(dir, 'logs'));
      expect(logs.length).toBeGreaterThanOrEqual(8);
      for (const f of logs)
        expect(await readFile(join(dir, 'logs', f), 'utf8'), f).not.toContain('NodeVersionSupportWarning');
      expect(out).not.toContain('NodeVersionSupportWarning');
    } finally {
      if (proc.exitCode === null) {
        // A failed run must not leave a cluster behind: the children are in their own process groups.
        const left = await readFile(join(dir, 'cluster.json'), 'utf8').catch(() => undefined);
        const file = left ? (JSON.parse(left) as ClusterFile) : undefined;
        for (const pid of file
          ? [file.coordinator.pid, file.ledger.pid, ...file.kms.map((k) => k.pid), ...file.nodes.map((n) => n.pid)]
          : []) {
          if (alive(pid)) process.kill(pid, 'SIGKILL');
        }
        proc.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

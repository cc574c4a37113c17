import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, useBuiltJs } from '@cosigner/testkit/process';
import { startProcessDriver } from './backends/process.ts';
import type { ClusterDriver } from './driver.ts';
import {
  approvedAgain,
  checkInvariants,
  notSubmitted,
  ProposalStream,
  quantile,
  restoreAll,
  type StreamRecord,
} from './scenarios.ts';

/**
 * `pnpm soak`: a long stream of in-policy proposals against a process cluster (3 nodes, 2-of-3) while a chaos
 * loop keeps killing a random node (SIGKILL, a minority: one at a time) and restarting it. At the end every
 * invariant of scenarios.ts is checked over the whole run, and the figures are printed and written to
 * bench/results/soak.json. Exit code 1 on any violation.
 *
 * Environment: SOAK_PROPOSALS (default 2000), SOAK_LANES (parallel sequence lanes, default 8),
 * SOAK_OUT (default bench/results/soak.json), SOAK_DIST (default 1: build first and run every process from dist/
 * with no loader, as the production image does, so the recovery times are production's; 0: through tsx).
 */

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

interface Kill {
  nodeId: string;
  /** ms since the soak started. */
  at: number;
  downMs: number;
  /** From the restart command to the node's session being up again. */
  reconnectMs: number;
  /** From the restart command to the node's first approval recorded by the coordinator (null: none seen). */
  firstApprovalMs: number | null;
}

async function chaosLoop(d: ClusterDriver, stream: ProposalStream, t0: number, until: () => boolean): Promise<Kill[]> {
  const kills: Kill[] = [];
  while (!until()) {
    await sleep(between(2000, 5000));
    if (until()) break;
    const nodeId = d.nodeIds[Math.floor(Math.random() * d.nodeIds.length)]!;
    const at = Date.now();
    stream.faulted.add(nodeId);
    await d.kill(nodeId);
    await sleep(between(500, 3000));
    const restart = Date.now();
    await d.start(nodeId);
    const reconnected = Date.now();
    stream.faulted.delete(nodeId);
    const approved = await approvedAgain(stream, nodeId, restart).catch(() => null);
    kills.push({
      nodeId,
      at: at - t0,
      downMs: restart - at,
      reconnectMs: reconnected - restart,
      firstApprovalMs: approved === null ? null : approved - restart,
    });
    process.stdout.write(`  killed ${nodeId}; back after ${reconnected - at} ms; ${stream.done} proposals done\n`);
  }
  return kills;
}

const quorumMs = (rs: readonly StreamRecord[]): number[] =>
  rs.filter((r) => r.signedAt !== null).map((r) => (r.signedAt as number) - r.createdAt);

const summary = (xs: readonly number[]) => ({
  n: xs.length,
  p50: quantile(xs, 0.5),
  p99: quantile(xs, 0.99),
  max: quantile(xs, 1),
});

async function main(): Promise<number> {
  const target = Number(process.env.SOAK_PROPOSALS ?? 2000);
  const lanes = Number(process.env.SOAK_LANES ?? 8);
  const out = process.env.SOAK_OUT ?? join(REPO_ROOT, 'bench/results/soak.json');
  process.stdout.write(`soak: ${target} proposals over ${lanes} lanes, random minority kills; starting the cluster\n`);
  const dist = (process.env.SOAK_DIST ?? '1') !== '0';
  if (dist) console.log(useBuiltJs());
  const d = await startProcessDriver({ operatorAccounts: lanes });
  let code = 1;
  try {
    const stream = new ProposalStream(d, { lanes, timeoutSeconds: 180 });
    const t0 = Date.now();
    await stream.start();
    const chaos = chaosLoop(d, stream, t0, () => stream.done >= target || stream.errors.length > 0);
    const progress = setInterval(() => {
      const s = (Date.now() - t0) / 1000;
      process.stdout.write(`  ${stream.done}/${target} proposals after ${s.toFixed(0)} s\n`);
    }, 15_000);
    try {
      await stream.waitFor(target, 14 * 60_000);
    } finally {
      clearInterval(progress);
    }
    const kills = await chaos;
    await restoreAll(d);
    const records = await stream.stop();
    const seconds = (Date.now() - t0) / 1000;
    process.stdout.write(`checking invariants over ${records.length} proposals\n`);
    const inv = await checkInvariants(d, records, { timeoutMs: 120_000 });
    const violations = [...stream.errors, ...inv.violations, ...notSubmitted(records)];

    const degraded = records.filter((r) => r.faulted.length > 0);
    const figures = {
      when: new Date().toISOString(),
      backend: d.name,
      code: dist ? 'dist' : 'tsx',
      nodes: d.nodeIds.length,
      lanes,
      proposals: records.length,
      submitted: inv.submitted,
      retries: records.filter((r) => r.retryOf !== null).length,
      kills: kills.length,
      seconds: Number(seconds.toFixed(1)),
      proposalsPerSecond: Number((records.length / seconds).toFixed(1)),
      timeToQuorumMs: { all: summary(quorumMs(records)), underFailure: summary(quorumMs(degraded)) },
      recoveryMs: {
        reconnect: summary(kills.map((k) => k.reconnectMs)),
        firstApproval: summary(kills.flatMap((k) => (k.firstApprovalMs === null ? [] : [k.firstApprovalMs]))),
      },
      ledgerRows: inv.ledgerRows,
      audit: inv.auditOutput,
      violations,
      killLog: kills,
    };
    await mkdir(join(out, '..'), { recursive: true });
    await writeFile(out, `${JSON.stringify(figures, null, 2)}\n`);
    const f = (x: number | null) => (x === null ? '-' : `${x} ms`);
    const lines = [
      `soak (${d.name} from ${figures.code}, ${d.nodeIds.length} nodes 2-of-3, ${lanes} lanes): ${records.length} proposals in ${figures.seconds} s (${figures.proposalsPerSecond}/s), ${inv.submitted} submitted, ${kills.length} kills`,
      `time to quorum, all:           p50 ${f(figures.timeToQuorumMs.all.p50)}, p99 ${f(figures.timeToQuorumMs.all.p99)}`,
      `time to quorum, a node down:   p50 ${f(figures.timeToQuorumMs.underFailure.p50)}, p99 ${f(figures.timeToQuorumMs.underFailure.p99)} (${degraded.length} proposals)`,
      `recovery, restart -> session:  p50 ${f(figures.recoveryMs.reconnect.p50)}, max ${f(figures.recoveryMs.reconnect.max)}`,
      `recovery, restart -> signing:  p50 ${f(figures.recoveryMs.firstApproval.p50)}, max ${f(figures.recoveryMs.firstApproval.max)}`,
      `invariants: ${violations.length === 0 ? 'all hold' : `${violations.length} VIOLATIONS`}; audit: ${inv.auditOutput.join(' | ')}`,
      ...violations.slice(0, 20).map((v) => `  ${v}`),
      `written to ${out}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    code = violations.length === 0 ? 0 : 1;
  } finally {
    await d.close();
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`soak failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);

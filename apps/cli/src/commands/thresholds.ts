import { applyChanges } from '@cosigner/policy/lockout';
import type { Command } from 'commander';
import { cliErrors } from '../errors.ts';
import {
  ALLOW_DISJOINT_FLAG,
  ALLOW_DISJOINT_HELP,
  byte,
  type Changes,
  Lifecycle,
  type Out,
  requireSafe,
  run,
  stdio,
  targetOptions,
} from './account.ts';

/**
 * `cosigner thresholds set`: change low/medium/high on the cluster's accounts through the quorum, after the same
 * lock-out check as setup (every threshold reachable by the signers, none by one node alone, no two disjoint sets of
 * nodes reaching one).
 */

export interface ThresholdFlags {
  horizonUrl: string;
  network?: string;
  coordinatorUrl?: string;
  apiKeyFile?: string;
  account: string[];
  txSource?: string;
  low?: number;
  med?: number;
  high?: number;
  dryRun?: boolean;
  allowDisjointQuorums?: boolean;
}

export async function thresholdsSet(f: ThresholdFlags, io: Out = stdio): Promise<string | undefined> {
  const lc = new Lifecycle(f, io);
  const thresholds = {
    ...(f.low !== undefined ? { low: f.low } : {}),
    ...(f.med !== undefined ? { med: f.med } : {}),
    ...(f.high !== undefined ? { high: f.high } : {}),
  };
  if (Object.keys(thresholds).length === 0)
    throw cliErrors.error(
      'LIFECYCLE_OPTION_REQUIRED',
      { option: '--low' },
      { message: 'pass at least one of --low, --med, --high' },
    );
  const changes: Changes = { thresholds };
  const nodes = await lc.nodesByKey();
  for (const a of f.account) {
    requireSafe(applyChanges(await lc.configuration(a, nodes), changes), `thresholds on ${a}`, {
      allowDisjointQuorums: f.allowDisjointQuorums,
      io,
    });
  }
  if (f.dryRun) return undefined;
  const xdr = await lc.buildChange({ accounts: f.account, changes, ...(f.txSource ? { txSource: f.txSource } : {}) });
  await lc.step({ action: 'thresholds', step: 'proposed', account: f.account[0]!, detail: { ...thresholds } });
  const id = await lc.propose(xdr, { note: 'thresholds set', idempotencyKey: `thresholds-${Date.now()}` });
  await lc.step({ action: 'thresholds', step: 'applied', account: f.account[0]!, proposalId: id });
  return id;
}

export function registerThresholds(program: Command, io: Out = stdio): void {
  const t = program.command('thresholds').description("change the multisig account's thresholds through the quorum");
  targetOptions(t.command('set'))
    .description('set low/medium/high (refused if unreachable or reachable by one node)')
    .requiredOption(
      '--account <address>',
      'account (repeat for each cluster account)',
      (v, acc: string[]) => [...acc, v],
      [],
    )
    .option('--tx-source <address>', 'account whose sequence the change uses (default: the first --account)')
    .option('--low <n>', 'low threshold', byte)
    .option('--med <n>', 'medium threshold', byte)
    .option('--high <n>', 'high threshold', byte)
    .option('--dry-run', 'check only')
    .option(ALLOW_DISJOINT_FLAG, ALLOW_DISJOINT_HELP)
    .action((f: ThresholdFlags) => run(() => thresholdsSet(f, io), io));
}

import { applyChanges } from '@cosigner/policy/lockout';
import { readSecretFile } from '@cosigner/runtime/secrets';
import type { Command } from 'commander';
import {
  ALLOW_DISJOINT_FLAG,
  ALLOW_DISJOINT_HELP,
  byte,
  type Changes,
  http,
  httpOk,
  Lifecycle,
  type Out,
  parseSigner,
  required,
  requireSafe,
  run,
  stdio,
  targetOptions,
} from './account.ts';

/**
 * `cosigner node add|remove` (an operator joins or leaves) and `cosigner node roster allow|remove|list` (this
 * operator accepts another member's key on their own node). Add/remove go through the quorum like every signer
 * change, after the lock-out check; optional --low/--med/--high change the thresholds in the same transaction
 * (e.g. 2-of-3 to 3-of-4). Registered as subcommands of `cosigner node` (see main.ts).
 */

export interface MemberFlags {
  horizonUrl: string;
  network?: string;
  coordinatorUrl?: string;
  apiKeyFile?: string;
  account: string[];
  txSource?: string;
  nodeId: string;
  stellarKey?: string;
  weight?: number;
  low?: number;
  med?: number;
  high?: number;
  dryRun?: boolean;
  allowDisjointQuorums?: boolean;
}

function thresholdsOf(f: MemberFlags): Changes['thresholds'] | undefined {
  const t = {
    ...(f.low !== undefined ? { low: f.low } : {}),
    ...(f.med !== undefined ? { med: f.med } : {}),
    ...(f.high !== undefined ? { high: f.high } : {}),
  };
  return Object.keys(t).length ? t : undefined;
}

export async function membershipChange(
  kind: 'add' | 'remove',
  f: MemberFlags,
  io: Out = stdio,
): Promise<string | undefined> {
  const lc = new Lifecycle(f, io);
  const nodes = await lc.nodesByKey();
  let key = f.stellarKey;
  if (!key && kind === 'remove') key = [...nodes].find(([, id]) => id === f.nodeId)?.[0];
  if (!key) throw required('--stellar-key', `(the coordinator does not list ${f.nodeId})`);
  parseSigner(key);
  nodes.set(key, f.nodeId);
  const t = thresholdsOf(f);
  const changes: Changes = {
    signers: [{ key, weight: kind === 'add' ? (f.weight ?? 1) : 0, node: f.nodeId }],
    ...(t ? { thresholds: t } : {}),
  };
  for (const a of f.account) {
    const now = await lc.configuration(a, nodes);
    requireSafe(applyChanges(now, changes), `node ${kind} ${f.nodeId} on ${a}`, {
      allowDisjointQuorums: f.allowDisjointQuorums,
      io,
    });
  }
  if (f.dryRun) return undefined;
  const action = kind === 'add' ? 'node-add' : 'node-remove';
  const xdr = await lc.buildChange({ accounts: f.account, changes, ...(f.txSource ? { txSource: f.txSource } : {}) });
  await lc.step({ action, step: 'proposed', account: f.account[0]!, nodeId: f.nodeId, detail: { key } });
  const id = await lc.propose(xdr, {
    note: `node ${kind} ${f.nodeId}`,
    idempotencyKey: `${action}-${f.nodeId}-${Date.now()}`,
  });
  await lc.step({ action, step: 'applied', account: f.account[0]!, nodeId: f.nodeId, proposalId: id });
  return id;
}

async function adminToken(file: string | undefined): Promise<string | undefined> {
  return file ? readSecretFile(file, 'node admin token') : undefined;
}

export function registerMembership(node: Command, io: Out = stdio): void {
  for (const kind of ['add', 'remove'] as const) {
    targetOptions(node.command(kind))
      .description(
        kind === 'add'
          ? "add an operator's node key to the multisig account (through the quorum)"
          : "remove a node's key from the multisig account (through the quorum)",
      )
      .requiredOption('--node-id <id>', 'the node')
      .requiredOption(
        '--account <address>',
        'account (repeat for each cluster account)',
        (v, acc: string[]) => [...acc, v],
        [],
      )
      .option('--stellar-key <address>', kind === 'add' ? 'its signing key' : 'its key (default: from the coordinator)')
      .option('--weight <n>', 'signer weight (add; default 1)', byte)
      .option('--tx-source <address>', 'account whose sequence the change uses')
      .option('--low <n>', 'also set the low threshold', byte)
      .option('--med <n>', 'also set the medium threshold', byte)
      .option('--high <n>', 'also set the high threshold', byte)
      .option('--dry-run', 'check only')
      .option(ALLOW_DISJOINT_FLAG, ALLOW_DISJOINT_HELP)
      .action((f: MemberFlags) => run(() => membershipChange(kind, f, io), io));
  }
  const roster = node.command('roster').description("the cluster members' keys this node's operator accepts");
  const common = (c: Command) =>
    c
      .requiredOption('--admin-url <url>', 'this node admin API')
      .option('--token-file <file>', 'file holding the admin token');
  common(roster.command('allow'))
    .description('accept a member key: with signerChanges.clusterMembers the node signs adding/removing it')
    .requiredOption('--address <address>', 'the key')
    .option('--member <id>', 'the node it belongs to')
    .action((o: { adminUrl: string; tokenFile?: string; address: string; member?: string }) =>
      run(async () => {
        const body = await httpOk(new URL('/v1/roster', o.adminUrl).toString(), {
          method: 'POST',
          token: await adminToken(o.tokenFile),
          body: { address: o.address, ...(o.member ? { nodeId: o.member } : {}) },
        });
        io.out(JSON.stringify(body.roster));
      }, io),
    );
  common(roster.command('remove'))
    .description('withdraw a member key')
    .requiredOption('--address <address>', 'the key')
    .action((o: { adminUrl: string; tokenFile?: string; address: string }) =>
      run(async () => {
        const r = await http(new URL(`/v1/roster/${o.address}`, o.adminUrl).toString(), {
          method: 'DELETE',
          token: await adminToken(o.tokenFile),
        });
        io.out(JSON.stringify(r.body));
        if (r.status !== 200) process.exitCode = 1;
      }, io),
    );
  common(roster.command('list'))
    .description("this node's keys and roster")
    .action((o: { adminUrl: string; tokenFile?: string }) =>
      run(async () => {
        io.out(
          JSON.stringify(
            await httpOk(new URL('/v1/keyring', o.adminUrl).toString(), { token: await adminToken(o.tokenFile) }),
          ),
        );
      }, io),
    );
}

import { Command } from 'commander';

type Register = (program: Command) => void;

/** What the user asked for: argv as given, and whether every module is wanted (`cosigner help`, the tests). */
export interface Wanted {
  argv: readonly string[];
  all: boolean;
}

/**
 * The words that can reach `cosigner node add|remove|roster` or their help. Those commands (commands/membership.ts,
 * through commands/account.ts) build transactions against Horizon and so load the Stellar SDK's root entry: its
 * Horizon and RPC clients and their HTTP stack, about 85 modules and 1.4 MB of heap that a running node never uses
 * (it only speaks to its coordinator; bench/README.md, "memory"). A word anywhere after `node` is enough (an option
 * value that happens to be `add` only costs the load); without one, commander cannot dispatch to them anyway.
 */
const MEMBERSHIP_WORDS = new Set(['add', 'remove', 'roster', 'help', '--help', '-h']);

/** Whether `cosigner node ...` with this argv needs the membership commands registered. */
export function wantsMembership(w: Wanted): boolean {
  return w.all || w.argv.slice(2).some((a) => MEMBERSHIP_WORDS.has(a));
}

/**
 * The commands, each loaded only when it runs. Importing every service at start-up cost seconds per process
 * (each module pulls in fastify, the AWS SDK, the Stellar SDK and is transformed by tsx); a cluster starts seven
 * processes, so `cosigner <command>` now loads that command's module alone. The summary is what top-level
 * `--help` lists without loading anything; each module still owns its full description and options.
 */
export const COMMANDS: readonly { name: string; summary: string; load: (wanted: Wanted) => Promise<Register> }[] = [
  {
    name: 'kms-emulator',
    summary: 'AWS KMS-compatible emulator (development and tests only)',
    load: async () => (await import('@cosigner/kms-emulator/command')).register,
  },
  {
    name: 'ledger-sim',
    summary: 'Horizon-compatible offline ledger simulator (development and tests only)',
    load: async () => (await import('@cosigner/ledger-sim/command')).register,
  },
  {
    name: 'coordinator',
    summary: 'the coordinator: proposals API, fan-out, quorum, submission',
    load: async () => (await import('@cosigner/coordinator/command')).register,
  },
  {
    name: 'node',
    summary: 'a cosigner node: review, policy, signing ledger, audit',
    load: async (wanted) => {
      const node = (await import('@cosigner/node/command')).register;
      if (!wantsMembership(wanted)) return node;
      const { registerMembership } = await import('./commands/membership.ts');
      // `node add|remove|roster` live with the other lifecycle commands, under the node command.
      return (program: Command) => {
        node(program);
        registerMembership(program.commands.find((c) => c.name() === 'node') as Command);
      };
    },
  },
  {
    name: 'keys',
    summary: 'create and show node signing keys where they live (KMS, HSM)',
    load: async () => (await import('./commands/keys.ts')).registerKeys,
  },
  {
    name: 'account',
    summary: "set up the cluster's multisig account (signers, thresholds, master weight 0)",
    load: async () => (await import('./commands/account.ts')).registerAccount,
  },
  {
    name: 'rotate',
    summary: "rotate one node's signing key without stopping the cluster",
    load: async () => (await import('./commands/rotate.ts')).registerRotate,
  },
  {
    name: 'thresholds',
    summary: "change the multisig account's thresholds through the quorum",
    load: async () => (await import('./commands/thresholds.ts')).registerThresholds,
  },
  {
    name: 'cluster',
    summary: 'run the whole system on this machine: KMS emulators, ledger simulator, coordinator, nodes',
    load: async () => (await import('./commands/cluster.ts')).registerCluster,
  },
  {
    name: 'frost',
    summary: 'FROST threshold groups: generate one among the nodes (dkg), show one',
    load: async () => (await import('./commands/frost.ts')).registerFrost,
  },
];

/** The first word of argv that is not an option: the command the user asked for (undefined for bare --help). */
export function requestedCommand(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((a) => !a.startsWith('-'));
}

/**
 * Build the `cosigner` program for this argv: the requested command is loaded in full; the others are listed by
 * name and summary (enough for top-level `--help` and for commander's unknown-command error). `cosigner help`
 * and `all: true` load every module. Within `cosigner node`, the membership commands load only when argv can name
 * them (`wantsMembership`).
 */
export async function buildProgram(argv: readonly string[] = [], opts: { all?: boolean } = {}): Promise<Command> {
  const program = new Command('cosigner')
    .description('Stellar multisig co-signing cluster: nodes, coordinator, and the offline stand-ins for development')
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(str) });
  const wanted = requestedCommand(argv);
  const loadAll = opts.all === true || wanted === 'help';
  for (const c of COMMANDS) {
    if (loadAll || c.name === wanted) (await c.load({ argv, all: loadAll }))(program);
    else program.command(c.name).description(c.summary);
  }
  return program;
}

/** Parse and run. Errors print one line naming what is wrong and set a non-zero exit code; nothing throws. */
export async function main(argv: string[], given?: Command): Promise<void> {
  const program = given ?? (await buildProgram(argv));
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    const err = e as { code?: string; exitCode?: number; message?: string };
    if (typeof err.code === 'string' && err.code.startsWith('commander.')) {
      process.exitCode = err.exitCode ?? 1;
      return;
    }
    process.stderr.write(`cosigner: ${err.message ?? String(e)}\n`);
    process.exitCode = 1;
  }
}

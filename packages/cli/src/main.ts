import { register as registerCoordinator } from '@cosigner/coordinator/command';
import { register as registerKmsEmulator } from '@cosigner/kms-emulator/command';
import { register as registerLedgerSim } from '@cosigner/ledger-sim/command';
import { register as registerNode } from '@cosigner/node/command';
import { Command } from 'commander';
import { registerCluster } from './commands/cluster.ts';
import { registerKeys } from './commands/keys.ts';

/** Build the `cosigner` program. Each service owns its command module; the CLI only assembles them. */
export function buildProgram(): Command {
  const program = new Command('cosigner')
    .description('Stellar multisig co-signing cluster: nodes, coordinator, and the offline stand-ins for development')
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(str) });
  registerKmsEmulator(program);
  registerLedgerSim(program);
  registerCoordinator(program);
  registerNode(program);
  registerKeys(program);
  registerCluster(program);
  return program;
}

/** Parse and run. Errors print one line naming what is wrong and set a non-zero exit code; nothing throws. */
export async function main(argv: string[], program: Command = buildProgram()): Promise<void> {
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

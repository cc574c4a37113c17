import type { Command } from 'commander';

/** `cosigner coordinator`: registered by the CLI; the service's own work fills it in. */
export function register(program: Command): void {
  program.command('coordinator').description('the coordinator: proposals API, fan-out, quorum, submission');
}

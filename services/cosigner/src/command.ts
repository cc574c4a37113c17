import type { Command } from 'commander';

/** `cosigner node`: registered by the CLI; the service's own work fills it in. */
export function register(program: Command): void {
  program.command('node').description('a cosigner node: review, policy, signing ledger, audit');
}

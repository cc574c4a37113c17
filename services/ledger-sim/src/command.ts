import type { Command } from 'commander';

/** `cosigner ledger-sim`: registered by the CLI; the service's own work fills it in. */
export function register(program: Command): void {
  program.command('ledger-sim').description('Horizon-compatible offline ledger simulator (development and tests only)');
}

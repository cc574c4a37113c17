import type { Command } from 'commander';

/** `cosigner kms-emulator`: registered by the CLI; the service's own work fills it in. */
export function register(program: Command): void {
  program.command('kms-emulator').description('AWS KMS-compatible emulator (development and tests only)');
}

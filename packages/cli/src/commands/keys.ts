import type { Command } from 'commander';

/** `cosigner keys create|show`: filled in by the key-custody work (issue 3). */
export function registerKeys(program: Command): void {
  program.command('keys').description('create and show node signing keys where they live (KMS, HSM)');
}

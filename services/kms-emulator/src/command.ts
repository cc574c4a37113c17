import { intOption, serviceFlags } from '@cosigner/runtime/service-flags';
import type { Command } from 'commander';
import type { StartOptions } from './server.ts';

/** The flags as commander hands them to the action: what the server starts with. */
export type CommandFlags = StartOptions;

/** `cosigner kms-emulator`: the AWS KMS-compatible emulator for development and tests. */
export function register(program: Command): void {
  const cmd = program
    .command('kms-emulator')
    .description('AWS KMS-compatible emulator (development and tests only; refused when NODE_ENV=production)');
  serviceFlags(cmd, {
    port: { help: 'port to listen on (0 picks a free one)', default: 4566 },
    host: { help: 'address to listen on', default: '127.0.0.1' },
    allowedHost: {
      help: 'a Host name it answers for besides loopback and localhost (repeatable; compose: the service name)',
    },
    readyFile: { help: 'write {url, pid, accountsFile, dataDir} here once serving' },
    dataDir: { help: 'accounts.json, master.key, sealed keys.json and audit.jsonl', default: '.cosigner/kms-emulator' },
  })
    .option('--config <file>', 'accounts file (JSON or YAML, mode 0600) instead of the generated accounts.json')
    .option(
      '--master-key-file <path>',
      '32-byte master key sealing keys at rest (default: generated <data-dir>/master.key)',
    )
    .option(
      '--accounts <n>',
      'how many development accounts to generate when there is no accounts file',
      intOption('--accounts', 1, 26),
      3,
    )
    .addHelpText(
      'after',
      '\nClients use the endpoint URL from the ready file with region us-east-1 and the credentials in the accounts file.\n' +
        'Each account has an admin (creates and manages keys) and a node principal (Sign, Verify, GetPublicKey, DescribeKey).',
    )
    .action(async (flags: CommandFlags) => {
      const { start } = await import('./server.ts');
      await start(flags);
    });
}

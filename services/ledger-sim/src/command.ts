import { intOption, serviceFlags } from '@cosigner/runtime/service-flags';
import type { Command } from 'commander';
import type { CommandFlags } from './config.ts';

/** `cosigner ledger-sim`: the Horizon-compatible offline ledger simulator. */
export function register(program: Command): void {
  const cmd = program
    .command('ledger-sim')
    .description(
      'Horizon-compatible offline ledger simulator (development and tests only; refused when NODE_ENV=production)',
    );
  serviceFlags(cmd, {
    port: { help: 'port to listen on (0 picks a free one)', default: 8000 },
    host: { help: 'address to listen on', default: '127.0.0.1' },
    allowedHost: {
      help: 'a Host name it answers for besides loopback and localhost (repeatable; compose: the service name)',
    },
    readyFile: { help: 'write {url, rpcUrl, pid, networkPassphrase} here once serving' },
    dataDir: { help: 'where the snapshot ledger.json lives (kept across restarts)', default: '.cosigner/ledger-sim' },
  })
    .option('--in-memory', 'keep no snapshot: state ends with the process')
    .option('--config <file>', 'JSON file with network, closeMs, dataDir (flags win)')
    .option('--network <passphrase>', 'network passphrase (default: "Standalone Network ; February 2017")')
    .option(
      '--close-ms <ms>',
      'milliseconds between ledger closes (default 1000)',
      intOption('--close-ms', 10, 3_600_000),
    )
    .addHelpText(
      'after',
      '\nServes GET /, /accounts/:id, /accounts/:id/transactions, /fee_stats, /ledgers, /transactions(/:hash),\n' +
        '/friendbot?addr= and POST /transactions (form field tx). Use it with the SDK as\n' +
        '  new Horizon.Server(url, { allowHttp: true })\n' +
        'Signatures, sequence numbers, preconditions and fees are judged as stellar-core judges them; operations other\n' +
        'than createAccount, payment, changeTrust, setOptions, accountMerge, manageData and bumpSequence are refused\n' +
        'with op_not_supported.\n' +
        'Soroban: invokeHostFunction calls of a built-in escrow contract (deposit, release, balance) are judged as the\n' +
        'host judges them (authorization entries, nonces, expiration, resource fee). POST /rpc is a Stellar RPC\n' +
        '(getHealth, getNetwork, getLatestLedger, getLedgerEntries, simulateTransaction, sendTransaction,\n' +
        'getTransaction); use it as\n' +
        '  new rpc.Server(url + "/rpc", { allowHttp: true })',
    )
    .action(async (flags: CommandFlags) => {
      const { resolveConfig } = await import('./config.ts');
      const { start } = await import('./server.ts');
      await start(await resolveConfig(flags));
    });
}

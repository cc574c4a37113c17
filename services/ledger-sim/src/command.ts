import { type Command, InvalidArgumentError } from 'commander';
import type { CommandFlags } from './config.ts';

function intOption(name: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${name} must be ${min} to ${max}.`);
    return n;
  };
}

/** `cosigner ledger-sim`: the Horizon-compatible offline ledger simulator. */
export function register(program: Command): void {
  program
    .command('ledger-sim')
    .description(
      'Horizon-compatible offline ledger simulator (development and tests only; refused when NODE_ENV=production)',
    )
    .option('--port <port>', 'port to listen on (0 picks a free one)', intOption('--port', 0, 65535), 8000)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option(
      '--allowed-host <name>',
      'a Host name it answers for besides loopback and localhost (repeatable; compose: the service name)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--ready-file <path>', 'write {url, rpcUrl, pid, networkPassphrase} here once serving')
    .option('--data-dir <dir>', 'where the snapshot ledger.json lives (kept across restarts)', '.cosigner/ledger-sim')
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

import { parsePublicKeyB64 } from '@cosigner/protocol/identity';
import { type ServiceFlags, serviceFlags } from '@cosigner/runtime/service-flags';
import { StrKey } from '@stellar/stellar-sdk/base';
import type { Command } from 'commander';
import { createApiKey, parseScopes } from './apikeys.ts';
import { type ConfigOverrides, loadConfig } from './config.ts';
import { coordinatorErrors } from './errors.ts';
import { openStore } from './open-store.ts';
import { registerCopyToPostgres } from './pg/command.ts';

interface CommonFlags {
  config?: string;
  dataDir?: string;
}

/**
 * A subcommand's --config and --data-dir wherever the user wrote them. `cosigner coordinator` declares both too, and
 * commander hands an option a parent declares to that parent even when it follows the subcommand's name
 * (`coordinator enroll --data-dir d` sets the parent's), so read the nearest command that has it: without this the
 * enrolment went to the default data directory, another database than the one named.
 */
export function withParentFlags<T extends CommonFlags>(o: T, self: Command): T {
  let { config, dataDir } = o;
  for (let c = self.parent; c; c = c.parent) {
    const p = c.opts() as CommonFlags;
    config ??= p.config;
    dataDir ??= p.dataDir;
  }
  return { ...o, config, dataDir };
}

/** The store the config names (SQLite under the data directory, or PostgreSQL), as the service opens it. */
async function storeFor(flags: CommonFlags) {
  const overrides: ConfigOverrides = { dataDir: flags.dataDir };
  const config = await loadConfig(flags.config, overrides);
  return openStore(config);
}

/** `cosigner coordinator enroll`: record a node's identity key and Stellar key in the coordinator database. */
export async function enroll(
  flags: CommonFlags & { nodeId: string; identityKey: string; stellarKey: string },
  out: (s: string) => void,
): Promise<void> {
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(flags.nodeId)) {
    throw coordinatorErrors.error(
      'COORD_BAD_REQUEST',
      { field: '--node-id' },
      { message: '--node-id must be 1-128 characters of A-Z a-z 0-9 . _ : -' },
    );
  }
  try {
    parsePublicKeyB64(flags.identityKey, '--identity-key');
  } catch {
    throw coordinatorErrors.error(
      'COORD_BAD_REQUEST',
      { field: '--identity-key' },
      { message: '--identity-key must be a base64 raw ed25519 public key (32 bytes).' },
    );
  }
  if (!StrKey.isValidEd25519PublicKey(flags.stellarKey)) {
    throw coordinatorErrors.error(
      'COORD_BAD_REQUEST',
      { field: '--stellar-key' },
      { message: '--stellar-key must be a G... Stellar address.' },
    );
  }
  const store = await storeFor(flags);
  try {
    await store.enrollNode(
      { id: flags.nodeId, identityKey: flags.identityKey, stellarKey: flags.stellarKey },
      Date.now(),
    );
  } finally {
    await store.close();
  }
  out(`enrolled node ${flags.nodeId} (${flags.stellarKey})\n`);
}

/** `cosigner coordinator api-key create`: prints a new key once; only its hash is stored. */
export async function apiKeyCreate(
  flags: CommonFlags & { scopes: string; label?: string },
  out: (s: string) => void,
): Promise<void> {
  const scopes = parseScopes(flags.scopes);
  const store = await storeFor(flags);
  try {
    const { id, key } = await createApiKey(store, scopes, flags.label ?? null);
    out(`${JSON.stringify({ id, key, scopes })}\n`);
  } finally {
    await store.close();
  }
}

/** `cosigner coordinator`: the proposals API, node sessions, fan-out, quorum and submission. */
export function register(program: Command): void {
  const write = (s: string): void => {
    process.stdout.write(s);
  };
  const cmd = program.command('coordinator').description('the coordinator: proposals API, fan-out, quorum, submission');
  serviceFlags(cmd, {
    config: { help: 'coordinator YAML config (without it: embedded defaults)' },
    port: { help: 'listen port (0 = any free port)' },
    host: { help: 'listen address', default: '127.0.0.1' },
    allowedHost: {
      help: 'a Host name it answers for besides loopback and localhost (repeatable; adds to allowedHosts)',
    },
    readyFile: { help: 'write {url, pid, messageKey, adminKeyFile} here once serving' },
    dataDir: { help: 'data directory (database, message key, admin key)' },
  })
    .option('--horizon-url <url>', 'Horizon (or ledger-sim) base URL')
    .option('--network <passphrase>', 'network passphrase every hash is computed for')
    .addHelpText(
      'after',
      '\nStarted without --config it keeps its SQLite database, message key (message-key.pem) and a generated\nadmin API key (admin.key, mode 0600) under --data-dir (default .cosigner/coordinator).',
    )
    .action(async (o: ServiceFlags & { horizonUrl?: string; network?: string }) => {
      const { start } = await import('./server.ts');
      await start({
        config: o.config,
        port: o.port,
        host: o.host,
        allowedHosts: o.allowedHost,
        readyFile: o.readyFile,
        dataDir: o.dataDir,
        horizonUrl: o.horizonUrl,
        network: o.network,
      });
    });
  cmd
    .command('enroll')
    .description('enroll a node: its identity public key (base64) and its Stellar signing address')
    .option('--config <file>', 'coordinator YAML config')
    .option('--data-dir <dir>', 'data directory')
    .requiredOption('--node-id <id>', 'node id')
    .requiredOption('--identity-key <b64>', 'node identity public key, base64 raw ed25519')
    .requiredOption('--stellar-key <address>', 'node Stellar signing address (G...)')
    .action((o: CommonFlags & { nodeId: string; identityKey: string; stellarKey: string }, self: Command) =>
      enroll(withParentFlags(o, self), write),
    );
  cmd
    .command('api-key')
    .description('manage client API keys')
    .command('create')
    .description('create an API key; it is printed once and stored hashed')
    .option('--config <file>', 'coordinator YAML config')
    .option('--data-dir <dir>', 'data directory')
    .requiredOption('--scopes <list>', 'comma-separated: propose, read, admin')
    .option('--label <text>', 'a note to recognise the key by')
    .action((o: CommonFlags & { scopes: string; label?: string }, self: Command) =>
      apiKeyCreate(withParentFlags(o, self), write),
    );
  registerCopyToPostgres(cmd);
}

import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parsePublicKeyB64 } from '@cosigner/protocol/identity';
import { newSecret, writePrivateFile } from '@cosigner/runtime/secrets';
import { repeatable, type ServiceFlags, serviceFlags } from '@cosigner/runtime/service-flags';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { verifyAuditChain } from './audit.ts';
import { loadConfig, parseConfig } from './config.ts';
import { nodeErrors } from './errors.ts';
import { ledgerPath, openLedgerDb } from './ledger.ts';

/** Where command output goes (tests pass their own). */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const stdio: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** Call the node admin API (approve/reject/pending). */
export async function adminCall(
  adminUrl: string,
  method: 'GET' | 'POST',
  path: string,
  opts: { tokenFile?: string; body?: unknown } = {},
): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = {};
  if (opts.tokenFile) headers.authorization = `Bearer ${(await readFile(opts.tokenFile, 'utf8')).trim()}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(new URL(path, adminUrl), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (cause) {
    throw nodeErrors.error(
      'NODE_ADMIN_UNREACHABLE',
      { adminUrl },
      { message: `The node admin API at ${adminUrl} did not answer.`, cause },
    );
  }
  return { status: res.status, body: (await res.json()) as unknown };
}

/** `cosigner node audit verify`: check the hash chain; exit code 1 and the first broken link otherwise. */
export async function auditVerify(opts: { dataDir?: string; config?: string }, io: Io = stdio): Promise<boolean> {
  const dataDir = opts.dataDir ?? (opts.config ? (await loadConfig(opts.config)).dataDir : undefined);
  if (!dataDir)
    throw nodeErrors.error('NODE_CONFIG_INVALID', { field: 'dataDir' }, { message: 'Pass --data-dir or --config.' });
  const db = openLedgerDb(ledgerPath(resolve(dataDir)), { readonly: true });
  try {
    const report = verifyAuditChain(db);
    if (report.ok) {
      io.out(`audit chain ok: ${report.entries} entries, head ${report.head}`);
      return true;
    }
    io.err(
      `audit chain BROKEN at entry ${report.brokenAt}: ${report.reason} (${report.entries} entries verified before it)`,
    );
    return false;
  } finally {
    db.close();
  }
}

export interface InitOptions {
  dataDir: string;
  nodeId: string;
  /** One coordinator's URL, or every replica's (written as coordinator.urls). */
  coordinatorUrl: string | readonly string[];
  coordinatorKey: string[];
  keyBackend: 'local' | 'aws-kms' | 'pkcs11';
  network: string;
  policy: string;
  output?: string;
  kmsKeyId?: string;
  kmsRegion?: string;
}

/** `coordinator.url` for one coordinator (as every config before replicas), `coordinator.urls` for several. */
function coordinatorSection(urls: string | readonly string[], publicKeys: string[]): Record<string, unknown> {
  const list = typeof urls === 'string' ? [urls] : [...urls];
  return list.length === 1 ? { url: list[0], publicKeys } : { urls: list, publicKeys };
}

/**
 * `cosigner node init`: write a starter node.yaml (never overwrites one). Returns its path. A production config
 * gets an admin token file (`<dataDir>/admin.token`, 0600, kept when it exists): production requires the admin
 * token on any address, because a browser reaches a loopback listener through DNS rebinding.
 */
export async function initConfig(o: InitOptions): Promise<string> {
  for (const [i, k] of o.coordinatorKey.entries()) parsePublicKeyB64(k, `--coordinator-key #${i + 1}`);
  const dataDir = resolve(o.dataDir);
  const key =
    o.keyBackend === 'local'
      ? { type: 'local', keyFile: join(dataDir, 'stellar-dev.key') }
      : o.keyBackend === 'aws-kms'
        ? { type: 'aws-kms', keyId: o.kmsKeyId ?? 'alias/cosigner-node', region: o.kmsRegion ?? 'us-east-1' }
        : {
            type: 'pkcs11',
            module: '/usr/lib/softhsm/libsofthsm2.so',
            tokenLabel: 'cosigner',
            keyIdHex: '01',
            pinFile: join(dataDir, 'hsm.pin'),
          };
  const production = o.keyBackend !== 'local';
  const tokenFile = join(dataDir, 'admin.token');
  const doc = {
    mode: production ? 'production' : 'development',
    nodeId: o.nodeId,
    dataDir,
    coordinator: coordinatorSection(o.coordinatorUrl, o.coordinatorKey),
    network: o.network,
    key,
    policy: resolve(o.policy),
    admin: { host: '127.0.0.1', port: 0, ...(production ? { tokenFile } : {}) },
  };
  // The node would refuse it at start (both, none, a repeated replica...): say so now, naming the field.
  parseConfig(doc, { baseDir: dataDir });
  const out = resolve(o.output ?? join(dataDir, 'node.yaml'));
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (production) {
    const exists = await access(tokenFile).then(
      () => true,
      () => false,
    );
    if (!exists) await writePrivateFile(tokenFile, `${newSecret()}\n`);
  }
  await writeFile(out, `# cosigner node configuration (generated by \`cosigner node init\`)\n${stringify(doc)}`, {
    mode: 0o600,
    flag: 'wx',
  });
  return out;
}

async function decide(
  action: 'approve' | 'reject',
  id: string,
  o: { adminUrl: string; tokenFile?: string; note?: string; by?: string },
  io: Io,
): Promise<void> {
  const body: Record<string, string> = {};
  if (o.note) body.note = o.note;
  if (o.by) body.by = o.by;
  const res = await adminCall(o.adminUrl, 'POST', `/v1/pending/${encodeURIComponent(id)}/${action}`, {
    tokenFile: o.tokenFile,
    body,
  });
  io.out(JSON.stringify(res.body, null, 2));
  if (res.status !== 200) process.exitCode = 1;
}

export interface FrostRetireOptions {
  adminUrl: string;
  tokenFile?: string;
  group: string;
  confirm: string;
  by?: string;
}

/**
 * `cosigner node frost retire`: POST /v1/frost/groups/:group/retire with the confirmation, and say what this node
 * now holds of the group. The node checks `confirm` itself; a mismatch is refused here first, naming the flag.
 * @returns whether the node answered the group retired
 */
export async function frostRetire(o: FrostRetireOptions, io: Io): Promise<boolean> {
  if (o.confirm !== o.group) {
    io.err('frost group not retired: --confirm must repeat --group exactly (it guards against the wrong group).');
    return false;
  }
  const res = await adminCall(o.adminUrl, 'POST', `/v1/frost/groups/${encodeURIComponent(o.group)}/retire`, {
    tokenFile: o.tokenFile,
    body: { confirm: o.confirm, ...(o.by ? { by: o.by } : {}) },
  });
  const b = res.body as {
    code?: string;
    message?: string;
    group?: {
      address: string;
      dkgId: string;
      threshold: number;
      participants: unknown[];
      myIndex: number;
      verifyingShares: Record<string, string>;
      transcript: string;
      retiredAt: number;
    };
    walCleared?: boolean;
  };
  if (res.status !== 200 || !b.group) {
    io.err(`frost group not retired: ${b.code ?? res.status}: ${b.message ?? JSON.stringify(res.body)}`);
    return false;
  }
  const g = b.group;
  io.out(`retired FROST group ${g.address} on this node at ${new Date(g.retiredAt).toISOString()}`);
  io.out(`  key generation ${g.dkgId}, ${g.threshold}-of-${g.participants.length}, this node's index ${g.myIndex}`);
  io.out(`  its verifying share ${g.verifyingShares[String(g.myIndex)]}, transcript ${g.transcript}`);
  io.out('  its sealed share is destroyed; the public record stays (cosigner node frost list)');
  if (b.walCleared === false) {
    io.err(
      'warning: another reader held frost.sqlite open, so its write-ahead log is not cleared yet and the file may still hold the sealed bytes: close it and run this command again',
    );
    return false;
  }
  return true;
}

/** `cosigner node`: run a node, and its operator subcommands. */
export function register(program: Command, io: Io = stdio): void {
  // `cosigner node` has options of its own (--config, --data-dir) and subcommands with the same names
  // (`node init --data-dir`, `node audit verify --data-dir`). Commander hands options after a subcommand to
  // the parent unless parsing is positional at every level above it, so the program's own options (it has
  // none but --help/--version) are read before the command name only.
  program.enablePositionalOptions();
  const node = program
    .command('node')
    .description('a cosigner node: review, policy, signing ledger, audit (run with --config node.yaml)')
    .enablePositionalOptions();
  serviceFlags(node, {
    config: { help: 'node config YAML' },
    port: { help: 'admin API port (0 picks one)' },
    host: { help: 'admin API address (default from config, else 127.0.0.1)' },
    readyFile: { help: 'write {url, pid, nodeId, identityKey, stellarKey} here once serving' },
    dataDir: { help: 'data directory (overrides the config)' },
  })
    .addHelpText(
      'after',
      '\nThe node dials out to its coordinator; its admin API (health, metrics, manual approvals) stays private.\n' +
        'Test hook (development mode only): COSIGNER_CRASH_AT=after-record|after-sign|before-reply kills the\n' +
        'process at that point of the signing path.',
    )
    .action(async (o: ServiceFlags) => {
      if (!o.config)
        throw nodeErrors.error('NODE_CONFIG_INVALID', undefined, {
          message: 'cosigner node needs --config <node.yaml>.',
        });
      const { start } = await import('./server.ts');
      await start({
        config: o.config,
        readyFile: o.readyFile,
        overrides: { port: o.port, host: o.host, dataDir: o.dataDir },
      });
    });

  node
    .command('init')
    .description('write a starter node.yaml')
    .requiredOption('--data-dir <dir>', 'data directory of the node')
    .requiredOption('--node-id <id>', 'this node id')
    .requiredOption(
      '--coordinator-url <url>',
      'ws(s):// URL of the coordinator; repeat it for every replica (the node holds a session with each)',
      repeatable,
    )
    .requiredOption('--coordinator-key <b64...>', 'pinned coordinator message key(s), base64')
    .addOption(
      new Option('--key-backend <kind>', 'where the Stellar key lives')
        .choices(['local', 'aws-kms', 'pkcs11'])
        .default('local'),
    )
    .option('--network <passphrase>', 'network passphrase', 'Test SDF Network ; September 2015')
    .option('--policy <file>', 'policy YAML path', 'policy.yaml')
    .option('--kms-key-id <id>', 'aws-kms key id or alias')
    .option('--kms-region <region>', 'aws-kms region')
    .option('--output <file>', 'where to write (default <data-dir>/node.yaml)')
    .action(async (o: InitOptions) => {
      io.out(`wrote ${await initConfig(o)}`);
    });

  for (const action of ['approve', 'reject'] as const) {
    node
      .command(`${action} <id>`)
      .description(`${action} a proposal held for manual approval`)
      .requiredOption('--admin-url <url>', 'the node admin API, e.g. http://127.0.0.1:7400')
      .option('--token-file <file>', 'file holding the admin token')
      .option('--note <text>', 'why (kept in the audit log)')
      .option('--by <operator>', 'who decides (kept in the audit log)')
      .action(async (id: string, o: { adminUrl: string; tokenFile?: string; note?: string; by?: string }) =>
        decide(action, id, o, io),
      );
  }

  node
    .command('pending')
    .description('list proposals held for manual approval')
    .requiredOption('--admin-url <url>', 'the node admin API')
    .option('--token-file <file>', 'file holding the admin token')
    .action(async (o: { adminUrl: string; tokenFile?: string }) => {
      const res = await adminCall(o.adminUrl, 'GET', '/v1/pending', { tokenFile: o.tokenFile });
      io.out(JSON.stringify(res.body, null, 2));
      if (res.status !== 200) process.exitCode = 1;
    });

  const policy = node.command('policy').description("the node's policy in force; reload it after editing the file");
  policy
    .command('show')
    .description('the policy file in force, its sha256 and when it was loaded')
    .requiredOption('--admin-url <url>', 'the node admin API')
    .option('--token-file <file>', 'file holding the admin token')
    .action(async (o: { adminUrl: string; tokenFile?: string }) => {
      const res = await adminCall(o.adminUrl, 'GET', '/v1/policy', { tokenFile: o.tokenFile });
      io.out(JSON.stringify(res.body, null, 2));
      if (res.status !== 200) process.exitCode = 1;
    });
  policy
    .command('reload')
    .description('read the policy file again: valid, it replaces the policy in force; invalid, the old one stays')
    .requiredOption('--admin-url <url>', 'the node admin API')
    .option('--token-file <file>', 'file holding the admin token')
    .option('--by <operator>', 'who reloads (kept in the audit log)')
    .action(async (o: { adminUrl: string; tokenFile?: string; by?: string }) => {
      const res = await adminCall(o.adminUrl, 'POST', '/v1/policy/reload', {
        tokenFile: o.tokenFile,
        body: o.by ? { by: o.by } : {},
      });
      const b = res.body as { changed?: boolean; previous?: string; sha256?: string; message?: string };
      if (res.status === 200) {
        io.out(b.changed ? `policy reloaded: ${b.previous} -> ${b.sha256}` : `policy unchanged (${b.sha256})`);
      } else {
        io.err(`policy not reloaded: ${b.message ?? JSON.stringify(res.body)}`);
        process.exitCode = 1;
      }
    });

  const frost = node
    .command('frost')
    .description("this node's FROST groups (its own admin API, never the coordinator)");
  frost
    .command('list')
    .description('the groups this node holds a share of, with their public data (compare them with the others)')
    .requiredOption('--admin-url <url>', 'the node admin API')
    .option('--token-file <file>', 'file holding the admin token')
    .action(async (o: { adminUrl: string; tokenFile?: string }) => {
      const res = await adminCall(o.adminUrl, 'GET', '/v1/frost/groups', { tokenFile: o.tokenFile });
      io.out(JSON.stringify(res.body, null, 2));
      if (res.status !== 200) process.exitCode = 1;
    });
  frost
    .command('retire')
    .description(
      "retire a group on this node: its sealed share is destroyed for good, its public record stays, the node refuses every round of it (after 'cosigner frost swap' moved every account off it)",
    )
    .requiredOption('--admin-url <url>', 'the node admin API')
    .option('--token-file <file>', 'file holding the admin token')
    .requiredOption('--group <address>', 'the group to retire (G...)')
    .requiredOption('--confirm <address>', 'the same address again: a guard against retiring the wrong group')
    .option('--by <operator>', 'who retires it (kept in the audit log)')
    .action(async (o: FrostRetireOptions) => {
      if (!(await frostRetire(o, io))) process.exitCode = 1;
    });

  node
    .command('audit')
    .description('the hash-chained audit log')
    .command('verify')
    .description('check every link of the audit chain; prints the first broken one')
    .option('--data-dir <dir>', 'node data directory')
    .option('--config <file>', 'or: the node config (its dataDir)')
    .action(async (o: { dataDir?: string; config?: string }) => {
      if (!(await auditVerify(o, io))) process.exitCode = 1;
    });
}

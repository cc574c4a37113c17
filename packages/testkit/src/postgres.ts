import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A real PostgreSQL server for tests: Debian's `postgresql` package (the server binaries under
 * /usr/lib/postgresql/<major>/bin; CI installs it with apt), a fresh cluster in a temporary data directory, on a free
 * port, listening on 127.0.0.1 only (no Unix socket outside its own directory). The superuser `cosigner` has a
 * password generated at start (SCRAM-SHA-256, pg_hba.conf `host all all 127.0.0.1/32 scram-sha-256`), so a test
 * can pass credentials exactly as production does: from a file or the environment, never inside the URL.
 *
 * The server refuses to run as root (postmaster.c "root execution of the PostgreSQL server is not permitted"), so
 * under root every binary runs as the `postgres` system user and the temporary directory is handed to it.
 */

export const POSTGRES_BIN_DIR = process.env.COSIGNER_POSTGRES_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PostgresServer {
  readonly port: number;
  /** The database superuser created by initdb. */
  readonly user: string;
  /** That user's password, generated for this server. */
  readonly password: string;
  /** The temporary directory (data directory under `data/`, log `server.log`). */
  readonly dir: string;
  /** `postgres://cosigner@127.0.0.1:<port>/<database>`: no password in it. */
  url(database?: string): string;
  /** Create a database (owned by the superuser) and return its URL without password. */
  createDatabase(name: string): Promise<string>;
  /** `fast`: clean shutdown (sessions ended, checkpoint). `immediate`: no checkpoint, recovery at next start (a crash). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Start the stopped server again on the same port and data. */
  start(): Promise<void>;
  /** Whether the server is running as far as this handle knows. */
  readonly running: boolean;
  /** Stop (immediate) and delete the temporary directory. */
  close(): Promise<void>;
}

function asRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Run a server binary, as `postgres` when we are root. */
async function pgBin(bin: string, args: string[]): Promise<string> {
  const file = join(POSTGRES_BIN_DIR, bin);
  const [cmd, argv] = asRoot() ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args];
  try {
    const { stdout } = await run(cmd, argv, { timeout: 60_000, cwd: tmpdir() });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Create a cluster in a temporary directory and start it. About 1-3 s on an idle machine.
 * @throws Error when the binaries are missing (install Debian's `postgresql`) or the server does not start
 */
export async function startPostgres(
  opts: {
    settings?: Record<string, string>;
    /** Serve TLS with this certificate and key (PEM files; copied into the server's directory, mode 0600). */
    tls?: { certFile: string; keyFile: string };
  } = {},
): Promise<PostgresServer> {
  if (!existsSync(join(POSTGRES_BIN_DIR, 'initdb'))) {
    throw new Error(
      `no PostgreSQL server binaries in ${POSTGRES_BIN_DIR}: install Debian's postgresql package (apt-get install postgresql) or set COSIGNER_POSTGRES_BIN`,
    );
  }
  const dir = await mkdtemp(join(tmpdir(), 'cosigner-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  const user = 'cosigner';
  const password = randomBytes(18).toString('base64url');
  const pwfile = join(dir, 'pwfile');
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  const owned = [dir, pwfile];
  if (opts.tls) {
    // The server refuses a key file that group or others can read (be-secure-openssl.c).
    await copyFile(opts.tls.certFile, join(dir, 'server.crt'));
    await copyFile(opts.tls.keyFile, join(dir, 'server.key'));
    await chmod(join(dir, 'server.key'), 0o600);
    owned.push(join(dir, 'server.crt'), join(dir, 'server.key'));
  }
  if (asRoot()) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    for (const f of owned) await chown(f, Number(stdout.trim()), Number(gid.trim()));
  }
  await chmod(dir, 0o700);
  await pgBin('initdb', [
    '-D',
    data,
    '-U',
    user,
    `--pwfile=${pwfile}`,
    '--auth-host=scram-sha-256',
    '--auth-local=scram-sha-256',
    '-E',
    'UTF8',
    '--locale=C',
    '--no-sync',
  ]);
  await rm(pwfile);
  // fsync off: a test server need not survive an operating-system crash; a killed server (immediate stop) still
  // recovers every committed transaction from its WAL, which the kernel holds.
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    fsync: 'off',
    full_page_writes: 'off',
    max_connections: '100',
    ...(opts.tls ? { ssl: 'on', ssl_cert_file: join(dir, 'server.crt'), ssl_key_file: join(dir, 'server.key') } : {}),
    ...opts.settings,
  };
  let port = 0;
  let running = false;
  const start = async (): Promise<void> => {
    const options = [`-p ${port}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(' ');
    await pgBin('pg_ctl', ['start', '-w', '-t', '60', '-D', data, '-l', log, '-o', options]);
    running = true;
  };
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await start();
      break;
    } catch (err) {
      // Another process may have taken the port between our probe and the server's bind: try another.
      if (attempt >= 2) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const url = (database = 'postgres'): string => `postgres://${user}@127.0.0.1:${port}/${database}`;
  const server: PostgresServer = {
    port,
    user,
    password,
    dir,
    url,
    get running() {
      return running;
    },
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${name}`);
      // psql, the client shipped with the server, so the testkit needs no driver of its own.
      await run(
        join(POSTGRES_BIN_DIR, 'psql'),
        ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `CREATE DATABASE ${name}`, url()],
        {
          env: { ...process.env, PGPASSWORD: password },
          timeout: 60_000,
        },
      );
      return url(name);
    },
    async stop(mode = 'fast') {
      if (!running) return;
      await pgBin('pg_ctl', ['stop', '-w', '-t', '60', '-D', data, '-m', mode]);
      running = false;
    },
    start,
    async close() {
      if (running) await server.stop('immediate').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}

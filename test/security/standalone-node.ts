import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { demoPolicyYaml } from '@cosigner/launcher/cluster';
import { type RunningProcess, startCosignerProcess } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';

const NETWORK = 'Test SDF Network ; September 2015';

/** A local port nothing listens on (bound, then closed), so the node's coordinator dial is refused at once. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export interface StandaloneNode {
  proc: RunningProcess;
  dataDir: string;
  configFile: string;
  /** The node's stdout and stderr, and its environment, read while it ran. */
  output: string;
  environ: Buffer;
}

/**
 * Run `cosigner node --config node.yaml` as a real process with the given key backend (development mode, a
 * coordinator that is not there), let it start, open its ledger and audit log and derive its address, then stop
 * it. Returns what it left behind, for a scan.
 */
export async function runStandaloneNode(p: {
  dir: string;
  key: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
}): Promise<StandaloneNode> {
  const dataDir = join(p.dir, 'data');
  const policy = join(p.dir, 'policy.yaml');
  const configFile = join(p.dir, 'node.yaml');
  const coordinatorKey = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(12);
  await writeFile(policy, demoPolicyYaml({ network: NETWORK, account: Keypair.random().publicKey(), maxXlm: '10' }), {
    mode: 0o600,
  });
  await writeFile(
    configFile,
    JSON.stringify({
      mode: 'development',
      nodeId: 'hygiene-node',
      dataDir,
      coordinator: { url: `ws://127.0.0.1:${await closedPort()}`, publicKeys: [coordinatorKey.toString('base64')] },
      network: NETWORK,
      key: p.key,
      policy,
    }),
    { mode: 0o600 },
  );
  const proc = await startCosignerProcess({
    args: ['node', '--config', configFile],
    env: { NODE_ENV: 'development', ...p.env },
    readyTimeoutMs: 60_000,
  });
  const environ = await readFile(`/proc/${proc.pid}/environ`);
  await proc.stop();
  return { proc, dataDir, configFile, output: proc.output(), environ };
}

/**
 * The compose stack's one-shot `setup` service (docker-compose.yml): what `cosigner cluster up` does for local
 * processes (packages/launcher/src/cluster.ts), done inside the containers, at run time, so that no key or
 * credential is ever in an image or in the repository.
 *
 * 1. the coordinator's message key and each node's identity key (ed25519 PKCS#8 PEM, 0600) in their volumes;
 * 2. each node's Stellar signing key CREATED INSIDE ITS OWN KMS emulator (Ed25519, via the account's admin
 *    principal), its public key read back with the node principal (proving the node's credentials reach it);
 * 3. the operator account(s): funded by the ledger simulator's friendbot, then one setOptions transaction signed
 *    by a throwaway master key adds every node key at weight 1, sets the thresholds and the master weight to 0
 *    (packages/policy account-setup.ts, the routine `cosigner account setup` uses; an unsafe result, such as a
 *    1-of-n cluster, is logged as a warning);
 * 4. coordinator.yaml (enrolled nodes) and each node's node.yaml + policy.yaml, in their volumes;
 * 5. cluster.json in the coordinator volume: public facts only (accounts, signers, network), for operators and tests.
 *
 * Idempotent: when coordinator.yaml exists the stack was set up already and nothing changes (keys, accounts and
 * ledgers survive `docker-compose down` without -v). Run with the CLI's dependencies
 * (docker/node_modules -> apps/cli/node_modules in the image):
 *   node --import tsx /app/docker/setup.ts
 *
 * Environment (defaults in brackets): COSIGNER_NODES [3], COSIGNER_THRESHOLD [2], COSIGNER_OPERATOR_ACCOUNTS [1],
 * COSIGNER_HORIZON_URL [http://ledger:8000], COSIGNER_COORDINATOR_WS [ws://coordinator:8080] (several coordinator
 * replicas: their URLs separated by commas, written as the nodes' coordinator.urls),
 * COSIGNER_KMS_URL_<i> [http://kms-<i>:4566], COSIGNER_FRIENDBOT_URL [<horizon>/friendbot], COSIGNER_MAX_PAYMENT_XLM
 * [1000], JSON objects merged over the generated configs (COSIGNER_COORDINATOR_CONFIG, COSIGNER_NODE_CONFIG), and
 * for real AWS KMS instead of the emulators (docker-compose.testnet.yml): COSIGNER_KMS_KEY_ID_<i>,
 * COSIGNER_KMS_REGION_<i>, COSIGNER_NODE_ADDRESS_<i>.
 *
 * For coordinator replicas on PostgreSQL (docker-compose.ha.yml): COSIGNER_PG_PASSWORD_FILE, where a fresh random
 * password for the coordinators' database role is written (0600, once; the PostgreSQL container creates the role
 * with it and the coordinators read it as `store.passwordFile`), and COSIGNER_COORDINATOR_STORE, the coordinator's
 * `store` section as JSON (URL, password file path, TLS: no secret).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateKeyCommand, GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { demoPolicyYaml, mergeConfig, nodeCoordinatorSection, setupWarning } from '@cosigner/launcher/cluster';
import { signedFreshSetup } from '@cosigner/policy/account-setup';
import { Horizon, Keypair, StrKey } from '@stellar/stellar-sdk';

const env = process.env;
const ROOT = env.COSIGNER_SETUP_ROOT ?? '/cluster';
const n = Number(env.COSIGNER_NODES ?? 3);
const threshold = Number(env.COSIGNER_THRESHOLD ?? 2);
const operators = Number(env.COSIGNER_OPERATOR_ACCOUNTS ?? 1);
const horizonUrl = env.COSIGNER_HORIZON_URL ?? 'http://ledger:8000';
const coordinatorWs = (env.COSIGNER_COORDINATOR_WS ?? 'ws://coordinator:8080')
  .split(',')
  .map((u) => u.trim())
  .filter((u) => u !== '');
const kmsUrl = (i: number): string => env[`COSIGNER_KMS_URL_${i}`] ?? `http://kms-${i}:4566`;
const jsonEnv = (name: string): Record<string, unknown> => (env[name] ? JSON.parse(env[name]) : {});
const log = (line: string): void => {
  process.stdout.write(`setup: ${line}\n`);
};

interface Principal {
  role: string;
  accessKeyId: string;
  secretAccessKey: string;
}
interface KmsAccount {
  region: string;
  principals: Principal[];
}

/** Write a file readable by its owner only, atomically (a crash never leaves half a config). */
async function writePrivate(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}

/** An ed25519 identity (the format packages/protocol/src/identity.ts reads), kept when it exists. */
async function identity(path: string): Promise<string> {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    await writePrivate(path, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  }
  const { createPrivateKey, createPublicKey } = await import('node:crypto');
  const spki = createPublicKey(createPrivateKey(await readFile(path, 'utf8'))).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32).toString('base64');
}

async function retry<T>(what: string, f: () => Promise<T>, attempts = 60): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i >= attempts) throw new Error(`${what}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function httpJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

/** The node's Ed25519 key, created in ITS emulator by the admin principal, read back by the node principal. */
async function nodeKey(i: number): Promise<{ keyId: string; stellarKey: string; region: string; node?: Principal }> {
  const file = join(ROOT, `kms-${i}`, 'accounts.json');
  const acct = (
    JSON.parse(await retry(`kms-${i} accounts file`, () => readFile(file, 'utf8'))) as {
      accounts: KmsAccount[];
    }
  ).accounts[0];
  const admin = acct?.principals.find((p) => p.role === 'admin');
  const node = acct?.principals.find((p) => p.role === 'node');
  if (!acct || !admin || !node) throw new Error(`${file}: no account with admin and node principals`);
  const client = (p: Principal) =>
    new KMSClient({
      endpoint: kmsUrl(i),
      region: acct.region,
      credentials: { accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey },
      maxAttempts: 5,
    });
  const a = client(admin);
  const r = client(node);
  try {
    const made = await retry(`kms-${i} CreateKey`, () =>
      a.send(
        new CreateKeyCommand({
          KeySpec: 'ECC_NIST_EDWARDS25519',
          KeyUsage: 'SIGN_VERIFY',
          Description: `stellar-cosigner node-${i} signing key (compose setup)`,
        }),
      ),
    );
    const keyId = made.KeyMetadata?.KeyId;
    if (!keyId) throw new Error(`kms-${i}: CreateKey returned no KeyId`);
    const pub = Buffer.from((await r.send(new GetPublicKeyCommand({ KeyId: keyId }))).PublicKey ?? new Uint8Array());
    if (pub.length !== 44) throw new Error(`kms-${i}: GetPublicKey returned ${pub.length} bytes, not 44`);
    return { keyId, stellarKey: StrKey.encodeEd25519PublicKey(pub.subarray(12)), region: acct.region, node };
  } finally {
    a.destroy();
    r.destroy();
  }
}

/**
 * A key made beforehand in real AWS KMS (`cosigner keys create --backend aws-kms` in the node's own AWS account):
 * COSIGNER_KMS_KEY_ID_<i>, COSIGNER_KMS_REGION_<i> and COSIGNER_NODE_ADDRESS_<i> (the G... address it printed).
 * The setup holds no AWS credential then; the node takes its own from its environment (the AWS credential chain).
 */
function existingKey(i: number): { keyId: string; stellarKey: string; region: string } | undefined {
  const keyId = env[`COSIGNER_KMS_KEY_ID_${i}`];
  if (!keyId) return undefined;
  const stellarKey = env[`COSIGNER_NODE_ADDRESS_${i}`] ?? '';
  const region = env[`COSIGNER_KMS_REGION_${i}`] ?? env.AWS_REGION ?? '';
  if (!StrKey.isValidEd25519PublicKey(stellarKey)) throw new Error(`COSIGNER_NODE_ADDRESS_${i} must be a G... address`);
  if (!region) throw new Error(`COSIGNER_KMS_REGION_${i} (or AWS_REGION) is required with COSIGNER_KMS_KEY_ID_${i}`);
  return { keyId, stellarKey, region };
}

/**
 * The database password, generated here so that it exists nowhere but in its volume (never in a compose file, an
 * image or the environment): 32 random bytes, base64url (no character a URL, a shell or SQL quoting would mangle).
 */
async function databasePassword(file: string): Promise<void> {
  if (existsSync(file)) return;
  await writePrivate(file, randomBytes(32).toString('base64url'));
  log(`generated the database password in ${file}`);
}

async function main(): Promise<void> {
  if (env.COSIGNER_PG_PASSWORD_FILE) await databasePassword(env.COSIGNER_PG_PASSWORD_FILE);
  const coordDir = join(ROOT, 'coordinator');
  const coordConfig = join(coordDir, 'coordinator.yaml');
  if (existsSync(coordConfig)) {
    log(`already set up (${coordConfig} exists); nothing to do`);
    return;
  }
  if (!(n >= 1 && threshold >= 1 && threshold <= n && operators >= 1)) {
    throw new Error(`bad COSIGNER_NODES/THRESHOLD/OPERATOR_ACCOUNTS: ${n}/${threshold}/${operators}`);
  }
  const root = await retry('ledger', () => httpJson(`${horizonUrl}/`));
  const network = String(root.network_passphrase);
  const messageKey = await identity(join(coordDir, 'message-key.pem'));

  const nodes = [];
  for (let i = 0; i < n; i++) {
    const existing = existingKey(i);
    const key: { keyId: string; stellarKey: string; region: string; node?: Principal } = existing ?? (await nodeKey(i));
    const identityKey = await identity(join(ROOT, `node-${i}`, 'identity.pem'));
    nodes.push({ id: `node-${i}`, identityKey, emulated: !existing, ...key });
    log(
      `node-${i}: key ${key.keyId} ${existing ? '(AWS KMS, made beforehand)' : `created in kms-${i}`}, signer ${key.stellarKey}`,
    );
  }

  const horizon = new Horizon.Server(horizonUrl, { allowHttp: true });
  const accounts: string[] = [];
  for (let k = 0; k < operators; k++) {
    const master = Keypair.random();
    await httpJson(`${env.COSIGNER_FRIENDBOT_URL ?? `${horizonUrl}/friendbot`}?addr=${master.publicKey()}`);
    const { tx, safety } = signedFreshSetup(
      await horizon.loadAccount(master.publicKey()),
      master,
      {
        signers: nodes.map((x) => ({ key: x.stellarKey, weight: 1, node: x.id })),
        thresholds: { low: threshold, med: threshold, high: threshold },
      },
      { networkPassphrase: network, fee: '100', timeoutSeconds: 60 },
    );
    if (!safety.ok) log(`warning: operator account ${master.publicKey()}: ${setupWarning(safety)}`);
    await horizon.submitTransaction(tx);
    accounts.push(master.publicKey());
    log(`operator account ${master.publicKey()}: ${threshold}-of-${n}, master weight 0`);
  }

  const policy = demoPolicyYaml({
    network,
    account: accounts[0]!,
    maxXlm: env.COSIGNER_MAX_PAYMENT_XLM ?? '1000',
    extraAccounts: accounts.slice(1),
  });
  const nodeExtra = jsonEnv('COSIGNER_NODE_CONFIG');
  for (const [i, x] of nodes.entries()) {
    const dir = join(ROOT, `node-${i}`);
    await writePrivate(join(dir, 'policy.yaml'), policy);
    // Paths as the node container sees its volume (/data). JSON is YAML.
    const config = mergeConfig(
      {
        mode: 'development',
        nodeId: x.id,
        dataDir: '/data',
        // One URL: coordinator.url, as always; several replicas: coordinator.urls, a session with each.
        coordinator: nodeCoordinatorSection(coordinatorWs, [messageKey]),
        identityKeyFile: '/data/identity.pem',
        network,
        key: {
          type: 'aws-kms',
          keyId: x.keyId,
          region: x.region,
          // The emulator's node principal is written into the node's own volume (0600); with real AWS KMS the
          // node's credentials come from its environment or role, never from a file the setup wrote.
          ...(x.emulated && x.node
            ? {
                endpoint: kmsUrl(i),
                credentials: { accessKeyId: x.node.accessKeyId, secretAccessKey: x.node.secretAccessKey },
              }
            : {}),
          expectedAddress: x.stellarKey,
        },
        policy: '/data/policy.yaml',
      },
      nodeExtra,
    );
    await writePrivate(join(dir, 'node.yaml'), `${JSON.stringify(config, null, 2)}\n`);
  }

  const facts = {
    network,
    horizonUrl,
    accounts,
    threshold,
    nodes: nodes.map((x) => ({ id: x.id, stellarKey: x.stellarKey, identityKey: x.identityKey, kmsKeyId: x.keyId })),
    coordinatorMessageKey: messageKey,
  };
  await writePrivate(join(coordDir, 'cluster.json'), `${JSON.stringify(facts, null, 2)}\n`);
  // Last: its presence means the whole setup is done.
  const coordinator = mergeConfig(
    {
      network,
      horizonUrl,
      dataDir: '/data',
      messageKeyFile: '/data/message-key.pem',
      ...(env.COSIGNER_COORDINATOR_STORE ? { store: jsonEnv('COSIGNER_COORDINATOR_STORE') } : {}),
      nodes: nodes.map((x) => ({ id: x.id, identityKey: x.identityKey, stellarKey: x.stellarKey })),
    },
    jsonEnv('COSIGNER_COORDINATOR_CONFIG'),
  );
  await writePrivate(coordConfig, `${JSON.stringify(coordinator, null, 2)}\n`);
  log(`done: ${n} nodes, ${operators} operator account(s); public facts in the coordinator volume (cluster.json)`);
}

main().catch((e: unknown) => {
  process.stderr.write(`setup failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});

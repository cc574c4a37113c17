import { execFile, execFileSync } from 'node:child_process';
import { createDecipheriv, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { COSIGNER_BIN, REPO_ROOT, tempDir } from '@cosigner/testkit/process';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bytesSecret,
  type Finding,
  filesUnder,
  leaks,
  PUBLIC_VECTORS,
  pemSeed,
  type Secret,
  scanText,
  textSecret,
} from './scan.ts';
import { runStandaloneNode } from './standalone-node.ts';

const run = promisify(execFile);

/**
 * Key hygiene: no private key material in the repository, and during a real cluster run no seed, key
 * or credential anywhere but the one private file that must hold it. Secrets found are reported by file and line
 * (repository) or file (run), never printed.
 */

describe('key hygiene: the repository', () => {
  it('finds each kind of key material, by file and line (the scanner can fail)', () => {
    const seed = Keypair.random().secret();
    const pem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const aws = randomBytes(30).toString('base64');
    const hex = randomBytes(32).toString('hex');
    const text = [
      'harmless line',
      `const s = '${seed}';`,
      pem.trim(),
      `aws_secret_access_key = ${aws}`,
      `  "secretAccessKey": "${aws}",`,
      `masterSeed: ${hex}`,
      `const other = '${hex}'; // not named seed or secret`,
      `sec = 'S${'A'.repeat(55)}' // bad checksum`,
      `secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'`,
      `const rfc8032 = { secret: '${[...PUBLIC_VECTORS][0]}' }`,
    ].join('\n');
    expect(scanText('f.ts', text)).toEqual([
      { file: 'f.ts', line: 2, kind: 'Stellar secret seed (S... with a valid checksum)' },
      { file: 'f.ts', line: 3, kind: 'PEM private key' },
      { file: 'f.ts', line: 6, kind: 'AWS secret access key' },
      { file: 'f.ts', line: 7, kind: 'AWS secret access key' },
      { file: 'f.ts', line: 8, kind: '64-hex seed/secret assignment' },
    ]);
  });

  it('reports a known secret in any encoding outside its allowed file, and only there', () => {
    const seed = randomBytes(32);
    const secrets = [bytesSecret('a seed', seed, ['keys/seed.key']), textSecret('a token', 'tok-123456789', ['t.key'])];
    const files = new Map<string, Buffer>([
      ['keys/seed.key', Buffer.from(seed.toString('hex'))],
      ['t.key', Buffer.from('tok-123456789\n')],
      ['logs/a.log', Buffer.from(`{"msg":"x","k":"${seed.toString('base64url')}"}`)],
      ['logs/b.log', Buffer.from(`seed=${StrKey.encodeEd25519SecretSeed(seed)}`)],
      ['data.db', Buffer.concat([Buffer.from([0, 1]), seed, Buffer.from('tok-123456789')])],
      ['clean.log', Buffer.from('nothing here')],
    ]);
    expect(leaks(files, secrets)).toEqual([
      'logs/a.log: a seed',
      'logs/b.log: a seed',
      'logs/b.log:1: Stellar secret seed (S... with a valid checksum)',
      'data.db: a seed',
      'data.db: a token',
    ]);
  });

  it('holds no Stellar secret seed, PEM private key, AWS secret key or hex seed in any git-tracked file', async () => {
    const files = execFileSync('git', ['ls-files', '-z'], { cwd: REPO_ROOT, encoding: 'utf8' })
      .split('\0')
      .filter(Boolean);
    expect(files.length).toBeGreaterThan(100);
    const findings: Finding[] = [];
    let scanned = 0;
    for (const f of files) {
      // A tracked file deleted in the working tree (someone mid-edit) has nothing to scan.
      const content = await readFile(join(REPO_ROOT, f)).catch(() => undefined);
      if (!content || content.includes(0)) continue;
      scanned++;
      findings.push(...scanText(f, content.toString('utf8')));
    }
    expect(scanned).toBeGreaterThan(100);
    expect(findings.map((x) => `${x.file}:${x.line}: ${x.kind}`)).toEqual([]);
  });
});

describe('key hygiene: a real 2-of-3 cluster run', () => {
  let dir: string;
  let cluster: Cluster;
  let signedXdr: string;
  const environ: { name: string; env: Buffer }[] = [];

  beforeAll(async () => {
    dir = await tempDir('cosigner-hygiene-');
    cluster = await startCluster({ cosignerBin: COSIGNER_BIN, dir, nodes: 3, threshold: 2 });
    const dest = await cluster.fundedAccount();
    const p = await cluster.propose({ xdr: await cluster.paymentXdr({ destination: dest.publicKey(), amount: '5' }) });
    const done = await cluster.waitForProposal(p.id, { timeoutMs: 60_000 });
    expect(done.status).toBe('submitted');
    const txs = await cluster.horizon.transactions().forAccount(cluster.account.id).order('desc').limit(1).call();
    signedXdr = txs.records[0]!.envelope_xdr;
    for (const c of [...cluster.kms, cluster.ledger, cluster.coordinator, ...cluster.nodes]) {
      environ.push({ name: c.name, env: await readFile(`/proc/${c.pid}/environ`) });
    }
    await cluster.stop();
  }, 240_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  /** Every secret the run generated, with the files meant to hold it. */
  async function runSecrets(): Promise<Secret[]> {
    const secrets: Secret[] = [];
    for (let i = 0; i < cluster.kms.length; i++) {
      const kms = `kms-${i}`;
      const accounts = JSON.parse(await readFile(join(dir, kms, 'accounts.json'), 'utf8')) as {
        accounts: { principals: { role: string; secretAccessKey: string }[] }[];
      };
      for (const p of accounts.accounts.flatMap((a) => a.principals)) {
        // The launcher gives the dev node static credentials in its config file; the admin's stay with the emulator.
        const allowed = p.role === 'node' ? [`${kms}/accounts.json`, `node-${i}/node.yaml`] : [`${kms}/accounts.json`];
        secrets.push(textSecret(`${kms} ${p.role} AWS secret access key`, p.secretAccessKey, allowed));
      }
      const master = Buffer.from((await readFile(join(dir, kms, 'master.key'), 'utf8')).trim(), 'hex');
      expect(master).toHaveLength(32);
      secrets.push(bytesSecret(`${kms} master key`, master, [`${kms}/master.key`]));
      // The node's Stellar key, unsealed here (AES-256-GCM, AAD = key ARN) to prove the only copy on disk is sealed.
      const store = JSON.parse(await readFile(join(dir, kms, 'keys.json'), 'utf8')) as {
        keys: { arn: string; keyId: string; sealed: { iv: string; tag: string; ct: string } }[];
      };
      const key = store.keys.find((k) => k.keyId === cluster.nodeInfo[i]!.kmsKeyId)!;
      const d = createDecipheriv('aes-256-gcm', master, Buffer.from(key.sealed.iv, 'base64'));
      d.setAAD(Buffer.from(key.arn));
      d.setAuthTag(Buffer.from(key.sealed.tag, 'base64'));
      const seed = Buffer.concat([d.update(Buffer.from(key.sealed.ct, 'base64')), d.final()]);
      expect(Keypair.fromRawEd25519Seed(seed).publicKey()).toBe(cluster.nodeInfo[i]!.stellarKey);
      secrets.push(bytesSecret(`node-${i} Stellar signing seed`, seed, []));
    }
    for (let i = 0; i < cluster.nodes.length; i++) {
      const file = `node-${i}/identity.pem`;
      const pem = await readFile(join(dir, file), 'utf8');
      secrets.push(
        textSecret(`${file} PEM`, pem.trim(), [file]),
        bytesSecret(`${file} seed`, pemSeed(pem), [file], false),
      );
    }
    const msgKey = 'coordinator/message-key.pem';
    const pem = await readFile(join(dir, msgKey), 'utf8');
    secrets.push(
      textSecret(`${msgKey} PEM`, pem.trim(), [msgKey]),
      bytesSecret(`${msgKey} seed`, pemSeed(pem), [msgKey], false),
    );
    secrets.push(textSecret('coordinator admin API key', cluster.apiKey, [relative(dir, cluster.adminKeyFile)]));
    const callbackKey = 'coordinator/callback.key';
    const callbackSecret = (await readFile(join(dir, callbackKey), 'utf8')).trim();
    secrets.push(textSecret('coordinator callback HMAC secret', callbackSecret, [callbackKey]));
    return secrets;
  }

  it('keeps every seed, key and credential in its own private file only: not in logs, databases or other files', async () => {
    const secrets = await runSecrets();
    // Per emulator: two credentials, master key, node seed; per node: identity PEM and seed; coordinator: 4.
    expect(secrets).toHaveLength(3 * 4 + 3 * 2 + 4);
    const files = new Map<string, Buffer>();
    for (const f of await filesUnder(dir)) files.set(relative(dir, f), await readFile(f));
    // The run did write logs and databases, so the scan covers them.
    expect([...files.keys()].filter((f) => f.startsWith('logs/')).length).toBeGreaterThanOrEqual(8);
    expect([...files.keys()].some((f) => f.startsWith('node-0/') && /\.(db|sqlite)/.test(f))).toBe(true);
    expect(leaks(files, secrets)).toEqual([]);
    for (const s of secrets) {
      for (const file of s.allowedIn) {
        // Each secret is where it is expected (so the scan above looked for the right bytes), in a 0600 file.
        if (s.literal)
          expect(
            s.forms.some((f) => files.get(file)?.includes(f)),
            `${s.label} in ${file}`,
          ).toBe(true);
        expect((await stat(join(dir, file))).mode & 0o077, `${file} mode`).toBe(0);
      }
    }
  });

  it('puts no secret in any process environment', async () => {
    expect(environ.map((e) => e.name)).toHaveLength(3 + 1 + 1 + 3);
    const secrets = await runSecrets();
    const found: string[] = [];
    for (const { name, env } of environ) {
      for (const s of secrets) if (s.forms.some((f) => env.includes(f))) found.push(`${name}: ${s.label}`);
      for (const f of scanText(name, env.toString('latin1').replaceAll('\0', '\n'))) found.push(`${name}: ${f.kind}`);
    }
    expect(found).toEqual([]);
  });

  it('every KMS Sign of a node matches a signature.released entry of its own audit log (the CloudTrail reconciliation)', async () => {
    // docs/operations/aws-kms.md: match each successful Sign with a signature.released entry written within seconds
    // of it. The emulator's audit.jsonl has CloudTrail's shape; the node's audit log is in its ledger database.
    let signs = 0;
    for (let i = 0; i < cluster.nodes.length; i++) {
      const trail = (await readFile(join(dir, `kms-${i}`, 'audit.jsonl'), 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map(
          (l) => JSON.parse(l) as { eventTime: string; eventName: string; errorCode?: string; principalArn?: string },
        );
      const kmsSigns = trail.filter((e) => e.eventName === 'Sign' && e.errorCode === undefined);
      for (const e of kmsSigns) expect(e.principalArn).toMatch(/:role\/cosigner-node$/);
      const db = new Database(join(dir, `node-${i}`, 'ledger.sqlite'), { readonly: true });
      const released = db.prepare("SELECT at FROM audit WHERE type = 'signature.released' ORDER BY seq").all() as {
        at: number;
      }[];
      db.close();
      expect(released).toHaveLength(kmsSigns.length);
      kmsSigns.forEach((e, k) => {
        const lag = released[k]!.at - Date.parse(e.eventTime);
        expect(lag, `node-${i} Sign ${k}: audit entry ${lag} ms after the KMS call`).toBeGreaterThanOrEqual(-1000);
        expect(lag).toBeLessThan(5_000);
      });
      const verify = await run(process.execPath, [
        COSIGNER_BIN,
        'node',
        'audit',
        'verify',
        '--config',
        cluster.nodeInfo[i]!.configFile,
      ]);
      expect(verify.stdout).toContain('audit chain ok');
      signs += kmsSigns.length;
    }
    // The payment needed two signatures; a third node may have answered after the quorum.
    expect(signs).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('never logs the signed envelope: node and coordinator logs (info level) show the hash, not the XDR', async () => {
    expect(signedXdr.length).toBeGreaterThan(200);
    const names = ['coordinator', ...cluster.nodes.map((n) => n.name)];
    let signedLines = 0;
    for (const name of names) {
      const log = await readFile(join(dir, 'logs', `${name}.log`), 'utf8');
      const entries = log
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: number; msg?: string });
      expect(entries.some((e) => e.level === 30)).toBe(true);
      if (name.startsWith('node-')) signedLines += entries.filter((e) => e.msg === 'signed').length;
      expect(log.includes(signedXdr), `${name}.log holds the signed envelope`).toBe(false);
      // Nor a large piece of it (a log line that truncates the envelope still leaks its signatures).
      expect(log.includes(signedXdr.slice(-120)), `${name}.log holds the envelope tail`).toBe(false);
    }
    expect(signedLines).toBeGreaterThanOrEqual(2);
  });
});

describe('key hygiene: a node with the local development backend', () => {
  let dir: string;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps the seed in its 0600 key file only: not in the data directory, the output or the environment', async () => {
    dir = await tempDir('cosigner-hygiene-local-');
    const node = await runStandaloneNode({ dir, key: { type: 'local', keyFile: join(dir, 'stellar.key') } });
    const seed = await readFile(join(dir, 'stellar.key'));
    expect(seed).toHaveLength(32);
    expect((await stat(join(dir, 'stellar.key'))).mode & 0o077).toBe(0);
    // The node started on this key: it logged the address derived from it.
    expect(node.output).toContain(Keypair.fromRawEd25519Seed(seed).publicKey());
    const identity = await readFile(join(node.dataDir, 'identity.pem'), 'utf8');
    const secrets = [
      bytesSecret('local signing seed', seed, ['stellar.key']),
      textSecret('identity PEM', identity.trim(), ['data/identity.pem']),
      bytesSecret('identity seed', pemSeed(identity), ['data/identity.pem'], false),
    ];
    const files = new Map<string, Buffer>();
    for (const f of await filesUnder(dir)) files.set(relative(dir, f), await readFile(f));
    expect([...files.keys()].some((f) => f.startsWith('data/') && /\.(db|sqlite)/.test(f))).toBe(true);
    files.set('(process output)', Buffer.from(node.output));
    files.set('(process environment)', node.environ);
    expect(leaks(files, secrets)).toEqual([]);
  }, 120_000);
});

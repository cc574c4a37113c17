import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CosignerError } from '@cosigner/errors/errors';
import { createKmsClient, createKmsKey } from '@cosigner/keys/aws-kms/kms-signer';
import { keysErrors } from '@cosigner/keys/errors';
import { createSigner } from '@cosigner/keys/factory';
import { createLocalKey } from '@cosigner/keys/local/local-signer';
import { createPkcs11Key, readPkcs11Pin } from '@cosigner/keys/pkcs11/pkcs11-signer';
import type { SignerConfig, SignerKind } from '@cosigner/keys/signer';
import { type Command, Option } from 'commander';

/**
 * `cosigner keys create|show`: operator commands that create a node's Stellar signing key where it lives (KMS,
 * HSM, or a development file) and show its address. They print JSON: backend, key id, public key (hex) and
 * G... address. Never key material: KMS and a non-extractable HSM key cannot release it, and the local seed
 * stays in its 0600 file.
 *
 * AWS credentials come from the standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO,
 * container or instance role); `--endpoint` points at the KMS emulator in development.
 */

export interface KeysFlags {
  backend: SignerKind;
  /** aws-kms */
  endpoint?: string;
  region?: string;
  alias?: string;
  description?: string;
  tag?: string[];
  /** pkcs11 */
  module?: string;
  tokenLabel?: string;
  pinFile?: string;
  pinEnv?: string;
  keyIdHex?: string;
  label?: string;
  /** local */
  keyFile?: string;
  /** show: KMS key id/ARN/alias, PKCS#11 CKA_ID hex, or the local key file */
  keyId?: string;
}

export interface KeyReport {
  backend: SignerKind;
  keyId: string;
  address: string;
  publicKey: string;
  alias?: string;
}

function need<T>(value: T | undefined, flag: string, backend: string): T {
  if (value === undefined || value === '') {
    throw keysErrors.error('KEYS_BAD_CONFIG', { flag }, { message: `${flag} is required with --backend ${backend}.` });
  }
  return value;
}

function region(flags: KeysFlags, env: NodeJS.ProcessEnv): string {
  const r = flags.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  return need(r, '--region (or AWS_REGION)', 'aws-kms');
}

function tags(list: string[] | undefined): Record<string, string> | undefined {
  if (!list?.length) return undefined;
  const out: Record<string, string> = {};
  for (const t of list) {
    const i = t.indexOf('=');
    if (i <= 0) throw keysErrors.error('KEYS_BAD_CONFIG', { tag: t }, { message: `--tag takes key=value, got ${t}.` });
    out[t.slice(0, i)] = t.slice(i + 1);
  }
  return out;
}

/** Create a key in the chosen backend. */
export async function keysCreate(flags: KeysFlags, env: NodeJS.ProcessEnv = process.env): Promise<KeyReport> {
  switch (flags.backend) {
    case 'aws-kms': {
      const client = createKmsClient({ region: region(flags, env), endpoint: flags.endpoint });
      try {
        const made = await createKmsKey(client, {
          ...(flags.alias ? { alias: flags.alias } : {}),
          ...(flags.description ? { description: flags.description } : {}),
          ...(flags.tag?.length ? { tags: tags(flags.tag) } : {}),
        });
        return {
          backend: 'aws-kms',
          keyId: made.keyArn,
          address: made.address,
          publicKey: made.publicKey.toString('hex'),
          ...(made.alias ? { alias: made.alias } : {}),
        };
      } finally {
        client.destroy();
      }
    }
    case 'pkcs11': {
      const made = await createPkcs11Key({
        module: need(flags.module, '--module', 'pkcs11'),
        tokenLabel: need(flags.tokenLabel, '--token-label', 'pkcs11'),
        pin: await readPkcs11Pin(flags, env),
        ...(flags.keyIdHex ? { keyIdHex: flags.keyIdHex } : {}),
        ...(flags.label ? { label: flags.label } : {}),
      });
      return { backend: 'pkcs11', keyId: made.keyId, address: made.address, publicKey: made.publicKey.toString('hex') };
    }
    case 'local': {
      const keyFile = resolve(need(flags.keyFile, '--key-file', 'local'));
      const made = await createLocalKey(keyFile, { env });
      return { backend: 'local', keyId: made.keyId, address: made.address, publicKey: made.publicKey.toString('hex') };
    }
  }
}

/** Open the key read-only (DescribeKey/GetPublicKey, C_FindObjects, the file) and report it. */
export async function keysShow(flags: KeysFlags, env: NodeJS.ProcessEnv = process.env): Promise<KeyReport> {
  let config: SignerConfig;
  switch (flags.backend) {
    case 'aws-kms':
      config = {
        type: 'aws-kms',
        keyId: need(flags.keyId, '--key-id', 'aws-kms'),
        region: region(flags, env),
        ...(flags.endpoint ? { endpoint: flags.endpoint } : {}),
      };
      break;
    case 'pkcs11':
      config = {
        type: 'pkcs11',
        module: need(flags.module, '--module', 'pkcs11'),
        tokenLabel: need(flags.tokenLabel, '--token-label', 'pkcs11'),
        keyIdHex: need(flags.keyId ?? flags.keyIdHex, '--key-id (CKA_ID hex)', 'pkcs11'),
        sessions: 1,
        ...(flags.pinFile !== undefined ? { pinFile: flags.pinFile } : {}),
        ...(flags.pinEnv !== undefined ? { pinEnv: flags.pinEnv } : {}),
      };
      break;
    case 'local': {
      const keyFile = resolve(need(flags.keyFile ?? flags.keyId, '--key-file', 'local'));
      // `show` never creates: the local signer would make a missing file.
      await stat(keyFile).catch(() => {
        throw keysErrors.error('KEYS_KEY_NOT_FOUND', { keyFile });
      });
      config = { type: 'local', keyFile };
      break;
    }
  }
  const signer = await createSigner(config, { production: false, env });
  try {
    return {
      backend: signer.kind,
      keyId: signer.keyId,
      address: signer.address,
      publicKey: signer.publicKey.toString('hex'),
    };
  } finally {
    await signer.close();
  }
}

/** A coded error reads `CODE: sentence` on the command line, so scripts can match the code. */
async function printJson(fn: () => Promise<KeyReport>): Promise<void> {
  try {
    process.stdout.write(`${JSON.stringify(await fn())}\n`);
  } catch (e) {
    if (e instanceof CosignerError) throw new Error(`${e.code}: ${e.message}`, { cause: e });
    throw e;
  }
}

function backendOption(): Option {
  return new Option('--backend <backend>', 'where the key lives')
    .choices(['aws-kms', 'pkcs11', 'local'])
    .makeOptionMandatory();
}

function addBackendFlags(cmd: Command): Command {
  return cmd
    .addOption(backendOption())
    .option('--endpoint <url>', 'aws-kms: KMS endpoint (the emulator in development; omit for AWS)')
    .option('--region <region>', 'aws-kms: region (default AWS_REGION)')
    .option('--module <path>', 'pkcs11: PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so')
    .option('--token-label <label>', 'pkcs11: token label')
    .option('--pin-file <path>', 'pkcs11: file holding the user PIN (mode 0600)')
    .option('--pin-env <name>', 'pkcs11: environment variable holding the user PIN')
    .option('--key-file <path>', 'local: development key file (32-byte seed, mode 0600)');
}

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('create and show node signing keys where they live (KMS, HSM)');
  addBackendFlags(keys.command('create').description('create a signing key; prints its Stellar address and key id'))
    .option('--alias <alias>', 'aws-kms: alias for the new key (alias/ prefix optional)')
    .option('--description <text>', 'aws-kms: key description')
    .option('--tag <key=value...>', 'aws-kms: tags for the new key')
    .option('--key-id-hex <hex>', 'pkcs11: CKA_ID for the new key pair (default: random 16 bytes)')
    .option('--label <label>', 'pkcs11: CKA_LABEL for the new key pair')
    .addHelpText(
      'after',
      '\nPrints {backend, keyId, address, publicKey} as JSON; never key material.\n' +
        'AWS credentials come from the standard chain (env, profile, role). Needs kms:CreateKey, kms:GetPublicKey\n' +
        '(and kms:CreateAlias with --alias).',
    )
    .action((flags: KeysFlags) => printJson(() => keysCreate(flags)));
  addBackendFlags(keys.command('show').description("show a key's Stellar address, backend and key id"))
    .option('--key-id <id>', 'aws-kms: key id, ARN or alias; pkcs11: CKA_ID hex; local: the key file')
    .action((flags: KeysFlags) => printJson(() => keysShow(flags)));
}

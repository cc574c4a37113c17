import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { assertPrivateFile, writePrivateFile } from '@cosigner/runtime/secrets';
import { parse as parseYaml } from 'yaml';
import { kmsErrors } from './errors.ts';

/** `admin` manages keys of its account; `node` is a cosigner node's runtime identity (sign only). */
export type PrincipalRole = 'admin' | 'node';

/** One IAM user or role of a simulated account, with its long-term access key. */
export interface AccountPrincipal {
  name: string;
  role: PrincipalRole;
  /** `arn:aws:iam::<accountId>:user/<name>` or `...:role/<name>`. */
  arn: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** One simulated AWS account. `region` is the region its clients are expected to use. */
export interface Account {
  name: string;
  accountId: string;
  region: string;
  principals: AccountPrincipal[];
}

/** The accounts file (`<data-dir>/accounts.json` by default, or `--config`): JSON or YAML. */
export interface AccountsFile {
  accounts: Account[];
}

const ACCOUNT_ID = /^\d{12}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
// IAM access key ids are 16-128 characters of [A-Z0-9] (IAM API AccessKey.AccessKeyId).
const ACCESS_KEY_ID = /^[A-Z0-9]{16,128}$/;
const IAM_ARN = /^arn:aws:iam::(\d{12}):(user|role)\/[\w+=,.@/-]{1,512}$/;
const ROLES: readonly PrincipalRole[] = ['admin', 'node'];

function invalid(source: string, field: string, problem: string): Error {
  return kmsErrors.error(
    'KMS_ACCOUNTS_INVALID',
    { source, field },
    { message: `The accounts file ${source} is not valid: ${field} ${problem}.` },
  );
}

function str(v: Record<string, unknown>, key: string, at: string, source: string, re?: RegExp): string {
  const x = v[key];
  if (typeof x !== 'string' || x.length === 0) throw invalid(source, `${at}.${key}`, 'must be a non-empty string');
  if (re && !re.test(x)) throw invalid(source, `${at}.${key}`, `does not match ${re.source}`);
  return x;
}

function obj(v: unknown, at: string, source: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(source, at, 'must be an object');
  return v as Record<string, unknown>;
}

/**
 * Check a parsed accounts document and return it typed. Account ids and access key ids must be unique,
 * every principal ARN must belong to its own account, and each account needs an admin.
 * @throws KMS_ACCOUNTS_INVALID naming the first bad field.
 */
export function parseAccounts(value: unknown, source: string): AccountsFile {
  const root = obj(value, '(root)', source);
  const list = root.accounts;
  if (!Array.isArray(list) || list.length === 0) throw invalid(source, 'accounts', 'must be a non-empty array');
  const ids = new Set<string>();
  const keyIds = new Set<string>();
  const accounts = list.map((a, i): Account => {
    const at = `accounts[${i}]`;
    const ao = obj(a, at, source);
    const accountId = str(ao, 'accountId', at, source, ACCOUNT_ID);
    if (ids.has(accountId)) throw invalid(source, `${at}.accountId`, 'is used twice');
    ids.add(accountId);
    const plist = ao.principals;
    if (!Array.isArray(plist) || plist.length === 0) {
      throw invalid(source, `${at}.principals`, 'must be a non-empty array');
    }
    const principals = plist.map((p, j): AccountPrincipal => {
      const pat = `${at}.principals[${j}]`;
      const po = obj(p, pat, source);
      const role = po.role;
      if (typeof role !== 'string' || !ROLES.includes(role as PrincipalRole)) {
        throw invalid(source, `${pat}.role`, 'must be "admin" or "node"');
      }
      const arn = str(po, 'arn', pat, source, IAM_ARN);
      if (IAM_ARN.exec(arn)?.[1] !== accountId) throw invalid(source, `${pat}.arn`, 'belongs to another account');
      const accessKeyId = str(po, 'accessKeyId', pat, source, ACCESS_KEY_ID);
      if (keyIds.has(accessKeyId)) throw invalid(source, `${pat}.accessKeyId`, 'is used twice');
      keyIds.add(accessKeyId);
      const secretAccessKey = str(po, 'secretAccessKey', pat, source);
      if (secretAccessKey.length < 16) throw invalid(source, `${pat}.secretAccessKey`, 'is shorter than 16 characters');
      return { name: str(po, 'name', pat, source), role: role as PrincipalRole, arn, accessKeyId, secretAccessKey };
    });
    if (!principals.some((p) => p.role === 'admin')) throw invalid(source, `${at}.principals`, 'has no admin');
    return { name: str(ao, 'name', at, source), accountId, region: str(ao, 'region', at, source, REGION), principals };
  });
  return { accounts };
}

/**
 * Read and check an accounts file (JSON, or YAML when the name ends in .yaml/.yml). It holds secret access
 * keys, so it must be readable by its owner only.
 * @throws KMS_ACCOUNTS_INVALID, RUNTIME_FILE_NOT_PRIVATE
 */
export async function readAccountsFile(path: string): Promise<AccountsFile> {
  await assertPrivateFile(path, 'KMS emulator accounts file');
  const text = await readFile(path, 'utf8');
  let doc: unknown;
  try {
    doc = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch {
    throw invalid(path, '(root)', 'is not parseable JSON or YAML');
  }
  return parseAccounts(doc, path);
}

// Access key ids look like AWS's: "AKIA" + 16 characters of the RFC 4648 base32 alphabet.
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function accessKeyId(): string {
  return `AKIA${Array.from(randomBytes(16), (b) => BASE32[b & 31]).join('')}`;
}
// 40 characters like an AWS secret access key (30 random bytes, base64).
function secretAccessKey(): string {
  return randomBytes(30).toString('base64');
}

/**
 * `n` development accounts: node-a (111111111111), node-b (222222222222), ... each with an `admin` user and a
 * `cosigner-node` role, all in us-east-1, with fresh random credentials.
 */
export function generateAccounts(n: number): AccountsFile {
  if (!Number.isInteger(n) || n < 1 || n > 26) {
    throw kmsErrors.error('KMS_ACCOUNTS_INVALID', { accounts: n }, { message: '--accounts must be 1 to 26.' });
  }
  const accounts = Array.from({ length: n }, (_, i): Account => {
    const accountId = i < 9 ? String(i + 1).repeat(12) : String(100_000_000_000 + i);
    return {
      name: `node-${String.fromCharCode(97 + i)}`,
      accountId,
      region: 'us-east-1',
      principals: [
        {
          name: 'admin',
          role: 'admin',
          arn: `arn:aws:iam::${accountId}:user/admin`,
          accessKeyId: accessKeyId(),
          secretAccessKey: secretAccessKey(),
        },
        {
          name: 'node',
          role: 'node',
          arn: `arn:aws:iam::${accountId}:role/cosigner-node`,
          accessKeyId: accessKeyId(),
          secretAccessKey: secretAccessKey(),
        },
      ],
    };
  });
  return { accounts };
}

/**
 * The embedded defaults: reuse `<dataDir>/accounts.json` when it exists, else generate `n` accounts and write
 * it with mode 0600. Returns the path so the caller can log it (never the secrets).
 */
export async function ensureAccountsFile(
  dataDir: string,
  n: number,
): Promise<{ path: string; accounts: AccountsFile; created: boolean }> {
  const path = join(dataDir, 'accounts.json');
  const exists = await stat(path).then(
    () => true,
    () => false,
  );
  if (exists) return { path, accounts: await readAccountsFile(path), created: false };
  const accounts = generateAccounts(n);
  await writePrivateFile(path, `${JSON.stringify(accounts, null, 2)}\n`);
  return { path, accounts, created: true };
}

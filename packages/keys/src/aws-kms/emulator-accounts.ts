import { readSecretFile } from '@cosigner/runtime/secrets';
import { keysErrors } from '../errors.ts';

/**
 * Development helper: read the accounts file the KMS emulator writes (mode 0600) and pick one principal's
 * static credentials, for tests, benchmarks and demos. Production never uses this: nodes there take the
 * standard AWS credential chain (instance/container role, web identity).
 */

export interface EmulatorPrincipal {
  name: string;
  role: string;
  arn: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface EmulatorAccount {
  name: string;
  accountId: string;
  region: string;
  principals: EmulatorPrincipal[];
}

/** @throws CosignerError KEYS_BAD_CONFIG, RUNTIME_FILE_NOT_PRIVATE */
export async function readEmulatorAccounts(path: string): Promise<EmulatorAccount[]> {
  const parsed = JSON.parse(await readSecretFile(path, 'KMS emulator accounts')) as { accounts?: unknown };
  if (!Array.isArray(parsed.accounts)) {
    throw keysErrors.error('KEYS_BAD_CONFIG', { path }, { message: `${path} has no accounts list.` });
  }
  return parsed.accounts as EmulatorAccount[];
}

/**
 * The region and credentials of `role` in account `account` (name like node-a, or the 12-digit id).
 * @throws CosignerError KEYS_BAD_CONFIG when there is no such account or principal
 */
export function emulatorCredentials(
  accounts: EmulatorAccount[],
  account: string,
  role: 'admin' | 'node',
): { region: string; accountId: string; credentials: { accessKeyId: string; secretAccessKey: string } } {
  const acct = accounts.find((a) => a.name === account || a.accountId === account);
  const principal = acct?.principals.find((p) => p.role === role);
  if (!acct || !principal) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { account, role },
      { message: `The emulator accounts file has no ${role} principal in account ${account}.` },
    );
  }
  return {
    region: acct.region,
    accountId: acct.accountId,
    credentials: { accessKeyId: principal.accessKeyId, secretAccessKey: principal.secretAccessKey },
  };
}

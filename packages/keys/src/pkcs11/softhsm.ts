import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { keysErrors } from '../errors.ts';

/**
 * Development and test helper: a SoftHSM2 token store in a directory of its own, so tests, benchmarks and
 * demos never touch the machine's token store (/var/lib/softhsm). SoftHSM2 picks its store from the
 * SOFTHSM2_CONF file (softhsm2.conf(5)); the module reads it at C_Initialize, so set it in the environment
 * of the process that loads the module before its first signer opens.
 */

const run = promisify(execFile);

/** Where Debian/Ubuntu's softhsm2 package puts the module. */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** Write `<dir>/softhsm2.conf` with its token directory under `dir`; returns the conf path. */
export async function createSoftHsmStore(dir: string): Promise<string> {
  const tokenDir = join(dir, 'tokens');
  await mkdir(tokenDir, { recursive: true, mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  await writeFile(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`, {
    mode: 0o600,
  });
  return conf;
}

/**
 * Initialise a fresh token labelled `label` in the store `conf` with `softhsm2-util --init-token --free`.
 * @throws CosignerError KEYS_BAD_CONFIG when softhsm2-util is missing or fails (install the softhsm2 package)
 */
export async function initSoftHsmToken(
  conf: string,
  params: { label: string; pin: string; soPin?: string; util?: string },
): Promise<void> {
  const util = params.util ?? 'softhsm2-util';
  try {
    await run(
      util,
      [
        '--init-token',
        '--free',
        '--label',
        params.label,
        '--so-pin',
        params.soPin ?? randomBytes(8).toString('hex'),
        '--pin',
        params.pin,
      ],
      { env: { ...process.env, SOFTHSM2_CONF: conf } },
    );
  } catch (e) {
    throw keysErrors.error(
      'KEYS_BAD_CONFIG',
      { util, label: params.label },
      { message: `${util} could not initialise a SoftHSM2 token (is the softhsm2 package installed?).`, cause: e },
    );
  }
}

import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, type RunningProcess, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const SCRIPT = join(REPO_ROOT, 'services/kms-emulator/scripts/awscli-demo.sh');

// The AWS CLI as a second, independent client (Debian package `awscli`; .ci/run installs it). This suite runs
// with COSIGNER_APT_SUITES=1, where the CLI must be present: a missing `aws` fails rather than skips.
describe('the AWS CLI against a real kms-emulator process', () => {
  let dir: string;
  let proc: RunningProcess;
  beforeAll(async () => {
    dir = await tempDir('kms-emu-awscli-');
    proc = await startCosignerProcess({ args: ['kms-emulator', '--data-dir', join(dir, 'kms')] });
  });
  afterAll(async () => {
    await proc?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a key, signs, verifies (KMS and OpenSSL) and is refused where the policy says so', async () => {
    const version = await run('aws', ['--version']);
    expect(`${version.stdout}${version.stderr}`).toMatch(/^aws-cli\//);
    const { stdout } = await run('bash', [SCRIPT, proc.url, String(proc.ready.accountsFile)], { timeout: 240_000 });
    expect(stdout).toMatch(/^created key [0-9a-f-]{36}$/m);
    expect(stdout).toContain('kms verify: True');
    expect(stdout).toContain('openssl verifies the signature under the KMS public key');
    expect(stdout.match(/^refused as expected: AccessDeniedException$/gm)).toHaveLength(3);
    expect(stdout).toContain('refused as expected: KMSInvalidSignatureException');
    expect(stdout.trim().endsWith('awscli-demo: ok')).toBe(true);
  }, 300_000);
});

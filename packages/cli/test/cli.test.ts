import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { COSIGNER_BIN } from '@cosigner/testkit/process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildProgram, main } from '../src/main.ts';

const run = promisify(execFile);

describe('cosigner CLI', () => {
  afterEach(() => {
    process.exitCode = undefined;
    vi.restoreAllMocks();
  });

  it('lists its commands with --help, as a real process', async () => {
    const { stdout } = await run(process.execPath, [COSIGNER_BIN, '--help']);
    for (const cmd of ['kms-emulator', 'ledger-sim', 'coordinator', 'node', 'keys']) {
      expect(stdout).toMatch(new RegExp(`^\\s+${cmd}\\b`, 'm'));
    }
  });

  it('gives every command a description and a --help', () => {
    const program = buildProgram();
    for (const cmd of program.commands) {
      expect(cmd.description().length, cmd.name()).toBeGreaterThan(0);
      expect(cmd.helpInformation()).toContain('--help');
    }
  });

  it('fails with a clear message on an unknown command, without throwing', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await main(['node', 'cosigner', 'no-such-command']);
    expect(process.exitCode).toBe(1);
    expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(/unknown command/);
  });

  it('reports an action failure as one line and exit code 1', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const program = buildProgram();
    program.command('boom-test').action(() => {
      throw new Error('the field --foo is missing');
    });
    await main(['node', 'cosigner', 'boom-test'], program);
    expect(process.exitCode).toBe(1);
    expect(err).toHaveBeenCalledWith('cosigner: the field --foo is missing\n');
  });
});

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { COSIGNER_BIN } from '@cosigner/testkit/process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildProgram, COMMANDS, main, requestedCommand, wantsMembership } from '../src/main.ts';

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

  it('gives every command a description and a --help', async () => {
    const program = await buildProgram([], { all: true });
    for (const cmd of program.commands) {
      expect(cmd.description().length, cmd.name()).toBeGreaterThan(0);
      expect(cmd.helpInformation()).toContain('--help');
    }
  });

  it('loads only the requested command module; the others are listed by their summary', async () => {
    expect(requestedCommand(['node', 'cosigner', '--help'])).toBeUndefined();
    expect(requestedCommand(['node', 'cosigner', 'keys', 'show', '--backend', 'local'])).toBe('keys');
    const program = await buildProgram(['node', 'cosigner', 'keys', 'show']);
    const keys = program.commands.find((c) => c.name() === 'keys')!;
    expect(keys.commands.map((c) => c.name())).toEqual(['create', 'show']);
    const coordinator = program.commands.find((c) => c.name() === 'coordinator')!;
    expect(coordinator.commands).toHaveLength(0);
    expect(coordinator.options).toHaveLength(0);
    expect(program.commands.map((c) => c.name())).toEqual(COMMANDS.map((c) => c.name));
  });

  it('registers `node add|remove|roster` only when argv can name them or asks for help', async () => {
    const sub = async (argv: string[]): Promise<string[]> =>
      (await buildProgram(['node', 'cosigner', ...argv])).commands
        .find((c) => c.name() === 'node')!
        .commands.map((c) => c.name());
    // A running node (`cosigner node --config ...`, `cosigner node start`) does not load them, nor their SDK root.
    const running = await sub(['node', '--config', 'node.yaml']);
    expect(running).toContain('init');
    expect(running).not.toContain('add');
    expect(running).not.toContain('roster');
    for (const argv of [
      ['node', 'add', '--node-id', 'n4'],
      ['node', '--horizon-url', 'http://h', 'remove'],
      ['node', 'roster', 'list'],
      ['node', '--help'],
      ['node', '-h'],
      ['help', 'node'],
    ]) {
      expect(await sub(argv), argv.join(' ')).toEqual(expect.arrayContaining(['init', 'add', 'remove', 'roster']));
    }
    expect(wantsMembership({ argv: [], all: true })).toBe(true);
    expect(wantsMembership({ argv: ['node', 'cosigner', 'node', 'pending'], all: false })).toBe(false);
  });

  it('lists a summary that starts like the full description of each command', async () => {
    const full = await buildProgram(['node', 'cosigner', 'help'], {});
    for (const c of COMMANDS) {
      const loaded = full.commands.find((x) => x.name() === c.name)!;
      expect(loaded.commands.length + loaded.options.length, c.name).toBeGreaterThan(0);
      const words = c.summary.split(' ').slice(0, 3).join(' ');
      expect(loaded.description(), c.name).toContain(words);
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
    const program = await buildProgram();
    program.command('boom-test').action(() => {
      throw new Error('the field --foo is missing');
    });
    await main(['node', 'cosigner', 'boom-test'], program);
    expect(process.exitCode).toBe(1);
    expect(err).toHaveBeenCalledWith('cosigner: the field --foo is missing\n');
  });
});

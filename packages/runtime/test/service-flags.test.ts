import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { intOption, repeatable, type ServiceFlags, serviceFlags } from '../src/service-flags.ts';

function program(spec: Parameters<typeof serviceFlags>[1]): { p: Command; seen: () => ServiceFlags } {
  let flags: ServiceFlags = {};
  const p = new Command().exitOverride();
  const cmd = p
    .command('svc')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  serviceFlags(cmd, spec).action((o: ServiceFlags) => {
    flags = o;
  });
  return { p, seen: () => flags };
}

const full = {
  config: { help: 'config file' },
  port: { help: 'port', default: 4566 },
  host: { help: 'host', default: '127.0.0.1' },
  allowedHost: { help: 'extra Host names' },
  readyFile: { help: 'ready file' },
  dataDir: { help: 'data dir', default: '.cosigner/x' },
};

describe('serviceFlags', () => {
  it('declares the common flags with the service defaults and reads them', async () => {
    const a = program(full);
    await a.p.parseAsync(['node', 'x', 'svc']);
    expect(a.seen()).toEqual({ port: 4566, host: '127.0.0.1', dataDir: '.cosigner/x' });
    const b = program(full);
    await b.p.parseAsync([
      'node',
      'x',
      'svc',
      '--config',
      'c.yaml',
      '--port',
      '0',
      '--host',
      '0.0.0.0',
      '--allowed-host',
      'kms-0',
      '--allowed-host',
      'kms-1',
      '--ready-file',
      'r.json',
      '--data-dir',
      'd',
    ]);
    expect(b.seen()).toEqual({
      config: 'c.yaml',
      port: 0,
      host: '0.0.0.0',
      allowedHost: ['kms-0', 'kms-1'],
      readyFile: 'r.json',
      dataDir: 'd',
    });
  });

  it('leaves out what the spec leaves out, and has no default where the service gives none', async () => {
    const { p, seen } = program({
      port: { help: 'port' },
      host: { help: 'host' },
      readyFile: { help: 'ready' },
      dataDir: { help: 'dir' },
    });
    const help = p.commands[0]!.helpInformation();
    expect(help).toContain('--ready-file <file>');
    expect(help).not.toContain('--config');
    expect(help).not.toContain('--allowed-host');
    await p.parseAsync(['node', 'x', 'svc']);
    expect(seen()).toEqual({});
    await expect(p.parseAsync(['node', 'x', 'svc', '--config', 'c'])).rejects.toMatchObject({
      code: 'commander.unknownOption',
    });
  });

  it('refuses a port that is not a whole number from 0 to 65535, naming the flag', async () => {
    for (const bad of ['-1', '65536', 'x', '1.5', '1e3', '0x10', '']) {
      const { p } = program(full);
      await expect(p.parseAsync(['node', 'x', 'svc', '--port', bad]), bad).rejects.toMatchObject({
        code: 'commander.invalidArgument',
        message: expect.stringMatching(/--port must be 0 to 65535/),
      });
    }
  });
});

describe('intOption and repeatable', () => {
  it('accepts the bounds and refuses outside them', () => {
    const parse = intOption('--accounts', 1, 26);
    expect(parse('1')).toBe(1);
    expect(parse('26')).toBe(26);
    expect(() => parse('0')).toThrow(/--accounts must be 1 to 26/);
    expect(() => parse('27')).toThrow(/--accounts must be 1 to 26/);
  });

  it('collects repeated values in order', () => {
    expect(repeatable('b', repeatable('a'))).toEqual(['a', 'b']);
  });
});

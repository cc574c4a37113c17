import { rawRequest } from '@cosigner/testkit/http';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { build } from '../src/app.ts';
import { register } from '../src/command.ts';
import { resolveConfig } from '../src/config.ts';

describe('ledger-sim listener', () => {
  it('answers only loopback, localhost and its --allowed-host names over a real socket (DNS rebinding guard)', async () => {
    const app = await build({ closeMs: 0, allowedHosts: ['ledger'], listenHost: '127.0.0.1' });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = new URL(url).port;
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `ledger:${port}`, `[::1]:${port}`]) {
        expect((await rawRequest(url, { path: '/', headers: { host } })).status, host).toBe(200);
      }
      for (const host of ['rebind.attacker.example', `127.evil.example:${port}`, 'ledger.evil']) {
        const r = await rawRequest(url, { path: '/', headers: { host } });
        expect(r.status, host).toBe(403);
        expect(JSON.parse(r.body)).toMatchObject({ code: 'RUNTIME_HOST_NOT_ALLOWED' });
      }
      const submit = await rawRequest(url, {
        method: 'POST',
        path: '/transactions',
        headers: { host: 'rebind.attacker.example', 'content-type': 'application/x-www-form-urlencoded' },
        body: 'tx=AAAA',
      });
      expect(submit.status).toBe(403);
    } finally {
      await app.close();
    }
  });

  it('takes --allowed-host from the command line, repeatable', async () => {
    const program = new Command().exitOverride();
    register(program);
    const cmd = program.commands.find((c) => c.name() === 'ledger-sim')!;
    cmd.action(() => undefined);
    await program.parseAsync(['node', 'x', 'ledger-sim', '--allowed-host', 'ledger', '--allowed-host', 'horizon']);
    const flags = cmd.opts() as Parameters<typeof resolveConfig>[0];
    expect(flags.allowedHost).toEqual(['ledger', 'horizon']);
    expect((await resolveConfig({ ...flags, inMemory: true }, {})).allowedHosts).toEqual(['ledger', 'horizon']);
  });
});

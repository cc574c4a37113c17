import { describe, expect, it } from 'vitest';
import { hostCheck, hostOfHeader, isLoopbackAddress, isLoopbackHost } from '../src/hosts.ts';

describe('loopback', () => {
  it('is an IP literal in 127.0.0.0/8, ::1 or an IPv4-mapped loopback; localhost is the only loopback name', () => {
    for (const h of ['127.0.0.1', '127.255.0.9', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) {
      expect(isLoopbackAddress(h), h).toBe(true);
    }
    for (const h of ['localhost', '127.evil.example', '127.0.0.1.nip.io', '10.0.0.1', '::', '::ffff:10.0.0.1', '']) {
      expect(isLoopbackAddress(h), h).toBe(false);
    }
    expect(isLoopbackHost('LocalHost')).toBe(true);
    expect(isLoopbackHost('localhost.attacker.example')).toBe(false);
    expect(isLoopbackHost('127.evil.example')).toBe(false);
  });
});

describe('Host header', () => {
  it('parses name, name:port and [v6]:port; refuses malformed values', () => {
    expect(hostOfHeader('Example.COM:8080')).toBe('example.com');
    expect(hostOfHeader('127.0.0.1')).toBe('127.0.0.1');
    expect(hostOfHeader('[::1]:7400')).toBe('::1');
    for (const bad of [
      undefined,
      '',
      'a b',
      'evil@127.0.0.1',
      '[nothex]:1',
      '[::1',
      'a:b:c',
      'x:123456',
      '[1.2.3.4]',
    ]) {
      expect(hostOfHeader(bad), String(bad)).toBeUndefined();
    }
  });

  it('serves loopback, localhost, configured names and addresses, and the bound address; nothing else', () => {
    const check = hostCheck({ allowedHosts: ['Coordinator', '10.1.2.3', ' ', 'api.example.'], listenHost: '10.9.9.9' });
    for (const host of [
      '127.0.0.1:8080',
      'localhost',
      '[::1]:1',
      'coordinator:8080',
      '10.1.2.3',
      'api.example',
      '10.9.9.9',
    ]) {
      expect(check({ host }), host).toBeUndefined();
    }
    for (const host of ['rebind.attacker.example', '10.1.2.4', '127.evil.example', 'coordinator.evil']) {
      expect(check({ host })?.code, host).toBe('RUNTIME_HOST_NOT_ALLOWED');
    }
    expect(check({})?.code).toBe('RUNTIME_HOST_NOT_ALLOWED');
    expect(check({ host: ['a', 'b'] })?.code).toBe('RUNTIME_HOST_NOT_ALLOWED');
    const refused = check({ host: 'rebind.attacker.example' })!;
    expect(refused.status).toBe(403);
    expect(refused.message).toMatch(/rebind\.attacker\.example/);
    // A wildcard bind address is not a name anyone can send.
    expect(hostCheck({ listenHost: '0.0.0.0' })({ host: '0.0.0.0' })?.code).toBe('RUNTIME_HOST_NOT_ALLOWED');
    // Origin is ignored unless asked for.
    expect(check({ host: 'localhost', origin: 'http://evil.example' })).toBeUndefined();
  });

  it('refuses a foreign, opaque or malformed Origin when asked to', () => {
    const check = hostCheck({ allowedHosts: ['node-0'], checkOrigin: true });
    expect(check({ host: 'localhost' })).toBeUndefined();
    expect(check({ host: 'localhost', origin: 'http://localhost:3000' })).toBeUndefined();
    expect(check({ host: 'node-0', origin: 'https://node-0' })).toBeUndefined();
    for (const origin of ['http://rebind.attacker.example', 'null', 'not a url', ['http://localhost', 'http://x']]) {
      const e = check({ host: 'localhost', origin });
      expect(e?.code, String(origin)).toBe('RUNTIME_ORIGIN_NOT_ALLOWED');
      expect(e?.status).toBe(403);
    }
  });
});

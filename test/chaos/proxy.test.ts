import { createServer as httpServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, createConnection, createServer, type Server as NetServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { KmsProxy, TcpProxy } from './proxy.ts';

// The harness's fault injectors against real sockets: a partition must be silent (no RST, no FIN, bytes held,
// not lost) and healable; a throttled KMS must answer as AWS does and pass requests unchanged otherwise.

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function echoServer(): Promise<{ server: NetServer; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.on('data', (d) => s.write(d));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

interface Client {
  socket: Socket;
  received: () => string;
  events: string[];
}

async function connect(port: number): Promise<Client> {
  const socket = createConnection({ host: '127.0.0.1', port });
  let data = '';
  const events: string[] = [];
  socket.on('data', (d: Buffer) => {
    data += d.toString();
  });
  socket.on('end', () => events.push('end'));
  socket.on('error', (e) => events.push(`error ${e.message}`));
  socket.on('close', () => events.push('close'));
  await new Promise<void>((r) => socket.once('connect', () => r()));
  closers.push(() => {
    socket.destroy();
  });
  return { socket, received: () => data, events };
}

describe('TcpProxy', () => {
  it('forwards, holds every byte silently while cut, and delivers them on heal', async () => {
    const echo = await echoServer();
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port: echo.port });
    closers.push(() => proxy.close());
    const c = await connect(proxy.port);
    c.socket.write('a');
    await until(() => c.received() === 'a', 'the echo through the proxy');
    expect(proxy.connections).toBe(1);

    proxy.cut();
    expect(proxy.isCut).toBe(true);
    c.socket.write('b');
    await sleep(300);
    expect(c.received()).toBe('a');
    expect(c.events).toEqual([]);

    proxy.heal();
    await until(() => c.received() === 'ab', 'the held byte after the heal');
    expect(c.events).toEqual([]);
  });

  it('holds new connections while cut without dialling the target, and dials them on heal', async () => {
    const echo = await echoServer();
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port: echo.port });
    closers.push(() => proxy.close());
    proxy.cut();
    const c = await connect(proxy.port);
    c.socket.write('x');
    await sleep(200);
    expect(echo.sockets).toHaveLength(0);
    expect(c.events).toEqual([]);
    proxy.heal();
    await until(() => c.received() === 'x', 'the echo after the heal');
    expect(echo.sockets).toHaveLength(1);
  });

  it('passes a close from the far side on only after the heal', async () => {
    const echo = await echoServer();
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port: echo.port });
    closers.push(() => proxy.close());
    const c = await connect(proxy.port);
    c.socket.write('a');
    await until(() => c.received() === 'a' && echo.sockets.length === 1, 'the connection');
    proxy.cut();
    echo.sockets[0]!.destroy();
    await sleep(200);
    expect(c.events).toEqual([]);
    proxy.heal();
    await until(() => c.events.includes('close'), 'the close after the heal');
    await until(() => proxy.connections === 0, 'the pair to be dropped');
  });

  it('heal without a cut changes nothing', async () => {
    const echo = await echoServer();
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port: echo.port });
    closers.push(() => proxy.close());
    proxy.heal();
    const c = await connect(proxy.port);
    c.socket.write('z');
    await until(() => c.received() === 'z', 'the echo');
    expect(proxy.isCut).toBe(false);
  });
});

describe('KmsProxy', () => {
  async function upstream(): Promise<{ url: string; seen: IncomingMessage[] }> {
    const seen: IncomingMessage[] = [];
    const server: Server = httpServer((req, res) => {
      seen.push(req);
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ host: req.headers.host, target: req.headers['x-amz-target'], body }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
  }

  const sign = (url: string) =>
    fetch(`${url}/`, {
      method: 'POST',
      headers: { 'x-amz-target': 'TrentService.Sign', 'content-type': 'application/x-amz-json-1.1' },
      body: '{"KeyId":"k"}',
    });

  it('passes requests unchanged, Host header included (the SigV4 check depends on it)', async () => {
    const up = await upstream();
    const proxy = await KmsProxy.start(up.url);
    closers.push(() => proxy.close());
    const res = await sign(proxy.url);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      host: new URL(proxy.url).host,
      target: 'TrentService.Sign',
      body: '{"KeyId":"k"}',
    });
  });

  it('while throttled answers every other request with ThrottlingException, as AWS KMS does', async () => {
    const up = await upstream();
    const proxy = await KmsProxy.start(up.url, { delayMs: 1 });
    closers.push(() => proxy.close());
    proxy.throttle(true);
    const first = await sign(proxy.url);
    expect(first.status).toBe(400);
    expect(await first.json()).toEqual({ __type: 'ThrottlingException', message: 'Rate exceeded' });
    expect((await sign(proxy.url)).status).toBe(200);
    expect(proxy.throttledRequests).toBe(1);
    expect(up.seen).toHaveLength(1);
    proxy.throttle(false);
    expect((await sign(proxy.url)).status).toBe(200);
    expect((await sign(proxy.url)).status).toBe(200);
    expect(proxy.throttledRequests).toBe(1);
  });

  it('drops the connection when the emulator is down (an outage, not an answer)', async () => {
    const proxy = await KmsProxy.start('http://127.0.0.1:1');
    closers.push(() => proxy.close());
    await expect(sign(proxy.url)).rejects.toThrow();
  });
});

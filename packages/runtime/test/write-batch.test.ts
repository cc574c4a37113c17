import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { writeBatch } from '../src/write-batch.ts';

const tick = () => new Promise<void>((r) => process.nextTick(r));

describe('writeBatch (one write per socket per turn)', () => {
  let server: Server | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    if (server) await new Promise((r) => server!.close(r));
    server = undefined;
  });

  /** A real loopback TCP pair: the client end, and everything the server end received. */
  async function pair(): Promise<{ client: Socket; received: () => string; writes: () => number }> {
    let got = '';
    server = createServer((s) => {
      sockets.push(s);
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        got += d;
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as { port: number }).port, '127.0.0.1');
    sockets.push(client);
    await once(client, 'connect');
    // Count the system-call-level writes the stream hands to the socket (net.Socket's _write / _writev).
    let writes = 0;
    const c = client as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    const w = c._write.bind(client);
    const wv = c._writev.bind(client);
    c._write = (...a) => {
      writes++;
      w(...a);
    };
    c._writev = (...a) => {
      writes++;
      wv(...a);
    };
    return { client, received: () => got, writes: () => writes };
  }

  it('holds the writes of one turn, including ws-style nested cork/uncork pairs, and sends them in one write', async () => {
    const { client, received, writes } = await pair();
    const batch = writeBatch(client);
    for (const part of ['one|', 'two|', 'three|']) {
      batch.beforeWrite();
      // What ws's Sender does for every message.
      client.cork();
      client.write(part);
      client.uncork();
    }
    expect(client.writableCorked).toBe(1);
    expect(client.writableLength).toBe('one|two|three|'.length);
    expect(writes()).toBe(0);
    await tick();
    expect(client.writableCorked).toBe(0);
    expect(writes()).toBe(1);
    expect(batch.batches).toBe(1);
    while (received() !== 'one|two|three|') await new Promise((r) => setTimeout(r, 5));

    // The next turn is a batch of its own, in order after the first.
    batch.beforeWrite();
    client.write('four|');
    await tick();
    expect(writes()).toBe(2);
    expect(batch.batches).toBe(2);
    while (received() !== 'one|two|three|four|') await new Promise((r) => setTimeout(r, 5));
  });

  it('does nothing on a destroyed socket, and leaves a socket destroyed while corked alone', async () => {
    const { client } = await pair();
    const batch = writeBatch(client);
    batch.beforeWrite();
    client.write('x');
    client.destroy();
    await tick();
    expect(batch.batches).toBe(1);
    batch.beforeWrite();
    expect(batch.batches).toBe(1);
  });
});

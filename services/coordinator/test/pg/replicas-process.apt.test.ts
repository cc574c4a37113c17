import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import {
  api,
  driverPid,
  expectTakenOverOnce,
  leaseHolder,
  replicaCluster,
  roundDrivenByA,
  startReplicas,
  submissionEnded,
  useProcessEnv,
} from './processes.ts';

/**
 * Two `cosigner coordinator` processes on one real PostgreSQL database, the real ledger simulator, and test-double
 * nodes each holding a session with both replicas (what a node configured with `coordinator.urls` does). The
 * replica driving a round is killed with SIGKILL mid-round and mid-submission: the other takes the round over
 * within the lease time plus one second, asks again the nodes that had not answered, asks the network for the hash
 * before submitting, and the ledger applies exactly one envelope. Zero proposals lost, none completed twice.
 */
const NETWORK = 'Coordinator Replicas Process Test ; 2026';
const LEASE_MS = 2000;
const env = useProcessEnv(NETWORK);
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.closeAllConnections();
});

/**
 * Horizon as a replica sees it through a network that loses the answer to a submission: every request reaches the
 * simulator, but the answer to `POST /transactions` never comes back (the envelope applies all the same).
 */
async function answerLosingProxy(target: string): Promise<string> {
  const s = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const upstream = await fetch(`${target}${req.url}`, {
      method: req.method,
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : Buffer.concat(chunks),
    });
    const body = Buffer.from(await upstream.arrayBuffer());
    if (req.method === 'POST' && req.url?.startsWith('/transactions')) return; // applied; the answer is lost
    res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
    res.end(body);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
}

const cluster = (database: string) => replicaCluster(env, database, LEASE_MS);

describe('two coordinator processes on PostgreSQL', () => {
  it('kill -9 of the driving replica mid-round: the other takes over in time, re-asks, submits once', async () => {
    // A drives it (it created it) and node-0's signature is in: then A dies.
    const {
      database,
      c,
      replicas,
      twins,
      master,
      seqBefore,
      id,
      lease: before,
    } = await roundDrivenByA(env, {
      databaseName: 'replicas_round',
      leaseMs: LEASE_MS,
      amount: '5',
      idempotencyKey: 'replica-kill-1',
    });
    const { a, b, key } = replicas;
    await a.kill9();
    const died = Date.now();

    // B ended it submitted under its lease; one envelope on the ledger (the sequence moved by one), one submission.
    const {
      done,
      lease: after,
      events,
    } = await expectTakenOverOnce(env, {
      b,
      key,
      id,
      database,
      account: master.publicKey(),
      seqBefore,
      what: 'taken over and submitted by B',
    });
    expect(after.token).toBe(before.token + 1);
    // B asked node-1 again (on its session with B), within the lease time plus one second of A's death.
    expect(twins[1]!.proposals.some((p) => p.proposalId === id)).toBe(true);
    expect(Date.parse(String(done.signedAt)) - died).toBeLessThan(LEASE_MS + 1000 + 1500);
    // The transaction applied.
    expect((await env.server.transactions().transaction(String(done.hash)).call()).successful).toBe(true);
    // Nothing lost, nothing twice: one proposal for the key, one quorum (one submission: checked above).
    const listed = (await api(b.url, key, '/v1/proposals?idempotencyKey=replica-kill-1')).json.items as unknown[];
    expect(listed).toHaveLength(1);
    expect(events.filter((e) => e.type === 'quorum.reached')).toHaveLength(1);
    for (const n of [...c.nodes, ...twins]) n.close();
  }, 180_000);

  it('kill -9 of the driving replica mid-submission: the other asks the network for the hash and sends nothing', async () => {
    const database = await env.db.createDatabase('replicas_submit');
    const c = await cluster(database);
    // A reaches the network through a link that loses the answer to its submission; B reaches it directly.
    const { a, b, key, messageKey } = await startReplicas(env, c, await answerLosingProxy(env.sim.url));
    c.nodes[1]!.behaviour = 'approve';
    for (const n of c.nodes) expect(await n.connect(a.url, messageKey)).toBe('welcome');
    const master = await env.multisigAccount(c.nodes.map((n) => n.stellarKey));
    const dest = Keypair.random();
    await env.fund(dest);
    const seqBefore = await env.sequence(master.publicKey());
    const xdr = await env.paymentXdr(master.publicKey(), dest.publicKey(), '4');
    const created = await api(a.url, key, '/v1/proposals', { xdr, submit: true });
    expect(created.status).toBe(201);
    const id = String(created.json.id);
    const hash = String(created.json.hash);
    // Signed, sent by A, applied on the ledger: A is still waiting for the answer when it dies.
    await waitFor(async () => {
      try {
        return (await env.server.transactions().transaction(hash).call()).successful ? true : undefined;
      } catch {
        return undefined;
      }
    }, 'the envelope applied');
    expect((await api(b.url, key, `/v1/proposals/${id}`)).json.status).toBe('signed');
    expect(driverPid((await leaseHolder(env.db, database, id))!.holder)).toBe(a.pid);
    await a.kill9();
    const done = await submissionEnded(b, key, id, 'submission taken over by B');
    // Found by its hash, not sent again (a second send would have failed with a used sequence number).
    expect(done.status).toBe('submitted');
    expect(done.result).toMatchObject({ outcome: 'accepted', message: 'found on the ledger' });
    expect(await env.sequence(master.publicKey())).toBe(seqBefore + 1n);
    for (const n of c.nodes) n.close();
  }, 180_000);

  it('kill -9 of the driving replica while PostgreSQL restarts: 503 meanwhile, then the other replica finishes the round', async () => {
    const { database, c, replicas, twins, master, seqBefore, id } = await roundDrivenByA(env, {
      databaseName: 'replicas_restart',
      leaseMs: LEASE_MS,
      amount: '3',
      idempotencyKey: 'pg-restart-1',
    });
    const { a, b, key } = replicas;
    // The database goes down, the driver dies meanwhile, the database comes back.
    await env.db.stop('immediate');
    await a.kill9();
    const down = await api(b.url, key, `/v1/proposals/${id}`);
    expect(down.status).toBe(503);
    expect(down.json.code).toBe('COORD_STORE_UNAVAILABLE');
    await env.db.start();
    // B ended it submitted under its lease; the sequence moved by one; one submission.
    await expectTakenOverOnce(env, {
      b,
      key,
      id,
      database,
      account: master.publicKey(),
      seqBefore,
      what: 'B finishes the round once the database is back',
    });
    for (const n of [...c.nodes, ...twins]) n.close();
  }, 180_000);

  it('kill -9 of the replica that emitted events while their receiver is down: the other replica delivers them', async () => {
    const database = await env.db.createDatabase('replicas_callbacks');
    const c = await cluster(database);
    const { a, b, key, messageKey } = await startReplicas(env, c);
    for (const n of c.nodes) expect(await n.connect(a.url, messageKey)).toBe('welcome');
    // The client's receiver: 503 while down; every accepted delivery noted with its event's seq and time.
    const receiver = { down: true, tries: 0, delivered: [] as { seq: number; at: number }[] };
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        receiver.tries++;
        if (receiver.down) return res.writeHead(503).end();
        receiver.delivered.push({ seq: (JSON.parse(body) as { event: { seq: number } }).event.seq, at: Date.now() });
        res.end('ok');
      });
    });
    servers.push(hook);
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const callbackUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`;
    const master = await env.multisigAccount(c.nodes.map((n) => n.stellarKey));
    const xdr = await env.paymentXdr(master.publicKey(), Keypair.random().publicKey(), '1');
    const created = await api(a.url, key, '/v1/proposals', { xdr, callbackUrl });
    expect(created.status).toBe(201);
    const id = String(created.json.id);
    // A wrote the events and tried their callbacks (503): they are pending when A dies.
    await waitFor(() => (receiver.tries >= 2 ? true : undefined), 'callbacks tried by A');
    await a.kill9();
    const died = Date.now();
    receiver.down = false;
    const events = (await api(b.url, key, `/v1/proposals/${id}/events`)).json.events as { seq: number }[];
    expect(events.length).toBeGreaterThanOrEqual(2);
    const seqs = events.map((e) => e.seq);
    await waitFor(
      () => (seqs.every((s) => receiver.delivered.some((d) => d.seq === s)) ? true : undefined),
      'every event delivered by B',
      30_000,
    );
    // Delivered after A died (so by B), and each once: B claimed each row once and removed it once delivered. (B
    // may add events of its own later, such as its resumption of the round: only A's events are counted here.)
    expect(receiver.delivered.every((d) => d.at >= died)).toBe(true);
    expect(seqs.map((s) => receiver.delivered.filter((d) => d.seq === s).length)).toEqual(seqs.map(() => 1));
    for (const n of c.nodes) n.close();
  }, 180_000);
});

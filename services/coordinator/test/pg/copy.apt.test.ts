import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCosigner, startCosignerProcess, tempDir } from '@cosigner/testkit/process';
import { Keypair } from '@stellar/stellar-sdk';
import Database from 'better-sqlite3';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { authenticate } from '../../src/apikeys.ts';
import { register } from '../../src/command.ts';
import { copyToPostgres } from '../../src/pg/command.ts';
import { COPIED_TABLES, copySqliteToPg } from '../../src/pg/copy.ts';
import { PgStore } from '../../src/pg/store.ts';
import { openSqliteStore, type ProposalRecord, type Store } from '../../src/store.ts';
import { freshDatabase, poolOn, usePostgres } from './helpers.ts';
import { proposal } from './store-contract.ts';

const pg = usePostgres();
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function dir(): Promise<string> {
  const d = await tempDir('coord-copy-');
  dirs.push(d);
  return d;
}

const expectCode = (code: string) => expect.objectContaining({ code });

function fillProposals(s: Store, closed: boolean, accounts: ProposalRecord['accounts']): void {
  for (let i = 0; i < 1203; i++) {
    s.insertProposal(
      proposal(`p${i}`, {
        idempotencyKey: i % 3 === 0 ? `key-${i}` : null,
        status: closed || i % 5 === 0 ? 'submitted' : i % 7 === 0 ? 'signed' : 'pending',
        submit: i % 2 === 0,
        accounts: i % 10 === 0 ? accounts : [],
        createdAt: 1000 + i,
      }),
    );
    s.appendEvent(`p${i}`, 'proposal.created', { i, nested: { ok: true } }, 1000 + i);
  }
}

/**
 * A coordinator's SQLite state with a bit of everything, written through the SQLite store. `closed`: every proposal
 * ended (a live coordinator resumes open ones, and these carry placeholder XDR).
 */
function fill(s: Store, closed = false): { account: string } {
  const account = Keypair.random().publicKey();
  const accounts = [
    { accountId: account, thresholds: { low: 1, medium: 2, high: 2 }, signers: [{ key: account, weight: 1 }] },
  ] as unknown as ProposalRecord['accounts'];
  // One SQLite transaction (one fsync) for the bulk of it.
  s.atomically(() => fillProposals(s, closed, accounts));
  s.setResult('p0', { outcome: 'accepted', code: null, message: 'ok', operationCodes: [], ledger: 9, attempts: 2 });
  s.addSignature({ proposalId: 'p1', signerKey: account, nodeId: 'n1', signature: 'c2ln', createdAt: 5 });
  s.recordDecision({ proposalId: 'p1', nodeId: 'n1', outcome: 'approve', reasons: [], createdAt: 5 });
  s.recordDecision({
    proposalId: 'p1',
    nodeId: 'n2',
    outcome: 'reject',
    reasons: [{ code: 'X', message: 'no', opIndex: 0 }],
    createdAt: 6,
  });
  s.insertProposal(proposal('auth-1', { kind: 'authEntries', xdr: null, submit: false }), [
    'ZW50cnktMA==',
    'ZW50cnktMQ==',
  ]);
  s.transition('auth-1', ['pending'], 'signed', { signedEntries: ['c2lnbmVkLTA=', 'c2lnbmVkLTE='] });
  s.insertProposal(proposal('soroban-1', { kind: 'sorobanTx', status: 'submitted', submitFollowUp: true }), [
    'ZW50cnktMg==',
  ]);
  s.addAuthSignature({
    proposalId: 'p2',
    entryIndex: 0,
    signerKey: account,
    nodeId: 'n1',
    payload: 'ab',
    signature: 's',
    createdAt: 7,
  });
  s.appendEvent(null, 'node.connected', { nodeId: 'n1' }, 8);
  // A callback still to deliver, and one given up on: the copy keeps both.
  s.appendEvent('p1', 'quorum.reached', {}, 9, 'http://127.0.0.1:9/hook');
  const failed = s.appendEvent('p1', 'proposal.submitted', {}, 10, 'http://127.0.0.1:9/hook');
  const row = s.claimCallbacks('x', 10, 1, 10).find((c) => c.event.seq === failed.seq)!;
  s.settleCallback(row.id, 'x', { state: 'failed', attempts: 3, error: 'no 2xx answer' });
  s.enrollNode({ id: 'n1', identityKey: 'id1', stellarKey: Keypair.random().publicKey() }, 1);
  s.enrollNode({ id: 'n2', identityKey: 'id2', stellarKey: Keypair.random().publicKey() }, 2);
  s.countNode('n1', 'approvals');
  s.touchNode('n1', 50, 3.25);
  s.recordMisbehaviour({ nodeId: 'n2', proposalId: 'p1', kind: 'bad-signature', detail: 'd', createdAt: 9 });
  s.insertApiKey({ id: 'k1', hash: 'h1', scopes: ['propose', 'read'], label: 'ci', createdAt: 1, revokedAt: null });
  s.insertApiKey({ id: 'k2', hash: 'h2', scopes: ['admin'], label: null, createdAt: 2, revokedAt: 3 });
  return { account };
}

async function target(): Promise<PgStore> {
  return PgStore.open(poolOn(pg.server(), await freshDatabase(pg.server())));
}

describe('copy from SQLite to PostgreSQL', () => {
  it('both schemas have the same tables and columns, and the copy names every column', async () => {
    const d = await dir();
    openSqliteStore(d).close();
    const lite = new Database(join(d, 'coordinator.db'), { readonly: true });
    const dst = await target();
    try {
      const liteTables = (
        lite.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as {
          name: string;
        }[]
      ).map((t) => t.name);
      for (const table of liteTables) {
        const liteCols = (lite.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
        const pgCols = (
          await dst.query<{ c: string }>(
            'SELECT column_name AS c FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position',
            [table],
          )
        ).rows.map((r) => r.c);
        expect(pgCols.sort(), table).toEqual([...liteCols].sort());
        const copied = COPIED_TABLES.find((t) => t.table === table);
        expect(copied?.columns.slice().sort(), table).toEqual([...liteCols].sort());
      }
      expect(COPIED_TABLES.map((t) => t.table).sort()).toEqual([...liteTables].sort());
    } finally {
      lite.close();
      await dst.close();
    }
  });

  it('copies every kind of row; both stores then answer every read the same, numbering continues', async () => {
    const d = await dir();
    const src = openSqliteStore(d);
    const { account } = fill(src);
    src.close();
    const dst = await target();
    try {
      const report = await copySqliteToPg(join(d, 'coordinator.db'), dst);
      expect(report).toEqual({
        proposals: 1205,
        signatures: 1,
        decisions: 2,
        authEntries: 3,
        authSignatures: 1,
        events: 1206,
        nodes: 2,
        misbehaviours: 1,
        apiKeys: 2,
        callbacks: 2,
        frostGroups: 0,
        frostProposals: 0,
        frostRefreshes: 0,
      });
      const s = openSqliteStore(d);
      try {
        // Pages and their cursors, every status filter, search, open rounds.
        let cursor: number | undefined;
        for (;;) {
          const [a, b] = [
            s.listProposals({ limit: 250, before: cursor }),
            await dst.listProposals({ limit: 250, before: cursor }),
          ];
          expect(b).toEqual(a);
          if (a.next === null) break;
          cursor = a.next;
        }
        for (const status of ['pending', 'signed', 'submitted'] as const)
          expect(await dst.listProposals({ status, limit: 2000 })).toEqual(s.listProposals({ status, limit: 2000 }));
        expect(await dst.searchProposals(account, 500)).toEqual(s.searchProposals(account, 500));
        expect(await dst.openProposals()).toEqual(s.openProposals());
        expect(await dst.countOpen()).toBe(s.countOpen());
        expect(await dst.getByIdempotencyKey('key-3')).toEqual(s.getByIdempotencyKey('key-3'));
        expect(await dst.getProposal('p0')).toEqual(s.getProposal('p0'));
        expect(await dst.signatures('p1')).toEqual(s.signatures('p1'));
        expect(await dst.decisions('p1')).toEqual(s.decisions('p1'));
        expect(await dst.authSignatures('p2')).toEqual(s.authSignatures('p2'));
        expect(await dst.eventsSince(0, 5000)).toEqual(s.eventsSince(0, 5000));
        expect(await dst.eventsOf('p7', 10)).toEqual(s.eventsOf('p7', 10));
        expect(await dst.listNodes()).toEqual(s.listNodes());
        expect(await dst.misbehaviours('n2', 10)).toEqual(s.misbehaviours('n2', 10));
        for (const k of ['k1', 'k2']) expect(await dst.getApiKey(k)).toEqual(s.getApiKey(k));
        expect(await dst.countApiKeys()).toBe(2);
        expect(await dst.failedCallbacks(10)).toEqual(s.failedCallbacks(10));
        expect(await dst.claimCallbacks('y', 100, 1000, 10)).toEqual(s.claimCallbacks('y', 100, 1000, 10));
        // The identity sequences continue after the copied numbers.
        const lastEvent = s.eventsSince(0, 5000).at(-1)!.seq;
        expect((await dst.appendEvent(null, 'after', {}, 1)).seq).toBe(lastEvent + 1);
        await dst.insertProposal(proposal('new'));
        expect((await dst.listProposals({ limit: 1 })).items[0]!.id).toBe('new');
        await dst.recordMisbehaviour({ nodeId: 'n1', proposalId: null, kind: 'k', detail: 'd', createdAt: 10 });
      } finally {
        s.close();
      }
      // A second copy into the same database is refused and changes nothing.
      await expect(copySqliteToPg(join(d, 'coordinator.db'), dst)).rejects.toThrow(
        expectCode('COORD_COPY_TARGET_NOT_EMPTY'),
      );
      expect((await dst.listProposals({ limit: 5000 })).items).toHaveLength(1206);
    } finally {
      await dst.close();
    }
  });

  it('an older SQLite file is migrated first; a missing one is named', async () => {
    const d = await dir();
    const path = join(d, 'coordinator.db');
    // A file at schema 4 (as a coordinator of that version left it): its migrations 5 to 8 run before the copy.
    const s = openSqliteStore(d);
    s.insertProposal(proposal('old'));
    s.close();
    const raw = new Database(path);
    raw.exec(`DROP TABLE frost_refresh; DROP TABLE frost_proposals; DROP TABLE frost_dkg;
      DROP TABLE callback_outbox; DROP TABLE auth_entries; DROP INDEX proposals_open; ALTER TABLE proposals DROP COLUMN follow_up_due;
      ALTER TABLE proposals DROP COLUMN submit_follow_up; CREATE INDEX proposals_open ON proposals (n)
      WHERE status = 'pending' OR (status = 'signed' AND submit = 1 AND result IS NULL);`);
    raw.pragma('user_version = 4');
    raw.close();
    const dst = await target();
    try {
      expect((await copySqliteToPg(path, dst)).proposals).toBe(1);
      const check = new Database(path);
      expect(check.pragma('user_version', { simple: true })).toBe(8);
      check.close();
      await expect(copySqliteToPg(join(d, 'nope.db'), dst)).rejects.toThrow(
        expect.objectContaining({ code: 'COORD_BAD_CONFIG', message: expect.stringContaining('nope.db') }),
      );
    } finally {
      await dst.close();
    }
  });

  it('refuses to run while a coordinator holds the file, and runs once it stopped (CLI)', async () => {
    const d = await dir();
    const seed = openSqliteStore(d);
    fill(seed, true);
    seed.close();
    const db = await freshDatabase(pg.server());
    const env = { COPY_PG_PASSWORD: pg.server().password };
    const args = [
      'coordinator',
      'copy-to-postgres',
      '--data-dir',
      d,
      '--url',
      pg.server().url(db),
      '--password-env',
      'COPY_PG_PASSWORD',
      '--tls-mode',
      'disable',
    ];
    const coordinator = await startCosignerProcess({
      args: ['coordinator', '--data-dir', d, '--horizon-url', 'http://127.0.0.1:9'],
      readyTimeoutMs: 60_000,
    });
    try {
      const refused = await runCosigner(args, env);
      expect(refused.code).toBe(1);
      expect(refused.out, refused.out).toMatch(/held by a running coordinator/);
    } finally {
      await coordinator.stop();
    }
    // The refused run did not even connect: the database is as created (no schema table).
    const probe = poolOn(pg.server(), db);
    expect((await probe.query("SELECT to_regclass('coordinator_schema') AS t")).rows).toEqual([{ t: null }]);
    await probe.end();
    const check = await PgStore.open(poolOn(pg.server(), db));
    try {
      expect(await check.countApiKeys()).toBe(0);
      const done = await runCosigner(args, env);
      expect(done.code, done.out).toBe(0);
      // The coordinator registered its admin key at start: three keys now.
      expect(JSON.parse(done.out.trim().split('\n').at(-1)!)).toMatchObject({ proposals: 1205, apiKeys: 3, nodes: 2 });
      expect(await check.countApiKeys()).toBe(3);
    } finally {
      await check.close();
    }
  });

  it('CLI settings errors name the flag', async () => {
    const d = await dir();
    openSqliteStore(d).close();
    const out: string[] = [];
    const base = { dataDir: d, url: pg.server().url() };
    await expect(copyToPostgres({ ...base, url: 'postgres://u:pw@h/d' }, (s) => out.push(s), {})).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_BAD_CONFIG', details: expect.objectContaining({ field: '--url' }) }),
    );
    await expect(copyToPostgres({ ...base, tlsMode: 'maybe' }, (s) => out.push(s), {})).rejects.toThrow(/^--tls-mode/);
    await expect(copyToPostgres({ ...base, passwordEnv: 'NOT_SET' }, (s) => out.push(s), {})).rejects.toThrow(
      /--password-env: the environment variable NOT_SET is unset/,
    );
    const pw = join(d, 'pw');
    await writeFile(pw, pg.server().password, { mode: 0o600 });
    await copyToPostgres(
      { ...base, url: pg.server().url(await freshDatabase(pg.server())), passwordFile: pw, tlsMode: 'disable' },
      (s) => out.push(s),
      {},
    );
    expect(JSON.parse(out[0]!)).toMatchObject({ proposals: 0, apiKeys: 0 });
  });

  it('without --url: the store the config names; a config on SQLite is refused naming --url', async () => {
    const d = await dir();
    const seed = openSqliteStore(join(d, 'data'));
    fill(seed, true);
    seed.close();
    const db = await freshDatabase(pg.server());
    await writeFile(join(d, 'pw'), pg.server().password, { mode: 0o600 });
    const onPg = join(d, 'pg.yaml');
    await writeFile(
      onPg,
      stringify({
        dataDir: 'data',
        store: { type: 'postgres', url: pg.server().url(db), passwordFile: 'pw', tls: { mode: 'disable' } },
      }),
    );
    const out: string[] = [];
    await copyToPostgres({ config: onPg }, (s) => out.push(s), {});
    expect(JSON.parse(out[0]!)).toMatchObject({ proposals: 1205, nodes: 2 });
    const onSqlite = join(d, 'sqlite.yaml');
    await writeFile(onSqlite, stringify({ dataDir: 'data' }));
    await expect(copyToPostgres({ config: onSqlite }, () => undefined, {})).rejects.toThrow(
      expect.objectContaining({ code: 'COORD_BAD_CONFIG', details: { field: '--url' } }),
    );
  });

  it('enroll and api-key create write to the configured PostgreSQL store, --config after the subcommand', async () => {
    const d = await dir();
    const db = await freshDatabase(pg.server());
    await writeFile(join(d, 'pw'), pg.server().password, { mode: 0o600 });
    const config = join(d, 'coordinator.yaml');
    await writeFile(
      config,
      stringify({
        dataDir: 'data',
        store: { type: 'postgres', url: pg.server().url(db), passwordFile: 'pw', tls: { mode: 'disable' } },
      }),
    );
    const program = new Command().exitOverride();
    register(program);
    const writes: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => {
      writes.push(s);
      return true;
    }) as typeof process.stdout.write;
    const stellarKey = Keypair.random().publicKey();
    try {
      await program.parseAsync([
        'node',
        'x',
        'coordinator',
        'enroll',
        '--config',
        config,
        '--node-id',
        'n1',
        '--identity-key',
        Buffer.alloc(32, 7).toString('base64'),
        '--stellar-key',
        stellarKey,
      ]);
      await program.parseAsync([
        'node',
        'x',
        'coordinator',
        'api-key',
        'create',
        '--config',
        config,
        '--scopes',
        'read',
      ]);
    } finally {
      process.stdout.write = orig;
    }
    const key = (JSON.parse(writes[1]!) as { key: string }).key;
    const check = await PgStore.open(poolOn(pg.server(), db));
    try {
      expect((await check.getNode('n1'))?.stellarKey).toBe(stellarKey);
      expect((await authenticate(check, key))?.scopes).toEqual(['read']);
    } finally {
      await check.close();
    }
    // Nothing went to a SQLite file under the data directory.
    expect(existsSync(join(d, 'data', 'coordinator.db'))).toBe(false);
  });

  it('the registered subcommand, in process: --data-dir after its name; a file that is no database', async () => {
    const d = await dir();
    openSqliteStore(d).close();
    const program = new Command().exitOverride();
    register(program);
    const writes: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.env.COPY_TEST_PG_PASSWORD = pg.server().password;
    process.stdout.write = ((s: string) => {
      writes.push(s);
      return true;
    }) as typeof process.stdout.write;
    try {
      const url = pg.server().url(await freshDatabase(pg.server()));
      await program.parseAsync([
        'node',
        'x',
        'coordinator',
        'copy-to-postgres',
        '--data-dir',
        d,
        '--url',
        url,
        '--password-env',
        'COPY_TEST_PG_PASSWORD',
        '--tls-mode',
        'disable',
      ]);
    } finally {
      process.stdout.write = orig;
      delete process.env.COPY_TEST_PG_PASSWORD;
    }
    expect(JSON.parse(writes.join(''))).toMatchObject({ proposals: 0 });
    await writeFile(join(d, 'coordinator.db'), 'not a database at all, just text'.repeat(200));
    const dst = await target();
    try {
      await expect(copySqliteToPg(join(d, 'coordinator.db'), dst)).rejects.toThrow(/not a database/);
    } finally {
      await dst.close();
    }
  });
});

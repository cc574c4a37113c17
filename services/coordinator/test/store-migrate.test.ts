import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '@cosigner/testkit/process';
import { afterEach, describe, expect, it } from 'vitest';
import { openCoordinatorDb, openSqliteStore } from '../src/store.ts';
import { proposalRecord } from './helpers.ts';

const MIGRATIONS = fileURLToPath(new URL('../src/migrations/', import.meta.url));
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A coordinator database left at schema `version` by an older release (its migrations only). */
async function databaseAt(version: number): Promise<{ dir: string; db: ReturnType<typeof openCoordinatorDb> }> {
  const dir = await tempDir('coord-migrate-');
  dirs.push(dir);
  const old = join(dir, 'migrations');
  await mkdir(old);
  for (const f of await readdir(MIGRATIONS)) {
    if (Number.parseInt(f, 10) <= version) await copyFile(join(MIGRATIONS, f), join(old, f));
  }
  const db = openCoordinatorDb(join(dir, 'coordinator.db'), old);
  expect(db.pragma('user_version', { simple: true })).toBe(version);
  return { dir, db };
}

describe('migration 5: Soroban rounds in typed columns', () => {
  it('carries the JSON rows of schema 4 into auth_entries, xdr and submit_follow_up, and reads them back', async () => {
    const { dir, db } = await databaseAt(4);
    const insert = db.prepare(
      `INSERT INTO proposals (id, kind, xdr, hash, network, status, requirements, accounts, submit, max_time, envelope,
         created_at, updated_at, signed_at) VALUES (?, ?, ?, ?, 'N', ?, '[]', '[]', ?, 0, ?, 1, 1, ?)`,
    );
    const hash = 'ab'.repeat(32);
    insert.run(
      'pending-entries',
      'authEntries',
      JSON.stringify({ entries: ['RTA=', 'RTE='], submit: false }),
      hash,
      'pending',
      0,
      null,
      null,
    );
    insert.run(
      'signed-entries',
      'authEntries',
      JSON.stringify({ entries: ['RTA=', 'RTE='], submit: false }),
      hash,
      'signed',
      0,
      JSON.stringify(['UzA=', 'UzE=']),
      5,
    );
    insert.run(
      'soroban-tx',
      'sorobanTx',
      JSON.stringify({ entries: ['RTI='], tx: 'VFg=', submit: true }),
      hash,
      'pending',
      0,
      null,
      null,
    );
    insert.run(
      'soroban-tx-2',
      'sorobanTx',
      JSON.stringify({ entries: ['RTM='], tx: 'VFk=', submit: false }),
      hash,
      'signed',
      0,
      'RU5W',
      5,
    );
    insert.run('payment', 'transaction', 'AAAA', hash, 'signed', 1, 'RU5W', 5);
    db.prepare(
      `INSERT INTO auth_signatures (proposal_id, entry_index, signer_key, node_id, payload, signature, created_at)
         VALUES ('pending-entries', 1, 'G', 'n', 'aa', 'c2ln', 2)`,
    ).run();
    db.close();

    const store = openSqliteStore(dir);
    const pending = store.getProposal('pending-entries')!;
    expect(pending).toMatchObject({
      kind: 'authEntries',
      xdr: null,
      submit: false,
      submitFollowUp: false,
      envelope: null,
    });
    expect(store.authEntries('pending-entries')).toEqual([
      { index: 0, entry: 'RTA=', signed: null },
      { index: 1, entry: 'RTE=', signed: null },
    ]);
    // Verified signatures of an open round are kept as they were.
    expect(store.authSignatures('pending-entries')).toMatchObject([{ entryIndex: 1, signature: 'c2ln' }]);
    expect(store.getProposal('signed-entries')).toMatchObject({ xdr: null, envelope: null, signedAt: 5 });
    expect(store.authEntries('signed-entries')).toEqual([
      { index: 0, entry: 'RTA=', signed: 'UzA=' },
      { index: 1, entry: 'RTE=', signed: 'UzE=' },
    ]);
    expect(store.getProposal('soroban-tx')).toMatchObject({ xdr: 'VFg=', submit: false, submitFollowUp: true });
    expect(store.authEntries('soroban-tx')).toEqual([{ index: 0, entry: 'RTI=', signed: null }]);
    expect(store.getProposal('soroban-tx-2')).toMatchObject({ xdr: 'VFk=', submitFollowUp: false, envelope: 'RU5W' });
    expect(store.authEntries('soroban-tx-2')).toEqual([{ index: 0, entry: 'RTM=', signed: null }]);
    // A transaction row is untouched and has no entries.
    expect(store.getProposal('payment')).toMatchObject({ xdr: 'AAAA', submit: true, envelope: 'RU5W' });
    expect(store.authEntries('payment')).toEqual([]);
    // The open rows are still the open rows: the signed payment waits for its submission, the migrated signed
    // sorobanTx does not (its transaction is its follow-up's to submit).
    expect(store.openProposals().map((p) => p.id)).toEqual(['pending-entries', 'soroban-tx', 'payment']);
    store.close();
  });

  it('a new Soroban row writes its entries beside it and its signed entries with the signed transition', async () => {
    const { dir, db } = await databaseAt(5);
    db.close();
    const store = openSqliteStore(dir);
    const rec = proposalRecord({ id: 'e1', kind: 'authEntries', xdr: null, hash: 'cd'.repeat(32) });
    expect(store.insertProposal(rec, ['RTA=', 'RTE=']).created).toBe(true);
    expect(store.getProposal('e1')?.xdr).toBeNull();
    expect(store.transition('e1', ['signed'], 'submitted', { signedEntries: ['X', 'Y'] })).toBe(false);
    expect(store.authEntries('e1').map((e) => e.signed)).toEqual([null, null]);
    expect(store.transition('e1', ['pending'], 'signed', { signedAt: 2, signedEntries: ['UzA=', 'UzE='] })).toBe(true);
    expect(store.authEntries('e1').map((e) => e.signed)).toEqual(['UzA=', 'UzE=']);
    store.close();
  });
});

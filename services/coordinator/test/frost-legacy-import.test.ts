import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeSession, runDkg } from '../../../packages/frost/test/helpers.ts';
import { importLegacyFrostFiles, readLegacyFrostFiles } from '../src/frost/legacy.ts';
import { openSqliteStore } from '../src/store.ts';
import { LegacyFrostDkgStore, LegacyFrostRefreshStore } from './fixtures/legacy-frost-stores.ts';
import { bearer, disposeHarness, type Harness, harness } from './helpers.ts';

/**
 * A coordinator released before SQLite migration 008 kept its FROST records in frost.sqlite and frost-refresh.sqlite
 * of its data directory. These files are written here by that code (fixtures/legacy-frost-stores.ts) and imported
 * by the current one: once, in one transaction, the files renamed *.imported, never deleted.
 */

const PARTICIPANTS = [1, 2, 3].map((index) => ({ index, nodeId: `n${index}`, identityKey: `key-${index}` }));
const { session, secrets } = makeSession(3, 2, 'legacy-import-1');
const OUT = runDkg(session, secrets).outputs[0]!;
const ADDRESS = OUT.address;

let dir: string;
let h: Harness | undefined;

beforeEach(async () => {
  dir = await tempDir('coord-frost-legacy-');
});
afterEach(async () => {
  h = await disposeHarness(h);
  await rm(dir, { recursive: true, force: true });
});

/** What an older coordinator left: a ready group, a failed and a cut-off key generation, a binding, two refreshes. */
function writeOldFiles(at: string): void {
  const dkg = LegacyFrostDkgStore.at(at);
  const base = {
    threshold: 2,
    participants: PARTICIPANTS,
    roster: 'r',
    step: 'start' as const,
    address: null,
    group: null,
    transcript: null,
    error: null,
    createdBy: 'k1',
  };
  dkg.insert({ ...base, id: 'dkg-ready', status: 'running', createdAt: 1000, updatedAt: 1000 });
  dkg.setStep('dkg-ready', 'confirm', 1100);
  dkg.ready('dkg-ready', { address: ADDRESS, group: OUT.group, transcript: 'aa'.repeat(32) }, 1200);
  dkg.insert({ ...base, id: 'dkg-failed', status: 'running', createdAt: 2000, updatedAt: 2000 });
  dkg.fail('dkg-failed', { code: 'COORD_FROST_DKG_REFUSED', message: 'n2 refused', culprits: ['n2'] }, 2100);
  dkg.insert({ ...base, id: 'dkg-cut', status: 'running', createdAt: 3000, updatedAt: 3000 });
  dkg.bindProposal('prop-1', ADDRESS, 3100);
  dkg.close();
  const refresh = LegacyFrostRefreshStore.at(at);
  const r = {
    address: ADDRESS,
    threshold: 2,
    participants: PARTICIPANTS,
    roster: 'rr',
    status: 'running' as const,
    step: 'start' as const,
    oldDigest: 'bb'.repeat(32),
    digest: null,
    group: null,
    transcript: null,
    reports: null,
    error: null,
    acked: [],
    createdBy: null,
  };
  refresh.insert({ ...r, id: 'ref-adopted', createdAt: 4000, updatedAt: 4000 });
  refresh.adopt(
    'ref-adopted',
    { digest: 'cc'.repeat(32), group: OUT.group, transcript: 'dd'.repeat(32), reports: [{ p: '{}', s: 'x' }] },
    4100,
  );
  refresh.ack('ref-adopted', 'n2', 4200);
  refresh.insert({ ...r, id: 'ref-cut', createdAt: 5000, updatedAt: 5000 });
  refresh.close();
}

describe('import of the FROST files of an older coordinator', () => {
  it('imports every record once, in the store, records what was cut off as failed, keeps the files renamed', async () => {
    writeOldFiles(dir);
    const old = { dkg: LegacyFrostDkgStore.at(dir), refresh: LegacyFrostRefreshStore.at(dir) };
    const before = { dkgs: old.dkg.list(), refreshes: old.refresh.list() };
    old.dkg.close();
    old.refresh.close();
    const store = openSqliteStore(dir);
    try {
      expect(await importLegacyFrostFiles(dir, store)).toEqual({
        outcome: 'imported',
        dkgs: 3,
        proposals: 1,
        refreshes: 2,
      });
      // Decided records as they were; a session left running is failed, as the old coordinator would have done.
      expect(store.getFrostDkg('dkg-ready')).toEqual(before.dkgs.find((d) => d.id === 'dkg-ready'));
      expect(store.getFrostDkg(ADDRESS)!.group).toEqual(OUT.group);
      expect(store.getFrostDkg('dkg-failed')).toEqual(before.dkgs.find((d) => d.id === 'dkg-failed'));
      expect(store.getFrostDkg('dkg-cut')).toMatchObject({
        status: 'failed',
        error: { code: 'COORD_FROST_DKG_TIMEOUT' },
      });
      expect(store.frostProposalGroup('prop-1')).toBe(ADDRESS);
      expect(store.getFrostRefresh('ref-adopted')).toEqual(before.refreshes.find((r) => r.id === 'ref-adopted'));
      expect(store.getFrostRefresh('ref-adopted')!.acked).toEqual(['n2']);
      expect(store.getFrostRefresh('ref-cut')).toMatchObject({
        status: 'failed',
        error: { code: 'COORD_FROST_REFRESH_TIMEOUT' },
      });
      expect(store.runningFrostRefreshes()).toEqual([]);
      // The old files are renamed, not deleted, and still hold what they held.
      for (const f of ['frost.sqlite', 'frost-refresh.sqlite']) {
        expect(existsSync(join(dir, f))).toBe(false);
        expect(existsSync(join(dir, `${f}.imported`))).toBe(true);
      }
      const kept = new LegacyFrostDkgStore(join(dir, 'frost.sqlite.imported'));
      expect(kept.list().map((d) => d.id)).toEqual(['dkg-cut', 'dkg-failed', 'dkg-ready']);
      kept.close();
      // Nothing is imported twice.
      expect(await importLegacyFrostFiles(dir, store)).toEqual({ outcome: 'none' });
    } finally {
      store.close();
    }
  });

  it('leaves files alone when the store holds FROST records already; retires empty ones; migrates an older file', async () => {
    const store = openSqliteStore(dir);
    try {
      // The store has records (imported before, or made since): a second set of files is not merged in.
      writeOldFiles(dir);
      store.insertFrostDkg({ ...readLegacyFrostFiles(dir)!.dkgs[0]!, id: 'mine', address: null });
      expect(await importLegacyFrostFiles(dir, store)).toEqual({ outcome: 'kept' });
      expect(existsSync(join(dir, 'frost.sqlite'))).toBe(true);
      expect(store.getFrostDkg('dkg-ready')).toBeUndefined();
    } finally {
      store.close();
    }
    // An older coordinator created both files at every start: empty ones are retired without a write.
    const empty = await tempDir('coord-frost-legacy-empty-');
    const other = openSqliteStore(empty);
    try {
      LegacyFrostDkgStore.at(empty).close();
      LegacyFrostRefreshStore.at(empty).close();
      expect(await importLegacyFrostFiles(empty, other)).toEqual({
        outcome: 'imported',
        dkgs: 0,
        proposals: 0,
        refreshes: 0,
      });
      expect(existsSync(join(empty, 'frost.sqlite.imported'))).toBe(true);
      expect(existsSync(join(empty, 'frost-refresh.sqlite.imported'))).toBe(true);
      // A frost.sqlite of the first FROST release (schema 1, before proposal bindings) is brought up to date first.
      const v1 = join(empty, 'v1');
      const d = LegacyFrostDkgStore.at(v1);
      d.insert({ ...readLegacyFrostFiles(dir)!.dkgs.find((x) => x.id === 'dkg-ready')! });
      d.close();
      const raw = new Database(join(v1, 'frost.sqlite'));
      raw.exec('DROP TABLE frost_proposals');
      raw.pragma('user_version = 1');
      raw.close();
      const records = readLegacyFrostFiles(v1)!;
      expect(records.dkgs.map((x) => x.address)).toEqual([ADDRESS]);
      expect(records.proposals).toEqual([]);
      expect(records.refreshes).toEqual([]);
      // A file that is no database is refused (the coordinator does not start), nothing imported, nothing renamed.
      const bad = join(empty, 'bad');
      await mkdir(bad);
      await writeFile(join(bad, 'frost.sqlite'), 'not a database at all, but long enough to be read as a header');
      await expect(importLegacyFrostFiles(bad, other)).rejects.toThrow(/not a database/);
      expect(existsSync(join(bad, 'frost.sqlite'))).toBe(true);
      expect(other.frostRecords().dkgs).toEqual([]);
    } finally {
      other.close();
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('a coordinator started on a data directory with the old files serves the imported groups', async () => {
    writeOldFiles(dir);
    h = await harness({ dir });
    const res = await h.app.inject({ method: 'GET', url: `/v1/frost/groups/${ADDRESS}`, headers: bearer(h.adminKey) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: 'dkg-ready', status: 'ready', address: ADDRESS });
    const refreshes = await h.app.inject({
      method: 'GET',
      url: `/v1/frost/groups/${ADDRESS}/refreshes`,
      headers: bearer(h.adminKey),
    });
    expect(refreshes.json().refreshes.map((r: { id: string }) => r.id)).toEqual(['ref-cut', 'ref-adopted']);
    expect(existsSync(join(dir, 'frost.sqlite.imported'))).toBe(true);
  });
});

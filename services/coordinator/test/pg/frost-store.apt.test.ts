import { describe, expect, it } from 'vitest';
import { PgStore } from '../../src/pg/store.ts';
import { ADOPTION, dkg, readyGroup, refresh, runFrostStoreContract } from './frost-store-contract.ts';
import { freshDatabase, freshPool, poolOn, usePostgres } from './helpers.ts';

const pg = usePostgres();

runFrostStoreContract('postgres', async () => {
  const store = await PgStore.open(await freshPool(pg.server()));
  return { store, close: () => store.close() };
});

/** Two "replicas": two pools (two sets of connections) on one database. */
async function twoReplicas(): Promise<[PgStore, PgStore]> {
  const db = await freshDatabase(pg.server());
  return [await PgStore.open(poolOn(pg.server(), db)), await PgStore.open(poolOn(pg.server(), db))];
}

const LOST = { code: 'COORD_FROST_RELAY_LOST', message: 'its replica stopped', culprits: [] };

describe('FROST records across replicas on one PostgreSQL', () => {
  it('a group made through one replica is read by the other, and so is the group a proposal is bound to', async () => {
    const [a, b] = await twoReplicas();
    try {
      await readyGroup(a, 'd1', 'GADDRESS1');
      await a.bindFrostProposal('p1', 'GADDRESS1', 10);
      expect(await b.getFrostDkg('GADDRESS1')).toEqual(await a.getFrostDkg('d1'));
      expect(await b.frostProposalGroup('p1')).toBe('GADDRESS1');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('the driving replica deciding while another fails the session as abandoned: exactly one outcome', async () => {
    const [a, b] = await twoReplicas();
    try {
      for (let i = 0; i < 20; i++) {
        // A key generation: A records the group, B (taking A for dead) records it failed, at once.
        await a.insertFrostDkg(dkg(`d${i}`, { updatedAt: 1000 }));
        const done = { address: `GADDR${i}`, group: ADOPTION.group, transcript: ADOPTION.transcript };
        const [ready, failed] = await Promise.all([
          a.readyFrostDkg(`d${i}`, done, 9000),
          b.failFrostDkg(`d${i}`, LOST, 9000, 5000),
        ]);
        expect([ready, failed].filter(Boolean)).toHaveLength(1);
        const rec = (await b.getFrostDkg(`d${i}`))!;
        expect(rec.status).toBe(ready ? 'ready' : 'failed');
        expect(rec.address).toBe(ready ? `GADDR${i}` : null);
        // A refresh of that group (or of another when it failed): adoption against the failure.
        const group = ready ? `GADDR${i}` : `GADDRESS-X${i}`;
        if (!ready) await readyGroup(a, `g${i}`, group);
        const before = (await a.getFrostDkg(group))!.group;
        expect(await a.insertFrostRefresh(refresh(`r${i}`, group, { updatedAt: 1000 }))).toBe(true);
        const [adopted, lost] = await Promise.all([
          a.adoptFrostRefresh(`r${i}`, ADOPTION, 9000),
          b.failFrostRefresh(`r${i}`, LOST, 9000, 5000),
        ]);
        expect([adopted, lost].filter(Boolean)).toHaveLength(1);
        const r = (await b.getFrostRefresh(`r${i}`))!;
        expect(r.status).toBe(adopted ? 'adopted' : 'failed');
        // The group's public data changed exactly when the adoption is what was recorded.
        expect((await b.getFrostDkg(group))!.group).toEqual(adopted ? ADOPTION.group : before);
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('two replicas starting a refresh of one group at once: one runs; acknowledgements from both are all kept', async () => {
    const [a, b] = await twoReplicas();
    try {
      await readyGroup(a, 'd1', 'GADDRESS1');
      for (let i = 0; i < 10; i++) {
        const inserted = await Promise.all([
          a.insertFrostRefresh(refresh(`a${i}`, 'GADDRESS1', { createdAt: 3000 + i })),
          b.insertFrostRefresh(refresh(`b${i}`, 'GADDRESS1', { createdAt: 3000 + i })),
          a.insertFrostRefresh(refresh(`c${i}`, 'GADDRESS1', { createdAt: 3000 + i })),
        ]);
        expect(inserted.filter(Boolean)).toHaveLength(1);
        expect(await a.runningFrostRefreshes()).toHaveLength(1);
        const winner = ['a', 'b', 'c'][inserted.indexOf(true)]!;
        expect(await b.adoptFrostRefresh(`${winner}${i}`, ADOPTION, 4000)).toBe(true);
        // Three nodes acknowledge through both replicas at once, twice each.
        await Promise.all(
          ['n1', 'n2', 'n3', 'n1', 'n2', 'n3'].map((n, j) => (j % 2 ? a : b).ackFrostRefresh(`${winner}${i}`, n, 5000)),
        );
        expect((await a.getFrostRefresh(`${winner}${i}`))!.acked).toEqual(['n1', 'n2', 'n3']);
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('replicas importing old files at once: one import, the other finds the records there', async () => {
    const [a, b] = await twoReplicas();
    try {
      const records = (tag: string) => ({
        dkgs: [dkg(`${tag}-d1`)],
        proposals: [{ proposalId: `${tag}-p1`, address: 'GADDRESS1', createdAt: 1 }],
        refreshes: [refresh(`${tag}-r1`, 'GADDRESS1', { status: 'failed', error: LOST })],
      });
      const done = await Promise.all([a.importFrostRecords(records('a')), b.importFrostRecords(records('b'))]);
      expect(done.filter(Boolean)).toHaveLength(1);
      const winner = done[0] ? 'a' : 'b';
      expect(await a.frostRecords()).toEqual(records(winner));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

import { describe, expect, it } from 'vitest';
import type { RefreshRecord } from '../../src/frost/refresh-store.ts';
import type { DkgRecord } from '../../src/frost/store.ts';
import type { AwaitableRepository, FrostRepository } from '../../src/store.ts';

/**
 * One contract for the FROST records of every store (store.ts FrostRepository): the SQLite store (sync) and PgStore
 * (async) run the same assertions, each call awaited. frost-store.apt.test.ts adds the races of two replicas.
 */

export type FrostStore = AwaitableRepository<FrostRepository>;

export interface FrostContractStore {
  store: FrostStore;
  close(): Promise<void> | void;
}

const GROUP = {
  threshold: 2,
  participants: [1, 2, 3],
  groupPublicKey: 'aa'.repeat(32),
  commitments: ['bb'.repeat(32), 'cc'.repeat(32)],
  verifyingShares: { '1': '01'.repeat(32), '2': '02'.repeat(32), '3': '03'.repeat(32) },
};
const PARTICIPANTS = [1, 2, 3].map((index) => ({ index, nodeId: `n${index}`, identityKey: `key-${index}` }));

export function dkg(id: string, over: Partial<DkgRecord> = {}): DkgRecord {
  return {
    id,
    threshold: 2,
    participants: PARTICIPANTS,
    roster: `roster-${id}`,
    status: 'running',
    step: 'start',
    address: null,
    group: null,
    transcript: null,
    error: null,
    createdBy: 'k1',
    createdAt: 1000,
    updatedAt: 1000,
    ...over,
  };
}

export function refresh(id: string, address: string, over: Partial<RefreshRecord> = {}): RefreshRecord {
  return {
    id,
    address,
    threshold: 2,
    participants: PARTICIPANTS,
    roster: `roster-${id}`,
    status: 'running',
    step: 'start',
    oldDigest: 'dd'.repeat(32),
    digest: null,
    group: null,
    transcript: null,
    reports: null,
    error: null,
    acked: [],
    createdBy: null,
    createdAt: 2000,
    updatedAt: 2000,
    ...over,
  };
}

export const NEW_GROUP = { ...GROUP, commitments: ['ee'.repeat(32), 'ff'.repeat(32)] };
export const ADOPTION = {
  digest: '12'.repeat(32),
  group: NEW_GROUP,
  transcript: '34'.repeat(32),
  reports: [{ p: '{"kind":"refresh-report"}', s: 'sig' }],
};

/** A ready group `address` made by key generation `id`. */
export async function readyGroup(s: FrostStore, id: string, address: string, at = 1500): Promise<void> {
  await s.insertFrostDkg(dkg(id, { createdAt: at, updatedAt: at }));
  expect(await s.readyFrostDkg(id, { address, group: GROUP, transcript: '56'.repeat(32) }, at + 1)).toBe(true);
}

export function runFrostStoreContract(name: string, open: () => Promise<FrostContractStore>): void {
  describe(`FROST store contract: ${name}`, () => {
    const withStore = (fn: (s: FrostStore) => Promise<void>) => async () => {
      const c = await open();
      try {
        await fn(c.store);
      } finally {
        await c.close();
      }
    };

    it(
      'key generations: insert, read by id or address, the step of running ones only, one outcome each',
      withStore(async (s) => {
        await s.insertFrostDkg(dkg('d1'));
        expect(await s.getFrostDkg('d1')).toEqual(dkg('d1'));
        expect(await s.getFrostDkg('nope')).toBeUndefined();
        await s.setFrostDkgStep('d1', 'round2', 1100);
        expect(await s.getFrostDkg('d1')).toMatchObject({ step: 'round2', updatedAt: 1100, status: 'running' });
        expect((await s.runningFrostDkgs()).map((r) => r.id)).toEqual(['d1']);
        const done = { address: 'GADDRESS1', group: GROUP, transcript: '77'.repeat(32) };
        expect(await s.readyFrostDkg('d1', done, 1200)).toBe(true);
        // Decided: neither a second outcome nor a step is written any more.
        expect(await s.readyFrostDkg('d1', { ...done, transcript: '88'.repeat(32) }, 1300)).toBe(false);
        expect(await s.failFrostDkg('d1', { code: 'X', message: 'x', culprits: [] }, 1300)).toBe(false);
        await s.setFrostDkgStep('d1', 'start', 1400);
        const ready = await s.getFrostDkg('GADDRESS1');
        expect(ready).toEqual({ ...dkg('d1'), status: 'ready', step: 'round2', updatedAt: 1200, ...done });
        expect(await s.runningFrostDkgs()).toEqual([]);
        // Failing: with every field of the error kept.
        await s.insertFrostDkg(dkg('d2', { createdAt: 3000, updatedAt: 3000 }));
        const error = {
          code: 'COORD_FROST_DKG_REFUSED',
          message: 'n2 refused',
          reportedBy: 'n2',
          culprits: ['n2'],
          nodeCode: 'FROST_DKG_BAD_PROOF',
          unreachable: ['n3'],
        };
        expect(await s.failFrostDkg('d2', error, 3100)).toBe(true);
        expect(await s.readyFrostDkg('d2', done, 3200)).toBe(false);
        expect(await s.getFrostDkg('d2')).toMatchObject({ status: 'failed', error, address: null, updatedAt: 3100 });
        // Newest first, limited.
        await s.insertFrostDkg(dkg('d3', { createdAt: 2000, updatedAt: 2000 }));
        expect((await s.listFrostDkgs(10)).map((r) => r.id)).toEqual(['d2', 'd3', 'd1']);
        expect((await s.listFrostDkgs(1)).map((r) => r.id)).toEqual(['d2']);
      }),
    );

    it(
      'an abandoned session is failed only while it is still stale: a step written meanwhile keeps it alive',
      withStore(async (s) => {
        await s.insertFrostDkg(dkg('d1', { updatedAt: 5000 }));
        const lost = { code: 'COORD_FROST_RELAY_LOST', message: 'gone', culprits: [] };
        expect(await s.failFrostDkg('d1', lost, 9000, 5000)).toBe(false); // last step at 5000: not before 5000
        expect(await s.failFrostDkg('d1', lost, 9000, 5001)).toBe(true);
        expect(await s.getFrostDkg('d1')).toMatchObject({ status: 'failed', error: lost });
        await s.insertFrostRefresh(refresh('r1', 'GADDRESS1', { updatedAt: 5000 }));
        await s.setFrostRefreshStep('r1', 'round1', 8000);
        expect(await s.failFrostRefresh('r1', lost, 9000, 6000)).toBe(false);
        expect(await s.getFrostRefresh('r1')).toMatchObject({ status: 'running', step: 'round1', updatedAt: 8000 });
        expect(await s.failFrostRefresh('r1', lost, 9000, 8001)).toBe(true);
        expect(await s.getFrostRefresh('r1')).toMatchObject({ status: 'failed', error: lost, updatedAt: 9000 });
      }),
    );

    it(
      'proposal bindings: the group a FROST proposal names, rebound on a second write',
      withStore(async (s) => {
        expect(await s.frostProposalGroup('p1')).toBeUndefined();
        await s.bindFrostProposal('p1', 'GADDRESS1', 10);
        await s.bindFrostProposal('p2', 'GADDRESS2', 11);
        expect(await s.frostProposalGroup('p1')).toBe('GADDRESS1');
        await s.bindFrostProposal('p1', 'GADDRESS3', 12);
        expect(await s.frostProposalGroup('p1')).toBe('GADDRESS3');
        expect(await s.frostProposalGroup('p2')).toBe('GADDRESS2');
      }),
    );

    it(
      'refreshes: one running per group; adoption replaces the group public data in the same write, once',
      withStore(async (s) => {
        await readyGroup(s, 'd1', 'GADDRESS1');
        expect(await s.insertFrostRefresh(refresh('r1', 'GADDRESS1'))).toBe(true);
        expect(await s.getFrostRefresh('r1')).toEqual(refresh('r1', 'GADDRESS1'));
        // A second running refresh of the same group is refused; of another group it is not.
        expect(await s.insertFrostRefresh(refresh('r2', 'GADDRESS1'))).toBe(false);
        expect(await s.getFrostRefresh('r2')).toBeUndefined();
        expect(await s.insertFrostRefresh(refresh('r3', 'GADDRESS2', { createdAt: 2500 }))).toBe(true);
        expect((await s.runningFrostRefreshes()).map((r) => r.id).sort()).toEqual(['r1', 'r3']);
        await s.setFrostRefreshStep('r1', 'round3', 2100);
        expect(await s.adoptFrostRefresh('r1', ADOPTION, 2200)).toBe(true);
        const adopted = await s.getFrostRefresh('r1');
        expect(adopted).toMatchObject({ status: 'adopted', step: 'adopt', ...ADOPTION, updatedAt: 2200, error: null });
        expect(await s.getFrostDkg('GADDRESS1')).toMatchObject({
          status: 'ready',
          group: NEW_GROUP,
          transcript: ADOPTION.transcript,
          updatedAt: 2200,
        });
        // Decided: a second adoption or a failure writes nothing, not even to the group.
        expect(await s.adoptFrostRefresh('r1', { ...ADOPTION, group: { ...NEW_GROUP, commitments: [] } }, 2300)).toBe(
          false,
        );
        expect(await s.failFrostRefresh('r1', { code: 'X', message: 'x', culprits: [] }, 2300)).toBe(false);
        expect((await s.getFrostDkg('GADDRESS1'))!.group).toEqual(NEW_GROUP);
        expect((await s.getFrostRefresh('r1'))!.status).toBe('adopted');
        // Once decided, the group may be refreshed again.
        expect(await s.insertFrostRefresh(refresh('r4', 'GADDRESS1', { createdAt: 3000 }))).toBe(true);
        const failure = {
          code: 'COORD_FROST_REFRESH_DISAGREE',
          message: 'n3 differs',
          culprits: ['n3'],
          disagreeing: ['n3'],
          missing: [],
        };
        expect(await s.failFrostRefresh('r4', failure, 3100)).toBe(true);
        expect(await s.adoptFrostRefresh('r4', ADOPTION, 3200)).toBe(false);
        expect(await s.getFrostRefresh('r4')).toMatchObject({ status: 'failed', error: failure, digest: null });
        // Newest first, of one group or of all.
        expect((await s.listFrostRefreshes('GADDRESS1', 10)).map((r) => r.id)).toEqual(['r4', 'r1']);
        expect((await s.listFrostRefreshes(undefined, 10)).map((r) => r.id)).toEqual(['r4', 'r3', 'r1']);
        expect((await s.listFrostRefreshes(undefined, 1)).map((r) => r.id)).toEqual(['r4']);
      }),
    );

    it(
      'acknowledgements: each node once, kept sorted; a decided refresh is unacknowledged until all n did',
      withStore(async (s) => {
        await readyGroup(s, 'd1', 'GADDRESS1');
        await s.insertFrostRefresh(refresh('r1', 'GADDRESS1'));
        expect(await s.unacknowledgedFrostRefreshes()).toEqual([]); // running: nothing to tell yet
        await s.adoptFrostRefresh('r1', ADOPTION, 2100);
        expect((await s.unacknowledgedFrostRefreshes()).map((r) => r.id)).toEqual(['r1']);
        await s.ackFrostRefresh('r1', 'n3', 2200);
        await s.ackFrostRefresh('r1', 'n1', 2300);
        await s.ackFrostRefresh('r1', 'n3', 2400);
        await s.ackFrostRefresh('nope', 'n1', 2400);
        expect((await s.getFrostRefresh('r1'))!.acked).toEqual(['n1', 'n3']);
        await s.ackFrostRefresh('r1', 'n2', 2500);
        expect(await s.getFrostRefresh('r1')).toMatchObject({ acked: ['n1', 'n2', 'n3'], updatedAt: 2500 });
        expect(await s.unacknowledgedFrostRefreshes()).toEqual([]);
      }),
    );

    it(
      'every record read at once and imported once, into an empty store only',
      withStore(async (s) => {
        expect(await s.frostRecords()).toEqual({ dkgs: [], proposals: [], refreshes: [] });
        const records = {
          dkgs: [
            dkg('d1', { status: 'ready', address: 'GADDRESS1', group: GROUP, transcript: '11'.repeat(32) }),
            dkg('d2', {
              status: 'failed',
              createdAt: 1100,
              error: { code: 'COORD_FROST_DKG_TIMEOUT', message: 't', culprits: ['n2'] },
            }),
          ],
          proposals: [{ proposalId: 'p1', address: 'GADDRESS1', createdAt: 1200 }],
          refreshes: [
            refresh('r1', 'GADDRESS1', { status: 'adopted', step: 'adopt', ...ADOPTION, acked: ['n1'] }),
            refresh('r2', 'GADDRESS1', { status: 'running', createdAt: 2100 }),
          ],
        };
        expect(await s.importFrostRecords(records)).toBe(true);
        expect(await s.frostRecords()).toEqual(records);
        expect(await s.frostProposalGroup('p1')).toBe('GADDRESS1');
        expect(await s.importFrostRecords({ dkgs: [dkg('d9')], proposals: [], refreshes: [] })).toBe(false);
        expect(await s.getFrostDkg('d9')).toBeUndefined();
      }),
    );
  });
}

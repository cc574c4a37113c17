import { Asset, type Keypair, Operation } from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { account, fund, keys, signed, sim, tx, verdict } from './helpers.ts';

/**
 * The shape of Horizon's account resource (GET /accounts/:id): the fields of `HorizonApi.AccountResponse` in
 * @stellar/stellar-sdk (lib/horizon/horizon_api.d.ts, what the SDK's loadAccount reads), which mirrors stellar/go
 * protocols/horizon `Account`: `home_domain` and `inflation_destination` only when set, `sequence` as a decimal
 * string, `signers` from AccountEntry.SignerSummary (the master key only while its weight is above 0).
 */
const REQUIRED = [
  '_links',
  'id',
  'paging_token',
  'account_id',
  'sequence',
  'sequence_ledger',
  'sequence_time',
  'subentry_count',
  'thresholds',
  'last_modified_ledger',
  'last_modified_time',
  'flags',
  'balances',
  'signers',
  'data',
  'num_sponsoring',
  'num_sponsored',
].sort();
const LINKS = ['self', 'transactions', 'operations', 'payments', 'effects', 'offers', 'trades', 'data'].sort();

describe("Horizon's account resource", () => {
  let app: FastifyInstance;
  beforeEach(async () => {
    app = await sim();
  });
  afterEach(async () => {
    await app.close();
  });
  const get = async (id: string) => (await app.inject({ url: `/accounts/${id}` })).json();

  it('has exactly the fields of HorizonApi.AccountResponse, with their types', async () => {
    const [a] = keys(1) as [Keypair];
    await fund(app, a);
    const r = await get(a.publicKey());
    expect(Object.keys(r).sort()).toEqual(REQUIRED);
    expect(Object.keys(r._links).sort()).toEqual(LINKS);
    expect(r._links.self).toEqual({ href: `http://localhost:80/accounts/${a.publicKey()}` });
    expect(r._links.transactions).toMatchObject({ templated: true });
    expect(r.id).toBe(a.publicKey());
    expect(r.account_id).toBe(a.publicKey());
    expect(r.paging_token).toBe(a.publicKey());
    expect(r.sequence).toMatch(/^\d+$/);
    expect(BigInt(r.sequence)).toBe(account(app, a.publicKey()).seq);
    expect(typeof r.sequence_ledger).toBe('number');
    expect(r.sequence_time).toMatch(/^\d+$/);
    expect(r.subentry_count).toBe(0);
    expect(r.last_modified_time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(r.thresholds).toEqual({ low_threshold: 0, med_threshold: 0, high_threshold: 0 });
    expect(r.flags).toEqual({
      auth_required: false,
      auth_revocable: false,
      auth_immutable: false,
      auth_clawback_enabled: false,
    });
    expect(r.balances).toEqual([
      {
        balance: '10000.0000000',
        buying_liabilities: '0.0000000',
        selling_liabilities: '0.0000000',
        asset_type: 'native',
      },
    ]);
    expect(r.signers).toEqual([{ weight: 1, key: a.publicKey(), type: 'ed25519_public_key' }]);
    expect(r.data).toEqual({});
    expect([r.num_sponsoring, r.num_sponsored]).toEqual([0, 0]);
  });

  it('adds home_domain and inflation_destination when set, trustlines before the native balance, data in base64', async () => {
    const [a, issuer] = keys(2) as [Keypair, Keypair];
    await fund(app, a, issuer);
    const hash = Buffer.alloc(32, 1);
    expect(
      await verdict(
        app,
        signed(
          tx(app, a.publicKey(), [
            Operation.setOptions({ homeDomain: 'example.com', inflationDest: issuer.publicKey() }),
            Operation.changeTrust({ asset: new Asset('USD', issuer.publicKey()), limit: '100' }),
            Operation.manageData({ name: 'k', value: 'v' }),
            Operation.setOptions({ signer: { sha256Hash: hash, weight: 2 } }),
          ]),
          a,
        ),
      ),
    ).toBe('ok');
    const r = await get(a.publicKey());
    expect(Object.keys(r).sort()).toEqual([...REQUIRED, 'home_domain', 'inflation_destination'].sort());
    expect(r.home_domain).toBe('example.com');
    expect(r.inflation_destination).toBe(issuer.publicKey());
    expect(r.subentry_count).toBe(3);
    expect(r.balances.map((b: { asset_type: string }) => b.asset_type)).toEqual(['credit_alphanum4', 'native']);
    expect(r.balances[0]).toMatchObject({ asset_code: 'USD', asset_issuer: issuer.publicKey(), limit: '100.0000000' });
    expect(r.data).toEqual({ k: Buffer.from('v').toString('base64') });
    expect(r.signers).toEqual([
      { weight: 2, key: expect.stringMatching(/^X/), type: 'sha256_hash' },
      { weight: 1, key: a.publicKey(), type: 'ed25519_public_key' },
    ]);
  });

  it('leaves the master key out of signers at weight 0, and lists it again when its weight comes back', async () => {
    const [a, s] = keys(2) as [Keypair, Keypair];
    await fund(app, a);
    const setup = tx(app, a.publicKey(), [
      Operation.setOptions({ signer: { ed25519PublicKey: s.publicKey(), weight: 1 } }),
      Operation.setOptions({ masterWeight: 0 }),
    ]);
    expect(await verdict(app, signed(setup, a))).toBe('ok');
    expect((await get(a.publicKey())).signers).toEqual([{ weight: 1, key: s.publicKey(), type: 'ed25519_public_key' }]);
    // The ledger still holds the master key at weight 0 (thresholds[0]); only Horizon's list leaves it out.
    expect(account(app, a.publicKey()).masterWeight).toBe(0);
    const back = tx(app, a.publicKey(), [Operation.setOptions({ masterWeight: 3 })]);
    expect(await verdict(app, signed(back, s))).toBe('ok');
    expect((await get(a.publicKey())).signers.at(-1)).toEqual({
      weight: 3,
      key: a.publicKey(),
      type: 'ed25519_public_key',
    });
  });

  it('lists the accounts a key signs (GET /accounts?signer=), paged by account id, as the SDK reads them', async () => {
    const [s, a, b, c, other] = keys(5) as [Keypair, Keypair, Keypair, Keypair, Keypair];
    await fund(app, s, a, b, c, other);
    for (const k of [a, b, c]) {
      const add = tx(app, k.publicKey(), [
        Operation.setOptions({ signer: { ed25519PublicKey: s.publicKey(), weight: 1 } }),
      ]);
      expect(await verdict(app, signed(add, k))).toBe('ok');
    }
    const list = async (q: string) => (await app.inject({ url: `/accounts?${q}` })).json();
    // s signs a, b and c, and is the master key of its own account (weight 1): four accounts, in id order.
    const all = [s, a, b, c].map((k) => k.publicKey()).sort();
    const r = await list(`signer=${s.publicKey()}&limit=200`);
    expect(r._embedded.records.map((x: { id: string }) => x.id)).toEqual(all);
    expect(Object.keys(r._embedded.records[0]).sort()).toEqual(REQUIRED);
    // Paging: two by two, the cursor being the last id; descending order reverses.
    const first = await list(`signer=${s.publicKey()}&limit=2`);
    expect(first._embedded.records.map((x: { id: string }) => x.id)).toEqual(all.slice(0, 2));
    const second = await list(`signer=${s.publicKey()}&limit=2&cursor=${all[1]}`);
    expect(second._embedded.records.map((x: { id: string }) => x.id)).toEqual(all.slice(2));
    const desc = await list(`signer=${s.publicKey()}&order=desc`);
    expect(desc._embedded.records.map((x: { id: string }) => x.id)).toEqual([...all].reverse());
    // A key that signs nothing has an empty list; the master key at weight 0 is not listed.
    expect((await list(`signer=${keys(1)[0]!.publicKey()}`))._embedded.records).toEqual([]);
    const off = tx(app, a.publicKey(), [Operation.setOptions({ masterWeight: 0 })]);
    expect(await verdict(app, signed(off, a))).toBe('ok');
    expect((await list(`signer=${a.publicKey()}`))._embedded.records).toEqual([]);
    // Bad input is a Horizon problem naming the parameter.
    for (const [q, field] of [
      ['', 'signer'],
      ['signer=nope', 'signer'],
      [`signer=${s.publicKey()}&order=up`, 'order'],
      [`signer=${s.publicKey()}&limit=0`, 'limit'],
      [`signer=${s.publicKey()}&cursor=12`, 'cursor'],
    ] as const) {
      const res = await app.inject({ url: `/accounts?${q}` });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().extras.invalid_field, q).toBe(field);
    }
  });
});

import { Account, Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeSession, runDkg } from '../../../packages/frost/test/helpers.ts';
import { disposeHarness, FakeLedger, type Harness, harness, payment, postAsAdmin } from './helpers.ts';

/**
 * POST /v1/proposals with `group` (services/coordinator src/frost/proposals.ts): the group must be a ready key
 * generation of this coordinator, its key alone must reach the weight the transaction needs, and the transaction
 * must be classic; a proposal that passes is stored as kind `frostTx` with its group, announced with it.
 */

const NETWORK = 'Test SDF Network ; September 2015';
let address: string;
let h: Harness | undefined;

beforeAll(() => {
  const { session, secrets } = makeSession(3, 2, 'dkg-proposals-1');
  address = runDkg(session, secrets).outputs[0]!.address;
});

afterEach(async () => {
  h = await disposeHarness(h);
});

async function rig() {
  const ledger = new FakeLedger();
  const strong = Keypair.random().publicKey();
  const weak = Keypair.random().publicKey();
  const auth = (id: string, weight: number) => ({
    accountId: id,
    masterWeight: 0,
    thresholds: { low: 2, medium: 2, high: 2 },
    signers: [
      { key: address, weight },
      { key: Keypair.random().publicKey(), weight: 1 },
    ],
  });
  ledger.accounts.set(strong, auth(strong, 2));
  ledger.accounts.set(weak, auth(weak, 1));
  h = await harness({ ledger });
  const { session, secrets } = makeSession(3, 2, 'dkg-proposals-1');
  const out = runDkg(session, secrets).outputs[0]!;
  // The group as the relay records it once every node confirmed (in the coordinator's store).
  h.store.insertFrostDkg({
    id: 'dkg-1',
    threshold: 2,
    participants: [1, 2, 3].map((index) => ({ index, nodeId: `n${index}`, identityKey: 'k' })),
    roster: 'r',
    status: 'running',
    step: 'confirm',
    address: null,
    group: null,
    transcript: null,
    error: null,
    createdBy: null,
    createdAt: Date.now(),
    updatedAt: Date.now(),
  });
  h.store.readyFrostDkg('dkg-1', { address, group: { ...out.group }, transcript: 't' }, Date.now());
  return { strong, weak };
}

describe('proposals signed by a FROST group', () => {
  it('refuses a group that is not ready, one that does not reach the weight, and a Soroban transaction', async () => {
    const { strong, weak } = await rig();
    const unknown = await postAsAdmin(h!, '/v1/proposals', {
      xdr: payment(strong),
      group: Keypair.random().publicKey(),
    });
    expect(unknown.statusCode).toBe(422);
    expect(unknown.json()).toMatchObject({ code: 'COORD_FROST_GROUP_NOT_READY', details: { field: 'group' } });

    const short = await postAsAdmin(h!, '/v1/proposals', { xdr: payment(weak), group: address });
    expect(short.statusCode).toBe(422);
    expect(short.json()).toMatchObject({
      code: 'COORD_FROST_GROUP_NOT_SIGNER',
      details: { field: 'group', account: weak, weight: 1, needed: 2 },
    });

    const contract = StrKey.encodeContract(Buffer.alloc(32, 7));
    const soroban = new TransactionBuilder(new Account(strong, '1'), { fee: '100', networkPassphrase: NETWORK })
      .addOperation(Operation.invokeContractFunction({ contract, function: 'f', args: [] }))
      .setTimeout(60)
      .build()
      .toXDR();
    const refused = await postAsAdmin(h!, '/v1/proposals', { xdr: soroban, group: address });
    expect(refused.statusCode).toBe(422);
    expect(refused.json()).toMatchObject({ code: 'COORD_FROST_UNSUPPORTED' });

    const bad = await postAsAdmin(h!, '/v1/proposals', { xdr: payment(strong), group: 'GNOTANADDRESS' });
    expect(bad.statusCode).toBe(400);
  });

  it('stores a proposal the group can sign as frostTx, announced with its group', async () => {
    const { strong } = await rig();
    for (const i of [1, 2, 3]) {
      h!.store.enrollNode(
        { id: `n${i}`, identityKey: Buffer.alloc(32, i).toString('base64'), stellarKey: Keypair.random().publicKey() },
        Date.now(),
      );
    }
    const res = await postAsAdmin(h!, '/v1/proposals', { xdr: payment(strong), group: address });
    expect(res.statusCode, res.body).toBe(201);
    const view = res.json() as { id: string; kind: string; status: string };
    expect(view).toMatchObject({ kind: 'frostTx', status: 'pending', group: address });
    // Read back, the proposal names the group that signs it; a native proposal names none.
    const read = await h!.app.inject({
      url: `/v1/proposals/${view.id}`,
      headers: { authorization: `Bearer ${h!.adminKey}` },
    });
    expect(read.json()).toMatchObject({ id: view.id, group: address });
    const native = await postAsAdmin(h!, '/v1/proposals', { xdr: payment(strong) });
    expect(native.json()).toMatchObject({ kind: 'transaction', group: null });
    const created = h!.store.eventsOf(view.id, 10).find((e) => e.type === 'proposal.created');
    expect(created?.data).toMatchObject({ frost: { group: address, threshold: 2 } });
  });

  it('ends a proposal at once when fewer than t of the group are enrolled', async () => {
    const { strong } = await rig();
    const res = await postAsAdmin(h!, '/v1/proposals', { xdr: payment(strong), group: address });
    expect(res.statusCode).toBe(201);
    const view = res.json() as { status: string; statusReason: string };
    expect(view.status).toBe('rejected');
    expect(view.statusReason).toContain('0 member(s) can still sign, 2 needed');
  });
});

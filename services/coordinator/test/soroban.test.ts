import { authBundleHash } from '@cosigner/protocol/auth-bundle';
import type { Body } from '@cosigner/protocol/messages';
import { authEntryPayload, checkAccountAuthSignatures, parseMultisigSignatureVector } from '@cosigner/stellar/soroban';
import { authEntry, type EntrySpec, invokeTx, sourceAccountEntry } from '@cosigner/testkit/soroban';
import { Keypair, StrKey, TransactionBuilder, xdr } from '@stellar/stellar-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { coordinatorErrors } from '../src/errors.ts';
import { chooseMinimal } from '../src/soroban.ts';
import type { Awaitable, Store } from '../src/store.ts';
import { FakeLedger, type Harness, harness, multisig, NETWORK, payment, TestNode, waitFor } from './helpers.ts';

const ESCROW = StrKey.encodeContract(Buffer.alloc(32, 1));
let h: Harness | undefined;
const nodes: TestNode[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) n.close();
  await h?.close();
  h = undefined;
});

/** The entries a proposal carries: standalone, or the auth of the transaction's single operation. */
function entriesOf(p: Body<'proposal'>): xdr.SorobanAuthorizationEntry[] {
  if (p.authEntries) return p.authEntries.map((b) => xdr.SorobanAuthorizationEntry.fromXdr(b, 'base64'));
  const env = xdr.TransactionEnvelope.fromXdr(p.xdr!, 'base64') as xdr.TransactionEnvelopeTx;
  return (env.v1.tx.operations[0]!.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp.auth;
}

/** A node double that signs auth payloads it computes itself (and transaction hashes like the default). */
function authSigner(tamper?: 'payload' | 'digest' | 'none'): (p: Body<'proposal'>, n: TestNode) => Body<'decision'> {
  return (p, n) => {
    if (p.kind === 'transaction') {
      const hash = Buffer.from(TransactionBuilder.fromXDR(p.xdr!, NETWORK).hash());
      return {
        proposalId: p.proposalId,
        hash: hash.toString('hex'),
        outcome: 'approve',
        reasons: [],
        signerKey: n.stellarKey,
        signature: Buffer.from(n.keypair.sign(hash)).toString('base64'),
      };
    }
    const entries = entriesOf(p);
    const payloads: Buffer[] = [];
    const sigs: { index: number; payload: string; signature: string }[] = [];
    entries.forEach((e, index) => {
      if (e.credentials.type === 'sorobanCredentialsSourceAccount') return;
      const payload = authEntryPayload(e, NETWORK);
      payloads.push(payload);
      const signed = tamper === 'payload' ? Buffer.alloc(32, 1) : payload;
      sigs.push({
        index,
        payload: payload.toString('hex'),
        signature: Buffer.from(n.keypair.sign(signed)).toString('base64'),
      });
    });
    return {
      proposalId: p.proposalId,
      hash: tamper === 'digest' ? 'ab'.repeat(32) : authBundleHash(payloads),
      outcome: 'approve',
      reasons: [],
      signerKey: n.stellarKey,
      ...(tamper === 'none' ? {} : { authSignatures: sigs }),
    };
  };
}

/** A node double that refuses whatever it is asked, by policy. */
const reject = (p: Body<'proposal'>, n: TestNode): Body<'decision'> => ({
  proposalId: p.proposalId,
  hash: p.hash!,
  outcome: 'reject',
  reasons: [{ code: 'CONTRACT_NOT_ALLOWED', message: 'not in policy' }],
  signerKey: n.stellarKey,
});

interface Rig {
  h: Harness;
  account: string;
  ledger: FakeLedger;
  ns: TestNode[];
  post(payload: Record<string, unknown>): Promise<{ statusCode: number; json(): Record<string, unknown> }>;
  get(id: string): Promise<Record<string, unknown>>;
  until(id: string, status: string): Promise<Record<string, unknown>>;
}

async function rig(behaviours: TestNode['behaviour'][], config: Record<string, unknown> = {}): Promise<Rig> {
  const ns = behaviours.map((b, i) => new TestNode(`n${i}`, b));
  nodes.push(...ns);
  const ledger = new FakeLedger();
  const account = Keypair.random().publicKey();
  ledger.accounts.set(
    account,
    multisig(
      account,
      ns.map((n) => n.stellarKey),
      2,
    ),
  );
  h = await harness({ ledger, nodes: ns, listen: true, config });
  const hh = h;
  for (const n of ns) expect(await n.connect(hh.url!, hh.identity.publicKey)).toBe('welcome');
  const auth = { authorization: `Bearer ${hh.adminKey}` };
  const get = async (id: string) => (await hh.app.inject({ url: `/v1/proposals/${id}`, headers: auth })).json();
  return {
    h: hh,
    account,
    ledger,
    ns,
    post: (payload) => hh.app.inject({ method: 'POST', url: '/v1/proposals', headers: auth, payload }),
    get,
    until: (id, status) =>
      waitFor(async () => {
        const v = await get(id);
        return v.status === status ? v : undefined;
      }, `${id} ${status}`),
  };
}

function entry(r: { account: string }, over: Partial<EntrySpec> = {}) {
  return authEntry({
    address: r.account,
    contract: ESCROW,
    fn: 'deposit',
    args: [{ address: r.account }, { i128: 10n }],
    nonce: 1n,
    expiration: 500,
    ...over,
  });
}

const b64 = (e: xdr.SorobanAuthorizationEntry) => e.toXdr('base64');

/** A simulated deposit into the escrow, sourced by the rig's multisig with one of its entries, unless `over` says. */
function depositTx(r: { account: string }, over: Partial<Parameters<typeof invokeTx>[0]> = {}): string {
  return invokeTx({
    contract: ESCROW,
    fn: 'deposit',
    args: [{ address: r.account }, { i128: 10n }],
    source: r.account,
    seq: 2n,
    network: NETWORK,
    auth: [entry(r)],
    resources: { fee: 1000, instructions: 10, readOnly: 1, readWrite: 1 },
    ...over,
  });
}

function checkSigned(r: Rig, signed: string, unsigned: xdr.SorobanAuthorizationEntry) {
  const e = xdr.SorobanAuthorizationEntry.fromXdr(signed, 'base64');
  const creds =
    e.credentials.type === 'sorobanCredentialsAddressV2'
      ? e.credentials.addressV2
      : (e.credentials as xdr.SorobanCredentialsAddress).address;
  const vec = parseMultisigSignatureVector(creds.signature);
  expect(vec).toHaveLength(2);
  expect(Buffer.compare(vec[0]!.publicKey, vec[1]!.publicKey)).toBeLessThan(0);
  const check = checkAccountAuthSignatures(
    r.ledger.accounts.get(r.account)!,
    authEntryPayload(unsigned, NETWORK),
    creds.signature,
  );
  expect(check).toEqual({ ok: true, weight: 2 });
}

describe('Soroban auth rounds on the coordinator', () => {
  it('standalone entries: 2-of-3 nodes sign; the coordinator returns minimal sorted vectors and submits nothing', async () => {
    const r = await rig([authSigner(), authSigner(), 'silent']);
    const entries = [entry(r), entry(r, { nonce: 2n, fn: 'release' })];
    const res = await r.post({ kind: 'authEntries', account: r.account, entries: entries.map(b64) });
    expect(res.statusCode).toBe(201);
    const created = res.json();
    expect(created.kind).toBe('authEntries');
    expect(created.hash).toBe(authBundleHash(entries.map((e) => authEntryPayload(e, NETWORK))));
    const done = await r.until(created.id as string, 'signed');
    const signed = done.authEntries as string[];
    expect(signed).toHaveLength(2);
    checkSigned(r, signed[0]!, entries[0]!);
    checkSigned(r, signed[1]!, entries[1]!);
    expect(done.envelope).toBeNull();
    expect((done.signatures as unknown[]).length).toBe(2);
    expect(r.ledger.submitted).toEqual([]);
    // The silent node was told the round is over.
    await r.ns[2]!.until(() => r.ns[2]!.cancels.length === 1);
    const again = await r.post({
      kind: 'authEntries',
      account: r.account,
      entries: entries.map(b64),
      idempotencyKey: 'k1',
    });
    expect(again.statusCode).toBe(201);
    expect((await r.post({ kind: 'authEntries', entries: [b64(entries[0]!)], idempotencyKey: 'k1' })).statusCode).toBe(
      409,
    );
  });

  it('an invokeHostFunction tx sourced by the multisig: entries signed first, then the envelope, then submitted', async () => {
    const r = await rig([authSigner(), authSigner(), authSigner()]);
    const e = entry(r);
    const tx = depositTx(r, { auth: [e] });
    const res = await r.post({ xdr: tx, submit: true });
    expect(res.statusCode).toBe(201);
    const parent = res.json();
    expect(parent.kind).toBe('sorobanTx');
    const done = await r.until(parent.id as string, 'signed');
    const child = await waitFor(
      async () => ((await r.get(parent.id as string)).transactionProposal as string | null) ?? undefined,
    );
    const submitted = await r.until(child, 'submitted');
    expect(submitted.kind).toBe('transaction');
    expect(r.ledger.submitted).toHaveLength(1);
    const sent = xdr.TransactionEnvelope.fromXdr(r.ledger.submitted[0]!, 'base64') as xdr.TransactionEnvelopeTx;
    expect(sent.v1.signatures).toHaveLength(2);
    const signedEntry = (sent.v1.tx.operations[0]!.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp
      .auth[0]!;
    checkSigned(r, b64(signedEntry), e);
    // The parent keeps the unsigned envelope with the signed entries: the child signed exactly that transaction.
    expect((await r.get(child)).hash).toBe(
      Buffer.from(TransactionBuilder.fromXDR(done.envelope as string, NETWORK).hash()).toString('hex'),
    );
  });

  it('a tx sourced by someone else ends with the signed entries in an unsigned envelope for them to submit', async () => {
    const r = await rig([authSigner(), authSigner(), 'silent']);
    const stranger = Keypair.random().publicKey();
    r.ledger.accounts.set(stranger, multisig(stranger, [stranger], 1));
    const e = entry(r);
    const tx = depositTx(r, {
      args: [],
      source: stranger,
      auth: [e, sourceAccountEntry({ contract: ESCROW, fn: 'deposit', args: [] })],
      resources: { fee: 1000, instructions: 10 },
    });
    const parent = (await r.post({ xdr: tx })).json();
    const done = await r.until(parent.id as string, 'signed');
    const env = xdr.TransactionEnvelope.fromXdr(done.envelope as string, 'base64') as xdr.TransactionEnvelopeTx;
    expect(env.v1.signatures).toHaveLength(0);
    const auth = (env.v1.tx.operations[0]!.body as xdr.OperationBodyInvokeHostFunction).invokeHostFunctionOp.auth;
    checkSigned(r, b64(auth[0]!), e);
    expect(auth[1]!.credentials.type).toBe('sorobanCredentialsSourceAccount');
    await new Promise((res) => setTimeout(res, 100));
    expect((await r.get(parent.id as string)).transactionProposal).toBeNull();
  });

  it('refuses transactions without resources or above the limits, and entries it cannot sign, with codes', async () => {
    const r = await rig([authSigner(), authSigner()], { soroban: { maxResourceFee: 5000, maxFootprintEntries: 2 } });
    const call = { contract: ESCROW, fn: 'deposit', args: [], source: r.account, seq: 2n, network: NETWORK };
    const cases: [Record<string, unknown>, number, string][] = [
      [{ xdr: invokeTx({ ...call, auth: [entry(r)] }) }, 422, 'COORD_SOROBAN_NO_RESOURCES'],
      [
        { xdr: invokeTx({ ...call, auth: [entry(r)], resources: { fee: 5001, instructions: 1 } }) },
        422,
        'COORD_SOROBAN_LIMIT',
      ],
      [
        {
          xdr: invokeTx({
            ...call,
            auth: [entry(r)],
            resources: { fee: 1, instructions: 1, readOnly: 2, readWrite: 1 },
          }),
        },
        422,
        'COORD_SOROBAN_LIMIT',
      ],
      [{ kind: 'authEntries', entries: [b64(entry(r, { v2: true }))] }, 422, 'COORD_SOROBAN_V2_DISABLED'],
      [{ kind: 'authEntries', entries: [b64(entry(r, { expiration: 0 }))] }, 400, 'COORD_SOROBAN_BAD_ENTRY'],
      [
        { kind: 'authEntries', entries: [b64(sourceAccountEntry({ contract: ESCROW, fn: 'x', args: [] }))] },
        400,
        'COORD_SOROBAN_BAD_ENTRY',
      ],
      [
        { kind: 'authEntries', account: Keypair.random().publicKey(), entries: [b64(entry(r))] },
        400,
        'COORD_SOROBAN_BAD_ENTRY',
      ],
      [{ kind: 'authEntries', entries: ['bm90IHhkcg=='] }, 400, 'STELLAR_MALFORMED_XDR'],
      [{ kind: 'authEntries', entries: [] }, 400, 'COORD_BAD_REQUEST'],
    ];
    for (const [payload, status, code] of cases) {
      const res = await r.post(payload);
      expect(res.statusCode, code).toBe(status);
      expect(res.json().code, code).toBe(code);
    }
  });

  it('ADDRESS_V2 entries are signed when the flag is on', async () => {
    const r = await rig([authSigner(), authSigner()], { soroban: { addressV2: true } });
    const e = entry(r, { v2: true });
    const p = (await r.post({ kind: 'authEntries', entries: [b64(e)] })).json();
    const done = await r.until(p.id as string, 'signed');
    checkSigned(r, (done.authEntries as string[])[0]!, e);
  });

  it('a node signing another payload, a wrong digest or nothing is flagged and its signatures are never kept', async () => {
    const r = await rig([authSigner('payload'), authSigner('digest'), authSigner('none')]);
    const p = (await r.post({ kind: 'authEntries', entries: [b64(entry(r))] })).json();
    const done = await r.until(p.id as string, 'rejected');
    expect(done.statusReason).toMatch(/quorum unreachable/);
    const kinds = (done.rejections as { reasons: { code: string }[] }[]).map((x) => x.reasons[0]!.code).sort();
    // Two invalid decisions of three already make 2-of-3 unreachable; the third may arrive after the end.
    expect(kinds.length).toBeGreaterThanOrEqual(2);
    for (const k of kinds) expect(['hash_mismatch', 'invalid_signature', 'missing_signature']).toContain(k);
    expect(r.h.store.authSignatures(p.id as string)).toEqual([]);
  });

  it('a node answering SIGNER_UNAVAILABLE is asked again and completes the round (not counted as a refusal)', async () => {
    let asked = 0;
    const flaky = (p: Body<'proposal'>, n: TestNode): Body<'decision'> => {
      asked++;
      if (asked > 1) return authSigner()(p, n);
      return {
        proposalId: p.proposalId,
        hash: p.hash!,
        outcome: 'reject',
        reasons: [{ code: 'SIGNER_UNAVAILABLE', message: 'The key backend could not sign; ask again later.' }],
        signerKey: n.stellarKey,
      };
    };
    const r = await rig([flaky, reject, authSigner()], { round: { signerRetryMs: 20, signerRetryMaxMs: 100 } });
    const e = entry(r);
    const p = (await r.post({ kind: 'authEntries', entries: [b64(e)] })).json();
    const done = await r.until(p.id as string, 'signed');
    checkSigned(r, (done.authEntries as string[])[0]!, e);
    expect(asked).toBe(2);
    expect(r.h.store.eventsSince(0, 100).some((x) => x.type === 'node.unavailable')).toBe(true);
  });

  it('node rejections settle the round; a pending round can be cancelled', async () => {
    const r = await rig([reject, reject, 'silent']);
    const p = (await r.post({ kind: 'authEntries', entries: [b64(entry(r))] })).json();
    expect((await r.until(p.id as string, 'rejected')).statusReason).toMatch(/not in policy/);

    const s = await rig(['silent', 'silent']);
    const q = (await s.post({ kind: 'authEntries', entries: [b64(entry(s))] })).json();
    const cancelled = await s.h.app.inject({
      method: 'POST',
      url: `/v1/proposals/${q.id}/cancel`,
      headers: { authorization: `Bearer ${s.h.adminKey}` },
      payload: {},
    });
    expect(cancelled.json().status).toBe('cancelled');
  });
});

describe('Soroban auth rounds that can no longer be used', () => {
  it('end expired once an entry expiration ledger is reached; a check the network cannot answer ends nothing', async () => {
    const r = await rig(['silent', 'silent', 'silent'], { soroban: { expiryCheckMs: 100 } });
    r.ledger.ledgerSeq = 450;
    const p = (await r.post({ kind: 'authEntries', entries: [b64(entry(r, { expiration: 500 }))] })).json();
    expect(p.status).toBe('pending');
    await new Promise((res) => setTimeout(res, 400));
    expect((await r.get(p.id as string)).status).toBe('pending');
    // Horizon down while the ledger passes the expiry: no verdict without an answer.
    r.ledger.up = false;
    r.ledger.ledgerSeq = 500;
    await new Promise((res) => setTimeout(res, 400));
    expect((await r.get(p.id as string)).status).toBe('pending');
    r.ledger.up = true;
    const done = await r.until(p.id as string, 'expired');
    expect(done.statusReason).toMatch(/signatureExpirationLedger \(500\) was reached \(latest ledger 500\)/);
    // The nodes asked are told to drop it.
    await waitFor(
      () => (r.ns.every((n) => n.cancels.some((c) => c.proposalId === p.id)) ? true : undefined),
      'cancels',
    );
  });

  it('refuse at creation an entry the latest ledger has already expired (1 and 5 ledgers old, or expiring now)', async () => {
    const r = await rig([authSigner(), authSigner(), 'silent']);
    r.ledger.ledgerSeq = 100;
    for (const expiration of [95, 99, 100]) {
      const res = await r.post({ kind: 'authEntries', entries: [b64(entry(r, { expiration }))] });
      expect(res.statusCode, String(expiration)).toBe(422);
      expect(res.json()).toMatchObject({
        code: 'COORD_SOROBAN_ENTRY_EXPIRED',
        details: { entry: 0, signatureExpirationLedger: expiration, latestLedger: 100 },
        message: expect.stringMatching(`Entry 0 expires at ledger ${expiration} and the latest ledger is 100`),
      });
    }
    // The next ledger (101) can still carry an entry that expires there: signed.
    const ok = await r.post({ kind: 'authEntries', entries: [b64(entry(r, { expiration: 101 }))] });
    expect(ok.statusCode).toBe(201);
    await r.until(ok.json().id as string, 'signed');
    // A Horizon that answers an older ledger later never moves the coordinator's view back.
    r.ledger.ledgerSeq = 90;
    const stale = await r.post({ kind: 'authEntries', entries: [b64(entry(r, { expiration: 99, nonce: 9n }))] });
    expect(stale.json()).toMatchObject({ code: 'COORD_SOROBAN_ENTRY_EXPIRED', details: { latestLedger: 100 } });
  });

  it('end expired, not signed, when the ledger passed the expiry while the nodes signed', async () => {
    const signer = authSigner();
    let ledger: FakeLedger | undefined;
    // Each node signs, but the network closes ledger 600 before the coordinator assembles the entries.
    const late = (p: Body<'proposal'>, n: TestNode): Body<'decision'> => {
      if (ledger) ledger.ledgerSeq = 600;
      return signer(p, n);
    };
    const r = await rig([late, late, 'silent']);
    ledger = r.ledger;
    r.ledger.ledgerSeq = 450;
    const p = (await r.post({ kind: 'authEntries', entries: [b64(entry(r, { expiration: 500 }))] })).json();
    const done = await r.until(p.id as string, 'expired');
    expect(done.statusReason).toMatch(
      /signatures were collected, but an entry's signatureExpirationLedger \(500\) was reached \(latest ledger 600\)/,
    );
    expect(done.authEntries).toBeNull();
    const events = (await r.h.app.coordinator.store.eventsSince(0, 100)).filter((e) => e.proposalId === p.id);
    expect(events.find((e) => e.type === 'proposal.expired')?.data).toMatchObject({
      code: 'COORD_SOROBAN_ENTRY_EXPIRED',
    });
  });

  it("end expired at the transaction's upper time bound", async () => {
    const r = await rig([authSigner(), 'silent', 'silent'], { soroban: { expiryCheckMs: 60_000 } });
    const tx = depositTx(r, { timeoutSeconds: 2 });
    const res = await r.post({ xdr: tx, submit: true });
    expect(res.statusCode).toBe(201);
    const done = await r.until(res.json().id as string, 'expired');
    expect(done.statusReason).toMatch(/upper time bound/);
    expect(r.ledger.submitted).toHaveLength(0);
  });
});

describe('Soroban auth rounds across a coordinator restart', () => {
  it('keeps verified signatures and completes once a second node signs after the restart', async () => {
    const r = await rig([authSigner(), 'silent', 'silent']);
    const e = entry(r);
    const p = (await r.post({ kind: 'authEntries', entries: [b64(e)] })).json();
    await waitFor(() => (r.h.store.authSignatures(p.id as string).length === 1 ? true : undefined), 'first signature');
    const dir = r.h.dir;
    for (const n of r.ns) n.close();
    await r.h.close();
    h = undefined;
    r.ns[1]!.behaviour = authSigner();
    h = await harness({ ledger: r.ledger, nodes: r.ns, listen: true, dir });
    const hh = h;
    for (const n of r.ns) expect(await n.connect(hh.url!, hh.identity.publicKey)).toBe('welcome');
    const done = await waitFor(async () => {
      const v = (
        await hh.app.inject({ url: `/v1/proposals/${p.id}`, headers: { authorization: `Bearer ${hh.adminKey}` } })
      ).json();
      return v.status === 'signed' ? v : undefined;
    }, 'signed after restart');
    checkSigned(r, (done.authEntries as string[])[0]!, e);
  });

  it('a coordinator that dies between the signed entries and their follow-up opens the follow-up at its restart, once', async () => {
    // Every account read goes to the network (no cache), so the follow-up's read is the one that hangs.
    const round = { submitBackoffMs: 10, heartbeatMs: 1000, accountCacheMs: 0 };
    const r = await rig([authSigner(), authSigner(), authSigner()], { round });
    const e = entry(r);
    const res = await r.post({ xdr: depositTx(r, { auth: [e] }), submit: true });
    expect(res.statusCode).toBe(201);
    const parent = res.json();
    // The proposal was admitted (its accounts loaded); from now on the network never answers: the follow-up, which
    // must load the source account first, is stuck right after the `signed` commit when the coordinator dies.
    const load = r.ledger.loadAccount.bind(r.ledger);
    let stuck = 0;
    r.ledger.loadAccount = () => {
      stuck++;
      return new Promise(() => undefined);
    };
    await r.until(parent.id as string, 'signed');
    await waitFor(() => (stuck > 0 ? true : undefined), 'follow-up waiting on the network');
    const before = r.h.store.getProposal(parent.id as string)!;
    expect(before.followUpDue).toBe(true);
    expect(r.h.store.getByIdempotencyKey(`soroban:${parent.id}`)).toBeUndefined();
    const dir = r.h.dir;
    for (const n of r.ns) n.close();
    await r.h.close();
    h = undefined;
    r.ledger.loadAccount = load;
    h = await harness({ ledger: r.ledger, nodes: r.ns, listen: true, dir, config: { round } });
    const hh = h;
    for (const n of r.ns) expect(await n.connect(hh.url!, hh.identity.publicKey)).toBe('welcome');
    const auth = { authorization: `Bearer ${hh.adminKey}` };
    const get = async (id: string) => (await hh.app.inject({ url: `/v1/proposals/${id}`, headers: auth })).json();
    const child = await waitFor(
      async () => ((await get(parent.id as string)).transactionProposal as string) ?? undefined,
    );
    await waitFor(async () => ((await get(child)).status === 'submitted' ? true : undefined), 'follow-up submitted');
    expect(r.ledger.submitted).toHaveLength(1);
    expect(hh.store.getProposal(parent.id as string)!.followUpDue).toBeUndefined();
    // Closed: a second restart opens nothing more.
    expect(hh.store.openProposals().map((p) => p.id)).not.toContain(parent.id);
    expect(hh.store.listProposals({ limit: 10 }).items).toHaveLength(2);
  });
});

/**
 * What the store is asked to do, per grouped unit (one commit shared with the other units of its turn) and
 * outside any: the approvals and the status transitions.
 */
function watchCommits(store: Store): { units: string[][]; outside: string[] } {
  const units: string[][] = [];
  const outside: string[] = [];
  let current: string[] | undefined;
  const grouped = store.grouped.bind(store);
  store.grouped = <T>(fn: () => Awaitable<T>) =>
    grouped(() => {
      const unit: string[] = [];
      units.push(unit);
      current = unit;
      try {
        return fn();
      } finally {
        current = undefined;
      }
    });
  const recordApproval = store.recordApproval.bind(store);
  store.recordApproval = (d, rows) => {
    (current ?? outside).push(`approve:${d.proposalId}`);
    return recordApproval(d, rows);
  };
  const transition = store.transition.bind(store);
  store.transition = (id, from, to, patch) => {
    (current ?? outside).push(`${to}:${id}`);
    return transition(id, from, to, patch);
  };
  return { units, outside };
}

describe('every kind of round runs the one lifecycle', () => {
  /** A transaction, standalone entries and a Soroban transaction (sourced by someone else: it ends signed). */
  async function threeKinds(r: Rig): Promise<string[]> {
    const stranger = Keypair.random().publicKey();
    r.ledger.accounts.set(stranger, multisig(stranger, [stranger], 1));
    const tx = depositTx(r, {
      args: [],
      source: stranger,
      auth: [entry(r, { nonce: 7n })],
      resources: { fee: 1000, instructions: 10 },
    });
    const bodies = [{ xdr: payment(r.account) }, { kind: 'authEntries', entries: [b64(entry(r))] }, { xdr: tx }];
    const ids: string[] = [];
    for (const body of bodies) {
      const res = await r.post(body);
      expect(res.statusCode).toBe(201);
      ids.push(res.json().id as string);
    }
    expect(await Promise.all(ids.map(async (id) => (await r.get(id)).kind))).toEqual([
      'transaction',
      'authEntries',
      'sorobanTx',
    ]);
    for (const id of ids) await r.until(id, 'signed');
    return ids;
  }

  it('an approval of any kind is written in one grouped unit, with the signed transition it completes', async () => {
    const r = await rig([authSigner(), authSigner(), 'silent']);
    const seen = watchCommits(r.h.store);
    const ids = await threeKinds(r);
    expect(seen.outside.filter((op) => op.startsWith('approve:'))).toEqual([]);
    for (const id of ids) {
      const approvals = seen.units.filter((u) => u.includes(`approve:${id}`));
      expect(approvals, id).toHaveLength(2);
      // The second approval completes the round: its unit also moves the row to signed.
      expect(
        approvals.filter((u) => u.includes(`signed:${id}`)),
        id,
      ).toHaveLength(1);
      expect(seen.outside, id).not.toContain(`signed:${id}`);
    }
    // The node's counter went with its decision and signatures: once per round it signed.
    expect(r.h.store.getNode('n0')?.approvals).toBe(3);
    expect(r.h.store.getNode('n1')?.approvals).toBe(3);
  });

  it('the proposal latency is recorded when a round of any kind ends', async () => {
    const r = await rig([authSigner(), authSigner(), 'silent']);
    const latency = async (status: string) =>
      (await r.h.app.coordinator.metrics.proposalLatency.get()).values.find(
        (v) => v.metricName === 'coordinator_proposal_seconds_count' && v.labels.status === status,
      )?.value ?? 0;
    await threeKinds(r);
    expect(await latency('signed')).toBe(3);
    r.ns[0]!.behaviour = 'silent';
    r.ns[1]!.behaviour = 'silent';
    const ended = [];
    for (const body of [
      { xdr: payment(r.account, { seq: '101' }) },
      { kind: 'authEntries', entries: [b64(entry(r, { nonce: 9n }))] },
    ]) {
      const id = (await r.post(body)).json().id as string;
      const res = await r.h.app.inject({
        method: 'POST',
        url: `/v1/proposals/${id}/cancel`,
        headers: { authorization: `Bearer ${r.h.adminKey}` },
      });
      ended.push(res.json().status);
    }
    expect(ended).toEqual(['cancelled', 'cancelled']);
    const cancelled = r.h.store.eventsSince(0, 1000).filter((e) => e.type === 'proposal.cancelled');
    expect(cancelled.map((e) => e.data.code)).toEqual(['COORD_CANCELLED', 'COORD_CANCELLED']);
    expect(await latency('cancelled')).toBe(2);
  });

  it('a round of any kind that ends without a result names why with a registered code', async () => {
    const r = await rig([reject, reject, authSigner()]);
    const ids = [];
    for (const body of [{ xdr: payment(r.account) }, { kind: 'authEntries', entries: [b64(entry(r))] }]) {
      ids.push((await r.post(body)).json().id as string);
    }
    for (const id of ids) await r.until(id, 'rejected');
    const ends = r.h.store.eventsSince(0, 1000).filter((e) => e.type === 'proposal.rejected');
    expect(ends.map((e) => [e.proposalId, e.data.code])).toEqual(ids.map((id) => [id, 'COORD_QUORUM_UNREACHABLE']));
    for (const e of ends) expect(coordinatorErrors.specs).toHaveProperty(e.data.code as string);
    const cancelled = r.h.store.eventsSince(0, 1000).filter((e) => e.type === 'proposal.cancelled');
    expect(cancelled).toEqual([]);
  });
});

describe('chooseMinimal', () => {
  it('takes the heaviest first and drops any signer the threshold does not need', () => {
    const c = (id: string, weight: number) => ({ id, weight });
    expect(chooseMinimal([c('a', 1), c('b', 2), c('c', 1)], 2)!.map((x) => x.id)).toEqual(['b']);
    expect(chooseMinimal([c('a', 1), c('b', 1), c('c', 1)], 2)!.map((x) => x.id)).toHaveLength(2);
    expect(
      chooseMinimal([c('a', 2), c('b', 2), c('c', 3)], 4)!
        .map((x) => x.id)
        .sort(),
    ).toEqual(['a', 'c']);
    expect(chooseMinimal([c('a', 1), c('z', 0)], 2)).toBeNull();
  });
});

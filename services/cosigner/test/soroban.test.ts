import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSigner } from '@cosigner/keys/factory';
import type { Signer } from '@cosigner/keys/signer';
import { loadPolicy, type Policy } from '@cosigner/policy/schema';
import { authBundleHash } from '@cosigner/protocol/auth-bundle';
import { createLogger } from '@cosigner/runtime/logger';
import { authEntryPayload } from '@cosigner/stellar/soroban';
import { authEntry, type EntrySpec, invokeTx, sourceAccountEntry } from '@cosigner/testkit/soroban';
import { Keypair, StrKey, type xdr } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { AuditLog, verifyAuditChain } from '../src/audit.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics } from '../src/metrics.ts';
import { SigningPipeline } from '../src/pipeline.ts';
import type { ProposalBody, Reviewer } from '../src/review.ts';
import { expirationTime, nonceSlot, prepareAuthProposal, SorobanReviewer } from '../src/soroban.ts';
import { buildTx, feeBump, NETWORK, OTHER_NETWORK, pay, reviewerFor } from './helpers.ts';

const logger = createLogger({ name: 'soroban-test', level: 'silent' });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const ESCROW = StrKey.encodeContract(Buffer.alloc(32, 1));
const OTHER_CONTRACT = StrKey.encodeContract(Buffer.alloc(32, 2));
const ANCHOR_AT = 1_800_000_000;
const ANCHOR_LEDGER = 1000;

function policyDoc(account: string, recipient: string, extra: Record<string, unknown> = {}): string {
  return stringify({
    version: 1,
    network: NETWORK,
    accounts: [account],
    operations: ['invokeHostFunction'],
    assets: [{ asset: ESCROW, maxPerTx: '500', velocity: [{ window: '1h', max: '800' }] }],
    contracts: [
      {
        id: ESCROW,
        functions: [
          { name: 'deposit', token: { asset: ESCROW, from: 0, to: 0, amount: 1 }, maxAmount: '400' },
          { name: 'release', token: { asset: ESCROW, from: 0, to: 1, amount: 2 }, recipients: [recipient] },
        ],
      },
    ],
    soroban: {
      maxAuthExpirationLedgers: 100,
      maxResourceFee: '1000000',
      maxFootprintEntries: 4,
      ledgerClock: { ledger: ANCHOR_LEDGER, closedAt: ANCHOR_AT, maxCloseSeconds: 5 },
      ...extra,
    },
  });
}

interface Rig {
  account: string;
  recipient: string;
  policy: Policy;
  signer: Signer;
  ledger: SigningLedger;
  audit: AuditLog;
  reviewer: Reviewer;
  clock: { ms: number };
}

async function rig(
  extra: Record<string, unknown> = {},
  opts: { signer?: Signer; noSoroban?: boolean } = {},
): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'cosigner-soroban-'));
  dirs.push(dir);
  const account = Keypair.random().publicKey();
  const recipient = Keypair.random().publicKey();
  const policy = loadPolicy(policyDoc(account, recipient, extra));
  const signer =
    opts.signer ?? (await createSigner({ type: 'local', keyFile: join(dir, 'k.key') }, { production: false }));
  const ledger = new SigningLedger(openLedgerDb(ledgerPath(dir)), { graceSeconds: 5 });
  const audit = new AuditLog(ledger.db);
  // 100 s after the anchor: the lower bound is ledger 1020.
  const clock = { ms: (ANCHOR_AT + 100) * 1000 };
  // One pipeline under both reviewers, as node.ts wires them.
  const pipeline = new SigningPipeline({
    ledger,
    audit,
    signer,
    logger,
    metrics: createMetrics(),
    now: () => clock.ms,
  });
  const soroban = new SorobanReviewer({ network: NETWORK, policy, ledger, audit, signer, logger, pipeline });
  const reviewer = reviewerFor(policy, {
    ledger,
    audit,
    signer,
    logger,
    pipeline,
    ...(opts.noSoroban ? {} : { soroban }),
  });
  return { account, recipient, policy, signer, ledger, audit, reviewer, clock };
}

function entry(r: Rig, over: Partial<EntrySpec> = {}) {
  return authEntry({
    address: r.account,
    contract: ESCROW,
    fn: 'deposit',
    args: [{ address: r.account }, { i128: 100n * 10_000_000n }],
    nonce: 7n,
    expiration: 1050,
    ...over,
  });
}

let n = 0;
function standalone(entries: ReturnType<typeof entry>[], over: Partial<ProposalBody> = {}): ProposalBody {
  n += 1;
  return {
    proposalId: `s${n}`,
    kind: 'authEntries',
    networkPassphrase: NETWORK,
    authEntries: entries.map((e) => e.toXdr('base64')),
    ...over,
  };
}

function verifies(r: Rig, payload: Buffer | string, sig: string): boolean {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'hex') : payload;
  return Keypair.fromPublicKey(r.signer.address).verify(p, Buffer.from(sig, 'base64'));
}

const codes = (d: { reasons: { code: string }[] }) => d.reasons.map((x) => x.code);

describe('Soroban auth entries on the node', () => {
  it('signs a standalone deposit entry over the payload it computed, records the nonce, audits; a re-ask is idempotent', async () => {
    const r = await rig();
    const e = entry(r);
    const payload = authEntryPayload(e, NETWORK);
    const p = standalone([e], { hash: authBundleHash([payload]) });
    const d = await r.reviewer.review(p);
    expect(d.outcome).toBe('approve');
    expect(d.hash).toBe(authBundleHash([payload]));
    expect(d.signature).toBeUndefined();
    expect(d.authSignatures).toHaveLength(1);
    expect(d.authSignatures![0]!.index).toBe(0);
    expect(d.authSignatures![0]!.payload).toBe(payload.toString('hex'));
    expect(verifies(r, payload, d.authSignatures![0]!.signature)).toBe(true);
    const rec = r.ledger.byHash(payload.toString('hex'))!;
    expect(rec).toMatchObject({ source: r.account, seq: nonceSlot(7n), state: 'signed' });
    expect(rec.maxTime).toBe(expirationTime(r.policy, 1050));
    expect(r.ledger.spent(ESCROW, 3600, ANCHOR_AT + 100)).toBe(100n * 10_000_000n);
    const again = await r.reviewer.review({ ...p, proposalId: 'again' });
    expect(again.authSignatures).toEqual(d.authSignatures);
    expect(r.ledger.spent(ESCROW, 3600, ANCHOR_AT + 100)).toBe(100n * 10_000_000n);
    expect(verifyAuditChain(r.ledger.db).ok).toBe(true);
    const released = r.ledger.db.prepare("SELECT count(*) AS c FROM audit WHERE type = 'signature.released'").get() as {
      c: number;
    };
    expect(released.c).toBe(1);
  });

  it('charges a deposit once: the transaction carrying an entry this node signed adds only what goes beyond it', async () => {
    const r = await rig();
    const amount = 400n * 10_000_000n; // velocity: 800 per hour
    const deposit = (nonce: bigint) => entry(r, { nonce, args: [{ address: r.account }, { i128: amount }] });
    const a = deposit(21n);
    expect((await r.reviewer.review(standalone([a]))).outcome).toBe('approve');
    expect(r.ledger.spent(ESCROW, 3600, ANCHOR_AT + 100)).toBe(amount);
    const call = { contract: ESCROW, fn: 'deposit', args: [{ address: r.account }, { i128: amount }] };
    const resources = { fee: 5000, instructions: 1000, readOnly: 1, readWrite: 1 };
    // invokeTx bounds maxTime from the wall clock; the node's clock here is the test's: valid until 60 s after it.
    const timeoutSeconds = ANCHOR_AT + 160 - Math.floor(Date.now() / 1000);
    const envelope = (proposalId: string, seq: bigint, auth: xdr.SorobanAuthorizationEntry[]) =>
      r.reviewer.review({
        proposalId,
        kind: 'transaction',
        networkPassphrase: NETWORK,
        xdr: invokeTx({ ...call, source: r.account, seq, network: NETWORK, auth, resources, timeoutSeconds }),
      });
    // The multisig submits the deposit it authorized: its envelope signature adds no second charge.
    const d = await envelope('env-a', 40n, [a]);
    expect(d.outcome, JSON.stringify(d.reasons)).toBe('approve');
    expect(r.ledger.spent(ESCROW, 3600, ANCHOR_AT + 100)).toBe(amount);
    // So a second deposit of 400 still fits the 800 per hour (charged twice, the first would have used it all).
    expect((await r.reviewer.review(standalone([deposit(22n)]))).outcome).toBe('approve');
    expect(r.ledger.spent(ESCROW, 3600, ANCHOR_AT + 100)).toBe(2n * amount);
    // A transaction whose entry this node never signed is charged in full: over the limit now.
    const over = await envelope('env-c', 41n, [deposit(23n)]);
    expect(codes(over)).toContain('VELOCITY_EXCEEDED');
    // Nor does an entry signed for this node's account count when the transaction carries it for someone else.
    const stranger = Keypair.random().publicKey();
    const theirs = entry(r, { address: stranger, nonce: 21n, args: [{ address: r.account }, { i128: amount }] });
    const refused = await envelope('env-d', 42n, [theirs]);
    expect(codes(refused)).toContain('VELOCITY_EXCEEDED');
  });

  it('two entries of one proposal for the same (address, nonce) exclude each other: NONCE_TAKEN, nothing signed', async () => {
    const r = await rig();
    const twin = entry(r, { args: [{ address: r.account }, { i128: 1n }] });
    const d = await r.reviewer.review(standalone([entry(r), twin]));
    expect(d.outcome).toBe('reject');
    expect(codes(d)).toEqual(['NONCE_TAKEN']);
    expect(d.reasons[0]!.field).toBe('authEntries[1].nonce');
    expect(d.authSignatures).toBeUndefined();
    expect(r.ledger.counts().signatures).toBe(0);
  });

  it('goes through the group commit: one WAL sync per approval, the reservation riding on the signature commit', async () => {
    const r = await rig();
    const before = r.ledger.walSyncs;
    const d = await r.reviewer.review(standalone([entry(r)]));
    expect(d.outcome).toBe('approve');
    expect(r.ledger.walSyncs - before).toBe(1);
    expect(r.ledger.byHash(d.authSignatures![0]!.payload)?.state).toBe('signed');
    // The proposal.seen entry shares the decision's transaction: both are there, seen first.
    const types = r.audit
      .tail(10)
      .sort((x, y) => x.seq - y.seq)
      .map((e) => e.type);
    expect(types.indexOf('proposal.seen')).toBeLessThan(types.indexOf('decision'));
    expect(types.indexOf('decision')).toBeLessThan(types.indexOf('signature.released'));
  });

  it('a re-ask once the entry has surely expired releases nothing: VALIDITY_EXPIRED', async () => {
    const r = await rig();
    const p = standalone([entry(r)]);
    expect((await r.reviewer.review(p)).outcome).toBe('approve');
    // Past the expiration ledger's latest close (expirationTime) and the ledger's 5 s grace.
    r.clock.ms = (expirationTime(r.policy, 1050) + 6) * 1000;
    const late = await r.reviewer.review({ ...p, proposalId: 'late' });
    expect(late.outcome).toBe('reject');
    expect(codes(late)).toEqual(['VALIDITY_EXPIRED']);
    expect(late.authSignatures).toBeUndefined();
  });

  it('refuses a second, different payload for the same (address, nonce) until it expires', async () => {
    const r = await rig();
    expect((await r.reviewer.review(standalone([entry(r)]))).outcome).toBe('approve');
    const other = await r.reviewer.review(
      standalone([entry(r, { args: [{ address: r.account }, { i128: 50n * 10_000_000n }] })]),
    );
    expect(other.outcome).toBe('reject');
    expect(codes(other)).toContain('NONCE_TAKEN');
    // Once expiration ledger 1050 has surely passed (and the grace), the nonce may be used again.
    r.clock.ms = (expirationTime(r.policy, 1050) + 10) * 1000;
    const later = await r.reviewer.review(
      standalone([entry(r, { expiration: 1100 + 60, args: [{ address: r.account }, { i128: 1n }] })]),
    );
    expect(codes(later)).not.toContain('NONCE_TAKEN');
  });

  it('refuses contracts, functions, amounts and recipients outside the policy, naming each', async () => {
    const r = await rig();
    const bad = [
      entry(r, { contract: OTHER_CONTRACT, nonce: 1n }),
      entry(r, { fn: 'withdraw_all', nonce: 2n }),
      entry(r, { nonce: 3n, args: [{ address: r.account }, { i128: 401n * 10_000_000n }] }),
      entry(r, {
        nonce: 4n,
        fn: 'release',
        args: [{ address: r.account }, { address: Keypair.random().publicKey() }, { i128: 1n }],
      }),
    ];
    const d = await r.reviewer.review(standalone(bad));
    expect(d.outcome).toBe('reject');
    expect(codes(d)).toEqual(
      expect.arrayContaining([
        'CONTRACT_NOT_ALLOWED',
        'FUNCTION_NOT_ALLOWED',
        'AMOUNT_OVER_CALL_LIMIT',
        'RECIPIENT_NOT_ALLOWED',
      ]),
    );
    expect(d.authSignatures).toBeUndefined();
    expect(r.ledger.counts().signatures).toBe(0);
    const ok = await r.reviewer.review(
      standalone([entry(r, { fn: 'release', args: [{ address: r.account }, { address: r.recipient }, { i128: 1n }] })]),
    );
    expect(ok.outcome).toBe('approve');
  });

  it('checks the expiration against the lower bound of the current ledger and its window', async () => {
    const r = await rig();
    // Lower bound at anchor + 100 s with 5 s closes: 1020; window 100 ledgers.
    expect(codes(await r.reviewer.review(standalone([entry(r, { expiration: 1121, nonce: 1n })])))).toEqual([
      'AUTH_EXPIRATION_TOO_FAR',
    ]);
    expect(codes(await r.reviewer.review(standalone([entry(r, { expiration: 1019, nonce: 2n })])))).toEqual([
      'AUTH_EXPIRED',
    ]);
    expect((await r.reviewer.review(standalone([entry(r, { expiration: 1120, nonce: 3n })]))).outcome).toBe('approve');
    const noClock = await rig({ ledgerClock: undefined });
    expect(codes(await noClock.reviewer.review(standalone([entry(noClock)])))).toEqual(['NO_LEDGER_CLOCK']);
  });

  it('signs only its own accounts in an invokeHostFunction transaction and bounds its resources', async () => {
    const r = await rig();
    const stranger = Keypair.random().publicKey();
    const auth = [
      entry(r),
      authEntry({
        address: stranger,
        contract: ESCROW,
        fn: 'deposit',
        args: [{ address: stranger }, { i128: 1n }],
        nonce: 1n,
        expiration: 1050,
      }),
      sourceAccountEntry({ contract: ESCROW, fn: 'deposit', args: [] }),
    ];
    const call = { contract: ESCROW, fn: 'deposit', args: [{ address: r.account }, { i128: 1n }] };
    const xdr = invokeTx({
      ...call,
      source: stranger,
      seq: 5n,
      network: NETWORK,
      auth,
      resources: { fee: 5000, instructions: 1000, readOnly: 1, readWrite: 1 },
    });
    const payloads = [authEntryPayload(auth[0]!, NETWORK), authEntryPayload(auth[1]!, NETWORK)];
    const d = await r.reviewer.review({
      proposalId: 'tx1',
      kind: 'authEntries',
      networkPassphrase: NETWORK,
      xdr,
      hash: authBundleHash(payloads),
    });
    expect(d.outcome).toBe('approve');
    expect(d.authSignatures!.map((s) => s.index)).toEqual([0]);
    expect(verifies(r, payloads[0]!, d.authSignatures![0]!.signature)).toBe(true);

    const big = invokeTx({
      ...call,
      source: stranger,
      seq: 5n,
      network: NETWORK,
      auth: [entry(r, { nonce: 9n })],
      resources: { fee: 2_000_000, instructions: 1, readOnly: 4, readWrite: 1 },
    });
    const refused = await r.reviewer.review({
      proposalId: 'tx2',
      kind: 'authEntries',
      networkPassphrase: NETWORK,
      xdr: big,
    });
    expect(codes(refused)).toEqual(['RESOURCE_FEE_TOO_HIGH', 'FOOTPRINT_TOO_LARGE']);
    const raw = invokeTx({ ...call, source: stranger, seq: 5n, network: NETWORK, auth: [entry(r, { nonce: 10n })] });
    expect(
      codes(await r.reviewer.review({ proposalId: 'tx3', kind: 'authEntries', networkPassphrase: NETWORK, xdr: raw })),
    ).toEqual(['NO_SOROBAN_DATA']);
    const none = invokeTx({
      ...call,
      source: stranger,
      seq: 5n,
      network: NETWORK,
      auth: [auth[1]!],
      resources: { fee: 1, instructions: 1 },
    });
    expect(
      codes(await r.reviewer.review({ proposalId: 'tx4', kind: 'authEntries', networkPassphrase: NETWORK, xdr: none })),
    ).toEqual(['NO_AUTH_ENTRIES']);
  });

  it('signs ADDRESS_V2 entries over the type-10 preimage that binds the address', async () => {
    const r = await rig();
    const e = entry(r, { v2: true });
    const d = await r.reviewer.review(standalone([e]));
    expect(d.outcome).toBe('approve');
    const payload = authEntryPayload(e, NETWORK);
    expect(payload.equals(authEntryPayload(entry(r), NETWORK))).toBe(false);
    expect(verifies(r, payload, d.authSignatures![0]!.signature)).toBe(true);
  });

  it('refuses bad input with reasons and never reaches the key', async () => {
    const r = await rig();
    const e = entry(r);
    const cases: [ProposalBody, string][] = [
      [standalone([e], { networkPassphrase: OTHER_NETWORK }), 'WRONG_NETWORK'],
      [standalone([e], { hash: 'ab'.repeat(32) }), 'HASH_MISMATCH'],
      [standalone([e], { xdr: 'AAAA' }), 'MALFORMED_PROPOSAL'],
      [{ proposalId: 'x', kind: 'authEntries', networkPassphrase: NETWORK }, 'MALFORMED_PROPOSAL'],
      [{ ...standalone([e]), authEntries: ['not-xdr'] }, 'MALFORMED_XDR'],
      [
        standalone([sourceAccountEntry({ contract: ESCROW, fn: 'deposit', args: [] })]),
        'AUTH_CREDENTIALS_NOT_SIGNABLE',
      ],
      [{ proposalId: 'y', kind: 'authEntries', networkPassphrase: NETWORK, xdr: 'AAAA' }, 'MALFORMED_XDR'],
      [standalone([entry(r, { address: Keypair.random().publicKey() })]), 'ACCOUNT_NOT_COSIGNED'],
      [standalone([]), 'NO_AUTH_ENTRIES'],
    ];
    for (const [p, code] of cases) {
      const d = await r.reviewer.review(p);
      expect(d.outcome, code).toBe('reject');
      expect(codes(d), code).toContain(code);
    }
    expect(r.ledger.counts().signatures).toBe(0);
    expect(prepareAuthProposal(standalone([e]), NETWORK, r.policy).ok).toBe(true);
  });

  it('signs entries only inside one plain invokeHostFunction transaction: a fee bump or a classic one is refused', async () => {
    const r = await rig();
    const call = { contract: ESCROW, fn: 'deposit', args: [{ address: r.account }, { i128: 1n }] };
    const resources = { fee: 5000, instructions: 1000, readOnly: 1, readWrite: 1 };
    const invoke = invokeTx({ ...call, source: r.account, seq: 5n, network: NETWORK, auth: [entry(r)], resources });
    const classic = buildTx({ source: r.account, seq: '6', ops: [pay(r.recipient, '1')] });
    const cases: [string, string, string][] = [
      [feeBump(invoke, r.account, '200000'), 'UNSUPPORTED_PROPOSAL', 'xdr'],
      [classic, 'UNSUPPORTED_PROPOSAL', 'operations'],
    ];
    for (const [xdr, code, field] of cases) {
      const d = await r.reviewer.review({
        proposalId: `shape-${field}`,
        kind: 'authEntries',
        networkPassphrase: NETWORK,
        xdr,
      });
      expect(d.outcome, field).toBe('reject');
      expect(d.reasons, field).toEqual([expect.objectContaining({ code, field })]);
    }
    expect(r.ledger.counts().signatures).toBe(0);
  });

  it('a key backend failure keeps the recorded nonce and answers SIGNER_UNAVAILABLE; a re-ask signs the same payload', async () => {
    const real = await rig();
    let fail = true;
    const flaky: Signer = {
      ...real.signer,
      address: real.signer.address,
      kind: real.signer.kind,
      sign: async (m: Uint8Array) => {
        if (fail) throw Object.assign(new Error('down'), { code: 'KEYS_UNAVAILABLE' });
        return real.signer.sign(m);
      },
    };
    const r = await rig({}, { signer: flaky });
    const p = standalone([entry(r)]);
    const d = await r.reviewer.review(p);
    expect(codes(d)).toEqual(['SIGNER_UNAVAILABLE']);
    expect(r.ledger.counts()).toMatchObject({ signatures: 1, signed: 0 });
    fail = false;
    const again = await r.reviewer.review(p);
    expect(again.outcome).toBe('approve');
    expect(r.ledger.counts()).toMatchObject({ signatures: 1, signed: 1 });
  });

  it('without the Soroban hook the node refuses auth proposals as unsupported', async () => {
    const r = await rig({}, { noSoroban: true });
    expect(codes(await r.reviewer.review(standalone([entry(r)])))).toEqual(['UNSUPPORTED_PROPOSAL']);
  });

  it('holds are not offered for auth entries: a policy hold answers a reject with its reasons', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cosigner-soroban-hold-'));
    dirs.push(dir);
    const r = await rig();
    const held = loadPolicy(
      policyDoc(r.account, r.recipient).replace('soroban:', 'manualApproval:\n  contractCalls: true\nsoroban:'),
    );
    const s = new SorobanReviewer({
      network: NETWORK,
      policy: held,
      ledger: r.ledger,
      audit: r.audit,
      signer: r.signer,
      logger,
      now: () => r.clock.ms,
    });
    const d = await s.review(standalone([entry(r)]));
    expect(d.outcome).toBe('reject');
    expect(codes(d)).toEqual(['HOLD_CONTRACT_CALL']);
  });
});

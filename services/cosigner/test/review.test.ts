import { rm } from 'node:fs/promises';
import type { Signer } from '@cosigner/keys/signer';
import { loadPolicy } from '@cosigner/policy/schema';
import { createLogger } from '@cosigner/runtime/logger';
import { Keypair, Operation, StrKey, TransactionBuilder } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, verifyAuditChain } from '../src/audit.ts';
import { ledgerPath, openLedgerDb, SigningLedger } from '../src/ledger.ts';
import { createMetrics } from '../src/metrics.ts';
import { SigningPipeline } from '../src/pipeline.ts';
import { baseAccount, type CrashPoint, type ProposalBody, type Reviewer } from '../src/review.ts';
import {
  buildTx,
  feeBump,
  NETWORK,
  OTHER_NETWORK,
  type PolicyOptions,
  pay,
  policyYaml,
  reviewerFor,
  reviewFixture,
} from './helpers.ts';

const logger = createLogger({ name: 'review-test', level: 'silent' });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

class Crash extends Error {}

interface Rig {
  dir: string;
  reviewer: Reviewer;
  ledger: SigningLedger;
  audit: AuditLog;
  signer: Signer;
  clock: { ms: number };
  account: string;
  dest: string;
  reopen(opts?: { crashAt?: CrashPoint; signer?: Signer }): Rig;
}

async function rig(over: Partial<PolicyOptions> = {}, opts: { crashAt?: CrashPoint } = {}): Promise<Rig> {
  const { dir, account, dest, policy, signer } = await reviewFixture('cosigner-review-', dirs, over);
  const clock = { ms: Date.now() };
  const make = (o: { crashAt?: CrashPoint; signer?: Signer }): Rig => {
    const ledger = new SigningLedger(openLedgerDb(ledgerPath(dir)), { graceSeconds: 5 });
    const audit = new AuditLog(ledger.db);
    const reviewer = reviewerFor(policy, {
      ledger,
      audit,
      signer: o.signer ?? signer,
      logger,
      metrics: createMetrics(),
      now: () => clock.ms,
      crashAt: o.crashAt,
      crash: (p) => {
        throw new Crash(p);
      },
    });
    return {
      dir,
      reviewer,
      ledger,
      audit,
      signer,
      clock,
      account,
      dest,
      reopen: (r = {}) => {
        ledger.close();
        return make(r);
      },
    };
  };
  return make(opts);
}

let n = 0;
function proposal(xdr: string, over: Partial<ProposalBody> = {}): ProposalBody {
  n += 1;
  return { proposalId: `p${n}`, kind: 'transaction', networkPassphrase: NETWORK, xdr, ...over };
}

function hashOf(xdr: string): string {
  return Buffer.from(TransactionBuilder.fromXDR(xdr, NETWORK).hash()).toString('hex');
}

function verifies(r: Rig, hash: string, sigB64: string | undefined): boolean {
  return (
    sigB64 !== undefined &&
    Keypair.fromPublicKey(r.signer.address).verify(Buffer.from(hash, 'hex'), Buffer.from(sigB64, 'base64'))
  );
}

describe('review pipeline', () => {
  it('charged fees count toward the velocity windows of the account that pays them (a fee bump: its fee source)', async () => {
    const r = await rig({ maxPerTx: '100', velocity: [{ window: '1h', max: '20' }], maxFee: 100_000_000 });
    const nowS = () => Math.floor(r.clock.ms / 1000);
    const first = await r.reviewer.review(
      proposal(buildTx({ source: r.account, seq: '61', fee: '50000000', ops: [pay(r.dest, '10')] })),
    );
    expect(first.outcome).toBe('approve');
    expect(r.ledger.spent('native', 3600, nowS())).toBe(150_000_000n); // 10 XLM + a 5 XLM fee
    // 1 XLM more fits the 20 XLM window; with its 5 XLM fee it does not.
    const second = await r.reviewer.review(
      proposal(buildTx({ source: r.account, seq: '62', fee: '50000000', ops: [pay(r.dest, '1')] })),
    );
    expect(second.outcome).toBe('reject');
    expect(second.reasons.map((x) => x.code)).toEqual(['VELOCITY_EXCEEDED']);
    expect(second.signature).toBeUndefined();
    expect(r.ledger.spent('native', 3600, nowS())).toBe(150_000_000n);
    // A fee bump our account pays: the outer fee (1.5 XLM base fee x (1 + 1) operations = 3 XLM) is charged, the
    // inner fee (100 stroops) is not.
    const inner = buildTx({ source: r.account, seq: '63', fee: '100', ops: [pay(r.dest, '1')] });
    const bumped = await r.reviewer.review(proposal(feeBump(inner, r.account, '15000000')));
    expect(bumped.outcome).toBe('approve');
    expect(r.ledger.spent('native', 3600, nowS())).toBe(190_000_000n);
    // The window is now 1 XLM from full: a 1 XLM payment with a 100-stroop fee no longer fits.
    const full = await r.reviewer.review(
      proposal(buildTx({ source: r.account, seq: '64', fee: '100', ops: [pay(r.dest, '1')] })),
    );
    expect(full.reasons.map((x) => x.code)).toEqual(['VELOCITY_EXCEEDED']);
    r.ledger.close();
  });

  it('one WAL sync per signature: the reservation rides on the signature commit; a refusal is synced itself', async () => {
    const r = await rig();
    const ok = buildTx({ source: r.account, seq: '41', ops: [pay(r.dest, '1')] });
    const before = r.ledger.walSyncs;
    const d = await r.reviewer.review(proposal(ok));
    expect(d.outcome).toBe('approve');
    // Both the intent and the signature are on disk when the approval is answered, after exactly one fdatasync.
    expect(r.ledger.walSyncs - before).toBe(1);
    expect(r.ledger.byHash(d.hash)?.state).toBe('signed');
    const outsider = Keypair.random().publicKey();
    const refused = await r.reviewer.review(
      proposal(buildTx({ source: r.account, seq: '42', ops: [pay(outsider, '1')] })),
    );
    expect(refused.outcome).toBe('reject');
    expect(r.ledger.walSyncs - before).toBe(2);
  });

  it('approves a payment inside the policy: records, signs its own hash, audits; a re-ask returns the same signature', async () => {
    const r = await rig();
    const xdr = buildTx({ source: r.account, seq: '11', ops: [pay(r.dest, '10')] });
    const p = proposal(xdr, { hash: hashOf(xdr) });
    const d = await r.reviewer.review(p);
    expect(d).toMatchObject({ outcome: 'approve', hash: hashOf(xdr), signerKey: r.signer.address, reasons: [] });
    expect(verifies(r, d.hash, d.signature)).toBe(true);
    expect(r.ledger.byHash(d.hash)).toMatchObject({
      state: 'signed',
      signature: d.signature,
      source: r.account,
      seq: '11',
    });
    const nowS = Math.floor(r.clock.ms / 1000);
    // 10 XLM sent plus the 100-stroop fee the account pays.
    expect(r.ledger.spent('native', 3600, nowS)).toBe(100_000_100n);
    const again = await r.reviewer.review({ ...p, proposalId: 'p-again' });
    expect(again.signature).toBe(d.signature);
    expect(r.ledger.spent('native', 3600, nowS)).toBe(100_000_100n); // not counted twice
    const types = r.audit.tail(50).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['proposal.seen', 'decision', 'signature.released']));
    expect(JSON.stringify(r.audit.tail(50))).not.toContain(xdr);
    expect(verifyAuditChain(r.ledger.db).ok).toBe(true);
    r.ledger.close();
  });

  it('refuses with reasons and never signs: bad claims, bad XDR, foreign accounts, unsupported kinds', async () => {
    const r = await rig();
    const xdr = buildTx({ source: r.account, seq: '12', ops: [pay(r.dest, '10')] });
    const foreign = Keypair.random().publicKey();
    const cases: [ProposalBody, string][] = [
      [proposal(xdr, { hash: 'ff'.repeat(32) }), 'HASH_MISMATCH'],
      [proposal(xdr, { networkPassphrase: OTHER_NETWORK }), 'WRONG_NETWORK'],
      [proposal('AAAA'), 'MALFORMED_XDR'],
      [proposal(xdr, { kind: 'authEntries', xdr: undefined, authEntries: ['AAAA'] }), 'UNSUPPORTED_PROPOSAL'],
      [proposal(buildTx({ source: r.account, seq: '13', ops: [pay(r.dest, '1', foreign)] })), 'ACCOUNT_NOT_COSIGNED'],
      [proposal(buildTx({ source: foreign, seq: '13', ops: [pay(r.dest, '1')] })), 'ACCOUNT_NOT_COSIGNED'],
    ];
    for (const [p, code] of cases) {
      const d = await r.reviewer.review(p);
      expect(d.outcome, code).toBe('reject');
      expect(d.reasons.map((x) => x.code)).toContain(code);
      expect(d.signature).toBeUndefined();
    }
    expect(r.ledger.counts()).toMatchObject({ signatures: 0, decisions: cases.length });
    r.ledger.close();
  });

  it('keeps one live transaction per (account, sequence): SLOT_TAKEN until maxTime + grace has passed', async () => {
    const r = await rig();
    const now = Math.floor(r.clock.ms / 1000);
    const tb = { minTime: 0, maxTime: now + 60 };
    const a = buildTx({ source: r.account, seq: '20', ops: [pay(r.dest, '1')], timebounds: tb });
    const b = buildTx({ source: r.account, seq: '20', ops: [pay(r.dest, '2')], timebounds: tb });
    expect((await r.reviewer.review(proposal(a))).outcome).toBe('approve');
    const second = await r.reviewer.review(proposal(b));
    expect(second.outcome).toBe('reject');
    expect(second.reasons.map((x) => x.code)).toContain('SLOT_TAKEN');
    expect(second.signature).toBeUndefined();
    // Later, a fresh transaction for the same slot (its own window) once the first one is dead.
    r.clock.ms += 66_000;
    const later = Math.floor(r.clock.ms / 1000);
    const c = buildTx({
      source: r.account,
      seq: '20',
      ops: [pay(r.dest, '3')],
      timebounds: { minTime: 0, maxTime: later + 60 },
    });
    expect((await r.reviewer.review(proposal(c))).outcome).toBe('approve');
    expect(r.ledger.slot(r.account, '20')).toHaveLength(2);
    r.ledger.close();
  });

  it('treats a muxed source as its base account and a fee bump as its inner slot', async () => {
    const r = await rig();
    const inner = buildTx({ source: r.account, seq: '30', ops: [pay(r.dest, '1')] });
    const fb = feeBump(inner, r.account, '400');
    const d = await r.reviewer.review(proposal(fb));
    expect(d.reasons).toEqual([]);
    expect(d.outcome).toBe('approve');
    expect(r.ledger.byHash(d.hash)).toMatchObject({ txHash: hashOf(inner), seq: '30', source: r.account });
    // A different inner transaction for the same slot is refused, even wrapped.
    const other = feeBump(buildTx({ source: r.account, seq: '30', ops: [pay(r.dest, '2')] }), r.account);
    expect((await r.reviewer.review(proposal(other))).reasons.map((x) => x.code)).toContain('SLOT_TAKEN');
    // Fee paid by an account this node does not cosign for.
    const foreignFee = feeBump(
      buildTx({ source: r.account, seq: '31', ops: [pay(r.dest, '1')] }),
      Keypair.random().publicKey(),
    );
    expect((await r.reviewer.review(proposal(foreignFee))).reasons.map((x) => x.code)).toContain(
      'ACCOUNT_NOT_COSIGNED',
    );
    const raw = StrKey.decodeEd25519PublicKey(r.account);
    const muxed = StrKey.encodeMed25519PublicKey(Buffer.concat([raw, Buffer.alloc(8, 1)]));
    expect(baseAccount(muxed)).toBe(r.account);
    r.ledger.close();
  });

  it('holds for manual approval; approve signs, reject refuses, cancel drops; closed ids are refused', async () => {
    const r = await rig({ holdAbove: '50' });
    const big = buildTx({ source: r.account, seq: '40', ops: [pay(r.dest, '60')] });
    const p = proposal(big);
    const held = await r.reviewer.review(p);
    expect(held).toMatchObject({ outcome: 'hold' });
    expect(held.signature).toBeUndefined();
    expect(r.reviewer.listHeld().map((x) => x.proposalId)).toEqual([p.proposalId]);
    expect((await r.reviewer.review(p)).outcome).toBe('hold'); // re-sent on sync: still one pending entry
    expect(r.reviewer.listHeld()).toHaveLength(1);
    // The same id for another transaction is refused.
    const reuse = await r.reviewer.review({
      ...p,
      xdr: buildTx({ source: r.account, seq: '41', ops: [pay(r.dest, '70')] }),
    });
    expect(reuse.reasons.map((x) => x.code)).toEqual(['PROPOSAL_ID_REUSED']);

    const ok = await r.reviewer.approveHeld(p.proposalId, 'admin:alice');
    expect(ok.outcome).toBe('approve');
    expect(verifies(r, ok.hash, ok.signature)).toBe(true);
    expect(r.ledger.byHash(ok.hash)?.manual).toBe(true);
    await expect(r.reviewer.approveHeld(p.proposalId, 'admin:alice')).rejects.toMatchObject({
      code: 'NODE_PENDING_CLOSED',
    });
    await expect(r.reviewer.approveHeld('nope', 'x')).rejects.toMatchObject({ code: 'NODE_PENDING_NOT_FOUND' });
    expect(r.audit.tail(50).map((e) => e.type)).toContain('manual.approved');

    const q = proposal(buildTx({ source: r.account, seq: '42', ops: [pay(r.dest, '55')] }));
    expect((await r.reviewer.review(q)).outcome).toBe('hold');
    const no = r.reviewer.rejectHeld(q.proposalId, 'admin:bob', 'not today');
    expect(no).toMatchObject({ outcome: 'reject', reasons: [{ code: 'MANUAL_REJECT' }] });
    expect(() => r.reviewer.rejectHeld(q.proposalId, 'admin:bob')).toThrow(
      expect.objectContaining({ code: 'NODE_PENDING_CLOSED' }),
    );
    // Re-sent after a manual reject: still refused.
    expect((await r.reviewer.review(q)).reasons.map((x) => x.code)).toEqual(['MANUAL_REJECT']);

    const c = proposal(buildTx({ source: r.account, seq: '43', ops: [pay(r.dest, '56')] }));
    await r.reviewer.review(c);
    expect(r.reviewer.cancel(c.proposalId, 'expired')).toBe(true);
    expect(r.reviewer.cancel(c.proposalId, 'expired')).toBe(false);
    expect(r.reviewer.rejectHeld.bind(r.reviewer, c.proposalId, 'x')).toThrow(
      expect.objectContaining({ code: 'NODE_PENDING_CLOSED' }),
    );
    expect(verifyAuditChain(r.ledger.db).ok).toBe(true);
    r.ledger.close();
  });

  it('an approval still refuses what the policy or the ledger refuses now', async () => {
    const r = await rig({ holdAbove: '50', maxWindowSeconds: 300 });
    const now = Math.floor(r.clock.ms / 1000);
    // Held, then it expires before the operator approves: rejected by the policy at approval time.
    const p = proposal(
      buildTx({
        source: r.account,
        seq: '50',
        ops: [pay(r.dest, '60')],
        timebounds: { minTime: 0, maxTime: now + 100 },
      }),
    );
    expect((await r.reviewer.review(p)).outcome).toBe('hold');
    r.clock.ms += 200_000;
    const late = await r.reviewer.approveHeld(p.proposalId, 'admin:alice');
    expect(late.outcome).toBe('reject');
    expect(late.signature).toBeUndefined();
    expect(r.ledger.pending(p.proposalId)?.state).toBe('rejected');

    // Held, then another transaction takes the slot: the approval is refused with SLOT_TAKEN.
    const t = Math.floor(r.clock.ms / 1000);
    const q = proposal(
      buildTx({ source: r.account, seq: '51', ops: [pay(r.dest, '60')], timebounds: { minTime: 0, maxTime: t + 100 } }),
    );
    expect((await r.reviewer.review(q)).outcome).toBe('hold');
    const small = buildTx({
      source: r.account,
      seq: '51',
      ops: [pay(r.dest, '1')],
      timebounds: { minTime: 0, maxTime: t + 100 },
    });
    expect((await r.reviewer.review(proposal(small))).outcome).toBe('approve');
    const taken = await r.reviewer.approveHeld(q.proposalId, 'admin:alice');
    expect(taken.reasons.map((x) => x.code)).toEqual(['SLOT_TAKEN']);

    // A held proposal whose stored XDR no longer passes the node's checks (network changed underfoot).
    const z = proposal(
      buildTx({ source: r.account, seq: '52', ops: [pay(r.dest, '60')], timebounds: { minTime: 0, maxTime: t + 100 } }),
    );
    expect((await r.reviewer.review(z)).outcome).toBe('hold');
    r.ledger.db.prepare('UPDATE pending SET network = ? WHERE proposal_id = ?').run(OTHER_NETWORK, z.proposalId);
    expect((await r.reviewer.approveHeld(z.proposalId, 'admin:alice')).reasons.map((x) => x.code)).toEqual([
      'WRONG_NETWORK',
    ]);
    r.ledger.close();
  });

  it('a key backend failure keeps the intent (slot held, nothing released); asking again completes it', async () => {
    const r0 = await rig();
    const failing: Signer = {
      ...r0.signer,
      kind: r0.signer.kind,
      address: r0.signer.address,
      sign: async () => {
        throw Object.assign(new Error('down'), { code: 'KEYS_BACKEND_UNAVAILABLE' });
      },
    };
    const r = r0.reopen({ signer: failing });
    const xdr = buildTx({ source: r.account, seq: '60', ops: [pay(r.dest, '1')] });
    const d = await r.reviewer.review(proposal(xdr));
    expect(d).toMatchObject({ outcome: 'reject', reasons: [{ code: 'SIGNER_UNAVAILABLE' }] });
    expect(r.ledger.byHash(hashOf(xdr))?.state).toBe('intent');
    const other = buildTx({ source: r.account, seq: '60', ops: [pay(r.dest, '2')] });
    const healthy = r.reopen();
    expect((await healthy.reviewer.review(proposal(other))).reasons.map((x) => x.code)).toContain('SLOT_TAKEN');
    const done = await healthy.reviewer.review(proposal(xdr));
    expect(verifies(healthy, done.hash, done.signature)).toBe(true);
    healthy.ledger.close();
  });

  for (const point of ['after-record', 'after-sign', 'before-reply'] as const) {
    it(`a crash ${point} loses nothing and never yields a second transaction for the slot`, async () => {
      const r = await rig({}, { crashAt: point });
      const xdr = buildTx({ source: r.account, seq: '70', ops: [pay(r.dest, '1')] });
      await expect(r.reviewer.review(proposal(xdr))).rejects.toBeInstanceOf(Crash);
      const after = r.reopen();
      const rec = after.ledger.byHash(hashOf(xdr));
      expect(rec?.state).toBe(point === 'before-reply' ? 'signed' : 'intent');
      const other = buildTx({ source: r.account, seq: '70', ops: [pay(r.dest, '2')] });
      const refused = await after.reviewer.review(proposal(other));
      expect(refused.signature).toBeUndefined();
      expect(refused.reasons.map((x) => x.code)).toContain('SLOT_TAKEN');
      const d = await after.reviewer.review(proposal(xdr));
      expect(verifies(after, d.hash, d.signature)).toBe(true);
      expect(after.ledger.slot(r.account, '70')).toHaveLength(1);
      after.ledger.close();
    });
  }

  it('two reviews of one transaction at once share one key call, one record and one signature', async () => {
    const r0 = await rig();
    let calls = 0;
    const counting: Signer = {
      ...r0.signer,
      kind: r0.signer.kind,
      address: r0.signer.address,
      sign: async (m: Uint8Array) => {
        calls += 1;
        return r0.signer.sign(m);
      },
    };
    const r = r0.reopen({ signer: counting });
    const xdr = buildTx({ source: r.account, seq: '90', ops: [pay(r.dest, '1')] });
    const [a, b] = await Promise.all([r.reviewer.review(proposal(xdr)), r.reviewer.review(proposal(xdr))]);
    expect([a.outcome, b.outcome]).toEqual(['approve', 'approve']);
    expect(a.proposalId).not.toBe(b.proposalId);
    expect(b.signature).toBe(a.signature);
    expect(calls).toBe(1);
    expect(r.ledger.slot(r.account, '90')).toHaveLength(1);
    r.ledger.close();
  });

  it('the sign step is pluggable: the pipeline releases what its sign function made, after the same slot rules', async () => {
    const r = await rig();
    const asked: string[] = [];
    const pipeline = new SigningPipeline({
      ledger: r.ledger,
      audit: r.audit,
      signer: r.signer,
      logger,
      now: () => r.clock.ms,
      sign: async (payload) => {
        asked.push(payload.toString('hex'));
        return r.signer.sign(payload);
      },
    });
    const policy = loadPolicy(policyYaml({ accounts: [r.account], allow: [r.dest] }));
    const reviewer = reviewerFor(policy, { ledger: r.ledger, audit: r.audit, signer: r.signer, logger, pipeline });
    const xdr = buildTx({ source: r.account, seq: '91', ops: [pay(r.dest, '1')] });
    const d = await reviewer.review(proposal(xdr));
    expect(d.outcome).toBe('approve');
    expect(asked).toEqual([hashOf(xdr)]);
    expect(verifies(r, d.hash, d.signature)).toBe(true);
    expect(r.ledger.byHash(d.hash)).toMatchObject({ state: 'signed', signature: d.signature });
    // A second transaction for the slot never reaches the sign function.
    const other = await reviewer.review(proposal(buildTx({ source: r.account, seq: '91', ops: [pay(r.dest, '2')] })));
    expect(other.reasons.map((x) => x.code)).toEqual(['SLOT_TAKEN']);
    expect(asked).toHaveLength(1);
    r.ledger.close();
  });

  it('rejects what the policy rejects (over the per-transaction cap) and reports it', async () => {
    const r = await rig();
    const d = await r.reviewer.review(proposal(buildTx({ source: r.account, seq: '80', ops: [pay(r.dest, '101')] })));
    expect(d.outcome).toBe('reject');
    expect(d.reasons.map((x) => x.code)).toContain('AMOUNT_OVER_TX_LIMIT');
    expect(r.reviewer.signerAddress).toBe(r.signer.address);
    // An operation the policy does not allow.
    const opt = buildTx({ source: r.account, seq: '81', ops: [Operation.bumpSequence({ bumpTo: '1000' })] });
    expect((await r.reviewer.review(proposal(opt))).reasons.map((x) => x.code)).toContain('OP_NOT_ALLOWED');
    r.ledger.close();
  });
});

import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Cluster, startCluster } from '@cosigner/launcher/cluster';
import { generateIdentity, identityFromPem } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import { COSIGNER_BIN, tempDir } from '@cosigner/testkit/process';
import {
  Account,
  Asset,
  Keypair,
  MuxedAccount,
  Operation,
  TimeoutInfinite,
  type Transaction,
  TransactionBuilder,
  type xdr,
} from '@stellar/stellar-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditVerify, doubleSignedSlots, readLedger, refusedFrames, untilAtLeast } from './evidence.ts';
import { FakeCoordinator } from './fake-coordinator.ts';

/**
 * A malicious coordinator (threat model A1/A5): a test tool holding the coordinator's message key, which the real
 * nodes pin, talks the real protocol to three real node processes (each with its own KMS emulator) and tries every
 * trick. The real coordinator is killed and the fake one listens on its port, so the nodes simply
 * redial it, as they would after the coordinator host was taken over.
 *
 * The nodes' policy: native payments from the operator account to ONE allowed destination, at most 100 XLM each
 * and 300 XLM per 24 h, valid for at most 300 s. Every trick must end with no signature beyond that policy, read
 * from the nodes' own signing ledgers and audit logs at the end, not from what the attacker was told.
 */

type Decision = Body<'decision'>;

const MAX_PER_TX = 100;
const VELOCITY = 300;
const OTHER_NETWORK = 'Attacker Controlled Network ; 2026';

describe('a malicious coordinator against three real nodes', () => {
  let dir: string;
  let cluster: Cluster;
  let fake: FakeCoordinator;
  let network: string;
  let account: string;
  let ids: string[];
  let nextSeq: bigint;
  let n = 0;
  const destination = Keypair.random().publicKey();
  const attacker = Keypair.random().publicKey();
  /** Hashes the policy allows and the test asked for: the only ones any node may have signed. */
  const allowed = new Set<string>();

  beforeAll(async () => {
    dir = await tempDir('cosigner-adv-coord-');
    cluster = await startCluster({
      cosignerBin: COSIGNER_BIN,
      dir,
      nodePolicy: ({ network: net, accounts }) =>
        // JSON is YAML: no YAML library needed here.
        JSON.stringify({
          version: 1,
          network: net,
          accounts: [...accounts],
          operations: ['payment'],
          assets: [
            { asset: 'native', maxPerTx: String(MAX_PER_TX), velocity: [{ window: '24h', max: String(VELOCITY) }] },
          ],
          destinations: { allow: [destination] },
          validity: { maxWindowSeconds: 300 },
        }),
      // The nodes redial the (fake) coordinator quickly after it drops them.
      nodeConfig: { limits: { reconnectMaxMs: 1000 } },
    });
    network = cluster.networkPassphrase;
    account = cluster.account.id;
    ids = cluster.nodeInfo.map((x) => x.id);
    const identity = identityFromPem(await readFile(join(dir, 'coordinator', 'message-key.pem'), 'utf8'));
    const port = Number(new URL(cluster.coordinator.url).port);
    await cluster.stopService('coordinator', 'kill');
    fake = new FakeCoordinator({
      identity,
      network,
      nodes: cluster.nodeInfo.map((x) => ({ id: x.id, identityKey: x.identityKey })),
    });
    await fake.listen(port);
    await Promise.all(ids.map((id) => fake.waitForSession(id, 60_000)));
    nextSeq = BigInt((await cluster.horizon.loadAccount(account)).sequenceNumber()) + 1n;
  }, 240_000);

  afterAll(async () => {
    await cluster?.stop();
    await fake?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  const pay = (to: string, amount: number | string, source?: string): xdr.Operation =>
    Operation.payment({
      destination: to,
      asset: Asset.native(),
      amount: String(amount),
      ...(source ? { source } : {}),
    });

  /** A transaction from the operator account; each gets a fresh sequence number (its own slot) unless given one. */
  const tx = (
    ops: xdr.Operation[],
    o: { seq?: bigint; network?: string; timeout?: number; source?: string } = {},
  ): Transaction => {
    const seq = o.seq ?? nextSeq++;
    const b = new TransactionBuilder(new Account(o.source ?? account, (seq - 1n).toString()), {
      fee: '100',
      networkPassphrase: o.network ?? network,
    });
    for (const op of ops) b.addOperation(op);
    return b.setTimeout(o.timeout ?? 120).build();
  };

  const body = (t: Transaction, over: Partial<Body<'proposal'>> = {}): Body<'proposal'> => ({
    proposalId: `adv-${++n}`,
    kind: 'transaction',
    networkPassphrase: network,
    xdr: t.toXDR(),
    hash: hex(t),
    accounts: [account],
    ...over,
  });

  /** Send one proposal to every node and collect their decisions. */
  const proposeAll = (b: Body<'proposal'>): Promise<Decision[]> => Promise.all(ids.map((id) => fake.propose(id, b)));

  /** The transaction hash (hex) for this network. */
  const hex = (t: { hash(): Uint8Array }): string => Buffer.from(t.hash()).toString('hex');

  const codes = (d: Decision): string[] => d.reasons.map((r) => r.code);

  /** Every node refused: no signature in the answer, and none for this hash in any node's own signing ledger. */
  const expectRefusedEverywhere = (decisions: Decision[], t: Transaction, code?: string): void => {
    expect(decisions).toHaveLength(ids.length);
    for (const d of decisions) {
      expect(d.outcome).toBe('reject');
      expect(d.signature).toBeUndefined();
      if (code) expect(codes(d)).toContain(code);
    }
    const hash = hex(t);
    for (let i = 0; i < ids.length; i++) {
      expect(readLedger(dir, i).signatures.filter((s) => s.sign_hash === hash)).toEqual([]);
    }
  };

  const expectSignedEverywhere = (decisions: Decision[], t: Transaction): void => {
    for (const [i, d] of decisions.entries()) {
      expect(d.outcome, JSON.stringify(d.reasons)).toBe('approve');
      const sig = Buffer.from(d.signature ?? '', 'base64');
      expect(Keypair.fromPublicKey(cluster.nodeInfo[i]!.stellarKey).verify(t.hash(), sig)).toBe(true);
    }
    allowed.add(hex(t));
  };

  it('control: a payment inside the policy, honestly described, is signed by every node', async () => {
    const t = tx([pay(destination, 10)]);
    expectSignedEverywhere(await proposeAll(body(t, { note: `10 XLM to ${destination}` })), t);
  });

  it('a hidden operation beside the one the note describes gets no signature', async () => {
    const note = `10 XLM to ${destination}`;
    // A second payment to the attacker.
    const second = tx([pay(destination, 10), pay(attacker, 90)]);
    expectRefusedEverywhere(await proposeAll(body(second, { note })), second, 'DESTINATION_NOT_ALLOWED');
    // A setOptions that adds the attacker as a signer with enough weight to act alone.
    const signer = tx([
      pay(destination, 10),
      Operation.setOptions({ signer: { ed25519PublicKey: attacker, weight: 2 } }),
    ]);
    expectRefusedEverywhere(await proposeAll(body(signer, { note })), signer, 'OP_NOT_ALLOWED');
    // A payment whose operation source is an account the nodes do not cosign for.
    const foreign = tx([pay(destination, 10), pay(destination, 10, Keypair.random().publicKey())]);
    expectRefusedEverywhere(await proposeAll(body(foreign, { note })), foreign, 'ACCOUNT_NOT_COSIGNED');
    // The same hidden payment behind a fee bump paid by the attacker.
    const inner = tx([pay(destination, 10), pay(attacker, 90)]);
    const feeSource = Keypair.random();
    const bump = TransactionBuilder.buildFeeBumpTransaction(feeSource, '1000', inner, network);
    const bumped = await proposeAll({
      proposalId: `adv-${++n}`,
      kind: 'transaction',
      networkPassphrase: network,
      xdr: bump.toXDR(),
      hash: hex(bump),
      note,
    });
    for (const d of bumped) {
      expect(d.outcome).toBe('reject');
      expect(d.signature).toBeUndefined();
    }
    for (let i = 0; i < ids.length; i++) {
      const hashes = readLedger(dir, i).signatures.map((s) => s.sign_hash);
      expect(hashes).not.toContain(hex(bump));
      expect(hashes).not.toContain(hex(inner));
    }
  });

  it('a destination other than the one the note names gets no signature', async () => {
    const t = tx([pay(attacker, 10)]);
    expectRefusedEverywhere(
      await proposeAll(body(t, { note: `10 XLM to ${destination}` })),
      t,
      'DESTINATION_NOT_ALLOWED',
    );
    // A muxed address (SEP-23) built on the attacker's account is still the attacker's account.
    const muxed = tx([
      Operation.payment({
        destination: new MuxedAccount(new Account(attacker, '0'), '7').accountId(),
        asset: Asset.native(),
        amount: '10',
      }),
    ]);
    expectRefusedEverywhere(await proposeAll(body(muxed)), muxed, 'DESTINATION_NOT_ALLOWED');
  });

  it('another network: refused by name, by hash, and a signature is only ever over this network hash', async () => {
    // Named as another network (the XDR hashed for it).
    const other = tx([pay(destination, 10)], { network: OTHER_NETWORK });
    expectRefusedEverywhere(
      await proposeAll(body(other, { networkPassphrase: OTHER_NETWORK })),
      other,
      'WRONG_NETWORK',
    );
    // Named as ours, but claiming the other network's hash: the node's own hash differs.
    const claimed = tx([pay(destination, 10)], { network: OTHER_NETWORK });
    const decisions = await proposeAll(body(claimed, { networkPassphrase: network }));
    for (const d of decisions) {
      expect(d.outcome).toBe('reject');
      expect(codes(d)).toContain('HASH_MISMATCH');
      expect(d.signature).toBeUndefined();
    }
    // Without a claimed hash the node signs the hash IT computes (this network's): useless on the other network.
    const same = tx([pay(destination, 10)]);
    const approved = await proposeAll(body(same, { hash: undefined }));
    expectSignedEverywhere(approved, same);
    const otherHash = Buffer.from(TransactionBuilder.fromXDR(same.toXDR(), OTHER_NETWORK).hash());
    for (const [i, d] of approved.entries()) {
      const sig = Buffer.from(d.signature ?? '', 'base64');
      expect(Keypair.fromPublicKey(cluster.nodeInfo[i]!.stellarKey).verify(otherHash, sig)).toBe(false);
    }
  });

  it('a summary that lies (claimed hash, note, accounts, an extra summary field) changes nothing', async () => {
    const honest = tx([pay(destination, 10)]);
    const evil = tx([pay(attacker, 99)]);
    // The hash (and note, and accounts) of an honest payment around the XDR of a theft.
    const lying = await proposeAll(
      body(evil, { hash: hex(honest), note: `10 XLM to ${destination}`, accounts: [account] }),
    );
    for (const d of lying) {
      expect(d.outcome).toBe('reject');
      expect(codes(d)).toContain('HASH_MISMATCH');
      expect(d.hash).toBe(hex(evil));
    }
    expectRefusedEverywhere(lying, evil);
    // The XDR's own hash, the note and the advisory accounts claiming a harmless payment: the policy reads the XDR.
    const big = tx([pay(destination, 5000)]);
    expectRefusedEverywhere(
      await proposeAll(body(big, { note: `5 XLM to ${destination}`, accounts: [Keypair.random().publicKey()] })),
      big,
      'AMOUNT_OVER_TX_LIMIT',
    );
    // A `summary` field is not in the protocol: the whole frame is refused before anything reads it.
    const before = await refusedFrames(cluster.nodes[0]!.url, 'PROTOCOL_SCHEMA');
    const t = tx([pay(attacker, 50)]);
    const b = { ...body(t), summary: { destination, amount: '5' } } as unknown as Body<'proposal'>;
    fake.sendRaw(ids[0]!, fake.frame(ids[0]!, 'proposal', b));
    await untilAtLeast(() => refusedFrames(cluster.nodes[0]!.url, 'PROTOCOL_SCHEMA'), before + 1, 'a schema refusal');
    expect(fake.decisions(ids[0]!, b.proposalId)).toEqual([]);
  });

  it('a transaction valid forever or for longer than the policy window gets no signature', async () => {
    const forever = tx([pay(destination, 10)], { timeout: TimeoutInfinite });
    expectRefusedEverywhere(await proposeAll(body(forever)), forever, 'UNBOUNDED_VALIDITY');
    const long = tx([pay(destination, 10)], { timeout: 3600 });
    expectRefusedEverywhere(await proposeAll(body(long)), long, 'VALIDITY_TOO_LONG');
  });

  it('a second, different transaction for a slot already signed gets no signature while the first is live', async () => {
    const seq = nextSeq++;
    const first = tx([pay(destination, 10)], { seq });
    expectSignedEverywhere(await proposeAll(body(first)), first);
    const second = tx([pay(destination, 20)], { seq });
    expectRefusedEverywhere(await proposeAll(body(second)), second, 'SLOT_TAKEN');
    // Asking again for the first one (under a new proposal id) returns the same signature: nothing new is signed.
    const again = await proposeAll(body(first));
    for (const d of again) expect(d.outcome).toBe('approve');
    for (let i = 0; i < ids.length; i++) {
      const rows = readLedger(dir, i).signatures.filter((s) => s.seq === seq.toString());
      expect(rows.map((r) => r.tx_hash)).toEqual([hex(first)]);
    }
  });

  it('replays are refused: the same frame, the same id with another body, stale and future frames, another node', async () => {
    const node = ids[0]!;
    const url = cluster.nodes[0]!.url;
    const t = tx([pay(destination, 1)]);
    const b = body(t);
    const frame = fake.frame(node, 'proposal', b);
    fake.sendRaw(node, frame);
    const d = await fake.waitForDecision(node, b.proposalId);
    expect(d.outcome).toBe('approve');
    allowed.add(hex(t));

    const replays = await refusedFrames(url, 'PROTOCOL_REPLAY');
    // 1. The very same bytes again.
    fake.sendRaw(node, frame);
    // 2. The same message id (nonce), freshly signed, around another transaction.
    const id = JSON.parse(JSON.parse(frame).p).id as string;
    const other = tx([pay(destination, 2)]);
    const sameId = body(other);
    fake.sendRaw(node, fake.frame(node, 'proposal', sameId, { id }));
    await untilAtLeast(() => refusedFrames(url, 'PROTOCOL_REPLAY'), replays + 2, 'two replay refusals');

    // 3. Stale and future timestamps (beyond the 30 s skew).
    const stale = await refusedFrames(url, 'PROTOCOL_STALE');
    const old = body(tx([pay(destination, 3)]));
    const future = body(tx([pay(destination, 4)]));
    fake.sendRaw(node, fake.frame(node, 'proposal', old, { ts: Date.now() - 120_000 }));
    fake.sendRaw(node, fake.frame(node, 'proposal', future, { ts: Date.now() + 120_000 }));
    await untilAtLeast(() => refusedFrames(url, 'PROTOCOL_STALE'), stale + 2, 'two stale refusals');

    // 4. A frame made for another node's session, delivered to this one.
    const misaddressed = await refusedFrames(url, 'PROTOCOL_WRONG_RECIPIENT');
    const forNode1 = body(tx([pay(destination, 5)]));
    fake.sendRaw(node, fake.frame(ids[1]!, 'proposal', forNode1));
    await untilAtLeast(() => refusedFrames(url, 'PROTOCOL_WRONG_RECIPIENT'), misaddressed + 1, 'a recipient refusal');

    // 5. A session id that is not this connection's.
    const sessions = await refusedFrames(url, 'PROTOCOL_WRONG_SESSION');
    const otherSession = body(tx([pay(destination, 6)]));
    fake.sendRaw(node, fake.frame(node, 'proposal', otherSession, { session: randomUUID() }));
    await untilAtLeast(() => refusedFrames(url, 'PROTOCOL_WRONG_SESSION'), sessions + 1, 'a session refusal');

    // None of them was acted on: one decision for the original, none for the others.
    expect(fake.decisions(node, b.proposalId)).toHaveLength(1);
    for (const p of [sameId, old, future, forNode1, otherSession])
      expect(fake.decisions(node, p.proposalId)).toEqual([]);
    const decided = new Set(readLedger(dir, 0).decisions.map((r) => r.proposal_id));
    for (const p of [sameId, old, future, forNode1, otherSession]) expect(decided.has(p.proposalId)).toBe(false);
  });

  it('forged frames (a key the nodes do not pin, a tampered payload) are refused and never acted on', async () => {
    const node = ids[1]!;
    const url = cluster.nodes[1]!.url;
    const before = await refusedFrames(url, 'PROTOCOL_BAD_SIGNATURE');
    const forger = generateIdentity().identity;
    const forged = body(tx([pay(destination, 10)]));
    fake.sendRaw(node, fake.frame(node, 'proposal', forged, { identity: forger }));
    // A good frame for a payment to the destination, its payload edited to pay the attacker: the signature breaks.
    const honest = tx([pay(destination, 10)]);
    const theft = tx([pay(attacker, 10)], { seq: BigInt(honest.sequence) });
    const good = JSON.parse(fake.frame(node, 'proposal', body(honest))) as { p: string; s: string };
    const tampered = JSON.stringify({ p: good.p.replace(honest.toXDR(), theft.toXDR()), s: good.s });
    expect(tampered).toContain(theft.toXDR());
    fake.sendRaw(node, tampered);
    await untilAtLeast(() => refusedFrames(url, 'PROTOCOL_BAD_SIGNATURE'), before + 2, 'two signature refusals');
    expect(fake.decisions(node, forged.proposalId)).toEqual([]);
    const hashes = readLedger(dir, 1).signatures.map((s) => s.sign_hash);
    expect(hashes).not.toContain(hex(theft));
    // The session survived the forgeries: an honest frame is still answered.
    const t = tx([pay(destination, 1)]);
    expect((await fake.propose(node, body(t))).outcome).toBe('approve');
    // Only node-1 was asked: it is the only one that signed it.
    allowed.add(hex(t));
  });

  it('a hello signed with another key, or naming another network, never gets an auth; old-session frames are refused', async () => {
    const node = ids[2]!;
    const url = cluster.nodes[2]!.url;
    const oldSession = fake.session(node)!.sessionId;
    const oldFrame = fake.frame(node, 'proposal', body(tx([pay(destination, 1)])));

    for (const [over, code] of [
      [{ identity: generateIdentity().identity }, 'PROTOCOL_BAD_SIGNATURE'],
      [{ network: OTHER_NETWORK }, 'WRONG_NETWORK'],
    ] as const) {
      const refused = await refusedFrames(url, code);
      const from = fake.handshakes.length;
      fake.helloOverride = over;
      fake.disconnect(node);
      await untilAtLeast(() => refusedFrames(url, code), refused + 1, `a ${code} refusal of hello`);
      await untilAtLeast(
        () => fake.handshakes.slice(from).filter((h) => h.closedAt !== undefined).length,
        1,
        'the node to drop the connection',
      );
      // The node never answered the impostor's hello with an auth frame.
      expect(fake.handshakes.slice(from).every((h) => !h.authReceived)).toBe(true);
      fake.helloOverride = undefined;
      await fake.waitForSession(node, 30_000);
    }
    expect(fake.session(node)!.sessionId).not.toBe(oldSession);
    const wrong = await refusedFrames(url, 'PROTOCOL_WRONG_SESSION');
    fake.sendRaw(node, oldFrame);
    await untilAtLeast(() => refusedFrames(url, 'PROTOCOL_WRONG_SESSION'), wrong + 1, 'an old-session refusal');
  }, 90_000);

  it('an over-limit amount split into many small proposals stops at the velocity limit', async () => {
    // Over the per-transaction maximum in one go: refused.
    const whole = tx([pay(destination, 500)]);
    expectRefusedEverywhere(await proposeAll(body(whole)), whole, 'AMOUNT_OVER_TX_LIMIT');
    // The same 500 XLM as ten payments of 50, each in its own slot, each under the per-transaction maximum.
    const spentBefore = ids.map((_, i) => readLedger(dir, i).spentStroops);
    const approvals = ids.map(() => 0);
    for (let k = 0; k < 10; k++) {
      const t = tx([pay(destination, 50)]);
      const decisions = await proposeAll(body(t));
      for (const [i, d] of decisions.entries()) {
        if (d.outcome === 'approve') {
          approvals[i]!++;
          allowed.add(hex(t));
        } else {
          expect(codes(d)).toContain('VELOCITY_EXCEEDED');
          expect(d.signature).toBeUndefined();
        }
      }
    }
    const stroops = (xlm: number): bigint => BigInt(xlm) * 10_000_000n;
    for (let i = 0; i < ids.length; i++) {
      // Each node approved exactly what was left of its 300 XLM, and not one payment more.
      expect(approvals[i]).toBe(Number((stroops(VELOCITY) - spentBefore[i]!) / stroops(50)));
      expect(readLedger(dir, i).spentStroops <= stroops(VELOCITY)).toBe(true);
    }
    expect(Math.min(...approvals)).toBeGreaterThan(0);
  });

  it('afterwards each node signed only what its policy allows, one transaction per slot, and its audit chain verifies', async () => {
    for (let i = 0; i < ids.length; i++) {
      const ledger = readLedger(dir, i);
      const signed = ledger.signatures.map((s) => s.sign_hash);
      expect(signed.filter((h) => !allowed.has(h))).toEqual([]);
      expect(ledger.signatures.every((s) => s.state === 'signed')).toBe(true);
      expect(doubleSignedSlots(ledger.signatures)).toEqual([]);
      expect(ledger.spentStroops <= BigInt(VELOCITY) * 10_000_000n).toBe(true);
      expect(ledger.auditTypes.filter((t) => t === 'signature.released')).toHaveLength(signed.length);
    }
    const audits = await Promise.all(ids.map((_, i) => auditVerify(join(dir, `node-${i}`))));
    for (const audit of audits) expect(audit.code, audit.out).toBe(0);
    // Nothing the attacker collected reaches the ledger: no quorum-signed theft exists, the account is untouched.
    expect(await cluster.nativeBalance(attacker).catch(() => 'no account')).toBe('no account');
    // Spawns `cosigner node audit verify` three times: tsx start-up is slow on a loaded machine.
  }, 120_000);
});

import { createTransportKey, type TransportKeyPair } from '@cosigner/frost/channel';
import type { DkgRound2Message } from '@cosigner/frost/dkg';
import { type DkgMember, type DkgOutput, DkgParticipant, type DkgRound1Message } from '@cosigner/frost/dkg';
import { createShareSealer, type ShareSealer } from '@cosigner/frost/sealer';
import { checkShare } from '@cosigner/frost/suite';
import {
  type DkgRosterEntry,
  type DkgStatementBody,
  type DkgStatementPayload,
  rosterDigest,
  type SignedStatement,
} from '@cosigner/protocol/frost-dkg';
import type { Identity } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit.ts';
import { nodeErrors } from '../errors.ts';
import type { FrostConfig } from './config.ts';
import { FrostRefreshNode, refuseRefresh } from './refresh.ts';
import { endSession, type SessionNaming } from './session.ts';
import {
  asNodeError,
  culprits as blame,
  openPackages,
  openRelayed,
  tampered as relayTampered,
  signOwn,
} from './statements.ts';
import { FrostGroupStore, frostStorePath, membershipKey, type NodeFrostGroup, type Retirement } from './store.ts';

/**
 * The node's side of a FROST key generation relayed by the coordinator (docs/architecture.md, "FROST key
 * generation"). The coordinator sends `frost-dkg` steps; the node answers each with `frost-dkg-reply`:
 *
 * 1. `start` (threshold, participants with identity keys): joined only when the node's operator expects exactly
 *    this roster (config `frost.expect`); the node makes a fresh X25519 transport key for this session (memory
 *    only) and answers it as a statement signed with its identity key;
 * 2. `round1` (every participant's transport-key statement): each verified under the identity key the operator
 *    configured; the DKG session (packages/frost dkg.ts) is built from them; the answer is the node's round-1
 *    commitment and proof of knowledge, signed;
 * 3. `round2` (the others' round-1 statements): the answer is one round-2 package per other participant,
 *    encrypted and authenticated to it (channel.ts), each signed;
 * 4. `round3` (the packages addressed to this node): the node derives its share, seals it with its custody
 *    (KMS envelope encryption, or the local sealer in development), checks that the sealed copy opens to a share
 *    matching its verifying share, records the group durably as pending and answers its public data, signed;
 * 5. `confirm` (every participant's signed result): all equal to this node's, or the group is not kept; then the
 *    group is confirmed and the expectation used. An `abort` of the session that arrives later (another
 *    participant refused at `confirm`) still drops it, so an honest relay leaves the group at all nodes or none.
 *
 * Any failure aborts the session here, wipes its secrets and answers an error naming the culprits the protocol
 * can name: a participant whose proof, package or share is bad (its signature proves it sent it), or
 * `coordinator` when a relayed statement is missing or does not carry its author's signature. The share never
 * leaves this process in the clear: not in a reply, a log line, the audit log or the store.
 */

type Reply = Body<'frost-dkg-reply'>;
type Step = Reply['step'];

/** Key generations open at once; each holds a few kilobytes and an X25519 secret until it ends or times out. */
export const MAX_DKG_SESSIONS = 4;
/** How key generation names relayed statements it refuses. */
const NAMING = { idField: 'dkgId', what: 'key-generation' };
/** How key generation records a session's end (session.ts). */
const DKG_SESSION: SessionNaming = { event: 'frost.dkg.aborted', idField: 'dkgId' };

interface Session {
  dkgId: string;
  threshold: number;
  participants: DkgRosterEntry[];
  roster: string;
  me: DkgRosterEntry;
  step: Step;
  transport: TransportKeyPair;
  participant?: DkgParticipant;
  /** After round 3: this node's result, its group recorded pending until `confirm`. */
  result?: { address: string; group: unknown; transcript: string };
  timer: NodeJS.Timeout;
}

export interface FrostDkgNodeOptions {
  nodeId: string;
  identity: Identity;
  config: FrostConfig;
  sealer: ShareSealer;
  store: FrostGroupStore;
  audit: AuditLog;
  logger: Logger;
}

export class FrostDkgNode {
  readonly #o: FrostDkgNodeOptions;
  readonly #sessions = new Map<string, Session>();
  /** Groups confirmed lately, by session: an abort of that session still drops them (sessionTimeoutMs). */
  readonly #confirmed = new Map<string, { address: string; timer: NodeJS.Timeout }>();

  constructor(o: FrostDkgNodeOptions) {
    this.#o = o;
  }

  /** Sessions open now (tests, metrics). */
  get open(): number {
    return this.#sessions.size;
  }

  /**
   * Run one step. Never throws: a failure is the reply's `error`, and the session is gone.
   * @returns the reply to send, or undefined for `abort`
   */
  async handle(body: Body<'frost-dkg'>): Promise<Reply | undefined> {
    if (body.step === 'abort') {
      const reason = `aborted by the coordinator: ${body.reason ?? 'no reason given'}`;
      const s = this.#sessions.get(body.dkgId);
      if (s) this.#drop(s, reason);
      const done = this.#confirmed.get(body.dkgId);
      if (done) {
        // Confirmed here, but the key generation failed elsewhere (a participant refused or missed `confirm`):
        // the group is not complete everywhere, so it is not kept here either.
        clearTimeout(done.timer);
        this.#confirmed.delete(body.dkgId);
        this.#o.store.delete(done.address);
        this.#o.audit.append('frost.group.dropped', { dkgId: body.dkgId, address: done.address, reason });
      }
      return undefined;
    }
    const step = body.step;
    try {
      switch (step) {
        case 'start':
          return this.#start(body);
        case 'round1':
          return this.#round1(this.#session(body.dkgId, 'start'), body.statements ?? []);
        case 'round2':
          return this.#round2(this.#session(body.dkgId, 'round1'), body.statements ?? []);
        case 'round3':
          return await this.#round3(this.#session(body.dkgId, 'round2'), body.statements ?? []);
        default:
          return this.#confirm(this.#session(body.dkgId, 'round3'), body.statements ?? []);
      }
    } catch (e) {
      const s = this.#sessions.get(body.dkgId);
      const err = asNodeError(e);
      const culprits = s ? blame(err, s.participants) : [];
      if (s && err.code !== 'NODE_FROST_BAD_STEP') this.#drop(s, err.code, culprits);
      this.#o.logger.warn({ dkgId: body.dkgId, step, code: err.code, culprits }, 'FROST key generation step refused');
      return { dkgId: body.dkgId, step, error: { code: err.code, message: err.message.slice(0, 1024), culprits } };
    }
  }

  /**
   * The group was retired here: a late abort of the key generation that made it no longer deletes its record (the
   * retired record, public data only, is what its operator keeps).
   */
  retire(address: string): void {
    for (const [dkgId, c] of this.#confirmed) {
      if (c.address !== address) continue;
      clearTimeout(c.timer);
      this.#confirmed.delete(dkgId);
    }
  }

  /** Drop every session (node stopping). */
  close(): void {
    for (const s of [...this.#sessions.values()]) this.#drop(s, 'node stopping');
    for (const c of this.#confirmed.values()) clearTimeout(c.timer);
    this.#confirmed.clear();
  }

  #session(dkgId: string, after: Step): Session {
    const s = this.#sessions.get(dkgId);
    if (!s || s.step !== after) {
      throw nodeErrors.error(
        'NODE_FROST_BAD_STEP',
        { dkgId, expected: after, actual: s?.step ?? null },
        { message: s ? `This key generation is past step ${after}.` : 'This node has no such key generation open.' },
      );
    }
    return s;
  }

  #start(body: Body<'frost-dkg'>): Reply {
    const { dkgId } = body;
    const threshold = body.threshold;
    const participants = [...(body.participants ?? [])].sort((a, b) => a.index - b.index);
    if (threshold === undefined || participants.length < 2) {
      throw nodeErrors.error(
        'NODE_FROST_BAD_STEP',
        { dkgId },
        { message: 'A start step names the threshold and the participants.' },
      );
    }
    const same = this.#o.store.list().find((g) => g.dkgId === dkgId);
    if (same?.status === 'retired') {
      throw nodeErrors.error('NODE_FROST_GROUP_RETIRED', { dkgId, address: same.address });
    }
    if (this.#sessions.has(dkgId) || same) {
      throw nodeErrors.error('NODE_FROST_BAD_STEP', { dkgId }, { message: 'This key generation was started already.' });
    }
    if (this.#sessions.size >= MAX_DKG_SESSIONS)
      throw nodeErrors.error('NODE_FROST_BUSY', { open: this.#sessions.size });
    const notExpected = (reason: string) =>
      nodeErrors.error('NODE_FROST_NOT_EXPECTED', { dkgId, reason }, { message: `Not expected: ${reason}.` });
    for (const key of ['index', 'nodeId', 'identityKey'] as const) {
      if (new Set(participants.map((p) => p[key])).size !== participants.length) throw notExpected(`a repeated ${key}`);
    }
    const me = participants.find((p) => p.nodeId === this.#o.nodeId);
    if (!me || me.identityKey !== this.#o.identity.publicKeyB64) {
      throw notExpected('this node is not among the participants with its own identity key');
    }
    const membership = membershipKey(threshold, participants);
    if (!this.#o.config.expect.some((e) => membershipKey(e.threshold, e.participants) === membership)) {
      throw notExpected('no frost.expect entry of this node has this threshold and these participants and keys');
    }
    const done = this.#o.store.byMembership(membership);
    if (done[0]?.status === 'retired') {
      // The expectation was used by a group since retired: a new group of that roster needs a new expectation
      // decision by the operator (a new roster), not a rerun of the old one.
      throw nodeErrors.error('NODE_FROST_GROUP_RETIRED', { dkgId, address: done[0].address });
    }
    if (done.length > 0) throw notExpected(`this expected group was generated already (${done[0]!.address})`);

    const roster = rosterDigest(dkgId, threshold, participants);
    const session: Session = {
      dkgId,
      threshold,
      participants,
      roster,
      me,
      step: 'start',
      transport: createTransportKey(),
      timer: setTimeout(() => this.#drop(session, 'timed out at this node'), this.#o.config.sessionTimeoutMs),
    };
    session.timer.unref();
    this.#sessions.set(dkgId, session);
    this.#o.audit.append('frost.dkg.joined', {
      dkgId,
      threshold,
      participants: participants.map((p) => p.nodeId),
      roster,
    });
    this.#o.logger.info({ dkgId, threshold, participants: participants.length }, 'FROST key generation joined');
    return this.#reply(session, 'start', [
      { kind: 'transport-key', transportKey: Buffer.from(session.transport.publicKey).toString('hex') },
    ]);
  }

  #round1(s: Session, statements: SignedStatement[]): Reply {
    const keys = this.#open(s, statements, 'transport-key', s.participants);
    const own = keys.get(s.me.nodeId) as { transportKey?: unknown };
    if (own.transportKey !== Buffer.from(s.transport.publicKey).toString('hex')) {
      throw relayTampered(NAMING, s.dkgId, "this node's own transport key came back changed");
    }
    const members: DkgMember[] = s.participants.map((p) => ({
      index: p.index,
      nodeId: p.nodeId,
      transportKey: String((keys.get(p.nodeId) as { transportKey?: unknown }).transportKey),
    }));
    s.participant = new DkgParticipant({
      session: { sessionId: s.dkgId, threshold: s.threshold, members },
      index: s.me.index,
      transportSecretKey: s.transport.secretKey,
    });
    const message = s.participant.round1();
    s.step = 'round1';
    return this.#reply(s, 'round1', [{ kind: 'round1', message }]);
  }

  #round2(s: Session, statements: SignedStatement[]): Reply {
    const others = s.participants.filter((p) => p.index !== s.me.index);
    const round1 = this.#open(s, statements, 'round1', others);
    const packages = s.participant!.round2(
      others.map((p) => (round1.get(p.nodeId) as { message: DkgRound1Message }).message),
    );
    s.step = 'round2';
    return this.#reply(
      s,
      'round2',
      packages.map((message) => ({ kind: 'round2', to: message.to, message })),
    );
  }

  async #round3(s: Session, statements: SignedStatement[]): Promise<Reply> {
    const others = s.participants.filter((p) => p.index !== s.me.index);
    const round2 = openPackages(NAMING, { id: s.dkgId, roster: s.roster, me: s.me }, statements, 'round2', others);
    s.step = 'round3';
    const out = s.participant!.round3(
      others.map((p) => (round2.get(p.nodeId) as { message: DkgRound2Message }).message),
    );
    await this.#keep(s, out);
    s.result = { address: out.address, group: out.group, transcript: out.transcript };
    if (this.#sessions.get(s.dkgId) !== s) {
      // Aborted (or timed out) while the share was being sealed: what was just recorded goes too.
      this.#o.store.deletePending(out.address);
      throw nodeErrors.error('NODE_FROST_BAD_STEP', { dkgId: s.dkgId }, { message: 'The key generation was aborted.' });
    }
    return this.#reply(s, 'round3', [{ kind: 'result', ...s.result }]);
  }

  /**
   * Every participant's signed result, relayed: all must equal this node's (group key, commitment, verifying
   * shares, transcript). Only then is the group confirmed, so a group some participant failed to derive (one that
   * a cheating participant might still hold enough shares of) is never kept.
   */
  #confirm(s: Session, statements: SignedStatement[]): Reply {
    const results = this.#open(s, statements, 'result', s.participants);
    const mine = JSON.stringify(s.result);
    for (const [nodeId, p] of results) {
      const r = p as { address?: unknown; group?: unknown; transcript?: unknown };
      if (JSON.stringify({ address: r.address, group: r.group, transcript: r.transcript }) !== mine) {
        throw nodeErrors.error(
          'NODE_FROST_RESULT_MISMATCH',
          { dkgId: s.dkgId, nodeId },
          { message: `${nodeId} derived another group than this node; the group is not kept.` },
        );
      }
    }
    const address = s.result!.address;
    this.#o.store.confirm(address);
    clearTimeout(s.timer);
    this.#sessions.delete(s.dkgId);
    const timer = setTimeout(() => this.#confirmed.delete(s.dkgId), this.#o.config.sessionTimeoutMs);
    timer.unref();
    this.#confirmed.set(s.dkgId, { address, timer });
    const g = this.#o.store.get(address)!;
    this.#o.audit.append('frost.group.created', {
      dkgId: s.dkgId,
      address,
      threshold: s.threshold,
      participants: s.participants.map((p) => p.nodeId),
      index: s.me.index,
      verifyingShare: g.group.verifyingShares[String(s.me.index)],
      transcript: g.transcript,
      sealer: this.#o.sealer.kind,
      sealingKey: this.#o.sealer.keyId,
    });
    this.#o.logger.info({ dkgId: s.dkgId, address, sealer: this.#o.sealer.kind }, 'FROST group confirmed');
    return this.#reply(s, 'confirm', [{ kind: 'confirmed', address }]);
  }

  /**
   * Seal the share with the node's custody, check the sealed copy opens to a share that matches this node's
   * verifying share (RFC 9591 Appendix C.2 vss_verify, through checkShare), then record the group, pending. The
   * share is zeroed in memory afterwards whatever happens (best effort: a JavaScript engine may keep copies).
   */
  async #keep(s: Session, out: DkgOutput): Promise<void> {
    const context = { purpose: 'frost-share', node: this.#o.nodeId, group: out.address };
    let opened: Uint8Array | undefined;
    try {
      const sealed = await this.#o.sealer.seal(out.share.signingShare, context);
      opened = await this.#o.sealer.unseal(sealed, context);
      checkShare(out.group, { index: s.me.index, signingShare: opened });
      this.#o.store.insert({
        address: out.address,
        dkgId: s.dkgId,
        roster: s.roster,
        threshold: s.threshold,
        participants: s.participants,
        myIndex: s.me.index,
        group: out.group,
        transcript: out.transcript,
        sealedShare: sealed,
        sealerKind: this.#o.sealer.kind,
        status: 'pending',
        createdAt: Date.now(),
      });
    } finally {
      out.share.signingShare.fill(0);
      opened?.fill(0);
    }
    this.#o.logger.info({ dkgId: s.dkgId, address: out.address }, 'FROST share sealed; group pending until all agree');
  }

  /** The statements of one step, checked (statements.ts openRelayed). */
  #open(
    s: Session,
    statements: SignedStatement[],
    kind: DkgStatementPayload['kind'],
    authors: DkgRosterEntry[],
  ): Map<string, DkgStatementPayload> {
    return openRelayed(NAMING, { id: s.dkgId, roster: s.roster }, statements, kind, authors);
  }

  #reply(s: Session, step: Step, bodies: DkgStatementBody[]): Reply {
    return {
      dkgId: s.dkgId,
      step,
      statements: signOwn(this.#o.identity, { id: s.dkgId, roster: s.roster, me: s.me }, bodies),
    };
  }

  #drop(s: Session, reason: string, culprits: string[] = []): void {
    const pending = s.result?.address;
    endSession(
      {
        naming: DKG_SESSION,
        sessions: this.#sessions,
        audit: this.#o.audit,
        ...(pending ? { release: () => this.#o.store.deletePending(pending) } : {}),
      },
      s.dkgId,
      s,
      reason,
      culprits,
    );
  }
}

/**
 * The answer of a node without a `frost` section: it joins no key generation.
 */
export function refuseDkg(body: Body<'frost-dkg'>): Reply | undefined {
  if (body.step === 'abort') return undefined;
  const e = nodeErrors.error(
    'NODE_FROST_NOT_EXPECTED',
    { dkgId: body.dkgId },
    { message: 'Not expected: this node has no frost section in its config, so it joins no key generation.' },
  );
  return { dkgId: body.dkgId, step: body.step, error: { code: e.code, message: e.message, culprits: [] } };
}

/**
 * The node's FROST key-generation handler from its config: the sealer its `frost.sealer` names (the local one is
 * refused in production) and its group store; without a `frost` section, a handler that refuses every request.
 * @throws FROST_DEV_SEALER_IN_PRODUCTION, FROST_SEALER_CONFIG, KEYS_* (KMS), NODE_FROST_STORE_*
 */
export async function openFrostDkg(o: {
  nodeId: string;
  dataDir: string;
  production: boolean;
  config: FrostConfig | undefined;
  identity: Identity;
  audit: AuditLog;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}): Promise<{
  handle(body: Body<'frost-dkg'>): Promise<Reply | undefined>;
  /** One step of a share refresh (refresh.ts). */
  refresh(body: Body<'frost-refresh'>): Promise<Body<'frost-refresh-reply'> | undefined>;
  /** The groups this node holds a share of (public data and the sealed share). */
  groups(): NodeFrostGroup[];
  /**
   * Retire a group on this node (its operator's decision, through the admin API: docs/operations/frost.md
   * "Retiring the old group"): the store overwrites its sealed share (store.ts `retire`), open refreshes of it end,
   * `dropRounds` zeroes the signing side's share and nonces (frost/sign.ts `retire`), and `frost.group.retired` is
   * audited. Idempotent: a retired group is answered as it is, with no second audit entry.
   * @throws NODE_FROST_GROUP_UNKNOWN (no such group, or no frost section), NODE_FROST_GROUP_PENDING
   */
  retire(address: string, o: { by: string; dropRounds(address: string): Promise<number> }): Promise<Retirement>;
  /** What signing uses (frost/sign.ts): the group store and the sealer; absent without a frost section. */
  signing?: { store: FrostGroupStore; sealer: ShareSealer };
  close(): Promise<void>;
}> {
  if (!o.config) {
    return {
      handle: async (b) => refuseDkg(b),
      refresh: async (b) => refuseRefresh(b),
      groups: () => [],
      retire: async (address) => {
        throw nodeErrors.error('NODE_FROST_GROUP_UNKNOWN', { address });
      },
      close: async () => undefined,
    };
  }
  const sealer = await createShareSealer(o.config.sealer, { production: o.production, env: o.env });
  let store: FrostGroupStore;
  try {
    store = new FrostGroupStore(frostStorePath(o.dataDir));
  } catch (e) {
    await sealer.close();
    throw e;
  }
  const node = new FrostDkgNode({ ...o, config: o.config, sealer, store });
  const refresher = new FrostRefreshNode({ ...o, config: o.config, sealer, store });
  return {
    handle: (b) => node.handle(b),
    refresh: (b) => refresher.handle(b),
    groups: () => store.list(),
    async retire(address, { by, dropRounds }) {
      const r = store.retire(address, Date.now());
      if (!r) {
        const pending = store.get(address)?.status === 'pending';
        throw nodeErrors.error(pending ? 'NODE_FROST_GROUP_PENDING' : 'NODE_FROST_GROUP_UNKNOWN', { address });
      }
      // After the store's change: a step that starts from now on reads `retired` and is refused; these end the
      // ones already running and wipe what they hold in memory.
      node.retire(address);
      refresher.retire(address);
      const rounds = await dropRounds(address);
      const g = r.group;
      if (r.changed) {
        o.audit.append('frost.group.retired', {
          address,
          dkgId: g.dkgId,
          by,
          index: g.myIndex,
          verifyingShare: g.group.verifyingShares[String(g.myIndex)],
          transcript: g.transcript,
          sealer: g.sealerKind,
          roundsDropped: rounds,
        });
        o.logger.info({ address, by, roundsDropped: rounds }, 'FROST group retired: its sealed share is destroyed');
      }
      if (!r.walCleared) {
        o.logger.warn({ address }, 'FROST store log not truncated (another reader held it); retire again to clear it');
      }
      return r;
    },
    signing: { store, sealer },
    async close() {
      node.close();
      refresher.close();
      store.close();
      await sealer.close();
    },
  };
}

import { createTransportKey, type TransportKeyPair } from '@cosigner/frost/channel';
import type { DkgMember } from '@cosigner/frost/dkg';
import {
  groupDigest,
  RefreshParticipant,
  type RefreshRound1Message,
  type RefreshRound2Message,
} from '@cosigner/frost/refresh';
import type { ShareSealer } from '@cosigner/frost/sealer';
import { checkShare } from '@cosigner/frost/suite';
import {
  type DkgRosterEntry,
  type DkgStatementBody,
  type DkgStatementPayload,
  openStatement,
  peekStatementAuthor,
  refreshRosterDigest,
  type SignedStatement,
} from '@cosigner/protocol/frost-dkg';
import type { Identity } from '@cosigner/protocol/identity';
import type { Body } from '@cosigner/protocol/messages';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit.ts';
import { nodeErrors } from '../errors.ts';
import type { FrostConfig } from './config.ts';
import { endSession, type SessionNaming } from './session.ts';
import {
  asNodeError,
  culprits as blame,
  openPackages,
  openRelayed,
  RELAY,
  tampered as relayTampered,
  signOwn,
} from './statements.ts';
import type { FrostGroupStore, NodeFrostGroup, PendingRefresh } from './store.ts';

/**
 * The node's side of a FROST share refresh relayed by the coordinator (docs/architecture.md, "FROST share
 * refresh"; the protocol is packages/frost refresh.ts). The coordinator sends `frost-refresh` steps; the node
 * answers each with `frost-refresh-reply`, every statement signed with its identity key and bound to the refresh
 * id and the roster (refreshRosterDigest: refresh id, group address, participants with identity keys):
 *
 * 1. `start` (group address, participants): joined only for a confirmed group this node holds a share of, with
 *    exactly the participants, indices and identity keys it recorded at key generation (a refresh keeps them); a
 *    fresh X25519 transport key for this session (memory only);
 * 2. `round1` (every transport key, signed): the refresh session (packages/frost) is built; the answer is this
 *    node's commitment to its sharing of zero;
 * 3. `round2` (the others' commitments): one encrypted package per other participant;
 * 4. `round3` (the packages for this node): the old share is opened from custody, the new one derived, sealed,
 *    checked to open to a share matching the new verifying share, and kept BESIDE the old one
 *    (frost_refresh_pending); the old one keeps signing. The answer reports the transcript digest and the new
 *    group's digest, signed: the coordinator decides with decideRefresh (every participant the same, or nobody
 *    switches);
 * 5. `adopt` (the digest the coordinator recorded as adopted): equal to this node's, so the group's row takes the
 *    new share and the old sealed share is overwritten, in one transaction; `abort`: the new share is discarded.
 *
 * A node that stopped between round 3 and `adopt`/`abort` still holds both; the coordinator sends it the outcome
 * again when it syncs after restarting, and the node keeps the matching blob (idempotent either way).
 * Failures abort the session and name the culprits the protocol can name (FROST_DKG_BAD_SHARE and the rest, as in
 * key generation; `coordinator` for a relayed statement that is not its author's).
 */

type Reply = Body<'frost-refresh-reply'>;

/** How a refresh names relayed statements it refuses. */
const NAMING = { idField: 'refreshId', what: 'share-refresh' };
/** How a refresh records a session's end (session.ts). */
const REFRESH_SESSION: SessionNaming = { event: 'frost.refresh.aborted', idField: 'refreshId' };
type Step = Reply['step'];

/** Refreshes open at once. */
export const MAX_REFRESH_SESSIONS = 4;

interface Session {
  refreshId: string;
  address: string;
  group: NodeFrostGroup;
  roster: string;
  me: DkgRosterEntry;
  step: Step;
  transport: TransportKeyPair;
  participant?: RefreshParticipant;
  timer: NodeJS.Timeout;
}

export interface FrostRefreshNodeOptions {
  nodeId: string;
  identity: Identity;
  config: FrostConfig;
  sealer: ShareSealer;
  store: FrostGroupStore;
  audit: AuditLog;
  logger: Logger;
}

const KIND: Partial<Record<Step, DkgStatementPayload['kind']>> = {
  round1: 'refresh-transport-key',
  round2: 'refresh-round1',
  round3: 'refresh-round2',
};

export class FrostRefreshNode {
  readonly #o: FrostRefreshNodeOptions;
  readonly #sessions = new Map<string, Session>();

  constructor(o: FrostRefreshNodeOptions) {
    this.#o = o;
  }

  get open(): number {
    return this.#sessions.size;
  }

  /**
   * Run one step. Never throws: a failure is the reply's `error`, and the session is gone.
   * @returns the reply to send (none to an `abort`)
   */
  async handle(body: Body<'frost-refresh'>): Promise<Reply | undefined> {
    const { refreshId, step } = body;
    try {
      switch (step) {
        case 'abort':
          this.#abort(body);
          return undefined;
        case 'adopt':
          return this.#adopt(body);
        case 'start':
          return this.#start(body);
        case 'round1':
          return this.#round1(this.#session(refreshId, 'start'), body.statements ?? []);
        case 'round2':
          return this.#round2(this.#session(refreshId, 'round1'), body.statements ?? []);
        default:
          return await this.#round3(this.#session(refreshId, 'round2'), body.statements ?? []);
      }
    } catch (e) {
      const s = this.#sessions.get(refreshId);
      const err = asNodeError(e);
      // Without a session no participant can be named, but a tampered statement still blames the relay.
      const culprits = blame(err, s?.group.participants ?? []);
      if (s && err.code !== 'NODE_FROST_BAD_STEP') this.#drop(s, err.code, culprits);
      this.#o.logger.warn({ refreshId, step, code: err.code, culprits }, 'FROST share refresh step refused');
      return { refreshId, step, error: { code: err.code, message: err.message.slice(0, 1024), culprits } };
    }
  }

  close(): void {
    for (const s of [...this.#sessions.values()]) this.#drop(s, 'node stopping');
  }

  /** The group was retired on this node: its open refresh sessions end now, their secrets wiped. */
  retire(address: string): void {
    for (const s of [...this.#sessions.values()]) if (s.address === address) this.#drop(s, 'group retired');
  }

  #session(refreshId: string, after: Step): Session {
    const s = this.#sessions.get(refreshId);
    if (!s || s.step !== after) {
      throw nodeErrors.error(
        'NODE_FROST_BAD_STEP',
        { refreshId, expected: after, actual: s?.step ?? null },
        { message: s ? `This share refresh is past step ${after}.` : 'This node has no such share refresh open.' },
      );
    }
    return s;
  }

  #start(body: Body<'frost-refresh'>): Reply {
    const { refreshId, address } = body;
    const participants = [...(body.participants ?? [])].sort((a, b) => a.index - b.index);
    if (this.#sessions.has(refreshId) || this.#o.store.refresh(refreshId)) {
      throw nodeErrors.error(
        'NODE_FROST_BAD_STEP',
        { refreshId },
        { message: 'This share refresh was started already.' },
      );
    }
    const notExpected = (reason: string) =>
      nodeErrors.error('NODE_FROST_NOT_EXPECTED', { refreshId, reason }, { message: `Not expected: ${reason}.` });
    const group = this.#o.store.get(address);
    if (group?.status === 'retired') throw retiredGroup(address, refreshId);
    if (group?.status !== 'confirmed') throw notExpected(`this node holds no confirmed group ${address}`);
    // A refresh keeps the participants: exactly those recorded at key generation, with the same identity keys.
    const recorded = JSON.stringify([...group.participants].sort((a, b) => a.index - b.index));
    const asked = JSON.stringify(
      participants.map((p) => ({ index: p.index, nodeId: p.nodeId, identityKey: p.identityKey })),
    );
    if (recorded !== asked) throw notExpected("the participants are not the group's, with the keys recorded for it");
    if ([...this.#sessions.values()].some((s) => s.address === address)) {
      throw nodeErrors.error('NODE_FROST_BUSY', { open: this.#sessions.size, address });
    }
    if (this.#sessions.size >= MAX_REFRESH_SESSIONS) {
      throw nodeErrors.error('NODE_FROST_BUSY', { open: this.#sessions.size });
    }
    const me = group.participants.find((p) => p.index === group.myIndex)!;
    const session: Session = {
      refreshId,
      address,
      group,
      roster: refreshRosterDigest(refreshId, address, group.threshold, group.participants),
      me,
      step: 'start',
      transport: createTransportKey(),
      timer: setTimeout(() => this.#drop(session, 'timed out at this node'), this.#o.config.sessionTimeoutMs),
    };
    session.timer.unref();
    this.#sessions.set(refreshId, session);
    this.#o.audit.append('frost.refresh.joined', { refreshId, address, roster: session.roster });
    this.#o.logger.info({ refreshId, address }, 'FROST share refresh joined');
    return this.#reply(session, 'start', [
      { kind: 'refresh-transport-key', transportKey: Buffer.from(session.transport.publicKey).toString('hex') },
    ]);
  }

  #round1(s: Session, statements: SignedStatement[]): Reply {
    const keys = this.#openAll(s, statements, 'round1', s.group.participants);
    const own = keys.get(s.me.nodeId) as { transportKey?: unknown };
    if (own.transportKey !== Buffer.from(s.transport.publicKey).toString('hex')) {
      throw relayTampered(NAMING, s.refreshId, "this node's own transport key came back changed");
    }
    const members: DkgMember[] = s.group.participants.map((p) => ({
      index: p.index,
      nodeId: p.nodeId,
      transportKey: String((keys.get(p.nodeId) as { transportKey?: unknown }).transportKey),
    }));
    s.participant = new RefreshParticipant({
      session: { sessionId: s.refreshId, group: s.group.group, members },
      index: s.me.index,
      transportSecretKey: s.transport.secretKey,
    });
    const message = s.participant.round1();
    s.step = 'round1';
    return this.#reply(s, 'round1', [{ kind: 'refresh-round1', message }]);
  }

  #round2(s: Session, statements: SignedStatement[]): Reply {
    const others = s.group.participants.filter((p) => p.index !== s.me.index);
    const round1 = this.#openAll(s, statements, 'round2', others);
    const packages = s.participant!.round2(
      others.map((p) => (round1.get(p.nodeId) as { message: RefreshRound1Message }).message),
    );
    s.step = 'round2';
    return this.#reply(
      s,
      'round2',
      packages.map((message) => ({ kind: 'refresh-round2', to: message.to, message })),
    );
  }

  async #round3(s: Session, statements: SignedStatement[]): Promise<Reply> {
    const others = s.group.participants.filter((p) => p.index !== s.me.index);
    const round2 = openPackages(
      NAMING,
      { id: s.refreshId, roster: s.roster, me: s.me },
      statements,
      KIND.round3!,
      others,
    );
    s.step = 'round3';
    const context = { purpose: 'frost-share', node: this.#o.nodeId, group: s.address };
    const old = await this.#o.sealer.unseal(s.group.sealedShare!, context);
    let opened: Uint8Array | undefined;
    let out: ReturnType<RefreshParticipant['round3']> | undefined;
    try {
      out = s.participant!.round3(
        others.map((p) => (round2.get(p.nodeId) as { message: RefreshRound2Message }).message),
        { index: s.me.index, signingShare: old },
      );
      const sealed = await this.#o.sealer.seal(out.share.signingShare, context);
      opened = await this.#o.sealer.unseal(sealed, context);
      checkShare(out.group, { index: s.me.index, signingShare: opened });
      const digest = groupDigest(out.group);
      if (this.#sessions.get(s.refreshId) !== s) {
        throw nodeErrors.error(
          'NODE_FROST_BAD_STEP',
          { refreshId: s.refreshId },
          { message: 'The refresh was aborted.' },
        );
      }
      this.#o.store.insertRefresh({
        refreshId: s.refreshId,
        address: s.address,
        digest,
        group: out.group,
        transcript: out.transcript,
        sealedShare: sealed,
        createdAt: Date.now(),
      });
      // The session's secrets are no longer needed: the outcome arrives as `adopt` or `abort`, which work from
      // the store (also after a restart).
      clearTimeout(s.timer);
      s.transport.secretKey.fill(0);
      this.#sessions.delete(s.refreshId);
      this.#o.audit.append('frost.refresh.kept', {
        refreshId: s.refreshId,
        address: s.address,
        digest,
        transcript: out.transcript,
        verifyingShare: out.group.verifyingShares[String(s.me.index)],
      });
      this.#o.logger.info(
        { refreshId: s.refreshId, address: s.address, digest },
        'FROST refreshed share sealed beside the current one; waiting for the adoption',
      );
      return this.#reply(s, 'round3', [
        { kind: 'refresh-report', transcript: out.transcript, digest, group: out.group },
      ]);
    } finally {
      old.fill(0);
      out?.share.signingShare.fill(0);
      opened?.fill(0);
    }
  }

  /**
   * The coordinator recorded the refresh as adopted with `digest`: switch to the kept share when its digest is
   * that one. Idempotent: a refresh adopted here already (a repeated `adopt` after a restart) is acknowledged.
   */
  #adopt(body: Body<'frost-refresh'>): Reply {
    const { refreshId, address, digest } = body;
    const kept = this.#o.store.refresh(refreshId);
    const group = this.#o.store.get(address);
    if (group?.status === 'retired') throw retiredGroup(address, refreshId);
    if (!kept) {
      // Adopted before (its digest is now the group's), or never kept here.
      if (group && digest && groupDigest(group.group) === digest) {
        return this.#signed(group, refreshId, 'adopt', [{ kind: 'refresh-adopted', digest }]);
      }
      throw nodeErrors.error(
        'NODE_FROST_BAD_STEP',
        { refreshId },
        { message: 'This node keeps no new share of this refresh, and its group is not the adopted one.' },
      );
    }
    if (kept.address === address && kept.digest === digest && group) {
      // Every participant's signed report must show this digest and transcript, as key generation's `confirm`
      // does: a relay cannot have this node switch to a group some participant did not derive.
      this.#checkReports(group, refreshId, body.statements ?? [], kept);
    }
    if (kept.address !== address || kept.digest !== digest) {
      // Not the group this node derived: keeping the old share is the only safe state; the operator must look.
      this.#o.audit.append('frost.refresh.mismatch', {
        refreshId,
        address,
        adopted: digest ?? null,
        mine: kept.digest,
      });
      throw nodeErrors.error(
        'NODE_FROST_RESULT_MISMATCH',
        { refreshId, nodeId: RELAY },
        { message: 'The adopted group is not the one this node derived; this node keeps its current share.' },
      );
    }
    this.#o.store.adoptRefresh(refreshId);
    this.#o.audit.append('frost.refresh.adopted', { refreshId, address, digest });
    this.#o.logger.info({ refreshId, address, digest }, 'FROST share refresh adopted; the old sealed share is gone');
    return this.#signed(this.#o.store.get(address)!, refreshId, 'adopt', [{ kind: 'refresh-adopted', digest }]);
  }

  /** @throws NODE_FROST_RELAY_TAMPERED (the relay is named) when the n signed reports do not all show `kept`. */
  #checkReports(group: NodeFrostGroup, refreshId: string, statements: SignedStatement[], kept: PendingRefresh): void {
    const roster = refreshRosterDigest(refreshId, group.address, group.threshold, group.participants);
    const refuse = (reason: string) =>
      nodeErrors.error(
        'NODE_FROST_RELAY_TAMPERED',
        { refreshId, reason },
        { message: `The adoption is refused, this node keeps its current share: ${reason}.` },
      );
    const seen = new Set<string>();
    for (const st of statements) {
      const author = group.participants.find((a) => a.nodeId === peekStatementAuthor(st));
      if (!author || seen.has(author.nodeId)) throw refuse('a report names no participant, or one twice');
      const p = openStatement(Buffer.from(author.identityKey, 'base64'), st) as
        | (DkgStatementPayload & { digest?: unknown; transcript?: unknown })
        | undefined;
      if (p?.kind !== 'refresh-report' || p.dkgId !== refreshId || p.roster !== roster || p.from !== author.index)
        throw refuse(`the report of ${author.nodeId} is not its signed report of this refresh`);
      if (p.digest !== kept.digest || p.transcript !== kept.transcript)
        throw refuse(`${author.nodeId} reported another group or transcript`);
      seen.add(author.nodeId);
    }
    if (seen.size !== group.participants.length) throw refuse('not every participant reported');
  }

  #abort(body: Body<'frost-refresh'>): void {
    const reason = `aborted by the coordinator: ${body.reason ?? 'no reason given'}`;
    const s = this.#sessions.get(body.refreshId);
    if (s) this.#drop(s, reason);
    if (this.#o.store.discardRefresh(body.refreshId)) {
      this.#o.audit.append('frost.refresh.discarded', { refreshId: body.refreshId, address: body.address, reason });
      this.#o.logger.info({ refreshId: body.refreshId }, 'FROST refreshed share discarded; the current one stays');
    }
  }

  /** The statements of one step, checked (statements.ts openRelayed). */
  #openAll(
    s: Session,
    statements: SignedStatement[],
    step: Step,
    authors: readonly DkgRosterEntry[],
  ): Map<string, DkgStatementPayload> {
    return openRelayed(NAMING, { id: s.refreshId, roster: s.roster }, statements, KIND[step]!, authors);
  }

  #reply(s: Session, step: Step, bodies: DkgStatementBody[]): Reply {
    return this.#signed(s.group, s.refreshId, step, bodies);
  }

  #signed(group: NodeFrostGroup, refreshId: string, step: Step, bodies: DkgStatementBody[]): Reply {
    const me = group.participants.find((p) => p.index === group.myIndex)!;
    const roster = refreshRosterDigest(refreshId, group.address, group.threshold, group.participants);
    return { refreshId, step, statements: signOwn(this.#o.identity, { id: refreshId, roster, me }, bodies) };
  }

  #drop(s: Session, reason: string, culprits: string[] = []): void {
    endSession(
      { naming: REFRESH_SESSION, sessions: this.#sessions, audit: this.#o.audit },
      s.refreshId,
      s,
      reason,
      culprits,
    );
  }
}

/** The refusal of any step naming a group this node's operator retired (its share is gone). */
export function retiredGroup(address: string, refreshId: string) {
  return nodeErrors.error('NODE_FROST_GROUP_RETIRED', { refreshId, address });
}

/** The answer of a node without a `frost` section: it holds no group, so it joins no refresh. */
export function refuseRefresh(body: Body<'frost-refresh'>): Reply | undefined {
  if (body.step === 'abort') return undefined;
  const e = nodeErrors.error(
    'NODE_FROST_NOT_EXPECTED',
    { refreshId: body.refreshId },
    { message: 'Not expected: this node has no frost section in its config, so it holds no group to refresh.' },
  );
  return { refreshId: body.refreshId, step: body.step, error: { code: e.code, message: e.message, culprits: [] } };
}

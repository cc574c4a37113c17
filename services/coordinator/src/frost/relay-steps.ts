import {
  type DkgRosterEntry,
  type DkgStatementPayload,
  openStatement,
  type SignedStatement,
} from '@cosigner/protocol/frost-dkg';
import type { Logger } from '@cosigner/runtime/logger';
import type { DkgError } from './store.ts';

/**
 * The relay steps FROST key generation (dkg.ts) and FROST share refresh (refresh.ts) have in common
 * (docs/architecture.md, "FROST key generation", "FROST share refresh"): send a step to every participant, collect
 * their signed statements within a time-out, check that each is its author's own statement of this session, roster
 * and step, and carry the statements of start, round 1 and round 2 on to the next step. Any refusal, statement that
 * is not its author's, unreachable participant or time-out ends the session through the protocol's own `fail`,
 * with the protocol's error codes; what follows round 3 (agreement, adoption) stays with each protocol.
 */

/** The statements one node answered a step with, and what they say (opened with its identity key). */
export interface StepReply {
  statements: SignedStatement[];
  payloads: DkgStatementPayload[];
}

/** What the relay keeps of one session in memory. */
export interface StepRun<S extends string> {
  rec: { id: string; roster: string; participants: DkgRosterEntry[] };
  step: S;
  waiting: Set<string>;
  replies: Map<string, StepReply>;
  timer: NodeJS.Timeout | undefined;
}

/** How a step ended a session: the fields key generation's error and the refresh's share. */
export type StepError = DkgError;

/** A node's answer to a step, as `frost-dkg-reply` and `frost-refresh-reply` carry it. */
export interface StepAnswer {
  step: string;
  statements?: SignedStatement[];
  error?: { code: string; message: string; culprits?: string[] };
}

/** What a step carries besides the session and step: the statements relayed, and for some steps more. */
export type StepBody = { statements?: SignedStatement[] };

export interface StepProtocol<S extends string, R extends StepRun<S>, B extends StepBody> {
  /** The protocol's name in messages ("key generation", "share refresh"). */
  name: string;
  /** The log field that names a session (`dkgId`, `refreshId`). */
  idField: string;
  codes: { refused: string; badStatement: string; timeout: string };
  /** Said after an unreachable or time-out message, before its full stop (what the nodes do about it). */
  keeps: string;
  stepTimeoutMs: number;
  logger: Logger;
  /** The statement kind a node answers `step` with. */
  kind(step: S): DkgStatementPayload['kind'];
  /** Record the step the session is at. */
  persist(id: string, step: S): void;
  /** Send `step` with `extra` to participant `to`; false when it is not connected. */
  deliver(run: R, to: DkgRosterEntry, step: S, extra: B): boolean;
  /** End the session (each protocol aborts at the nodes and records the error its own way). */
  fail(run: R, error: StepError): void;
}

export class StepRelay<S extends string, R extends StepRun<S>, B extends StepBody> {
  readonly #p: StepProtocol<S, R, B>;

  constructor(protocol: StepProtocol<S, R, B>) {
    this.#p = protocol;
  }

  /** Send one step to every participant (the body may differ per node) and wait for all of them. */
  send(run: R, step: S, body: (to: DkgRosterEntry) => B): void {
    const p = this.#p;
    run.step = step;
    run.waiting = new Set(run.rec.participants.map((x) => x.nodeId));
    run.replies = new Map();
    p.persist(run.rec.id, step);
    const unreachable: string[] = [];
    for (const to of run.rec.participants) {
      if (!p.deliver(run, to, step, body(to))) unreachable.push(to.nodeId);
    }
    if (unreachable.length > 0) {
      p.fail(run, {
        code: 'COORD_FROST_NODE_UNAVAILABLE',
        message: `Not connected at ${step}: ${unreachable.join(', ')}${p.keeps}.`,
        culprits: [],
        unreachable,
      });
      return;
    }
    run.timer = setTimeout(() => {
      const late = [...run.waiting];
      p.fail(run, {
        code: p.codes.timeout,
        message: `No answer to ${step} within ${p.stepTimeoutMs} ms from ${late.join(', ')}${p.keeps}.`,
        culprits: late,
      });
    }, p.stepTimeoutMs);
    run.timer.unref();
  }

  /**
   * Take a node's answer to the running step: ignored when out of turn, the session failed when the node refused or
   * answered with statements that are not its own of this step; otherwise recorded, and what they say returned.
   */
  receive(run: R | undefined, nodeId: string, id: string, body: StepAnswer): DkgStatementPayload[] | undefined {
    const p = this.#p;
    if (!run || body.step !== run.step || !run.waiting.has(nodeId)) {
      p.logger.warn(
        { nodeId, [p.idField]: id, step: body.step },
        `FROST ${p.name.replace(' ', '-')} reply out of turn; ignored`,
      );
      return undefined;
    }
    if (body.error) {
      p.fail(run, {
        code: p.codes.refused,
        message: `${nodeId} ended the ${p.name} at ${body.step}: ${body.error.code}: ${body.error.message}`,
        reportedBy: nodeId,
        culprits: body.error.culprits ?? [],
        nodeCode: body.error.code,
      });
      return undefined;
    }
    const payloads = this.#check(run, nodeId, body.statements ?? []);
    if (!payloads) {
      p.fail(run, {
        code: p.codes.badStatement,
        message: `${nodeId} answered ${run.step} with statements that are not its own, or not of that step.`,
        reportedBy: nodeId,
        culprits: [nodeId],
      });
      return undefined;
    }
    run.waiting.delete(nodeId);
    run.replies.set(nodeId, { statements: body.statements ?? [], payloads });
    return payloads;
  }

  /**
   * Carry the statements of a finished start, round 1 or round 2 on: every node's transport-key statement to every
   * node, the others' round-1 commitments to each node, and to each node the round-2 packages addressed to it.
   */
  forward(run: R, next: S): void {
    switch (run.step as string) {
      case 'start': {
        const statements = run.rec.participants.flatMap((x) => run.replies.get(x.nodeId)!.statements);
        this.send(run, next, () => ({ statements }) as B);
        return;
      }
      case 'round1': {
        const round1 = run.replies; // send() starts a fresh map for the next step's replies
        this.send(
          run,
          next,
          (to) =>
            ({
              statements: run.rec.participants
                .filter((x) => x.nodeId !== to.nodeId)
                .flatMap((x) => round1.get(x.nodeId)!.statements),
            }) as B,
        );
        return;
      }
      default: {
        const packages = [...run.replies.values()].flatMap((r) =>
          r.statements.map((st, i) => ({ st, to: (r.payloads[i] as { to: number }).to })),
        );
        this.send(run, next, (to) => ({ statements: packages.filter((x) => x.to === to.index).map((x) => x.st) }) as B);
      }
    }
  }

  /** The statements a node must send for the step: its own, signed by its enrolled key, of this session and roster. */
  #check(run: R, nodeId: string, statements: SignedStatement[]): DkgStatementPayload[] | undefined {
    const me = run.rec.participants.find((x) => x.nodeId === nodeId)!;
    const key = Buffer.from(me.identityKey, 'base64');
    const expected = run.step === 'round2' ? run.rec.participants.length - 1 : 1;
    if (statements.length !== expected) return undefined;
    const payloads: DkgStatementPayload[] = [];
    for (const st of statements) {
      const x = openStatement(key, st);
      if (
        !x ||
        x.dkgId !== run.rec.id ||
        x.roster !== run.rec.roster ||
        x.nodeId !== nodeId ||
        x.from !== me.index ||
        x.kind !== this.#p.kind(run.step)
      ) {
        return undefined;
      }
      payloads.push(x);
    }
    if (run.step === 'round2') {
      const to = payloads.map((x) => (x as { to?: unknown }).to);
      const others = run.rec.participants.filter((x) => x.index !== me.index).map((x) => x.index);
      if (new Set(to).size !== others.length || !others.every((i) => to.includes(i))) return undefined;
    }
    return payloads;
  }
}

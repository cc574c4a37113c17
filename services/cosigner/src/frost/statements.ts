import { CosignerError } from '@cosigner/errors/errors';
import {
  type DkgRosterEntry,
  type DkgStatementBody,
  type DkgStatementPayload,
  openStatement,
  peekStatementAuthor,
  type SignedStatement,
  signStatement,
} from '@cosigner/protocol/frost-dkg';
import type { Identity } from '@cosigner/protocol/identity';
import { nodeErrors } from '../errors.ts';

/**
 * The node's side of a relayed FROST step, the same in key generation (dkg.ts) and share refresh (refresh.ts)
 * (docs/architecture.md, "FROST key generation", "FROST share refresh"): the statements the coordinator relays are
 * checked against the authors' recorded identity keys and bound to this session, roster and step; the node answers
 * with its own statements signed with its identity key. A relayed statement that is not its author's own is the
 * relay's doing (the authors' frames reached the coordinator authenticated), so the coordinator is blamed.
 */

/** The relay's culprit name. */
export const RELAY = 'coordinator';

/** One session as the statements bind it: its id (key generation's or refresh's), roster digest and this node. */
export interface StatementSession {
  /** The session id every statement carries (`dkgId` of a payload, also for a refresh). */
  id: string;
  roster: string;
  me: DkgRosterEntry;
}

/** How a protocol names relayed statements it refuses. */
export interface TamperedNaming {
  /** The details field that names the session (`dkgId`, `refreshId`). */
  idField: string;
  /** The statements' name in the message ("key-generation", "share-refresh"). */
  what: string;
}

/** NODE_FROST_RELAY_TAMPERED for session `id`: the relayed statements are refused for `reason`. */
export function tampered(naming: TamperedNaming, id: string, reason: string): CosignerError {
  return nodeErrors.error(
    'NODE_FROST_RELAY_TAMPERED',
    { [naming.idField]: id, reason },
    { message: `Relayed ${naming.what} statements refused: ${reason}.` },
  );
}

/**
 * Verify the statements of one step: exactly one per expected author, each signed by the identity key of that
 * participant in the roster this node's operator expects, of this session and roster, of the right kind.
 * @throws NODE_FROST_RELAY_TAMPERED otherwise
 */
export function openRelayed(
  naming: TamperedNaming,
  s: Omit<StatementSession, 'me'>,
  statements: SignedStatement[],
  kind: DkgStatementPayload['kind'],
  authors: readonly DkgRosterEntry[],
): Map<string, DkgStatementPayload> {
  const refuse = (reason: string) => tampered(naming, s.id, reason);
  const out = new Map<string, DkgStatementPayload>();
  for (const st of statements) {
    const author = authors.find((a) => a.nodeId === peekStatementAuthor(st));
    if (!author) throw refuse('a statement names no expected author of this step');
    if (out.has(author.nodeId)) throw refuse(`two statements from ${author.nodeId}`);
    const p = openStatement(Buffer.from(author.identityKey, 'base64'), st);
    if (!p) throw refuse(`a statement of ${author.nodeId} does not carry its signature`);
    if (p.dkgId !== s.id || p.roster !== s.roster || p.from !== author.index || p.kind !== kind) {
      throw refuse(`a statement of ${author.nodeId} belongs to another session, roster or step`);
    }
    out.set(author.nodeId, p);
  }
  const missing = authors.filter((a) => !out.has(a.nodeId)).map((a) => a.nodeId);
  if (missing.length > 0) throw refuse(`no statement from ${missing.join(', ')}`);
  return out;
}

/**
 * The round-2 packages relayed to this node: checked as openRelayed does, and each addressed to this node.
 * @throws NODE_FROST_RELAY_TAMPERED otherwise
 */
export function openPackages(
  naming: TamperedNaming,
  s: StatementSession,
  statements: SignedStatement[],
  kind: DkgStatementPayload['kind'],
  authors: readonly DkgRosterEntry[],
): Map<string, DkgStatementPayload> {
  const out = openRelayed(naming, s, statements, kind, authors);
  for (const [nodeId, p] of out) {
    if ((p as { to?: unknown }).to !== s.me.index) {
      throw tampered(naming, s.id, `the package from ${nodeId} is for another participant`);
    }
  }
  return out;
}

/** This node's statements of a step, signed with its identity key and bound to the session and roster. */
export function signOwn(identity: Identity, s: StatementSession, bodies: DkgStatementBody[]): SignedStatement[] {
  return bodies.map((b) =>
    signStatement(identity, { ...b, dkgId: s.id, roster: s.roster, from: s.me.index, nodeId: s.me.nodeId }),
  );
}

/** A failure of a step as the node's error: a CosignerError as it is, anything else NODE_INTERNAL. */
export function asNodeError(e: unknown): CosignerError {
  return e instanceof CosignerError ? e : nodeErrors.error('NODE_INTERNAL', undefined, { cause: e });
}

/** Node ids to blame: the relay for a tampered statement, else the participants the FROST layer names. */
export function culprits(e: CosignerError, participants: readonly DkgRosterEntry[]): string[] {
  if (e.code === 'NODE_FROST_RELAY_TAMPERED') return [RELAY];
  const raw = (e.details as { culprits?: unknown } | undefined)?.culprits;
  if (!Array.isArray(raw)) return [];
  return raw.map((i) => participants.find((p) => p.index === i)?.nodeId).filter((x): x is string => x !== undefined);
}

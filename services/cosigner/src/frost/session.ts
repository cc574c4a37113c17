import type { TransportKeyPair } from '@cosigner/frost/channel';
import type { AuditLog } from '../audit.ts';

/**
 * The end of a relayed FROST session at the node, the same in key generation (dkg.ts) and share refresh
 * (refresh.ts): whatever ended it (an abort from the coordinator, a failed step, its timeout, the node stopping),
 * its secrets are wiped before anything else can fail, it is forgotten, and the audit log records why.
 */

/** What a session holds until it ends: its timeout, the protocol's state, the session's X25519 transport key. */
export interface RelaySession {
  step: string;
  transport: TransportKeyPair;
  /** The protocol's participant (packages/frost), which wipes its own secrets on `abort`. */
  participant?: { abort(): void };
  timer: NodeJS.Timeout;
}

/** How one protocol records its sessions' ends: the audit event and the details field naming the session. */
export interface SessionNaming {
  event: 'frost.dkg.aborted' | 'frost.refresh.aborted';
  idField: 'dkgId' | 'refreshId';
}

/**
 * End session `s` (id `id`): its timer stopped, the participant's secrets and the transport secret key wiped,
 * `release` run (what the protocol keeps outside the session, e.g. a pending group), the session removed from
 * `sessions` unless a newer one took its id, and `<naming.event>` appended with the step it had reached, the reason
 * and the culprits named.
 */
export function endSession<S extends RelaySession>(
  o: {
    naming: SessionNaming;
    sessions: Map<string, S>;
    audit: AuditLog;
    release?: () => void;
  },
  id: string,
  s: S,
  reason: string,
  culprits: string[],
): void {
  clearTimeout(s.timer);
  s.participant?.abort();
  s.transport.secretKey.fill(0);
  o.release?.();
  if (o.sessions.get(id) === s) o.sessions.delete(id);
  o.audit.append(o.naming.event, { [o.naming.idField]: id, step: s.step, reason, culprits });
}

import { defineReasons } from '@cosigner/errors/errors';

/**
 * Reason codes that cross the wire between processes, in a node's decision.
 *
 * A node answers `reject` with reasons; the coordinator branches on some of them. Those shared meanings are a
 * contract between two services, so they are declared here, once, and imported by both sides. They are listed
 * with every other decision reason in docs/reference/errors.md.
 */
export const protocolReasons = defineReasons('protocol', {
  SIGNER_UNAVAILABLE: {
    outcome: 'reject',
    message:
      'The node could not sign now (its key backend was unreachable, throttled or refused); it keeps the slot for this ' +
      'hash, and the coordinator asks again after a backoff. Not a refusal: "not now", not "no".',
  },
  FROST_GROUP_NOT_HELD: {
    outcome: 'reject',
    message:
      'This node holds no confirmed share of the FROST group the proposal names (or has no frost section): it cannot ' +
      'take part in the round.',
  },
  FROST_ROUND_MALFORMED: {
    outcome: 'reject',
    message:
      'The FROST round does not say what to do: a commit step with a commitment list, a sign step without one, a ' +
      'round id that does not start with the proposal id, or a list that is not a valid signer set of the group.',
  },
  FROST_NONCE_SPENT: {
    outcome: 'reject',
    message:
      "The round's nonce was already used or committed: a second commitment for a round id, a second share with the " +
      'same nonce, or a replayed commitment list. A nonce signs at most once (RFC 9591 section 7.1); the coordinator ' +
      'starts a new round.',
  },
  FROST_NONCE_FORGOTTEN: {
    outcome: 'reject',
    message:
      "The round's nonce is gone: the node restarted (or dropped an idle round) after it committed, and nonces live " +
      'in memory only. The round is marked lost and never signs; the coordinator starts a new round.',
  },
  FROST_ROUND_UNKNOWN: {
    outcome: 'reject',
    message: 'This node issued no commitment for the round id it is asked to sign: the coordinator starts a new round.',
  },
  FROST_COMMITMENT_REFUSED: {
    outcome: 'reject',
    message:
      "The signing package's commitment list leaves out or changes this node's own commitment as it recorded it " +
      '(RFC 9591 section 5.2): no share is computed.',
  },
  FROST_MESSAGE_CHANGED: {
    outcome: 'reject',
    message:
      'The transaction of the sign step is not the one this node reviewed for the round in the commit step: a nonce ' +
      'signs only the hash the node computed and reviewed for it.',
  },
});

/**
 * The FROST refusals that say "this round cannot finish, start another" rather than "this node will not sign": the
 * coordinator answers them with a fresh round (new nonces), the node still counted as available.
 */
export const FROST_ROUND_REFUSALS: ReadonlySet<string> = new Set([
  'FROST_NONCE_SPENT',
  'FROST_NONCE_FORGOTTEN',
  'FROST_ROUND_UNKNOWN',
  'FROST_COMMITMENT_REFUSED',
  'FROST_MESSAGE_CHANGED',
  'FROST_ROUND_MALFORMED',
] satisfies (keyof typeof protocolReasons.specs)[]);

/**
 * The node's key backend could not sign (KMS or HSM unreachable, throttled, key disabled). It means "not now",
 * not "no": the node keeps the slot reserved for this hash, and the coordinator asks again after a backoff.
 */
export const SIGNER_UNAVAILABLE = 'SIGNER_UNAVAILABLE' satisfies keyof typeof protocolReasons.specs;

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
});

/**
 * The node's key backend could not sign (KMS or HSM unreachable, throttled, key disabled). It means "not now",
 * not "no": the node keeps the slot reserved for this hash, and the coordinator asks again after a backoff.
 */
export const SIGNER_UNAVAILABLE = 'SIGNER_UNAVAILABLE' satisfies keyof typeof protocolReasons.specs;

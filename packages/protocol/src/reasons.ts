/**
 * Reason codes that cross the wire between processes, in a node's decision.
 *
 * A node answers `reject` with reasons; the coordinator branches on some of them. Those shared meanings are a
 * contract between two services, so they are declared here, once, and imported by both sides.
 */

/**
 * The node's key backend could not sign (KMS or HSM unreachable, throttled, key disabled). It means "not now",
 * not "no": the node keeps the slot reserved for this hash, and the coordinator asks again after a backoff.
 */
export const SIGNER_UNAVAILABLE = 'SIGNER_UNAVAILABLE';

import { defineRecordCodes } from '@cosigner/errors/errors';

/**
 * What the coordinator records about what it observed: the kinds of node misbehaviour (a `node.misbehaved` event,
 * a row of the node's misbehaviour list, and an `invalid` decision whose reason carries the kind), and how a
 * submission that gave up ended (`proposal.failed`, the proposal's result; a verdict of the network keeps the
 * network's own code, such as `tx_failed`). Listed in docs/reference/errors.md.
 */

export const misbehaviourKinds = defineRecordCodes('coordinator', 'misbehaviour kinds', {
  hash_mismatch: {
    message: 'The node answered for a different hash (or auth digest) than the one this proposal has.',
  },
  missing_signature: { message: 'The node approved without the signature (or signatures) an approval carries.' },
  invalid_signature: { message: "The node's signature does not verify over the hash (or entry payload) it answers." },
  not_a_signer: { message: "The node's key is not a signer of any account (or entry address) the round needs." },
  wrong_signer_key: { message: 'The decision names a signing key other than the one the node is enrolled with.' },
  unknown_entry: { message: 'The node signed an authorization entry that is not one the cluster signs in this round.' },
  payload_mismatch: { message: 'The node signed another payload than the entry payload this round asks for.' },
  bad_commitment: {
    message:
      'In a FROST round the node sent a commitment that is not its own participant index, not two valid points, or ' +
      'for another group.',
  },
  bad_signature_share: {
    message:
      "In a FROST round the node's signature share does not verify against its commitment and verifying share " +
      '(RFC 9591 section 5.4): the aggregate failed and the coordinator retried without it.',
  },
  unknown_proposal: { message: 'A decision for a proposal this coordinator never sent.' },
  bad_frame: { message: 'A frame that does not decode, or that names another sender than its session.' },
  flood: { message: 'More frames per second than the node limit allows (counted once per session).' },
});

export type MisbehaviourKind = keyof typeof misbehaviourKinds.specs;

export const submissionCodes = defineRecordCodes('coordinator', 'submission results', {
  submission_expired: {
    message:
      'The network could not take the transaction before its time bound passed; it is not on the ledger and can never apply.',
  },
  submission_unavailable: {
    message:
      'The network could not be reached in time; the envelope is stored and its fate is unknown until its hash appears.',
  },
});

export type SubmissionCode = keyof typeof submissionCodes.specs;

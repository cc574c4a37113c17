import { defineReasons, type DecisionReason as Reason } from '@cosigner/errors/errors';
import { policyReasons } from '@cosigner/policy/evaluate';

/**
 * The reasons a node gives in a decision by itself, before or beside its policy (packages/policy `policyReasons`
 * holds the policy's; packages/protocol `protocolReasons` those the coordinator branches on). A refusal is an
 * answer, not an error: each code names the outcome it forces. All are listed in docs/reference/errors.md.
 */
export const nodeReasons = defineReasons('cosigner-node', {
  UNSUPPORTED_PROPOSAL: {
    outcome: 'reject',
    message:
      'This node does not sign proposals of this kind or shape (an auth proposal with the Soroban reviewer off, a fee ' +
      'bump carrying auth entries, a transaction that is not one invokeHostFunction operation).',
  },
  MALFORMED_PROPOSAL: {
    outcome: 'reject',
    message: 'The proposal does not say what to review: an auth proposal carries either entries or a transaction.',
  },
  MALFORMED_XDR: {
    outcome: 'reject',
    message: 'The transaction or an auth entry could not be decoded (or is not in canonical XDR).',
  },
  HASH_MISMATCH: {
    outcome: 'reject',
    message:
      'The hash (or auth digest) the coordinator sent differs from the one this node computed from the XDR with its ' +
      'own network passphrase; the node signs only what it computed.',
  },
  NO_SOROBAN_DATA: {
    outcome: 'reject',
    message: 'The Soroban transaction carries no SorobanTransactionData: simulate it before proposing.',
  },
  NO_LEDGER_CLOCK: {
    outcome: 'reject',
    message:
      'This node has no ledger clock (policy soroban.ledgerClock), so it cannot check an auth entry expiration window.',
  },
  SLOT_TAKEN: {
    outcome: 'reject',
    message:
      'This node already signed (or recorded the intent to sign) a different transaction for the same source account ' +
      'and sequence number, and that signature is still valid (its maxTime plus the grace has not passed). The ' +
      'network accepts only one transaction per sequence number, so signing both would let whoever holds the ' +
      'signatures choose which one happens: this refusal is what prevents a double signature. It ends once the ' +
      'first transaction can no longer be applied.',
  },
  NONCE_TAKEN: {
    outcome: 'reject',
    message:
      'This node already signed a different auth payload for the same address and nonce, still within its ' +
      'expiration: the host consumes a nonce once, so the two payloads exclude each other like two transactions for ' +
      'one sequence number.',
  },
  PROPOSAL_ID_REUSED: {
    outcome: 'reject',
    message: 'A different transaction is already held for manual approval under this proposal id.',
  },
  MANUAL_REJECT: {
    outcome: 'reject',
    message: 'An operator rejected this held proposal, or the coordinator closed it.',
  },
  FROST_GROUP_RETIRED: {
    outcome: 'reject',
    message:
      "This node's operator retired the FROST group the proposal names (POST /v1/frost/groups/:address/retire): its " +
      'share here is destroyed, so the node sends no commitment and no share for it, whichever step is asked.',
  },
  FROST_SWAP_UNKNOWN_GROUP: {
    outcome: 'reject',
    message:
      'A FROST group is asked to sign a change of its own key for a key that is not a group this node holds a ' +
      'confirmed share of (from a key generation it took part in): the node cannot verify the new key, so it sends ' +
      'no commitment.',
  },
  FROST_SWAP_WEIGHT_UNPLANNED: {
    outcome: 'reject',
    message:
      "A group-key swap adds a group for which this node's operator planned no account weight (frost.expect " +
      'accountWeight of that roster): the node does not take the weight from the coordinator.',
  },
  FROST_SWAP_MISMATCH: {
    outcome: 'reject',
    message:
      'A transaction that changes a signer to or from a group key this node knows is not exactly the group-key ' +
      'swap it can verify (source the account, two setOptions: the signing group to weight 0, a held group at its ' +
      'planned weight, nothing else); `field` names the first difference.',
  },
});

/** A node reason code. */
export type NodeReasonCode = keyof typeof nodeReasons.specs;

/** The proposal names another network than the one this node signs for (its pinned passphrase). */
export function wrongNetwork(): Reason {
  return policyReasons.reason('WRONG_NETWORK', {
    message: 'The proposal names a network this node does not sign for.',
    field: 'networkPassphrase',
  });
}

/** `what` could not be decoded: the decoder's code, if it has one, in the message. */
export function malformedXdr(what: string, e: unknown, field: string): Reason {
  const code = (e as { code?: unknown }).code;
  return nodeReasons.reason('MALFORMED_XDR', {
    message: `${what} could not be decoded (${typeof code === 'string' ? code : 'invalid'}).`,
    field,
  });
}

/** The coordinator's hash (or digest) is not the one this node computed. */
export function hashMismatch(): Reason {
  return nodeReasons.reason('HASH_MISMATCH', { field: 'hash' });
}

import { defineErrors } from '@cosigner/errors/errors';

/**
 * Errors of the policy package. They are all configuration errors raised when a node loads its policy at
 * boot: a node with an invalid policy does not start. Evaluating a loaded policy never throws; a proposal the
 * policy refuses is a `reject` decision with reason codes (see evaluate.ts), not an error.
 */
export const policyErrors = defineErrors('policy', {
  POLICY_INVALID: {
    status: 500,
    message: 'The policy is invalid; the message names the field and what is wrong with it.',
  },
  POLICY_BAD_YAML: { status: 500, message: 'The policy file is not valid YAML (or is not a YAML mapping).' },
  POLICY_UNREADABLE: { status: 500, message: 'The policy file cannot be read.' },
  POLICY_NO_FEE_CAP: {
    status: 500,
    message:
      'Production mode refuses a policy that does not cap fees: set fees.maxFee (per transaction) and fees.maxFeeBump (per fee bump).',
  },
  POLICY_NO_VELOCITY_LIMIT: {
    status: 500,
    message: 'Production mode refuses a policy in which an allowed asset has no velocity limit.',
  },
});

export type PolicyErrorCode = keyof typeof policyErrors.specs;

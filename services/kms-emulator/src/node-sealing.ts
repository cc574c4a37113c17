import type { Account } from './accounts.ts';

/**
 * The node principal's grants for sealing its FROST share by envelope encryption (GenerateDataKey, then Decrypt
 * at start-up): what a cosigner node's IAM role holds on its own symmetric key in AWS. Kept apart from the
 * signing grants (policy.ts NODE_ACTIONS) so that each can change without the other: a node may seal and unseal
 * with a symmetric key, never Encrypt arbitrary data with it, never manage it.
 */
export const NODE_SEALING_ACTIONS = ['kms:GenerateDataKey', 'kms:Decrypt', 'kms:DescribeKey'] as const;

/** Does a node's identity policy allow `action` for sealing? */
export function nodeSealingAllows(action: string): boolean {
  return (NODE_SEALING_ACTIONS as readonly string[]).includes(action);
}

/**
 * The default key policy of a new key, plus, for a symmetric (ENCRYPT_DECRYPT) key, a statement granting the
 * account's node principals NODE_SEALING_ACTIONS. Signing keys get nothing more: a node never needs to decrypt
 * with them, and KMS would refuse it for their key usage anyway.
 */
export function withNodeSealingGrant(policyText: string, account: Account, keyUsage: string): string {
  const nodes = account.principals.filter((p) => p.role === 'node').map((p) => p.arn);
  if (keyUsage !== 'ENCRYPT_DECRYPT' || nodes.length === 0) return policyText;
  const doc = JSON.parse(policyText) as { Statement: Record<string, unknown>[] };
  doc.Statement.push({
    Sid: 'Allow the cosigner node to seal and unseal its share with the key',
    Effect: 'Allow',
    Principal: { AWS: nodes },
    Action: [...NODE_SEALING_ACTIONS],
    Resource: '*',
  });
  return JSON.stringify(doc, null, 2);
}

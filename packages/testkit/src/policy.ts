/**
 * The node policy the lifecycle tests and the rotation bench give every node: payments and signer changes on the
 * cluster's `accounts`, keys on the node's roster accepted as members (`clusterMembers`), weight 1 at most, no
 * threshold below 2. JSON, which is YAML: the node's policy loader reads it as written.
 */
export function signerChangePolicy(o: {
  network: string;
  accounts: readonly string[];
  /** The 24-hour velocity limit on native payments, in XLM (default '1000000'). */
  dailyMax?: string;
  /** Hold every signer change for a person (manualApproval.signerChanges). */
  holdSignerChanges?: boolean;
}): string {
  return JSON.stringify({
    version: 1,
    network: o.network,
    accounts: o.accounts,
    operations: ['payment', 'setOptions'],
    assets: [{ asset: 'native', maxPerTx: '1000', velocity: [{ window: '24h', max: o.dailyMax ?? '1000000' }] }],
    validity: { maxWindowSeconds: 300 },
    signerChanges: {
      accounts: o.accounts,
      clusterMembers: true,
      maxWeight: 1,
      minThresholds: { low: 2, medium: 2, high: 2 },
    },
    ...(o.holdSignerChanges === undefined ? {} : { manualApproval: { signerChanges: o.holdSignerChanges } }),
  });
}

import { defineErrors } from '@cosigner/errors/errors';

/**
 * The ledger simulator's own refusals (configuration and snapshot files). Transaction verdicts are not errors
 * here: they are Horizon problem documents carrying stellar-core's result codes (see horizon.ts).
 */
export const ledgerErrors = defineErrors('ledger-sim', {
  LEDGER_BAD_CONFIG: {
    status: 400,
    message: 'A ledger simulator option is invalid (port, close interval or network passphrase).',
  },
  LEDGER_SNAPSHOT_CORRUPT: {
    status: 500,
    message: 'The ledger snapshot file cannot be read: it is not a snapshot this simulator wrote.',
  },
  LEDGER_SNAPSHOT_WRONG_NETWORK: {
    status: 500,
    message: 'The ledger snapshot belongs to another network passphrase; use another --data-dir.',
  },
});

export type LedgerErrorCode = keyof typeof ledgerErrors.specs;

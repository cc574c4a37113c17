-- Follow-ups still to open, schema 6 (services/coordinator/src/store.ts). Never edit a released migration.
--
-- A `sorobanTx` round that becomes `signed` must still open the transaction proposal that follows it
-- (kinds/soroban-tx.ts). That step needs the network (the source account's signers), so it cannot share the
-- `signed` commit; instead the `signed` transition sets follow_up_due = 1 in that commit, and it is cleared only
-- once the follow-up exists (or was found unneeded, or its failure was reported). A coordinator that dies in
-- between finds the row among the open ones at its restart and opens the follow-up then, under its
-- deterministic idempotency key, so never twice.
ALTER TABLE proposals ADD COLUMN follow_up_due INTEGER NOT NULL DEFAULT 0;
DROP INDEX proposals_open;
CREATE INDEX proposals_open ON proposals (n)
  WHERE status = 'pending' OR (status = 'signed' AND ((submit = 1 AND result IS NULL) OR follow_up_due = 1));

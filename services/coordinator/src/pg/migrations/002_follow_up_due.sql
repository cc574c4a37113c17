-- Follow-ups still to open, PostgreSQL schema 2 (services/coordinator/src/pg/store.ts). Never edit a released
-- migration: add the next numbered file.
--
-- The same column as SQLite's migration 006: a `sorobanTx` round's `signed` transition sets follow_up_due in its
-- commit; it is cleared once the transaction proposal that follows exists (or was found unneeded, or its failure
-- was reported). Until then the row is open: a replica that takes the lapsed round over opens the follow-up under
-- its deterministic idempotency key (UNIQUE, so one proposal whichever replica gets there).
ALTER TABLE proposals ADD COLUMN follow_up_due BOOLEAN NOT NULL DEFAULT false;
DROP INDEX proposals_open;
CREATE INDEX proposals_open ON proposals (n)
  WHERE status = 'pending' OR (status = 'signed' AND ((submit AND result IS NULL) OR follow_up_due));

-- Open proposals, schema 3 (services/coordinator/src/store.ts). Never edit a released migration.
--
-- Every POST counts the open proposals (limits.maxOpenProposals) and a restart lists them. Through the status index
-- that read every 'signed' row ever kept, since a signed-only proposal stays 'signed', so it grew with history. This
-- partial index holds exactly the open rows, in creation order; the two queries name it (INDEXED BY).
CREATE INDEX proposals_open ON proposals (n)
  WHERE status = 'pending' OR (status = 'signed' AND submit = 1 AND result IS NULL);

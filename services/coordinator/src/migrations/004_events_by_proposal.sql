-- Reads of the web console, schema 4 (services/coordinator/src/store.ts). Never edit a released migration.
--
-- A proposal's page shows its timeline from its events (every node decision in order, a hold followed by an
-- operator's approval included, which the decisions table keeps only the last of). Without this index that read
-- scans every event ever stored.
CREATE INDEX events_proposal ON events (proposal_id, seq);
-- The console's search by transaction hash (idempotency keys already have their UNIQUE index).
CREATE INDEX proposals_hash ON proposals (hash);

-- Coordinator schema v2: verified node signatures over Soroban authorization entry payloads, one per
-- (proposal, entry, signer). Kept apart from `signatures`, which hold signatures over a transaction hash.
CREATE TABLE auth_signatures (
  proposal_id TEXT NOT NULL REFERENCES proposals (id),
  entry_index INTEGER NOT NULL,
  signer_key TEXT NOT NULL,
  node_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  signature TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (proposal_id, entry_index, signer_key)
);

-- Which FROST group signs each FROST proposal (kind frostTx): written before the proposal row (the route checks the
-- group is ready and a signer first), read when the round opens, after a restart too. Kept here rather than as a
-- column of the proposal store, so FROST adds no migration there. A row whose proposal was never inserted (the
-- insert failed) names nothing and is harmless.
CREATE TABLE frost_proposals (
  proposal_id TEXT PRIMARY KEY,
  address TEXT NOT NULL,           -- the group key (G...), a ready row of frost_dkg
  created_at INTEGER NOT NULL
);

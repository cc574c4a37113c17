-- FROST key generations the coordinator relayed, and the groups they made: public data only (the coordinator never
-- sees a share). One row per key generation; a successful one holds the group key and every verifying share.
CREATE TABLE frost_dkg (
  id TEXT PRIMARY KEY,
  threshold INTEGER NOT NULL,
  participants TEXT NOT NULL,      -- JSON [{index, nodeId, identityKey}] by index
  roster TEXT NOT NULL,            -- roster digest (hex), as every node computes it
  status TEXT NOT NULL CHECK (status IN ('running', 'ready', 'failed')),
  step TEXT NOT NULL,              -- the last step sent: start, round1, round2, round3, confirm
  address TEXT UNIQUE,             -- the group key as a Stellar signer (G...), once ready
  group_public TEXT,               -- JSON GroupPublic, once ready
  transcript TEXT,                 -- round-1 transcript digest every node reported, once ready
  error TEXT,                      -- JSON {code, message, reportedBy?, culprits}, once failed
  created_by TEXT,                 -- the API key id that asked for it
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX frost_dkg_created ON frost_dkg (created_at);

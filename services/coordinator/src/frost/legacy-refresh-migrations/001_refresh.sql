-- FROST share refreshes the coordinator relayed (docs/architecture.md, "FROST share refresh"): public data only.
-- Its own file (frost-refresh.sqlite), so the feature adds no migration to the key-generation store.
-- `status` is the decision: 'adopted' is written (synced) BEFORE any node is told to switch, so a node that missed
-- the outcome is told the same one when it syncs, also after a coordinator restart; `acked` lists the participants
-- that have acknowledged the outcome (an adopted refresh: a signed `refresh-adopted` statement).
CREATE TABLE frost_refresh (
  id TEXT PRIMARY KEY,
  address TEXT NOT NULL,           -- the group (G...); its key does not change
  threshold INTEGER NOT NULL,
  participants TEXT NOT NULL,      -- JSON [{index, nodeId, identityKey}] by index
  roster TEXT NOT NULL,            -- refreshRosterDigest (hex), as every node computes it
  status TEXT NOT NULL CHECK (status IN ('running', 'adopted', 'failed')),
  step TEXT NOT NULL,              -- the last step sent: start, round1, round2, round3, adopt
  old_digest TEXT NOT NULL,        -- groupDigest of the group before the refresh
  digest TEXT,                     -- groupDigest of the adopted group
  group_public TEXT,               -- JSON GroupPublic of the adopted group
  transcript TEXT,                 -- the refresh's transcript digest every node reported
  reports TEXT,                    -- JSON [SignedStatement]: every node's signed report, relayed with `adopt`
  error TEXT,                      -- JSON {code, message, reportedBy?, nodeCode?, culprits, missing?, disagreeing?}
  acked TEXT NOT NULL DEFAULT '[]', -- JSON [nodeId]: participants that acknowledged the outcome
  created_by TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX frost_refresh_address ON frost_refresh (address, created_at);

-- FROST records, PostgreSQL schema 4 (services/coordinator/src/frost/, docs/architecture.md "Where FROST records
-- live"). Never edit a released migration: add the next numbered file.
--
-- Until this migration they lived in two SQLite files of the coordinator's data directory (frost.sqlite,
-- frost-refresh.sqlite); they are in the coordinator's one store now, so that every replica on a shared PostgreSQL
-- knows every group (SQLite migration 008 creates the same tables). A coordinator that finds the old files
-- imports them once, in one transaction, and renames them to *.imported (frost/legacy.ts).
--
-- Public data only: the coordinator never sees a share.
CREATE TABLE frost_dkg (
  id TEXT PRIMARY KEY,
  threshold INTEGER NOT NULL,
  participants TEXT NOT NULL,      -- JSON [{index, nodeId, identityKey}] by index
  roster TEXT NOT NULL,            -- roster digest (hex), as every node computes it
  status TEXT NOT NULL CHECK (status IN ('running', 'ready', 'failed')),
  step TEXT NOT NULL,              -- the last step sent: start, round1, round2, round3, confirm
  address TEXT UNIQUE,             -- the group key as a Stellar signer (G...), once ready
  group_public TEXT,               -- JSON GroupPublic, once ready (replaced by an adopted share refresh)
  transcript TEXT,                 -- transcript digest every node reported, once ready
  error TEXT,                      -- JSON {code, message, reportedBy?, nodeCode?, culprits, unreachable?}, once failed
  created_by TEXT,                 -- the API key id that asked for it
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL      -- also the relay's heartbeat: every step sent sets it
);
CREATE INDEX frost_dkg_created ON frost_dkg (created_at);
CREATE INDEX frost_dkg_running ON frost_dkg (status) WHERE status = 'running';

-- Which FROST group signs each FROST proposal (kind frostTx): written before the proposal row, read by whichever
-- replica opens the round (at creation, after a restart or a takeover).
CREATE TABLE frost_proposals (
  proposal_id TEXT PRIMARY KEY,
  address TEXT NOT NULL,           -- the group key (G...), a ready row of frost_dkg
  created_at BIGINT NOT NULL
);

-- FROST share refreshes and their two-phase adoption record. `status` is the decision, set once by a
-- compare-and-set on status = 'running' (store.ts adoptFrostRefresh / failFrostRefresh): 'adopted' is committed,
-- together with the group's new public data in frost_dkg, BEFORE any node is told to switch.
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
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX frost_refresh_address ON frost_refresh (address, created_at);
-- At most one running refresh per group, whichever replica started it.
CREATE UNIQUE INDEX frost_refresh_one_running ON frost_refresh (address) WHERE status = 'running';

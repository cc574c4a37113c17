-- Retirement of a group on this node (docs/operations/frost.md, "Retiring the old group"): the row keeps the group's
-- public data (address, participants, verifying shares, transcript: operators compare them), its status becomes
-- 'retired' and its sealed share is overwritten with NULL, so sealed_share is NULL exactly when the group is retired.
-- SQLite cannot change a CHECK or a NOT NULL in place, so both tables are rebuilt (sqlite.org/lang_altertable.html,
-- "other kinds of table schema changes"). frost_refresh_pending is renamed first: renaming frost_groups then points
-- its foreign key at frost_groups_old, and dropping it before frost_groups_old leaves no child row for the cascade.
-- secure_delete (pragma.html#pragma_secure_delete) zeroes the pages the old tables free, here and on every later
-- write of this connection (store.ts sets it at each open too).
PRAGMA secure_delete = ON;

ALTER TABLE frost_refresh_pending RENAME TO frost_refresh_pending_old;
ALTER TABLE frost_groups RENAME TO frost_groups_old;

CREATE TABLE frost_groups (
  address TEXT PRIMARY KEY,
  dkg_id TEXT NOT NULL UNIQUE,
  roster TEXT NOT NULL,
  threshold INTEGER NOT NULL,
  participants TEXT NOT NULL,
  my_index INTEGER NOT NULL,
  group_public TEXT NOT NULL,
  transcript TEXT NOT NULL,
  sealed_share TEXT,                   -- JSON SealedBlob; NULL once the group is retired
  sealer_kind TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'retired')),
  created_at INTEGER NOT NULL,
  retired_at INTEGER,                  -- ms since the epoch, set when retired
  CHECK ((status = 'retired') = (sealed_share IS NULL)),
  CHECK ((status = 'retired') = (retired_at IS NOT NULL))
);
INSERT INTO frost_groups (address, dkg_id, roster, threshold, participants, my_index, group_public, transcript,
  sealed_share, sealer_kind, status, created_at)
  SELECT address, dkg_id, roster, threshold, participants, my_index, group_public, transcript, sealed_share,
    sealer_kind, status, created_at FROM frost_groups_old;

CREATE TABLE frost_refresh_pending (
  refresh_id TEXT PRIMARY KEY,
  address TEXT NOT NULL UNIQUE REFERENCES frost_groups (address) ON DELETE CASCADE,
  digest TEXT NOT NULL,
  group_public TEXT NOT NULL,
  transcript TEXT NOT NULL,
  sealed_share TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
INSERT INTO frost_refresh_pending SELECT * FROM frost_refresh_pending_old;

DROP TABLE frost_refresh_pending_old;
DROP TABLE frost_groups_old;

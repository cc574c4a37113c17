-- Share refreshes in progress (docs/architecture.md, "FROST share refresh"): the new share of a group, SEALED by the
-- node's custody, kept BESIDE the group's current one (which keeps signing) until the coordinator relays the
-- adoption of this digest; then, in one transaction, the group's row takes the new share and public data and this
-- row goes. An abort deletes the row. At most one refresh per group at a time.
CREATE TABLE frost_refresh_pending (
  refresh_id TEXT PRIMARY KEY,
  address TEXT NOT NULL UNIQUE REFERENCES frost_groups (address) ON DELETE CASCADE,
  digest TEXT NOT NULL,                -- groupDigest of the new group (hex), as reported to the coordinator
  group_public TEXT NOT NULL,          -- JSON GroupPublic after the refresh: same key, new verifying shares
  transcript TEXT NOT NULL,            -- the refresh's round-1 transcript digest (hex)
  sealed_share TEXT NOT NULL,          -- JSON SealedBlob: the new share, encrypted by the node's custody
  created_at INTEGER NOT NULL
);

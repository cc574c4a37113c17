-- FROST groups this node belongs to: the group's public data, this node's place in it and its share SEALED by the
-- node's custody (never in the clear). A row is 'pending' from the node's round 3 until every participant's signed
-- result agreed ('confirmed'); a session that aborts before that deletes its pending row. Only a confirmed group
-- counts: for signing, and as the use of the operator's expectation.
CREATE TABLE frost_groups (
  address TEXT PRIMARY KEY,            -- the group key as a Stellar signer (G...)
  dkg_id TEXT NOT NULL UNIQUE,         -- the key-generation session that made it
  roster TEXT NOT NULL,                -- roster digest (hex): threshold and participants with identity keys
  threshold INTEGER NOT NULL,
  participants TEXT NOT NULL,          -- JSON [{index, nodeId, identityKey}] by index
  my_index INTEGER NOT NULL,
  group_public TEXT NOT NULL,          -- JSON GroupPublic: commitments and every participant's verifying share
  transcript TEXT NOT NULL,            -- round-1 transcript digest (hex), equal at every participant
  sealed_share TEXT NOT NULL,          -- JSON SealedBlob (sealer.ts): the share encrypted by the node's custody
  sealer_kind TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
  created_at INTEGER NOT NULL
);

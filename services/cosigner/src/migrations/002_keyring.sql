-- Keyring and roster, schema 2 (services/cosigner/src/keyring.ts). Never edit a released migration.

-- The node's Stellar signing keys: exactly one 'active' (the key it signs with), at most one 'pending' (a
-- rotation in progress: opened, not used), and the 'retired' ones. `config` is the backend settings without
-- credentials (packages/keys SignerConfig).
CREATE TABLE keyring (
  address    TEXT PRIMARY KEY,          -- G... address of the key
  kind       TEXT NOT NULL,             -- aws-kms | pkcs11 | local
  key_id     TEXT NOT NULL,             -- the backend's key id (KMS ARN, token/CKA_ID, file)
  config     TEXT NOT NULL,             -- JSON SignerConfig without credentials
  state      TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
  created_at INTEGER NOT NULL,          -- unix ms
  updated_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX keyring_one_active ON keyring (state) WHERE state = 'active';
CREATE UNIQUE INDEX keyring_one_pending ON keyring (state) WHERE state = 'pending';

-- Stellar keys of cluster members this node's operator accepted: with the policy's
-- signerChanges.clusterMembers, the node signs adding or removing them.
CREATE TABLE roster (
  address  TEXT PRIMARY KEY,
  node_id  TEXT,
  added_by TEXT NOT NULL,
  added_at INTEGER NOT NULL             -- unix ms
) STRICT;

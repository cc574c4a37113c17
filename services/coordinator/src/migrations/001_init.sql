-- Coordinator schema v1. Timestamps are ms since epoch. JSON columns hold what the API returns verbatim.
CREATE TABLE proposals (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  idempotency_key TEXT UNIQUE,
  api_key_id TEXT,
  kind TEXT NOT NULL,
  xdr TEXT NOT NULL,
  hash TEXT NOT NULL,
  network TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT,
  requirements TEXT NOT NULL,
  accounts TEXT NOT NULL,
  submit INTEGER NOT NULL,
  callback_url TEXT,
  note TEXT,
  max_time INTEGER NOT NULL,
  envelope TEXT,
  result TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  signed_at INTEGER
);
CREATE INDEX proposals_status ON proposals (status, n);

CREATE TABLE signatures (
  proposal_id TEXT NOT NULL REFERENCES proposals (id),
  signer_key TEXT NOT NULL,
  node_id TEXT NOT NULL,
  signature TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (proposal_id, signer_key)
);

CREATE TABLE decisions (
  proposal_id TEXT NOT NULL REFERENCES proposals (id),
  node_id TEXT NOT NULL,
  outcome TEXT NOT NULL,
  reasons TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (proposal_id, node_id)
);

CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  proposal_id TEXT,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE nodes (
  id TEXT PRIMARY KEY,
  identity_key TEXT NOT NULL,
  stellar_key TEXT NOT NULL UNIQUE,
  enrolled_at INTEGER NOT NULL,
  last_seen INTEGER,
  last_latency_ms REAL,
  approvals INTEGER NOT NULL DEFAULT 0,
  rejections INTEGER NOT NULL DEFAULT 0,
  misbehaviours INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE misbehaviours (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  node_id TEXT NOT NULL,
  proposal_id TEXT,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL,
  scopes TEXT NOT NULL,
  label TEXT,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);

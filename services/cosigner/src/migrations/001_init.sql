-- Signing ledger, schema 1. Applied inside one transaction by ledger.ts; never edit a released migration,
-- add a numbered file instead.

-- Every signature the node decided to release, keyed by the hash it signs. A row is written with
-- state 'intent' BEFORE the key backend is asked to sign (the intent alone already holds the slot), and
-- moves to 'signed' once the signature is stored.
CREATE TABLE signatures (
  sign_hash   TEXT PRIMARY KEY,          -- hex of the hash the key signs (outer hash for a fee bump)
  tx_hash     TEXT NOT NULL,             -- hex of the transaction that uses the slot (inner tx for a fee bump)
  source      TEXT NOT NULL,             -- slot: source account of the (inner) transaction
  seq         TEXT NOT NULL,             -- slot: sequence number, decimal
  max_time    INTEGER NOT NULL,          -- unix seconds; 0 = unbounded (the slot is then held forever)
  proposal_id TEXT NOT NULL,
  signer      TEXT NOT NULL,             -- G... address of the key that signs
  state       TEXT NOT NULL CHECK (state IN ('intent', 'signed')),
  signature   TEXT,                      -- base64, set with state 'signed'
  manual      INTEGER NOT NULL DEFAULT 0,
  created_at  INTEGER NOT NULL,          -- unix seconds
  signed_at   INTEGER
) STRICT;
CREATE INDEX signatures_slot ON signatures (source, seq);

-- Amounts that count against velocity limits: one row per (signature, asset), written with the intent.
CREATE TABLE spend (
  sign_hash TEXT NOT NULL REFERENCES signatures (sign_hash),
  asset_key TEXT NOT NULL,
  amount    TEXT NOT NULL,               -- decimal stroops (bigint)
  at        INTEGER NOT NULL,            -- unix seconds
  PRIMARY KEY (sign_hash, asset_key)
) STRICT;
CREATE INDEX spend_window ON spend (asset_key, at);

-- Every decision, approvals included, with its reasons (kept for operators and the audit trail).
CREATE TABLE decisions (
  id          INTEGER PRIMARY KEY,
  proposal_id TEXT NOT NULL,
  hash        TEXT NOT NULL,
  outcome     TEXT NOT NULL CHECK (outcome IN ('approve', 'reject', 'hold')),
  reasons     TEXT NOT NULL,             -- JSON array of {code, message, opIndex?, field?}
  at          INTEGER NOT NULL
) STRICT;
CREATE INDEX decisions_proposal ON decisions (proposal_id);

-- Proposals held for manual approval. The unsigned XDR is kept so an approval reviews it again.
CREATE TABLE pending (
  proposal_id TEXT PRIMARY KEY,
  hash        TEXT NOT NULL,
  xdr         TEXT NOT NULL,
  network     TEXT NOT NULL,
  reasons     TEXT NOT NULL,
  summary     TEXT NOT NULL,             -- JSON of the node's own TransactionSummary
  state       TEXT NOT NULL CHECK (state IN ('held', 'approved', 'rejected', 'cancelled')),
  received_at INTEGER NOT NULL,
  closed_at   INTEGER,
  closed_by   TEXT
) STRICT;

-- Append-only, hash-chained audit log (audit.ts). Same file as the ledger so that a decision and its
-- audit entry commit in one transaction.
CREATE TABLE audit (
  seq       INTEGER PRIMARY KEY,
  at        INTEGER NOT NULL,            -- unix milliseconds
  type      TEXT NOT NULL,
  data      TEXT NOT NULL,               -- canonical JSON (as hashed)
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL
) STRICT;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
-- Signatures are never forgotten: a row may move intent -> signed, never be deleted.
CREATE TRIGGER signatures_no_delete BEFORE DELETE ON signatures BEGIN SELECT RAISE(ABORT, 'signing ledger rows are permanent'); END;

-- One row per signing round this node committed to. The nonces themselves are never stored: only the
-- commitment (public) and the round's state. A row is written, and synced, before the commitment leaves the node;
-- `state` moves from 'issued' to 'used' (or 'lost' after a restart) and never back, so a nonce signs at most once.
CREATE TABLE frost_nonces (
  round_id     TEXT PRIMARY KEY,
  group_key    TEXT NOT NULL,
  participant  INTEGER NOT NULL,
  commitment   TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('issued', 'used', 'lost')),
  issued_at    INTEGER NOT NULL,
  closed_at    INTEGER
) STRICT;

CREATE TRIGGER frost_nonces_no_reopen BEFORE UPDATE OF state ON frost_nonces
WHEN OLD.state <> 'issued'
BEGIN
  SELECT RAISE(ABORT, 'a used or lost nonce never becomes usable again');
END;

CREATE TRIGGER frost_nonces_no_delete BEFORE DELETE ON frost_nonces
BEGIN
  SELECT RAISE(ABORT, 'nonce records are never deleted');
END;

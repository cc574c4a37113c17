-- Soroban rounds in typed columns, schema 5 (services/coordinator/src/store.ts). Never edit a released migration.
--
-- Until schema 4 an `authEntries` or `sorobanTx` row kept a JSON object {entries, tx?, submit} in `xdr` and an
-- `authEntries` row the JSON array of its signed entries in `envelope`. From here on:
-- - `auth_entries` holds each authorization entry of the round (base64 SorobanAuthorizationEntry, in the order
--   the client or the transaction gave them) and, once the round is signed, the entry with its signatures;
-- - `xdr` holds only a transaction envelope: the one proposed (a `sorobanTx` row's invokeHostFunction
--   transaction), or '' for an `authEntries` row, which has no transaction (the column is NOT NULL since schema 1,
--   and rebuilding the table under enforced foreign keys is not worth one empty string);
-- - `submit_follow_up` is a `sorobanTx` row's submit wish, for the transaction proposal that follows it (`submit`
--   of the row itself stays 0: the auth round submits nothing, and `proposals_open` counts signed rows with
--   submit = 1 as waiting for a submission);
-- - `envelope` of an `authEntries` row is NULL (its result is the signed entries).
CREATE TABLE auth_entries (
  proposal_id TEXT NOT NULL REFERENCES proposals (id),
  entry_index INTEGER NOT NULL,
  entry TEXT NOT NULL,
  signed TEXT,
  PRIMARY KEY (proposal_id, entry_index)
);
ALTER TABLE proposals ADD COLUMN submit_follow_up INTEGER NOT NULL DEFAULT 0;

INSERT INTO auth_entries (proposal_id, entry_index, entry, signed)
  SELECT p.id, CAST(e.key AS INTEGER), e.value,
    CASE WHEN p.kind = 'authEntries' AND p.envelope IS NOT NULL THEN json_extract(p.envelope, '$[' || e.key || ']') END
  FROM proposals p, json_each(p.xdr, '$.entries') e
  WHERE p.kind IN ('authEntries', 'sorobanTx');
UPDATE proposals SET submit_follow_up = CASE WHEN json_extract(xdr, '$.submit') THEN 1 ELSE 0 END
  WHERE kind = 'sorobanTx';
UPDATE proposals SET envelope = NULL WHERE kind = 'authEntries';
UPDATE proposals SET xdr = COALESCE(json_extract(xdr, '$.tx'), '') WHERE kind IN ('authEntries', 'sorobanTx');

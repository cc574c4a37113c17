-- Velocity sums per asset and minute, schema 3 (services/cosigner/src/ledger.ts). Never edit a released migration.
--
-- Reading a velocity window used to load every spend row of the window (a 24 h window at 300 signatures/s holds
-- 26 million rows). Each spend row now also adds its amount to its minute's total, in the same transaction, so a
-- window is read as one total per minute plus the exact rows of the one minute that the window's start cuts.
CREATE TABLE spend_minute (
  asset_key TEXT NOT NULL,
  minute    INTEGER NOT NULL,            -- unix seconds, a multiple of 60: the rows with minute <= at < minute + 60
  total     TEXT NOT NULL,               -- decimal stroops (bigint), the exact sum of those rows' amounts
  PRIMARY KEY (asset_key, minute)
) STRICT, WITHOUT ROWID;

-- The rows written before this schema. SUM over integers is exact (it fails, and so does this migration, only if
-- one asset's spends within one minute passed 2^63 stroops).
INSERT INTO spend_minute (asset_key, minute, total)
  SELECT asset_key, (at / 60) * 60, CAST(SUM(CAST(amount AS INTEGER)) AS TEXT) FROM spend GROUP BY asset_key, (at / 60) * 60;

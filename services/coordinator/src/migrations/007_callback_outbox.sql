-- Callback outbox, schema 7 (services/coordinator/src/store.ts, events.ts). Never edit a released migration.
--
-- An event for a proposal with a callback URL leaves a row here in the event's own commit; the row goes once the
-- receiver answered 2xx. So a delivery (and its retries) outlives the process that emitted the event: the
-- restarted coordinator finds the row and delivers it (at least once: the receiver deduplicates by the event's
-- seq). After `callbacks.maxAttempts` failed tries, or a refused destination, the row stays with state 'failed'.
CREATE TABLE callback_outbox (
  id INTEGER PRIMARY KEY,
  event_seq INTEGER NOT NULL REFERENCES events (seq),
  url TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL,
  claimed_by TEXT,
  claimed_until INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX callback_outbox_due ON callback_outbox (next_at) WHERE state = 'pending';

-- Retention (indexer.outbox_retention_hours) deletes a chain's oldest outbox rows by age: with this
-- index the scan stops at the first row young enough to keep.
CREATE INDEX outbox_chain_created ON idx.outbox (chain_id, created_at);

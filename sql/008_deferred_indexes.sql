-- Secondary indexes dropped for an initial sync (or a rebuild) and built once it reaches the head:
-- a B-tree built by sorting costs a fraction of maintaining it row by row (1M-event backfill: the
-- COPYs into ev_trade and ev_shares_traded were ~22 µs per row with their secondary indexes, PostgreSQL
-- CPU fell from 30 s to 20 s without them). The definitions are kept here, in the transaction that
-- drops them, so a crash at any point leaves either the index or its definition.
CREATE TABLE idx.deferred_indexes (
    name        text PRIMARY KEY,          -- index name in schema idx
    definition  text NOT NULL,             -- pg_indexes.indexdef when it was dropped
    chain_id    bigint NOT NULL,           -- the chain whose backfill deferred it
    deferred_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON idx.deferred_indexes TO api;

-- Derived rows are rewritten in place by the indexer (UPDATE at the row's ctid, keys unchanged):
-- free space in each page lets PostgreSQL make those updates HOT (no index maintenance).
ALTER TABLE idx.markets SET (fillfactor = 70);
ALTER TABLE idx.positions SET (fillfactor = 70);
ALTER TABLE idx.creators SET (fillfactor = 70);
ALTER TABLE idx.share_holdings SET (fillfactor = 70);

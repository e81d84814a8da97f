-- sent_block is the head at an attempt's FIRST broadcast (fee bumps count from it). The drop grace
-- ("our nonce is used, no receipt: dropped 2 blocks after our last send") needs the LAST one: a
-- rebroadcast after a reorg, or of a transaction the node forgot, restarts it.
ALTER TABLE keeper.tx_attempts ADD COLUMN last_sent_block bigint;
COMMENT ON COLUMN keeper.tx_attempts.sent_block IS 'head at the first broadcast (null: never sent)';
COMMENT ON COLUMN keeper.tx_attempts.last_sent_block IS 'head at the latest (re)broadcast';

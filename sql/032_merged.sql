-- Issue 15: OpinionMarket.merge burns a YES+NO pair of the caller for one USDC unit each, before
-- resolution (an exit that works while paused and after the end time). One row per Merged event; the
-- fold treats it like a sell of both sides for `amount` (positions.sold, realized_pnl, costs).
CREATE TABLE idx.ev_merged (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    holder bytea NOT NULL,
    amount numeric(78,0) NOT NULL,             -- pairs burned = USDC paid
    trader_yes numeric(78,0) NOT NULL,         -- post-state
    trader_no numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_merged_holder ON idx.ev_merged (chain_id, holder, block_number DESC);
GRANT SELECT ON idx.ev_merged TO api;

-- Issue 15, time-fair dividends: CreatorShares folds everything pending (share-trade dividend fees and
-- the creator's market fees that arrived since the last fold) into the accumulator before every change
-- of supply. SharesTraded carries the amount folded as its last field, `distributed`; creators.
-- distributed_total adds it. Rows indexed before this migration come from the old contracts (nothing
-- folded at trades): 0.
ALTER TABLE idx.ev_shares_traded ADD COLUMN distributed numeric(78,0) NOT NULL DEFAULT 0;
COMMENT ON COLUMN idx.ev_shares_traded.distributed IS
    'USDC units credited to the holders before this trade (pending fees folded at the supply change)';

-- Of market_fees_accrued (held by OpinionMarket), the part already credited to holders by a fold; what
-- the next fold credits is pool + market_fees_accrued - market_fees_folded (CreatorShares.pendingPool).
ALTER TABLE idx.creators ADD COLUMN market_fees_folded numeric(78,0) NOT NULL DEFAULT 0;

-- pending_pool: what the next fold credits (the market fees already folded are credited, not pending).
CREATE OR REPLACE VIEW public.creators AS
SELECT c.chain_id,
       hex(c.creator) AS creator,
       c.supply,
       usdc(coalesce((k.config ->> 'curve_unit')::numeric, 0) * c.supply * c.supply) AS price,
       c.holder_count,
       usdc(c.pool + c.market_fees_accrued - c.market_fees_folded) AS pending_pool,
       usdc(c.distributed_total) AS distributed_total,
       c.distribution_count,
       usdc(c.volume) AS volume,
       c.trade_count,
       c.first_block
  FROM idx.creators c
  LEFT JOIN idx.contracts k ON k.chain_id = c.chain_id AND k.name = 'CreatorShares';

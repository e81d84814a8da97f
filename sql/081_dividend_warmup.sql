-- Audit s15 F1, the dividend warm-up (docs/design/dividend-warmup.md): shares bought on UTC day e earn from
-- 00:00 of day e+2; a holding keeps at most two pending lots, `pend_old` (earns one day before `earns_from`)
-- and `pend_new` (earns from `earns_from`), each marked with the accumulator at its 00:00 (`pend_*_acc`,
-- 1e18-scaled) by the fold that passed it (a PendingMatured event), NULL until then. The contract turns a
-- marked lot into earning shares when the holding is next settled (a trade or a claim of the holder).
-- Rows indexed before this migration come from the old contracts (no warm-up): 0 / NULL.
ALTER TABLE idx.ev_shares_traded
    ADD COLUMN trader_pending_old numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN trader_pending_new numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN trader_earns_from numeric(78,0) NOT NULL DEFAULT 0,   -- unix seconds, 0: nothing pending
    ADD COLUMN pending_supply numeric(78,0) NOT NULL DEFAULT 0;
ALTER TABLE idx.ev_dividends_distributed
    ADD COLUMN earning_supply numeric(78,0) NOT NULL DEFAULT 0,      -- what `amount` was credited over
    ADD COLUMN pending_supply numeric(78,0) NOT NULL DEFAULT 0;

CREATE TABLE idx.ev_pending_matured (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    creator bytea NOT NULL,
    shares numeric(78,0) NOT NULL,             -- pending shares that earn from now on
    from_day numeric(78,0) NOT NULL,           -- the lots of 00:00 of days from_day..to_day (unix days)
    to_day numeric(78,0) NOT NULL,
    acc_per_share numeric(78,0) NOT NULL,      -- the accumulator at those 00:00s, 1e18-scaled
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_pending_matured_creator ON idx.ev_pending_matured (chain_id, creator, block_number DESC);
GRANT SELECT ON idx.ev_pending_matured TO api;

ALTER TABLE idx.creators ADD COLUMN pending_supply numeric(78,0) NOT NULL DEFAULT 0;
ALTER TABLE idx.share_holdings
    ADD COLUMN pend_old numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN pend_new numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN earns_from numeric(78,0) NOT NULL DEFAULT 0,          -- unix seconds, 0: nothing pending
    ADD COLUMN pend_old_acc numeric(78,0),
    ADD COLUMN pend_new_acc numeric(78,0);

-- CreatorShares.claimableDividends from a holding row and its creator's accumulator `acc` (all 1e18-scaled),
-- to the unit: each term truncates on its own, as the contract's settlement. In public (not idx) so the
-- analyst role, which has no access to idx, can run the views that call it.
CREATE FUNCTION public.share_claimable(
    shares numeric, pend_old numeric, pend_new numeric, pend_old_acc numeric, pend_new_acc numeric,
    credited numeric, acc_paid numeric, acc numeric
) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
SELECT credited
     + div((shares - pend_old - pend_new) * (acc - acc_paid), 1000000000000000000)
     + coalesce(div(pend_old * (acc - pend_old_acc), 1000000000000000000), 0)
     + coalesce(div(pend_new * (acc - pend_new_acc), 1000000000000000000), 0)
$$;
GRANT EXECUTE ON FUNCTION public.share_claimable(numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric)
    TO api, analyst;

-- earning / pending shares and when the pending ones start earning; claimable per the warm-up.
-- (a lot counts as earning once a fold marked it, as the contract's counters; pending_earns_from: the next 00:00)
CREATE OR REPLACE VIEW public.share_holdings AS
SELECT h.chain_id,
       hex(h.creator) AS creator,
       hex(h.holder) AS holder,
       h.shares,
       to_timestamp(h.locked_until::double precision) AS locked_until,
       usdc(share_claimable(h.shares, h.pend_old, h.pend_new, h.pend_old_acc, h.pend_new_acc, h.credited, h.acc_paid,
                            c.acc_per_share)) AS claimable_dividends,
       usdc(h.claimed_total) AS claimed_dividends,
       h.shares - CASE WHEN h.pend_old_acc IS NULL THEN h.pend_old ELSE 0 END
                - CASE WHEN h.pend_new_acc IS NULL THEN h.pend_new ELSE 0 END AS earning_shares,
       CASE WHEN h.pend_old_acc IS NULL THEN h.pend_old ELSE 0 END
           + CASE WHEN h.pend_new_acc IS NULL THEN h.pend_new ELSE 0 END AS pending_shares,
       CASE WHEN h.pend_old > 0 AND h.pend_old_acc IS NULL THEN to_timestamp((h.earns_from - 86400)::double precision)
            WHEN h.pend_new > 0 AND h.pend_new_acc IS NULL THEN to_timestamp(h.earns_from::double precision)
       END AS pending_earns_from
  FROM idx.share_holdings h
  JOIN idx.creators c ON c.chain_id = h.chain_id AND c.creator = h.creator;

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
       c.first_block,
       c.supply - c.pending_supply AS earning_supply,
       c.pending_supply
  FROM idx.creators c
  LEFT JOIN idx.contracts k ON k.chain_id = c.chain_id AND k.name = 'CreatorShares';

-- a distribution is credited over the earning shares: holders_supply is that supply (a row of a deployment
-- before the warm-up has earning_supply 0: every share earned then)
CREATE OR REPLACE VIEW public.dividend_distributions AS
SELECT d.chain_id,
       d.block_number,
       d.log_index,
       hex(d.tx_hash) AS tx_hash,
       d.block_time,
       hex(d.creator) AS creator,
       usdc(d.amount) AS amount,
       usdc(d.market_fees) AS market_fees,
       CASE WHEN d.earning_supply > 0 THEN d.earning_supply ELSE d.supply END AS holders_supply,
       usdc(d.pool) AS pool_after
  FROM idx.ev_dividends_distributed d;

-- The analysts' stable surface (docs/sql.md): views in schema public over idx.*.
-- Human units: USDC and outcome shares as numeric with 6 decimals; addresses, hashes and ids as
-- lowercase 0x hex text; prices as numeric in [0, 1] with 6 decimals. Creator shares are whole
-- numbers of shares.

CREATE FUNCTION public.hex(b bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT '0x' || encode(b, 'hex') $$;

CREATE FUNCTION public.usdc(x numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT round(x / 1000000, 6) $$;

CREATE VIEW public.markets AS
SELECT m.chain_id,
       m.market_id,
       hex(m.creator) AS creator,
       m.question,
       m.category,
       m.end_time,
       CASE WHEN m.resolved THEN 'resolved' WHEN m.end_time <= now() THEN 'closed' ELSE 'active' END AS status,
       CASE m.outcome WHEN 0 THEN 'no' WHEN 1 THEN 'yes' WHEN 2 THEN 'invalid' END AS outcome,
       usdc(m.yes_reserve) AS yes_reserve,
       usdc(m.no_reserve) AS no_reserve,
       round(m.no_reserve / (m.yes_reserve + m.no_reserve), 6) AS yes_price,
       round(m.yes_reserve / (m.yes_reserve + m.no_reserve), 6) AS no_price,
       usdc(m.volume) AS volume,
       usdc(m.fees) AS fees,
       m.trade_count,
       usdc(m.initial_liquidity) AS initial_liquidity,
       m.created_block,
       m.created_time,
       m.resolved_block,
       m.resolved_time
  FROM idx.markets m;

CREATE VIEW public.trades AS
SELECT t.chain_id,
       t.block_number,
       t.log_index,
       hex(t.tx_hash) AS tx_hash,
       t.block_time,
       t.market_id,
       hex(t.trader) AS trader,
       CASE t.outcome WHEN 0 THEN 'no' ELSE 'yes' END AS outcome,
       CASE WHEN t.is_buy THEN 'buy' ELSE 'sell' END AS side,
       usdc(t.collateral) AS collateral,
       usdc(t.shares) AS shares,
       usdc(t.fee) AS fee,
       CASE WHEN t.shares > 0 THEN round(t.collateral / t.shares, 6) END AS price,
       round(t.no_reserve / (t.yes_reserve + t.no_reserve), 6) AS yes_price_after
  FROM idx.ev_trade t;

CREATE VIEW public.positions AS
SELECT p.chain_id,
       p.market_id,
       hex(p.holder) AS holder,
       usdc(p.yes_shares) AS yes_shares,
       usdc(p.no_shares) AS no_shares,
       usdc(p.yes_cost + p.no_cost) AS cost_basis,
       usdc(p.realized_pnl) AS realized_pnl,
       usdc(p.claimed) AS claimed,
       usdc(p.bought) AS bought,
       usdc(p.sold) AS sold,
       p.trade_count
  FROM idx.positions p;

CREATE VIEW public.creators AS
SELECT c.chain_id,
       hex(c.creator) AS creator,
       c.supply,
       usdc(coalesce((k.config ->> 'curve_unit')::numeric, 0) * c.supply * c.supply) AS price,
       c.holder_count,
       usdc(c.pool + c.market_fees_accrued) AS pending_pool,
       usdc(c.distributed_total) AS distributed_total,
       c.distribution_count,
       usdc(c.volume) AS volume,
       c.trade_count,
       c.first_block
  FROM idx.creators c
  LEFT JOIN idx.contracts k ON k.chain_id = c.chain_id AND k.name = 'CreatorShares';

CREATE VIEW public.share_trades AS
SELECT s.chain_id,
       s.block_number,
       s.log_index,
       hex(s.tx_hash) AS tx_hash,
       s.block_time,
       hex(s.creator) AS creator,
       hex(s.trader) AS trader,
       CASE WHEN s.is_buy THEN 'buy' ELSE 'sell' END AS side,
       s.amount AS shares,
       usdc(s.price) AS price,
       usdc(s.protocol_fee) AS protocol_fee,
       usdc(s.creator_fee) AS creator_fee,
       usdc(s.dividend_fee) AS dividend_fee,
       s.supply AS supply_after
  FROM idx.ev_shares_traded s;

CREATE VIEW public.share_holdings AS
SELECT h.chain_id,
       hex(h.creator) AS creator,
       hex(h.holder) AS holder,
       h.shares,
       to_timestamp(h.locked_until::double precision) AS locked_until,
       usdc(h.credited + floor(h.shares * (c.acc_per_share - h.acc_paid) / 1e18)) AS claimable_dividends,
       usdc(h.claimed_total) AS claimed_dividends
  FROM idx.share_holdings h
  JOIN idx.creators c ON c.chain_id = h.chain_id AND c.creator = h.creator;

CREATE VIEW public.dividend_distributions AS
SELECT d.chain_id,
       d.block_number,
       d.log_index,
       hex(d.tx_hash) AS tx_hash,
       d.block_time,
       hex(d.creator) AS creator,
       usdc(d.amount) AS amount,
       usdc(d.market_fees) AS market_fees,
       d.supply AS holders_supply,
       usdc(d.pool) AS pool_after
  FROM idx.ev_dividends_distributed d;

CREATE VIEW public.dividend_claims AS
SELECT d.chain_id,
       d.block_number,
       d.log_index,
       hex(d.tx_hash) AS tx_hash,
       d.block_time,
       hex(d.creator) AS creator,
       hex(d.holder) AS holder,
       usdc(d.amount) AS amount
  FROM idx.ev_dividends_claimed d;

CREATE VIEW public.notifications AS
SELECT n.chain_id,
       n.block_number,
       n.log_index,
       hex(n.recipient) AS recipient,
       n.kind,
       n.title,
       n.message,
       n.market_id,
       hex(n.creator) AS creator,
       usdc(n.amount) AS amount,
       n.block_time
  FROM idx.notifications n;

CREATE VIEW public.indexer_status AS
SELECT h.chain_id,
       h.head_block,
       c.block_number AS indexed_block,
       h.safe_block,
       h.finalized_block,
       greatest(h.head_block - coalesce(c.block_number, 0), 0) AS lag_blocks,
       greatest(h.updated_at, c.updated_at) AS updated_at
  FROM idx.chain_heads h
  LEFT JOIN idx.checkpoints c ON c.chain_id = h.chain_id;

-- Read-only roles: analysts query the views; the API reads views and idx tables.
-- Roles are cluster-wide while the migration lock is per database: two databases migrating at once
-- (two chains, parallel test workers) may both try to create them, so a duplicate is not an error.
DO $$
BEGIN
    CREATE ROLE analyst NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE api NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

GRANT USAGE ON SCHEMA public TO analyst, api;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst, api;
GRANT USAGE ON SCHEMA idx TO api;
GRANT SELECT ON ALL TABLES IN SCHEMA idx TO api;

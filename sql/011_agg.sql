-- Aggregates the keeper recomputes on a schedule (schema agg) for the API and analysts.
-- Every table carries chain_id and the time it was computed (updated_at); each refresh replaces
-- a chain's rows in one transaction, so readers never see a half-written ranking.
-- Amounts are USDC base units (6 decimals) as numeric(78,0); `pnl` may be negative.

CREATE SCHEMA IF NOT EXISTS agg;

-- Windows: '24h', '7d', 'all'. pnl = net cash flow of the trader in the window:
--   sell proceeds + winnings claimed - buy payments (open positions count at cost, i.e. as a loss
--   until sold or claimed). volume = buy payments + sell proceeds.
CREATE TABLE agg.leaderboard_traders (
    chain_id   bigint NOT NULL,
    "window"   text   NOT NULL CHECK ("window" IN ('24h', '7d', 'all')),
    rank       int    NOT NULL,
    trader     bytea  NOT NULL,
    pnl        numeric(78,0) NOT NULL,
    volume     numeric(78,0) NOT NULL,
    trades     bigint NOT NULL,
    markets    bigint NOT NULL,                  -- distinct markets traded in the window
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (chain_id, "window", rank)
);
CREATE INDEX leaderboard_traders_trader ON agg.leaderboard_traders (chain_id, trader);

-- Creators ranked by share-trading volume in the window (curve price, fees excluded).
CREATE TABLE agg.leaderboard_creators (
    chain_id          bigint NOT NULL,
    "window"          text   NOT NULL CHECK ("window" IN ('24h', '7d', 'all')),
    rank              int    NOT NULL,
    creator           bytea  NOT NULL,
    volume            numeric(78,0) NOT NULL,
    trades            bigint NOT NULL,
    holder_count      bigint NOT NULL,           -- current
    supply            numeric(78,0) NOT NULL,    -- current
    distributed_total numeric(78,0) NOT NULL,    -- all time
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (chain_id, "window", rank)
);

-- Per market, last 24 h (every market, zeros when idle): the API's "sort by 24h volume".
CREATE TABLE agg.market_stats_24h (
    chain_id     bigint NOT NULL,
    market_id    bigint NOT NULL,
    volume_24h   numeric(78,0) NOT NULL,
    trades_24h   bigint NOT NULL,
    traders_24h  bigint NOT NULL,
    yes_price_change_24h numeric,                -- yes price now - 24 h ago, [-1, 1]; null if no trade before
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (chain_id, market_id)
);

-- Open markets ranked by score = volume_24h + 1 USDC per trade in 24 h + 5 USDC per distinct trader,
-- in base units (so busy, broadly traded markets beat one whale).
CREATE TABLE agg.trending_markets (
    chain_id    bigint NOT NULL,
    rank        int    NOT NULL,
    market_id   bigint NOT NULL,
    score       numeric(78,0) NOT NULL,
    volume_24h  numeric(78,0) NOT NULL,
    trades_24h  bigint NOT NULL,
    traders_24h bigint NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (chain_id, rank)
);
CREATE UNIQUE INDEX trending_markets_market ON agg.trending_markets (chain_id, market_id);

-- When each aggregate was last refreshed (the API shows it as freshness).
CREATE TABLE agg.refreshes (
    chain_id     bigint NOT NULL,
    name         text   NOT NULL,
    refreshed_at timestamptz NOT NULL,
    rows         bigint NOT NULL,
    PRIMARY KEY (chain_id, name)
);

GRANT USAGE ON SCHEMA agg TO analyst, api;
GRANT SELECT ON ALL TABLES IN SCHEMA agg TO analyst, api;

-- Indexes for the API's sorted reads of the keeper's aggregates (additive; agg.* stays the keeper's).
-- GET /v1/markets?sort=volume24h|trades24h ranks by agg.market_stats_24h: with these the planner
-- walks the index for the top of the ranking instead of sorting every market.
CREATE INDEX IF NOT EXISTS market_stats_24h_volume ON agg.market_stats_24h (chain_id, volume_24h DESC, market_id DESC);
CREATE INDEX IF NOT EXISTS market_stats_24h_trades ON agg.market_stats_24h (chain_id, trades_24h DESC, market_id DESC);

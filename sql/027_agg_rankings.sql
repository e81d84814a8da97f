-- Every leaderboard the API serves is a keeper ranking (keeper/aggregate.py): traders and creators,
-- each window (24h, 7d, 30d, all) ranked each way the API sorts (`by`). The API reads the top
-- `leaderboard_size` rows of one ranking by its primary key instead of ranking 1M positions or a
-- window's raw trades per request (0.5-8 s on 10M trades). Trader `all` is average-cost PnL at the
-- refresh's spot prices (the positions endpoints' rule); the windows are cash flow in the window.

DELETE FROM agg.leaderboard_traders;
DELETE FROM agg.leaderboard_creators;
DELETE FROM agg.refreshes WHERE name IN ('leaderboard_traders', 'leaderboard_creators');

ALTER TABLE agg.leaderboard_traders DROP CONSTRAINT leaderboard_traders_pkey,
    DROP CONSTRAINT leaderboard_traders_window_check,
    ADD CONSTRAINT leaderboard_traders_window_check CHECK ("window" IN ('24h', '7d', '30d', 'all')),
    ADD COLUMN "by" text NOT NULL CHECK ("by" IN ('pnl', 'volume')),
    ADD PRIMARY KEY (chain_id, "window", "by", rank);

ALTER TABLE agg.leaderboard_creators DROP CONSTRAINT leaderboard_creators_pkey,
    DROP CONSTRAINT leaderboard_creators_window_check,
    ADD CONSTRAINT leaderboard_creators_window_check CHECK ("window" IN ('24h', '7d', '30d', 'all')),
    ADD COLUMN "by" text NOT NULL CHECK ("by" IN ('holders', 'volume')),
    ADD PRIMARY KEY (chain_id, "window", "by", rank);

-- A position's average-cost PnL at the market's spot price: realized + value - cost, where value is
-- the payout once resolved and the spot value of the shares otherwise (the rule of
-- /v1/users/{address}/positions). One definition for the keeper's ranking and the API's live query.
CREATE FUNCTION agg.position_pnl(p idx.positions, m idx.markets) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p.realized_pnl + CASE
    WHEN p.yes_shares = 0 AND p.no_shares = 0 THEN 0
    WHEN m.resolved THEN (CASE m.outcome WHEN 1 THEN p.yes_shares WHEN 0 THEN p.no_shares
                           ELSE floor((p.yes_shares + p.no_shares) / 2) END) - p.yes_cost - p.no_cost
    ELSE floor((p.yes_shares * m.no_reserve + p.no_shares * m.yes_reserve) / (m.yes_reserve + m.no_reserve))
         - p.yes_cost - p.no_cost
  END
$$;
GRANT EXECUTE ON FUNCTION agg.position_pnl(idx.positions, idx.markets) TO analyst, api;

"""Recomputes the agg.* tables the API and analysts read (sql/011_agg.sql): one transaction per
refresh, the chain's rows replaced whole, so a reader sees the old ranking or the new one."""

from __future__ import annotations

import datetime as dt

import asyncpg

from keeper.store import connection

MARKET_STATS_SQL = """
INSERT INTO agg.market_stats_24h (chain_id, market_id, volume_24h, trades_24h, traders_24h, yes_price_change_24h,
                                  updated_at)
SELECT m.chain_id, m.market_id, coalesce(s.volume, 0), coalesce(s.trades, 0), coalesce(s.traders, 0),
       CASE WHEN p.yes_reserve IS NOT NULL THEN
           round(m.no_reserve / nullif(m.yes_reserve + m.no_reserve, 0)
                 - p.no_reserve / nullif(p.yes_reserve + p.no_reserve, 0), 6) END,
       $2
  FROM idx.markets m
  LEFT JOIN LATERAL (
        SELECT sum(t.collateral) AS volume, count(*) AS trades, count(DISTINCT t.trader) AS traders
          FROM idx.ev_trade t
         WHERE t.chain_id = m.chain_id AND t.market_id = m.market_id
           AND t.block_time > $2::timestamptz - interval '24 hours'
  ) s ON true
  LEFT JOIN LATERAL (
        SELECT t.yes_reserve, t.no_reserve FROM idx.ev_trade t
         WHERE t.chain_id = m.chain_id AND t.market_id = m.market_id
           AND t.block_time <= $2::timestamptz - interval '24 hours'
         ORDER BY t.block_number DESC, t.log_index DESC LIMIT 1
  ) p ON true
 WHERE m.chain_id = $1
"""

TRENDING_SQL = """
INSERT INTO agg.trending_markets (chain_id, rank, market_id, score, volume_24h, trades_24h, traders_24h, updated_at)
SELECT $1, row_number() OVER (ORDER BY score DESC, market_id), market_id, score, volume_24h, trades_24h, traders_24h, $2
  FROM (
        SELECT s.market_id, s.volume_24h + s.trades_24h * 1000000 + s.traders_24h * 5000000 AS score,
               s.volume_24h, s.trades_24h, s.traders_24h
          FROM agg.market_stats_24h s
          JOIN idx.markets m ON m.chain_id = s.chain_id AND m.market_id = s.market_id
         WHERE s.chain_id = $1 AND NOT m.resolved AND m.end_time > $2 AND s.trades_24h > 0
         ORDER BY score DESC, s.market_id
         LIMIT $3
  ) ranked
"""

# The windows come from each trader's day buckets (agg.trader_days, kept by triggers: sql/028) for
# the window's whole UTC days and from the raw trades and claims of its first, partial day; `all`
# ranks average-cost PnL from idx.positions. Each window is ranked both ways the API sorts, with the
# API's tie-breaks (sql/027).
TRADERS_SQL = """
WITH w(name, since) AS (
    VALUES ('24h', $2::timestamptz - interval '24 hours'), ('7d', $2::timestamptz - interval '7 days'),
           ('30d', $2::timestamptz - interval '30 days')
),
b AS (SELECT name, since, date_trunc('day', since, 'UTC') + interval '1 day' AS whole FROM w),
e AS (
    SELECT b.name, d.trader, d.cash, d.volume, d.trades
      FROM b JOIN agg.trader_days d ON d.chain_id = $1 AND d.day >= b.whole
    UNION ALL
    SELECT b.name, t.trader, CASE WHEN t.is_buy THEN -t.collateral ELSE t.collateral END, t.collateral, 1
      FROM b JOIN idx.ev_trade t ON t.chain_id = $1 AND t.block_time > b.since AND t.block_time < b.whole
    UNION ALL
    SELECT b.name, c.holder, c.payout, 0, 0
      FROM b JOIN idx.ev_winnings_claimed c ON c.chain_id = $1 AND c.block_time > b.since AND c.block_time < b.whole
),
windows AS (
    SELECT name, trader, sum(cash) AS pnl, sum(volume) AS volume, sum(trades) AS trades, NULL::bigint AS markets
      FROM e GROUP BY name, trader HAVING sum(trades) > 0
),
all_time AS (
    SELECT 'all' AS name, p.holder AS trader, sum(agg.position_pnl(p, m)) AS pnl, sum(p.bought + p.sold) AS volume,
           sum(p.trade_count) AS trades, count(*) AS markets
      FROM idx.positions p JOIN idx.markets m ON m.chain_id = p.chain_id AND m.market_id = p.market_id
     WHERE p.chain_id = $1
     GROUP BY p.holder
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY name ORDER BY pnl DESC, trader) AS by_pnl,
              row_number() OVER (PARTITION BY name ORDER BY volume DESC, trader) AS by_volume
      FROM (SELECT * FROM windows UNION ALL SELECT * FROM all_time) c
)
INSERT INTO agg.leaderboard_traders (chain_id, "window", "by", rank, trader, pnl, volume, trades, markets, updated_at)
SELECT $1, name, 'pnl', by_pnl, trader, pnl, volume, trades, markets, $2 FROM ranked WHERE by_pnl <= $3
UNION ALL
SELECT $1, name, 'volume', by_volume, trader, pnl, volume, trades, markets, $2 FROM ranked WHERE by_volume <= $3
"""

CREATORS_SQL = """
WITH w(name, since) AS (
    VALUES ('24h', $2::timestamptz - interval '24 hours'), ('7d', $2::timestamptz - interval '7 days'),
           ('30d', $2::timestamptz - interval '30 days')
),
windows AS (
    SELECT w.name, s.creator, sum(s.price) AS volume, count(*) AS trades
      FROM idx.ev_shares_traded s JOIN w ON s.block_time > w.since
     WHERE s.chain_id = $1 AND s.block_time > $2::timestamptz - interval '30 days' AND s.block_time <= $2::timestamptz
     GROUP BY w.name, s.creator
),
all_time AS (SELECT 'all' AS name, creator, volume, trade_count AS trades FROM idx.creators WHERE chain_id = $1),
ranked AS (
    SELECT v.*, coalesce(c.holder_count, 0) AS holders, coalesce(c.supply, 0) AS supply,
           coalesce(c.distributed_total, 0) AS distributed_total,
           row_number() OVER (PARTITION BY v.name ORDER BY v.volume DESC, v.creator) AS by_volume,
           row_number() OVER (PARTITION BY v.name ORDER BY coalesce(c.holder_count, 0) DESC, v.creator) AS by_holders
      FROM (SELECT * FROM windows UNION ALL SELECT * FROM all_time) v
      LEFT JOIN idx.creators c ON c.chain_id = $1 AND c.creator = v.creator
)
INSERT INTO agg.leaderboard_creators (chain_id, "window", "by", rank, creator, volume, trades, holder_count, supply,
                                      distributed_total, updated_at)
SELECT $1, name, 'volume', by_volume, creator, volume, trades, holders, supply, distributed_total, $2
  FROM ranked WHERE by_volume <= $3
UNION ALL
SELECT $1, name, 'holders', by_holders, creator, volume, trades, holders, supply, distributed_total, $2
  FROM ranked WHERE by_holders <= $3
"""

TABLES = ("market_stats_24h", "trending_markets", "leaderboard_traders", "leaderboard_creators")


async def refresh_aggregates(
    pool: asyncpg.Pool, chain_id: int, leaderboard_size: int, trending_size: int, now: dt.datetime | None = None
) -> dict[str, int]:
    """Replaces the chain's rows of every agg table in one transaction; returns rows per table."""
    now = now or dt.datetime.now(dt.UTC)
    counts: dict[str, int] = {}
    async with connection(pool) as conn, conn.transaction():
        for table in TABLES:
            await conn.execute(f"DELETE FROM agg.{table} WHERE chain_id = $1", chain_id)
        counts["market_stats_24h"] = _n(await conn.execute(MARKET_STATS_SQL, chain_id, now))
        counts["trending_markets"] = _n(await conn.execute(TRENDING_SQL, chain_id, now, trending_size))
        counts["leaderboard_traders"] = _n(await conn.execute(TRADERS_SQL, chain_id, now, leaderboard_size))
        counts["leaderboard_creators"] = _n(await conn.execute(CREATORS_SQL, chain_id, now, leaderboard_size))
        await conn.executemany(
            """
            INSERT INTO agg.refreshes (chain_id, name, refreshed_at, rows) VALUES ($1, $2, $3, $4)
            ON CONFLICT (chain_id, name) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at, rows = EXCLUDED.rows
            """,
            [(chain_id, name, now, n) for name, n in counts.items()],
        )
    return counts


def _n(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])

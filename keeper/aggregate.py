"""Recomputes the agg.* tables the API and analysts read (sql/011_agg.sql): one transaction per
refresh, the chain's rows replaced whole, so a reader sees the old ranking or the new one."""

from __future__ import annotations

import datetime as dt

import asyncpg

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

TRADERS_SQL = """
WITH w(name, since) AS (
    VALUES ('24h', $2::timestamptz - interval '24 hours'), ('7d', $2::timestamptz - interval '7 days'),
           ('all', '-infinity'::timestamptz)
),
flows AS (
    SELECT w.name, t.trader,
           sum(CASE WHEN t.is_buy THEN -t.collateral ELSE t.collateral END) AS pnl,
           sum(t.collateral) AS volume, count(*) AS trades, count(DISTINCT t.market_id) AS markets
      FROM w JOIN idx.ev_trade t ON t.chain_id = $1 AND t.block_time > w.since AND t.block_time <= $2::timestamptz
     GROUP BY w.name, t.trader
),
claims AS (
    SELECT w.name, c.holder AS trader, sum(c.payout) AS payout
      FROM w JOIN idx.ev_winnings_claimed c
        ON c.chain_id = $1 AND c.block_time > w.since AND c.block_time <= $2::timestamptz
     GROUP BY w.name, c.holder
),
combined AS (
    SELECT coalesce(f.name, c.name) AS name, coalesce(f.trader, c.trader) AS trader,
           coalesce(f.pnl, 0) + coalesce(c.payout, 0) AS pnl, coalesce(f.volume, 0) AS volume,
           coalesce(f.trades, 0) AS trades, coalesce(f.markets, 0) AS markets
      FROM flows f FULL JOIN claims c ON c.name = f.name AND c.trader = f.trader
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY name ORDER BY pnl DESC, volume DESC, trader) AS rank FROM combined
)
INSERT INTO agg.leaderboard_traders (chain_id, "window", rank, trader, pnl, volume, trades, markets, updated_at)
SELECT $1, name, rank, trader, pnl, volume, trades, markets, $2 FROM ranked WHERE rank <= $3
"""

CREATORS_SQL = """
WITH w(name, since) AS (
    VALUES ('24h', $2::timestamptz - interval '24 hours'), ('7d', $2::timestamptz - interval '7 days'),
           ('all', '-infinity'::timestamptz)
),
vol AS (
    SELECT w.name, s.creator, sum(s.price) AS volume, count(*) AS trades
      FROM w JOIN idx.ev_shares_traded s
        ON s.chain_id = $1 AND s.block_time > w.since AND s.block_time <= $2::timestamptz
     GROUP BY w.name, s.creator
),
ranked AS (
    SELECT v.*, row_number() OVER (PARTITION BY v.name ORDER BY v.volume DESC, v.trades DESC, v.creator) AS rank
      FROM vol v
)
INSERT INTO agg.leaderboard_creators (chain_id, "window", rank, creator, volume, trades, holder_count, supply,
                                      distributed_total, updated_at)
SELECT $1, r.name, r.rank, r.creator, r.volume, r.trades, coalesce(c.holder_count, 0), coalesce(c.supply, 0),
       coalesce(c.distributed_total, 0), $2
  FROM ranked r LEFT JOIN idx.creators c ON c.chain_id = $1 AND c.creator = r.creator
 WHERE r.rank <= $3
"""

TABLES = ("market_stats_24h", "trending_markets", "leaderboard_traders", "leaderboard_creators")


async def refresh_aggregates(
    pool: asyncpg.Pool, chain_id: int, leaderboard_size: int, trending_size: int, now: dt.datetime | None = None
) -> dict[str, int]:
    """Replaces the chain's rows of every agg table in one transaction; returns rows per table."""
    now = now or dt.datetime.now(dt.UTC)
    counts: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction():
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

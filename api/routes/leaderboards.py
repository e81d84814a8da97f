"""/v1/leaderboards/traders and /v1/leaderboards/creators, and /v1/stats (the seed's business metrics).

Trader PnL by window: `all` is realized + unrealized PnL from idx.positions at spot prices (the
same rules as /users/{address}/positions); a time window uses the cash flow inside the window
(sell proceeds + winnings claimed − buy cost), since average-cost PnL is not defined per window.

Leaderboards are the keeper's rankings (agg.leaderboard_*, sql/027: the top `leaderboard_size` of
every window and order, refreshed every aggregate run), served whatever their age with
`meta.refreshedAt`; a chain the keeper has never ranked is ranked live by the same rules: its top
`api.leaderboard_size`, computed once per (board, order, window) and kept (api/rankings.py), every
page a slice of it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from api.context import Ctx, Endpoint, fetch_freshness
from api.encode import hexs, iso, units
from api.outbox import covers
from api.params import Param, filters_hash, page_params
from api.routes.common import WINDOWS, agg_fresh, offset, page_meta
from api.schemas import ADDRESS, AMOUNT, INT, PAGE_META_PROPS, TIME, arr, enum, model, null, obj

WINDOW = Param("window", "enum", choices=("24h", "7d", "30d", "all"), default="all")

PNL_ALL_SQL = """
WITH p AS (
  SELECT p.holder, agg.position_pnl(p, m) AS pnl, p.bought + p.sold AS volume, p.trade_count
    FROM idx.positions p JOIN idx.markets m ON m.chain_id = p.chain_id AND m.market_id = p.market_id
   WHERE p.chain_id = $1
)
SELECT holder AS trader, sum(pnl) AS pnl, sum(volume) AS volume, sum(trade_count) AS trades
  FROM p GROUP BY holder ORDER BY {order} LIMIT $2
"""
WINDOW_SQL = """
WITH f AS (
  SELECT trader, CASE WHEN is_buy THEN -collateral ELSE collateral END AS cash, collateral AS volume, 1 AS trades
    FROM idx.ev_trade WHERE chain_id = $1 AND block_time >= now() - $3::interval
  UNION ALL
  SELECT holder, payout, 0, 0 FROM idx.ev_winnings_claimed WHERE chain_id = $1 AND block_time >= now() - $3::interval
)
SELECT trader, sum(cash) AS pnl, sum(volume) AS volume, sum(trades) AS trades
  FROM f GROUP BY trader HAVING sum(trades) > 0 ORDER BY {order} LIMIT $2
"""
AGG_TRADERS_SQL = """
SELECT trader, pnl, volume, trades, count(*) OVER () AS total
  FROM agg.leaderboard_traders WHERE chain_id = $1 AND "window" = $4 AND "by" = $5
 ORDER BY rank LIMIT $2 OFFSET $3
"""
TRADER_ORDER = {"pnl": "pnl DESC, trader", "volume": "volume DESC, trader"}


async def _agg_page(ctx: Ctx, sql: str, table: str, limit: int, off: int) -> tuple[Sequence[Any], int]:
    """A page of the keeper's ranking and the ranking's size (a page past its end too)."""
    w, by = ctx.params["window"], ctx.params["by"]
    rows = await ctx.conn.fetch(sql, ctx.chain_id, limit, off, w, by)
    if rows:
        return rows, int(rows[0]["total"])
    total = await ctx.conn.fetchval(
        f'SELECT count(*) FROM agg.{table} WHERE chain_id = $1 AND "window" = $2 AND "by" = $3', ctx.chain_id, w, by
    )
    return rows, int(total)


async def _live_page(ctx: Ctx, board: str, limit: int, off: int, sql: str, *args: Any) -> tuple[Sequence[Any], int]:
    """A page of the live ranking (the top `api.leaderboard_size`, api/rankings.py) and its size.
    The answer says the block the ranking was computed at, and is cached no longer than it is kept."""
    a = ctx.state.settings.api
    st = ctx.state
    cache = st.chains[ctx.chain].cache if ctx.chain is not None else st.cache

    pump = st.pump_of(ctx.chain_id)

    async def compute() -> tuple[dict[str, Any], Sequence[Any], bool]:
        st.metrics.live_rankings.labels(board).inc()
        mark = pump.mark()
        as_of, held_seq = await fetch_freshness(ctx.conn, ctx.chain_id, st.replica)  # the data is at least this new
        rows = await ctx.conn.fetch(sql, ctx.chain_id, a.leaderboard_size, *args)
        return as_of, rows, covers(mark, held_seq, as_of["blockNumber"])

    key = (board, ctx.chain_id, ctx.params["by"], ctx.params["window"])
    kept = await st.rankings.get(key, compute, a.db_answer_s, cache.all_generation, ctx.lease)
    ctx.as_of, ranking, covered = kept.value
    if not covered:
        # read on a replica that lacks writes this worker has invalidated for (a reorg): answered, not kept,
        # and not cached (review s20 hf: a removed trader stayed ranked for aggregate_cache_ttl_s)
        st.rankings.forget(key, kept)
        ctx.stale_at(time.time())
    else:
        ctx.stale_at(time.time() + kept.remaining_s())
    return ranking[off : off + limit], len(ranking)


async def traders(ctx: Ctx) -> dict[str, Any]:
    """Traders ranked by PnL or volume over a window."""
    limit, off = offset(ctx)
    order = TRADER_ORDER[ctx.params["by"]]
    w = ctx.params["window"]
    agg_at = await agg_fresh(ctx, "leaderboard_traders", any_age=True)
    if agg_at is not None:  # the keeper's ranking (same definitions), top N only
        rows, total = await _agg_page(ctx, AGG_TRADERS_SQL, "leaderboard_traders", limit, off)
    elif w == "all":
        rows, total = await _live_page(ctx, "traders", limit, off, PNL_ALL_SQL.format(order=order))
    else:
        rows, total = await _live_page(ctx, "traders", limit, off, WINDOW_SQL.format(order=order), WINDOWS[w])
    data = [
        {
            "rank": off + i + 1,
            "trader": hexs(r["trader"]),
            "pnl": units(r["pnl"]),
            "volume": units(r["volume"]),
            "trades": int(r["trades"]),
        }
        for i, r in enumerate(rows)
    ]
    return {
        "data": data,
        "meta": {
            **page_meta(int(ctx.params["page"]), limit, total),
            "by": ctx.params["by"],
            "window": w,
            "pnl": "average-cost" if w == "all" else "cash-flow",
            "source": "agg" if agg_at is not None else "live",
            "refreshedAt": iso(agg_at),
        },
    }


CREATORS_ALL_SQL = """
SELECT creator, holder_count AS holders, volume, trade_count AS trades
  FROM idx.creators WHERE chain_id = $1 ORDER BY {order} LIMIT $2
"""
CREATORS_WINDOW_SQL = """
SELECT s.creator, c.holder_count AS holders, sum(s.price) AS volume, count(*) AS trades
  FROM idx.ev_shares_traded s JOIN idx.creators c ON c.chain_id = s.chain_id AND c.creator = s.creator
 WHERE s.chain_id = $1 AND s.block_time >= now() - $3::interval
 GROUP BY s.creator, c.holder_count ORDER BY {order} LIMIT $2
"""
AGG_CREATORS_SQL = """
SELECT creator, holder_count AS holders, volume, trades, count(*) OVER () AS total
  FROM agg.leaderboard_creators WHERE chain_id = $1 AND "window" = $4 AND "by" = $5
 ORDER BY rank LIMIT $2 OFFSET $3
"""
CREATOR_ORDER = {"holders": "holders DESC, creator", "volume": "volume DESC, creator"}


async def creators(ctx: Ctx) -> dict[str, Any]:
    """Creators ranked by holders or share volume over a window."""
    limit, off = offset(ctx)
    order = CREATOR_ORDER[ctx.params["by"]]
    w = ctx.params["window"]
    agg_at = await agg_fresh(ctx, "leaderboard_creators", any_age=True)
    if agg_at is not None:
        rows, total = await _agg_page(ctx, AGG_CREATORS_SQL, "leaderboard_creators", limit, off)
    elif w == "all":
        rows, total = await _live_page(ctx, "creators", limit, off, CREATORS_ALL_SQL.format(order=order))
    else:
        rows, total = await _live_page(ctx, "creators", limit, off, CREATORS_WINDOW_SQL.format(order=order), WINDOWS[w])
    data = [
        {
            "rank": off + i + 1,
            "creator": hexs(r["creator"]),
            "holders": r["holders"],
            "volume": units(r["volume"]),
            "trades": int(r["trades"]),
        }
        for i, r in enumerate(rows)
    ]
    return {
        "data": data,
        "meta": {
            **page_meta(int(ctx.params["page"]), limit, total),
            "by": ctx.params["by"],
            "window": w,
            "source": "agg" if agg_at is not None else "live",
            "refreshedAt": iso(agg_at),
        },
    }


# Everything comes from tables that triggers keep in step with the raw events (sql/025, sql/026):
# a window starting at minute $2 sums the whole hours from $3 (the first hour boundary at or after
# $2) and the minutes in [$2, $3) — at most ~800 rows for 30 days; `all` sums the hours only.
STATS_SQL = """
WITH p AS (
  SELECT trades, volume, fees, share_trades, share_volume, markets_created, markets_resolved, dividends_distributed
    FROM agg.platform_hours WHERE chain_id = $1 AND hour >= $3
  UNION ALL
  SELECT trades, volume, fees, share_trades, share_volume, markets_created, markets_resolved, dividends_distributed
    FROM agg.platform_minutes WHERE chain_id = $1 AND minute >= $2 AND minute < $3),
a AS (
  SELECT users FROM agg.active_hours WHERE chain_id = $1 AND hour >= $3
  UNION ALL
  SELECT users FROM agg.active_minutes WHERE chain_id = $1 AND minute >= $2 AND minute < $3)
SELECT coalesce(sum(trades), 0)::bigint AS trades, coalesce(sum(volume), 0) AS volume,
       coalesce(sum(fees), 0) AS fees, coalesce(sum(share_trades), 0)::bigint AS share_trades,
       coalesce(sum(share_volume), 0) AS share_volume, coalesce(sum(markets_created), 0)::bigint AS markets_created,
       coalesce(sum(markets_resolved), 0)::bigint AS markets_resolved,
       coalesce(sum(dividends_distributed), 0) AS dividends_distributed,
  (SELECT coalesce(sum(users), 0)::bigint FROM a) AS active_users,
  (SELECT coalesce(sum(markets_created), 0)::bigint FROM agg.platform_hours WHERE chain_id = $1) AS markets_total,
  (SELECT count(*) FROM idx.markets WHERE chain_id = $1 AND NOT resolved AND end_time > now()) AS markets_open,
  (SELECT count(*) FROM idx.creators WHERE chain_id = $1) AS creators_total
  FROM p
"""
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def stats(ctx: Ctx) -> dict[str, Any]:
    """Platform statistics over a window: markets created, trades, active users, volume."""
    w = ctx.params["window"]
    since = EPOCH
    if w != "all":  # aligned to the minute: the window starts at the minute now - window falls in
        since = await ctx.conn.fetchval("SELECT date_trunc('minute', now() - $1::interval)", WINDOWS[w])
    since = since.astimezone(dt.UTC)  # hours are UTC hours (sql/026)
    hours_from = since.replace(minute=0) + (dt.timedelta(hours=1) if since.minute else dt.timedelta())
    r = await ctx.conn.fetchrow(STATS_SQL, ctx.chain_id, since, hours_from)
    assert r is not None
    return {
        "data": {
            "window": w,
            "marketsCreated": r["markets_created"],
            "marketsResolved": r["markets_resolved"],
            "trades": r["trades"],
            "volume": units(r["volume"]),
            "fees": units(r["fees"]),
            "shareTrades": r["share_trades"],
            "shareVolume": units(r["share_volume"]),
            "dividendsDistributed": units(r["dividends_distributed"]),
            "activeUsers": r["active_users"],
            "marketsTotal": r["markets_total"],
            "marketsOpen": r["markets_open"],
            "creatorsTotal": r["creators_total"],
        }
    }


BOARD_META = {
    **PAGE_META_PROPS,
    "window": enum("24h", "7d", "30d", "all"),
    "source": enum("agg", "live"),
    "refreshedAt": null(TIME),
}
TRADER_ROW = model("TraderRank", obj({"rank": INT, "trader": ADDRESS, "pnl": AMOUNT, "volume": AMOUNT, "trades": INT}))
CREATOR_ROW = model(
    "CreatorRank", obj({"rank": INT, "creator": ADDRESS, "holders": INT, "volume": AMOUNT, "trades": INT})
)
STATS = model(
    "Stats",
    obj(
        {
            "window": enum("24h", "7d", "30d", "all"),
            "marketsCreated": INT,
            "marketsResolved": INT,
            "trades": INT,
            "volume": AMOUNT,
            "fees": AMOUNT,
            "shareTrades": INT,
            "shareVolume": AMOUNT,
            "dividendsDistributed": AMOUNT,
            "activeUsers": INT,
            "marketsTotal": INT,
            "marketsOpen": INT,
            "creatorsTotal": INT,
        }
    ),
)


def _v(p: dict[str, Any]) -> str:
    return filters_hash(p, exclude=())


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/leaderboards/traders",
        traders,
        "Trader leaderboard",
        "leaderboards",
        (Param("by", "enum", choices=("pnl", "volume"), default="pnl"), WINDOW, *page_params()),
        cache=lambda p: ("leaderboard:traders", _v(p)),
        aggregate=True,
        paged="page",
        response=arr(TRADER_ROW),
        meta=obj({**BOARD_META, "by": enum("pnl", "volume"), "pnl": enum("average-cost", "cash-flow")}),
    ),
    Endpoint(
        "GET",
        "/v1/leaderboards/creators",
        creators,
        "Creator leaderboard",
        "leaderboards",
        (Param("by", "enum", choices=("holders", "volume"), default="holders"), WINDOW, *page_params()),
        cache=lambda p: ("leaderboard:creators", _v(p)),
        aggregate=True,
        paged="page",
        response=arr(CREATOR_ROW),
        meta=obj({**BOARD_META, "by": enum("holders", "volume")}),
    ),
    Endpoint(
        "GET",
        "/v1/stats",
        stats,
        "Platform statistics",
        "stats",
        (WINDOW,),
        cache=lambda p: ("stats", _v(p)),
        aggregate=True,
        response=STATS,
    ),
]

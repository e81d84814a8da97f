"""/v1/markets: list, trending, batch prices, detail, trades, price history, candles, holders.

Every query binds its values; sort/filter names map to SQL fragments from the whitelists below.
24-hour figures come straight from idx.ev_trade (index on block_time), which is exact and needs no
aggregation job.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, Decimal
from typing import Any

from api.context import Ctx, Endpoint
from api.encode import iso, ratio, units
from api.errors import FieldError, ValidationFailed, not_found
from api.params import Param, cursor_params, filters_hash, page_params
from api.routes.common import (
    MARKET,
    MARKET_COLS,
    MARKET_DETAIL,
    TRADE,
    TRADE_COLS,
    agg_fresh,
    cursor_key,
    cursor_page,
    market_json,
    market_status,
    offset,
    page_meta,
    trade_json,
)
from api.schemas import (
    ADDRESS,
    AMOUNT,
    INT,
    MARKET_STATUS,
    PAGE_META_PROPS,
    RATIO,
    TIME,
    arr,
    enum,
    model,
    null,
    obj,
)

MARKET_ID = Param("id", "int", where="path", required=True, minimum=0, maximum=10**18, description="market id")
STATUSES = ("active", "closed", "proposed", "disputed", "resolved")
SORTS = {
    "createdAt": "m.created_block {d}, m.market_id {d}",
    "endDate": "m.end_time {d}, m.market_id {d}",
    "volume": "m.volume {d}, m.market_id {d}",
    "volume24h": "coalesce(s.volume24h, 0) {d}, m.market_id {d}",
    "trades24h": "coalesce(s.trades24h, 0) {d}, m.market_id {d}",
    "liquidity": "(2 * m.yes_reserve * m.no_reserve / nullif(m.yes_reserve + m.no_reserve, 0)) {d} NULLS LAST, "
    "m.market_id {d}",
    "yesPrice": "(m.no_reserve / nullif(m.yes_reserve + m.no_reserve, 0)) {d} NULLS LAST, m.market_id {d}",
}
FILTER_KEYS = (
    Param("category", "str", max_length=64),
    Param("status", "enum", choices=STATUSES),
    Param("creator", "address"),
)
LIST_PARAMS = (
    *page_params(),
    Param(
        "sort",
        "sort",
        default=("createdAt", "desc"),
        choices=tuple(SORTS),
        max_length=40,
        description="FIELD:asc|desc; FIELD one of " + ", ".join(SORTS),
    ),
    Param(
        "filter",
        "filter",
        filters=FILTER_KEYS,
        max_length=300,
        description="the seed's KEY:VALUE[,KEY:VALUE] with KEY in category, status, creator",
    ),
    Param("category", "str", max_length=64),
    Param("status", "enum", choices=STATUSES),
    Param("creator", "address"),
    Param("q", "str", max_length=100, description="case-insensitive text search in the question"),
    Param("endingBefore", "time"),
    Param("endingAfter", "time"),
)

# The first block of the last 24 hours, found with one probe of the block_time index; per-market
# windows then use the (market_id, block_number) index instead of scanning every recent trade.
CUT_24H = """(SELECT coalesce((SELECT block_number FROM idx.ev_trade
                        WHERE chain_id = $1 AND block_time >= now() - interval '24 hours'
                        ORDER BY block_time LIMIT 1), 9223372036854775807))"""
STATS24_SQL = f"""
SELECT ids.market_id, s.volume24h, s.trades24h
  FROM unnest($2::bigint[]) AS ids(market_id),
       LATERAL (SELECT coalesce(sum(t.collateral), 0) AS volume24h, count(*) AS trades24h
                  FROM idx.ev_trade t
                 WHERE t.chain_id = $1 AND t.market_id = ids.market_id AND t.block_number >= {CUT_24H}) s
"""


def _filters(ctx: Ctx) -> dict[str, Any]:
    """category, status and creator, from their own parameters and `filter` (ValidationFailed on a conflict)."""
    p = ctx.params
    f = dict(p["filter"] or {})
    for key in ("category", "status", "creator"):
        if p[key] is not None:
            if key in f and f[key] != p[key]:
                raise ValidationFailed([FieldError(key, f"conflicts with filter={key}:...")])
            f[key] = p[key]
    return f


def _where(ctx: Ctx, args: list[Any], status: bool = True) -> str:
    """The list's WHERE clause, its values appended to `args`; without the status filter if not `status`."""
    p = ctx.params
    f = _filters(ctx)
    args.append(ctx.chain_id)
    clauses = ["m.chain_id = $1"]

    def bind(v: Any) -> str:
        args.append(v)
        return f"${len(args)}"

    if "category" in f:
        clauses.append(f"m.category = {bind(f['category'])}")
    if "creator" in f:
        clauses.append(f"m.creator = {bind(f['creator'])}")
    kind = f.get("status") if status else None
    if kind == "active":
        clauses.append("NOT m.resolved AND m.end_time > now()")
    elif kind == "closed":
        clauses.append("NOT m.resolved AND m.status = 'open' AND m.end_time <= now()")
    elif kind in ("proposed", "disputed"):
        clauses.append(f"m.status = {bind(kind)}")
    elif kind == "resolved":
        clauses.append("m.resolved")
    if p["q"]:
        pattern = "%" + p["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append(f"m.question ILIKE {bind(pattern)}")
    if p["endingBefore"] is not None:
        clauses.append(f"m.end_time < {bind(p['endingBefore'])}")
    if p["endingAfter"] is not None:
        clauses.append(f"m.end_time > {bind(p['endingAfter'])}")
    return " AND ".join(clauses)


async def _stale_at_next_end(ctx: Ctx) -> None:
    """A list filtered on active or closed changes when any market it could hold ends, with no chain
    event: the answer is stale from the next such end, whether or not this page shows that market
    (review s20 ha: `status=closed`, or `status=active` page 1 with the ending market on page 2, stayed
    cached for cache_ttl_s)."""
    args: list[Any] = []
    where = _where(ctx, args, status=False)
    nxt = await ctx.conn.fetchval(
        f"SELECT min(m.end_time) FROM idx.markets m WHERE {where} AND NOT m.resolved AND m.end_time > now()", *args
    )
    if nxt is not None:
        ctx.stale_at(nxt.timestamp())


async def _stats24(ctx: Ctx, ids: list[int]) -> dict[int, tuple[int, int]]:
    if not ids:
        return {}
    rows = await ctx.conn.fetch(STATS24_SQL, ctx.chain_id, ids)
    return {r["market_id"]: (int(r["volume24h"]), int(r["trades24h"])) for r in rows}


def _with24(m: dict[str, Any], s: tuple[int, int] | None) -> dict[str, Any]:
    v, t = s or (0, 0)
    m["volume24h"] = units(v)
    m["trades24h"] = t
    return m


async def list_markets(ctx: Ctx) -> dict[str, Any]:
    """Markets with the seed's page/limit/sort/filter and its meta block."""
    args: list[Any] = []
    where = _where(ctx, args)
    field, direction = ctx.params["sort"]
    order = SORTS[field].format(d=direction.upper())
    limit, off = offset(ctx)
    stats_join = ""
    sort_source = "live"
    agg_at = await agg_fresh(ctx, "market_stats_24h") if field in ("volume24h", "trades24h") else None
    if agg_at is not None:
        sort_source = "agg"
        # agg.market_stats_24h has a row for every market: an inner join lets the planner walk its
        # (volume_24h, market_id) index (sql/021) for the top of the ranking
        col = "volume_24h" if field == "volume24h" else "trades_24h"
        order = f"s.{col} {direction.upper()}, s.market_id {direction.upper()}"
        stats_join = """JOIN agg.market_stats_24h s ON s.chain_id = m.chain_id AND s.market_id = m.market_id"""
    elif field in ("volume24h", "trades24h"):
        stats_join = """LEFT JOIN (SELECT market_id, sum(collateral) AS volume24h, count(*) AS trades24h
                                     FROM idx.ev_trade
                                    WHERE chain_id = $1 AND block_time >= now() - interval '24 hours'
                                    GROUP BY market_id) s ON s.market_id = m.market_id"""
    n = len(args)
    sql = f"""SELECT {MARKET_COLS} FROM idx.markets m {stats_join}
               WHERE {where} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}"""

    rows = await ctx.conn.fetch(sql, *args, limit, off)
    total = await ctx.conn.fetchval(f"SELECT count(*) FROM idx.markets m WHERE {where}", *args)  # the seed's meta.total
    if _filters(ctx).get("status") in ("active", "closed"):
        await _stale_at_next_end(ctx)
    stats = await _stats24(ctx, [r["market_id"] for r in rows])
    data = [_with24(market_json(ctx, r), stats.get(r["market_id"])) for r in rows]
    meta = page_meta(int(ctx.params["page"]), limit, int(total))
    if field in ("volume24h", "trades24h"):
        meta["sortSource"] = sort_source  # agg: ranked by the keeper's 24 h table (values shown are live)
        meta["sortRefreshedAt"] = iso(agg_at)
    return {"data": data, "meta": meta}


MARKET_SQL = f"SELECT {MARKET_COLS} FROM idx.markets m WHERE m.chain_id = $1 AND m.market_id = $2"
PRICE_24H_AGO_SQL = f"""
SELECT coalesce(
  (SELECT no_reserve / (yes_reserve + no_reserve) FROM idx.ev_trade
    WHERE chain_id = $1 AND market_id = $2 AND block_number < {CUT_24H}
    ORDER BY block_number DESC, log_index DESC LIMIT 1),
  (SELECT no_reserve / (yes_reserve + no_reserve) FROM idx.ev_market_created
    WHERE chain_id = $1 AND market_id = $2 AND block_time < now() - interval '24 hours'))
"""


async def _market(ctx: Ctx) -> Any:
    r = await ctx.conn.fetchrow(MARKET_SQL, ctx.chain_id, ctx.params["id"])
    if r is None:
        raise not_found("market", "id")
    return r


async def get_market(ctx: Ctx) -> dict[str, Any]:
    """One market with 24-hour volume, trade count and price change."""
    r = await _market(ctx)
    stats = await _stats24(ctx, [r["market_id"]])
    m = _with24(market_json(ctx, r), stats.get(r["market_id"]))
    ago = await ctx.conn.fetchval(PRICE_24H_AGO_SQL, ctx.chain_id, r["market_id"])
    m["yesPrice24hAgo"] = None if ago is None else f"{Decimal(ago).quantize(Decimal('0.000001'), ROUND_DOWN):f}"
    return {"data": m}


TRADE_SIDES = ("buy", "sell")
TRADES_PARAMS = (
    MARKET_ID,
    *cursor_params(),
    Param("trader", "address"),
    Param("side", "enum", choices=TRADE_SIDES),
    Param("outcome", "enum", choices=("yes", "no")),
)


async def market_trades(ctx: Ctx) -> dict[str, Any]:
    """A market's trades, newest first, cursor-paginated."""
    await _market(ctx)
    return await _trades(ctx, ctx.params["id"])


async def recent_trades(ctx: Ctx) -> dict[str, Any]:
    """Recent trades across every market (or one, with `market`), newest first, cursor-paginated."""
    return await _trades(ctx, ctx.params["market"])


async def _trades(ctx: Ctx, market_id: int | None) -> dict[str, Any]:
    p = ctx.params
    args: list[Any] = [ctx.chain_id]
    clauses = ["t.chain_id = $1"]
    key = cursor_key(ctx)
    if key is not None:
        args += [int(key[0]), int(key[1])]
        clauses.append("(t.block_number, t.log_index) < ($2, $3)")
    if market_id is not None:
        args.append(market_id)
        clauses.append(f"t.market_id = ${len(args)}")
    if p["trader"] is not None:
        args.append(p["trader"])
        clauses.append(f"t.trader = ${len(args)}")
    if p["side"] is not None:
        args.append(p["side"] == "buy")
        clauses.append(f"t.is_buy = ${len(args)}")
    if p["outcome"] is not None:
        args.append(1 if p["outcome"] == "yes" else 0)
        clauses.append(f"t.outcome = ${len(args)}")
    limit = int(p["limit"])
    args.append(limit + 1)
    rows = await ctx.conn.fetch(
        f"""SELECT {TRADE_COLS} FROM idx.ev_trade t WHERE {" AND ".join(clauses)}
            ORDER BY t.block_number DESC, t.log_index DESC LIMIT ${len(args)}""",
        *args,
    )
    page, meta = cursor_page(ctx, rows, limit)
    return {"data": [trade_json(r) for r in page], "meta": meta}


RECENT_TRADES_PARAMS = (
    *cursor_params(),
    Param("market", "int", minimum=0, maximum=10**18, description="only this market's trades"),
    *TRADES_PARAMS[3:],
)

HISTORY_PARAMS = (
    MARKET_ID,
    *cursor_params(max_limit=1000, default_limit=500),
    Param("from", "time"),
    Param("to", "time"),
)


async def price_history(ctx: Ctx) -> dict[str, Any]:
    """Every price point (one per trade, after it), oldest first, cursor-paginated."""
    m = await _market(ctx)
    p = ctx.params
    args: list[Any] = [ctx.chain_id, p["id"]]
    clauses = ["chain_id = $1", "market_id = $2"]
    key = cursor_key(ctx)
    if key is not None:
        args += [int(key[0]), int(key[1])]
        clauses.append("(block_number, log_index) > ($3, $4)")
    if p["from"] is not None or p["to"] is not None:
        far = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
        frm, to = p["from"] or dt.datetime(1970, 1, 1, tzinfo=dt.UTC), p["to"] or far
        blocks = await ctx.conn.fetchrow(BLOCK_RANGE_SQL, ctx.chain_id, frm, to)
        assert blocks is not None
        args += [frm, to, blocks["lo"], blocks["hi"]]
        n = len(args)
        clauses.append(f"block_time >= ${n - 3} AND block_time < ${n - 2} AND block_number BETWEEN ${n - 1} AND ${n}")
    limit = int(p["limit"])
    args.append(limit + 1)
    rows = await ctx.conn.fetch(
        f"""SELECT block_number, log_index, block_time, yes_reserve, no_reserve FROM idx.ev_trade
             WHERE {" AND ".join(clauses)} ORDER BY block_number, log_index LIMIT ${len(args)}""",
        *args,
    )
    page, meta = cursor_page(ctx, rows, limit)
    points = []
    if key is None and (p["from"] is None or m["created_time"] >= p["from"]):
        created = await ctx.conn.fetchrow(
            "SELECT yes_reserve, no_reserve FROM idx.ev_market_created WHERE chain_id = $1 AND market_id = $2",
            ctx.chain_id,
            p["id"],
        )
        if created is not None:
            y, n = int(created["yes_reserve"]), int(created["no_reserve"])
            points.append(
                {
                    "blockNumber": m["created_block"],
                    "logIndex": None,
                    "time": iso(m["created_time"]),
                    "yesPrice": ratio(n, y + n),
                    "noPrice": ratio(y, y + n),
                    "kind": "created",
                }
            )
    for r in page:
        y, n = int(r["yes_reserve"]), int(r["no_reserve"])
        points.append(
            {
                "blockNumber": r["block_number"],
                "logIndex": r["log_index"],
                "time": iso(r["block_time"]),
                "yesPrice": ratio(n, y + n),
                "noPrice": ratio(y, y + n),
                "kind": "trade",
            }
        )
    return {"data": points, "meta": meta}


INTERVALS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
MAX_BUCKETS = 1000
CANDLE_PARAMS = (
    MARKET_ID,
    Param("interval", "enum", choices=tuple(INTERVALS), default="1h"),
    Param("from", "time", description="default: 100 intervals before `to`"),
    Param("to", "time", description="default: now"),
    Param("outcome", "enum", choices=("yes", "no"), default="yes"),
)

CANDLES_SQL = """
WITH t AS (
  SELECT date_bin($3::interval, block_time, 'epoch') AS bucket, block_number, log_index,
         yes_reserve, no_reserve, collateral
    FROM idx.ev_trade
   WHERE chain_id = $1 AND market_id = $2 AND block_number BETWEEN $6 AND $7
     AND block_time >= $4 AND block_time < $5
)
SELECT bucket,
       (array_agg(yes_reserve ORDER BY block_number, log_index))[1] AS open_y,
       (array_agg(no_reserve ORDER BY block_number, log_index))[1] AS open_n,
       (array_agg(yes_reserve ORDER BY block_number DESC, log_index DESC))[1] AS close_y,
       (array_agg(no_reserve ORDER BY block_number DESC, log_index DESC))[1] AS close_n,
       max(no_reserve / (yes_reserve + no_reserve)) AS hi, min(no_reserve / (yes_reserve + no_reserve)) AS lo,
       sum(collateral) AS volume, count(*) AS trades
  FROM t GROUP BY bucket ORDER BY bucket
"""
BEFORE_SQL = """
SELECT yes_reserve, no_reserve FROM idx.ev_trade
 WHERE chain_id = $1 AND market_id = $2 AND block_number < $3
 ORDER BY block_number DESC, log_index DESC LIMIT 1
"""
# A time window as a block range, from two probes of the block_time index over every market's
# trades: exact (block time never decreases with the block number) and lets the per-market
# (market_id, block_number) index read only the window's rows instead of the market's whole history.
BLOCK_RANGE_SQL = """
SELECT coalesce((SELECT block_number FROM idx.ev_trade WHERE chain_id = $1 AND block_time >= $2
                  ORDER BY block_time LIMIT 1), 9223372036854775807) AS lo,
       coalesce((SELECT block_number FROM idx.ev_trade WHERE chain_id = $1 AND block_time < $3
                  ORDER BY block_time DESC LIMIT 1), -1) AS hi
"""

_Q = Decimal("0.000001")


def _p(v: Decimal, outcome: str) -> str:
    x = v if outcome == "yes" else 1 - v
    return f"{x.quantize(_Q, ROUND_DOWN):f}"


def bucket_range(start: dt.datetime, end: dt.datetime, step: int) -> list[dt.datetime]:
    """Bucket starts (aligned to the unix epoch) covering [start, end] — pure."""
    s = int(start.timestamp()) // step * step
    e = int(end.timestamp()) // step * step
    return [dt.datetime.fromtimestamp(t, dt.UTC) for t in range(s, e + 1, step)]


def fill_candles(
    buckets: list[dt.datetime], rows: dict[dt.datetime, Any], opening: Decimal | None, outcome: str
) -> list[dict[str, Any]]:
    """OHLC per bucket; an empty bucket repeats the previous close with zero volume (pure)."""
    out: list[dict[str, Any]] = []
    last = opening
    for b in buckets:
        r = rows.get(b)
        if r is None:
            if last is None:
                continue  # before the market existed
            p = _p(last, outcome)
            out.append({"time": iso(b), "open": p, "high": p, "low": p, "close": p, "volume": "0.000000", "trades": 0})
            continue
        o = Decimal(int(r["open_n"])) / Decimal(int(r["open_y"]) + int(r["open_n"]))
        c = Decimal(int(r["close_n"])) / Decimal(int(r["close_y"]) + int(r["close_n"]))
        hi, lo = Decimal(r["hi"]), Decimal(r["lo"])
        if outcome == "no":
            hi, lo = lo, hi
        out.append(
            {
                "time": iso(b),
                "open": _p(o, outcome),
                "high": _p(hi, outcome),
                "low": _p(lo, outcome),
                "close": _p(c, outcome),
                "volume": units(r["volume"]),
                "trades": r["trades"],
            }
        )
        last = c
    return out


def candle_window(ctx: Ctx, step: int) -> tuple[dt.datetime, dt.datetime]:
    p = ctx.params
    end = p["to"] or dt.datetime.now(dt.UTC)
    try:
        start = p["from"] or end - dt.timedelta(seconds=step * 99)
        end + dt.timedelta(seconds=step)  # the last bucket's end must exist too
    except OverflowError:
        raise ValidationFailed([FieldError("to", "too close to the start or end of the calendar")]) from None
    if start > end:
        raise ValidationFailed([FieldError("from", "must not be after `to`")])
    if (end - start).total_seconds() / step >= MAX_BUCKETS:
        raise ValidationFailed([FieldError("from", f"at most {MAX_BUCKETS} buckets per request; narrow from/to")])
    return start, end


async def market_candles(ctx: Ctx) -> dict[str, Any]:
    """OHLC candles of an outcome's price; empty buckets carry the previous close forward."""
    m = await _market(ctx)
    step = INTERVALS[ctx.params["interval"]]
    start, end = candle_window(ctx, step)
    buckets = bucket_range(start, end, step)
    lo, hi = buckets[0], buckets[-1] + dt.timedelta(seconds=step)
    blocks = await ctx.conn.fetchrow(BLOCK_RANGE_SQL, ctx.chain_id, lo, hi)
    assert blocks is not None
    rows = await ctx.conn.fetch(
        CANDLES_SQL, ctx.chain_id, ctx.params["id"], dt.timedelta(seconds=step), lo, hi, blocks["lo"], blocks["hi"]
    )
    opening: Decimal | None = None
    before = await ctx.conn.fetchrow(BEFORE_SQL, ctx.chain_id, ctx.params["id"], blocks["lo"])
    if before is not None:
        opening = Decimal(int(before["no_reserve"])) / Decimal(int(before["yes_reserve"]) + int(before["no_reserve"]))
    else:
        created = await ctx.conn.fetchrow(
            "SELECT yes_reserve, no_reserve, block_time FROM idx.ev_market_created"
            " WHERE chain_id = $1 AND market_id = $2",
            ctx.chain_id,
            ctx.params["id"],
        )
        if created is not None and created["block_time"] < lo:
            opening = Decimal(int(created["no_reserve"])) / Decimal(
                int(created["yes_reserve"]) + int(created["no_reserve"])
            )
        elif created is not None:
            # buckets before creation are skipped; the creation bucket opens at the creation price
            buckets = [b for b in buckets if b + dt.timedelta(seconds=step) > created["block_time"]]
            opening = Decimal(int(created["no_reserve"])) / Decimal(
                int(created["yes_reserve"]) + int(created["no_reserve"])
            )
    del m
    by_bucket = {r["bucket"]: r for r in rows}
    return {
        "data": fill_candles(buckets, by_bucket, opening, ctx.params["outcome"]),
        "meta": {"interval": ctx.params["interval"], "outcome": ctx.params["outcome"], "from": iso(lo), "to": iso(hi)},
    }


HOLDERS_PARAMS = (MARKET_ID, Param("outcome", "enum", choices=("yes", "no"), default="yes"), *page_params())


async def market_holders(ctx: Ctx) -> dict[str, Any]:
    """Holders of one outcome, largest first."""
    await _market(ctx)
    col = "yes_shares" if ctx.params["outcome"] == "yes" else "no_shares"
    cost = "yes_cost" if ctx.params["outcome"] == "yes" else "no_cost"
    limit, off = offset(ctx)
    rows = await ctx.conn.fetch(
        f"""SELECT holder, {col} AS shares, {cost} AS cost FROM idx.positions
             WHERE chain_id = $1 AND market_id = $2 AND {col} > 0
             ORDER BY {col} DESC, holder LIMIT $3 OFFSET $4""",
        ctx.chain_id,
        ctx.params["id"],
        limit,
        off,
    )
    total = await ctx.conn.fetchval(
        f"SELECT count(*) FROM idx.positions WHERE chain_id = $1 AND market_id = $2 AND {col} > 0",
        ctx.chain_id,
        ctx.params["id"],
    )
    data = [
        {
            "holder": "0x" + bytes(r["holder"]).hex(),
            "outcome": ctx.params["outcome"],
            "shares": units(r["shares"]),
            "costBasis": units(r["cost"]),
            "averagePrice": ratio(r["cost"], r["shares"]),
        }
        for r in rows
    ]
    return {"data": data, "meta": page_meta(int(ctx.params["page"]), limit, int(total))}


PRICES_SQL = """
SELECT market_id, yes_reserve, no_reserve, resolved, status, outcome, end_time, end_time > now() AS is_open
  FROM idx.markets WHERE chain_id = $1 AND market_id = ANY($2::bigint[])
"""


async def batch_prices(ctx: Ctx) -> dict[str, Any]:
    """Current prices of up to 100 markets at once."""
    ids: list[int] = ctx.params["ids"]
    rows = await ctx.conn.fetch(PRICES_SQL, ctx.chain_id, ids)
    found = {r["market_id"]: r for r in rows}
    data = []
    for i in ids:
        r = found.get(i)
        if r is None:
            continue
        y, n = int(r["yes_reserve"]), int(r["no_reserve"])
        data.append(
            {
                "id": i,
                "yesPrice": ratio(n, y + n),
                "noPrice": ratio(y, y + n),
                "status": market_status(ctx, r),
            }
        )
    return {"data": data, "meta": {"missing": [i for i in ids if i not in found]}}


TRENDING_SQL = f"""
SELECT {MARKET_COLS}, s.volume24h, s.trades24h
  FROM (SELECT market_id, sum(collateral) AS volume24h, count(*) AS trades24h, count(DISTINCT trader) AS traders
          FROM idx.ev_trade WHERE chain_id = $1 AND block_time >= now() - interval '24 hours'
         GROUP BY market_id) s
  JOIN idx.markets m ON m.chain_id = $1 AND m.market_id = s.market_id
 WHERE NOT m.resolved AND m.end_time > now()
 ORDER BY s.traders DESC, s.volume24h DESC, m.market_id DESC
 LIMIT $2
"""


AGG_TRENDING_SQL = f"""
SELECT {MARKET_COLS}, t.volume_24h AS volume24h, t.trades_24h AS trades24h, t.score
  FROM agg.trending_markets t
  JOIN idx.markets m ON m.chain_id = t.chain_id AND m.market_id = t.market_id
 WHERE t.chain_id = $1 AND NOT m.resolved AND m.end_time > now()
 ORDER BY t.rank
 LIMIT $2
"""


async def trending(ctx: Ctx) -> dict[str, Any]:
    """Trending open markets: the keeper's ranking (agg.trending_markets) when fresh, else live —
    most distinct traders, then volume, over the last 24 hours."""
    agg_at = await agg_fresh(ctx, "trending_markets")
    sql = AGG_TRENDING_SQL if agg_at is not None else TRENDING_SQL
    rows = await ctx.conn.fetch(sql, ctx.chain_id, int(ctx.params["limit"]))
    data = [_with24(market_json(ctx, r), (int(r["volume24h"]), int(r["trades24h"]))) for r in rows]
    return {"data": data, "meta": {"source": "agg" if agg_at is not None else "live", "refreshedAt": iso(agg_at)}}


SOURCE = enum("agg", "live")
LIST_META = obj(
    {**PAGE_META_PROPS, "sortSource": SOURCE, "sortRefreshedAt": null(TIME)},
    optional=("sortSource", "sortRefreshedAt"),
    description="sortSource/sortRefreshedAt only when sorted by volume24h or trades24h",
)
PRICE = model("MarketPrice", obj({"id": INT, "yesPrice": null(RATIO), "noPrice": null(RATIO), "status": MARKET_STATUS}))
PRICE_POINT = model(
    "PricePoint",
    obj(
        {
            "blockNumber": INT,
            "logIndex": null(INT),
            "time": TIME,
            "yesPrice": null(RATIO),
            "noPrice": null(RATIO),
            "kind": enum("created", "trade"),
        }
    ),
)
CANDLE = model(
    "Candle",
    obj({"time": TIME, "open": RATIO, "high": RATIO, "low": RATIO, "close": RATIO, "volume": AMOUNT, "trades": INT}),
)
HOLDER = model(
    "MarketHolder",
    obj(
        {
            "holder": ADDRESS,
            "outcome": enum("yes", "no"),
            "shares": AMOUNT,
            "costBasis": AMOUNT,
            "averagePrice": null(RATIO),
        }
    ),
)
WINDOW_META_PROPS = {"interval": enum(*INTERVALS), "from": TIME, "to": TIME}


def _variant(p: dict[str, Any]) -> str:
    return filters_hash(p, exclude=())


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/markets",
        list_markets,
        "List markets",
        "markets",
        LIST_PARAMS,
        cache=lambda p: ("markets:list", _variant(p)),
        paged="page",
        response=arr(MARKET),
        meta=LIST_META,
    ),
    Endpoint(
        "GET",
        "/v1/trades",
        recent_trades,
        "Recent trades across markets",
        "trades",
        RECENT_TRADES_PARAMS,
        paged="cursor",
        response=arr(TRADE),
    ),
    Endpoint(
        "GET",
        "/v1/markets/trending",
        trending,
        "Trending markets (24 h)",
        "markets",
        (Param("limit", "int", default=20, minimum=1, maximum=100),),
        cache=lambda p: ("markets:trending", _variant(p)),
        response=arr(MARKET),
        meta=obj({"source": SOURCE, "refreshedAt": null(TIME)}),
    ),
    Endpoint(
        "GET",
        "/v1/markets/prices",
        batch_prices,
        "Current prices of many markets",
        "markets",
        (
            Param(
                "ids",
                "ids",
                required=True,
                max_items=100,
                max_length=2000,
                description="comma-separated market ids (at most 100)",
            ),
        ),
        response=arr(PRICE),
        meta=obj({"missing": arr(INT)}, description="requested ids that are not markets"),
    ),
    Endpoint(
        "GET",
        "/v1/markets/{id}",
        get_market,
        "Market detail",
        "markets",
        (MARKET_ID,),
        cache=lambda p: (f"market:{p['id']}", "detail"),
        response=MARKET_DETAIL,
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/markets/{id}/trades",
        market_trades,
        "A market's trades",
        "markets",
        TRADES_PARAMS,
        cache=lambda p: (f"market:{p['id']}:trades", _variant(p)),
        paged="cursor",
        response=arr(TRADE),
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/markets/{id}/history",
        price_history,
        "Price history (one point per trade)",
        "markets",
        HISTORY_PARAMS,
        cache=lambda p: (f"market:{p['id']}", "history:" + _variant(p)),
        paged="cursor",
        response=arr(PRICE_POINT),
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/markets/{id}/candles",
        market_candles,
        "Price candles",
        "markets",
        CANDLE_PARAMS,
        cache=lambda p: (
            (f"market:{p['id']}", "candles:" + _variant(p))
            if p["to"] is not None
            else (
                f"market:{p['id']}",
                "candles-now:" + _variant(p) + ":" + str(int(dt.datetime.now(dt.UTC).timestamp()) // 60),
            )
        ),
        response=arr(CANDLE),
        meta=obj({**WINDOW_META_PROPS, "outcome": enum("yes", "no")}),
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/markets/{id}/holders",
        market_holders,
        "Holders per outcome",
        "markets",
        HOLDERS_PARAMS,
        cache=lambda p: (f"market:{p['id']}", "holders:" + _variant(p)),
        paged="page",
        response=arr(HOLDER),
        errors=(404,),
    ),
]

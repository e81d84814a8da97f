"""/v1/creators: list, detail, holders, trades, price candles, dividend history.

A creator's share price is the curve price of the next share, curve_unit · supply² (USDC base
units, before fees) — the CreatorShares contract's `buyPrice(creator, 1)` without fees.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from api.context import Ctx, Endpoint, Record
from api.encode import hexs, iso, units
from api.errors import not_found
from api.params import Param, cursor_params, filters_hash, page_params
from api.routes.common import (
    CLAIMABLE_SQL,
    WARMUP_COLS,
    WARMUP_PROPS,
    cursor_key,
    cursor_page,
    offset,
    page_meta,
    warmup_json,
)
from api.routes.markets import INTERVALS, WINDOW_META_PROPS, bucket_range, candle_window
from api.routes.users import curve_unit
from api.schemas import ADDRESS as ADDRESS_SCHEMA
from api.schemas import AMOUNT, CURSOR_META_PROPS, HASH, INT, SIDE, TIME, UINT, arr, model, null, obj

ADDRESS = Param("address", "address", where="path", required=True, description="creator address (any case)")
SORTS = {
    "holders": "c.holder_count {d}, c.creator {d}",
    "volume": "c.volume {d}, c.creator {d}",
    "supply": "c.supply {d}, c.creator {d}",
    "price": "c.supply {d}, c.creator {d}",
    "createdAt": "c.first_block {d}, c.creator {d}",
    "distributed": "c.distributed_total {d}, c.creator {d}",
}
CREATOR_COLS = """c.creator, c.supply, c.pending_supply, c.pool, c.market_fees_accrued, c.market_fees_folded,
       c.creator_fees, c.distributed_total,
       c.distribution_count, c.holder_count, c.volume, c.trade_count, c.first_block, c.updated_block,
       (SELECT count(*) FROM idx.markets m WHERE m.chain_id = c.chain_id AND m.creator = c.creator) AS markets"""


def pending_dividends(r: Record) -> int:
    """Not yet credited to holders: the pool (vesting) and the market fees accrued since the last fold."""
    return int(r["pool"]) + int(r["market_fees_accrued"]) - int(r["market_fees_folded"])


def creator_json(r: Record, unit: int) -> dict[str, Any]:
    s = int(r["supply"])
    return {
        "address": hexs(r["creator"]),
        "supply": str(s),
        # the warm-up: shares bought on day e earn from 00:00 UTC of day e+2 (as of the last fold)
        "earningSupply": str(s - int(r["pending_supply"])),
        "pendingSupply": str(int(r["pending_supply"])),
        "sharePrice": units(unit * s * s),
        "holders": r["holder_count"],
        "volume": units(r["volume"]),
        "trades": r["trade_count"],
        "pendingDividends": units(pending_dividends(r)),
        "distributedDividends": units(r["distributed_total"]),
        "distributions": r["distribution_count"],
        "creatorFeesUnclaimed": units(r["creator_fees"]),
        "markets": r["markets"],
        "firstBlock": r["first_block"],
        "updatedBlock": r["updated_block"],
    }


LIST_PARAMS = (
    *page_params(),
    Param(
        "sort",
        "sort",
        default=("holders", "desc"),
        choices=tuple(SORTS),
        max_length=40,
        description="FIELD:asc|desc; FIELD one of " + ", ".join(SORTS),
    ),
)


async def list_creators(ctx: Ctx) -> dict[str, Any]:
    """Creators with a share curve, sortable, with the seed's meta block."""
    unit = await curve_unit(ctx)
    field, direction = ctx.params["sort"]
    limit, off = offset(ctx)
    rows = await ctx.conn.fetch(
        f"""SELECT {CREATOR_COLS} FROM idx.creators c WHERE c.chain_id = $1
             ORDER BY {SORTS[field].format(d=direction.upper())} LIMIT $2 OFFSET $3""",
        ctx.chain_id,
        limit,
        off,
    )
    total = await ctx.conn.fetchval("SELECT count(*) FROM idx.creators WHERE chain_id = $1", ctx.chain_id)
    return {
        "data": [creator_json(r, unit) for r in rows],
        "meta": page_meta(int(ctx.params["page"]), limit, int(total)),
    }


async def _creator(ctx: Ctx) -> Record:
    r = await ctx.conn.fetchrow(
        f"SELECT {CREATOR_COLS} FROM idx.creators c WHERE c.chain_id = $1 AND c.creator = $2",
        ctx.chain_id,
        ctx.params["address"],
    )
    if r is None:
        raise not_found("creator", "address")
    return r


async def get_creator(ctx: Ctx) -> dict[str, Any]:
    """One creator: supply, price, holders, dividends, markets."""
    r = await _creator(ctx)
    d = creator_json(r, await curve_unit(ctx))
    mv = await ctx.conn.fetchval(
        "SELECT coalesce(sum(volume), 0) FROM idx.markets WHERE chain_id = $1 AND creator = $2",
        ctx.chain_id,
        ctx.params["address"],
    )
    d["marketVolume"] = units(mv)
    return {"data": d}


async def creator_holders(ctx: Ctx) -> dict[str, Any]:
    """Holders of a creator's shares, largest first."""
    await _creator(ctx)
    limit, off = offset(ctx)
    rows = await ctx.conn.fetch(
        f"""SELECT h.holder, h.shares, h.locked_until, {WARMUP_COLS},
                  {CLAIMABLE_SQL} AS claimable
             FROM idx.share_holdings h JOIN idx.creators c ON c.chain_id = h.chain_id AND c.creator = h.creator
            WHERE h.chain_id = $1 AND h.creator = $2 AND h.shares > 0
            ORDER BY h.shares DESC, h.holder LIMIT $3 OFFSET $4""",
        ctx.chain_id,
        ctx.params["address"],
        limit,
        off,
    )
    total = await ctx.conn.fetchval(
        "SELECT count(*) FROM idx.share_holdings WHERE chain_id = $1 AND creator = $2 AND shares > 0",
        ctx.chain_id,
        ctx.params["address"],
    )
    data = [
        {
            "holder": hexs(r["holder"]),
            "shares": str(int(r["shares"])),
            "claimableDividends": units(r["claimable"]),
            "lockedUntil": iso(dt.datetime.fromtimestamp(int(r["locked_until"]), dt.UTC))
            if r["locked_until"]
            else None,
            **warmup_json(r),
        }
        for r in rows
    ]
    return {"data": data, "meta": page_meta(int(ctx.params["page"]), limit, int(total))}


async def creator_trades(ctx: Ctx) -> dict[str, Any]:
    """Share trades of a creator's curve, newest first, cursor-paginated."""
    await _creator(ctx)
    key = cursor_key(ctx) or [2**62, 0]
    limit = int(ctx.params["limit"])
    rows = await ctx.conn.fetch(
        """SELECT block_number, log_index, block_hash, tx_hash, block_time, trader, is_buy, amount, price,
                  protocol_fee, creator_fee, dividend_fee, supply
             FROM idx.ev_shares_traded WHERE chain_id = $1 AND creator = $2 AND (block_number, log_index) < ($3, $4)
            ORDER BY block_number DESC, log_index DESC LIMIT $5""",
        ctx.chain_id,
        ctx.params["address"],
        int(key[0]),
        int(key[1]),
        limit + 1,
    )
    page, meta = cursor_page(ctx, rows, limit)
    data = [
        {
            "blockNumber": r["block_number"],
            "logIndex": r["log_index"],
            "blockHash": hexs(r["block_hash"]),
            "txHash": hexs(r["tx_hash"]),
            "time": iso(r["block_time"]),
            "trader": hexs(r["trader"]),
            "side": "buy" if r["is_buy"] else "sell",
            "shares": str(int(r["amount"])),
            "price": units(r["price"]),
            "protocolFee": units(r["protocol_fee"]),
            "creatorFee": units(r["creator_fee"]),
            "dividendFee": units(r["dividend_fee"]),
            "supplyAfter": str(int(r["supply"])),
        }
        for r in page
    ]
    return {"data": data, "meta": meta}


CANDLES_SQL = """
SELECT date_bin($3::interval, block_time, 'epoch') AS bucket,
       (array_agg(supply ORDER BY block_number, log_index))[1] AS open_s,
       (array_agg(supply ORDER BY block_number DESC, log_index DESC))[1] AS close_s,
       max(supply) AS hi, min(supply) AS lo, sum(price) AS volume, count(*) AS trades
  FROM idx.ev_shares_traded
 WHERE chain_id = $1 AND creator = $2 AND block_time >= $4 AND block_time < $5
 GROUP BY bucket ORDER BY bucket
"""
CANDLE_PARAMS = (
    ADDRESS,
    Param("interval", "enum", choices=tuple(INTERVALS), default="1h"),
    Param("from", "time"),
    Param("to", "time"),
)


async def creator_candles(ctx: Ctx) -> dict[str, Any]:
    """Candles of the next-share price (curve_unit · supply²) after each trade; gaps filled forward."""
    await _creator(ctx)
    unit = await curve_unit(ctx)
    step = INTERVALS[ctx.params["interval"]]
    start, end = candle_window(ctx, step)
    buckets = bucket_range(start, end, step)
    lo, hi = buckets[0], buckets[-1] + dt.timedelta(seconds=step)
    rows = {
        r["bucket"]: r
        for r in await ctx.conn.fetch(
            CANDLES_SQL, ctx.chain_id, ctx.params["address"], dt.timedelta(seconds=step), lo, hi
        )
    }
    before = await ctx.conn.fetchval(
        """SELECT supply FROM idx.ev_shares_traded WHERE chain_id = $1 AND creator = $2 AND block_time < $3
            ORDER BY block_number DESC, log_index DESC LIMIT 1""",
        ctx.chain_id,
        ctx.params["address"],
        lo,
    )
    last: int | None = None if before is None else int(before)

    def price(s: int | Decimal) -> str:
        return units(unit * int(s) * int(s)) or "0.000000"

    out = []
    for b in buckets:
        r = rows.get(b)
        if r is None:
            if last is None:
                continue
            p = price(last)
            out.append({"time": iso(b), "open": p, "high": p, "low": p, "close": p, "volume": "0.000000", "trades": 0})
            continue
        out.append(
            {
                "time": iso(b),
                "open": price(r["open_s"]),
                "high": price(r["hi"]),
                "low": price(r["lo"]),
                "close": price(r["close_s"]),
                "volume": units(r["volume"]),
                "trades": r["trades"],
            }
        )
        last = int(r["close_s"])
    return {"data": out, "meta": {"interval": ctx.params["interval"], "from": iso(lo), "to": iso(hi)}}


async def creator_dividends(ctx: Ctx) -> dict[str, Any]:
    """Dividend distributions of a creator, newest first, cursor-paginated."""
    r = await _creator(ctx)
    key = cursor_key(ctx) or [2**62, 0]
    limit = int(ctx.params["limit"])
    rows = await ctx.conn.fetch(
        """SELECT block_number, log_index, tx_hash, block_time, amount, market_fees, pool,
                  -- the supply `amount` was credited over: the earning shares (a row of a deployment
                  -- before the warm-up has 0 there: every share earned)
                  CASE WHEN earning_supply > 0 THEN earning_supply ELSE supply END AS supply
             FROM idx.ev_dividends_distributed
            WHERE chain_id = $1 AND creator = $2 AND (block_number, log_index) < ($3, $4)
            ORDER BY block_number DESC, log_index DESC LIMIT $5""",
        ctx.chain_id,
        ctx.params["address"],
        int(key[0]),
        int(key[1]),
        limit + 1,
    )
    page, meta = cursor_page(ctx, rows, limit)
    meta["pending"] = units(pending_dividends(r))
    meta["distributedTotal"] = units(r["distributed_total"])
    data = [
        {
            "blockNumber": x["block_number"],
            "logIndex": x["log_index"],
            "txHash": hexs(x["tx_hash"]),
            "time": iso(x["block_time"]),
            "amount": units(x["amount"]),
            "marketFees": units(x["market_fees"]),
            "holdersSupply": str(int(x["supply"])),
            "perShare": units(int(x["amount"]) // int(x["supply"])) if int(x["supply"]) else None,
        }
        for x in page
    ]
    return {"data": data, "meta": meta}


CREATOR_PROPS = {
    "address": ADDRESS_SCHEMA,
    "supply": UINT,
    "earningSupply": UINT,
    "pendingSupply": UINT,
    "sharePrice": AMOUNT,
    "holders": INT,
    "volume": AMOUNT,
    "trades": INT,
    "pendingDividends": AMOUNT,
    "distributedDividends": AMOUNT,
    "distributions": INT,
    "creatorFeesUnclaimed": AMOUNT,
    "markets": INT,
    "firstBlock": INT,
    "updatedBlock": INT,
}
CREATOR = model("Creator", obj(CREATOR_PROPS))
CREATOR_DETAIL = model("CreatorDetail", obj({**CREATOR_PROPS, "marketVolume": AMOUNT}))
CREATOR_HOLDER = model(
    "CreatorHolder",
    obj(
        {
            "holder": ADDRESS_SCHEMA,
            "shares": UINT,
            "claimableDividends": AMOUNT,
            "lockedUntil": null(TIME),
            **WARMUP_PROPS,
        }
    ),
)
SHARE_TRADE = model(
    "ShareTrade",
    obj(
        {
            "blockNumber": INT,
            "logIndex": INT,
            "blockHash": HASH,
            "txHash": HASH,
            "time": TIME,
            "trader": ADDRESS_SCHEMA,
            "side": SIDE,
            "shares": UINT,
            "price": AMOUNT,
            "protocolFee": AMOUNT,
            "creatorFee": AMOUNT,
            "dividendFee": AMOUNT,
            "supplyAfter": UINT,
        }
    ),
)
SHARE_CANDLE = model(
    "ShareCandle",
    obj(
        {"time": TIME, "open": AMOUNT, "high": AMOUNT, "low": AMOUNT, "close": AMOUNT, "volume": AMOUNT, "trades": INT},
        description="next-share price candles (USDC)",
    ),
)
DISTRIBUTION = model(
    "DividendDistribution",
    obj(
        {
            "blockNumber": INT,
            "logIndex": INT,
            "txHash": HASH,
            "time": TIME,
            "amount": AMOUNT,
            "marketFees": AMOUNT,
            "holdersSupply": UINT,
            "perShare": null(AMOUNT),
        }
    ),
)


def _c(p: dict[str, Any]) -> str:
    return "0x" + bytes(p["address"]).hex()


def _v(p: dict[str, Any]) -> str:
    return filters_hash(p, exclude=())


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/creators",
        list_creators,
        "List creators",
        "creators",
        LIST_PARAMS,
        cache=lambda p: ("creators:list", _v(p)),
        paged="page",
        response=arr(CREATOR),
    ),
    Endpoint(
        "GET",
        "/v1/creators/{address}",
        get_creator,
        "Creator detail",
        "creators",
        (ADDRESS,),
        cache=lambda p: (f"creator:{_c(p)}", "detail"),
        response=CREATOR_DETAIL,
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/creators/{address}/holders",
        creator_holders,
        "Holders of a creator's shares",
        "creators",
        (ADDRESS, *page_params()),
        cache=lambda p: (f"creator:{_c(p)}", "holders:" + _v(p)),
        paged="page",
        response=arr(CREATOR_HOLDER),
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/creators/{address}/trades",
        creator_trades,
        "Share trades",
        "creators",
        (ADDRESS, *cursor_params()),
        cache=lambda p: (f"creator:{_c(p)}", "trades:" + _v(p)),
        paged="cursor",
        response=arr(SHARE_TRADE),
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/creators/{address}/candles",
        creator_candles,
        "Share price candles",
        "creators",
        CANDLE_PARAMS,
        cache=lambda p: (
            (f"creator:{_c(p)}", "candles:" + _v(p))
            if p["to"] is not None
            else (
                f"creator:{_c(p)}",
                "candles-now:" + _v(p) + ":" + str(int(dt.datetime.now(dt.UTC).timestamp()) // 60),
            )
        ),
        response=arr(SHARE_CANDLE),
        meta=obj(WINDOW_META_PROPS),
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/creators/{address}/dividends",
        creator_dividends,
        "Dividend distributions",
        "creators",
        (ADDRESS, *cursor_params()),
        cache=lambda p: (f"creator:{_c(p)}", "dividends:" + _v(p)),
        paged="cursor",
        response=arr(DISTRIBUTION),
        meta=obj({**CURSOR_META_PROPS, "pending": AMOUNT, "distributedTotal": AMOUNT}),
        errors=(404,),
    ),
]

"""Shapes shared by the route families: the seed's pagination `meta`, cursor pages, market/trade JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from api.context import Ctx, Record
from api.encode import hexs, iso, ratio, units
from api.params import decode_cursor, encode_cursor, filters_hash
from api.schemas import (
    ADDRESS,
    AMOUNT,
    HASH,
    INT,
    MARKET_STATUS,
    OUTCOME,
    RATIO,
    SIDE,
    STR,
    TIME,
    UINT,
    enum,
    model,
    null,
    obj,
)


async def agg_fresh(ctx: Ctx, name: str, *, any_age: bool = False) -> dt.datetime | None:
    """When the keeper last refreshed agg.<name>: if within `agg_max_age_s`, or whatever its age with
    `any_age` (a ranking is served stale rather than recomputed per request); None → compute live."""
    max_age = None if any_age else ctx.state.settings.api.agg_max_age_s
    try:
        t: dt.datetime | None = await ctx.conn.fetchval(
            "SELECT refreshed_at FROM agg.refreshes WHERE chain_id = $1 AND name = $2"
            " AND ($3::int IS NULL OR refreshed_at > now() - make_interval(secs => $3::int))",
            ctx.chain_id,
            name,
            max_age,
        )
    except (asyncpg.UndefinedTableError, asyncpg.InsufficientPrivilegeError):
        return None
    return t


WINDOWS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}


def page_meta(page: int, limit: int, total: int) -> dict[str, Any]:
    pages = (total + limit - 1) // limit
    return {
        "page": page,
        "limit": limit,
        "total": total,
        "totalPages": pages,
        "hasNext": page < pages,
        "hasPrevious": page > 1,
    }


def offset(ctx: Ctx) -> tuple[int, int]:
    p = ctx.params
    return int(p["limit"]), (int(p["page"]) - 1) * int(p["limit"])


def cursor_scope(ctx: Ctx) -> str:
    """What a cursor is issued for and checked against: the filters, the chain and the endpoint. A
    cursor of another chain or endpoint is refused instead of answering a wrong page (review s20 ha)."""
    return filters_hash({**ctx.params, "@chain": ctx.chain_id, "@path": ctx.path})


def cursor_key(ctx: Ctx, arity: int = 2) -> list[Any] | None:
    return decode_cursor(ctx.state.settings.cursor_secret, cursor_scope(ctx), ctx.params["cursor"], arity)


def cursor_page(
    ctx: Ctx, rows: Sequence[Any], limit: int, key: Sequence[str] = ("block_number", "log_index")
) -> tuple[Sequence[Any], dict[str, Any]]:
    """Trims the probe row (queries fetch limit+1) and builds meta {limit, hasNext, nextCursor}."""
    has_next = len(rows) > limit
    rows = rows[:limit]
    nxt = None
    if has_next and rows:
        last = rows[-1]
        nxt = encode_cursor(ctx.state.settings.cursor_secret, cursor_scope(ctx), [last[k] for k in key])
    return rows, {"limit": limit, "hasNext": has_next, "nextCursor": nxt}


OUTCOMES = {0: "no", 1: "yes", 2: "invalid"}


def market_status(ctx: Ctx, r: Record) -> str:
    """active | closed (ended, no proposal) | proposed | disputed | resolved, from a row with resolved,
    status, end_time and is_open. "active" turns "closed" at the end time with no chain event to
    invalidate the cache, so the answer is marked stale from then (Ctx.stale_at)."""
    if r["resolved"]:
        return "resolved"
    if r["status"] in ("proposed", "disputed"):
        return str(r["status"])
    if r["is_open"]:
        ctx.stale_at(r["end_time"].timestamp())
        return "active"
    return "closed"


def market_json(ctx: Ctx, r: Record) -> dict[str, Any]:
    y, n = int(r["yes_reserve"]), int(r["no_reserve"])
    return {
        "id": r["market_id"],
        "question": r["question"],
        "category": r["category"],
        "creator": hexs(r["creator"]),
        "status": market_status(ctx, r),
        "outcome": OUTCOMES.get(r["outcome"]) if r["outcome"] is not None else None,
        "proposedOutcome": OUTCOMES.get(r["proposed_outcome"]) if r["proposed_outcome"] is not None else None,
        "challengeEndsAt": iso(r["challenge_ends"]),
        "endDate": iso(r["end_time"]),
        "createdAt": iso(r["created_time"]),
        "createdBlock": r["created_block"],
        "createdTx": hexs(r["created_tx"]),
        "resolvedAt": iso(r["resolved_time"]),
        "resolvedBlock": r["resolved_block"],
        "yesPrice": ratio(n, y + n),
        "noPrice": ratio(y, y + n),
        "yesReserve": units(y),
        "noReserve": units(n),
        "liquidity": units(2 * y * n // (y + n)) if y + n else "0.000000",
        "initialLiquidity": units(r["initial_liquidity"]),
        "volume": units(r["volume"]),
        "volumeBase": str(int(r["volume"])),
        "fees": units(r["fees"]),
        "trades": r["trade_count"],
        "lastTradeAt": iso(r["last_trade_time"]),
        "liquidityWithdrawn": units(r["liquidity_withdrawn"]),
    }


MARKET_PROPS = {
    "id": INT,
    "question": STR,
    "category": STR,
    "creator": ADDRESS,
    "status": MARKET_STATUS,
    "outcome": null(OUTCOME),
    "proposedOutcome": null(OUTCOME),
    "challengeEndsAt": null(TIME),
    "endDate": TIME,
    "createdAt": TIME,
    "createdBlock": INT,
    "createdTx": HASH,
    "resolvedAt": null(TIME),
    "resolvedBlock": null(INT),
    "yesPrice": null(RATIO),
    "noPrice": null(RATIO),
    "yesReserve": AMOUNT,
    "noReserve": AMOUNT,
    "liquidity": AMOUNT,
    "initialLiquidity": AMOUNT,
    "volume": AMOUNT,
    "volumeBase": UINT,
    "fees": AMOUNT,
    "trades": INT,
    "lastTradeAt": null(TIME),
    "liquidityWithdrawn": null(AMOUNT),
    "volume24h": AMOUNT,
    "trades24h": INT,
}
MARKET = model("Market", obj(MARKET_PROPS))
MARKET_DETAIL = model(
    "MarketDetail",
    obj(
        {**MARKET_PROPS, "yesPrice24hAgo": null(RATIO)},
        description="A market with the YES price 24 hours ago (null when it did not exist yet)",
    ),
)


def trade_json(r: Record) -> dict[str, Any]:
    y, n = int(r["yes_reserve"]), int(r["no_reserve"])
    return {
        "blockNumber": r["block_number"],
        "logIndex": r["log_index"],
        "blockHash": hexs(r["block_hash"]),
        "txHash": hexs(r["tx_hash"]),
        "time": iso(r["block_time"]),
        "marketId": r["market_id"],
        "trader": hexs(r["trader"]),
        "side": "buy" if r["is_buy"] else "sell",
        "outcome": OUTCOMES[r["outcome"]],
        "collateral": units(r["collateral"]),
        "shares": units(r["shares"]),
        "fee": units(r["fee"]),
        "price": ratio(r["collateral"], r["shares"]),
        "yesPriceAfter": ratio(n, y + n),
    }


TRADE = model(
    "Trade",
    obj(
        {
            "blockNumber": INT,
            "logIndex": INT,
            "blockHash": HASH,
            "txHash": HASH,
            "time": TIME,
            "marketId": INT,
            "trader": ADDRESS,
            "side": SIDE,
            "outcome": enum("yes", "no"),
            "collateral": AMOUNT,
            "shares": AMOUNT,
            "fee": AMOUNT,
            "price": null(RATIO),
            "yesPriceAfter": null(RATIO),
        }
    ),
)

MARKET_COLS = """m.market_id, m.creator, m.question, m.category, m.end_time, m.initial_liquidity, m.yes_reserve,
       m.no_reserve, m.resolved, m.outcome, m.volume, m.fees, m.trade_count, m.liquidity_withdrawn,
       m.created_block, m.created_time, m.created_tx, m.resolved_block, m.resolved_time, m.last_trade_time,
       m.status, m.proposed_outcome, m.challenge_ends, (m.end_time > now()) AS is_open"""

TRADE_COLS = """t.block_number, t.log_index, t.block_hash, t.tx_hash, t.block_time, t.market_id, t.trader, t.is_buy,
       t.outcome, t.collateral, t.shares, t.fee, t.yes_reserve, t.no_reserve"""


# ---------------------------------------------------------------- creator shares: dividends and warm-up

# CreatorShares.claimableDividends of a holding `h` joined to its creator `c`, to the unit (sql/081).
CLAIMABLE_SQL = (
    "share_claimable(h.shares, h.pend_old, h.pend_new, h.pend_old_acc, h.pend_new_acc, h.credited, h.acc_paid,"
    " c.acc_per_share)"
)
# The warm-up's lots of `h`: a lot earns once a fold has passed its 00:00 (marked); pend_old a day before pend_new.
WARMUP_COLS = "h.pend_old, h.pend_new, h.earns_from, h.pend_old_acc, h.pend_new_acc"
DAY_S = 86_400


def warmup_json(r: Record) -> dict[str, Any]:
    """A holding's earning and pending shares, and its pending lots with the 00:00 (UTC) each starts earning at
    (credited from the first fold at or after it: a trade of the creator's shares or the keeper's 00:00 run)."""
    lots: list[dict[str, str | None]] = []
    pending = 0
    for shares, acc, earns_from in (
        (int(r["pend_old"]), r["pend_old_acc"], int(r["earns_from"]) - DAY_S),
        (int(r["pend_new"]), r["pend_new_acc"], int(r["earns_from"])),
    ):
        if shares and acc is None:
            pending += shares
            lots.append({"shares": str(shares), "earnsFrom": iso(dt.datetime.fromtimestamp(earns_from, dt.UTC))})
    return {"earningShares": str(int(r["shares"]) - pending), "pendingShares": str(pending), "pendingLots": lots}


WARMUP_PROPS = {
    "earningShares": UINT,
    "pendingShares": UINT,
    "pendingLots": {
        "type": "array",
        "maxItems": 2,
        "items": obj({"shares": UINT, "earnsFrom": TIME}),
        "description": "shares in warm-up, each lot earning from 00:00 UTC of the second day after its buy",
    },
}

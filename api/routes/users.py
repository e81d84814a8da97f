"""/v1/users/{address}: summary, positions (average-cost PnL), trades, activity, creator-share
holdings, dividends, notifications (+ read marks).

PnL (base units, integers; see the comment above idx.positions):
    cost basis   = yes_cost + no_cost (average cost of the shares still held)
    value        = open: yes·p_yes + no·p_no at the pool's spot price, rounded down;
                   resolved: the payout claimWinnings would pay (= claimable)
    unrealized   = value − cost basis;  realized = idx.positions.realized_pnl;  total = both
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from api.cache import MAX_DEPS
from api.context import Ctx, Endpoint, Handler, Record
from api.encode import hexs, iso, ratio, units
from api.errors import ApiError, FieldError, ValidationFailed
from api.params import Param, cursor_params, filters_hash, page_params
from api.routes.common import (
    CLAIMABLE_SQL,
    OUTCOMES,
    TRADE,
    TRADE_COLS,
    WARMUP_COLS,
    WARMUP_PROPS,
    cursor_key,
    cursor_page,
    market_status,
    offset,
    page_meta,
    trade_json,
    warmup_json,
)
from api.schemas import (
    ADDRESS as ADDRESS_SCHEMA,
)
from api.schemas import (
    AMOUNT,
    BOOL,
    HASH,
    INT,
    MARKET_STATUS,
    OUTCOME,
    RATIO,
    SIDE,
    STR,
    TIME,
    UINT,
    arr,
    enum,
    model,
    null,
    obj,
)

ADDRESS = Param("address", "address", where="path", required=True, description="0x address (any case)")
POSITION_STATUSES = ("open", "redeemable", "closed", "all")


def payout_for(outcome: int, yes: int, no: int) -> int:
    if outcome == 1:
        return yes
    if outcome == 0:
        return no
    return (yes + no) // 2


def position_json(ctx: Ctx, r: Record) -> dict[str, Any]:
    ys, ns = int(r["yes_shares"]), int(r["no_shares"])
    yc, nc = int(r["yes_cost"]), int(r["no_cost"])
    yr, nr = int(r["yes_reserve"]), int(r["no_reserve"])
    cost = yc + nc
    held = ys > 0 or ns > 0
    claimable = 0
    if not held:
        status, value = "closed", 0
    elif r["resolved"]:
        status = "redeemable"
        value = claimable = payout_for(int(r["outcome"]), ys, ns)
    else:
        status = "open"
        value = (ys * nr + ns * yr) // (yr + nr) if yr + nr else 0
    unrealized = value - cost if held else 0
    realized = int(r["realized_pnl"])
    return {
        "marketId": r["market_id"],
        "question": r["question"],
        "marketStatus": market_status(ctx, r),
        "marketOutcome": OUTCOMES.get(r["outcome"]) if r["outcome"] is not None else None,
        "status": status,
        "yesShares": units(ys),
        "noShares": units(ns),
        "yesAveragePrice": ratio(yc, ys),
        "noAveragePrice": ratio(nc, ns),
        "costBasis": units(cost),
        "currentValue": units(value),
        "yesPrice": ratio(nr, yr + nr),
        "realizedPnl": units(realized),
        "unrealizedPnl": units(unrealized),
        "totalPnl": units(realized + unrealized),
        "claimable": units(claimable),
        "claimed": units(r["claimed"]),
        "bought": units(r["bought"]),
        "sold": units(r["sold"]),
        "trades": r["trade_count"],
        "updatedBlock": r["updated_block"],
        "_raw": (cost, value, realized, unrealized, claimable, int(r["bought"]) + int(r["sold"])),
    }


POSITION_COLS = """p.market_id, p.yes_shares, p.no_shares, p.yes_cost, p.no_cost, p.bought, p.sold, p.realized_pnl,
       p.claimed, p.trade_count, p.updated_block, m.question, m.yes_reserve, m.no_reserve, m.resolved, m.outcome,
       m.status, m.end_time, (m.end_time > now()) AS is_open"""
STATUS_SQL = {
    "open": "NOT m.resolved AND (p.yes_shares > 0 OR p.no_shares > 0)",
    "redeemable": "m.resolved AND (p.yes_shares > 0 OR p.no_shares > 0)",
    "closed": "p.yes_shares = 0 AND p.no_shares = 0",
    "all": "true",
}


DEP_MARKETS_SQL = "SELECT market_id FROM idx.positions WHERE chain_id = $1 AND holder = $2 LIMIT $3"
DEP_CREATORS_SQL = "SELECT creator FROM idx.share_holdings WHERE chain_id = $1 AND holder = $2 LIMIT $3"


async def depend_on_markets(ctx: Ctx) -> None:
    """The answer values the user's positions at their markets' prices and statuses, which other
    traders' trades and a proposal or resolution change (review h5: cached until the user's own next
    trade): every market the user holds is a dependency of the cached answer."""
    rows = await ctx.conn.fetch(DEP_MARKETS_SQL, ctx.chain_id, ctx.params["address"], MAX_DEPS + 1)
    ctx.depends_on(f"market:{r['market_id']}" for r in rows)


async def depend_on_creators(ctx: Ctx) -> None:
    """The same for creator shares: their price and the dividends they earn move with the creator."""
    rows = await ctx.conn.fetch(DEP_CREATORS_SQL, ctx.chain_id, ctx.params["address"], MAX_DEPS + 1)
    ctx.depends_on(f"creator:0x{bytes(r['creator']).hex()}" for r in rows)


async def positions(ctx: Ctx) -> dict[str, Any]:
    """A user's positions with average price, cost basis, realized/unrealized PnL and claimable payout."""
    await depend_on_markets(ctx)  # the page's and the total's (a status filter counts every position)
    ctx.depends_on([f"creator:0x{ctx.params['address'].hex()}"])  # a market the user creates opens a position
    limit, off = offset(ctx)
    cond = STATUS_SQL[ctx.params["status"]]
    base = f"""FROM idx.positions p JOIN idx.markets m ON m.chain_id = p.chain_id AND m.market_id = p.market_id
               WHERE p.chain_id = $1 AND p.holder = $2 AND {cond}"""
    rows = await ctx.conn.fetch(
        f"SELECT {POSITION_COLS} {base} ORDER BY p.updated_block DESC, p.market_id DESC LIMIT $3 OFFSET $4",
        ctx.chain_id,
        ctx.params["address"],
        limit,
        off,
    )
    total = await ctx.conn.fetchval(f"SELECT count(*) {base}", ctx.chain_id, ctx.params["address"])
    data = [position_json(ctx, r) for r in rows]
    for d in data:
        d.pop("_raw")
    return {"data": data, "meta": page_meta(int(ctx.params["page"]), limit, int(total))}


SUMMARY_EXTRA_SQL = f"""
SELECT
  (SELECT count(*) FROM idx.markets WHERE chain_id = $1 AND creator = $2) AS markets_created,
  (SELECT count(*) FROM idx.share_holdings WHERE chain_id = $1 AND holder = $2 AND shares > 0) AS holdings,
  (SELECT coalesce(sum({CLAIMABLE_SQL}), 0)
     FROM idx.share_holdings h JOIN idx.creators c ON c.chain_id = h.chain_id AND c.creator = h.creator
    WHERE h.chain_id = $1 AND h.holder = $2) AS dividends_claimable,
  (SELECT coalesce(sum(claimed_total), 0) FROM idx.share_holdings
    WHERE chain_id = $1 AND holder = $2) AS dividends_claimed,
  (SELECT count(*) FROM idx.ev_shares_traded WHERE chain_id = $1 AND trader = $2) AS share_trades,
  (SELECT block_time FROM idx.ev_trade WHERE chain_id = $1 AND trader = $2
    ORDER BY block_number, log_index LIMIT 1) AS first_trade,
  (SELECT block_time FROM idx.ev_trade WHERE chain_id = $1 AND trader = $2
    ORDER BY block_number DESC, log_index DESC LIMIT 1) AS last_trade,
  EXISTS (SELECT 1 FROM idx.creators WHERE chain_id = $1 AND creator = $2) AS is_creator
"""


async def summary(ctx: Ctx) -> dict[str, Any]:
    """Totals across a user's positions, shares and dividends."""
    addr = ctx.params["address"]
    rows = await ctx.conn.fetch(
        f"""SELECT {POSITION_COLS} FROM idx.positions p
              JOIN idx.markets m ON m.chain_id = p.chain_id AND m.market_id = p.market_id
             WHERE p.chain_id = $1 AND p.holder = $2""",
        ctx.chain_id,
        addr,
    )
    extra = await ctx.conn.fetchrow(SUMMARY_EXTRA_SQL, ctx.chain_id, addr)
    assert extra is not None
    ctx.depends_on(f"market:{r['market_id']}" for r in rows)
    # market:created names the market's and the creator's rooms, not user:{creator} (review h7:
    # marketsCreated and the opening position stayed cached)
    ctx.depends_on([f"creator:0x{addr.hex()}"])
    await depend_on_creators(ctx)
    cost = value = realized = unrealized = claimable = volume = trades = 0
    counts = {"open": 0, "redeemable": 0, "closed": 0}
    for r in rows:
        d = position_json(ctx, r)
        c, v, rz, u, cl, vol = d["_raw"]
        cost, value, realized, unrealized = cost + c, value + v, realized + rz, unrealized + u
        claimable, volume, trades = claimable + cl, volume + vol, trades + int(r["trade_count"])
        counts[d["status"]] += 1
    return {
        "data": {
            "address": "0x" + addr.hex(),
            "isCreator": extra["is_creator"],
            "positions": counts,
            "costBasis": units(cost),
            "positionsValue": units(value),
            "realizedPnl": units(realized),
            "unrealizedPnl": units(unrealized),
            "totalPnl": units(realized + unrealized),
            "claimableWinnings": units(claimable),
            "volume": units(volume),
            "trades": trades,
            "shareTrades": extra["share_trades"],
            "marketsCreated": extra["markets_created"],
            "shareHoldings": extra["holdings"],
            "claimableDividends": units(extra["dividends_claimable"]),
            "claimedDividends": units(extra["dividends_claimed"]),
            "firstTradeAt": iso(extra["first_trade"]),
            "lastTradeAt": iso(extra["last_trade"]),
        }
    }


async def user_trades(ctx: Ctx) -> dict[str, Any]:
    """A user's market trades, newest first, cursor-paginated."""
    args: list[Any] = [ctx.chain_id, ctx.params["address"]]
    clauses = ["t.chain_id = $1", "t.trader = $2"]
    key = cursor_key(ctx)
    if key is not None:
        args += [int(key[0]), int(key[1])]
        clauses.append("(t.block_number, t.log_index) < ($3, $4)")
    if ctx.params["market"] is not None:
        args.append(ctx.params["market"])
        clauses.append(f"t.market_id = ${len(args)}")
    limit = int(ctx.params["limit"])
    args.append(limit + 1)
    rows = await ctx.conn.fetch(
        f"""SELECT {TRADE_COLS} FROM idx.ev_trade t WHERE {" AND ".join(clauses)}
            ORDER BY t.block_number DESC, t.log_index DESC LIMIT ${len(args)}""",
        *args,
    )
    page, meta = cursor_page(ctx, rows, limit)
    return {"data": [trade_json(r) for r in page], "meta": meta}


ACTIVITY_SQL = """
SELECT * FROM (
  (SELECT 'trade' AS kind, block_number, log_index, tx_hash, block_time, market_id, NULL::bytea AS creator,
          is_buy, outcome, collateral AS amount, shares
     FROM idx.ev_trade WHERE chain_id = $1 AND trader = $2 AND (block_number, log_index) < ($3, $4)
    ORDER BY block_number DESC, log_index DESC LIMIT $5)
  UNION ALL
  (SELECT 'share_trade', block_number, log_index, tx_hash, block_time, NULL, creator, is_buy, NULL,
          price + CASE WHEN is_buy THEN protocol_fee + creator_fee + dividend_fee
                       ELSE -(protocol_fee + creator_fee + dividend_fee) END, amount
     FROM idx.ev_shares_traded WHERE chain_id = $1 AND trader = $2 AND (block_number, log_index) < ($3, $4)
    ORDER BY block_number DESC, log_index DESC LIMIT $5)
  UNION ALL
  (SELECT 'winnings_claimed', block_number, log_index, tx_hash, block_time, market_id, NULL, NULL, NULL, payout,
          yes_burned + no_burned
     FROM idx.ev_winnings_claimed WHERE chain_id = $1 AND holder = $2 AND (block_number, log_index) < ($3, $4)
    ORDER BY block_number DESC, log_index DESC LIMIT $5)
  UNION ALL
  (SELECT 'dividends_claimed', block_number, log_index, tx_hash, block_time, NULL, creator, NULL, NULL, amount, NULL
     FROM idx.ev_dividends_claimed WHERE chain_id = $1 AND holder = $2 AND (block_number, log_index) < ($3, $4)
    ORDER BY block_number DESC, log_index DESC LIMIT $5)
) u ORDER BY block_number DESC, log_index DESC LIMIT $5
"""


async def activity(ctx: Ctx) -> dict[str, Any]:
    """Everything a user did on chain (trades, share trades, claims), newest first."""
    key = cursor_key(ctx) or [2**62, 0]
    limit = int(ctx.params["limit"])
    rows = await ctx.conn.fetch(ACTIVITY_SQL, ctx.chain_id, ctx.params["address"], int(key[0]), int(key[1]), limit + 1)
    page, meta = cursor_page(ctx, rows, limit)
    data = []
    for r in page:
        item: dict[str, Any] = {
            "kind": r["kind"],
            "blockNumber": r["block_number"],
            "logIndex": r["log_index"],
            "txHash": hexs(r["tx_hash"]),
            "time": iso(r["block_time"]),
        }
        if r["market_id"] is not None:
            item["marketId"] = r["market_id"]
        if r["creator"] is not None:
            item["creator"] = hexs(r["creator"])
        if r["is_buy"] is not None:
            item["side"] = "buy" if r["is_buy"] else "sell"
        if r["outcome"] is not None:
            item["outcome"] = OUTCOMES[r["outcome"]]
        item["amount"] = units(r["amount"])
        if r["shares"] is not None:
            item["shares"] = units(r["shares"]) if r["kind"] != "share_trade" else str(int(r["shares"]))
        data.append(item)
    return {"data": data, "meta": meta}


def reserve_at(unit: int, s: int) -> int:
    """CreatorShares.reserveAt: sum of i² · unit for i < s (pure, exact)."""
    if s == 0:
        return 0
    return unit * (s - 1) * s * (2 * s - 1) // 6


CURVE_UNIT_SQL = (
    "SELECT (config ->> 'curve_unit')::numeric FROM idx.contracts WHERE chain_id = $1 AND name = 'CreatorShares'"
)


async def curve_unit(ctx: Ctx) -> int:
    v = await ctx.conn.fetchval(CURVE_UNIT_SQL, ctx.chain_id)
    return int(v or 0)


HOLDINGS_SQL = f"""
SELECT h.creator, h.shares, h.locked_until, h.claimed_total, c.supply, c.holder_count, {WARMUP_COLS},
       {CLAIMABLE_SQL} AS claimable
  FROM idx.share_holdings h JOIN idx.creators c ON c.chain_id = h.chain_id AND c.creator = h.creator
 WHERE h.chain_id = $1 AND h.holder = $2 AND h.shares > 0
 ORDER BY h.shares DESC, h.creator LIMIT $3 OFFSET $4
"""


# Claimable dividends, largest first: the list stops at CLAIMABLE_MAX creators, the total does not
# (the window sum runs before the LIMIT).
CLAIMABLE_MAX = 1000
DIVIDENDS_SQL = f"""
SELECT creator, claimable, sum(claimable) OVER () AS total
  FROM (SELECT h.creator, {CLAIMABLE_SQL} AS claimable
          FROM idx.share_holdings h JOIN idx.creators c ON c.chain_id = h.chain_id AND c.creator = h.creator
         WHERE h.chain_id = $1 AND h.holder = $2) x
 WHERE claimable > 0
 ORDER BY claimable DESC, creator LIMIT $3
"""


async def holdings(ctx: Ctx) -> dict[str, Any]:
    """Creator shares a user holds, with their sell value on the curve and claimable dividends."""
    unit = await curve_unit(ctx)
    limit, off = offset(ctx)
    rows = await ctx.conn.fetch(HOLDINGS_SQL, ctx.chain_id, ctx.params["address"], limit, off)
    ctx.depends_on(f"creator:{hexs(r['creator'])}" for r in rows)
    total = await ctx.conn.fetchval(
        "SELECT count(*) FROM idx.share_holdings WHERE chain_id = $1 AND holder = $2 AND shares > 0",
        ctx.chain_id,
        ctx.params["address"],
    )
    data = []
    for r in rows:
        s, sh = int(r["supply"]), int(r["shares"])
        data.append(
            {
                "creator": hexs(r["creator"]),
                "shares": str(sh),
                "supply": str(s),
                "holders": r["holder_count"],
                "lockedUntil": iso(dt.datetime.fromtimestamp(int(r["locked_until"]), dt.UTC))
                if r["locked_until"]
                else None,
                "sharePrice": units(unit * s * s),
                "value": units(reserve_at(unit, s) - reserve_at(unit, s - sh)),
                "claimableDividends": units(r["claimable"]),
                "claimedDividends": units(r["claimed_total"]),
                **warmup_json(r),
            }
        )
    return {"data": data, "meta": page_meta(int(ctx.params["page"]), limit, int(total))}


async def dividends(ctx: Ctx) -> dict[str, Any]:
    """Claimable dividends per creator (largest first, at most 1,000; totalClaimable covers every
    holding) and the history of claims (cursor-paginated)."""
    await depend_on_creators(ctx)  # totalClaimable covers every holding
    rows = await ctx.conn.fetch(DIVIDENDS_SQL, ctx.chain_id, ctx.params["address"], CLAIMABLE_MAX)
    claimable = [{"creator": hexs(r["creator"]), "amount": units(r["claimable"])} for r in rows]
    key = cursor_key(ctx) or [2**62, 0]
    limit = int(ctx.params["limit"])
    claims = await ctx.conn.fetch(
        """SELECT block_number, log_index, tx_hash, block_time, creator, amount FROM idx.ev_dividends_claimed
            WHERE chain_id = $1 AND holder = $2 AND (block_number, log_index) < ($3, $4)
            ORDER BY block_number DESC, log_index DESC LIMIT $5""",
        ctx.chain_id,
        ctx.params["address"],
        int(key[0]),
        int(key[1]),
        limit + 1,
    )
    page, meta = cursor_page(ctx, claims, limit)
    return {
        "data": {
            "totalClaimable": units(int(rows[0]["total"]) if rows else 0),  # over every holding, not the list
            "claimable": claimable,
            "claimed": [
                {
                    "blockNumber": r["block_number"],
                    "logIndex": r["log_index"],
                    "txHash": hexs(r["tx_hash"]),
                    "time": iso(r["block_time"]),
                    "creator": hexs(r["creator"]),
                    "amount": units(r["amount"]),
                }
                for r in page
            ],
        },
        "meta": meta,
    }


def _own(ctx: Ctx) -> None:
    user = ctx.user
    assert user is not None
    if user.address != "0x" + ctx.params["address"].hex() and not user.is_admin:
        raise ApiError(
            403, "Notifications belong to their recipient", [FieldError("address", "must be the signed-in address")]
        )


NOTIFICATIONS_SQL = """
SELECT n.block_number, n.log_index, n.kind, n.title, n.message, n.market_id, n.creator, n.amount, n.time,
       r.read_at
  FROM api.user_notifications n
  LEFT JOIN api.notification_reads r
    ON r.chain_id = n.chain_id AND r.recipient = n.recipient AND r.block_number = n.block_number
   AND r.log_index = n.log_index AND r.kind = n.kind
 WHERE n.chain_id = $1 AND n.recipient = $2 AND (NOT $5 OR r.read_at IS NULL)
 ORDER BY n.time DESC, n.block_number DESC, n.log_index DESC
 LIMIT $3 OFFSET $4
"""


NOTIFICATION_ID_PATTERN = "^[0-9]{1,18}-[0-9]{1,9}-[a-z0-9_]{1,40}$"
_NOTIFICATION_ID = re.compile(r"([0-9]{1,18})-([0-9]{1,9})-([a-z0-9_]{1,40})")


def notification_id(block_number: int, log_index: int, kind: str) -> str:
    return f"{block_number}-{log_index}-{kind}"


async def notifications(ctx: Ctx) -> dict[str, Any]:
    """The signed-in user's notifications, newest first, with read marks."""
    _own(ctx)
    limit, off = offset(ctx)
    unread = bool(ctx.params["unreadOnly"])
    rows = await ctx.conn.fetch(NOTIFICATIONS_SQL, ctx.chain_id, ctx.params["address"], limit, off, unread)
    total = await ctx.conn.fetchval(
        """SELECT count(*) FROM api.user_notifications n LEFT JOIN api.notification_reads r
             ON r.chain_id = n.chain_id AND r.recipient = n.recipient AND r.block_number = n.block_number
            AND r.log_index = n.log_index AND r.kind = n.kind
            WHERE n.chain_id = $1 AND n.recipient = $2 AND (NOT $3 OR r.read_at IS NULL)""",
        ctx.chain_id,
        ctx.params["address"],
        unread,
    )
    data = [
        {
            "id": notification_id(r["block_number"], r["log_index"], r["kind"]),
            "kind": r["kind"],
            "title": r["title"],
            "message": r["message"],
            "marketId": r["market_id"],
            "creator": hexs(r["creator"]),
            "amount": units(r["amount"]),
            "time": iso(r["time"]),
            "blockNumber": r["block_number"] or None,  # keeper notifications (block 0) are not from an event
            "read": r["read_at"] is not None,
            "readAt": iso(r["read_at"]),
        }
        for r in rows
    ]
    return {"data": data, "meta": page_meta(int(ctx.params["page"]), limit, int(total))}


READ_BODY = {
    "type": "object",
    "additionalProperties": False,
    "description": 'either {"ids": [...]} (1..500 ids from the list) or {"all": true}',
    "properties": {
        "ids": {
            "type": "array",
            "minItems": 1,
            "maxItems": 500,
            "items": {"type": "string", "pattern": NOTIFICATION_ID_PATTERN},
        },
        "all": {"type": "boolean"},
    },
    "anyOf": [
        {"required": ["ids"]},
        {"required": ["all"], "properties": {"all": {"type": "boolean", "enum": [True]}}},
    ],
}


async def mark_read(ctx: Ctx) -> dict[str, Any]:
    """Marks notifications read: {"ids": [...]} or {"all": true}."""
    _own(ctx)
    body: dict[str, Any] = ctx.body
    unknown = sorted(set(body) - {"ids", "all"})
    if unknown:
        raise ValidationFailed([FieldError(k[:64], "unknown field") for k in unknown])
    ids = body.get("ids")
    every = body.get("all") is True
    if "all" in body and not isinstance(body["all"], bool):
        raise ValidationFailed([FieldError("all", "must be a boolean")])
    if ("ids" in body or not every) and (not isinstance(ids, list) or not ids or len(ids) > 500):
        raise ValidationFailed([FieldError("ids", "a list of 1..500 notification ids, or all: true")])
    keys: list[tuple[int, int, str]] = []
    for i, x in enumerate(ids or []):
        m = _NOTIFICATION_ID.fullmatch(x) if isinstance(x, str) else None
        if m is None:
            raise ValidationFailed([FieldError(f"ids[{i}]", "must be BLOCK-LOGINDEX-KIND as in the list")])
        keys.append((int(m[1]), int(m[2]), m[3]))
    addr = ctx.params["address"]
    if every:
        status = await ctx.conn.execute(
            """INSERT INTO api.notification_reads (chain_id, recipient, block_number, log_index, kind)
               SELECT chain_id, recipient, block_number, log_index, kind FROM api.user_notifications
                WHERE chain_id = $1 AND recipient = $2 ON CONFLICT DO NOTHING""",
            ctx.chain_id,
            addr,
        )
    else:
        status = await ctx.conn.execute(
            """INSERT INTO api.notification_reads (chain_id, recipient, block_number, log_index, kind)
               SELECT n.chain_id, n.recipient, n.block_number, n.log_index, n.kind
                 FROM api.user_notifications n
                 JOIN unnest($3::bigint[], $4::int[], $5::text[]) AS k(b, l, kd)
                   ON n.block_number = k.b AND n.log_index = k.l AND n.kind = k.kd
                WHERE n.chain_id = $1 AND n.recipient = $2 ON CONFLICT DO NOTHING""",
            ctx.chain_id,
            addr,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
    return {"data": {"marked": int(status.split()[-1])}}


POSITION = model(
    "Position",
    obj(
        {
            "marketId": INT,
            "question": STR,
            "marketStatus": MARKET_STATUS,
            "marketOutcome": null(OUTCOME),
            "status": enum("open", "redeemable", "closed"),
            "yesShares": AMOUNT,
            "noShares": AMOUNT,
            "yesAveragePrice": null(RATIO),
            "noAveragePrice": null(RATIO),
            "costBasis": AMOUNT,
            "currentValue": AMOUNT,
            "yesPrice": null(RATIO),
            "realizedPnl": AMOUNT,
            "unrealizedPnl": AMOUNT,
            "totalPnl": AMOUNT,
            "claimable": AMOUNT,
            "claimed": AMOUNT,
            "bought": AMOUNT,
            "sold": AMOUNT,
            "trades": INT,
            "updatedBlock": INT,
        }
    ),
)
USER_SUMMARY = model(
    "UserSummary",
    obj(
        {
            "address": ADDRESS_SCHEMA,
            "isCreator": BOOL,
            "positions": obj({"open": INT, "redeemable": INT, "closed": INT}),
            "costBasis": AMOUNT,
            "positionsValue": AMOUNT,
            "realizedPnl": AMOUNT,
            "unrealizedPnl": AMOUNT,
            "totalPnl": AMOUNT,
            "claimableWinnings": AMOUNT,
            "volume": AMOUNT,
            "trades": INT,
            "shareTrades": INT,
            "marketsCreated": INT,
            "shareHoldings": INT,
            "claimableDividends": AMOUNT,
            "claimedDividends": AMOUNT,
            "firstTradeAt": null(TIME),
            "lastTradeAt": null(TIME),
        }
    ),
)
ACTIVITY = model(
    "Activity",
    obj(
        {
            "kind": enum("trade", "share_trade", "winnings_claimed", "dividends_claimed"),
            "blockNumber": INT,
            "logIndex": INT,
            "txHash": HASH,
            "time": TIME,
            "marketId": INT,
            "creator": ADDRESS_SCHEMA,
            "side": SIDE,
            "outcome": OUTCOME,
            "amount": AMOUNT,
            "shares": {
                "type": "string",
                "pattern": r"^[0-9]+(\.[0-9]{6})?$",
                "description": "outcome shares (6 decimals) or, for share_trade, whole creator shares",
            },
        },
        optional=("marketId", "creator", "side", "outcome", "shares"),
    ),
)
HOLDING = model(
    "ShareHolding",
    obj(
        {
            "creator": ADDRESS_SCHEMA,
            "shares": UINT,
            "supply": UINT,
            "holders": INT,
            "lockedUntil": null(TIME),
            "sharePrice": AMOUNT,
            "value": AMOUNT,
            "claimableDividends": AMOUNT,
            "claimedDividends": AMOUNT,
            **WARMUP_PROPS,
        }
    ),
)
DIVIDENDS = model(
    "UserDividends",
    obj(
        {
            "totalClaimable": AMOUNT,
            "claimable": arr(obj({"creator": ADDRESS_SCHEMA, "amount": AMOUNT})),
            "claimed": arr(
                obj(
                    {
                        "blockNumber": INT,
                        "logIndex": INT,
                        "txHash": HASH,
                        "time": TIME,
                        "creator": ADDRESS_SCHEMA,
                        "amount": AMOUNT,
                    }
                )
            ),
        }
    ),
)
NOTIFICATION = model(
    "Notification",
    obj(
        {
            "id": {"type": "string", "pattern": NOTIFICATION_ID_PATTERN},
            "kind": STR,
            "title": STR,
            "message": STR,
            "marketId": null(INT),
            "creator": null(ADDRESS_SCHEMA),
            "amount": null(AMOUNT),
            "time": TIME,
            "blockNumber": null(INT),
            "read": BOOL,
            "readAt": null(TIME),
        }
    ),
)
MARKED = obj({"marked": INT})


POSITION_PARAMS = (Param("status", "enum", choices=POSITION_STATUSES, default="all"), *page_params())
NOTIFICATION_PARAMS = (ADDRESS, Param("unreadOnly", "bool", default=False), *page_params())


def mine(handler: Handler) -> Handler:
    """`handler` for the signed-in user: the address parameter comes from the token."""

    async def call(ctx: Ctx) -> dict[str, Any]:
        assert ctx.user is not None
        ctx.params["address"] = bytes.fromhex(ctx.user.address[2:])
        return await handler(ctx)

    call.__doc__ = handler.__doc__
    call.__name__ = "my_" + handler.__name__
    return call


def _v(p: dict[str, Any]) -> str:
    return filters_hash(p, exclude=())


def _u(p: dict[str, Any]) -> str:
    return "0x" + bytes(p["address"]).hex()


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/users/{address}",
        summary,
        "User summary",
        "users",
        (ADDRESS,),
        cache=lambda p: (f"user:{_u(p)}", "summary"),
        response=USER_SUMMARY,
    ),
    Endpoint(
        "GET",
        "/v1/users/{address}/positions",
        positions,
        "User positions with PnL",
        "users",
        (ADDRESS, *POSITION_PARAMS),
        cache=lambda p: (f"user:{_u(p)}:positions", _v(p)),
        paged="page",
        response=arr(POSITION),
    ),
    Endpoint(
        "GET",
        "/v1/users/{address}/trades",
        user_trades,
        "User trades",
        "users",
        (ADDRESS, *cursor_params(), Param("market", "int", minimum=0, maximum=10**18)),
        cache=lambda p: (f"user:{_u(p)}", "trades:" + _v(p)),
        paged="cursor",
        response=arr(TRADE),
    ),
    Endpoint(
        "GET",
        "/v1/users/{address}/activity",
        activity,
        "User activity (all kinds)",
        "users",
        (ADDRESS, *cursor_params()),
        cache=lambda p: (f"user:{_u(p)}", "activity:" + _v(p)),
        paged="cursor",
        response=arr(ACTIVITY),
    ),
    Endpoint(
        "GET",
        "/v1/users/{address}/holdings",
        holdings,
        "Creator-share holdings",
        "users",
        (ADDRESS, *page_params()),
        cache=lambda p: (f"user:{_u(p)}", "holdings:" + _v(p)),
        paged="page",
        response=arr(HOLDING),
    ),
    Endpoint(
        "GET",
        "/v1/users/{address}/dividends",
        dividends,
        "Dividends claimable and claimed",
        "users",
        (ADDRESS, *cursor_params()),
        cache=lambda p: (f"user:{_u(p)}", "dividends:" + _v(p)),
        paged="cursor",
        response=DIVIDENDS,
    ),
    Endpoint(
        "GET",
        "/v1/users/{address}/notifications",
        notifications,
        "Notifications (signed-in user)",
        "users",
        NOTIFICATION_PARAMS,
        auth="user",
        paged="page",
        response=arr(NOTIFICATION),
        errors=(403,),
        description="Only the recipient (or an admin) may read them.",
    ),
    Endpoint(
        "POST",
        "/v1/users/{address}/notifications/read",
        mark_read,
        "Mark notifications read",
        "users",
        (ADDRESS,),
        auth="user",
        body=READ_BODY,
        db="write",
        response=MARKED,
        errors=(403,),
    ),
    # The signed-in user's own families (the seed's /positions, /dividends, /notifications): the
    # same handlers with the address taken from the token. Not cached: the answer depends on it.
    Endpoint(
        "GET",
        "/v1/positions",
        mine(positions),
        "My positions with PnL",
        "me",
        POSITION_PARAMS,
        auth="user",
        paged="page",
        response=arr(POSITION),
        description="The signed-in user's positions (as /v1/users/{address}/positions).",
    ),
    Endpoint(
        "GET",
        "/v1/dividends",
        mine(dividends),
        "My dividends claimable and claimed",
        "me",
        tuple(cursor_params()),
        auth="user",
        paged="cursor",
        response=DIVIDENDS,
        description="The signed-in user's dividends (as /v1/users/{address}/dividends).",
    ),
    Endpoint(
        "GET",
        "/v1/notifications",
        mine(notifications),
        "My notifications",
        "me",
        NOTIFICATION_PARAMS[1:],
        auth="user",
        paged="page",
        response=arr(NOTIFICATION),
        description="The signed-in user's notifications, newest first, with read marks.",
    ),
    Endpoint(
        "POST",
        "/v1/notifications/read",
        mine(mark_read),
        "Mark my notifications read",
        "me",
        auth="user",
        body=READ_BODY,
        db="write",
        response=MARKED,
        description='Body {"ids": [...]} with ids from /v1/notifications, or {"all": true}.',
    ),
]

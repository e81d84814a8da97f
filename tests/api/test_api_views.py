"""The analysts' views are a contract: for the same rows, every column of public.markets, trades,
positions, creators, share_holdings, share_trades and dividend_distributions equals what the API
serves, in the documented unit (USDC as numeric with 6 decimals, prices in [0, 1] with 6 decimals,
lowercase 0x text, timestamptz, counts as integers). Columns the API does not serve are named."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, scenario
from tests.api.test_api_creators import fill

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def six(v: Decimal | None) -> str | None:
    """A view's numeric as the API's decimal string (exactly 6 decimals)."""
    return None if v is None else f"{v.quantize(Decimal('0.000001')):f}"


# view column -> (API field, conversion of the view's value)
MARKET = {
    "market_id": ("id", int),
    "creator": ("creator", str),
    "question": ("question", str),
    "category": ("category", str),
    "end_time": ("endDate", iso),
    "status": ("status", str),
    "outcome": ("outcome", lambda v: v),
    "yes_reserve": ("yesReserve", six),
    "no_reserve": ("noReserve", six),
    "yes_price": ("yesPrice", six),
    "no_price": ("noPrice", six),
    "volume": ("volume", six),
    "fees": ("fees", six),
    "trade_count": ("trades", int),
    "initial_liquidity": ("initialLiquidity", six),
    "created_block": ("createdBlock", int),
    "created_time": ("createdAt", iso),
    "resolved_block": ("resolvedBlock", lambda v: v),
    "resolved_time": ("resolvedAt", iso),
    "proposed_outcome": ("proposedOutcome", lambda v: v),
    "challenge_ends": ("challengeEndsAt", iso),
}
TRADE = {
    "block_number": ("blockNumber", int),
    "log_index": ("logIndex", int),
    "tx_hash": ("txHash", str),
    "block_time": ("time", iso),
    "market_id": ("marketId", int),
    "trader": ("trader", str),
    "outcome": ("outcome", str),
    "side": ("side", str),
    "collateral": ("collateral", six),
    "shares": ("shares", six),
    "fee": ("fee", six),
    "price": ("price", six),
    "yes_price_after": ("yesPriceAfter", six),
}
POSITION = {
    "market_id": ("marketId", int),
    "yes_shares": ("yesShares", six),
    "no_shares": ("noShares", six),
    "cost_basis": ("costBasis", six),
    "realized_pnl": ("realizedPnl", six),
    "claimed": ("claimed", six),
    "bought": ("bought", six),
    "sold": ("sold", six),
    "trade_count": ("trades", int),
}


CREATOR = {
    "creator": ("address", str),
    "supply": ("supply", lambda v: str(int(v))),
    "price": ("sharePrice", six),
    "holder_count": ("holders", int),
    "pending_pool": ("pendingDividends", six),
    "distributed_total": ("distributedDividends", six),
    "distribution_count": ("distributions", int),
    "volume": ("volume", six),
    "trade_count": ("trades", int),
    "first_block": ("firstBlock", int),
    "earning_supply": ("earningSupply", lambda v: str(int(v))),
    "pending_supply": ("pendingSupply", lambda v: str(int(v))),
}
HOLDING = {
    "creator": ("creator", str),
    "shares": ("shares", lambda v: str(int(v))),
    "locked_until": ("lockedUntil", iso),
    "claimable_dividends": ("claimableDividends", six),
    "claimed_dividends": ("claimedDividends", six),
    "earning_shares": ("earningShares", lambda v: str(int(v))),
    "pending_shares": ("pendingShares", lambda v: str(int(v))),
}


SHARE_TRADE = {
    "block_number": ("blockNumber", int),
    "log_index": ("logIndex", int),
    "tx_hash": ("txHash", str),
    "block_time": ("time", iso),
    "trader": ("trader", str),
    "side": ("side", str),
    "shares": ("shares", lambda v: str(int(v))),
    "price": ("price", six),
    "protocol_fee": ("protocolFee", six),
    "creator_fee": ("creatorFee", six),
    "dividend_fee": ("dividendFee", six),
    "supply_after": ("supplyAfter", lambda v: str(int(v))),
}
DISTRIBUTION = {
    "block_number": ("blockNumber", int),
    "log_index": ("logIndex", int),
    "tx_hash": ("txHash", str),
    "block_time": ("time", iso),
    "amount": ("amount", six),
    "market_fees": ("marketFees", six),
    "holders_supply": ("holdersSupply", lambda v: str(int(v))),
}
# View columns the API does not serve (analysts only): the pool left after a distribution.
ANALYST_ONLY = {"dividend_distributions": {"pool_after"}}


def compare(view: str, row: Any, served: dict[str, Any], mapping: dict[str, Any]) -> list[str]:
    wrong = []
    for column, (field, convert) in mapping.items():
        want = convert(row[column]) if row[column] is not None else None
        if served[field] != want:
            wrong.append(f"{view}.{column}={row[column]!r} -> {want!r}, API {field}={served[field]!r}")
    return wrong


async def test_views_equal_the_api_column_by_column(db_dsn: str, redis_url: str) -> None:
    """Every documented column of markets, trades, positions, creators and share holdings, for every
    row of the API tests' scenarios."""
    await scenario(db_dsn)
    await fill(db_dsn)
    conn = await asyncpg.connect(db_dsn)
    try:
        columns = {
            v: [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                    " AND table_name = $1 ORDER BY ordinal_position",
                    v,
                )
            ]
            for v in (
                "markets",
                "trades",
                "positions",
                "creators",
                "share_holdings",
                "share_trades",
                "dividend_distributions",
            )
        }
        markets = await conn.fetch("SELECT * FROM public.markets WHERE chain_id = $1 ORDER BY market_id", CHAIN)
        trades = await conn.fetch("SELECT * FROM public.trades WHERE chain_id = $1", CHAIN)
        positions = await conn.fetch("SELECT * FROM public.positions WHERE chain_id = $1", CHAIN)
        creators = await conn.fetch("SELECT * FROM public.creators WHERE chain_id = $1", CHAIN)
        holdings = await conn.fetch("SELECT * FROM public.share_holdings WHERE chain_id = $1", CHAIN)
        share_trades = await conn.fetch("SELECT * FROM public.share_trades WHERE chain_id = $1", CHAIN)
        distributions = await conn.fetch("SELECT * FROM public.dividend_distributions WHERE chain_id = $1", CHAIN)
    finally:
        await conn.close()
    # every column of each view is covered (chain_id is the request's chainId; holder is the path)
    assert set(columns["markets"]) == {"chain_id", *MARKET}
    assert set(columns["trades"]) == {"chain_id", *TRADE}
    assert set(columns["positions"]) == {"chain_id", "holder", *POSITION}
    assert set(columns["creators"]) == {"chain_id", *CREATOR}
    assert set(columns["share_holdings"]) == {"chain_id", "holder", "pending_earns_from", *HOLDING}
    assert set(columns["share_trades"]) == {"chain_id", "creator", *SHARE_TRADE}
    assert set(columns["dividend_distributions"]) == {
        "chain_id",
        "creator",
        *DISTRIBUTION,
        *ANALYST_ONLY["dividend_distributions"],
    }
    assert markets
    assert trades
    assert positions
    assert creators
    assert holdings
    assert share_trades
    assert distributions
    wrong: list[str] = []
    with TestClient(create_app(make_settings(db_dsn, redis_url, cache_enabled=False), serve_feed=False)) as c:
        for m in markets:
            wrong += compare("markets", m, c.get(f"/v1/markets/{m['market_id']}").json()["data"], MARKET)
            served = {
                (t["blockNumber"], t["logIndex"]): t
                for t in c.get(f"/v1/markets/{m['market_id']}/trades", params={"limit": 100}).json()["data"]
            }
            for t in (t for t in trades if t["market_id"] == m["market_id"]):
                wrong += compare("trades", t, served[(t["block_number"], t["log_index"])], TRADE)
        for holder in {p["holder"] for p in positions}:
            served = {
                p["marketId"]: p for p in c.get(f"/v1/users/{holder}/positions", params={"limit": 100}).json()["data"]
            }
            for p in (p for p in positions if p["holder"] == holder):
                wrong += compare("positions", p, served[p["market_id"]], POSITION)
        for r in creators:
            wrong += compare("creators", r, c.get(f"/v1/creators/{r['creator']}").json()["data"], CREATOR)
        for creator in {r["creator"] for r in creators}:
            path = f"/v1/creators/{creator}"
            got = {(t["blockNumber"], t["logIndex"]): t for t in c.get(f"{path}/trades").json()["data"]}
            for t in (t for t in share_trades if t["creator"] == creator):
                wrong += compare("share_trades", t, got[(t["block_number"], t["log_index"])], SHARE_TRADE)
            got = {(d["blockNumber"], d["logIndex"]): d for d in c.get(f"{path}/dividends").json()["data"]}
            for d in (d for d in distributions if d["creator"] == creator):
                wrong += compare("dividend_distributions", d, got[(d["block_number"], d["log_index"])], DISTRIBUTION)
        for holder in {h["holder"] for h in holdings}:
            served = {
                h["creator"]: h for h in c.get(f"/v1/users/{holder}/holdings", params={"limit": 100}).json()["data"]
            }
            for h in (h for h in holdings if h["holder"] == holder):
                wrong += compare("share_holdings", h, served[h["creator"]], HOLDING)
                lots = served[h["creator"]]["pendingLots"]  # the view's next 00:00 is the first lot's
                want = iso(h["pending_earns_from"]) if h["pending_earns_from"] is not None else None
                if (lots[0]["earnsFrom"] if lots else None) != want:
                    wrong.append(f"share_holdings.pending_earns_from={want!r}, API pendingLots={lots!r}")
    assert not wrong, "\n".join(wrong)

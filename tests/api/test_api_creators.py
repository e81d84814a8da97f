"""Creator endpoints and share holdings on rows written into idx.*."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest
from starlette.testclient import TestClient

from tests.api.rows import CHAIN, CREATOR, NOW, OTHER, TRADER, h, head
from tests.api.test_api_markets import assert_error

pytestmark = [pytest.mark.pg, pytest.mark.redis]
UNIT = 62_500  # DeployParams().curve_unit: share i costs i² / 16 USDC


async def fill(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await head(conn, 100, safe=90, finalized=80)
    await conn.execute(
        "INSERT INTO idx.contracts VALUES ($1, 'CreatorShares', $2, 1, $3::jsonb)",
        CHAIN,
        bytes(20),
        '{"curve_unit": "62500"}',
    )
    # supply 4: creator holds 1 (bought first, price 0), TRADER 2, OTHER 1; acc 1e18 per share paid out
    await conn.execute(
        """INSERT INTO idx.creators (chain_id, creator, supply, acc_per_share, pool, market_fees_accrued,
               distributed_total, distribution_count, holder_count, volume, trade_count, first_block, updated_block)
           VALUES ($1, $2, 4, $3, 500000, 250000, 4000000, 1, 3, $4, 3, 30, 60)""",
        CHAIN,
        CREATOR,
        10**24,
        875_000,
    )
    for holder, shares, paid, credited in ((CREATOR, 1, 0, 0), (TRADER, 2, 0, 100), (OTHER, 1, 10**24, 0)):
        await conn.execute(
            """INSERT INTO idx.share_holdings (chain_id, creator, holder, shares, locked_until, credited, acc_paid,
                   claimed_total, updated_block) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 50)""",
            CHAIN,
            CREATOR,
            holder,
            shares,
            int((NOW + dt.timedelta(hours=1)).timestamp()),
            credited,
            paid,
        )
    # the warm-up: OTHER's share (bought last) is pending until 00:00 two days after NOW's day
    await conn.execute(
        "UPDATE idx.share_holdings SET pend_new = 1, earns_from = $3 WHERE chain_id = $1 AND holder = $2",
        CHAIN,
        OTHER,
        (int(NOW.timestamp()) // 86_400 + 2) * 86_400,
    )
    await conn.execute("UPDATE idx.creators SET pending_supply = 1 WHERE chain_id = $1", CHAIN)
    for b, trader, supply, price in ((30, CREATOR, 1, 0), (31, TRADER, 3, 312_500), (40, OTHER, 4, 562_500)):
        await conn.execute(
            """INSERT INTO idx.ev_shares_traded VALUES ($1, $2, 0, $3, $3, $4, $5, $6, true, $7, $8, 0, 0, 0, $9,
                   0, 0, 0, 0, 0)""",
            CHAIN,
            b,
            h(b),
            NOW - dt.timedelta(minutes=100 - b),
            CREATOR,
            trader,
            1 if b != 31 else 2,
            price,
            supply,
        )
    await conn.execute(
        "INSERT INTO idx.ev_dividends_distributed VALUES ($1, 60, 0, $2, $2, $3, $4, 4000000, 250000, 4, $5, 0)",
        CHAIN,
        h(60),
        NOW - dt.timedelta(minutes=10),
        CREATOR,
        10**18,
    )
    await conn.close()


def test_creator_list_detail_holders_trades_dividends(client: TestClient, db_dsn: str) -> None:
    """Price = curve_unit · supply², holders with claimable dividends, trades, distributions."""
    asyncio.run(fill(db_dsn))
    creator = "0x" + CREATOR.hex()
    lst = client.get("/v1/creators").json()
    assert lst["meta"]["total"] == 1
    d = client.get(f"/v1/creators/{creator.upper().replace('0X', '0x')}").json()["data"]
    assert d["supply"] == "4"
    assert d["sharePrice"] == "1.000000"  # 62,500 · 16 base units
    assert d["pendingDividends"] == "0.750000"
    assert d["distributedDividends"] == "4.000000"
    assert d["holders"] == 3
    holders = client.get(f"/v1/creators/{creator}/holders").json()["data"]
    assert (holders[0]["holder"], holders[0]["shares"]) == ("0x" + TRADER.hex(), "2")
    claim = {x["holder"]: x["claimableDividends"] for x in holders}
    assert claim["0x" + TRADER.hex()] == "2.000100"  # credited 100 + 2 shares · 1e24 / 1e18 (1 USDC per share)
    assert claim["0x" + OTHER.hex()] == "0.000000"
    trades = client.get(f"/v1/creators/{creator}/trades", params={"limit": 2}).json()
    assert [t["blockNumber"] for t in trades["data"]] == [40, 31]
    assert trades["meta"]["hasNext"] is True
    nxt = client.get(f"/v1/creators/{creator}/trades", params={"limit": 2, "cursor": trades["meta"]["nextCursor"]})
    assert [t["blockNumber"] for t in nxt.json()["data"]] == [30]
    div = client.get(f"/v1/creators/{creator}/dividends").json()
    assert div["data"][0]["amount"] == "4.000000"
    assert div["data"][0]["perShare"] == "1.000000"
    candles = client.get(f"/v1/creators/{creator}/candles", params={"interval": "1h"}).json()["data"]
    assert candles[-1]["close"] == "1.000000"
    hold = client.get(f"/v1/users/0x{TRADER.hex()}/holdings").json()["data"][0]
    # selling 2 of 4: reserveAt(4) − reserveAt(2) = 62,500 · (14 − 1) = 812,500
    assert (hold["shares"], hold["value"], hold["claimableDividends"]) == ("2", "0.812500", "2.000100")
    divs = client.get(f"/v1/users/0x{TRADER.hex()}/dividends").json()["data"]
    assert divs["totalClaimable"] == "2.000100"
    assert_error(client.get("/v1/creators/0x" + "99" * 20), 404, "address")
    assert_error(client.get("/v1/creators", params={"sort": "name:asc"}), 400, "sort")

"""Market endpoints on real PostgreSQL with rows written into idx.* (the schema is the contract)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from starlette.testclient import TestClient

from tests.api.rows import scenario

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ERROR_KEYS = {"statusCode", "message", "errors", "timestamp", "path"}


def assert_error(r: object, status: int, field: str | None = None) -> dict[str, object]:
    body = r.json()  # type: ignore[attr-defined]
    assert r.status_code == status, body  # type: ignore[attr-defined]
    assert set(body) == ERROR_KEYS
    assert body["statusCode"] == status
    assert re.match(r"^\d{4}-\d\d-\d\dT", body["timestamp"])
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body  # type: ignore[no-any-return]


@pytest.fixture
def filled(client: TestClient, db_dsn: str) -> TestClient:
    asyncio.run(scenario(db_dsn))
    return client


def test_market_list_has_seed_meta_and_as_of(filled: TestClient) -> None:
    """The list answers with data, the seed's meta block and asOf (camelCase like every field); amounts are
    decimal strings."""
    r = filled.get("/v1/markets", params={"limit": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["meta"] == {"page": 1, "limit": 2, "total": 3, "totalPages": 2, "hasNext": True, "hasPrevious": False}
    assert body["asOf"] == {
        "chainId": 31337,
        "blockNumber": 100,
        "blockHash": "0x" + f"{100:064x}",
        "safeBlock": 90,
        "finalizedBlock": 80,
    }
    assert [m["id"] for m in body["data"]] == [3, 2]
    m1 = filled.get("/v1/markets/1").json()["data"]
    assert m1["yesPrice"] == "0.609756"
    assert m1["noPrice"] == "0.390243"
    assert m1["volume"] == "50.000000"
    assert m1["volumeBase"] == "50000000"
    assert m1["volume24h"] == "30.000000"
    assert m1["trades24h"] == 1
    assert m1["status"] == "active"
    assert m1["creator"] == "0x" + "c1" * 20
    assert isinstance(m1["yesReserve"], str)
    r2 = filled.get("/v1/markets", params={"page": 2, "limit": 2}).json()
    assert [m["id"] for m in r2["data"]] == [1]
    assert r2["meta"]["hasPrevious"] is True


def test_market_list_sort_and_filters(filled: TestClient) -> None:
    """Whitelisted sorts and the seed's filter syntax, plus named filters."""
    ids = lambda **p: [m["id"] for m in filled.get("/v1/markets", params=p).json()["data"]]  # noqa: E731
    assert ids(sort="volume:desc") == [1, 3, 2]
    assert ids(sort="yesPrice:desc") == [1, 3, 2]
    assert ids(sort="volume24h:desc") == [1, 3, 2]
    assert ids(sort="endDate:asc") == [3, 2, 1]
    assert ids(filter="category:crypto") == [1]
    assert ids(filter="status:resolved") == [2]
    assert ids(status="closed") == [3]
    assert ids(status="active") == [1]
    assert ids(creator="0x" + "B2" * 20) == [3]
    assert ids(q="btc") == [2, 1]
    assert ids(q="100%") == [3]  # % is literal, not a wildcard
    assert ids(q="_") == []
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    assert ids(endingBefore=end) == [3, 2]
    assert ids(endingAfter=end) == [1]


BAD_PARAMS = [
    ({"sort": "createdAt;DROP TABLE idx.markets"}, "sort"),
    ({"sort": "question:desc"}, "sort"),
    ({"sort": "volume:sideways"}, "sort"),
    ({"sort": "m.volume desc"}, "sort"),
    ({"filter": "category:crypto' OR '1'='1"}, None),
    ({"filter": "1=1:1"}, "filter"),
    ({"filter": "status:active;--"}, "filter.status"),
    ({"status": "open' --"}, "status"),
    ({"creator": "0xZZ"}, "creator"),
    ({"creator": "0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266x"}, "creator"),
    ({"limit": "1000"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"page": "abc"}, "page"),
    ({"orderBy": "volume"}, "orderBy"),
    ({"endingBefore": "yesterday"}, "endingBefore"),
]


def test_market_list_rejects_bad_and_injection_shaped_params(filled: TestClient, db_dsn: str) -> None:
    """Sort/filter values outside the whitelists and unknown parameters are 400s naming the field."""
    for params, field in BAD_PARAMS:
        r = filled.get("/v1/markets", params=params)
        if field is None:  # a valid key with an odd value is just a filter that matches nothing
            assert r.status_code == 200, params
            assert r.json()["data"] == [], params
            continue
        body = assert_error(r, 400, field)
        assert body["message"] == "Validation failed"
    import asyncpg

    async def intact() -> int:
        conn = await asyncpg.connect(db_dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM idx.markets"))
        finally:
            await conn.close()

    assert asyncio.run(intact()) == 3


def test_checksummed_address_accepted_bad_checksum_rejected(filled: TestClient) -> None:
    """EIP-55 mixed case is accepted (and lowercased); a wrong checksum is not."""
    good = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert filled.get("/v1/markets", params={"creator": good}).status_code == 200
    bad = "0xF39fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert_error(filled.get("/v1/markets", params={"creator": bad}), 400, "creator")


def test_errors_use_the_seed_body(filled: TestClient) -> None:
    """404, 405, unknown route, bad path parameter: all in the seed's error body."""
    assert_error(filled.get("/v1/markets/999"), 404, "id")
    assert_error(filled.get("/v1/markets/abc"), 400, "id")
    assert_error(filled.get("/v1/nothing-here"), 404)
    assert_error(filled.delete("/v1/markets/1"), 405)
    assert_error(filled.get("/v1/markets", params=[("limit", "1"), ("limit", "2")]), 400, "limit")
    r = filled.get("/v1/markets/1")
    for h in ("content-security-policy", "strict-transport-security", "x-content-type-options", "x-frame-options"):
        assert h in r.headers
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_trades_cursor_pages_are_bound_to_filters(filled: TestClient, db_dsn: str) -> None:
    """Cursor pagination walks every trade once; a cursor is refused with other filters or when forged."""
    from tests.api.rows import trade

    async def more() -> None:
        import asyncpg

        conn = await asyncpg.connect(db_dsn)
        for b in range(30, 35):
            await trade(conn, 1, b, 0)
        await conn.close()

    asyncio.run(more())
    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = filled.get("/v1/markets/1/trades", params=params).json()
        seen += [(t["blockNumber"], t["logIndex"]) for t in body["data"]]
        cursor = body["meta"]["nextCursor"]
        if not body["meta"]["hasNext"]:
            break
    assert seen == [(34, 0), (33, 0), (32, 0), (31, 0), (30, 0), (20, 0), (15, 1)]
    first = filled.get("/v1/markets/1/trades", params={"limit": 2}).json()["meta"]["nextCursor"]
    assert_error(filled.get("/v1/markets/1/trades", params={"limit": 2, "cursor": first, "side": "buy"}), 400, "cursor")
    assert_error(filled.get("/v1/markets/2/trades", params={"cursor": first}), 400, "cursor")
    assert_error(filled.get("/v1/markets/1/trades", params={"cursor": first[:-2] + "AA"}), 400, "cursor")
    t = filled.get("/v1/markets/1/trades", params={"limit": 1}).json()["data"][0]
    assert t["side"] == "buy"
    assert t["outcome"] == "yes"
    assert t["collateral"] == "10.000000"
    assert t["price"] == "0.666666"
    assert t["txHash"].startswith("0x")


def test_candles_fill_empty_buckets_forward(filled: TestClient, db_dsn: str) -> None:
    """Candles: OHLC from the trades in a bucket; an empty bucket repeats the previous close."""
    import asyncpg

    from tests.api.rows import U, trade

    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

    async def fill() -> None:
        conn = await asyncpg.connect(db_dsn)
        # market 1 created two days before now: trades at t0+10 s (price 0.6), t0+50 s (0.5), t0+190 s (0.75)
        await conn.execute(
            "UPDATE idx.ev_market_created SET block_time = $1 WHERE market_id = 1", t0 - dt.timedelta(hours=1)
        )
        await conn.execute("DELETE FROM idx.ev_trade WHERE market_id = 1")
        await trade(conn, 1, 40, 0, y=40 * U, n=60 * U, when=t0 + dt.timedelta(seconds=10))
        await trade(conn, 1, 41, 0, y=50 * U, n=50 * U, when=t0 + dt.timedelta(seconds=50))
        await trade(conn, 1, 42, 0, y=25 * U, n=75 * U, when=t0 + dt.timedelta(seconds=190))
        await conn.close()

    asyncio.run(fill())
    body = filled.get(
        "/v1/markets/1/candles",
        params={"interval": "1m", "from": t0.isoformat(), "to": (t0 + dt.timedelta(minutes=4)).isoformat()},
    ).json()
    c = body["data"]
    assert [x["time"] for x in c] == [f"2026-01-01T12:0{i}:00Z" for i in range(5)]
    assert (c[0]["open"], c[0]["high"], c[0]["low"], c[0]["close"]) == ("0.600000", "0.600000", "0.500000", "0.500000")
    assert c[0]["trades"] == 2
    assert c[0]["volume"] == "20.000000"
    assert c[1] == {
        "time": "2026-01-01T12:01:00Z",
        "open": "0.500000",
        "high": "0.500000",
        "low": "0.500000",
        "close": "0.500000",
        "volume": "0.000000",
        "trades": 0,
    }
    assert c[2]["close"] == "0.500000"
    assert c[3]["close"] == "0.750000"
    assert c[4]["open"] == "0.750000"
    no = filled.get(
        "/v1/markets/1/candles",
        params={
            "interval": "1m",
            "from": t0.isoformat(),
            "outcome": "no",
            "to": (t0 + dt.timedelta(minutes=1)).isoformat(),
        },
    ).json()["data"]
    assert (no[0]["open"], no[0]["high"], no[0]["low"], no[0]["close"]) == (
        "0.400000",
        "0.500000",
        "0.400000",
        "0.500000",
    )
    assert_error(
        filled.get("/v1/markets/1/candles", params={"interval": "1m", "from": "2020-01-01T00:00:00Z"}), 400, "from"
    )


def test_holders_prices_trending_history(filled: TestClient) -> None:
    """Holders per outcome, batch prices with missing ids, trending (24 h), price history."""
    h = filled.get("/v1/markets/1/holders", params={"outcome": "no"}).json()
    assert h["data"] == [
        {
            "holder": "0x" + "b2" * 20,
            "outcome": "no",
            "shares": "25.000000",
            "costBasis": "20.000000",
            "averagePrice": "0.800000",
        }
    ]
    p = filled.get("/v1/markets/prices", params={"ids": "1,2,77"}).json()
    assert [x["id"] for x in p["data"]] == [1, 2]
    assert p["meta"]["missing"] == [77]
    assert_error(filled.get("/v1/markets/prices", params={"ids": "1,x"}), 400, "ids")
    assert_error(filled.get("/v1/markets/prices"), 400, "ids")
    tr = filled.get("/v1/markets/trending").json()["data"]
    assert [m["id"] for m in tr] == [1]
    hist = filled.get("/v1/markets/1/history").json()["data"]
    assert hist[0]["kind"] == "created"
    assert hist[0]["yesPrice"] == "0.500000"
    assert [x["blockNumber"] for x in hist[1:]] == [15, 20]
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    recent = filled.get("/v1/markets/1/history", params={"from": since}).json()["data"]
    assert [(x["kind"], x["blockNumber"]) for x in recent] == [("trade", 20)]
    until = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    older = filled.get("/v1/markets/1/history", params={"to": until}).json()["data"]
    assert [x["blockNumber"] for x in older] == [10, 15]


def test_keeper_aggregates_used_when_fresh(filled: TestClient, db_dsn: str) -> None:
    """Trending and the 24 h sort read agg.* when the keeper refreshed it recently, and live SQL when
    it is stale; a leaderboard is the keeper's ranking whatever its age (never ranked live per
    request once one exists), live only for a chain never ranked."""
    import asyncpg

    async def agg(age: str | None) -> None:
        conn = await asyncpg.connect(db_dsn)
        await conn.execute("DELETE FROM agg.refreshes")
        await conn.execute("DELETE FROM agg.leaderboard_traders")
        if age is None:
            return await conn.close()
        await conn.execute("DELETE FROM agg.trending_markets")
        await conn.execute("DELETE FROM agg.market_stats_24h")
        for name in ("trending_markets", "market_stats_24h", "leaderboard_traders"):
            await conn.execute("INSERT INTO agg.refreshes VALUES (31337, $1, now() - $2::text::interval, 1)", name, age)
        await conn.execute("INSERT INTO agg.trending_markets VALUES (31337, 1, 1, 99, 5, 1, 1, now())")
        for m, v in ((1, 1), (2, 500), (3, 7)):
            await conn.execute("INSERT INTO agg.market_stats_24h VALUES (31337, $1, $2, 1, 1, 0, now())", m, v)
        await conn.execute(
            "INSERT INTO agg.leaderboard_traders VALUES (31337, '24h', 1, $1, -5, 9, 2, 1, now(), 'pnl')",
            bytes.fromhex("ee" * 20),
        )
        await conn.close()

    asyncio.run(agg("1 minute"))
    filled.app.state.runtime.state.cache.clear_local()  # type: ignore[attr-defined]
    r = filled.get("/v1/markets", params={"sort": "volume24h:desc"}).json()
    assert [m["id"] for m in r["data"]] == [2, 3, 1]
    assert r["meta"]["sortSource"] == "agg"
    t = filled.get("/v1/markets/trending").json()
    assert t["meta"]["source"] == "agg"
    assert [m["id"] for m in t["data"]] == [1]
    lb = filled.get("/v1/leaderboards/traders", params={"window": "24h"}).json()
    assert lb["meta"]["source"] == "agg"
    assert lb["data"][0]["trader"] == "0x" + "ee" * 20
    assert lb["data"][0]["pnl"] == "-0.000005"
    asyncio.run(agg("1 day"))
    r = filled.get("/v1/markets", params={"sort": "volume24h:asc", "limit": 3}).json()
    assert r["meta"]["sortSource"] == "live"
    stale = filled.get("/v1/leaderboards/traders", params={"window": "24h", "limit": 5}).json()
    assert (stale["meta"]["source"], stale["data"][0]["trader"]) == ("agg", "0x" + "ee" * 20)
    refreshed = dt.datetime.fromisoformat(stale["meta"]["refreshedAt"].replace("Z", "+00:00"))
    assert dt.datetime.now(dt.UTC) - refreshed > dt.timedelta(hours=23)
    assert filled.get("/v1/leaderboards/traders", params={"window": "24h", "by": "volume"}).json()["data"] == []
    past = filled.get("/v1/leaderboards/traders", params={"window": "24h", "limit": 1, "page": 2}).json()
    assert (past["data"], past["meta"]["total"], past["meta"]["hasPrevious"]) == ([], 1, True)  # the ranking's size
    asyncio.run(agg(None))
    live = filled.get("/v1/leaderboards/traders", params={"window": "24h", "limit": 6}).json()
    assert live["meta"]["source"] == "live"
    assert live["data"]
    assert all(row["trader"] != "0x" + "ee" * 20 for row in live["data"])

"""The typed contract: the signed-in user's families (/v1/positions, /v1/dividends,
/v1/notifications), recent trades across markets (/v1/trades), one name per field (endDate), and
parameters accepted exactly as /openapi.json states them."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.auth import Principal, issue_token
from api.openapi import param_schema
from api.params import Param
from api.settings import Settings
from tests.api import rows
from tests.api.rows import scenario
from tests.api.test_api_markets import assert_error

pytestmark = [pytest.mark.pg, pytest.mark.redis]
TRADER = "0x" + "a1" * 20


@pytest.fixture
def filled(client: TestClient, db_dsn: str) -> TestClient:
    async def more() -> None:
        await scenario(db_dsn)
        conn = await asyncpg.connect(db_dsn)
        try:
            await rows.trade(conn, 3, 30, 2, trader=rows.OTHER, collateral=5 * rows.U, shares=9 * rows.U)
            for block, kind in ((40, "market_resolved"), (41, "winnings_claimable")):
                await conn.execute(
                    """INSERT INTO idx.notifications (chain_id, block_number, log_index, recipient, kind, title,
                           message, market_id, amount, block_time)
                       VALUES ($1, $2, 0, $3, $4, 'T', 'M', 2, 10000000, now() - make_interval(secs => $5))""",
                    rows.CHAIN,
                    block,
                    rows.TRADER,
                    kind,
                    100 - block,
                )
        finally:
            await conn.close()

    asyncio.run(more())
    return client


def _auth(settings: Settings, address: str = TRADER) -> dict[str, str]:
    token, _ = issue_token(settings, Principal(address, frozenset({"user"})))
    return {"Authorization": f"Bearer {token}"}


def test_my_positions_dividends_and_notifications(filled: TestClient, settings: Settings) -> None:
    """The token's address is the user: the same answers as /v1/users/{address}/..., 401 without a token."""
    auth = _auth(settings)
    mine = filled.get("/v1/positions", headers=auth).json()
    theirs = filled.get(f"/v1/users/{TRADER}/positions").json()
    assert mine["data"] == theirs["data"]
    assert mine["meta"]["total"] == 3
    only_open = filled.get("/v1/positions", params={"status": "open"}, headers=auth).json()["data"]
    assert [p["marketId"] for p in only_open] == [1]
    assert filled.get("/v1/dividends", headers=auth).json()["data"] == {
        "totalClaimable": "0.000000",
        "claimable": [],
        "claimed": [],
    }
    for path in ("/v1/positions", "/v1/dividends", "/v1/notifications"):
        assert_error(filled.get(path), 401, "Authorization")
    assert_error(filled.post("/v1/notifications/read", json={"all": True}), 401, "Authorization")

    listed = filled.get("/v1/notifications", headers=auth).json()
    assert [n["id"] for n in listed["data"]] == ["41-0-winnings_claimable", "40-0-market_resolved"]
    assert listed["data"][0]["amount"] == "10.000000"
    assert listed["meta"]["total"] == 2
    # another user sees none of them
    assert filled.get("/v1/notifications", headers=_auth(settings, "0x" + "b2" * 20)).json()["data"] == []

    marked = filled.post("/v1/notifications/read", json={"ids": ["40-0-market_resolved"]}, headers=auth).json()
    assert marked["data"] == {"marked": 1}
    unread = filled.get("/v1/notifications", params={"unreadOnly": "true"}, headers=auth).json()["data"]
    assert [n["id"] for n in unread] == ["41-0-winnings_claimable"]
    assert filled.post("/v1/notifications/read", json={"all": True}, headers=auth).json()["data"] == {"marked": 1}
    assert filled.get("/v1/notifications", params={"unreadOnly": "true"}, headers=auth).json()["data"] == []

    # exactly the documented body: ids (1..500 of BLOCK-LOGINDEX-KIND) or all: true
    for body, field in (
        ({}, "ids"),
        ({"all": False}, "ids"),
        ({"all": 1}, "all"),
        ({"all": True, "ids": []}, "ids"),
        ({"ids": ["40-0"]}, "ids[0]"),
        ({"ids": ["40-0-market_resolved\n"]}, "ids[0]"),
        ({"ids": ["٤0-0-market_resolved"]}, "ids[0]"),
        ({"ids": ["1-9999999999-x"]}, "ids[0]"),
        ({"every": True}, "every"),
    ):
        assert_error(filled.post("/v1/notifications/read", json=body, headers=auth), 400, field)


def test_recent_trades_across_markets(filled: TestClient) -> None:
    """Newest first over every market; `market`, `trader`, `side`, `outcome` narrow it; cursors page it."""
    body = filled.get("/v1/trades").json()
    assert [(t["marketId"], t["blockNumber"]) for t in body["data"]] == [(3, 30), (1, 20), (1, 15)]
    assert body["meta"] == {"limit": 50, "hasNext": False, "nextCursor": None}
    assert [t["blockNumber"] for t in filled.get("/v1/trades", params={"market": 1}).json()["data"]] == [20, 15]
    assert [t["blockNumber"] for t in filled.get("/v1/trades", params={"trader": TRADER}).json()["data"]] == [20]
    assert [t["blockNumber"] for t in filled.get("/v1/trades", params={"outcome": "no"}).json()["data"]] == [15]
    first = filled.get("/v1/trades", params={"limit": 2}).json()
    assert [t["blockNumber"] for t in first["data"]] == [30, 20]
    rest = filled.get("/v1/trades", params={"limit": 2, "cursor": first["meta"]["nextCursor"]}).json()
    assert [t["blockNumber"] for t in rest["data"]] == [15]
    # a cursor is only good for the filters it was issued with
    assert_error(
        filled.get("/v1/trades", params={"limit": 2, "market": 1, "cursor": first["meta"]["nextCursor"]}),
        400,
        "cursor",
    )


def test_end_date_is_the_one_name(filled: TestClient) -> None:
    """The seed's endDate is both the field and the sort key; endTime is gone."""
    m = filled.get("/v1/markets/1").json()["data"]
    assert "endTime" not in m
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", m["endDate"])
    listed = filled.get("/v1/markets", params={"sort": "endDate:asc"}).json()["data"]
    ends = [x["endDate"] for x in listed]
    assert ends == sorted(ends)
    assert [x["id"] for x in listed] == [3, 2, 1]
    spec = filled.get("/openapi.json").json()
    market = spec["components"]["schemas"]["Market"]
    assert "endDate" in market["required"]
    assert "endTime" not in market["properties"]


def test_parameters_accepted_exactly_as_documented(filled: TestClient) -> None:
    """Empty values, date-only times, control characters and foreign cursor characters are refused,
    as the published patterns say; what the patterns allow is accepted."""
    assert_error(filled.get("/v1/markets", params={"status": ""}), 400, "status")
    assert_error(filled.get("/v1/markets", params={"q": ""}), 400, "q")
    assert_error(filled.get("/v1/markets", params={"endingBefore": "2030-01-01"}), 400, "endingBefore")
    assert_error(filled.get("/v1/markets", params={"q": "a\tb"}), 400, "q")
    assert_error(filled.get("/v1/trades", params={"cursor": "ab+c"}), 400, "cursor")
    ok = {"endingBefore": "2099-01-01T00:00:00Z", "endingAfter": "0", "q": "Paris 100%"}
    assert [m["id"] for m in filled.get("/v1/markets", params=ok).json()["data"]] == [3]
    assert filled.get("/v1/markets", params={"q": "☂ ‍"}).json()["data"] == []  # any text but controls
    assert filled.get("/v1/markets", params={"filter": "category:eth,status:resolved"}).json()["meta"]["total"] == 1
    # valid RFC 3339 that is no instant in UTC, or a window off the calendar: 400, not 500
    assert_error(filled.get("/v1/markets", params={"endingBefore": "0001-01-01T00:00:00+01:00"}), 400, "endingBefore")
    for to in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        assert_error(filled.get("/v1/markets/1/candles", params={"to": to, "interval": "1d"}), 400, "to")
    # the document states the same syntax: RFC 3339 or unix seconds
    pattern = param_schema(Param("t", "time"))["pattern"]
    assert re.fullmatch(pattern, "2099-01-01T00:00:00.5+02:00")
    assert not re.fullmatch(pattern, "2030-01-01")


def test_every_operation_declares_its_responses(client: TestClient) -> None:
    """Success schema, the seed's error body for every error status, closed data objects."""
    spec = client.get("/openapi.json").json()
    assert {"/v1/trades", "/v1/positions", "/v1/dividends", "/v1/notifications", "/v1/notifications/read"} <= set(
        spec["paths"]
    )
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            ok = [c for c in codes if c.startswith("2")]
            assert len(ok) == 1, (method, path)
            schema = op["responses"][ok[0]]["content"]["application/json"]["schema"]
            assert schema, (method, path)
            assert {"400", "429", "500"} <= codes, (method, path)
            if op.get("security"):
                assert "401" in codes, (method, path)
            for c in codes - set(ok):
                ref = op["responses"][c]["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/Error"}, (method, path, c)
    for name, s in spec["components"]["schemas"].items():
        if s.get("type") == "object":
            assert s["additionalProperties"] is False, name

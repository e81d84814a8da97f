"""User endpoints: positions with average-cost PnL checked against hand-computed values."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api.rows import scenario
from tests.api.test_api_markets import assert_error

pytestmark = [pytest.mark.pg, pytest.mark.redis]
TRADER = "0x" + "a1" * 20


@pytest.fixture
def filled(client: TestClient, db_dsn: str) -> TestClient:
    asyncio.run(scenario(db_dsn))
    return client


def test_positions_pnl_matches_hand_computed_values(filled: TestClient) -> None:
    """Open: spot value; redeemable: payout; closed: realized only (see tests/api/rows.scenario)."""
    body = filled.get(f"/v1/users/{TRADER}/positions").json()
    by_market = {p["marketId"]: p for p in body["data"]}
    # market 1 open: 50 YES bought for 30; pool y=80 n=125 → p_yes = 125/205; value = 50e6*125e6//205e6 = 30487804
    p1 = by_market[1]
    assert p1["status"] == "open"
    assert (p1["yesShares"], p1["yesAveragePrice"], p1["costBasis"]) == ("50.000000", "0.600000", "30.000000")
    assert (p1["currentValue"], p1["unrealizedPnl"], p1["realizedPnl"]) == ("30.487804", "0.487804", "0.000000")
    assert p1["totalPnl"] == "0.487804"
    assert p1["claimable"] == "0.000000"
    # market 2 resolved YES: 10 YES (cost 4) + 5 NO (cost 3), realized 1.5 → claimable 10, unrealized 10 - 7 = 3
    p2 = by_market[2]
    assert p2["status"] == "redeemable"
    assert p2["marketOutcome"] == "yes"
    assert (p2["claimable"], p2["costBasis"], p2["unrealizedPnl"], p2["totalPnl"]) == (
        "10.000000",
        "7.000000",
        "3.000000",
        "4.500000",
    )
    assert p2["noAveragePrice"] == "0.600000"
    # market 3 closed: realized −2
    p3 = by_market[3]
    assert (p3["status"], p3["realizedPnl"], p3["unrealizedPnl"], p3["totalPnl"]) == (
        "closed",
        "-2.000000",
        "0.000000",
        "-2.000000",
    )
    assert body["meta"]["total"] == 3
    only_open = filled.get(f"/v1/users/{TRADER}/positions", params={"status": "open"}).json()["data"]
    assert [p["marketId"] for p in only_open] == [1]
    s = filled.get(f"/v1/users/{TRADER.upper().replace('0X', '0x')}").json()["data"]
    assert s["positions"] == {"open": 1, "redeemable": 1, "closed": 1}
    assert (s["costBasis"], s["positionsValue"]) == ("37.000000", "40.487804")
    assert (s["realizedPnl"], s["unrealizedPnl"], s["totalPnl"]) == ("-0.500000", "3.487804", "2.987804")
    assert s["claimableWinnings"] == "10.000000"
    assert s["volume"] == "56.000000"


def test_user_trades_activity_and_empty_user(filled: TestClient) -> None:
    """Trades and activity list the user's events; an unknown address is an empty user, not a 404."""
    t = filled.get(f"/v1/users/{TRADER}/trades").json()
    assert [x["blockNumber"] for x in t["data"]] == [20]
    a = filled.get(f"/v1/users/{TRADER}/activity").json()
    assert [x["kind"] for x in a["data"]] == ["trade"]
    empty = filled.get("/v1/users/0x" + "00" * 20).json()["data"]
    assert empty["totalPnl"] == "0.000000"
    assert empty["positions"] == {"open": 0, "redeemable": 0, "closed": 0}
    assert_error(filled.get("/v1/users/0x1234"), 400, "address")
    assert filled.get(f"/v1/users/{TRADER}/holdings").json()["data"] == []
    d = filled.get(f"/v1/users/{TRADER}/dividends").json()["data"]
    assert d["totalClaimable"] == "0.000000"
    assert d["claimed"] == []


def test_leaderboards_and_stats(filled: TestClient) -> None:
    """Leaderboards rank traders by average-cost PnL (all time) or volume; stats count the window."""
    lb = filled.get("/v1/leaderboards/traders").json()
    # TRADER total 2.987804; OTHER holds 25 NO for 20 → value 25e6*80e6//205e6 = 9756097 → −10.243903
    assert [(x["trader"], x["pnl"]) for x in lb["data"]] == [(TRADER, "2.987804"), ("0x" + "b2" * 20, "-10.243903")]
    v = filled.get("/v1/leaderboards/traders", params={"by": "volume", "window": "24h"}).json()["data"]
    assert [(x["trader"], x["volume"]) for x in v] == [(TRADER, "30.000000")]
    st = filled.get("/v1/stats", params={"window": "24h"}).json()["data"]
    assert (st["trades"], st["volume"], st["activeUsers"], st["marketsTotal"], st["marketsOpen"]) == (
        1,
        "30.000000",
        1,
        3,
        1,
    )
    assert filled.get("/v1/stats").json()["data"]["trades"] == 2
    assert filled.get("/v1/leaderboards/creators").json()["data"] == []
    assert_error(filled.get("/v1/leaderboards/traders", params={"window": "1y"}), 400, "window")


def test_live_leaderboard_is_ranked_once_and_every_page_is_a_slice(filled: TestClient, settings: Settings) -> None:
    """No keeper ranking yet: the first page ranks the top leaderboard_size once (review h3: every
    uncached page ranked every position again); other pages, limits and requests slice it."""
    runs = filled.app.state.runtime.state.metrics.live_rankings.labels("traders")  # type: ignore[attr-defined]
    before = runs._value.get()
    whole = filled.get("/v1/leaderboards/traders", params={"limit": 2}).json()
    assert whole["meta"]["source"] == "live"
    assert (whole["meta"]["total"], len(whole["data"])) == (2, 2)
    one = filled.get("/v1/leaderboards/traders", params={"limit": 1}).json()
    two = filled.get("/v1/leaderboards/traders", params={"limit": 1, "page": 2}).json()
    past = filled.get("/v1/leaderboards/traders", params={"limit": 1, "page": 3}).json()
    assert one["data"] + two["data"] == whole["data"]
    assert [r["rank"] for r in one["data"] + two["data"]] == [1, 2]
    assert (one["meta"]["totalPages"], two["meta"]["hasNext"], past["data"], past["meta"]["total"]) == (2, False, [], 2)
    assert runs._value.get() - before == 1
    filled.get("/v1/leaderboards/traders", params={"by": "volume"})
    assert runs._value.get() - before == 2  # another order is another ranking

    small = dataclasses.replace(settings, api=dataclasses.replace(settings.api, leaderboard_size=1))
    with TestClient(create_app(small, serve_feed=False)) as c:
        top = c.get("/v1/leaderboards/traders", params={"limit": 5}).json()
    assert (top["data"], top["meta"]["total"]) == (whole["data"][:1], 1)

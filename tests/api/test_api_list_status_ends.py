"""Review s20 ha, the defect guarded against:
a market that reaches its end time leaves the `status=active` list and joins the
`status=closed` one with no chain event. Only answers that SHOW an active market are marked stale
at its end (Ctx.stale_at in market_status); a list filtered on status whose page does not show the
ending market (status=closed, or status=active on another page) stays cached for cache_ttl_s."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import asyncpg
import pytest
from starlette.testclient import TestClient

from tests.api.rows import NOW, U, head, market

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ENDS_IN_S = 5


async def ending_market(dsn: str) -> float:
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=ENDS_IN_S + 1)
    conn = await asyncpg.connect(dsn)
    try:
        await head(conn, 100, safe=90, finalized=80)
        # market 7 ends in a few seconds; market 8 (created later, so first by createdAt) in a week
        await market(conn, 7, end=end - (NOW - dt.timedelta(days=2)), y=100 * U, n=100 * U)
        await market(conn, 8, block=20, created=NOW - dt.timedelta(days=1))
    finally:
        await conn.close()
    return end.timestamp()


def test_status_filtered_lists_follow_a_market_ending_off_the_page(client: TestClient, db_dsn: str) -> None:
    ends = asyncio.run(ending_market(db_dsn))
    closed_url = "/v1/markets?status=closed"
    active_url = "/v1/markets?status=active&limit=1"  # page 1 shows market 8 only; market 7 is on page 2
    for url in (closed_url, active_url):
        first, second = client.get(url), client.get(url)
        assert first.status_code == second.status_code == 200, first.text
    assert [m["id"] for m in client.get(closed_url).json()["data"]] == []
    before = client.get(active_url).json()
    assert ([m["id"] for m in before["data"]], before["meta"]["total"]) == ([8], 2)

    time.sleep(max(0.0, ends - time.time()) + 1.1)
    closed = client.get(closed_url)
    active = client.get(active_url)
    # market 7 has ended: it is closed, and only market 8 is still active
    got = (
        [m["id"] for m in closed.json()["data"]],
        active.json()["meta"]["total"],
        closed.headers.get("x-cache"),
        active.headers.get("x-cache"),
    )
    assert got[:2] == ([7], 1), got

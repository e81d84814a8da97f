"""Review of 3a07a05 (lists filtered on status=active/closed stale from the next end time among the markets
the list could hold): every variant of /v1/markets lives in one Redis hash, `markets:list`, and Cache.set
shortens the whole hash's TTL to the variant's (EXPIRE … LT). A status-filtered list now carries the next
end time of ANY open market (on a big chain: seconds away), so one `status=closed` request cuts the life of
every cached list variant — the unfiltered pages, every sort — to that: a hit-rate collapse of the hottest
key under load. Before the fix the filtered variant kept cache_ttl_s and the others were untouched."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest
import redis
from starlette.testclient import TestClient

from api.settings import Settings
from tests.api.rows import NOW, U, head, market

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ENDS_IN_S = 120


async def markets(dsn: str) -> None:
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=ENDS_IN_S)
    conn = await asyncpg.connect(dsn)
    try:
        await head(conn, 100, safe=90, finalized=80)
        # market 7 ends in two minutes (category weather); market 8 (created later: first by createdAt) in a week
        await market(conn, 7, end=end - (NOW - dt.timedelta(days=2)), category="weather", y=100 * U, n=100 * U)
        await market(conn, 8, block=20, created=NOW - dt.timedelta(days=1))
    finally:
        await conn.close()


def test_a_status_filtered_list_does_not_cut_the_life_of_every_list_variant(
    client: TestClient, settings: Settings, redis_url: str, db_dsn: str
) -> None:
    asyncio.run(markets(db_dsn))
    r = redis.Redis.from_url(redis_url)
    key = f"{settings.api.cache_prefix}:{settings.chain_id}:markets:list"
    try:
        hot = client.get("/v1/markets?limit=1")  # the front page: market 8, ending in a week
        assert hot.status_code == 200, hot.text
        assert [m["id"] for m in hot.json()["data"]] == [8], hot.text
        kept_ms = r.pttl(key)
        assert kept_ms > (settings.api.cache_ttl_s - 60) * 1000, kept_ms

        closed = client.get("/v1/markets?status=closed")  # nothing closed yet; market 7 closes in 2 min
        assert closed.status_code == 200, closed.text
        assert closed.json()["data"] == [], closed.text
        after_ms = r.pttl(key)
        hit = client.get("/v1/markets?limit=1")
        assert hit.headers.get("x-cache") == "hit"
        assert after_ms > (settings.api.cache_ttl_s - 60) * 1000, (
            f"the front page's cache entry now expires in {after_ms / 1000:.0f} s (was {kept_ms / 1000:.0f} s):"
            " one status=closed request shortened the whole markets:list hash to market 7's end"
        )
    finally:
        r.close()

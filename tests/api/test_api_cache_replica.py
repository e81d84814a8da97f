"""Review s20 ha, the defect guarded against:
with a read replica ([database].read_dsn), the outbox pump reads the primary and clears
the cache as soon as a row commits there, but the answers that refill the cache are read on the
replica, which may not hold the write yet. A request in that window caches the pre-write answer
again — after the only invalidation that write will ever get — and it is served for cache_ttl_s
(300 s), or until the market's next event, although the replica caught up long ago. (The feed's
resume waits for the replica to hold the head, Hub._replica_at; the cache does not.)"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, outbox

pytestmark = [pytest.mark.pg, pytest.mark.redis]

NEW_VOLUME = "77.000000"
UPDATE = f"UPDATE idx.markets SET volume = 77000000 WHERE chain_id = {CHAIN} AND market_id = 1"


async def _write_on_primary(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(UPDATE)
        await outbox(conn, "market:trade", ["global:all", "market:1"], {"market_id": 1}, 101, 0)
    finally:
        await conn.close()


async def _replica_catches_up(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(UPDATE)
    finally:
        await conn.close()


def test_an_invalidation_is_not_undone_by_a_replica_behind_the_primary(
    db_dsn: str, replica_dsn: str, redis_url: str
) -> None:
    settings = dataclasses.replace(make_settings(db_dsn, redis_url), read_dsn=replica_dsn)
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        state = c.app.state.runtime.state  # type: ignore[attr-defined]
        first = c.get("/v1/markets/1")
        assert first.status_code == 200, first.text
        assert first.json()["data"]["volume"] == "50.000000"
        generation = state.cache.generation

        asyncio.run(_write_on_primary(db_dsn))  # the indexer commits a trade of market 1
        for _ in range(300):
            if state.cache.key_generation.get("market:1", 0) > generation:
                break
            time.sleep(0.05)
        assert state.cache.key_generation.get("market:1", 0) > generation, "the pump did not invalidate market:1"
        during = c.get("/v1/markets/1")  # a request while the replica lags: the old volume, fair enough
        assert during.json()["data"]["volume"] == "50.000000"

        asyncio.run(_replica_catches_up(replica_dsn))
        after = c.get("/v1/markets/1")
        # the replica holds the trade now: the answer must not be the pre-trade one kept from the lag
        assert after.json()["data"]["volume"] == NEW_VOLUME, (
            after.headers.get("x-cache"),
            after.json()["data"]["volume"],
        )

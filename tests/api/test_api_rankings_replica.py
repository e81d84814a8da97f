"""Review of 3a07a05 (an answer read on a replica behind the primary is not cached): the live rankings
(api/rankings.py) are another cache of replica answers, kept in process memory for aggregate_cache_ttl_s
and not covered by the held_seq guard. A reorg clears the chain's cache and moves its generation, so the
next request ranks again — on the replica, which has not replayed the reorg yet — and that ranking is
kept under the NEW generation: the removed trader stays ranked after the replica caught up ("a reorg never
leaves removed trades ranked", review h5)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, OTHER, outbox

pytestmark = [pytest.mark.pg, pytest.mark.redis]

GONE = "0x" + OTHER.hex()
REORG = f"DELETE FROM idx.positions WHERE chain_id = {CHAIN} AND holder = '\\x{OTHER.hex()}'::bytea"


async def _reorg_on_primary(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(REORG)  # the indexer rolls back the block with OTHER's trade
        await outbox(conn, "chain:reorg", ["global:all"], {"from_block": 15}, 15, None)
    finally:
        await conn.close()


async def _replica_catches_up(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(REORG)
    finally:
        await conn.close()


def _traders(c: TestClient, page: int) -> list[str]:
    r = c.get(f"/v1/leaderboards/traders?limit=1&page={page}")
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["source"] == "live", r.json()["meta"]
    return [t["trader"] for t in r.json()["data"]] + [f"total={r.json()['meta']['total']}"]


def test_a_live_ranking_computed_on_a_lagging_replica_is_not_kept_past_the_reorg(
    db_dsn: str, replica_dsn: str, redis_url: str
) -> None:
    settings = dataclasses.replace(make_settings(db_dsn, redis_url), read_dsn=replica_dsn)
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        state = c.app.state.runtime.state  # type: ignore[attr-defined]
        assert _traders(c, 1)[-1] == "total=2"
        generation = state.cache.all_generation

        asyncio.run(_reorg_on_primary(db_dsn))
        for _ in range(300):
            if state.cache.all_generation > generation:
                break
            time.sleep(0.05)
        assert state.cache.all_generation > generation, "the pump did not clear the cache for the reorg"
        assert _traders(c, 1)[-1] == "total=2"  # the replica lags: the pre-reorg ranking, fair enough

        asyncio.run(_replica_catches_up(replica_dsn))
        after = _traders(c, 2)  # another page: not the HTTP answer cached, the ranking kept in memory
        assert GONE not in after, f"a trader the reorg removed is still ranked after the replica caught up: {after}"
        assert after[-1] == "total=1", after

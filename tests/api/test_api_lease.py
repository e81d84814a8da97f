"""A request's pool connection (api/context.py Lease) around a live ranking's wait (review s19 h3, an
adversarial review of cf518d9); each test failed on the code it was written against.

1. A waiter whose ranking was computed took a connection again only to give it back: with the pool held by
   other requests it got 503 "Service busy" with its answer in hand. It now takes one only to compute.
2. A computation failing with its connection gone was re-raised by every waiter through its own
   connection, which core.pgerrors.pooled then terminated: one lost backend cost one connection per waiter.
3. The per-address cap's exemption ("while half the pool is idle") counted requests, waiters included:
   it now counts the connections checked out.
4. api_pool_connections_in_use was never set: it is read when /metrics is scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from api.app import Runtime
from api.context import in_use as pool_in_use
from api.settings import Settings
from tests.api.conftest import make_settings
from tests.api.rows import scenario
from tests.api.test_api_load import serving

pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.slow]


def in_use(rt: Runtime) -> int:
    assert rt.state is not None
    return pool_in_use(rt.state.read_pool)


def pool_settings(db_dsn: str, redis_url: str, pool: int, acquire_s: float = 2.0, statement_ms: int = 6000) -> Settings:
    """A read pool of `pool` connections, all open; one request of an address on the database at once."""
    return make_settings(
        db_dsn,
        redis_url,
        pool_max=pool,
        pool_min=pool,
        statement_timeout_ms=statement_ms,
        pool_acquire_timeout_s=acquire_s,
        db_requests_per_ip=1,
        forwarded_allow_ips=["127.0.0.1"],
    )


async def get(http: aiohttp.ClientSession, url: str, client: str) -> tuple[int, str]:
    async with http.get(url, headers={"X-Forwarded-For": client}) as r:
        return r.status, (await r.text())[:300]


@contextlib.asynccontextmanager
async def held_ranking(
    db_dsn: str, rt: Runtime, http: aiohttp.ClientSession, base: str, n: int, path: str = "/v1/leaderboards/traders"
) -> AsyncIterator[tuple[asyncpg.Connection, list[asyncio.Future[tuple[int, str]]]]]:
    """`n` page variants of one live ranking from `n` addresses (10.0.3.1 ...), its computation held up by
    a lock on its table (idx.positions, or idx.ev_trade for a window): one leader, n - 1 waiters away.
    Yields the lock's connection (its transaction open) and the requests."""
    assert rt.state is not None
    table = "idx.ev_trade" if "window=" in path else "idx.positions"
    locker = await asyncpg.connect(db_dsn)
    tx = locker.transaction()
    await tx.start()
    await locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    sep = "&" if "?" in path else "?"
    pages = [asyncio.ensure_future(get(http, f"{base}{path}{sep}page={i}", f"10.0.3.{i}")) for i in range(1, n + 1)]
    try:
        for _ in range(500):
            if rt.state.rankings._flights and sum(rt.state.db_requests.values()) == n:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"{n} requests on the ranking never in flight: {rt.state.db_requests}")
        await asyncio.sleep(0.3)  # the waiters are away
        yield locker, pages
    finally:
        with contextlib.suppress(Exception):
            await tx.rollback()
        await locker.close()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pages, return_exceptions=True)


async def test_waiters_whose_ranking_is_computed_are_not_refused_for_a_connection_they_do_not_need(
    db_dsn: str, redis_url: str
) -> None:
    await scenario(db_dsn)
    settings = pool_settings(db_dsn, redis_url, 3, acquire_s=1.0)
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as http:
        assert rt.state is not None
        registry = rt.state.metrics.registry
        # the ranking of a window (idx.ev_trade) is held up: one leader, three waiters away
        async with held_ranking(db_dsn, rt, http, base, 4, "/v1/leaderboards/traders?window=7d") as (ranking, pages):
            # meanwhile two other clients' requests hold the rest of the pool (idx.markets locked by a migration)
            other = await asyncpg.connect(db_dsn)
            tx = other.transaction()
            await tx.start()
            await other.execute("LOCK TABLE idx.markets IN ACCESS EXCLUSIVE MODE")
            slow = [asyncio.ensure_future(get(http, f"{base}/v1/markets/{m}", f"10.0.4.{m}")) for m in (1, 2)]
            for _ in range(500):
                if in_use(rt) == 3:
                    break
                await asyncio.sleep(0.02)
            assert in_use(rt) == 3
            # a third one queues for a connection, then the ranking finishes (its connection goes to it)
            third = asyncio.ensure_future(get(http, f"{base}/v1/markets/3", "10.0.4.3"))
            await asyncio.sleep(0.2)
            await ranking.execute("COMMIT")  # the ranking is computed
            statuses = await asyncio.gather(*pages)
            await tx.rollback()
            await other.close()
            await asyncio.gather(*slow, third)
        busy = registry.get_sample_value("api_pool_acquire_timeouts_total", {"pool": "read"})
    # every waiter's answer was in hand (a slice of the computed ranking): none needs the database again
    assert [s for s, _ in statuses] == [200] * 4, f"{statuses} ({busy} pool timeouts)"


async def test_a_lost_leader_connection_does_not_terminate_every_waiters_connection(
    db_dsn: str, redis_url: str
) -> None:
    await scenario(db_dsn)
    settings = pool_settings(db_dsn, redis_url, 5)
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as http:
        assert rt.state is not None
        pool = rt.state.read_pool
        for _ in range(250):
            if pool.get_size() == 5:
                break
            await asyncio.sleep(0.02)
        assert pool.get_size() == 5
        async with held_ranking(db_dsn, rt, http, base, 4) as (locker, pages):
            # the leader's backend ends (a crash of that backend, an admin's pg_terminate_backend)
            pid = await locker.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND query LIKE '%position_pnl%'"
            )
            assert pid is not None
            assert await locker.fetchval("SELECT pg_terminate_backend($1)", pid)
            statuses = await asyncio.gather(*pages)
        await asyncio.sleep(0.5)  # every connection back
        alive = pool.get_size()
    assert sorted(s for s, _ in statuses) == [503] * 4, statuses
    # one backend was lost; the three waiters' connections were fine
    assert alive == 4, f"{5 - alive} of the pool's 5 connections lost for one lost backend (waiters terminated theirs)"


async def test_an_address_waiting_on_a_ranking_is_not_refused_while_most_of_the_pool_is_idle(
    db_dsn: str, redis_url: str
) -> None:
    await scenario(db_dsn)
    settings = pool_settings(db_dsn, redis_url, 8)
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as http:
        assert rt.state is not None
        async with held_ranking(db_dsn, rt, http, base, 4) as (_locker, _pages):
            held = in_use(rt)
            # 10.0.3.2, one of the waiters (it holds no connection), asks for another page of the site
            status, body = await get(http, base + "/v1/markets/1", "10.0.3.2")
    assert held == 1  # the leader's: 7 of 8 idle
    assert status == 200, f"{status} {body} with {8 - held} of 8 connections idle"


async def test_the_pool_in_use_gauge_counts_the_connections_checked_out(db_dsn: str, redis_url: str) -> None:
    await scenario(db_dsn)
    settings = pool_settings(db_dsn, redis_url, 4)
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as http:
        assert rt.state is not None
        registry = rt.state.metrics.registry
        async with held_ranking(db_dsn, rt, http, base, 3):
            held = in_use(rt)
            async with http.get(base + "/metrics") as r:
                await r.read()
            gauge: Any = registry.get_sample_value("api_pool_connections_in_use", {"pool": "read"})
    assert held == 1
    assert gauge == held, f"api_pool_connections_in_use{{pool=read}} = {gauge} with {held} checked out"

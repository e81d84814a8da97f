"""Review s20 ha, the defect guarded against:
concurrent misses of one cached variant share one query (Cache.lead/join), but only its
success. When the leader fails (a statement timeout on an expensive variant: 503), every request that
joined it wakes with None and runs the same query itself, all at once: the first becomes a new leader,
the others run "alone" (Cache.lead returns None while a leader exists). N requests that arrived
together cost N executions of the query that just timed out, each holding a pool connection for its
own timeout — the herd Rankings already prevents for live rankings (review h5: a computation that fails
fails its waiters too). Same for a 404: no request for a missing market ever shares the lookup."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
import httpx
import pytest

import api.app as app_module
from api.app import create_app
from api.context import Ctx
from tests.api.conftest import make_settings
from tests.api.rows import scenario

pytestmark = [pytest.mark.pg, pytest.mark.redis]
N = 12


async def test_requests_joined_to_a_failed_leader_do_not_all_rerun_its_query(
    db_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await scenario(db_dsn)
    calls = {"n": 0}
    release = asyncio.Event()

    async def expensive_and_timing_out(ctx: Ctx) -> dict[str, Any]:
        calls["n"] += 1
        await release.wait()  # the variant's query runs until the statement timeout...
        raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")

    endpoints = [
        dataclasses.replace(ep, handler=expensive_and_timing_out) if ep.path == "/v1/markets" else ep
        for ep in app_module.ENDPOINTS
    ]
    monkeypatch.setattr(app_module, "ENDPOINTS", endpoints)
    settings = make_settings(db_dsn, redis_url, db_requests_per_ip=1000, pool_max=4)
    app = create_app(settings, serve_feed=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            url = "/v1/markets?sort=volume:asc&limit=7"
            tasks = [asyncio.create_task(http.get(url)) for _ in range(N)]
            for _ in range(200):  # every request has arrived: one leads, the others joined it
                await asyncio.sleep(0.01)
                cache = app.state.runtime.state.cache
                if calls["n"] >= 1 and len(cache.inflight) == 1:
                    break
            await asyncio.sleep(0.2)
            assert calls["n"] == 1  # before the failure: one query for N requests
            release.set()
            answers = await asyncio.gather(*tasks)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [503] * N, statuses
    # the one failure answers every request that waited for it; nobody runs the timed-out query again
    assert calls["n"] == 1, f"{calls['n']} executions of the failed query for {N} concurrent requests"

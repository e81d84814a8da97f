"""api.cache.warm — what the keeper's cache-warming job calls — against a real uvicorn server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import uvicorn

from api.app import create_app
from api.cache import HOT_PATHS, warm
from tests.api.conftest import make_settings
from tests.api.rows import scenario
from tests.chain import free_port

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def test_warm_fills_the_hot_keys(db_dsn: str, redis_url: str) -> None:
    """warm(base_url) requests the hot endpoints; afterwards they answer from the cache."""
    await scenario(db_dsn)
    port = free_port()
    app = create_app(make_settings(db_dsn, redis_url), serve_feed=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1500):  # uvicorn exposes no started event; 30 s
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start in 30 s"
        base = f"http://127.0.0.1:{port}"
        statuses = await warm(base)
        assert set(HOT_PATHS) <= set(statuses)
        assert all(s == 200 for s in statuses.values()), statuses
        assert "/v1/markets/1" in statuses  # the top markets' details too
        async with aiohttp.ClientSession() as http:
            for path in ("/v1/markets", "/v1/markets/1", "/v1/stats"):
                async with http.get(base + path) as r:
                    assert r.headers["x-cache"] == "hit", path
    finally:
        server.should_exit = True
        await task

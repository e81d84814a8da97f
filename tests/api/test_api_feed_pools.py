"""Review hb: the feed of a real `python -m api` (started as production does) and its database pools,
attacked over real sockets. Outcomes are counted, never timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from websockets.asyncio.client import connect

from tests.api.process import healthy, start_api
from tests.api.rows import scenario

pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.slow]


@contextlib.asynccontextmanager
async def api_process(db_dsn: str, redis_url: str, tmp: Path, extra: str = "") -> AsyncIterator[tuple[str, str]]:
    """`python -m api --config` as production starts it: (http base, feed url)."""
    await scenario(db_dsn)
    with (tmp / "out.log").open("wb") as sink:
        api = start_api(db_dsn, redis_url, tmp, f"outbox_poll_s = 0.2\nrate_limit_ip = 100000\n{extra}", sink)
    proc = api.proc
    try:
        async with aiohttp.ClientSession() as http:
            await healthy(http, api.base)
        yield api.base, api.feed_url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + " ") or line.startswith(name + "{")) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_the_feed_pool_is_on_metrics_like_the_others(db_dsn: str, redis_url: str, tmp_path: Path) -> None:
    """docs/api.md: api_pool_connections_in_use{pool} is the connections checked out when /metrics is
    scraped. The feed's replays have their own pool (feed_pool_max), the one a hostile resume loop
    would drain, and it is not reported: a leak or an exhausted feed pool cannot be seen."""
    async with api_process(db_dsn, redis_url, tmp_path) as (base, url):
        async with connect(url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:1"], "since": 0}))
            while json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] != "replayed":
                pass
        async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
            pools = sorted(
                line.split("}")[0] + "}"
                for line in (await r.text()).splitlines()
                if line.startswith("api_pool_connections_in_use{")
            )
    assert 'api_pool_connections_in_use{pool="feed"}' in pools, pools


async def test_a_resume_beyond_the_head_does_not_wait_on_the_pumps_connection(
    db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """A resume whose since is beyond the worker's head asks ISSUED_SEQ_SQL on `primary`, which is the
    outbox pump's pool (one connection per chain, api/app.py: "the outbox pumps read on connections of
    their own"). While the pump's read waits in PostgreSQL, the resume finds no connection within
    PAGE_ACQUIRE_S and answers replay_unavailable instead of since_too_old; and every such resume (30 a
    minute per address, from any number of addresses) takes the pump's only connection in turn."""
    async with api_process(db_dsn, redis_url, tmp_path) as (_base, url):
        locker = await asyncpg.connect(db_dsn)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE idx.outbox IN ACCESS EXCLUSIVE MODE")
            await asyncio.sleep(1)  # the pump polls every outbox_poll_s (0.2 s): its read now waits on the lock
            async with connect(url) as ws:
                await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:1"], "since": 10**12}))
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if m["type"] in ("replayed", "error"):
                        break
            await tx.rollback()
        finally:
            await locker.close()
    assert m.get("code") == "since_too_old", m

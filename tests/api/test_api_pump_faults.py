"""The outbox pump (cache invalidation and the feed, per API process) outlives its parts' faults: a
sink that raises, and the database ending its sessions under it (review h2)."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import asyncpg
import pytest

from api.app import Runtime
from tests.api import rows
from tests.api.conftest import make_settings
from tests.api.test_api_connections import serving
from tests.chain import free_port

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def new_row(db_dsn: str) -> int:
    conn = await asyncpg.connect(db_dsn)
    try:
        return await rows.outbox(conn, "market:trade", ["global:all", "market:1"], {"market_id": 1})
    finally:
        await conn.close()


async def pumped(rt: Runtime, seq: int) -> None:
    assert rt.state is not None
    for _ in range(100):
        if rt.state.pump.last_seq >= seq:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the pump did not pass seq {seq} within 10 s (at {rt.state.pump.last_seq})")


async def test_a_sink_that_raises_does_not_stop_the_others_or_the_pump(db_dsn: str, redis_url: str) -> None:
    await rows.scenario(db_dsn)
    async with serving(make_settings(db_dsn, redis_url, port=free_port())) as (rt, _):
        assert rt.state is not None
        got: list[int] = []

        async def broken(batch: Any, safe: Any, fin: Any) -> None:
            raise RuntimeError("a bug in a sink")

        async def after(batch: Any, safe: Any, fin: Any) -> None:
            got.extend(r["seq"] for r in batch)

        rt.state.pump.sinks[:0] = [broken]
        rt.state.pump.sinks.append(after)
        first = await new_row(db_dsn)
        await pumped(rt, first)
        second = await new_row(db_dsn)
        await pumped(rt, second)
        assert first in got
        assert second in got


async def test_the_pump_follows_after_its_sessions_are_ended(db_dsn: str, redis_url: str) -> None:
    """Every API session ended three times (a restart, a failover): the pump reads new rows again and
    LISTEN is set up again."""
    db = urllib.parse.urlsplit(db_dsn).path.lstrip("/")
    await rows.scenario(db_dsn)
    async with serving(make_settings(db_dsn, redis_url, port=free_port())) as (rt, _):
        assert rt.state is not None
        await pumped(rt, await new_row(db_dsn))
        admin = await asyncpg.connect(db_dsn)
        try:
            for _ in range(3):
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND application_name LIKE 'gl-api%'",
                    db,
                )
                await asyncio.sleep(0.3)
        finally:
            await admin.close()
        await pumped(rt, await new_row(db_dsn))
        for _ in range(100):
            if rt.state.pump.listening:
                break
            await asyncio.sleep(0.1)
        assert rt.state.pump.listening

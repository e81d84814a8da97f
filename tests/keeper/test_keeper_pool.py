"""Every keeper use of its pool goes through keeper.store.connection: bounded (ACQUIRE_S), and a connection
the server ended while in use is terminated before it goes back, so the slot comes back (asyncpg 0.30 left it
waiting for ever: the API's pump stopped on it, review h2). No keeper module acquires from a pool another way."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import pytest

from core.pgerrors import CONNECTION_GONE
from keeper import store
from keeper.daemon import systemic_fault

pytestmark = [pytest.mark.pg]

KEEPER = Path(__file__).resolve().parents[2] / "keeper"


def test_no_keeper_module_acquires_from_a_pool_but_through_store_connection() -> None:
    direct = [
        f"{p.name}:{n}"
        for p in sorted(KEEPER.glob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\.acquire\(", line) and not line.lstrip().startswith("#")
    ]
    assert direct == []


async def test_a_connection_ended_in_use_gives_its_slot_back(db_dsn: str) -> None:
    pool = await store.create_pool(db_dsn, store.DbTimeouts(), min_size=1, max_size=1)
    killer = await asyncpg.connect(db_dsn)
    try:
        pids: list[int] = []

        async def ended_in_use() -> None:
            async with store.connection(pool) as conn:
                pids.append(conn.get_server_pid())
                sleeping = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
                await asyncio.sleep(0.3)
                assert await killer.fetchval("SELECT pg_terminate_backend($1)", pids[0])
                await sleeping

        with pytest.raises(CONNECTION_GONE):
            await ended_in_use()
        async with asyncio.timeout(10):  # the pool's one slot, usable again
            async with store.connection(pool) as conn:
                assert await conn.fetchval("SELECT 1") == 1
                assert conn.get_server_pid() != pids[0]
    finally:
        await killer.close()
        await store.close_pool(pool)


async def test_a_pool_that_stays_full_fails_the_step_bounded(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "ACQUIRE_S", 0.3)
    pool = await store.create_pool(db_dsn, store.DbTimeouts(), min_size=1, max_size=1)
    try:
        async with store.connection(pool):
            with pytest.raises(TimeoutError) as raised:
                async with store.connection(pool):
                    pass
        assert systemic_fault(raised.value) == "database_unreachable"
    finally:
        await store.close_pool(pool)

"""indexer/batch_writer.py against a real PostgreSQL: the backfill's writes run on their own thread,
event loop and connection; errors and cancellation come back to the caller, and a cancelled write
rolls back."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from indexer.batch_writer import SWITCH_SECONDS, BatchWriter
from indexer.settings import Settings, build_settings


def settings(dsn: str, tmp_path: Path) -> Settings:
    dep = tmp_path / "d.json"
    contracts = {"OpinionMarket": "0x" + "01" * 20, "CreatorShares": "0x" + "02" * 20, "USDC": "0x" + "03" * 20}
    dep.write_text(json.dumps({"chain_id": 31337, "deploy_block": 1, "contracts": contracts}))
    return build_settings(
        {"database": {"dsn": dsn}, "chain": {"chain_id": 31337, "rpc_urls": ["http://a"], "deployment": str(dep)}}
    )


def test_writes_run_on_their_own_thread_and_errors_come_back(db_dsn: str, tmp_path: Path) -> None:
    async def main() -> None:
        before = sys.getswitchinterval()
        async with BatchWriter(settings(db_dsn, tmp_path)) as w:
            assert sys.getswitchinterval() == SWITCH_SECONDS

            async def where(conn: asyncpg.Connection) -> tuple[int, str]:
                return threading.get_ident(), await conn.fetchval("SELECT current_setting('application_name')")

            ident, app = await w.run(where)
            assert ident != threading.get_ident()
            assert app == "gl-indexer-31337-batches"

            async def bad(conn: asyncpg.Connection) -> None:
                await conn.execute("SELECT * FROM no_such_table")

            with pytest.raises(asyncpg.UndefinedTableError):
                await w.run(bad)
            assert await w.run(lambda conn: conn.fetchval("SELECT 1")) == 1  # still usable after an error
        assert sys.getswitchinterval() == before
        assert not w.thread.is_alive()

    asyncio.run(main())


def test_a_cancelled_write_rolls_back(db_dsn: str, tmp_path: Path) -> None:
    """Cancelling the caller cancels the write on the writer's loop: its transaction rolls back and
    the connection serves the next write."""

    async def main() -> None:
        check = await asyncpg.connect(db_dsn)
        try:
            await check.execute("CREATE TABLE bw_probe (n int)")
            started = asyncio.Event()
            loop = asyncio.get_running_loop()
            async with BatchWriter(settings(db_dsn, tmp_path)) as w:

                async def slow(conn: asyncpg.Connection) -> Any:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO bw_probe VALUES (1)")
                        loop.call_soon_threadsafe(started.set)
                        await conn.execute("SELECT pg_sleep(30)")

                task = asyncio.create_task(w.run(slow))
                await asyncio.wait_for(started.wait(), 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(task, 10)

                async def insert(conn: asyncpg.Connection) -> None:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO bw_probe VALUES (2)")

                await asyncio.wait_for(w.run(insert), 10)
            assert [r["n"] for r in await check.fetch("SELECT n FROM bw_probe")] == [2]
        finally:
            await check.close()

    asyncio.run(main())

"""The GC tuning (indexer/runtime.py) rests on the write path making no reference cycles: with the
collector run rarely, a cycle holding a COPY payload would hold megabytes until it runs."""

from __future__ import annotations

import gc

import asyncpg

from indexer import bulk, runtime


async def test_copy_leaves_no_cyclic_garbage(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("CREATE TEMP TABLE t (a int, b text)")
        payload = b"1\tx\n" * 10_000
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await bulk.copy_payload(conn, "t", ["a", "b"], payload, schema=None)
            found = gc.collect()
        finally:
            gc.enable()
        # A BytesIO source left ~14 unreachable objects per call (a class, its methods and cells).
        assert found < 20, f"{found} unreachable objects after 20 COPYs"
        assert await conn.fetchval("SELECT count(*) FROM t") == 200_000
    finally:
        await conn.close()


def test_tune_gc_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        runtime.tune_gc()
        assert gc.get_threshold() == runtime.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)

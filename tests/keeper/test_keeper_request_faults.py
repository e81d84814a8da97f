"""Review h6 (medium): a one-off job request claimed by a healthy leader was stranded until a failover.

Daemon.serve_requests claims up to 20 requests, runs them one by one and writes each outcome; a database error
after the claim (here the outcome UPDATE meets a row lock past keeper.db_lock_timeout_s) ended the pass, and
the claim query only took rows with `started_at IS NULL OR epoch < $2`: the same leader never looked at its
own claimed rows again, `run --once` exited 4 promising "the leader runs it at its next poll", and `keeper
status` listed them open for ever. Now a pass starts with no request of this process in progress, so every
unfinished request is claimable (this epoch's too), and an outcome that could not be written is written by the
next pass without running the job again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from keeper import store
from keeper.daemon import Daemon
from tests.keeper.kit import fetch, make_settings

pytestmark = [pytest.mark.pg]


async def test_a_database_error_after_the_claim_is_healed_by_the_next_poll(db_dsn: str, tmp_path: Path) -> None:
    settings = make_settings("http://127.0.0.1:1", db_dsn, tmp_path / "d.json", db_lock_timeout_s=1.0)
    ids = [
        r["id"]
        for r in await fetch(
            db_dsn,
            "INSERT INTO keeper.job_requests (chain_id, job, requested_by)"
            " VALUES (31337, 'aggregate', 'ops'), (31337, 'notify', 'ops') RETURNING id",
        )
    ]
    d = Daemon(settings)
    side: list[asyncpg.Connection] = []
    ran: list[str] = []

    async def aggregate() -> dict[str, Any]:
        ran.append("aggregate")
        # the job itself succeeds; meanwhile another session holds the request's row (a transient fault)
        conn = await asyncpg.connect(db_dsn)
        side.append(conn)
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1 FROM keeper.job_requests WHERE id = $1 FOR UPDATE", ids[0])
        return {}

    async def notify() -> dict[str, int]:
        ran.append("notify")
        return {}

    d.aggregate = aggregate  # type: ignore[method-assign]
    d.notify = notify  # type: ignore[method-assign]
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        d.pool = pool
        assert (await d.leader.try_acquire()) is not None
        try:
            assert await d._serve_requests_logged() == 0  # the pass ends on the error (job_requests_failed)
            for conn in side:  # the fault is over: the database is healthy again
                await conn.execute("ROLLBACK")
                await conn.close()
            assert d.leader.is_leader
            polls = [await d._serve_requests_logged() for _ in range(3)]  # the same leader's next polls
        finally:
            await d.leader.release()
    rows = await fetch(db_dsn, "SELECT id, job, started_at, epoch, finished_at, outcome FROM keeper.job_requests")
    assert polls == [1, 0, 0]  # the outcome written late, the second request claimed again and run
    assert ran == ["aggregate", "notify"]  # each job ran once: the late outcome did not run it again
    assert all(r["epoch"] == 1 and r["finished_at"] is not None and r["outcome"] == "ok" for r in rows)
    assert d.metrics.job_request_errors._value.get() == 1
    assert d.metrics.job_requests_reclaimed._value.get() == 1

"""Review s20 hk: the operator CLI's database waits are unbounded (every keeper connection has lock_timeout and
statement_timeout; the CLI's own connection has neither)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from keeper import cli
from tests.keeper.kit import make_settings, queue

pytestmark = pytest.mark.pg


async def test_keeper_cancel_on_a_row_locked_elsewhere_does_not_wait_for_ever(
    db_dsn: str, deployment_path: Path
) -> None:
    """An operator's forgotten `BEGIN; SELECT … FOR UPDATE` in psql (or any long transaction) holds the queue
    entry. `keeper cancel` must give up with an answer (a refusal or an error naming the lock), as the daemon
    does after keeper.db_lock_timeout_s, instead of hanging the shell for as long as the other session lives.
    (30 s is only the test's guard against the hang; the keeper's lock timeout is 5 s.)"""
    qid = await queue(db_dsn, 7, 1)
    holder = await asyncpg.connect(db_dsn)
    try:
        tr = holder.transaction()
        await tr.start()
        await holder.execute("SELECT 1 FROM keeper.resolution_queue WHERE id = $1 FOR UPDATE", qid)
        settings = make_settings("http://127.0.0.1:1", db_dsn, deployment_path)
        try:
            code = await asyncio.wait_for(cli.cmd_cancel(settings, str(qid), "stale", "op"), 30)
        except asyncpg.PostgresError:
            code = -1  # an error naming the lock timeout is a bounded answer too
        except TimeoutError:
            pytest.fail("keeper cancel waited on the row lock for 30 s: the CLI's connection has no lock_timeout")
        assert code != 0
        await tr.rollback()
    finally:
        await holder.close()

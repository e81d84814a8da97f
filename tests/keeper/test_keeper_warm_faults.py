"""Review h6 (high): the API being down halted the keeper through the cache-warming job, labelled a database fault.

core.warm let aiohttp's errors through (ClientConnectorError, and TimeoutError for a hung API: both OSErrors)
and Daemon.systemic_fault read every OSError as `database_unreachable`, so max_consecutive_failures warm runs
halted the daemon and /ready failed for an API problem. Now warm raises WarmError within its deadline, warm is
never systemic nor a /ready failure, and `database_unreachable` is only the database's own connection errors.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from core.warm import WarmError, warm
from keeper import store
from keeper.daemon import Daemon, JobTimeout, systemic_fault
from tests.keeper.kit import make_settings
from tests.local_http import serving


@pytest.mark.pg
async def test_an_api_that_is_down_fails_the_warm_runs_but_never_halts_the_keeper(db_dsn: str, tmp_path: Path) -> None:
    """Connection refused by the API, max_consecutive_failures times: each run failed, no systemic fault,
    no halt, and /ready's job check stays green (warming is the API's business)."""
    settings = make_settings(
        "http://127.0.0.1:1",
        db_dsn,
        tmp_path / "d.json",
        warm_enabled=True,
        api_base_url="http://127.0.0.1:9",  # nothing listens: connection refused
        max_consecutive_failures=3,
    )
    d = Daemon(settings)
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        d.pool = pool
        assert (await d.leader.try_acquire()) is not None
        try:
            outcomes = [await d.run_job("warm", d.warm) for _ in range(3)]
            await d.check_ready()
        finally:
            await d.leader.release()
    faults = [s for m in d.metrics.systemic_faults.collect() for s in m.samples if s.name.endswith("_total")]
    assert outcomes == ["failed"] * 3
    assert d.halted is None
    assert not faults
    assert "WarmError" in d.last_detail["warm"]["error"]
    assert "fault" not in d.last_detail["warm"]
    assert "keeper.api_base_url" in d.last_detail["warm"]["error"]
    assert d._ready_checks["jobs"] is True


async def test_a_hung_api_is_a_warm_error_within_the_deadline() -> None:
    """An API that accepts the request and never answers: WarmError naming the URL, not a TimeoutError (an
    OSError) and not a job run outliving keeper.job_timeout_s."""
    release = asyncio.Event()

    async def hang(_: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    async with serving(app) as url:
        try:
            with pytest.raises(WarmError, match="no answer in time") as err:
                await warm(url, deadline_s=0.3)
        finally:
            release.set()
    assert not isinstance(err.value, OSError)
    assert url in str(err.value)


def test_only_the_databases_own_connection_errors_are_database_unreachable() -> None:
    """OSError and TimeoutError from anywhere else are ordinary failures (retried next tick, never a halt)."""
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    api_down = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    for exc in (OSError("a file"), TimeoutError(), api_down, WarmError("api down")):
        assert systemic_fault(exc) is None, exc
    for exc in (
        store.DatabaseUnreachable("refused"),
        store.PoolTimeout("no connection within 30 s"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.InterfaceError("connection is closed"),
    ):
        assert systemic_fault(exc) == "database_unreachable", exc
    assert systemic_fault(JobTimeout("x")) == "job_timeout"


async def test_store_connection_names_a_database_that_cannot_be_reached() -> None:
    """A pool whose server cannot be reached: the acquire's socket error is DatabaseUnreachable (an OSError still,
    for the callers that catch connection errors), and so `database_unreachable`."""
    async with store.create_pool("postgresql://x@127.0.0.1:9/x", store.DbTimeouts(), min_size=0, max_size=1) as pool:
        with pytest.raises(store.DatabaseUnreachable) as err:
            async with store.connection(pool):
                pass
    assert isinstance(err.value, OSError)
    assert systemic_fault(err.value) == "database_unreachable"

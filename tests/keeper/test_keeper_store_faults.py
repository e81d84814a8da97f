"""The keeper's database turning read-only under it (a failover to a demoted primary or a hot standby,
as PostgreSQL shows it to a client): said by /ready, logged with what to do, recovered from alone."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from tests.chain import free_port
from tests.keeper.kit import ChainOps, keeper_process, write_config
from tests.keeper.test_keeper_process import wait_role
from tests.pgfaults import read_only_database

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


def ready_code(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def wait_ready(port: int, code: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    seen = None
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(ready_code, port)
        if seen == code:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"/ready answered {seen}, not {code}, within {within_s} s")


async def test_a_database_turned_read_only_fails_ready_until_it_takes_writes_again(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """Before (review h2): the lease's renewal and every takeover's INSERT were refused, the keeper sat
    as an idle standby doing nothing, and /ready answered 200 for as long as it lasted. Now /ready is
    503 while the database refuses writes, the log names the error and the fix, and once the database
    takes writes again the keeper leads again by itself."""
    port = free_port()
    cfg = write_config(
        tmp_path / "k.toml", ops.anvil.url, db_dsn, deployment_path, resolve_interval_s=1, http_port=port
    )
    with keeper_process(cfg, "run") as proc:
        await wait_role(port, "leader")
        assert ready_code(port) == 200
        async with read_only_database(db_dsn):
            await wait_ready(port, 503, 30)
            for _ in range(3):  # and it stays so: not one 200 while no keeper can record anything
                await asyncio.sleep(1)
                assert await asyncio.to_thread(ready_code, port) == 503
        await wait_role(port, "leader")
        await wait_ready(port, 200, 30)
        assert proc.poll() is None
        proc.terminate()  # it stops after its current job's step (each waited for 30 s at most)
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            tail = (exc.stderr or b"")[-3000:]
            raise AssertionError(f"the keeper did not stop within 90 s of SIGTERM: {tail!r}") from None
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("event") == "leader_check_failed"]
    assert failed, err[-2000:]
    assert "ReadOnlySQLTransactionError" in failed[0]["error"]
    assert "[database].dsn at the primary" in failed[0]["hint"]


async def test_ready_fails_while_a_newer_build_has_migrated_the_database(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """The keeper checks the schema at start and on every /ready: a keeper left running after a newer
    build migrated is 503 (`checks.schema`), logged once, until the schema is its build's again."""
    port = free_port()
    cfg = write_config(tmp_path / "k.toml", ops.anvil.url, db_dsn, deployment_path, http_port=port)
    with keeper_process(cfg, "run") as proc:
        await wait_role(port, "leader")
        await wait_ready(port, 200, 30)
        conn = await asyncpg.connect(db_dsn)
        try:
            await conn.execute("INSERT INTO public.schema_migrations (version, name) VALUES (999, '999_newer.sql')")
            await wait_ready(port, 503, 30)
            await asyncio.to_thread(ready_code, port)  # a second probe: logged once, not per probe
            await conn.execute("DELETE FROM public.schema_migrations WHERE version = 999")
            await wait_ready(port, 200, 30)
        finally:
            await conn.close()
        proc.terminate()
        _, err = proc.communicate(timeout=90)
    mismatches = [
        x for x in (json.loads(x) for x in err.splitlines() if x.startswith("{")) if x.get("event") == "schema_mismatch"
    ]
    assert len(mismatches) == 1, err[-2000:]
    assert "migration 999, newer than this build" in mismatches[0]["problem"]

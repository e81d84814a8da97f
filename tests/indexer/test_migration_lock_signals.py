"""Review hi: signals while the indexer waits on the migration lock (another migrate running, or one
killed whose statement still runs: indexer/migrate.py waits up to 10 minutes, visibly).

- `python -m indexer` (run; it migrates at start) gets SIGTERM: docs/operations.md "SIGTERM stops each
  cleanly: the indexer within 15 s", docs/indexer.md "SIGTERM/SIGINT → … exits 0 within a few
  seconds". The stop event is set, but migrate() does not watch it: after STOP_GRACE_S (30 s) the run
  is cancelled (indexer_stuck_in_a_call) and the process exits 4, "stalled", which supervisors treat
  as a stall to restart.
- `python -m indexer migrate` gets SIGINT (Ctrl-C): KeyboardInterrupt is mapped to exit 0 (cli.py), so
  `python -m indexer migrate && restart the services` goes on with nothing migrated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from indexer.migrate import MIGRATION_LOCK
from tests.chain import ROOT
from tests.indexer.mocknode import DEPLOYMENT

pytestmark = [pytest.mark.pg]


@pytest.fixture
async def migration_lock_held(empty_db: str) -> AsyncIterator[str]:
    """Another session holds the migration lock of `empty_db` (a migrate in progress)."""
    conn = await asyncpg.connect(empty_db)
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK)
    try:
        yield empty_db
    finally:
        await conn.close()


def start(args: list[str], dsn: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    dep = tmp_path / "deployment.json"
    dep.write_text(json.dumps(DEPLOYMENT))
    log = tmp_path / "indexer.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("GL_")}
    env = {
        **base,
        "PYTHONPATH": str(ROOT),
        "GL_DATABASE__DSN": dsn,
        "GL_CHAIN__RPC_URLS": "http://127.0.0.1:1",
        "GL_CHAIN__DEPLOYMENT": str(dep),
        "GL_INDEXER__METRICS_PORT": "-1",
    }
    out = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer", *args], cwd=ROOT, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
    )
    return proc, log


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):
        if text in log.read_text():
            return
        assert proc.poll() is None, f"exited {proc.returncode} before {text}:\n{log.read_text()[-2000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no {text} in:\n{log.read_text()[-2000:]}")


def signalled_while_waiting(args: list[str], sig: int, dsn: str, tmp_path: Path) -> tuple[int, str]:
    """`python -m indexer ARGS`, sent `sig` once it waits for the migration lock: its exit code and log."""
    proc, log = start(args, dsn, tmp_path)
    try:
        wait_for(log, "migration_waiting_for_lock", proc)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, log.read_text()


async def test_sigterm_while_run_waits_for_the_migration_lock_is_a_clean_stop(
    migration_lock_held: str, tmp_path: Path
) -> None:
    code, text = signalled_while_waiting([], signal.SIGTERM, migration_lock_held, tmp_path)
    assert code == 0, f"SIGTERM while migrating at start: exit {code} (4 = stalled), not 0:\n{text[-1500:]}"


async def test_ctrl_c_during_migrate_is_not_exit_0(migration_lock_held: str, tmp_path: Path) -> None:
    code, text = signalled_while_waiting(["migrate"], signal.SIGINT, migration_lock_held, tmp_path)
    conn = await asyncpg.connect(migration_lock_held)
    try:
        migrated = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    finally:
        await conn.close()
    assert migrated or code != 0, (
        f"`python -m indexer migrate` interrupted before it applied anything exited {code} (success):\n{text[-1000:]}"
    )

"""Every program checks that the database holds exactly this build's migrations, says what to run
otherwise, and reports a wrong DSN or a failed migration in one line (review h4: tracebacks, a
keeper in a restart loop, an older indexer running on a newer schema unwarned, a migrate waiting
for the migration lock in silence)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from core.schema import SQL_DIR, schema_problem
from indexer.migrate import MIGRATION_LOCK, MigrationError, apply_migrations
from tests.chain import ROOT

pytestmark = [pytest.mark.pg]

DEPLOYMENT = {
    "chain_id": 31337,
    "deploy_block": 1,
    "contracts": {"OpinionMarket": "0x" + "11" * 20, "CreatorShares": "0x" + "22" * 20, "USDC": "0x" + "33" * 20},
}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GL_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), "GL_CHAIN__RPC_URLS": "http://127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def deployment(tmp_path: Path) -> str:
    p = tmp_path / "deployment.json"
    p.write_text(json.dumps(DEPLOYMENT))
    return str(p)


async def test_the_schema_check_names_what_to_run(db_dsn: str, empty_db: str, tmp_path: Path) -> None:
    older = tmp_path / "sql"  # an older build: fewer sql/ files than the database holds
    older.mkdir()
    files = sorted(SQL_DIR.glob("*.sql"))
    for p in files[:-2]:
        (older / p.name).write_text(p.read_text())
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await schema_problem(conn) is None
        ahead = await schema_problem(conn, older)
        assert ahead is not None
        assert f"has migration {files[-1].name[:3]}, newer than this build" in ahead
        assert await apply_migrations(conn, older) == []  # nothing to apply; the check is what refuses
    finally:
        await conn.close()
    conn = await asyncpg.connect(empty_db)
    try:
        behind = await schema_problem(conn)
        assert behind is not None
        assert "python -m indexer migrate" in behind
    finally:
        await conn.close()


async def test_migrate_waits_for_the_migration_lock_visibly_and_within_a_bound(db_dsn: str) -> None:
    holder = await asyncpg.connect(db_dsn)
    conn = await asyncpg.connect(db_dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        pid = await holder.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(MigrationError, match=f"pid {pid}"):
            await apply_migrations(conn, hold_max_s=1.0)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        assert await apply_migrations(conn, hold_max_s=1.0) == []  # free again: taken at once
    finally:
        await holder.close()
        await conn.close()


def test_keeper_and_api_refuse_a_database_behind_their_build(empty_db: str, tmp_path: Path) -> None:
    out = run(["-m", "keeper", "status"], {"GL_DATABASE__DSN": empty_db})
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-1500:]
    assert "python -m indexer migrate" in text
    assert "Traceback" not in text
    cfg = tmp_path / "api.toml"
    cfg.write_text((ROOT / "config" / "local.toml").read_text())
    out = run(["-m", "api", "--config", str(cfg)], {"GL_DATABASE__DSN": empty_db, "GL_API__PORT": "0"})
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-1500:]
    assert "python -m indexer migrate" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("kind", ["a database that does not exist", "a role that does not exist", "not a DSN"])
def test_a_wrong_dsn_is_one_line_naming_the_key(db_dsn: str, deployment: str, kind: str) -> None:
    base = db_dsn.rpartition("/")[0]
    dsn = {
        "a database that does not exist": f"{base}/gl_no_such_db",
        "a role that does not exist": db_dsn.replace("guesslyfe@", "gl_nobody@"),
        "not a DSN": "notadsn",
    }[kind]
    env = {"GL_DATABASE__DSN": dsn, "GL_CHAIN__DEPLOYMENT": deployment, "GL_INDEXER__METRICS_PORT": "-1"}
    for args in (["-m", "indexer", "migrate"], ["-m", "indexer", "reset"], ["-m", "keeper", "status"]):
        out = run(args, env)
        text = out.stdout + out.stderr
        assert "Traceback" not in text, f"{args}: {text[-1500:]}"
        assert out.returncode == 2, f"{args}: exit {out.returncode}: {text[-1500:]}"
        assert "database.dsn" in text, f"{args}: {text[-1500:]}"


def test_a_failed_migration_is_one_line_naming_its_file(empty_db: str, deployment: str) -> None:
    async def clash() -> None:  # 001 creates idx.blocks: here it exists already
        conn = await asyncpg.connect(empty_db)
        await conn.execute("CREATE SCHEMA idx; CREATE TABLE idx.blocks (x int)")
        await conn.close()

    asyncio.run(clash())
    env = {"GL_DATABASE__DSN": empty_db, "GL_CHAIN__DEPLOYMENT": deployment, "GL_INDEXER__METRICS_PORT": "-1"}
    out = run(["-m", "indexer", "migrate"], env)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-1500:]
    assert "migration_failed" in text
    assert "001_init.sql" in text
    assert "Traceback" not in text, text[-2000:]


def test_migrate_needs_no_deployment_file(db_dsn: str, tmp_path: Path) -> None:
    """Migrations do not depend on a chain: `python -m indexer migrate` (and the analysts' password
    rotation docs/sql.md gives) works before the first deploy or where deployments/ is absent. Before:
    exit 2, "chain.deployment … not found" (review h4). The other commands still need it."""
    env = {"GL_DATABASE__DSN": db_dsn, "GL_CHAIN__DEPLOYMENT": str(tmp_path / "absent.json")}
    out = run(["-m", "indexer", "migrate"], {**env, "GL_INDEXER__METRICS_PORT": "-1"})
    assert out.returncode == 0, (out.stdout + out.stderr)[-1500:]
    out = run(["-m", "indexer", "reset"], {**env, "GL_INDEXER__METRICS_PORT": "-1"})
    assert out.returncode == 2
    assert "chain.deployment" in out.stdout + out.stderr

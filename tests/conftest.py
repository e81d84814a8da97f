"""Real services for the tests: anvil processes started here, PostgreSQL and Redis started by
`scripts/services.sh` (make test does it; this file starts them too when they are down).

Isolation: one anvil per session with evm_snapshot/evm_revert around each test that asks for
it; a migrated template database cloned per test (`db_dsn`); a Redis database flushed per test.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from core.config import ServicesSettings, load_config, section
from core.deploy import DeployParams, anvil_account, deploy
from tests.chain import ROOT, Anvil

CONFIG = load_config(os.environ.get("GL_CONFIG", str(ROOT / "config" / "local.toml")))
SERVICES = section(CONFIG, "services", ServicesSettings)
PG_ADMIN_DSN = f"postgresql://guesslyfe@127.0.0.1:{SERVICES.pg_port}/postgres"
REDIS_URL = f"redis://127.0.0.1:{SERVICES.redis_port}"
# pytest-xdist workers (gw0, gw1, …) each get their own template database and Redis db number.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
WORKER_INDEX = int(WORKER.removeprefix("gw") or 0)
# Unique per pytest process, so two suites run at once on one cluster never drop each other's template.
TEMPLATE_DB = f"gl_test_template_{WORKER}_{os.getpid()}"


def _psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-tA",
            "-h",
            "127.0.0.1",
            "-p",
            str(SERVICES.pg_port),
            "-U",
            "guesslyfe",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


@pytest.fixture(scope="session")
def services() -> None:
    """Ensures PostgreSQL and Redis run (idempotent; make test already started them)."""
    subprocess.run(
        [str(ROOT / "scripts" / "services.sh"), "start", "pg", "redis"], check=True, stdout=subprocess.DEVNULL
    )


@pytest.fixture(scope="session")
def template_db(services: None) -> Iterator[str]:
    """A database with every migration applied, cloned by `db_dsn` for each test."""
    from indexer.migrate import apply_migrations_sync

    _psql(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
    _psql(f"CREATE DATABASE {TEMPLATE_DB}")
    dsn = f"postgresql://guesslyfe@127.0.0.1:{SERVICES.pg_port}/{TEMPLATE_DB}"
    apply_migrations_sync(dsn)
    yield TEMPLATE_DB
    _psql(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")


def _database(template: str | None) -> Iterator[str]:
    name = f"gl_t_{WORKER}_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    yield f"postgresql://guesslyfe@127.0.0.1:{SERVICES.pg_port}/{name}"
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_dsn(template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test, dropped afterwards."""
    yield from _database(template_db)


@pytest.fixture
def empty_db(services: None) -> Iterator[str]:
    """A database no migration has touched (what an operator has before `indexer migrate`), dropped after."""
    yield from _database(None)


@pytest.fixture
def redis_url(services: None) -> Iterator[str]:
    """A Redis database number per xdist worker, flushed before and after the test."""
    import redis

    db = 1 + WORKER_INDEX % 15
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """One automining anvil for the session; tests isolate with `chain` (snapshot/revert)."""
    node = Anvil()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="session")
def deployment(anvil: Anvil, w3: Web3) -> dict[str, Any]:
    """Contracts deployed once per session: admin = anvil account 0, keeper = account 1."""
    return deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams())


@pytest.fixture
def chain(anvil: Anvil, deployment: dict[str, Any]) -> Iterator[Anvil]:
    """The session anvil with the deployment, reverted to its state before the test afterwards."""
    with anvil.isolated():
        yield anvil

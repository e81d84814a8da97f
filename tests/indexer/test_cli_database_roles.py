"""Review hi: [database].dsn problems the indexer's commands do not refuse in one line.

docs/operations.md: "All three exit 2 with one line when `database.dsn` names a database, user or
password PostgreSQL refuses, or a malformed DSN, and when the database's schema is not this build's:
behind it ("run `python -m indexer migrate --config FILE` first")"; "the indexer needs a writer role";
docs/indexer.md: config errors are "one log line `config_invalid` naming the key". What was found:

- a DSN of a role that can log in but is not the writers' (the API's login, `IN ROLE api`): every
  command ends in `indexer_crashed` with a Python traceback and exit 1 (a supervisor restarts it for
  ever; exit 1 is "restart it");
- a DSN whose sessions are read-only (a hot standby / replica DSN, `default_transaction_read_only`):
  the same traceback for migrate, reset and run;
- `python -m indexer reset` on a database `migrate` never ran on: a traceback (UndefinedTableError),
  exit 1, instead of the schema check's one line naming what to run;
- `database.dsn = ""` (an unset secret: GL_DATABASE__DSN=$DSN with DSN empty) is accepted: libpq's
  defaults and PG* variables then choose the database, and the indexer migrates and indexes a
  database no config names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chain import ROOT
from tests.conftest import WORKER, _psql

pytestmark = [pytest.mark.pg]

FAKE_DEPLOYMENT = {
    "chain_id": 31337,
    "deploy_block": 1,
    "contracts": {"OpinionMarket": "0x" + "11" * 20, "CreatorShares": "0x" + "22" * 20, "USDC": "0x" + "33" * 20},
}


@pytest.fixture
def deployment(tmp_path: Path) -> str:
    p = tmp_path / "deployment.json"
    p.write_text(json.dumps(FAKE_DEPLOYMENT))
    return str(p)


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m indexer ARGS` with only the given GL_* variables (and no PG* ones unless given)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GL_", "PG"))}
    full = {
        **base,
        "PYTHONPATH": str(ROOT),
        "GL_CHAIN__RPC_URLS": "http://127.0.0.1:1",
        "GL_INDEXER__METRICS_PORT": "-1",
        "GL_INDEXER__MAX_FAILURES": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def one_line(out: subprocess.CompletedProcess[str], codes: tuple[int, ...], *fragments: str) -> None:
    text = out.stderr + out.stdout
    crashed = "Traceback" in text or "indexer_crashed" in text
    assert not crashed, f"exit {out.returncode} with a traceback (indexer_crashed), not one line:\n{text[-1500:]}"
    assert out.returncode in codes, f"exit {out.returncode}, wanted {codes}:\n{text[-1500:]}"
    assert any(all(f in line for f in fragments) for line in text.splitlines()), (
        f"no line holds {fragments}:\n{text[-1500:]}"
    )


@pytest.fixture
def api_login_dsn(db_dsn: str) -> Iterator[str]:
    """The DSN of a login in role api (the API's production login, docs/operations.md), on db_dsn."""
    login = f"gl_review_hi_{WORKER}_{uuid.uuid4().hex[:6]}"
    _psql(f"CREATE ROLE {login} LOGIN PASSWORD 'x' IN ROLE api")
    try:
        yield db_dsn.replace("guesslyfe@", f"{login}:x@") + "?role=api"
    finally:
        _psql(f"DROP OWNED BY {login} CASCADE", db_dsn.rsplit("/", 1)[1])
        _psql(f"DROP ROLE IF EXISTS {login}")


COMMANDS = [["migrate"], ["reset"], ["--no-migrate", "--exit-at-head"], ["--exit-at-head"]]
IDS = ["migrate", "reset", "run-no-migrate", "run"]


@pytest.mark.parametrize("args", COMMANDS, ids=IDS)
def test_a_dsn_of_a_role_that_is_not_the_writers_is_one_line_exit_2(
    api_login_dsn: str, deployment: str, args: list[str]
) -> None:
    out = cli(args, {"GL_DATABASE__DSN": api_login_dsn, "GL_CHAIN__DEPLOYMENT": deployment})
    one_line(out, (2,), "database.dsn")


@pytest.mark.parametrize("args", [["migrate"], ["reset"], ["--exit-at-head"]], ids=["migrate", "reset", "run"])
def test_a_read_only_dsn_is_one_line_not_a_traceback(db_dsn: str, deployment: str, args: list[str]) -> None:
    """A replica's DSN (sessions read-only): a configuration error (2) or, if taken for a failover in
    progress, the one-line exit 1 of an unusable database; never indexer_crashed with a traceback."""
    dsn = db_dsn + "?default_transaction_read_only=on"
    out = cli(args, {"GL_DATABASE__DSN": dsn, "GL_CHAIN__DEPLOYMENT": deployment})
    one_line(out, (1, 2), "database")


def test_reset_on_an_unmigrated_database_names_what_to_run(empty_db: str, deployment: str) -> None:
    out = cli(["reset"], {"GL_DATABASE__DSN": empty_db, "GL_CHAIN__DEPLOYMENT": deployment})
    one_line(out, (2,), "python -m indexer migrate")


def test_an_empty_dsn_is_refused_at_load(empty_db: str, deployment: str) -> None:
    """GL_DATABASE__DSN="" with the shell's PG* variables naming another database: it was migrated
    (exit 0) although no config names it. An empty required key is a config error naming it."""
    name = empty_db.rsplit("/", 1)[1]
    env = {
        "GL_DATABASE__DSN": "",
        "GL_CHAIN__DEPLOYMENT": deployment,
        "PGHOST": "127.0.0.1",
        "PGPORT": empty_db.rsplit(":", 1)[1].split("/", 1)[0],
        "PGUSER": "guesslyfe",
        "PGDATABASE": name,
    }
    out = cli(["migrate"], env)
    touched = _psql("SELECT to_regclass('public.schema_migrations') IS NOT NULL", name)
    assert (out.returncode, touched) == (2, "f"), (
        f"database.dsn = '' accepted: exit {out.returncode}, database {name} (named by no config, only PG*"
        f" variables) migrated: {touched == 't'}\n{(out.stderr + out.stdout)[-800:]}"
    )
    one_line(out, (2,), "database.dsn")


def test_migrate_needs_only_the_database_section(db_dsn: str, tmp_path: Path) -> None:
    """docs/operations.md: "`python -m indexer migrate --config FILE` needs only `[database]` (no
    deployment file: migrations are the same for every chain)". A file with only [database] is refused:
    `missing required key chain.chain_id` (build_settings reads [chain] for every command)."""
    cfg = tmp_path / "db-only.toml"
    cfg.write_text(f'[database]\ndsn = "{db_dsn}"\n')
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GL_", "PG"))}
    out = subprocess.run(
        [sys.executable, "-m", "indexer", "migrate", "--config", str(cfg)],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, f"exit {out.returncode}: {(out.stderr + out.stdout)[-600:]}"

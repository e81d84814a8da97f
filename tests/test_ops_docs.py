"""The operator's pages run as written: every ```sh block of docs/keeper.md and docs/operations.md
(blocks marked `<!-- illustration only -->` aside) in bash, from a directory laid out like the
repository, against a live chain (the session anvil with the contracts) and a fresh database. The
commands are verbatim; only the environment points `config/local.toml` at the test's services
(GL_* overrides, as operators do)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from indexer.migrate import apply_migrations_sync
from tests.chain import ROOT, Anvil, free_port

pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.anvil, pytest.mark.slow]


def sh_blocks(page: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text()
    return [
        m.group(2) for m in re.finditer(r"(<!-- illustration only -->\n)?```sh\n(.*?)```", text, re.S) if not m.group(1)
    ]


def run_page(page: str, cwd: Path, env: dict[str, str]) -> str:
    blocks = sh_blocks(page)
    assert blocks, f"no runnable sh block in {page}"
    script = "set -euo pipefail\n" + "\n".join(blocks)
    out = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, f"{page}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture
def workdir(tmp_path: Path, chain: Anvil, deployment: dict[str, Any], db_dsn: str, redis_url: str) -> Any:
    """A directory laid out like the repository (config/, abi/, deployments/ linked) and the
    environment that points config/local.toml at this test's chain, database and Redis."""
    for name in ("config", "abi", "sql"):
        (tmp_path / name).symlink_to(ROOT / name)
    dep = tmp_path / "deployment.json"
    dep.write_text(json.dumps(deployment))
    apply_migrations_sync(db_dsn)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GL_DATABASE__DSN": db_dsn,
        "GL_REDIS__URL": redis_url,
        "GL_CHAIN__RPC_URLS": chain.url,
        "GL_CHAIN__WS_URL": chain.ws_url,
        "GL_CHAIN__DEPLOYMENT": str(dep),
        "GL_SERVICES__INDEXER_METRICS_PORT": str(free_port()),
        "GL_SERVICES__KEEPER_METRICS_PORT": str(free_port()),
        "DSN": db_dsn,
    }
    return tmp_path, env


def test_keeper_page_runs_as_written(workdir: Any) -> None:
    """keeper status, queue, txs and a dry run answer on the live stack."""
    cwd, env = workdir
    out = run_page("keeper.md", cwd, env)
    assert "leader" in out.lower() or "queue" in out.lower(), out[-2000:]


def test_operations_page_runs_as_written(workdir: Any) -> None:
    """The keystore is written and readable with its password; the backup restores; the rebuild
    resets and backfills the chain to its head."""
    from eth_account import Account

    cwd, env = workdir
    out = run_page("operations.md", cwd, env)
    keystore = json.loads((cwd / "keeper.json").read_text())
    password = (cwd / "keeper.pw").read_text().strip()
    address = Account.from_key(Account.decrypt(keystore, password)).address
    assert address in out
    assert (cwd / "keeper.json").stat().st_mode & 0o777 == 0o600
    assert (cwd / "keeper.pw").stat().st_mode & 0o777 == 0o600
    assert list(cwd.glob("guesslyfe-ops-*.dump"))

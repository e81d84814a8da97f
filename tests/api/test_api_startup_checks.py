"""`python -m api` refuses what it cannot serve, in one line and exit 2: connection caps above the
process's open-file limit (review s13 F2: past it accept() fails with EMFILE on every port and the
caps never apply), a port out of range or held by another process, a log level it does not know."""

from __future__ import annotations

import dataclasses
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.settings import RANGES, ApiSection, load_settings
from core.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[database]
dsn = "postgresql://nobody@127.0.0.1:1/none"
[redis]
url = "redis://127.0.0.1:1/0"
[chain]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:1"]
"""


def _limited(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_what_the_caps_need() -> None:
    code = "from api.connections import ensure_open_files; print(*ensure_open_files(3000))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: _limited(256, 4096),
    )
    assert out.stdout.split() == ["3000", "4096"]


def test_caps_above_the_hard_limit_refuse_to_start_naming_the_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "api.toml"
    cfg.write_text(CONFIG + "[api]\nport = 0\nfeed_port = 0\n")  # no fixed port another test may hold
    env = {**os.environ, "GL_API_JWT_SECRET": "x" * 48}
    proc = subprocess.run(
        [sys.executable, "-m", "api", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        preexec_fn=lambda: _limited(1024, 1024),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "api.max_connections (4096) + api.feed_max_connections (10000)" in out, out
    assert "this process may open 1024 (hard limit 1024)" in out, out
    assert "Traceback" not in out, out


def _api(tmp_path: Path, extra: str = "", *args: str, config: str = CONFIG) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "api.toml"
    cfg.write_text(config + extra)
    env = {**os.environ, "GL_API_JWT_SECRET": "x" * 48}
    return subprocess.run(
        [sys.executable, "-m", "api", "--config", str(cfg), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_port_out_of_range_is_named(tmp_path: Path) -> None:
    proc = _api(tmp_path, "[api]\nport = 99999\n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "api.port must be a TCP port from 1 to 65535" in out, out
    assert "Traceback" not in out, out


def test_a_port_another_process_holds_is_named(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = _api(tmp_path, f'[api]\nhost = "127.0.0.1"\nport = {port}\n')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert f"api.port = {port}: cannot listen on 127.0.0.1:{port}" in out, out
    assert "Traceback" not in out, out


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    proc = _api(tmp_path, "", "--log-level", "verbose")
    assert proc.returncode == 2, proc.stderr
    assert "--log-level: invalid choice: 'verbose'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


BASE: dict[str, Any] = {
    "database": {"dsn": "postgresql://nobody@127.0.0.1:1/none"},
    "redis": {"url": "redis://127.0.0.1:1/0"},
    "chain": {"chain_id": 31337, "rpc_urls": ["http://127.0.0.1:1"]},
}


def test_every_numeric_api_key_has_a_range() -> None:
    """Review s15 F3: about 25 [api] numbers were taken as given (0 made the feed's heartbeat spin a core
    and its queues unbounded). Every one is checked now; ports and chain ids have checks of their own."""
    numeric = {f.name for f in dataclasses.fields(ApiSection) if f.type in ("int", "float")}
    assert numeric - {"port", "feed_port"} == set(RANGES)


@pytest.mark.parametrize(
    ("api", "fragment"),
    [
        ({"feed_heartbeat_s": 0}, "api.feed_heartbeat_s must be from 0.05 to 3,600 seconds, got 0"),
        ({"feed_queue_max": 0}, "api.feed_queue_max must be from 1 to"),
        ({"statement_timeout_ms": -1}, "api.statement_timeout_ms must be from 1 to 600,000 ms, got -1"),
        ({"outbox_poll_s": 0}, "api.outbox_poll_s must be from 0.01"),
        ({"cache_ttl_s": -1}, "api.cache_ttl_s must be"),
        ({"head_timeout_s": float("nan")}, "api.head_timeout_s must be a finite number, got nan"),
        ({"pool_min": 20, "pool_max": 10}, "api.pool_min (20) must be at most api.pool_max (10)"),
        ({"chain_ids": [31337, -4]}, "api.chain_ids[1] must be from 1 to"),
        ({"port": 58090, "feed_port": 58090}, "api.feed_port (58090) is api.port"),
        ({"port": 58090, "feed_port": 58090, "feed_host": "0.0.0.0"}, "api.feed_port (58090) is api.port"),
    ],
)
def test_api_values_out_of_range_are_refused_naming_the_key(api: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "api": api}, {"GL_API_JWT_SECRET": "x" * 48})
    assert fragment in str(err.value)


def test_the_same_port_on_two_addresses_is_allowed() -> None:
    api = {"port": 58090, "feed_port": 58090, "host": "127.0.0.1", "feed_host": "127.0.0.2"}
    assert load_settings({**BASE, "api": api}, {"GL_API_JWT_SECRET": "x" * 48}).api.feed_port == 58090


def test_a_database_that_does_not_answer_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = _api(tmp_path, "[api]\nport = 0\nfeed_port = 0\n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "database_unreachable" in out, out
    assert "database.dsn: " in out, out
    assert "Traceback" not in out, out


@pytest.mark.pg
def test_a_role_the_database_does_not_have_is_named(tmp_path: Path, db_dsn: str) -> None:
    """Review s15 F3: api.db_role = "apii" failed in the lifespan: a traceback, 'Application startup
    failed', exit 3. Now one line naming the key, exit 2."""
    config = CONFIG.replace("postgresql://nobody@127.0.0.1:1/none", db_dsn)
    proc = _api(tmp_path, '[api]\nport = 0\nfeed_port = 0\ndb_role = "apii"\n', config=config)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "api.db_role = 'apii'" in out, out
    assert "Traceback" not in out, out

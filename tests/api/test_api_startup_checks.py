"""`python -m api` refuses what it cannot serve, in one line and exit 2: connection caps above the
process's open-file limit (review s13 F2: past it accept() fails with EMFILE on every port and the
caps never apply), a port out of range or held by another process, a log level it does not know."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

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


def _api(tmp_path: Path, extra: str = "", *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "api.toml"
    cfg.write_text(CONFIG + extra)
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

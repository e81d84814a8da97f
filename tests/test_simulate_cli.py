"""`python -m scripts.simulate` when its node goes away: a clear line, no traceback (make run's log)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("USDC", "MockPriceFeed", "OpinionMarket", "CreatorShares")
ADDRESSES = {n: "0x" + f"{i:040x}" for i, n in enumerate(NAMES, 1)}


def _config(tmp_path: Path, port: int) -> Path:
    dep = tmp_path / "31337.json"
    dep.write_text(json.dumps({"chain_id": 31337, "contracts": ADDRESSES, "deploy_block": 1}))
    cfg = tmp_path / "sim.toml"
    cfg.write_text(f'[chain]\nchain_id = 31337\nrpc_urls = ["http://127.0.0.1:{port}"]\ndeployment = "{dep}"\n')
    return cfg


def _start(cfg: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.simulate", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_no_node_is_one_clear_error_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _start(_config(tmp_path, port))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "node_unreachable" in out, out
    assert f"127.0.0.1:{port}" in out, out
    assert "make run" in out, out
    assert "Traceback" not in out, out


def test_the_node_going_away_while_stopping_ends_quietly(tmp_path: Path) -> None:
    """Ctrl-C reaches anvil and the simulator together: the round in flight then fails to connect."""
    server = socket.create_server(("127.0.0.1", 0))
    asked, drop = threading.Event(), threading.Event()

    def node() -> None:  # reads the first request, answers nothing, closes when told
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            asked.set()
            drop.wait(30)

    t = threading.Thread(target=node, daemon=True)
    t.start()
    proc = _start(_config(tmp_path, server.getsockname()[1]))
    try:
        assert asked.wait(60), "the simulator never called its node"
        proc.send_signal(signal.SIGINT)
        drop.set()
        out, _ = proc.communicate(timeout=60)
    finally:
        drop.set()
        server.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "simulation_stopped" in out, out
    assert "Traceback" not in out, out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-m", "scripts.simulate", "--wallets", "0"], "--wallets"),  # looped for ever doing nothing (review h4)
        (["-m", "scripts.simulate", "--wallets", "-3"], "--wallets"),
        (["-m", "scripts.simulate", "--rate", "-5"], "--rate"),
        (["-m", "scripts.simulate", "--rate", "nan"], "--rate"),
        (["-m", "scripts.simulate", "--events", "0"], "--events"),
        (["-m", "scripts.operator", "--interval", "-1"], "--interval"),
        (["-m", "scripts.operator", "--interval", "nan"], "--interval"),
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_option(args: list[str], named: str) -> None:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"argument {named}: must be" in out.stderr
    assert "Traceback" not in out.stderr

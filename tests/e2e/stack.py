"""The whole system as real processes for end-to-end tests: anvil (1 s blocks), a fresh database,
Redis, the deployment, then `python -m indexer`, `python -m keeper run` and `python -m api` with a
config file of their own (free ports), exactly as an operator starts them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
from web3 import Web3

from core.deploy import DeployParams, anvil_account, deploy, write_deployment
from tests.chain import ROOT, Anvil, free_port

T = TypeVar("T")


@dataclass
class Stack:
    anvil: Anvil
    w3: Web3
    deployment: dict[str, Any]
    config: Path
    api: str
    feed: str
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def get(self, path: str, **params: Any) -> Any:
        r = requests.get(self.api + path, params=params, timeout=10)
        assert r.status_code == 200, f"GET {path} -> {r.status_code}: {r.text[:500]}"
        return r.json()

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, *args, "--config", str(self.config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, f"{args} failed: {out.stdout}\n{out.stderr}"
        return out.stdout

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for p in sorted(self.logs.glob("*.log")):
            text = p.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {p.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.log_tail()}"


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 60, stack: Stack | None = None) -> T:
    """Polls `check` until it returns something truthy; fails naming `what` (and the daemons' logs)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if stack is not None:
            stack.alive()
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, AssertionError, KeyError, IndexError) as exc:
            last_error = exc
        time.sleep(0.25)
    detail = f" (last error: {last_error})" if last_error else ""
    tail = f"\n{stack.log_tail()}" if stack is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}{tail}")


def write_config(
    path: Path,
    anvil: Anvil,
    dsn: str,
    redis_url: str,
    deployment: Path,
    ports: dict[str, int],
    chain_id: int = 31337,
    api_extra: str = "",
) -> None:
    admin = anvil_account(0).address
    path.write_text(
        f"""
[services]
indexer_metrics_port = {ports["indexer"]}
keeper_metrics_port = {ports["keeper"]}

[database]
dsn = "{dsn}"

[redis]
url = "{redis_url}"

[chain]
name = "anvil-e2e"
chain_id = {chain_id}
rpc_urls = ["{anvil.url}"]
ws_url = "{anvil.ws_url}"
deployment = "{deployment}"
finality_depth = 64
confirmations = 1

[indexer]
progress = "log"

[keeper]
signer = "raw"
local_dev_raw_key = true
dev_anvil_account = 1
resolve_interval_s = 2
distribute_cron = "* * * * *"
warm_interval_s = 30
aggregate_interval_s = 5
notify_interval_s = 5
track_interval_s = 0.5
leader_poll_s = 1.0
grace_period_s = 3600

[api]
port = {ports["api"]}
feed_port = {ports["feed"]}
jwt_secret_file = "{path.parent / "jwt"}"
admin_addresses = ["{admin}"]
siwe_domain = "localhost:3000"
siwe_uri = "http://localhost:3000"
rate_limit_ip = 100000
feed_heartbeat_s = 5.0
{api_extra}
"""
    )


@contextlib.contextmanager
def running_stack(tmp_path: Path, dsn: str, redis_url: str) -> Iterator[Stack]:
    anvil = Anvil(block_time=1)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
        record = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams(lock_period=60))
        dep_path = write_deployment(record, tmp_path)
        ports = {name: free_port() for name in ("indexer", "keeper", "api", "feed")}
        config = tmp_path / "stack.toml"
        write_config(config, anvil, dsn, redis_url, dep_path, ports)
        logs = tmp_path / "logs"
        logs.mkdir()
        stack = Stack(
            anvil,
            w3,
            record,
            config,
            f"http://127.0.0.1:{ports['api']}",
            f"ws://127.0.0.1:{ports['feed']}",
            logs,
            procs,
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GL_CONFIG": str(config)}
        for name, argv in (
            ("indexer", ["-m", "indexer", "--config", str(config)]),
            ("keeper", ["-m", "keeper", "run", "--config", str(config)]),
            ("api", ["-m", "api", "--config", str(config)]),
        ):
            procs[name] = subprocess.Popen(
                [sys.executable, *argv],
                cwd=ROOT,
                env=env,
                stdout=(logs / f"{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: requests.get(stack.api + "/health", timeout=2).status_code == 200, "API /health", 60, stack)
        yield stack
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        anvil.stop()


def feed_messages(ws: Any, until: Callable[[dict[str, Any]], bool], timeout: float = 30) -> list[dict[str, Any]]:
    """Reads feed frames until one satisfies `until`; returns everything read."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"feed: no matching message within {timeout} s; saw {json.dumps(seen)[:2000]}")
        try:
            msg = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            continue
        seen.append(msg)
        if until(msg):
            return seen

"""Test helpers for real anvil nodes: start/stop processes, raw JSON-RPC, snapshots."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# Ports for the processes tests start come from a block per xdist worker below the kernel's
# ephemeral range (32768+): a port the kernel hands out for bind(0) could be handed to the other
# worker, or to an outgoing connection, before our process binds it.
_PORTS_PER_WORKER = 2000
_next_port = itertools.count(random.randrange(_PORTS_PER_WORKER))


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 20_000 + _PORTS_PER_WORKER * (int(worker) % 6 if worker.isdigit() else 0)
    for _ in range(_PORTS_PER_WORKER):
        port = base + next(_next_port) % _PORTS_PER_WORKER
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use (another run on this machine): the next one
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + _PORTS_PER_WORKER - 1}")


def anvil_binary() -> str:
    found = sorted((ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil"))
    if not found:
        raise RuntimeError("anvil binary not found under node_modules: run scripts/bootstrap.sh")
    return str(found[0])


def rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 30) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RuntimeError(f"{method} failed: {answer['error']}")
    return answer["result"]


class Anvil:
    """A real anvil process on a free port. `block_time=None` means automine; `chain_id` defaults to
    anvil's local 31337 (anvil refuses a second --chain-id in `extra_args`)."""

    def __init__(
        self, block_time: float | None = None, extra_args: tuple[str, ...] = (), chain_id: int = 31337
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        args = [
            anvil_binary(),
            "--port",
            str(self.port),
            "--chain-id",
            str(chain_id),
            "--accounts",
            "20",
            "--balance",
            "1000000",
            "--silent",
            # Keep historical states in memory only (anvil keeps the last 500; reorgs here go 64 deep):
            # by default older ones go to ~/.foundry/anvil/tmp, which a killed anvil never cleans up
            # (the 1M-event bench chain left gigabytes per run there).
            "--max-persisted-states",
            "0",
            *extra_args,
        ]
        if block_time is not None:
            args += ["--block-time", str(block_time)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                rpc(self.url, "eth_chainId", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"anvil did not start on port {self.port}") from None
                time.sleep(0.05)

    def call(self, method: str, *params: Any) -> Any:
        return rpc(self.url, method, list(params))

    def head(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def mine(self, blocks: int = 1) -> None:
        self.call("anvil_mine", hex(blocks))

    def snapshot(self) -> str:
        return str(self.call("evm_snapshot"))

    def revert(self, snap: str) -> None:
        if not self.call("evm_revert", snap):
            raise RuntimeError(f"evm_revert {snap} refused")

    @contextlib.contextmanager
    def isolated(self) -> Iterator[None]:
        snap = self.snapshot()
        try:
            yield
        finally:
            self.revert(snap)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

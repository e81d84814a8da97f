"""`python -m api --config FILE` as production starts it, for the tests that attack a real server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import aiohttp

from tests.api.conftest import JWT_SECRET
from tests.api.rows import CHAIN
from tests.chain import ROOT, free_port


@dataclasses.dataclass(frozen=True, slots=True)
class ApiProcess:
    proc: subprocess.Popen[bytes]
    port: int
    feed_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def feed_url(self) -> str:
        return f"ws://127.0.0.1:{self.feed_port}/"


def start_api(
    db_dsn: str, redis_url: str, tmp: Path, api_keys: str, output: IO[bytes] | int = subprocess.DEVNULL
) -> ApiProcess:
    """Writes a config ([api] on free ports plus `api_keys`, TOML lines) and starts the API on it, its
    stdout and stderr to `output`."""
    port, feed = free_port(), free_port()
    config = tmp / "api.toml"
    config.write_text(
        f"""[database]\ndsn = "{db_dsn}"\n[redis]\nurl = "{redis_url}"\n
[chain]\nchain_id = {CHAIN}\nrpc_urls = ["http://127.0.0.1:1"]\n
[api]\nport = {port}\nfeed_port = {feed}\n{api_keys}\n"""
    )
    env = {**os.environ, "GL_API_JWT_SECRET": JWT_SECRET, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output != subprocess.DEVNULL else None,
    )
    return ApiProcess(proc, port, feed)


async def healthy(http: aiohttp.ClientSession, base: str) -> bool:
    """Waits up to 30 s for /health to answer 200."""
    for _ in range(300):
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(base + "/health") as r:
                if r.status == 200:
                    return True
        await asyncio.sleep(0.1)
    return False

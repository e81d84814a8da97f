"""Cached market detail and market list vs a bare Starlette hello-world, same machine, same run.

One uvicorn worker per server (httptools + uvloop), pinned to CPU 0; the load generator (raw
HTTP/1.1 keep-alive over asyncio/uvloop) pinned to CPU 1. Per target:
  1. closed loop, 32 connections, 3 × 3 s → max requests/s (median of the 3);
  2. open loop at 70 % of that rate, 3 × 3 s → p50/p99 latency measured from each request's
     scheduled send time (no coordinated omission); the median run's figures are reported.
The API answers from its Redis cache (warmed first; x-cache: hit checked); rate limits are off
(every request would otherwise be anonymous and capped at 100 / 15 min) — a second API row with
the limiter on (high limit) shows its cost.

    .venv/bin/python -m bench.api_http            # prints the table for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator

from tests.chain import free_port

PY = sys.executable
JWT = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
PG = "postgresql://guesslyfe@127.0.0.1:55432"


def _hello_app() -> object:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello, world")

    return Starlette(routes=[Route("/", hello)])


def serve_hello(port: int) -> None:
    import uvicorn

    os.sched_setaffinity(0, {0})
    uvicorn.run(_hello_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)  # type: ignore[arg-type]


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )
    try:
        yield p
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> bytes:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return head + await reader.readexactly(length)


async def closed_loop(port: int, path: str, seconds: float, conns: int = 32) -> float:
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    count = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            await _request(reader, writer, req)
            count += 1
        writer.close()

    t0 = time.perf_counter()
    async with asyncio.timeout(seconds + 30):  # fail loudly rather than hang on a stuck server
        await asyncio.gather(*(worker() for _ in range(conns)))
    return count / (time.perf_counter() - t0)


async def open_loop(port: int, path: str, rate: float, seconds: float, conns: int = 64) -> list[float]:
    """Requests scheduled at `rate`/s spread over `conns` connections; latency from the schedule."""
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    lat: list[float] = []
    start = time.perf_counter() + 0.2
    total = int(rate * seconds)
    interval = 1 / rate

    async def worker(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for k in range(i, total, conns):
            due = start + k * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await _request(reader, writer, req)
            lat.append(time.perf_counter() - due)
        writer.close()

    async with asyncio.timeout(seconds + 30):
        await asyncio.gather(*(worker(i) for i in range(conns)))
    return lat


def measure(port: int, path: str) -> dict[str, float]:
    """Median of 3 runs for each figure: the machine is shared, single runs jump around."""
    import uvloop

    os.sched_setaffinity(0, {1})
    uvloop.run(closed_loop(port, path, 2))  # warm-up
    rps = statistics.median(uvloop.run(closed_loop(port, path, 3)) for _ in range(3))
    p50s, p99s, n = [], [], 0
    for _ in range(3):
        lat = sorted(uvloop.run(open_loop(port, path, rps * 0.7, 3)))
        q = [lat[min(len(lat) - 1, max(0, -(-len(lat) * k // 100) - 1))] for k in range(1, 100)]  # nearest rank
        p50s.append(q[49])
        p99s.append(q[98])
        n += len(lat)
    return {
        "rps": rps,
        "rate": rps * 0.7,
        "p50_ms": statistics.median(p50s) * 1000,
        "p99_ms": statistics.median(p99s) * 1000,
        "n": n,
    }


def api_config(dsn: str, port: int, rate_limit: bool) -> str:
    text = f"""
[database]
dsn = "{dsn}"
[redis]
url = "redis://127.0.0.1:56379/14"
[chain]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:1"]
[api]
port = {port}
feed_port = {free_port()}
rate_limit_enabled = {"true" if rate_limit else "false"}
rate_limit_ip = 1000000000
pool_max = 4
"""
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write(text)
    f.close()
    return f.name


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", "55432", "-U", "guesslyfe", "-d", "postgres", "-c", sql],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def scenario_db(prefix: str) -> Iterator[str]:
    """A migrated database holding tests.api.rows.scenario, dropped afterwards."""
    import asyncio as aio

    from indexer.migrate import apply_migrations_sync
    from tests.api.rows import scenario

    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    _psql(f"CREATE DATABASE {name}")
    try:
        dsn = f"{PG}/{name}"
        apply_migrations_sync(dsn)
        aio.run(scenario(dsn))
        yield dsn
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def warm(base: str, paths: tuple[str, ...]) -> None:
    """Requests each path until the API answers it from its cache."""
    for path in paths:
        for _ in range(2):
            with urllib.request.urlopen(base + path) as r:
                r.read()
        with urllib.request.urlopen(base + path) as r:
            assert r.headers["x-cache"] == "hit", f"cache not warm for {path}"


def run() -> list[tuple[str, dict[str, float]]]:
    results: list[tuple[str, dict[str, float]]] = []
    with scenario_db("gl_bench_http") as dsn:
        hello_port = free_port()
        with process([PY, "-m", "bench.api_http", "--serve-hello", str(hello_port)]):
            wait_http(f"http://127.0.0.1:{hello_port}/")
            results.append(("hello-world (bare Starlette)", measure(hello_port, "/")))
        for limiter in (False, True):
            port = free_port()
            cfg = api_config(dsn, port, limiter)
            with process([PY, "-m", "api", "--config", cfg, "--log-level", "warning"], {"GL_API_JWT_SECRET": JWT}):
                base = f"http://127.0.0.1:{port}"
                wait_http(base + "/health")
                warm(base, ("/v1/markets/1", "/v1/markets?limit=20"))
                suffix = " + rate limiter" if limiter else ""
                results.append((f"GET /v1/markets/1 (cached){suffix}", measure(port, "/v1/markets/1")))
                if not limiter:
                    results.append(("GET /v1/markets?limit=20 (cached)", measure(port, "/v1/markets?limit=20")))
            os.unlink(cfg)
    return results


def table(results: list[tuple[str, dict[str, float]]]) -> str:
    base = results[0][1]["rps"]
    lines = ["| target | max req/s (1 worker) | vs hello | p50 at 70 % | p99 at 70 % |", "|---|---:|---:|---:|---:|"]
    for name, r in results:
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {100 * r['rps'] / base:.0f} % | {r['p50_ms']:.2f} ms "
            f"| {r['p99_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-hello", type=int)
    args = parser.parse_args()
    if args.serve_hello:
        serve_hello(args.serve_hello)
        return
    print(table(run()))


if __name__ == "__main__":
    main()

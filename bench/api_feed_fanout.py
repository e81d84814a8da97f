"""Feed fan-out: 10,000 websocket connections subscribed to `global:all`, one event delivered to
all of them; latency from the outbox INSERT to each client's receipt (same machine clock), and the
feed process's memory per connection (RSS after − before connecting, / connections).

The API (+ feed) runs as `python -m api` in its own process (uvloop); the clients run in two
other processes of 5,000 connections each. Everything shares the machine's 2 cores.

    .venv/bin/python -m bench.api_feed_fanout [--connections 10000] [--events 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import asyncpg

from bench.api_http import JWT, PG, _psql, wait_http
from tests.chain import free_port

PY = sys.executable


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def client(port: int, n: int, events: int) -> None:
    """One client process: n connections; prints 'ready', then one JSON line of latencies."""
    from websockets.asyncio.client import connect

    conns = []
    sem = asyncio.Semaphore(200)

    async def open_one() -> None:
        async with sem:
            ws = await connect(f"ws://127.0.0.1:{port}", max_queue=64, ping_interval=None)
            await ws.send('{"op":"subscribe","rooms":["global:all"]}')
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            conns.append(ws)

    await asyncio.gather(*(open_one() for _ in range(n)))
    print("ready", flush=True)
    lat: list[float] = []

    async def read(ws: object) -> None:
        got = 0
        while got < events:
            m = json.loads(await ws.recv())  # type: ignore[attr-defined]
            if m["type"] == "event":
                lat.append(time.time() - m["data"]["sentAt"])
                got += 1

    await asyncio.gather(*(read(ws) for ws in conns))
    print(json.dumps(lat), flush=True)
    for ws in conns:
        await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--client", type=int)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.client:
        import uvloop

        uvloop.run(client(args.port, args.client, args.events))
        return
    asyncio.run(run(args.connections, args.events))


async def run(connections: int, events: int) -> None:
    from indexer.migrate import apply_migrations

    name = f"gl_bench_feed_{uuid.uuid4().hex[:6]}"
    _psql(f"CREATE DATABASE {name}")
    dsn = f"{PG}/{name}"
    mconn = await asyncpg.connect(dsn)
    await apply_migrations(mconn)
    await mconn.close()
    port, feed = free_port(), free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""
[database]
dsn = "{dsn}"
[redis]
url = "redis://127.0.0.1:56379/14"
[chain]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:1"]
[api]
port = {port}
feed_port = {feed}
rate_limit_enabled = false
outbox_poll_s = 1.0
""")
    cfg.close()
    server = subprocess.Popen(  # noqa: ASYNC220
        [PY, "-m", "api", "--config", cfg.name, "--log-level", "warning"],
        env={**os.environ, "GL_API_JWT_SECRET": JWT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        await asyncio.sleep(1)
        before = rss_kib(server.pid)
        per = connections // 2
        t0 = time.monotonic()
        for _ in range(2):
            clients.append(
                subprocess.Popen(  # noqa: ASYNC220
                    [
                        PY,
                        "-m",
                        "bench.api_feed_fanout",
                        "--client",
                        str(per),
                        "--port",
                        str(feed),
                        "--events",
                        str(events),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for c in clients:
            assert c.stdout is not None
            assert c.stdout.readline().strip() == "ready"
        connect_s = time.monotonic() - t0
        await asyncio.sleep(2)
        after = rss_kib(server.pid)
        conn = await asyncpg.connect(dsn)
        for i in range(events):
            await conn.execute(
                """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
                   VALUES (31337, 'market:trade', '{global:all}', $1, 0, $2, $3::jsonb)""",
                i + 1,
                (i + 1).to_bytes(32, "big"),
                json.dumps({"sent_at": time.time(), "market_id": 1}),
            )
            await conn.execute("SELECT pg_notify('gl_outbox', 'bench')")
            await asyncio.sleep(2)
        await conn.close()
        lat: list[float] = []
        for c in clients:
            assert c.stdout is not None
            lat += json.loads(c.stdout.readline())
            c.wait(60)
        lat.sort()
        q = [lat[min(len(lat) - 1, max(0, -(-len(lat) * k // 100) - 1))] for k in range(1, 100)]  # nearest rank
        print(
            f"| {per * 2:,} connections, {events} events | deliveries {len(lat):,} "
            f"| p50 {q[49] * 1000:.0f} ms | p99 {q[98] * 1000:.0f} ms | max {lat[-1] * 1000:.0f} ms "
            f"| RSS {before / 1024:.0f} → {after / 1024:.0f} MiB = {(after - before) / (per * 2):.1f} KiB/connection "
            f"| connect {connect_s:.1f} s |"
        )
    finally:
        for c in clients:
            c.kill()
        server.terminate()
        server.wait(10)
        os.unlink(cfg.name)
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()

"""Review hl: SIGTERM on `python -m api` while requests, slow clients and feed sockets are in flight
must end within the documented budget with no traceback on the process's output."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.api.process import healthy, start_api
from tests.api.rows import scenario

pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.slow]


async def test_sigterm_cancelling_in_flight_requests_logs_no_traceback(
    db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """Requests blocked in PostgreSQL past shutdown_timeout_s are cancelled by uvicorn at SIGTERM. The
    process must exit within its bound (it does) and say so in its own log lines, not with uvicorn's
    "Exception in ASGI application" and a CancelledError traceback per request (an operator's alert on
    tracebacks fires on every deploy)."""
    await scenario(db_dsn)
    err = tmp_path / "stderr.log"
    with err.open("wb") as sink:
        api = start_api(db_dsn, redis_url, tmp_path, "shutdown_timeout_s = 1.0\ncache_enabled = false", sink)
    proc, base, port, feed = api.proc, api.base, api.port, api.feed_port
    locker = await asyncpg.connect(db_dsn)
    slow: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as http:
            assert await healthy(http, base)
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE idx.markets IN ACCESS EXCLUSIVE MODE")
            blocked = [asyncio.create_task(http.get(base + f"/v1/markets?limit={i + 1}")) for i in range(4)]
            for _ in range(4):  # slowloris heads and a silent feed socket alongside
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /v1/markets HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            slow.append(socket.create_connection(("127.0.0.1", feed)))
            await asyncio.sleep(0.5)  # the requests wait on the lock now
            assert not any(t.done() for t in blocked)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 25)  # TimeoutExpired past the documented bound
            await tx.rollback()
            for t in blocked:
                t.cancel()
            await asyncio.gather(*blocked, return_exceptions=True)
    finally:
        for s in slow:
            s.close()
        if proc.poll() is None:
            proc.kill()
        await locker.close()
    assert code in (0, -signal.SIGTERM)
    output = err.read_text(errors="replace")
    tracebacks = [line for line in output.splitlines() if "Traceback" in line or "Exception in ASGI" in line]
    assert tracebacks == [], output[-3000:]

"""The API when PostgreSQL misbehaves, against a real server and database: a database that stops
answering (black-holed behind a TCP proxy) and a backend terminated mid-query (a restart, a
failover) each get a 503 with Retry-After — never a request hanging for TCP's minutes, never a
500 — and requests succeed again once the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.api.conftest import make_settings
from tests.api.test_api_connections import serving
from tests.chain import free_port

pytestmark = [pytest.mark.pg, pytest.mark.redis]


class BlackHole:
    """A TCP proxy that can stop forwarding (bytes are swallowed, connections stay open): what a
    paused VM, a partition or a dropped route look like to a client."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = False
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if not self.frozen:
                    writer.write(data)
                    await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.frozen:
            return  # accepted, never answered
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BlackHole]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            for w in self.writers:
                w.close()
            server.close()


def via(dsn: str, port: int) -> str:
    u = urllib.parse.urlsplit(dsn)
    return u._replace(netloc=f"{u.username}@127.0.0.1:{port}").geturl()


async def status(base: str, path: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s, s.get(base + path) as r:
        return r.status, dict(r.headers), await r.text()


async def test_a_database_that_stops_answering_gets_503_not_a_hang(db_dsn: str, redis_url: str) -> None:
    upstream = urllib.parse.urlsplit(db_dsn).port
    assert upstream is not None
    async with BlackHole(upstream).running() as hole:
        settings = make_settings(
            via(db_dsn, hole.port), redis_url, port=free_port(), statement_timeout_ms=1000, pool_acquire_timeout_s=2.0
        )
        async with serving(settings) as (_, port):
            base = f"http://127.0.0.1:{port}"
            assert (await status(base, "/v1/markets?limit=11"))[0] == 200
            hole.frozen = True
            code, headers, body = await status(base, "/v1/markets?limit=12")  # not cached: needs the database
            assert code == 503, body
            assert headers.get("Retry-After") == "1"
            hole.frozen = False
            for _ in range(100):  # back: the pool replaces what the freeze broke
                if (await status(base, "/v1/markets?limit=13"))[0] == 200:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("the API did not recover once the database answered again")


async def test_a_backend_terminated_mid_query_gets_503(db_dsn: str, redis_url: str) -> None:
    async with serving(make_settings(db_dsn, redis_url, port=free_port())) as (_, port):
        base = f"http://127.0.0.1:{port}"
        assert (await status(base, "/v1/markets?limit=11"))[0] == 200
        admin = await asyncpg.connect(db_dsn)
        try:
            lock = admin.transaction()
            await lock.start()
            await admin.execute("LOCK TABLE idx.markets IN ACCESS EXCLUSIVE MODE")  # the API's query waits
            request = asyncio.create_task(status(base, "/v1/markets?limit=12"))
            for _ in range(100):
                waiting = await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'gl-api' AND wait_event_type = 'Lock'"
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the API's query never waited on the lock"
            await admin.execute("SELECT pg_terminate_backend($1)", waiting[0]["pid"])  # AdminShutdownError
            code, headers, body = await request
            await lock.rollback()
        finally:
            await admin.close()
        assert code == 503, body
        assert headers.get("Retry-After") == "1"
        assert (await status(base, "/v1/markets?limit=14"))[0] == 200

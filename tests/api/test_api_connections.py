"""The HTTP port below the app (api/connections.py), against a real uvicorn server started with the
production options (api.__main__.server_options): slow heads are cut, oversized ones refused with
431, open connections capped per address, slow bodies answered 408 — while a slow answer to a
complete request is never cut."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn

from api import connections
from api.__main__ import server_options
from api.app import Runtime, create_app
from api.clientip import address_key
from api.settings import Settings
from tests.api.conftest import make_settings
from tests.chain import free_port

pytestmark = [pytest.mark.pg, pytest.mark.redis]


@contextlib.asynccontextmanager
async def serving(settings: Settings, sndbuf: int | None = None) -> AsyncIterator[tuple[Runtime, int]]:
    """`sndbuf`: the kernel's send buffer of each accepted connection (inherited from the listening
    socket), small so that an answer nobody reads stays in the server's own buffer."""
    app = create_app(settings, serve_feed=False)
    server = uvicorn.Server(uvicorn.Config(app, **server_options(settings)))
    sockets = None
    if sndbuf is not None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        listener.bind(("127.0.0.1", settings.api.port))
        sockets = [listener]
    task = asyncio.create_task(server.serve(sockets))
    rt: Runtime = app.state.runtime
    try:
        for _ in range(1500):  # 30 s
            if (server.started and rt.state is not None) or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield rt, settings.api.port
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await task


def guarded(db_dsn: str, redis_url: str, **api: object) -> Settings:
    return make_settings(db_dsn, redis_url, **{"port": free_port(), "head_timeout_s": 1.0, **api})


async def closed_by_server(reader: asyncio.StreamReader, within: float = 15.0) -> bytes:
    """Everything the server sent until it closed the connection (fails if it never does)."""
    out = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            out += chunk
    return out


async def get(port: int, path: str = "/v1/stats") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    answer = await closed_by_server(reader)
    writer.close()
    return int(answer.split(b" ", 2)[1])


async def cuts(port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    text = (await closed_by_server(reader)).decode()
    writer.close()
    return {m[0]: float(m[1]) for m in re.findall(r'api_connections_cut_total\{reason="(\w+)"\} (\S+)', text)}


async def test_heads_that_never_complete_are_cut_and_complete_ones_are_not(db_dsn: str, redis_url: str) -> None:
    async with serving(guarded(db_dsn, redis_url, pool_max=1, pool_acquire_timeout_s=3.0)) as (rt, port):
        before = (await cuts(port)).get("head_timeout", 0)
        silent = await asyncio.open_connection("127.0.0.1", port)  # connects, sends nothing
        loris = await asyncio.open_connection("127.0.0.1", port)
        loris[1].write(b"GET /v1/stats HTTP/1.1\r\nHost: t\r\n")
        kept = await asyncio.open_connection("127.0.0.1", port)  # a response, then CRLFs trickled
        kept[1].write(b"GET /v1/stats HTTP/1.1\r\nHost: t\r\n\r\n")

        async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(100):
                    await asyncio.sleep(0.2)
                    writer.write(data)
                    await writer.drain()

        tasks = [
            asyncio.create_task(trickle(loris[1], b"X-Slow: 1\r\n")),
            asyncio.create_task(trickle(kept[1], b"\r\n")),
        ]
        assert await closed_by_server(silent[0]) == b""
        assert await closed_by_server(loris[0]) == b""
        assert b"HTTP/1.1 200" in await closed_by_server(kept[0])  # answered, then cut while idle
        for t in tasks:
            t.cancel()
        assert (await cuts(port))["head_timeout"] >= before + 3

        # A complete request whose answer takes longer than the head deadline is not cut: the only
        # read connection is held here, so it waits the 3 s acquire timeout and answers 503.
        assert rt.state is not None
        async with rt.state.read_pool.acquire():
            assert await get(port, "/v1/markets?limit=13") == 503  # not cached: needs a connection
        assert await get(port) == 200


async def test_a_keep_alive_connection_after_a_slow_answer_gets_its_idle_time_from_the_answer(
    db_dsn: str, redis_url: str
) -> None:
    """Before: the idle deadline ran from the request's start, so after an answer slower than
    head_timeout_s the next sweep cut the connection while the client was about to reuse it."""
    settings = guarded(db_dsn, redis_url, head_timeout_s=2.0, pool_max=1, pool_acquire_timeout_s=4.0)
    async with serving(settings) as (rt, port):
        assert rt.state is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with rt.state.read_pool.acquire():  # the answer waits the 4 s acquire timeout: 503
                writer.write(b"GET /v1/markets?limit=17 HTTP/1.1\r\nHost: t\r\n\r\n")
                async with asyncio.timeout(15):
                    head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), head
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
            await reader.readexactly(length)
            await asyncio.sleep(1.2)  # a sweep (1/s) has run; 1.2 s idle is within the 2 s budget
            writer.write(b"GET /v1/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert b"HTTP/1.1 200" in await closed_by_server(reader)
        finally:
            writer.close()


async def test_a_head_larger_than_the_cap_is_refused_with_431(db_dsn: str, redis_url: str) -> None:
    async with serving(guarded(db_dsn, redis_url, max_head_bytes=4096)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/stats HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"a" * 5000 + b"\r\n\r\n")
        answer = await closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"larger than 4096 bytes" in answer
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a long URL counts too
        writer.write(b"GET /v1/stats?x=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 431 ")
        assert await get(port) == 200
        assert (await cuts(port))["head_too_large"] >= 2


async def test_open_connections_are_capped_per_address(db_dsn: str, redis_url: str) -> None:
    async with serving(guarded(db_dsn, redis_url, max_connections_per_ip=4, head_timeout_s=30.0)) as (_, port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        await asyncio.sleep(0.2)  # the server has counted them
        extra = await asyncio.open_connection("127.0.0.1", port)
        refused = await closed_by_server(extra[0], within=5)  # closed at once, with the reason (review h3)
        assert refused.startswith(b"HTTP/1.1 429 "), refused
        assert b"retry-after: 1" in refused
        assert b"connections_per_ip" in refused
        held.pop()[1].close()
        await asyncio.sleep(0.2)
        assert await get(port) == 200  # a slot freed is a slot usable
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        assert [await get(port) for _ in range(6)] == [200] * 6  # sequential ones never hit the cap


async def test_a_body_that_trickles_is_answered_408(db_dsn: str, redis_url: str) -> None:
    async with serving(guarded(db_dsn, redis_url, body_timeout_s=1.0, head_timeout_s=30.0)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/auth/nonce HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\nConnection: close\r\n\r\n{"
        )
        answer = await closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"must arrive within 1.0 s" in answer


def never_reading(port: int, payload: bytes) -> socket.socket:
    """A client with a 4 KB receive buffer that sends `payload` (what the kernel takes) and never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        s.send(payload)
    return s


async def test_pipelined_requests_beyond_the_cap_are_cut_and_a_few_are_answered(db_dsn: str, redis_url: str) -> None:
    """Review s15 F1: 1 MB of back-to-back requests, never read, became ~31,000 queued requests held for
    good (68 MB a connection, 4.4 GB from one address at the default cap). Now more than MAX_PIPELINED
    waiting behind the one being answered cut the connection; a client pipelining a few gets every answer."""
    async with serving(guarded(db_dsn, redis_url, head_timeout_s=30.0)) as (_, port):
        req = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
        socks = [never_reading(port, req * (1024 * 1024 // len(req))) for _ in range(4)]
        try:
            for _ in range(50):
                if (await cuts(port)).get("pipelined", 0) >= 4:
                    break
                await asyncio.sleep(0.1)
            assert (await cuts(port)).get("pipelined", 0) >= 4
        finally:
            for s in socks:
                s.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = connections.MAX_PIPELINED
        writer.write(req * (n - 1) + b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answers = await closed_by_server(reader)
        writer.close()
        assert answers.count(b"HTTP/1.1 200 ") == n


async def test_an_answer_the_client_stops_reading_is_cut_after_write_timeout_s(db_dsn: str, redis_url: str) -> None:
    """Review s15 F1: an answer waits in the transport for a client that never reads, with no deadline
    (the head timeout does not apply while a request is being answered). Now writing paused for
    write_timeout_s aborts the connection; a client that reads slowly but steadily is never paused
    that long."""
    settings = guarded(db_dsn, redis_url, head_timeout_s=30.0, write_timeout_s=1.0)
    async with serving(settings, sndbuf=8192) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        size = len(await closed_by_server(reader))
        writer.close()
        assert size > 10_000
        req = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n"
        s = never_reading(port, req * min(connections.MAX_PIPELINED, 4 * 1024 * 1024 // size + 1))
        try:
            for _ in range(60):
                if (await cuts(port)).get("write_timeout", 0) >= 1:
                    break
                await asyncio.sleep(0.1)
            assert (await cuts(port)).get("write_timeout", 0) >= 1
        finally:
            s.close()
        assert await get(port) == 200


async def test_a_slow_reader_that_drains_some_is_never_cut(db_dsn: str, redis_url: str) -> None:
    """The write deadline counts time without a byte read, not time paused: a client reading 2 KB every
    0.25 s keeps writing paused for 10 s, far longer than write_timeout_s (3 s here; the kernel's buffers
    move a slow reader's progress in steps of a second or more), and gets every answer."""
    settings = guarded(db_dsn, redis_url, head_timeout_s=30.0, write_timeout_s=3.0)
    async with serving(settings, sndbuf=8192) as (_, port):
        before = (await cuts(port)).get("write_timeout", 0)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        sock.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        n = 4
        writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n" * (n - 1))
        writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        got = b""
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(120):
            while chunk := await reader.read(2048):
                got += chunk
                if asyncio.get_running_loop().time() - started < 10.0:
                    await asyncio.sleep(0.25)
        writer.close()
        assert got.count(b"HTTP/1.1 200 ") == n
        assert (await cuts(port)).get("write_timeout", 0) == before


def test_clients_are_counted_by_address_and_ipv6_hosts_by_their_64() -> None:
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff:1:2:3") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("[2001:db8::1]") == "2001:db8::/64"
    assert address_key("unknown") == "unknown"

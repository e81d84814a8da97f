"""The feed port against socket floods (review s13 F1, F8): sockets that never finish a websocket
handshake were counted nowhere and held a file descriptor for websockets' 10 s open timeout each, so
one address could exhaust the process's descriptors (shared with the HTTP port); every failed
handshake logged a traceback."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.feed_guard import CUT, DROPPED, HANDSHAKE_SLACK, REFUSED
from tests.api.conftest import make_settings
from tests.api.test_api_feed import running

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def _half_open(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the handshake
    return s


def _closed_by_server(s: socket.socket, within: float) -> bool:
    """Closed within `within`: at once with nothing sent (a handshake overdue), or after a fixed 429 (a
    socket over a cap, review h3: it was a reset without a reason)."""
    s.settimeout(within)
    got = b""
    try:
        while chunk := s.recv(1024):
            got += chunk
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    assert got == b"" or got.startswith(b"HTTP/1.1 429 "), got[:200]
    return True


async def test_sockets_are_capped_per_address_from_the_tcp_connection_on(db_dsn: str, redis_url: str) -> None:
    settings = make_settings(db_dsn, redis_url, feed_max_connections_per_ip=2, feed_handshake_timeout_s=30.0)
    async with running(settings) as (_, rt, url):
        assert rt.state is not None
        port = int(url.rsplit(":", 1)[1])
        cap = 2 + HANDSHAKE_SLACK
        before = REFUSED.labels("per_ip")._value.get()
        held = [await asyncio.to_thread(_half_open, port) for _ in range(cap)]
        extra = [await asyncio.to_thread(_half_open, port) for _ in range(5)]
        try:
            for s in extra:  # over the cap: closed at once, not after a handshake timeout
                assert await asyncio.to_thread(_closed_by_server, s, 5.0)
            probe = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 5)
            try:  # and told why: a fixed 429 naming the cap, nothing read
                probe.settimeout(5)
                answer = await asyncio.to_thread(probe.recv, 4096)
            finally:
                probe.close()
            assert answer.startswith(b"HTTP/1.1 429 "), answer
            assert b"feed_connections_per_ip" in answer
            assert not await asyncio.to_thread(_closed_by_server, held[0], 0.3)  # within the cap: kept
            assert REFUSED.labels("per_ip")._value.get() >= before + 5
            assert rt.state.hub.caps.count == cap
        finally:
            for s in held + extra:
                s.close()
        for _ in range(100):  # the closed sockets are released: a client connects and is served
            if rt.state.hub.caps.count == 0:
                break
            await asyncio.sleep(0.05)
        assert rt.state.hub.caps.count == 0
        async with connect(url) as ws:
            await ws.send(json.dumps({"op": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"


async def test_established_connections_past_the_cap_still_get_a_429(db_dsn: str, redis_url: str) -> None:
    settings = make_settings(db_dsn, redis_url, feed_max_connections_per_ip=2)
    async with running(settings) as (_, _rt, url):
        async with connect(url), connect(url):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 429


async def test_the_total_cap_and_the_handshake_timeout(db_dsn: str, redis_url: str) -> None:
    settings = make_settings(
        db_dsn, redis_url, feed_max_connections=3, feed_max_connections_per_ip=100, feed_handshake_timeout_s=1.0
    )
    async with running(settings) as (_, rt, url):
        assert rt.state is not None
        port = int(url.rsplit(":", 1)[1])
        before = REFUSED.labels("total")._value.get()
        held = [await asyncio.to_thread(_half_open, port) for _ in range(3)]
        over = await asyncio.to_thread(_half_open, port)
        try:
            assert await asyncio.to_thread(_closed_by_server, over, 5.0)
            assert REFUSED.labels("total")._value.get() >= before + 1
            for s in held:  # no handshake within feed_handshake_timeout_s: closed
                assert await asyncio.to_thread(_closed_by_server, s, 10.0)
        finally:
            for s in [*held, over]:
                s.close()


async def test_failed_handshakes_log_at_most_a_line_a_second(
    db_dsn: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(db_dsn, redis_url)
    async with running(settings) as (_, _rt, url):
        port = int(url.rsplit(":", 1)[1])
        dropped = DROPPED._value.get()
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="api.feed.websockets"):
            for _ in range(20):
                s = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 5)
                s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                await asyncio.to_thread(_closed_by_server, s, 5.0)
                s.close()
        seconds = time.monotonic() - started
        lines = [r for r in caplog.records if r.name == "api.feed.websockets"]
        assert len(lines) <= seconds + 1, [r.getMessage() for r in lines]  # one a second, not one per handshake
        assert all(r.exc_info is None for r in lines)
        assert DROPPED._value.get() - dropped >= 10  # the others were counted, not written


def test_an_ipv6_48_holds_at_most_16_clients_worth_of_sockets() -> None:
    """Review s13 F5: socket and connection caps counted an IPv6 client per /64 only, so a /48 holder
    had 65,536 caps. api.clientip.count_in (the HTTP guard's and the feed's) also counts the /48, with
    NETWORK_FACTOR times the per-client cap; closing gives both back."""
    from api.clientip import NETWORK_FACTOR
    from api.feed_guard import SocketCaps

    caps = SocketCaps(per_ip=2, total=10_000, proxies=())
    admitted = [caps.admit(f"2001:db8:7:{i:x}::1") for i in range(NETWORK_FACTOR + 3)]  # one socket per /64
    # the /48 takes 2 x 16 = 32 sockets: one per /64 fits 19 of them, so all pass
    assert all(ok for ok, _ in admitted)
    more = [caps.admit(f"2001:db8:7:{i:x}::2") for i in range(NETWORK_FACTOR + 3)]  # a second per /64
    assert [ok for ok, _ in more].count(True) == 2 * NETWORK_FACTOR - (NETWORK_FACTOR + 3)
    assert caps.open["2001:db8:7::/48"] == 2 * NETWORK_FACTOR
    ok, keys = caps.admit("2001:db8:8::1")  # another /48
    assert ok
    for held in [k for ok, k in admitted + more if ok] + [keys]:
        caps.release(held)
    assert caps.open == {}
    assert caps.count == 0


def _websocket(port: int) -> socket.socket:
    """A raw client socket past the websocket handshake (nothing reads what the server sends)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
    return s


def cuts() -> float:
    return sum(CUT.labels(reason)._value.get() for reason in ("bytes", "frames", "unread"))


PING = bytes([0x89, 0x80]) + b"\x00" * 4  # an empty ping, masked (with a zero mask)


def _flood_until_cut(s: socket.socket, within_s: float) -> bool:
    """Sends pings without reading anything until the server closes the socket (True) or `within_s`."""
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            s.sendall(PING * 1000)
    except OSError:  # reset or broken pipe: the server closed it
        return True
    return False


async def test_a_ping_flood_is_cut_and_the_api_keeps_answering(db_dsn: str, redis_url: str) -> None:
    """Review h3: websockets answers pings below the app's frame budget, so a client sending pings and
    never reading the pongs took the event loop (HTTP too) and grew memory without bound (72 -> 779 MB).
    Every frame now counts: the flood is cut (feed_sockets_cut_total), HTTP answers meanwhile, and a
    client that pings as clients do is kept."""
    async with running(make_settings(db_dsn, redis_url)) as (app, rt, url):
        assert rt.state is not None
        port = int(url.rsplit(":", 1)[1])
        before = cuts()
        floods = [await asyncio.to_thread(_websocket, port) for _ in range(2)]
        try:
            cut = await asyncio.gather(*(asyncio.to_thread(_flood_until_cut, s, 10.0) for s in floods))
        finally:
            for s in floods:
                s.close()
        assert cut == [True, True]
        assert cuts() == before + 2  # over the frame budget, or the byte budget when reads coalesce
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            assert (await http.get("/health")).status_code == 200
        async with connect(url) as ws:  # a client's keepalive pings and a few requests: never cut
            for _ in range(5):
                await asyncio.wait_for(await ws.ping(), 5)
            await ws.send(json.dumps({"op": "subscribe", "rooms": ["global:all"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
        assert cuts() == before + 2

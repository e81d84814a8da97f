"""The feed port against socket floods (review s13 F1, F8): sockets that never finish a websocket
handshake were counted nowhere and held a file descriptor for websockets' 10 s open timeout each, so
one address could exhaust the process's descriptors (shared with the HTTP port); every failed
handshake logged a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.feed_guard import DROPPED, HANDSHAKE_SLACK, REFUSED
from tests.api.conftest import make_settings
from tests.api.test_api_feed import running

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def _half_open(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the handshake
    return s


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


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

"""The API under concurrency and abuse, against a real uvicorn server, PostgreSQL and Redis:
no request holds more than one pool connection, none waits for one without bound, and slow or
silent feed clients free everything they held."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import uvicorn
from websockets.asyncio.client import connect

from api.app import Runtime, create_app
from api.auth import Principal, issue_token
from api.routes import ENDPOINTS
from api.settings import Settings
from tests.api.conftest import ADMIN, make_settings
from tests.api.rows import CHAIN, scenario
from tests.chain import free_port

pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.slow]
TRADER = "0x" + "a1" * 20
CREATOR = "0x" + "c1" * 20


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Runtime, str]]:
    """create_app under a real uvicorn server (in this loop) with the feed on a free port."""
    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", proxy_headers=False)
    )
    task = asyncio.create_task(server.serve())
    rt: Runtime = app.state.runtime
    try:
        for _ in range(1500):  # 30 s
            if (server.started and rt.state is not None and rt.state.hub.port) or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start in 30 s"
        assert rt.state is not None
        yield rt, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await task


def urls() -> list[tuple[str, str, str]]:
    """(method, path, auth) for every DB-backed operation, path parameters filled from the scenario."""
    out = []
    for ep in ENDPOINTS:
        if ep.method != "GET" and ep.path != "/v1/auth/nonce":
            continue
        path = ep.path.replace("{id}", "1").replace("{address}", TRADER if "users" in ep.path else CREATOR)
        if path == "/v1/markets/prices":
            path += "?ids=1,2"
        out.append((ep.method, path, ep.auth or ""))
    return out


def pool_whole(rt: Runtime) -> dict[str, int]:
    """Connections still checked out, per pool (all zero when every request gave its back)."""
    assert rt.state is not None
    s = rt.state
    return {
        name: p.get_size() - p.get_idle_size()
        for name, p in (("read", s.read_pool), ("write", s.write_pool), ("feed", s.hub.pool))
    }


async def settle(rt: Runtime) -> dict[str, int]:
    for _ in range(500):  # 10 s: a response is sent before its connection is back in the pool
        busy = pool_whole(rt)
        if not any(busy.values()):
            return busy
        await asyncio.sleep(0.02)
    return pool_whole(rt)


async def test_256_concurrent_uncached_requests_over_every_endpoint_all_answer(db_dsn: str, redis_url: str) -> None:
    """256 concurrent uncached requests over every DB-backed endpoint against a pool of 10: each is
    answered (2xx/4xx, or 503 with Retry-After), none hangs; then /ready is 200 and the pool whole."""
    await scenario(db_dsn)
    # many clients' load, from one test address: its own cap (db_requests_per_ip) has the next test
    settings = make_settings(db_dsn, redis_url, cache_enabled=False, pool_max=10, db_requests_per_ip=1000)
    user, _ = issue_token(settings, Principal(TRADER, frozenset({"user"})))
    admin, _ = issue_token(settings, Principal(ADMIN, frozenset({"user", "admin"})))
    targets = urls()
    assert len(targets) >= 25, targets
    async with serving(settings) as (rt, base):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def one(i: int) -> tuple[str, int, str | None]:
                method, path, need = targets[i % len(targets)]
                headers = {"Authorization": f"Bearer {admin if need == 'admin' else user}"} if need else {}
                async with http.request(method, base + path, headers=headers) as r:
                    await r.read()
                    return path, r.status, r.headers.get("Retry-After")

            async with asyncio.timeout(120):
                answers = await asyncio.gather(*(one(i) for i in range(256)))
            bad = [a for a in answers if a[1] >= 500 and not (a[1] == 503 and a[2])]
            assert not bad, bad
            assert {a[0] for a in answers if a[1] == 200} >= {"/v1/markets", "/v1/markets/1", "/v1/stats"}
            assert await settle(rt) == {"read": 0, "write": 0, "feed": 0}
            async with http.get(base + "/ready") as r:
                assert r.status == 200, await r.text()
            async with http.get(base + "/v1/markets?limit=20") as r:
                assert r.status == 200


async def test_one_address_cannot_hold_the_pool_others_are_served(db_dsn: str, redis_url: str) -> None:
    """Review h3: one address's concurrent uncached requests, within its rate limit, held every read
    connection and other clients got 503. Now at most db_requests_per_ip of them are on the database at
    once (429 + Retry-After beyond), and another address is served meanwhile."""
    await scenario(db_dsn)
    settings = make_settings(
        db_dsn, redis_url, cache_enabled=False, pool_max=4, db_requests_per_ip=2, forwarded_allow_ips=["127.0.0.1"]
    )
    async with serving(settings) as (_rt, base), aiohttp.ClientSession() as http:
        locker = await asyncpg.connect(db_dsn)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE idx.positions IN ACCESS EXCLUSIVE MODE")  # positions pages now wait

            async def get(path: str, client: str) -> tuple[int, str | None]:
                async with http.get(base + path, headers={"X-Forwarded-For": client}) as r:
                    await r.read()
                    return r.status, r.headers.get("Retry-After")

            pages = [f"/v1/users/{TRADER}/positions?page={i}" for i in range(1, 7)]
            hog = [asyncio.ensure_future(get(p, "10.0.0.2")) for p in pages]
            done, _ = await asyncio.wait(hog, timeout=3)  # the refused ones answer at once
            assert sorted(t.result() for t in done) == [(429, "1")] * 4
            assert (await get("/v1/markets/1", "10.0.0.3"))[0] == 200  # another address, meanwhile
            await tx.rollback()
            assert [s for s, _ in await asyncio.gather(*(t for t in hog if t not in done))] == [200, 200]
        finally:
            await locker.close()


async def test_a_signed_in_wallet_does_not_add_to_its_address_share(db_dsn: str, redis_url: str) -> None:
    """Review h5: a signed-in request was counted by its user alone, so one address with a throwaway
    wallet (any key signs in) got twice its cap and held the whole pool: another address got 503.
    Now a signed-in request counts for its address and for its user."""
    await scenario(db_dsn)
    settings = make_settings(
        db_dsn,
        redis_url,
        cache_enabled=False,
        pool_max=4,
        db_requests_per_ip=2,
        pool_acquire_timeout_s=1.0,
        forwarded_allow_ips=["127.0.0.1"],
    )
    token, _ = issue_token(settings, Principal("0x" + "e7" * 20, frozenset({"user"})))
    async with serving(settings) as (_rt, base), aiohttp.ClientSession() as http:
        locker = await asyncpg.connect(db_dsn)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE idx.positions IN ACCESS EXCLUSIVE MODE")

            async def get(path: str, client: str, signed_in: bool = False) -> int:
                headers = {"X-Forwarded-For": client, **({"Authorization": f"Bearer {token}"} if signed_in else {})}
                async with http.get(base + path, headers=headers) as r:
                    await r.read()
                    return r.status

            pages = [f"/v1/users/{TRADER}/positions?page={i}" for i in range(1, 5)]
            hog = [asyncio.ensure_future(get(p, "10.0.0.2", signed_in=i % 2 == 1)) for i, p in enumerate(pages)]
            done, _ = await asyncio.wait(hog, timeout=3)
            assert sorted(t.result() for t in done) == [429, 429]
            assert await get("/v1/markets/1", "10.0.0.3") == 200  # another address, meanwhile
            await tx.rollback()
            assert await asyncio.gather(*(t for t in hog if t not in done)) == [200, 200]
        finally:
            await locker.close()


async def test_one_address_over_its_cap_is_served_while_the_pool_is_half_idle(db_dsn: str, redis_url: str) -> None:
    """Review h4: two tabs of one user, each opening a market page (3 requests at once), were refused
    with the pool idle. Over its cap an address still gets in while half the pool is free."""
    await scenario(db_dsn)
    settings = make_settings(db_dsn, redis_url, cache_enabled=False, pool_max=10, db_requests_per_ip=2)
    async with serving(settings) as (_rt, base), aiohttp.ClientSession() as http:
        locker = await asyncpg.connect(db_dsn)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE idx.positions IN ACCESS EXCLUSIVE MODE")

            async def get(path: str) -> int:
                async with http.get(base + path) as r:
                    await r.read()
                    return r.status

            tabs = [asyncio.ensure_future(get(f"/v1/users/{TRADER}/positions?page={i}")) for i in range(1, 5)]
            await asyncio.sleep(1)
            await tx.rollback()
            assert await asyncio.gather(*tabs) == [200] * 4
        finally:
            await locker.close()


async def test_a_request_that_cannot_get_a_connection_gets_503_with_retry_after(db_dsn: str, redis_url: str) -> None:
    """Every read connection held elsewhere: the request waits pool_acquire_timeout_s, then 503 in the
    seed's body with Retry-After — never an unbounded wait."""
    await scenario(db_dsn)
    settings = make_settings(db_dsn, redis_url, cache_enabled=False, pool_min=1, pool_max=2, pool_acquire_timeout_s=0.3)
    async with serving(settings) as (rt, base):
        assert rt.state is not None
        held = [await rt.state.read_pool.acquire() for _ in range(2)]
        try:
            async with aiohttp.ClientSession() as http, http.get(base + "/v1/markets") as r:
                body = await r.json()
                assert r.status == 503
                assert r.headers["Retry-After"] == "1"
                assert body["statusCode"] == 503
                assert body["path"] == "/v1/markets"
                assert "no database connection free" in body["errors"][0]["message"]
        finally:
            for c in held:
                await rt.state.read_pool.release(c)
        assert "api_pool_acquire_timeouts_total" in (await _metrics(base))
        # the refused request is no longer counted in flight (a count left behind by every pool timeout
        # would end the per-address exemption "while half the pool is idle" for good)
        assert rt.state.db_in_flight == 0


async def _metrics(base: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        return await r.text()


async def many_outbox_rows(dsn: str, n: int, room: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               SELECT $1, 'market:trade', ARRAY[$2, 'global:all'], g, 0, decode(lpad(to_hex(g), 64, '0'), 'hex'),
                      json_build_object('market_id', 1, 'note', repeat('x', 300), 'n', g)::jsonb
                 FROM generate_series(1, $3) g""",
            CHAIN,
            room,
            n,
        )
    finally:
        await conn.close()


async def silent_client(url: str, since: int) -> Any:
    """A feed client with a tiny receive buffer that subscribes from far back and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    ws = await connect(url, sock=sock, max_queue=1, ping_interval=None)
    await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:1"], "since": since}))
    return ws


async def test_feed_clients_replaying_from_far_back_that_never_read_free_everything(
    db_dsn: str, redis_url: str
) -> None:
    """12 clients replay 20,000 events and never read: HTTP keeps answering from the database while
    they stall; each is closed (4008) and afterwards no pool connection, room or client entry remains."""
    await scenario(db_dsn)
    await many_outbox_rows(db_dsn, 20_000, "market:1")
    settings = make_settings(
        db_dsn,
        redis_url,
        cache_enabled=False,
        feed_replay_max=50_000,
        feed_queue_max=100,
        feed_replay_stall_s=1.0,
        feed_max_connections_per_ip=50,
        feed_resume_burst=12,
    )
    async with serving(settings) as (rt, base):
        assert rt.state is not None
        hub = rt.state.hub
        url = f"ws://127.0.0.1:{hub.port}"
        clients = [await silent_client(url, 0) for _ in range(12)]
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(20):  # while the replays stall
                    async with http.get(base + "/v1/markets") as r:
                        assert r.status == 200
            for _ in range(1500):  # 30 s: cut at once, the handler ends when the close completes
                if not hub.clients and not hub.per_ip:
                    break
                await asyncio.sleep(0.02)
            assert not hub.clients
            assert not hub.rooms
            assert not hub.per_ip
            assert await settle(rt) == {"read": 0, "write": 0, "feed": 0}
            assert "feed_slow_consumer_disconnects_total 12.0" in await _metrics(base)
        finally:
            for ws in clients:
                with contextlib.suppress(Exception):
                    ws.transport.abort()

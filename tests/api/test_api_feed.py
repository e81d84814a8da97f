"""The websocket feed against a real server (the app's lifespan runs the pump and the feed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.app import Runtime, create_app
from api.auth import Principal, issue_token
from api.settings import Settings
from tests.api.conftest import ADMIN, make_settings
from tests.api.rows import CHAIN, head, outbox

pytestmark = [pytest.mark.pg, pytest.mark.redis]
USER = "0x" + "a1" * 20


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Any, Runtime, str]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        rt: Runtime = app.state.runtime
        assert rt.state is not None
        for _ in range(200):
            if rt.state.hub.port:
                break
            await asyncio.sleep(0.01)
        yield app, rt, f"ws://127.0.0.1:{rt.state.hub.port}"


async def broadcast_listeners(rt: Runtime, n: int) -> None:
    """Waits until `n` pumps subscribe to the broadcast channel: the pump subscribes in a background
    task, and Redis drops a PUBLISH that comes before it."""
    assert rt.state is not None
    pump = rt.state.pump
    assert pump.redis is not None
    for _ in range(1500):  # 30 s
        if (await pump.redis.pubsub_numsub(pump.broadcast_channel))[0][1] >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} pumps subscribed to {pump.broadcast_channel} after 30 s")


async def recv(ws: ClientConnection, wait_s: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(wait_s):
        return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def recv_type(ws: ClientConnection, kind: str, wait_s: float = 10) -> dict[str, Any]:
    """Next message of `kind`, skipping heartbeats."""
    while True:
        m = await recv(ws, wait_s)
        if m["type"] == kind:
            return m
        assert m["type"] == "heartbeat", m


async def subscribe(ws: ClientConnection, rooms: list[str], since: int | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"op": "subscribe", "rooms": rooms}
    if since is not None:
        msg["since"] = since
    await ws.send(json.dumps(msg))
    return await recv_type(ws, "subscribed")


async def trade_row(conn: asyncpg.Connection, market: int, block: int, log_index: int = 0, **extra: Any) -> int:
    return await outbox(
        conn,
        "market:trade",
        ["global:all", f"market:{market}", f"user:{USER}"],
        {"market_id": market, "trader": USER, **extra},
        block,
        log_index,
    )


async def test_subscribe_receives_trade_with_seq_id_and_finality(db_dsn: str, redis_url: str) -> None:
    """A subscriber of market:1 gets the trade with seq, event id and finality; market:2 does not."""
    conn = await asyncpg.connect(db_dsn)
    await head(conn, 100, safe=90, finalized=80)
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url):
        async with connect(url) as a, connect(url) as b:
            await subscribe(a, ["market:1"])
            await subscribe(b, ["market:2"])
            s1 = await trade_row(conn, 1, 95, 3, collateral="12.500000")
            s2 = await trade_row(conn, 1, 50, 0)
            m = await recv_type(a, "event")
            assert m["event"] == "market:trade"
            assert m["seq"] == s1
            assert m["id"] == {"chainId": CHAIN, "blockNumber": 95, "logIndex": 3, "blockHash": "0x" + f"{95:064x}"}
            assert m["finality"] == "unsafe"
            assert m["data"]["collateral"] == "12.500000"
            assert "market:1" in m["rooms"]
            m2 = await recv_type(a, "event")
            assert (m2["seq"], m2["finality"]) == (s2, "finalized")
            await b.send(json.dumps({"op": "ping"}))
            pong = await recv_type(b, "pong")  # nothing for market:2 arrived before the pong
            assert pong["seq"] >= s2
    await conn.close()


async def test_resume_since_has_no_gap_and_no_duplicate(db_dsn: str, redis_url: str) -> None:
    """Reconnecting with since=SEQ replays exactly the missed rows, then continues live, even while
    rows keep arriving during the replay."""
    conn = await asyncpg.connect(db_dsn)
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url):
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"])
            first = [await trade_row(conn, 1, b) for b in range(1, 4)]
            got = [(await recv_type(ws, "event"))["seq"] for _ in first]
            assert got == first
        last_seen = got[-1]
        missed = []
        for b in range(4, 400):
            missed.append(await trade_row(conn, 1 if b % 3 else 2, b))  # market:2 rows must not be replayed
        expected = [s for i, s in enumerate(missed) if (i + 4) % 3]

        async def keep_writing() -> list[int]:
            out = []
            for b in range(400, 460):
                out.append(await trade_row(conn, 1, b))
                await asyncio.sleep(0)
            return out

        async with connect(url) as ws:
            writer = asyncio.create_task(keep_writing())
            await subscribe(ws, ["market:1"], since=last_seen)
            live = await writer
            received: list[int] = []
            replayed = None
            while len(received) < len(expected) + len(live):
                m = await recv(ws)
                if m["type"] == "replayed":
                    replayed = m
                elif m["type"] == "event":
                    received.append(m["seq"])
            assert replayed is not None
            assert replayed["seqFrom"] == last_seen
            assert received == expected + live  # in order, no gap, no duplicate
            await ws.send(json.dumps({"op": "ping"}))
            assert (await recv_type(ws, "pong"))["seq"] == live[-1]
            await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:3"], "since": 1}))
            assert (await recv_type(ws, "error"))["code"] == "since_not_first"
    await conn.close()


async def test_reorg_retraction_reaches_every_connection(db_dsn: str, redis_url: str) -> None:
    """chain:reorg (removed event ids + common ancestor) goes to every client whatever its rooms."""
    conn = await asyncpg.connect(db_dsn)
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url):
        async with connect(url) as ws:
            await subscribe(ws, ["market:7"])
            s = await trade_row(conn, 7, 120, 1)
            assert (await recv_type(ws, "event"))["seq"] == s
            payload = {
                "common_ancestor": 119,
                "removed": [
                    {"chain_id": CHAIN, "block_number": 120, "log_index": 1, "block_hash": "0x" + f"{120:064x}"}
                ],
            }
            r = await outbox(conn, "chain:reorg", ["global:all"], payload, 119)
            m = await recv_type(ws, "event")
            assert (m["event"], m["seq"]) == ("chain:reorg", r)
            assert m["data"]["removed"][0]["blockNumber"] == 120
            assert m["data"]["commonAncestor"] == 119
    await conn.close()


async def test_slow_consumer_is_cut_off_while_others_keep_receiving(db_dsn: str, redis_url: str) -> None:
    """A client that stops reading is closed with 4008 once its queue is full; a reading client gets
    every message."""
    conn = await asyncpg.connect(db_dsn)
    settings = make_settings(db_dsn, redis_url, feed_queue_max=20)
    async with running(settings) as (_, rt, url):
        async with connect(url) as fast, connect(url, max_queue=1) as slow:
            await subscribe(fast, ["market:1"])
            await subscribe(slow, ["market:1"])
            big = "x" * 20_000
            n = 600
            await conn.executemany(
                """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
                   VALUES ($1, 'market:trade', $2, $3, 0, $4, $5::jsonb)""",
                [(CHAIN, ["market:1"], b, b.to_bytes(32, "big"), json.dumps({"pad": big})) for b in range(n)],
            )
            await conn.execute("SELECT pg_notify('gl_outbox', 'x')")
            count = 0
            while count < n:
                m = await recv(fast, wait_s=30)
                count += m["type"] == "event"
            assert count == n
            assert rt.metrics.feed_slow_disconnects._value.get() == 1  # type: ignore[attr-defined]
            code = None
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(30):
                    while True:
                        await slow.recv()
            code = slow.close_code
            assert code == 4008
            assert len(rt.state.hub.clients) == 1  # type: ignore[union-attr]
    await conn.close()


async def test_malformed_frames_get_errors_and_connection_survives(db_dsn: str, redis_url: str) -> None:
    """Bad JSON, unknown ops, bad rooms, too many rooms, binary frames: an error each; oversize closes 1009."""
    async with running(make_settings(db_dsn, redis_url, feed_max_rooms=3)) as (_, _rt, url):
        async with connect(url) as ws:
            cases = [
                ("not json", "bad_json"),
                ("[1, 2]", "bad_frame"),
                ('{"op": "dance"}', "unknown_op"),
                ('{"op": "subscribe"}', "bad_rooms"),
                ('{"op": "subscribe", "rooms": ["market:abc"]}', "bad_room"),
                ('{"op": "subscribe", "rooms": ["user:0x12"]}', "bad_room"),
                ('{"op": "subscribe", "rooms": ["global:all"], "since": -1}', "bad_since"),
                ('{"op": "subscribe", "rooms": ["global:all"], "extra": 1}', "unknown_field"),
                ('{"op": "subscribe", "rooms": ["market:1", "market:2", "market:3", "market:4"]}', "too_many_rooms"),
            ]
            for frame, code in cases:
                await ws.send(frame)
                m = await recv_type(ws, "error")
                assert m["code"] == code, (frame, m)
            await ws.send(b"\x00\x01")
            assert (await recv_type(ws, "error"))["code"] == "binary_frame"
            ok = await subscribe(ws, ["user:" + "0x" + "AB" * 20])
            assert ok["rooms"] == ["user:0x" + "ab" * 20]
            await ws.send(json.dumps({"op": "unsubscribe", "rooms": ["user:0x" + "ab" * 20]}))
            assert (await recv_type(ws, "unsubscribed"))["rooms"] == ["user:0x" + "ab" * 20]
            await ws.send(json.dumps({"op": "ping"}))
            await recv_type(ws, "pong")
            await ws.send("x" * 10_000)
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            assert ws.close_code == 1009


async def test_maintenance_broadcast_via_admin_endpoint(db_dsn: str, redis_url: str) -> None:
    """POST /v1/admin/maintenance (admin token) reaches every feed connection through Redis pub/sub."""
    settings = make_settings(db_dsn, redis_url)
    async with running(settings) as (app, rt, url):
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"])
            await broadcast_listeners(rt, 1)
            token, _ = issue_token(settings, Principal(ADMIN, frozenset({"user", "admin"})))
            user_token, _ = issue_token(settings, Principal(USER, frozenset({"user"})))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                body = {"message": "upgrade at 02:00", "endsAt": "2030-01-01T02:30:00Z"}
                r = await http.post(
                    "/v1/admin/maintenance", json=body, headers={"Authorization": f"Bearer {user_token}"}
                )
                assert r.status_code == 403
                r = await http.post("/v1/admin/maintenance", json=body)
                assert r.status_code == 401
                r = await http.post("/v1/admin/maintenance", json=body, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 202, r.text
                assert r.json()["data"]["allInstances"] is True
            m = await recv_type(ws, "event")
            assert m["event"] == "system:maintenance"
            assert m["seq"] is None
            assert m["data"]["message"] == "upgrade at 02:00"
            assert m["data"]["endsAt"] == "2030-01-01T02:30:00Z"


async def test_two_instances_deliver_the_same_stream_and_share_broadcasts(db_dsn: str, redis_url: str) -> None:
    """Two API/feed instances on one database: both deliver the outbox with the same seqs, and an
    admin broadcast posted to one reaches clients of the other through Redis pub/sub."""
    conn = await asyncpg.connect(db_dsn)
    one = make_settings(db_dsn, redis_url)
    two = make_settings(db_dsn, redis_url, cache_prefix=one.api.cache_prefix)  # same deployment
    async with running(one) as (app1, rt1, url1), running(two) as (_app2, _rt2, url2):
        async with connect(url1) as a, connect(url2) as b:
            await subscribe(a, ["market:3"])
            await subscribe(b, ["market:3"])
            seq = await trade_row(conn, 3, 70)
            assert (await recv_type(a, "event"))["seq"] == seq
            assert (await recv_type(b, "event"))["seq"] == seq
            token, _ = issue_token(one, Principal(ADMIN, frozenset({"user", "admin"})))
            await broadcast_listeners(rt1, 2)  # both instances' pumps share the channel
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app1), base_url="http://t") as http:
                r = await http.post(
                    "/v1/admin/maintenance",
                    json={"message": "failover drill"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 202
            for ws in (a, b):
                m = await recv_type(ws, "event")
                assert (m["event"], m["data"]["message"]) == ("system:maintenance", "failover drill")
    await conn.close()


async def test_a_trade_without_its_event_row_is_not_relayed_as_null_data(db_dsn: str, redis_url: str) -> None:
    """A trade's outbox row carries no payload (sql/082): the view builds it from its event row. Without
    that row (deleted by hand) the feed skips the message, live and on resume, and counts it, instead of
    sending `data: null` (review h1); any other event must keep its payload (the table refuses NULL)."""
    conn = await asyncpg.connect(db_dsn)
    await head(conn, 100, safe=90, finalized=80)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO idx.outbox (chain_id, event, rooms, payload)"
            " VALUES ($1, 'market:created', '{global:all}', NULL)",
            CHAIN,
        )
    async with running(make_settings(db_dsn, redis_url)) as (_, rt, url):
        assert rt.state is not None
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"])
            orphan = await conn.fetchval(
                "INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash)"
                " VALUES ($1, 'market:trade', '{global:all,market:1}', 95, 0, $2) RETURNING seq",
                CHAIN,
                b"\x95" * 32,
            )
            kept = await trade_row(conn, 1, 96)
            m = await recv_type(ws, "event")
            assert (m["seq"], m["data"]["marketId"]) == (kept, 1)
        async with connect(url) as late:
            await subscribe(late, ["market:1"], since=orphan - 1)
            replayed = [await recv_type(late, "event")]
            assert [r["seq"] for r in replayed] == [kept]
        assert rt.metrics.feed_unbuilt._value.get() == 2  # once live, once on the resume
    await conn.close()

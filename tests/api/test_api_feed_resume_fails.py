"""A resume (`since`) that cannot be complete never looks complete: the outbox pruned past `since`, a
`since` this database never issued, more than feed_replay_max events missing, or the replay unreadable
(the feed's pool busy) each answer an error and leave the connection unsubscribed — no `replayed`, no
live events after a gap — until the client subscribes again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

import asyncpg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.api.conftest import make_settings
from tests.api.test_api_feed import recv, running, subscribe, trade_row

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def frames_until_quiet(ws: ClientConnection, quiet_s: float = 1.0) -> list[dict[str, Any]]:
    """Every frame the server sends until it says nothing for quiet_s (heartbeats dropped)."""
    out = []
    with contextlib.suppress(TimeoutError):
        while True:
            m = await recv(ws, quiet_s)
            if m["type"] != "heartbeat":
                out.append(m)
    return out


async def assert_unsubscribed_until_asked(ws: ClientConnection, conn: asyncpg.Connection) -> None:
    await trade_row(conn, 1, 900)  # live, in the room asked for: not delivered
    assert [m["type"] for m in await frames_until_quiet(ws)] == []
    await subscribe(ws, ["market:1"])  # a fresh subscribe (no since) goes live
    seq = await trade_row(conn, 1, 901)
    assert [(m["type"], m.get("seq")) for m in await frames_until_quiet(ws)] == [("event", seq)]


async def test_a_resume_from_before_the_outbox_is_refused_and_stays_unsubscribed(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 6)]
    await conn.execute("DELETE FROM idx.outbox WHERE seq <= $1", seqs[2])  # retention pruned them
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url), connect(url) as ws:
        await subscribe(ws, ["market:1"], since=seqs[0])
        frames = await frames_until_quiet(ws)
        assert [(m["type"], m.get("code")) for m in frames] == [("error", "since_too_old")]
        assert "not subscribed" in frames[0]["message"]
        await assert_unsubscribed_until_asked(ws, conn)
    await conn.close()


async def test_a_resume_beyond_the_newest_event_is_refused(db_dsn: str, redis_url: str) -> None:
    """Review s15 F4: a `since` beyond the outbox's newest seq (a client of a database since rebuilt into
    another, or restored) was answered `replayed` with 0 events, as if complete: the client then missed
    everything up to its old seq."""
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 4)]
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url):
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=seqs[-1] + 5_000)
            frames = await frames_until_quiet(ws)
            assert [(m["type"], m.get("code")) for m in frames] == [("error", "since_too_old")]
            assert f"beyond the newest seq this database issued ({seqs[-1]})" in frames[0]["message"]
            await assert_unsubscribed_until_asked(ws, conn)
        async with connect(url) as ws:  # the newest seq itself: nothing to replay, and live from there
            await subscribe(ws, ["market:1"], since=seqs[-1] + 2)
            assert [m["type"] for m in await frames_until_quiet(ws)] == ["replayed"]
    await conn.close()


async def test_a_resume_into_an_empty_outbox_of_another_database_is_refused(db_dsn: str, redis_url: str) -> None:
    """Review s15: the check above read max(seq), which an empty (new, or pruned) outbox does not have, and
    then took any since. It reads the highest seq the database ever issued now."""
    conn = await asyncpg.connect(db_dsn)
    await trade_row(conn, 1, 1)
    await conn.execute("DELETE FROM idx.outbox")  # pruned, or a database whose outbox is still empty
    issued = await conn.fetchval("SELECT last_value FROM idx.outbox_seq_seq")
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url), connect(url) as ws:
        await subscribe(ws, ["market:1"], since=issued + 1_000)
        frames = await frames_until_quiet(ws)
        assert [(m["type"], m.get("code")) for m in frames] == [("error", "since_too_old")]
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url), connect(url) as ws:
        await subscribe(ws, ["market:1"], since=issued)  # the last seq it issued: nothing missed
        assert [m["type"] for m in await frames_until_quiet(ws)] == ["replayed"]
    await conn.close()


async def test_more_missing_than_replay_max_is_refused_before_any_is_sent(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 12)]
    async with running(make_settings(db_dsn, redis_url, feed_replay_max=5)) as (_, _rt, url):
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=seqs[0])  # 10 missing
            frames = await frames_until_quiet(ws)
            assert [(m["type"], m.get("code")) for m in frames] == [("error", "since_too_old")]
            assert "more than 5 events" in frames[0]["message"]
            await assert_unsubscribed_until_asked(ws, conn)
        every = [r["seq"] for r in await conn.fetch("SELECT seq FROM idx.outbox ORDER BY seq")]
        async with connect(url) as ws:  # 5 missing: replayed in full
            await subscribe(ws, ["market:1"], since=every[-6])
            frames = await frames_until_quiet(ws)
            assert [m.get("seq") for m in frames if m["type"] == "event"] == every[-5:]
            assert frames[-1]["type"] == "replayed"
    await conn.close()


async def test_a_replay_the_database_cannot_serve_is_not_followed_by_live_events(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 4)]
    async with running(make_settings(db_dsn, redis_url, feed_pool_max=1)) as (_, rt, url):
        assert rt.state is not None
        async with rt.state.hub.pool.acquire(), connect(url) as ws:  # the feed's only connection, held
            await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:1"], "since": seqs[0]}))
            await asyncio.sleep(0)
            frames = await frames_until_quiet(ws, quiet_s=4.0)  # the page waits 2 s for a connection
            assert [(m["type"], m.get("code")) for m in frames] == [
                ("subscribed", None),
                ("error", "replay_unavailable"),
            ]
            await assert_unsubscribed_until_asked(ws, conn)
    await conn.close()


async def test_resumes_are_budgeted_per_client_address_across_connections(db_dsn: str, redis_url: str) -> None:
    """A reconnect loop of resumes (each reads the outbox) is refused past feed_resumes_per_minute per
    address, however many connections it uses; a subscribe without since still goes live."""
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 4)]
    async with running(make_settings(db_dsn, redis_url, feed_resumes_per_minute=3)) as (_, _rt, url):
        for _ in range(3):
            async with connect(url) as ws:
                await subscribe(ws, ["market:1"], since=seqs[0])
                assert (await frames_until_quiet(ws))[-1]["type"] == "replayed"
        async with connect(url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:1"], "since": seqs[0]}))
            frames = await frames_until_quiet(ws)
            assert [(m["type"], m.get("code")) for m in frames] == [("error", "rate_limited")]
            assert "resumes" in frames[0]["message"]
            await assert_unsubscribed_until_asked(ws, conn)
    await conn.close()


async def test_a_resume_too_far_behind_is_refused_before_the_outbox_is_read(db_dsn: str, redis_url: str) -> None:
    """Review s13 F4: a resume into a room with no events counted over the whole seq span (a parallel
    sequential scan of a 72 h outbox). Now a span of more than SPAN_PER_REPLAY_MAX x feed_replay_max
    rows is refused as since_too_old without reading it, however few of them are the client's."""
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 2, b) for b in range(1, 25)]  # 24 rows of another room
    async with running(make_settings(db_dsn, redis_url, feed_replay_max=2)) as (_, rt, url):
        assert rt.state is not None
        async with connect(url) as ws:  # 23 rows behind > 10 x 2: refused (before: counted, then replayed)
            await subscribe(ws, ["market:1"], since=seqs[0])
            frames = await frames_until_quiet(ws)
            assert [(m["type"], m.get("code")) for m in frames] == [("error", "since_too_old")]
            assert "more than 2 events" in frames[0]["message"]
        async with connect(url) as ws:  # 19 rows behind <= 20, none in the room: read, nothing to send
            await subscribe(ws, ["market:1"], since=seqs[4])
            frames = await frames_until_quiet(ws)
            assert [m["type"] for m in frames] == ["replayed"]
            assert frames[0]["events"] == 0
    await conn.close()


async def test_a_resume_ahead_of_a_lagging_workers_head_gets_nothing_twice(db_dsn: str, redis_url: str) -> None:
    """Review s15: with several workers, a client resumes on one whose pump is behind the seq it already
    has (since > the worker's head). The replay has nothing to send, and the rows (head, since] the
    worker's pump then delivers were sent a second time; the connection now starts from `since`."""
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 4)]
    async with running(make_settings(db_dsn, redis_url)) as (_, rt, url):
        assert rt.state is not None
        hub = rt.state.hub
        for _ in range(100):
            if hub.head_seq >= seqs[-1]:
                break
            await asyncio.sleep(0.05)
        rows = await conn.fetch(
            "SELECT seq, event, rooms, block_number, log_index, block_hash, payload::text AS payload, created_at"
            " FROM idx.outbox WHERE seq > $1 ORDER BY seq",
            seqs[0],
        )
        hub.head_seq = seqs[0]  # this worker's pump is behind: the client saw seqs[-1] on another one
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=seqs[-1])
            await hub.publish(rows, None, None)  # the lagging pump catches up: rows the client has
            live = await trade_row(conn, 1, 9)
            frames = await frames_until_quiet(ws)
            assert [(m["type"], m.get("seq")) for m in frames] == [("replayed", None), ("event", live)]
    await conn.close()


async def test_a_replica_behind_the_head_makes_a_resume_unavailable_not_a_silent_gap(
    db_dsn: str, redis_url: str
) -> None:
    """Review s15: the replay reads its pages on [database].read_dsn up to the head the pump read on the
    primary; a replica behind it skipped the rows it lacked and still answered `replayed`. Now a resume
    waits (2 s at most) for the replica to hold the head, else replay_unavailable."""
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 4)]
    settings = dataclasses.replace(make_settings(db_dsn, redis_url), read_dsn=db_dsn + "?application_name=replica")
    async with running(settings) as (_, rt, url):
        assert rt.state is not None
        hub = rt.state.hub
        assert hub.replica
        for _ in range(100):
            if hub.head_seq >= seqs[-1]:
                break
            await asyncio.sleep(0.05)
        hub.head_seq = seqs[-1] + 10  # the primary is ten rows ahead of what this "replica" holds
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=seqs[0])
            frames = await frames_until_quiet(ws, quiet_s=4.0)
            assert [(m["type"], m.get("code")) for m in frames] == [("error", "replay_unavailable")]
        hub.head_seq = seqs[-1]
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=seqs[0])
            frames = await frames_until_quiet(ws)
            assert [m.get("seq") for m in frames if m["type"] == "event"] == seqs[1:]
    await conn.close()

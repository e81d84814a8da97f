"""Review h11 (medium-high): at the end of a resume, the live events held during the replay (c.pending, allowed up to
feed_queue_max) were moved with put_nowait into the client's queue, which the replay itself has just
filled (the replay waits for room in it, by design). queue + `replayed` + held > feed_queue_max cut the
client with 4008 "slow consumer" although it reads steadily and its held list never exceeded the bound."""

from __future__ import annotations

import asyncio
import contextlib
import json

import asyncpg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import make_settings
from tests.api.rows import CHAIN
from tests.api.test_api_feed import recv, running, subscribe, trade_row

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def test_resume_with_live_events_during_replay_is_not_cut(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    settings = make_settings(db_dsn, redis_url, feed_queue_max=20)  # stall: default 10 s
    async with running(settings) as (_, rt, url):
        since = await trade_row(conn, 1, 1)
        n = 300
        pad = "x" * 70_000
        await conn.executemany(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'market:trade', $2, $3, 0, $4, $5::jsonb)""",
            [(CHAIN, ["market:1"], b, b.to_bytes(32, "big"), json.dumps({"pad": pad})) for b in range(2, 2 + n)],
        )
        await conn.execute("SELECT pg_notify('gl_outbox', 'x')")
        for _ in range(500):
            if rt.state.hub.head_seq >= since + n:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)

        async def live_during_replay() -> list[int]:
            await asyncio.sleep(0.5)
            return [await trade_row(conn, 1, 1000 + i) for i in range(19)]  # fewer than feed_queue_max (20)

        async with connect(url, max_size=None) as ws:
            await subscribe(ws, ["market:1"], since=since)
            live_task = asyncio.create_task(live_during_replay())
            events, replayed = [], None
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while len(events) < n + 19:
                    m = await recv(ws, wait_s=20)
                    await asyncio.sleep(0.01)  # a steady reader: never near feed_replay_stall_s without reading
                    if m["type"] == "event":
                        events.append(m["seq"])
                    elif m["type"] == "replayed":
                        replayed = m
            live = await live_task
            assert ws.close_code is None, (
                f"cut with {ws.close_code} {ws.close_reason!r} after {len(events)} events"
                f" (replayed={replayed}), slow disconnects={rt.metrics.feed_slow_disconnects._value.get()}"  # type: ignore[attr-defined]
            )
            assert replayed is not None
            assert events[-19:] == live
    await conn.close()

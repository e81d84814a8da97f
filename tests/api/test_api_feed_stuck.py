"""A feed client that stops reading in a room that then goes quiet is cut within
feed_replay_stall_s of its writer blocking — it used to hold its connection and buffers until
feed_queue_max heartbeats had piled up behind the blocked send (1,000 x 15 s: about 4 hours)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from websockets.asyncio.client import connect

from tests.api.conftest import make_settings
from tests.api.rows import outbox
from tests.api.test_api_feed import running

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def test_a_client_that_stops_reading_in_a_quiet_room_is_cut(db_dsn: str, redis_url: str) -> None:
    settings = make_settings(
        db_dsn,
        redis_url,
        feed_heartbeat_s=0.2,
        feed_replay_stall_s=1.0,
        feed_buffer_max_bytes=1 << 30,  # the fast path's buffer cut out of the way: only the writer's applies
    )
    conn = await asyncpg.connect(db_dsn)
    async with running(settings) as (_, rt, url):
        assert rt.state is not None
        hub = rt.state.hub
        # max_queue=1: the client library stops reading after one frame, so TCP fills up
        async with connect(url, max_queue=1) as ws:
            await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:9"]}))
            big = "x" * 256 * 1024
            for i in range(80):  # ~20 MB: past both kernel buffers, the rest waits in the transport
                await outbox(conn, "market:trade", ["market:9"], {"market_id": 9, "pad": big}, 10 + i, 0)
            # the room is quiet from here on: only heartbeats, queued behind the blocked writer
            for _ in range(300):  # 30 s
                if not hub.clients:
                    break
                await asyncio.sleep(0.1)
            assert not hub.clients, "the client that stopped reading was not cut"
            assert rt.metrics.feed_slow_disconnects._value.get() >= 1
    await conn.close()

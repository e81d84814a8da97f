"""The feed's resume path at its edges (review s19 h3, an adversarial review of acd0376); each test failed
on the code it was written against.

1. A page of fewer than 500 rows is the end of the replay; reading one more page met retention of other
   rooms' rows past the cursor, and a complete replay was refused (since_too_old).
2. sql/084 gave a quiet chain a watermark above the feed's head for it (seq 0): every resume from the seq
   the feed gave was refused. The pump now starts at the watermark when it is higher (api/outbox.py).
3. A client that closed its connection during the hand-off was held feed_replay_stall_s and counted a slow
   consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib

import asyncpg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from indexer.maintenance import prune_outbox
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN
from tests.api.test_api_feed import recv, running, subscribe, trade_row
from tests.api.test_api_feed_resume_fails import frames_until_quiet
from tests.api.test_api_feed_resume_races import frames_until_end, small_buffer_socket, wait_head

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ROOT = pathlib.Path(__file__).resolve().parents[2]


async def test_retention_of_other_rooms_after_the_last_page_does_not_refuse_a_complete_replay(
    db_dsn: str, redis_url: str
) -> None:
    conn = await asyncpg.connect(db_dsn)
    settings = make_settings(db_dsn, redis_url, feed_queue_max=4, feed_replay_stall_s=60)
    async with running(settings) as (_, rt, url):
        since = await trade_row(conn, 1, 1)
        n = 300  # one page (< 500): the first page read is the whole replay of market:1
        pad = "x" * 64_000  # more than the socket buffers hold: the replay waits for this reader with it
        await conn.executemany(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'market:trade', $2, $3, 0, $4, $5::jsonb)""",
            [(CHAIN, ["market:1"], b, b.to_bytes(32, "big"), json.dumps({"pad": pad})) for b in range(2, 2 + n)],
        )
        # then other markets' trades on the same chain (not the client's rooms)
        await conn.executemany(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'market:trade', $2, $3, 0, $4, '{}'::jsonb)""",
            [(CHAIN, ["market:2"], b, b.to_bytes(32, "big")) for b in range(2 + n, 12 + n)],
        )
        seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM idx.outbox WHERE seq > $1 ORDER BY seq", since)]
        mine, others = seqs[:n], seqs[n:]
        await conn.execute("SELECT pg_notify('gl_outbox', 'x')")
        await wait_head(rt, seqs[-1])

        async with connect(url, max_size=None, sock=small_buffer_socket(rt.state.hub.port)) as ws:  # type: ignore[union-attr]
            await subscribe(ws, ["market:1"], since=since)
            first = await recv(ws, 20)
            assert (first["type"], first["seq"]) == ("event", mine[0])  # the only page of market:1 is read
            # retention: the oldest rows crossed outbox_retention_hours, through five of market:2's; every
            # market:1 row it deletes has already been read by this replay (it is in hand, being sent)
            await conn.execute(
                "UPDATE idx.outbox SET created_at = now() - interval '96 hours' WHERE seq <= $1", others[4]
            )
            assert await prune_outbox(conn, CHAIN, 72) == 1 + n + 5
            frames = await frames_until_end(ws, first)
        got = [m["seq"] for m in frames if m["type"] == "event"]
        assert got == mine  # every event of market:1 was sent ...
        # ... so the replay is complete and must say so; since_too_old makes the client reload for nothing
        assert frames[-1]["type"] == "replayed", frames[-1]
    await conn.close()


async def test_a_quiet_chain_given_a_watermark_by_sql_084_resumes_from_the_seq_the_feed_gave(
    db_dsn: str, redis_url: str
) -> None:
    base = 8453
    conn = await asyncpg.connect(db_dsn)
    # two indexed chains; the other one has had no outbox row yet (a quiet or newly added chain)
    for chain in (CHAIN, base):
        await conn.execute(
            "INSERT INTO idx.checkpoints (chain_id, block_number, block_hash) VALUES ($1, 5, $2)", chain, b"\x05" * 32
        )
    for b in range(1, 4):
        await trade_row(conn, 1, b)  # CHAIN's events
    # the upgrade: sql/084 as `indexer migrate` applies it to this database
    await conn.execute((ROOT / "sql" / "084_outbox_pruned_empty_chains.sql").read_text())
    settings = make_settings(db_dsn, redis_url, chain_ids=[CHAIN, base])
    async with running(settings) as (_, _rt, url):
        async with connect(url + f"/?chainId={base}") as ws:
            seq = (await subscribe(ws, ["market:1"]))["seq"]  # "live events follow seq"
        # the client reconnects and resumes from the seq it was given (no event since: it missed nothing)
        async with connect(url + f"/?chainId={base}") as ws:
            await subscribe(ws, ["market:1"], since=seq)
            frames = await frames_until_quiet(ws)
    await conn.close()
    assert [m["type"] for m in frames] == ["replayed"], (
        f"a resume of the quiet chain {base} from seq {seq} (the feed's own head) was answered {frames}"
    )


async def test_a_client_that_leaves_during_the_hand_off_is_not_counted_a_slow_consumer(
    db_dsn: str, redis_url: str
) -> None:
    """3. _drained waits for the queue to drain to half before going live; a client that closed its
    connection (the writer ended) never drains it, so the hand-off waits feed_replay_stall_s, holding the
    connection's task, queue and per-address slot, and then cuts it: counted as a slow consumer (4008)."""
    conn = await asyncpg.connect(db_dsn)
    settings = make_settings(db_dsn, redis_url, feed_queue_max=20, feed_replay_stall_s=3)
    async with running(settings) as (_, rt, url):
        hub = rt.state.hub  # type: ignore[union-attr]
        registry = rt.state.metrics.registry  # type: ignore[union-attr]
        since = await trade_row(conn, 1, 1)
        n = 150
        await conn.executemany(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'market:trade', $2, $3, 0, $4, $5::jsonb)""",
            [
                (CHAIN, ["market:1"], b, b.to_bytes(32, "big"), json.dumps({"pad": "x" * 70_000}))
                for b in range(2, 2 + n)
            ],
        )
        await conn.execute("SELECT pg_notify('gl_outbox', 'x')")
        await wait_head(rt, await conn.fetchval("SELECT max(seq) FROM idx.outbox"))
        ws = await connect(url, max_size=None, sock=small_buffer_socket(hub.port))
        got: list[str] = []

        async def read() -> None:  # a steady reader
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while True:
                    got.append((await recv(ws, 20))["type"])
                    await asyncio.sleep(0.05)

        await subscribe(ws, ["market:1"], since=since)
        (c,) = hub.clients
        reader = asyncio.create_task(read())
        for _ in range(10_000_000):  # the replay has put its last event and `replayed`: the hand-off waits
            if (
                c.closed
                or not c.replaying
                or (
                    c.queue.qsize() > hub.queue_max // 2 and any(s is None for s, _ in list(c.queue._queue))  # type: ignore[attr-defined]
                )
            ):
                break
            await asyncio.sleep(0)
        assert not c.closed
        assert c.replaying
        # the client goes away (a tab closed) with the tail of the replay still queued
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await ws.close()
        for _ in range(1000):
            if not hub.clients and not hub.per_ip:
                break
            await asyncio.sleep(0.01)
        cut = registry.get_sample_value("feed_slow_consumer_disconnects_total")
    await conn.close()
    assert got.count("event") < n  # it left before the end of the replay's tail
    assert cut in (None, 0.0), f"a client that closed its connection was cut as a slow consumer ({cut})"

"""The feed's resume path under races (review s19 h2, an adversarial review of the review h11 fixes); each
test failed on the code it was written against.

1. Retention deleting rows a replay had not read yet: the next page started past them and the client got
   `replayed`, complete in appearance. Each page now carries the chain's watermark (one snapshot): a
   watermark past the replay's cursor ends it with since_too_old.
2. A chain pruned empty before sql/083 got no watermark and a resume still answered `replayed, 0 events`:
   sql/084 gives such a chain the highest seq issued.
3. The replay leaves the client's queue full at the hand-off and live events are offered without waiting:
   a small burst cut a steadily reading client (4008). The replay now goes live only with half the queue free.
4. The resume budget (feed_resumes_per_minute per client address) was kept per chain's hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import socket
from typing import Any

import asyncpg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from indexer.maintenance import prune_outbox
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN
from tests.api.test_api_feed import recv, running, subscribe, trade_row
from tests.api.test_api_feed_resume_fails import frames_until_quiet

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ROOT = pathlib.Path(__file__).resolve().parents[2]


async def wait_head(rt: Any, seq: int) -> None:
    for _ in range(1500):
        if rt.state.hub.head_seq >= seq:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the pump never reached seq {seq}")


def small_buffer_socket(port: int | None) -> socket.socket:
    """A client socket whose receive buffer is fixed at 32 KiB (no kernel autotuning)."""
    assert port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def frames_until_end(ws: Any, first: dict[str, Any]) -> list[dict[str, Any]]:
    """`first` and the frames after it (heartbeats left out) until `replayed` or an error, or the socket's end."""
    frames = [first]
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while frames[-1]["type"] not in ("replayed", "error"):
            m = await recv(ws, 20)
            if m["type"] != "heartbeat":
                frames.append(m)
    return frames


async def test_retention_during_a_replay_never_answers_replayed_with_a_gap(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    # a small queue: the replay waits for this client with its first page (500 rows) in hand
    settings = make_settings(db_dsn, redis_url, feed_queue_max=4, feed_replay_stall_s=60)
    async with running(settings) as (_, rt, url):
        since = await trade_row(conn, 1, 1)
        n = 520  # one page of 500 and a second of 20
        pad = "x" * 64_000  # a non-reading client holds ~100 of them in socket buffers: far fewer than a page
        await conn.executemany(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'market:trade', $2, $3, 0, $4, $5::jsonb)""",
            [(CHAIN, ["market:1"], b, b.to_bytes(32, "big"), json.dumps({"pad": pad})) for b in range(2, 2 + n)],
        )
        seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM idx.outbox WHERE seq > $1 ORDER BY seq", since)]
        assert len(seqs) == n
        await conn.execute("SELECT pg_notify('gl_outbox', 'x')")
        await wait_head(rt, seqs[-1])
        # since is at or above the watermark (nothing pruned yet): the resume is accepted
        assert await conn.fetchval("SELECT count(*) FROM idx.outbox_pruned") == 0

        async with connect(url, max_size=None, sock=small_buffer_socket(rt.state.hub.port)) as ws:  # type: ignore[union-attr]
            await subscribe(ws, ["market:1"], since=since)
            first = await recv(ws, 20)
            assert (first["type"], first["seq"]) == ("event", seqs[0])  # the first page has been read
            # the client is slow; meanwhile the indexer's retention pass deletes the oldest rows, the
            # first 510 of the 520 to replay among them (they crossed outbox_retention_hours)
            await conn.execute(
                "UPDATE idx.outbox SET created_at = now() - interval '96 hours' WHERE seq <= $1", seqs[509]
            )
            assert await prune_outbox(conn, CHAIN, 72) == 511
            frames = await frames_until_end(ws, first)
        got = [m["seq"] for m in frames if m["type"] == "event"]
        end = frames[-1]
        # a replay that lost rows must say so (an error: reload / resume again); `replayed` means complete
        if end["type"] == "replayed":
            missing = sorted(set(seqs) - set(got))
            assert missing == [], (
                f"`replayed` {end} after {len(got)} of {n} events: {len(missing)} missing"
                f" ({missing[0]}..{missing[-1]}), deleted by retention while the replay ran"
            )
        else:
            assert end["type"] == "error", end
            assert end["code"] in ("since_too_old", "replay_unavailable"), end
    await conn.close()


async def test_a_chain_pruned_empty_before_sql_083_is_not_resumed_as_complete(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    # the database as it was before sql/083 (no watermark, no trigger)
    await conn.execute(
        "DROP TRIGGER outbox_pruned_mark ON idx.outbox; DROP FUNCTION idx.outbox_pruned_mark();"
        " DROP TABLE idx.outbox_pruned"
    )
    await conn.execute(  # an indexed chain
        "INSERT INTO idx.checkpoints (chain_id, block_number, block_hash) VALUES ($1, 5, $2)", CHAIN, b"\x05" * 32
    )
    seqs = [await trade_row(conn, 1, b) for b in range(1, 6)]
    # the client saw seqs[0] and went away; the chain was quiet for four days; retention pruned it empty
    await conn.execute("UPDATE idx.outbox SET created_at = now() - interval '96 hours'")
    assert await prune_outbox(conn, CHAIN, 72) == 5
    # the upgrade: sql/083 and sql/084 as `indexer migrate` applies them
    for name in ("083_outbox_pruned.sql", "084_outbox_pruned_empty_chains.sql"):
        await conn.execute((ROOT / "sql" / name).read_text())
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url):
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=seqs[0])
            frames = await frames_until_quiet(ws)
            # four events (seqs[1:]) are gone: it must not look complete
            assert [(m["type"], m.get("code")) for m in frames] == [("error", "since_too_old")], frames
    await conn.close()


async def test_a_burst_right_after_a_replay_does_not_cut_a_steady_reader(db_dsn: str, redis_url: str) -> None:
    """3. The replay fills the client's queue by design (it waits for room), and so do `replayed` and the
    held events (review h11). When the replay ends the queue is full; the next live event is offered
    with put_nowait, so a burst of a few events (one block's trades; fewer than a live client's
    feed_queue_max absorbs) cuts with 4008 a client that reads steadily."""
    conn = await asyncpg.connect(db_dsn)
    settings = make_settings(db_dsn, redis_url, feed_queue_max=20)  # stall: default 10 s
    async with running(settings) as (_, rt, url):
        hub = rt.state.hub  # type: ignore[union-attr]
        since = await trade_row(conn, 1, 1)
        n = 150
        pad = "x" * 70_000  # more than the socket buffers hold: the replay waits for the reader
        await conn.executemany(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'market:trade', $2, $3, 0, $4, $5::jsonb)""",
            [(CHAIN, ["market:1"], b, b.to_bytes(32, "big"), json.dumps({"pad": pad})) for b in range(2, 2 + n)],
        )
        await conn.execute("SELECT pg_notify('gl_outbox', 'x')")
        head = await conn.fetchval("SELECT max(seq) FROM idx.outbox")
        await wait_head(rt, head)
        burst = 19  # fewer than feed_queue_max (20): what a live client with an empty queue absorbs

        # a small receive buffer (no autotuning): what the kernel holds for the client stays far below
        # the replay, which then waits for the reader as the review h11 case does
        async with connect(url, max_size=None, sock=small_buffer_socket(hub.port)) as ws:
            events: list[int] = []
            kinds: list[str] = []

            async def read() -> None:
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    while len(events) < n + burst:
                        m = await recv(ws, wait_s=20)
                        await asyncio.sleep(0.05)  # a steady reader, far from feed_replay_stall_s
                        kinds.append(m["type"])
                        if m["type"] == "event":
                            events.append(m["seq"])

            await subscribe(ws, ["market:1"], since=since)
            reader = asyncio.create_task(read())
            (c,) = hub.clients
            assert c.replaying  # set with `subscribed`; 150 large events take the reader seconds
            for _ in range(10_000_000):  # the replay (and its hand-off) runs: no other task's state
                if not c.replaying:
                    break
                await asyncio.sleep(0)
            full = c.queue.qsize()
            # one block's trades (one transaction), committed right after the replay ended
            await conn.execute(
                """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
                   SELECT $1, 'market:trade', ARRAY['market:1'], 9000, i, $2, json_build_object('i', i)
                     FROM generate_series(0, $3 - 1) AS i""",
                CHAIN,
                (9_000).to_bytes(32, "big"),
                burst,
            )
            await conn.execute("SELECT pg_notify('gl_outbox', 'x')")
            await reader
            assert ws.close_code is None, (
                f"cut with {ws.close_code} {ws.close_reason!r} after {len(events)} of {n + burst} events"
                f" ({kinds.count('replayed')} replayed); queue at the hand-off: {full} of 20"
            )
            assert len(events) == n + burst
    await conn.close()


async def test_the_resume_budget_is_per_address_across_the_chains_one_feed_serves(db_dsn: str, redis_url: str) -> None:
    """4. docs/feed.md: resumes are limited per client address across its connections
    (feed_resumes_per_minute). With several chains on one feed (api.chain_ids), each chain's hub keeps its
    own budget (Hub.resumes; share() shares per_ip but not it): an address gets the budget once per chain."""
    base = 8453
    conn = await asyncpg.connect(db_dsn)
    seqs = [await trade_row(conn, 1, b) for b in range(1, 4)]
    settings = make_settings(db_dsn, redis_url, chain_ids=[CHAIN, base], feed_resumes_per_minute=3)
    async with running(settings) as (_, _rt, url):
        answers = []
        for target in [url] * 3 + [url + f"/?chainId={base}"] * 3:
            async with connect(target) as ws:
                await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:1"], "since": seqs[0]}))
                frames = [m for m in await frames_until_quiet(ws) if m["type"] != "subscribed"]
                answers.append(frames[-1].get("code") or frames[-1]["type"])
        # 3 a minute for this address: the 4th to 6th are refused, whichever chain they ask for
        assert answers == ["replayed"] * 3 + ["rate_limited"] * 3, answers
    await conn.close()

"""HeadWatcher against a real websocket server that misbehaves: malformed messages, repeats and a
flood of headers in any order. Every answer is suspect: a bad message is skipped (the socket and
the next good header stay), and what the watcher keeps stays bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import websockets

from indexer.live import HeadWatcher


def header(number: int, tag: int = 0) -> dict[str, Any]:
    return {
        "number": hex(number),
        "hash": "0x" + f"{tag:02x}{number:062x}",
        "parentHash": "0x" + f"{tag:02x}{max(number - 1, 0):062x}",
        "timestamp": hex(1_700_000_000 + number),
        "logsBloom": "0x" + "00" * 256,
    }


def note(h: dict[str, Any] | Any) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"result": h}}).decode()


async def watch(messages: list[str], window: int) -> tuple[HeadWatcher, int]:
    """Serves `messages` after the subscription's answer, then waits until the watcher saw the last
    one; returns the watcher and how many connections the server accepted."""
    connections = 0
    done = asyncio.Event()

    async def serve(ws: Any) -> None:
        nonlocal connections
        connections += 1
        await ws.recv()
        await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": "0xsub"}).decode())
        for m in messages:
            await ws.send(m)
        await done.wait()

    async with websockets.serve(serve, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        w = HeadWatcher(f"ws://127.0.0.1:{port}", window=window)
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop))
        last = orjson.loads(messages[-1])["params"]["result"]
        try:
            async with asyncio.timeout(10):
                while w.latest is None or w.latest.number != int(last["number"], 16):
                    await w.event.wait()  # set by every new header
                    w.event.clear()
        finally:
            done.set()
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return w, connections


async def test_malformed_messages_are_skipped_without_dropping_the_socket() -> None:
    bad = [
        "not json",
        "[1, 2]",
        orjson.dumps({"params": [1]}).decode(),
        note({"number": "0x5"}),  # fields missing
        note(header(5) | {"hash": "0x1234"}),  # a hash cut short
        note(header(5) | {"number": 5}),  # not hex text
        note("a string"),
    ]
    w, connections = await watch([note(header(4)), *bad, note(header(4)), note(header(5))], window=16)
    assert connections == 1, "a malformed message must not cost the connection"
    assert w.malformed == len(bad)
    assert sorted(w.headers) == [4, 5]
    assert w.latest is not None
    assert w.latest.number == 5
    assert len(w.arrived) == 2  # header 4 twice: one arrival


def test_what_the_watcher_keeps_is_bounded_whatever_order_headers_come_in() -> None:
    # Numbers going down from far ahead (nothing is below the window of the highest), then a reorg
    # to a shorter chain: never more than `window` headers, all at or below the latest announced.
    w = HeadWatcher("ws://unused", window=16)
    flood = [(10_000_000 - k, 1) for k in range(300)] + [(n, 1) for n in range(40, 52)]
    for n, tag in [*flood, (50, 2), (51, 2)]:  # the last two: a reorg of blocks 50 and 51
        w.announced(note(header(n, tag)))
        assert len(w.headers) <= 16
        assert len(w.arrived) <= 2 * 16
        assert w.latest is not None
        assert w.latest.number == n
        assert max(w.headers) == n
    assert sorted(w.headers) == list(range(40, 52))
    assert w.take(51) == w.latest
    taken = w.take(50)
    assert taken is not None
    assert taken.hash[0] == 2
    assert w.malformed == 0

"""The chain tip: newHeads over a websocket (the `websockets` package) with a polling fallback,
and logs of one block fetched by hash and cross-checked against its logsBloom.

HeadWatcher keeps the latest announced headers (a small window by number) and wakes the indexer
when one arrives. When the websocket is down it reconnects with backoff; the indexer's own
poll (every `poll_interval`) keeps working meanwhile, so a dead socket only costs latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import orjson
import structlog
import websockets

from indexer.chain import BlockRef, bloom_may_contain
from indexer.decode import Log
from indexer.rpc import BadAnswer, Rpc, TransientRpcError
from indexer.wire import parse_header, parse_log, raw_log_dict

log = structlog.get_logger("indexer.live")


class HeadWatcher:
    def __init__(self, ws_url: str, window: int = 256) -> None:
        self.ws_url = ws_url
        self.window = window
        self.headers: dict[int, BlockRef] = {}
        self.arrived: dict[bytes, float] = {}  # block hash → perf_counter when announced (latency metric)
        self.latest: BlockRef | None = None
        self.event = asyncio.Event()
        self.connected = False
        self.malformed = 0  # messages skipped (neither JSON nor a block object)

    def take(self, number: int) -> BlockRef | None:
        return self.headers.get(number)

    def evict(self, number: int) -> None:
        """Forgets the header announced for `number`: the block that follows it (or our stored parent)
        does not link to it, so it is of a branch the node left; the tip reads that block by number."""
        self.headers.pop(number, None)

    def forget_above(self, number: int) -> None:
        """After a rollback to `number`: the headers announced above it are of the branch rolled back."""
        for n in [n for n in self.headers if n > number]:
            del self.headers[n]

    def announced(self, raw: str | bytes) -> None:
        """One websocket message. A malformed one is skipped (warned once): the node's fault, and the
        indexer's poll reads the head anyway. Kept bounded whatever the node sends: the headers of the
        `window` numbers up to the latest announced, and `2 * window` arrival times."""
        try:
            msg = orjson.loads(raw)
            if not isinstance(msg, dict):
                raise TypeError(f"a JSON {type(msg).__name__}, not an object")
            params = msg.get("params")
            if not params:
                return  # a message that is not a notification (an answer, a keep-alive)
            h = parse_header(params["result"])
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError, TransientRpcError) as exc:
            self.malformed += 1
            if self.malformed == 1:
                log.warning("newheads_malformed", error=f"{type(exc).__name__}: {exc}"[:200], message=str(raw)[:200])
            return
        if h.hash in self.arrived:
            return  # announced already: no new wake-up
        self.arrived[h.hash] = time.perf_counter()
        below = self.headers.get(h.number - 1)
        if below is not None and below.hash != h.parent_hash:
            del self.headers[h.number - 1]  # a branch the node left (a reorg whose new n-1 we missed)
        self.headers[h.number] = h
        self.latest = h  # the node's head now, lower than before on a reorg to a shorter chain
        for n in [n for n in self.headers if n > h.number or n <= h.number - self.window]:
            del self.headers[n]  # above the head: a fork the node left; below the window: done with
        if len(self.arrived) > self.window * 2:
            for k in list(self.arrived)[: self.window]:
                del self.arrived[k]
        self.event.set()

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                async with websockets.connect(self.ws_url, max_size=2**24, open_timeout=5, ping_interval=10) as ws:
                    await ws.send(
                        orjson.dumps(
                            {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
                        ).decode()
                    )
                    answer = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
                    if "error" in answer:
                        log.warning("newheads_unsupported", error=str(answer["error"])[:200])
                        return
                    self.connected = True
                    delay = 0.5
                    log.info("newheads_subscribed")
                    async for raw in ws:
                        self.announced(raw)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network errors of any kind: reconnect
                if self.connected:
                    log.warning("newheads_disconnected", error=f"{type(exc).__name__}: {exc}"[:200])
                self.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)


async def tip_logs(rpc: Rpc, header: BlockRef, addresses: Sequence[str], address_bytes: Sequence[bytes]) -> list[Log]:
    """Our logs of one block, by hash. The bloom decides whether to ask at all when the header is
    sealed (it hashes to its block hash, so the bloom is the block's own); a bloom that says "maybe"
    with no logs returned is checked against the receipts, never accepted silently."""
    if header.sealed and not bloom_may_contain(header.bloom, address_bytes):
        return []
    # False positives are possible (other contracts' topics): none found is confirmed with the node
    raw = await rpc.maybe_block_logs_raw(header, addresses)
    try:
        return [parse_log(raw_log_dict(r)) for r in raw]
    except (ValueError, TypeError) as exc:  # a field suspect() does not read (transactionHash not hex)
        raise BadAnswer(f"logs of block {header.number}: malformed log object ({exc})") from None

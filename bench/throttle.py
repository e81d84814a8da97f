"""A rate-limited provider in front of a node (its own thread and event loop), as hosted providers meter.

    with Throttle(upstream, rate=25, rtt=0.05, range_cap=2000) as p:   # p.url, p.calls, p.refused

- Budget: `rate` JSON-RPC calls per second, a batch of n calls costing n (Alchemy, Infura and others
  bill and limit per call, not per HTTP request), from a bucket that holds one second's worth. A call
  over budget is refused: a single call with HTTP 429 + Retry-After; inside a batch, the calls that
  fit are answered and the rest get JSON-RPC error -32005 "rate limit exceeded, retry in N ms" (the
  batch elements fail independently, as providers' do).
- Round trip: every answer leaves `rtt` seconds after its request arrived.
- Range cap: eth_getLogs wider than `range_cap` blocks is refused in QuickNode's wording
  ("eth_getLogs is limited to a 2,000 range"), before it costs anything.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.local_http import posting


class Throttle:
    def __init__(self, upstream: str, rate: float = 25.0, rtt: float = 0.05, range_cap: int = 2000) -> None:
        self.upstream = upstream
        self.rate = rate
        self.rtt = rtt
        self.range_cap = range_cap
        self.tokens = rate
        self.refilled = time.monotonic()
        self.calls = 0  # answered by the node (each call of a batch counts)
        self.refused = 0  # calls refused for the budget
        self.capped = 0  # eth_getLogs refused for their range
        self.requests = 0  # HTTP requests
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def __enter__(self) -> Throttle:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("throttle proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _take(self, n: int) -> int:
        """Up to n calls from the budget; returns how many were granted."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        granted = min(n, math.floor(self.tokens))
        self.tokens -= granted
        return granted

    def _wait_ms(self) -> int:
        return max(10, math.ceil((1 - self.tokens) / self.rate * 1000))

    def _capped(self, call: dict[str, Any]) -> dict[str, Any] | None:
        if call.get("method") != "eth_getLogs" or not call.get("params"):
            return None
        f = call["params"][0]
        if not isinstance(f, dict) or "fromBlock" not in f:
            return None
        a, b = int(f["fromBlock"], 16), int(f["toBlock"], 16)
        if b - a + 1 <= self.range_cap:
            return None
        self.capped += 1
        message = f"eth_getLogs is limited to a {self.range_cap:,} range"
        return {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": -32614, "message": message}}

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

        async def handle(request: web.Request) -> web.StreamResponse:
            arrived = time.monotonic()
            self.requests += 1
            body = orjson.loads(await request.read())
            calls = body if isinstance(body, list) else [body]
            answers: dict[int, dict[str, Any]] = {}
            forward: list[int] = []
            for i, c in enumerate(calls):
                capped = self._capped(c)
                if capped is not None:
                    answers[i] = capped
                else:
                    forward.append(i)
            granted = self._take(len(forward))
            if not isinstance(body, list) and forward and not granted:
                self.refused += 1
                await asyncio.sleep(max(0.0, arrived + self.rtt - time.monotonic()))
                wait = self._wait_ms() / 1000
                return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": f"{wait:.3f}"})
            for i in forward[granted:]:
                self.refused += 1
                text = f"rate limit exceeded, retry in {self._wait_ms()} ms"
                answers[i] = {"jsonrpc": "2.0", "id": calls[i].get("id"), "error": {"code": -32005, "message": text}}
            sent = [calls[i] for i in forward[:granted]]
            if sent:
                self.calls += len(sent)
                headers = {"Content-Type": "application/json"}
                async with session.post(self.upstream, data=orjson.dumps(sent), headers=headers) as resp:
                    got = orjson.loads(await resp.read())
                by_id = {a.get("id"): a for a in (got if isinstance(got, list) else [got])}
                for i in forward[:granted]:
                    answers[i] = by_id.get(
                        calls[i].get("id"), {"jsonrpc": "2.0", "id": calls[i].get("id"), "result": None}
                    )
            await asyncio.sleep(max(0.0, arrived + self.rtt - time.monotonic()))
            out = [answers[i] for i in range(len(calls))]
            return web.Response(
                body=orjson.dumps(out if isinstance(body, list) else out[0]), content_type="application/json"
            )

        async with posting(handle) as self.port:
            self._started.set()
            await self._stop.wait()
        await session.close()

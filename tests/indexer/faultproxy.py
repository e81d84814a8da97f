"""A small JSON-RPC fault proxy in front of anvil (its own thread and event loop), driven by a seed.

Faults, each with its own probability: a JSON-RPC error, HTTP 429, HTTP 502, a request that hangs
(longer than the indexer's request timeout), eth_getLogs range caps answered with real providers'
error strings, a lagging node whose `latest` goes backwards, and duplicated answers (a batch answer
with an element twice; a single answer replayed from an earlier identical request).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from typing import Any

import aiohttp
import orjson
from aiohttp import web

RANGE_ERRORS = (
    (
        -32602,
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
        "limit on the response size, or you can request any block range with a cap of 10K logs in the "
        "response. Based on your parameters, this block range should work: [{a}, {b}]",
    ),
    (-32005, "query returned more than 10000 results. Try with this block range [{a}, {b}]."),
    (-32614, "eth_getLogs is limited to a {n} range"),
    (-32600, "block range is too wide"),
    (-32000, "block range too large"),
    (-32602, "query exceeds max results 20000, retry with the range {da}-{db}"),
)


@dataclasses.dataclass(slots=True)
class Faults:
    rpc_error: float = 0.03
    http_429: float = 0.03
    http_502: float = 0.03
    hang: float = 0.01
    range_cap: int = 7  # blocks; larger eth_getLogs ranges are refused (real wording, random provider)
    lag: float = 0.05  # `latest` answered with an older block
    duplicate: float = 0.05
    enabled: bool = True


class FaultProxy:
    def __init__(self, upstream: str, seed: int, faults: Faults | None = None, hang_seconds: float = 3.0) -> None:
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.hang_seconds = hang_seconds
        self.cache: dict[bytes, bytes] = {}
        self.counts: dict[str, int] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        session = aiohttp.ClientSession()
        app = web.Application()

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, session)

        app.router.add_post("/", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()
        await session.close()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _forward(self, session: aiohttp.ClientSession, body: bytes) -> bytes:
        async with session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}) as resp:
            return await resp.read()

    async def _handle(self, request: web.Request, session: aiohttp.ClientSession) -> web.StreamResponse:
        body = await request.read()
        f = self.faults
        rng = self.rng
        if f.enabled:
            roll = rng.random()
            if roll < f.http_429:
                self._count("429")
                return web.Response(status=429, text="Too Many Requests")
            roll -= f.http_429
            if roll < f.http_502:
                self._count("502")
                return web.Response(status=502, text="Bad Gateway")
            roll -= f.http_502
            if roll < f.hang:
                self._count("hang")
                await asyncio.sleep(self.hang_seconds)
                return web.Response(status=504, text="timeout")
        msg = orjson.loads(body)
        if isinstance(msg, dict) and f.enabled:
            method = msg.get("method")
            if rng.random() < f.rpc_error:
                self._count("rpc_error")
                return self._error(msg, -32603, "internal error")
            if method == "eth_getLogs" and "fromBlock" in msg["params"][0]:
                a, b = int(msg["params"][0]["fromBlock"], 16), int(msg["params"][0]["toBlock"], 16)
                if b - a + 1 > f.range_cap:
                    code, text = rng.choice(RANGE_ERRORS)
                    self._count("range_cap")
                    return self._error(
                        msg,
                        code,
                        text.format(a=hex(a), b=hex(a + f.range_cap - 1), n=f.range_cap, da=a, db=a + f.range_cap - 1),
                    )
            if method == "eth_getBlockByNumber" and msg["params"][0] == "latest" and rng.random() < f.lag:
                head = int(
                    orjson.loads(
                        await self._forward(
                            session,
                            orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}),
                        )
                    )["result"],
                    16,
                )
                lagged = max(0, head - rng.randint(1, 5))
                self._count("lag")
                msg = {**msg, "params": [hex(lagged), *msg["params"][1:]]}
                body = orjson.dumps(msg)
            if rng.random() < f.duplicate and body in self.cache and method == "eth_getLogs":
                self._count("replay")
                return web.Response(body=self.cache[body], content_type="application/json")
        answer = await self._forward(session, body)
        if isinstance(msg, dict) and msg.get("method") == "eth_getLogs":
            self.cache[body] = answer
            if len(self.cache) > 2000:
                self.cache.pop(next(iter(self.cache)))
        if isinstance(msg, list) and f.enabled and rng.random() < f.duplicate:
            parsed = orjson.loads(answer)
            if isinstance(parsed, list) and parsed:
                self._count("duplicate")
                parsed.append(parsed[rng.randrange(len(parsed))])
                rng.shuffle(parsed)
                answer = orjson.dumps(parsed)
        return web.Response(body=answer, content_type="application/json")

    @staticmethod
    def _error(msg: dict[str, Any], code: int, text: str) -> web.Response:
        return web.Response(
            body=orjson.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "error": {"code": code, "message": text}}),
            content_type="application/json",
        )

"""A JSON-RPC proxy in front of anvil that answers chosen methods wrongly, on demand (its own thread
and event loop). Unlike tests/indexer/faultproxy.py (random faults from a seed), a test sets exactly
which method fails and how, and clears it:

    proxy.faults["eth_getTransactionReceipt"] = "error"   # a rate-limit error per batch element
    proxy.faults["eth_getTransactionReceipt"] = "null"    # a node that lacks the receipt
    proxy.faults["eth_getTransactionReceipt"] = "malformed"  # the real answer with blockNumber null
    proxy.faults["eth_getTransactionReceipt"] = "foreign"  # the real answer in a block off the chain
    proxy.faults["eth_call"] = "slow"                      # the real answer, proxy.delay_s late
    proxy.faults["eth_sendRawTransaction"] = "lie"         # forwarded (it goes in), then answered an error
    proxy.faults["eth_sendRawTransaction"] = "erigon_dup"  # a repeat of a pooled tx: "existing tx with same hash"
    proxy.faults.clear()
    proxy.stale_count = 5                                  # eth_getTransactionCount answers this (a lagging node)

`proxy.counts[method]`: the faulted answers given.

Every other call, and every other element of a batch, goes to anvil unchanged.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

import aiohttp
import orjson
from aiohttp import web

from tests.local_http import posting

Fault = Literal["error", "null", "malformed", "foreign", "slow", "lie", "erigon_dup"]
REWRITES = {  # faults that forward the call and alter a non-null answer
    "malformed": lambda r: {**r, "blockNumber": None},
    "foreign": lambda r: {**r, "blockHash": "0x" + "ee" * 32},
}
FORWARDED = ("slow", "lie", "erigon_dup", *REWRITES)  # faults that send the call to anvil first
RATE_LIMITED = {"code": -32005, "message": "rate limit exceeded, try again later"}
LIE = {"code": -32603, "message": "internal error"}
ERIGON_DUP = {"code": -32000, "message": "INTERNAL_ERROR: existing tx with same hash"}  # txpool DuplicateHash


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: dict[str, Fault] = {}
        self.counts: dict[str, int] = {}  # method → faulted answers given
        self.delay_s = 1.0  # how late a "slow" answer comes
        self.stale_count: int | None = None  # eth_getTransactionCount's answer, when set
        self._pooled: set[str] = set()  # raw transactions sent through ("erigon_dup")
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("rpc proxy did not start within 10 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def handle(request: web.Request) -> web.Response:
                return await self._handle(await request.read(), session)

            async with posting(handle) as self.port:
                self._started.set()
                await self._stop.wait()

    async def _handle(self, body: bytes, session: aiohttp.ClientSession) -> web.Response:
        msg = orjson.loads(body)
        calls: list[dict[str, Any]] = msg if isinstance(msg, list) else [msg]
        answers: dict[Any, dict[str, Any]] = {}
        forward = []
        rewrite: dict[Any, Any] = {}
        for c in calls:
            fault = self.faults.get(c.get("method", ""))
            if fault is None or fault in FORWARDED:
                forward.append(c)
                if fault in REWRITES:
                    rewrite[c.get("id")] = REWRITES[fault]
                continue
            self.counts[c["method"]] = self.counts.get(c["method"], 0) + 1
            answers[c.get("id")] = (
                {"jsonrpc": "2.0", "id": c.get("id"), "error": RATE_LIMITED}
                if fault == "error"
                else {"jsonrpc": "2.0", "id": c.get("id"), "result": None}
            )
        if forward:
            slow = [c for c in forward if self.faults.get(c.get("method", "")) == "slow"]
            if slow:
                for c in slow:
                    self.counts[c["method"]] = self.counts.get(c["method"], 0) + 1
                await asyncio.sleep(self.delay_s)
            payload = orjson.dumps(forward if isinstance(msg, list) else forward[0])
            async with session.post(self.upstream, data=payload, headers={"Content-Type": "application/json"}) as r:
                got = orjson.loads(await r.read())
            for a in got if isinstance(got, list) else [got]:
                call = next(c for c in calls if c.get("id") == a.get("id"))
                method = call["method"]
                change = rewrite.get(a.get("id"))
                lie = self._lie(method, call, a)
                if lie is not None:
                    self.counts[method] = self.counts.get(method, 0) + 1
                    a = {"jsonrpc": "2.0", "id": a.get("id"), "error": lie}
                elif change is not None and a.get("result"):
                    self.counts[method] = self.counts.get(method, 0) + 1
                    a = {**a, "result": change(a["result"])}
                elif method == "eth_getTransactionCount" and self.stale_count is not None:
                    a = {**a, "result": hex(self.stale_count)}
                answers[a.get("id")] = a
        out = [answers[c.get("id")] for c in calls]
        return web.json_response(out if isinstance(msg, list) else out[0], dumps=lambda o: orjson.dumps(o).decode())

    def _lie(self, method: str, call: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any] | None:
        """The error a lying node answers a forwarded call with, or None for the real answer."""
        fault = self.faults.get(method)
        if fault == "lie":
            return LIE
        if fault == "erigon_dup":
            raw = call["params"][0]
            if raw in self._pooled:
                return ERIGON_DUP
            if "result" in answer:
                self._pooled.add(raw)
        return None

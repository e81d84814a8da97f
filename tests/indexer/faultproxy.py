"""A JSON-RPC fault proxy in front of anvil (its own thread and event loop), driven by a seed.

Faults, each with its own probability (per HTTP request unless said otherwise):
- transport: HTTP 429 with a Retry-After header, HTTP 502, a request that hangs past the client's
  timeout, every eth_getLogs range wider than `slow_span` blocks hanging (a heavy range that times
  out on this provider);
- errors: a JSON-RPC error per call (in a batch, per element: the others still answer), in several
  wordings, one of them unknown to any classifier;
- caps: eth_getLogs ranges wider than `range_cap` blocks and answers with more than `result_cap`
  logs refused in real providers' wordings; JSON-RPC batches of more than `batch_cap` calls refused
  whole;
- malformed answers: a block or log object with a field missing, of the wrong type or cut short;
  well-formed ones of another block than asked (`renumber`: block n - 1 for block n); a block object
  whose logsBloom is all zero (`zero_bloom`: a node that does not keep blooms, or alters them);
- a load-balanced, lagging backend: a request is served by a node `lag` blocks behind (a batch by
  one node, as load balancers route an HTTP request): its `latest` is older, blocks above its head
  are null, and eth_getLogs answers nothing for blocks it lacks (ranges clipped to its head, by-hash
  queries empty instead of the error EIP-234 asks for, receipts null);
- lying answers: a log dropped from an eth_getLogs answer (`drop`), a log repeated (`duplicate`),
  a batch answer with an element twice, an answer replayed from an earlier identical request, a log
  the answer should not hold (`stray`: a real log of a block outside the range asked, or a copy of
  one of its logs from an address not asked for).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import threading
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.local_http import posting

# A batch with more calls than a provider takes, refused whole (HTTP status, message).
BATCH_ERRORS = (
    (200, "batch too large"),  # geth (--rpc.batch-request-limit)
    (200, "Batch size too large. Max batch size is {n}"),
    (400, "exceeded max batch size of {n}"),
    (200, "batch limit exceeded"),
)

RANGE_ERRORS = (
    (
        -32602,
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
        "limit on the response size, or you can request any block range with a cap of 10K logs in the "
        "response. Based on your parameters, this block range should work: [{a}, {b}]",
    ),
    (-32005, "query returned more than 10000 results. Try with this block range [{a}, {b}]."),
    (-32005, "query returned more than 10000 results. try with this block range [{a}, {b}]"),
    (-32614, "eth_getLogs is limited to a {n} range"),
    (-32600, "block range is too wide"),
    (-32000, "block range too large"),
    (-32602, "query exceeds max results 20000, retry with the range {da}-{db}"),
    (-32000, "exceed maximum block range: {n}"),  # not in any table: narrowed as an unknown error
)
RESULT_ERRORS = (
    (-32005, "query returned more than {n} results"),
    (-32602, "Log response size exceeded. Based on your parameters, this block range should work: [{a}, {b}]"),
    (-32000, "backend response too large"),
)
CALL_ERRORS = (
    (-32603, "internal error"),
    (-32000, "upstream request failed: context deadline exceeded"),
    (-32000, "the gateway could not complete the request (ref 7f3a)"),  # a wording nobody classifies
    (-32005, "rate limit exceeded, try again in 0.05s"),
)


@dataclasses.dataclass(slots=True)
class Faults:
    rpc_error: float = 0.03  # per call (batch elements independently)
    http_429: float = 0.03
    retry_after: str = "0"  # the 429's Retry-After header
    http_502: float = 0.03
    hang: float = 0.01
    range_cap: int = 7  # blocks; larger eth_getLogs ranges are refused (real wording, random provider)
    result_cap: int = 0  # logs; larger answers are refused (0 = no cap)
    lag: float = 0.05  # a request served by a node behind the head
    max_lag: int = 5
    drop: float = 0.0  # an eth_getLogs answer with one of its logs missing
    duplicate: float = 0.05  # an eth_getLogs answer with a log twice; a batch answer with an element twice
    stray: float = 0.0  # an eth_getLogs answer with a log of another range or of an address not asked for
    slow_span: int = 0  # eth_getLogs ranges wider than this hang, every time (0 = none): heavy ranges time out
    batch_cap: int = 0  # JSON-RPC batches with more calls are refused whole, in real wordings (0 = no cap)
    malformed: float = 0.0  # a block or log object with a field missing, of the wrong type, or cut short
    renumber: float = 0.0  # eth_getBlockByNumber(n) answered with block n - 1 (well-formed, another block)
    zero_bloom: float = 0.0  # a block object with its logsBloom all zero (its hash then no longer matches)
    enabled: bool = True


class FaultProxy:
    def __init__(self, upstream: str, seed: int, faults: Faults | None = None, hang_seconds: float = 3.0) -> None:
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.hang_seconds = hang_seconds
        self.cache: dict[bytes, bytes] = {}
        self.seen_logs: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)  # for `stray`
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

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, session)

        async with posting(handle) as self.port:
            self._started.set()
            await self._stop.wait()
        await session.close()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _forward(self, session: aiohttp.ClientSession, body: bytes) -> bytes:
        async with session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}) as resp:
            return await resp.read()

    async def _upstream(self, session: aiohttp.ClientSession, method: str, params: list[Any]) -> Any:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        return orjson.loads(await self._forward(session, body)).get("result")

    async def _handle(self, request: web.Request, session: aiohttp.ClientSession) -> web.StreamResponse:
        body = await request.read()
        f = self.faults
        rng = self.rng
        if not f.enabled:
            return web.Response(body=await self._forward(session, body), content_type="application/json")
        roll = rng.random()
        if roll < f.http_429:
            self._count("429")
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": f.retry_after})
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
        calls: list[dict[str, Any]] = msg if isinstance(msg, list) else [msg]
        if f.batch_cap and isinstance(msg, list) and len(msg) > f.batch_cap:
            self._count("batch_cap")
            status, text = rng.choice(BATCH_ERRORS)
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": text.format(n=f.batch_cap)}}
            return web.Response(status=status, body=orjson.dumps(error), content_type="application/json")
        if f.slow_span and any(_getlogs_span(c) > f.slow_span for c in calls):
            self._count("slow_range")
            await asyncio.sleep(self.hang_seconds)
            return web.Response(status=504, text="timeout")
        # One backend serves the whole request: maybe a lagging one.
        head: int | None = None
        if rng.random() < f.lag:
            true_head = int(await self._upstream(session, "eth_blockNumber", []), 16)
            head = max(0, true_head - rng.randint(1, f.max_lag))
            self._count("lag")
        answers: dict[Any, dict[str, Any]] = {}
        forward: list[dict[str, Any]] = []
        for c in calls:
            early = self._before(c, head)
            if early is not None:
                answers[c.get("id")] = early
            else:
                forward.append(self._rewrite(c, head))
        if forward:
            raw = await self._forward(session, orjson.dumps(forward if isinstance(msg, list) else forward[0]))
            got = orjson.loads(raw)
            for a in got if isinstance(got, list) else [got]:
                answers[a.get("id")] = a
        out = []
        for c in calls:
            a = answers.get(c.get("id"))
            if a is not None:
                a = await self._after(c, a, head, session)
                out.append(a)
        if isinstance(msg, list):
            if out and rng.random() < f.duplicate:
                self._count("batch_duplicate")
                out.append(out[rng.randrange(len(out))])
                rng.shuffle(out)
            return web.Response(body=orjson.dumps(out), content_type="application/json")
        answer = orjson.dumps(out[0])
        if calls[0].get("method") == "eth_getLogs":
            if rng.random() < f.duplicate and body in self.cache:
                self._count("replay")
                return web.Response(body=self.cache[body], content_type="application/json")
            if "error" not in out[0]:
                self.cache[body] = answer
                if len(self.cache) > 2000:
                    self.cache.pop(next(iter(self.cache)))
        return web.Response(body=answer, content_type="application/json")

    def _before(self, c: dict[str, Any], head: int | None) -> dict[str, Any] | None:
        """An answer made up without asking upstream (an error, a cap, a lagging node's empty range)."""
        f, rng = self.faults, self.rng
        if rng.random() < f.rpc_error:
            code, text = rng.choice(CALL_ERRORS)
            self._count("rpc_error")
            return _error(c, code, text)
        if c.get("method") == "eth_getLogs" and "fromBlock" in c["params"][0]:
            a, b = int(c["params"][0]["fromBlock"], 16), int(c["params"][0]["toBlock"], 16)
            if b - a + 1 > f.range_cap:
                code, text = rng.choice(RANGE_ERRORS)
                self._count("range_cap")
                end = a + f.range_cap - 1
                return _error(c, code, text.format(a=hex(a), b=hex(end), n=f.range_cap, da=a, db=end))
            if head is not None and a > head:
                self._count("lag_empty_range")
                return {"jsonrpc": "2.0", "id": c.get("id"), "result": []}
        return None

    @staticmethod
    def _rewrite(c: dict[str, Any], head: int | None) -> dict[str, Any]:
        """The call as a lagging node sees it: `latest` is its head, ranges end there."""
        if head is None:
            return c
        m, p = c.get("method"), c.get("params") or []
        if m == "eth_blockNumber":
            return {**c, "method": "eth_getBlockByNumber", "params": [hex(head), False]}
        if m == "eth_getBlockByNumber" and p and p[0] == "latest":
            return {**c, "params": [hex(head), *p[1:]]}
        if m == "eth_getLogs" and "toBlock" in p[0] and int(p[0]["toBlock"], 16) > head:
            return {**c, "params": [{**p[0], "toBlock": hex(head)}]}
        return c

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        f, rng = self.faults, self.rng
        m, p = c.get("method"), c.get("params") or []
        result = a.get("result")
        if head is not None and result is not None:
            if m == "eth_blockNumber" and isinstance(result, dict):
                a = {**a, "result": result["number"]}
            elif m in ("eth_getBlockByNumber", "eth_getBlockByHash") and int(result["number"], 16) > head:
                self._count("lag_null_block")
                a = {**a, "result": None}
            elif m == "eth_getBlockReceipts" and result and int(result[0]["blockNumber"], 16) > head:
                self._count("lag_null_receipts")
                a = {**a, "result": None}
            elif m == "eth_getLogs" and "blockHash" in p[0]:
                block = await self._upstream(session, "eth_getBlockByHash", [p[0]["blockHash"], False])
                if block and int(block["number"], 16) > head:
                    self._count("lag_empty_by_hash")
                    a = {**a, "result": []}
        result = a.get("result")
        if (
            m == "eth_getBlockByNumber"
            and isinstance(result, dict)
            and p
            and str(p[0]).startswith("0x")
            and int(p[0], 16) > 0
            and rng.random() < f.renumber
        ):
            other = await self._upstream(session, "eth_getBlockByNumber", [hex(int(p[0], 16) - 1), False])
            if other:  # a well-formed block: another one than asked (a cache keyed wrongly)
                self._count("renumber")
                return {**a, "result": other}
        if (
            m in ("eth_getBlockByNumber", "eth_getBlockByHash")
            and isinstance(result, dict)
            and int(result.get("logsBloom", "0x0"), 16)
            and rng.random() < f.zero_bloom
        ):
            self._count("zero_bloom")
            return {**a, "result": {**result, "logsBloom": "0x" + "00" * 256}}
        if rng.random() < f.malformed and (isinstance(result, dict) or (isinstance(result, list) and result)):
            self._count("malformed")
            return {**a, "result": _mangled(result, rng)}
        if m == "eth_getLogs" and isinstance(result, list) and result:
            if f.result_cap and len(result) > f.result_cap and "fromBlock" in p[0]:
                code, text = rng.choice(RESULT_ERRORS)
                self._count("result_cap")
                start, end = int(p[0]["fromBlock"], 16), int(p[0]["toBlock"], 16)
                return _error(c, code, text.format(n=f.result_cap, a=hex(start), b=hex((start + end) // 2)))
            self.seen_logs.extend(result)
            if rng.random() < f.stray:
                a = {**a, "result": self._stray(result, p[0])}
            elif rng.random() < f.drop:
                self._count("drop")
                result = list(result)
                result.pop(rng.randrange(len(result)))
                a = {**a, "result": result}
            elif rng.random() < f.duplicate:
                self._count("log_duplicate")
                result = list(result)
                i = rng.randrange(len(result))
                result.insert(rng.randrange(len(result) + 1), result[i])
                a = {**a, "result": result}
        return a

    def _stray(self, result: list[dict[str, Any]], query: dict[str, Any]) -> list[dict[str, Any]]:
        """`result` with one log it should not hold: a real one of a block outside the range (or
        another block than the hash) asked, as a caching layer mixing up answers would, or a copy of
        one of its logs from an address not asked for."""
        rng, counts = self.rng, self.counts
        if "blockHash" in query:
            outside = [x for x in self.seen_logs if x["blockHash"] != query["blockHash"]]
        else:
            a, b = int(query["fromBlock"], 16), int(query["toBlock"], 16)
            outside = [x for x in self.seen_logs if not a <= int(x["blockNumber"], 16) <= b]
        if outside and counts.get("stray_range", 0) <= counts.get("stray_address", 0):  # the kinds alternate
            self._count("stray_range")
            log = rng.choice(outside)
        else:
            self._count("stray_address")
            log = {**rng.choice(result), "address": "0x" + "5e" * 20}
        out = list(result)
        out.insert(rng.randrange(len(out) + 1), log)
        return out


def _mangled(result: Any, rng: random.Random) -> Any:
    """A block object, or a list of log objects with one of them, with one field broken."""
    out = list(result) if isinstance(result, list) else result
    i = rng.randrange(len(out)) if isinstance(out, list) else None
    obj = dict(out[i] if i is not None else out)
    keys = ("number", "hash", "timestamp", "blockNumber", "topics", "logIndex", "data")
    key = rng.choice([k for k in keys if k in obj])
    if rng.random() < 0.2:
        del obj[key]
    else:
        obj[key] = rng.choice([None, 5, "0x", "zz"])
    if i is None:
        return obj
    out[i] = obj
    return out


def _getlogs_span(c: dict[str, Any]) -> int:
    p = c.get("params") or [{}]
    if c.get("method") != "eth_getLogs" or not isinstance(p[0], dict) or "fromBlock" not in p[0]:
        return 0
    return int(p[0]["toBlock"], 16) - int(p[0]["fromBlock"], 16) + 1


def _error(c: dict[str, Any], code: int, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": c.get("id"), "error": {"code": code, "message": text}}

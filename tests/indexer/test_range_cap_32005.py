"""Review s19 h4 (adversarial): an eth_getLogs range cap worded in a way no table knows, with code
-32005. EIP-1474 names -32005 "Limit exceeded", and nodes use it for range caps (cdk-erigon's first
rpc.logs.maxrange answered {"code": -32005, "message": "limit exceeded"}). classify() reads any -32005
as RateLimited; RangeFetcher._logs never narrows a RateLimited range ("rate limits ... go back to
the caller"), and rate-limited attempts do not use up `attempts`: every try of the range waits out
the whole retry budget and fails, for ever. docs/indexer.md promises "a range that keeps failing with
a JSON-RPC error nobody classified is halved as well, so an unknown cap wording still narrows".

Now a -32005 that no wording names a rate limit, and that names no wait, is an unknown error: retried,
and a range that keeps failing is narrowed (core/rpc_errors.py classify)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from indexer.chain import SpanPolicy
from indexer.fetch import RangeFetcher
from indexer.rpc import RetryPolicy, Rpc
from tests.indexer.mocknode import block
from tests.local_http import posting

CAP = 10
TWO = ("0x" + "11" * 20, "0x" + "22" * 20)


async def test_a_range_cap_answered_with_code_32005_in_an_unknown_wording_still_narrows() -> None:
    asked: list[int] = []  # spans of the eth_getLogs ranges asked

    def answer(c: dict[str, Any]) -> dict[str, Any]:
        if c["method"] == "eth_getLogs":
            q = c["params"][0]
            if "blockHash" in q:  # a block whose bloom says "maybe", asked by hash: none of ours
                return {"jsonrpc": "2.0", "id": c["id"], "result": []}
            span = int(q["toBlock"], 16) - int(q["fromBlock"], 16) + 1
            asked.append(span)
            if span > CAP:
                return {"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32005, "message": "limit exceeded"}}
            return {"jsonrpc": "2.0", "id": c["id"], "result": []}
        if c["method"] == "eth_getBlockReceipts":  # a block's receipts: none of ours
            return {"jsonrpc": "2.0", "id": c["id"], "result": []}
        if c["method"] == "eth_chainId":
            return {"jsonrpc": "2.0", "id": c["id"], "result": hex(31337)}
        return {"jsonrpc": "2.0", "id": c["id"], "result": block(int(c["params"][0], 16))}

    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        out = [answer(c) for c in body] if isinstance(body, list) else answer(body)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    error = None
    async with posting(handle) as port:
        fast = RetryPolicy(attempts=4, seconds=3.0, base=0.01, cap=0.05)
        async with Rpc([f"http://127.0.0.1:{port}"], 2.0, retry=fast) as rpc:
            fetcher = RangeFetcher(rpc, 31337, TWO, SpanPolicy(40, 10_000, 10_000), lambda **kw: None)
            for _ in range(3):  # three iterations of the loop
                try:
                    got = await fetcher.fetch(range(1, 41), 40, 0)
                    break
                except Exception as exc:  # what the loop top gets
                    error = exc
            else:
                got = None
    wide = sum(1 for s in asked if s > CAP)
    assert got is not None, (
        f"a 40-block range under a {CAP}-block cap never narrowed: {wide} wide requests, none narrower"
        f" ({min(asked)} the narrowest); the loop top got {type(error).__name__}: {str(error)[:160]}"
    )

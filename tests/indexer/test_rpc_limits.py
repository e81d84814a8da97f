"""eth_getLogs answers above the byte cap are refused as RangeTooLarge, also when the node streams them
(chunked transfer, no Content-Length)."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from indexer.rpc import RangeTooLarge, Rpc
from tests.local_http import serving

LOG = {"address": "0x" + "aa" * 20, "topics": [], "data": "0x" + "00" * 64, "blockNumber": "0x1"}


def node_app(logs: int) -> web.Application:
    """A node that streams an eth_getLogs answer of `logs` logs (chunked, no Content-Length)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        call = await request.json()
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        body = orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "result": [LOG] * logs})
        for i in range(0, len(body), 1000):
            await resp.write(body[i : i + 1000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/", handle)
    return app


async def test_a_streamed_answer_over_the_cap_is_range_too_large() -> None:
    async with serving(node_app(logs=200)) as url:  # ~40 KB
        async with Rpc([url], 5.0, max_logs_bytes=100_000) as rpc:
            assert len(await rpc.get_logs_raw(1, 2, ["0x" + "aa" * 20])) == 200
        async with Rpc([url], 5.0, max_logs_bytes=10_000) as rpc:
            with pytest.raises(RangeTooLarge, match="exceeds 10000 bytes"):
                await rpc.get_logs_raw(1, 2, ["0x" + "aa" * 20])
            # only the backfill's getLogs is capped; other calls read the whole answer
            assert len(await rpc.call("eth_getLogs", [{}])) == 200

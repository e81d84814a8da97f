"""Review s19 h4 (adversarial): a JSON-RPC batch answer holding one id twice, with two different results.

A range's eth_getLogs goes in one batch with eth_getBlockByNumber(to_block), so that the header proves
the answering node has the range (docs/indexer.md, Completeness). A load balancer that merges the
answers of two backends (or a retrying middleware that appends a second answer) can hold the
eth_getLogs id twice: the leading backend's logs and a lagging backend's empty list. get_logs_checked
keeps the last element of each id (`{a.id: a for a in answer}`), so the empty list is taken, with the
header of the backend that has the range as its proof: the range's logs are dropped silently (for
finalized blocks no bloom check follows; `--exit-at-head` runs no re-scan). An answer that
contradicts itself is refused elsewhere (two different logs at one index, review h2); two answers to
one call are the same kind of lie.

Now such an answer is refused (BadAnswer) and asked again (indexer/rpc.py get_logs_checked)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from indexer.rpc import RetryPolicy, Rpc, RpcError
from tests.indexer.mocknode import block, block_hash
from tests.local_http import posting

OM = "0x" + "11" * 20
CS = "0x" + "22" * 20


def _log(n: int) -> dict[str, Any]:
    return {
        "address": OM,
        "topics": ["0x" + "ab" * 32],
        "data": "0x",
        "blockNumber": hex(n),
        "blockHash": block_hash(n),
        "transactionHash": "0x" + "cd" * 32,
        "transactionIndex": "0x0",
        "logIndex": "0x0",
        "removed": False,
    }


async def test_a_batch_answer_with_the_getlogs_id_twice_is_not_read_as_no_logs() -> None:
    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        assert isinstance(body, list)
        logs_call, head_call = body
        n = int(head_call["params"][0], 16)
        out = [
            {"jsonrpc": "2.0", "id": logs_call["id"], "result": [_log(n)]},  # the backend that has the range
            {"jsonrpc": "2.0", "id": head_call["id"], "result": block(n)},
            {"jsonrpc": "2.0", "id": logs_call["id"], "result": []},  # a lagging backend's answer, merged in
        ]
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async with posting(handle) as port:
        fast = RetryPolicy(attempts=3, seconds=3.0, base=0.01, cap=0.05)
        async with Rpc([f"http://127.0.0.1:{port}"], 2.0, retry=fast) as rpc:
            try:
                logs, _end = await rpc.get_logs_checked(100, 100, [OM, CS])
            except RpcError:
                return  # refused as contradicting itself: asked again (what the docs' principle asks)
    assert logs, "two answers to one eth_getLogs call, one holding a log: the empty one was taken, the log dropped"

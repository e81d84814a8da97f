"""A JSON-RPC node made of one answer function, and an Indexer on it with its cursor set: for tests of
head reads and the tip against nodes that lag, lie or lack tags (no chain, no database).

    async with indexer_on(answer, tmp_path, cursor=999) as ix:   # answer(call) -> JSON-RPC reply
        await ix.refresh_heads()
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from indexer.chain import Cursor
from indexer.metrics import Metrics
from indexer.pipeline import Status
from indexer.rpc import Rpc
from indexer.service import Indexer
from tests.indexer.helpers import make_settings
from tests.local_http import posting

DEPLOYMENT = {
    "chain_id": 31337,
    "deploy_block": 1,
    "contracts": {
        "OpinionMarket": "0x" + "11" * 20,
        "CreatorShares": "0x" + "22" * 20,
        "USDC": "0x" + "33" * 20,
    },
}

Answer = Callable[[dict[str, Any]], dict[str, Any]]


def block_hash(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def block(n: int) -> dict[str, str]:
    return {
        "number": hex(n),
        "hash": block_hash(n),
        "parentHash": block_hash(n - 1),
        "timestamp": hex(1_700_000_000 + n),
        "logsBloom": "0x" + "00" * 256,
    }


def reply(call: dict[str, Any], result: object) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call["id"], "result": result}


def head_answer(call: dict[str, Any], head: int, tag_lag: int) -> dict[str, Any]:
    """A node at `head` whose safe and finalized tags trail it by `tag_lag`: eth_getBlockByNumber of a tag or
    a number (null above the head)."""
    tag = call["params"][0]
    if tag == "latest":
        return reply(call, block(head))
    if tag in ("safe", "finalized"):
        return reply(call, block(head - tag_lag))
    n = int(tag, 16)
    return reply(call, block(n) if n <= head else None)


def handler(answer: Answer) -> Callable[[web.Request], Any]:
    """An aiohttp handler answering each call of a request (a batch too) with `answer`."""

    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        out = [answer(c) for c in body] if isinstance(body, list) else answer(body)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    return handle


@contextlib.asynccontextmanager
async def indexer_on(handle: Callable[[web.Request], Any], tmp_path: Path, cursor: int) -> AsyncIterator[Indexer]:
    """An Indexer (no fetch process, no database) on the node `handle` serves, its cursor and status at
    block `cursor`."""
    async with posting(handle) as port:
        url = f"http://127.0.0.1:{port}"
        settings = make_settings(url, DEPLOYMENT, "postgresql://unused/x", tmp_path, fetch_process=False)
        async with Rpc([url], 5.0) as rpc:
            ix = Indexer(settings, rpc, Metrics(31337), Status())
            ix.cursor = Cursor(cursor, bytes.fromhex(block_hash(cursor)[2:]))
            ix.status.indexed = cursor
            yield ix

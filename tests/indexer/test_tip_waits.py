"""Review h9 (medium-high): at the tip, a head read that says block n exists while the read of block n by number
answers null (a load balancer's head from one backend, the block read from another one behind it; a
second provider one block behind) made `step` return "busy" without having done anything, so `run`
called it again at once (4,332 steps in 2 s): a hot loop of head and block reads for as long as the
lagging backend lags (a block time, or for good when one provider is stuck behind), two requests a
spin: rate limits and compute units burnt, a core busy. Now the step says it is idle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from aiohttp import web

from indexer.chain import Cursor
from indexer.metrics import Metrics
from indexer.pipeline import Status
from indexer.rpc import Rpc
from indexer.service import Indexer
from tests.indexer.helpers import make_settings
from tests.local_http import posting

HEAD = 1000
DEPLOYMENT = {
    "chain_id": 31337,
    "deploy_block": 1,
    "contracts": {
        "OpinionMarket": "0x" + "11" * 20,
        "CreatorShares": "0x" + "22" * 20,
        "USDC": "0x" + "33" * 20,
    },
}


def _hash(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def _block(n: int) -> dict[str, str]:
    return {
        "number": hex(n),
        "hash": _hash(n),
        "parentHash": _hash(n - 1),
        "timestamp": hex(1_700_000_000 + n),
        "logsBloom": "0x" + "00" * 256,
    }


async def test_the_tip_waits_while_the_node_lacks_the_block_its_head_announced(tmp_path: Path) -> None:
    requests = 0

    def answer(call: dict) -> dict:
        tag = call["params"][0]
        if tag == "latest":  # the head: from the backend that has block HEAD
            result: object = _block(HEAD)
        elif tag in ("safe", "finalized"):
            result = _block(HEAD - 64)
        else:  # by number: from the backend one block behind
            n = int(tag, 16)
            result = _block(n) if n < HEAD else None
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    async def handle(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        body = orjson.loads(await request.read())
        out = [answer(c) for c in body] if isinstance(body, list) else answer(body)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async with posting(handle) as port:
        url = f"http://127.0.0.1:{port}"
        settings = make_settings(url, DEPLOYMENT, "postgresql://unused/x", tmp_path, fetch_process=False)
        async with Rpc([url], 5.0) as rpc:
            ix = Indexer(settings, rpc, Metrics(31337), Status())
            ix.cursor = Cursor(HEAD - 1, bytes.fromhex(_hash(HEAD - 1)[2:]))
            ix.status.indexed = HEAD - 1
            stop = asyncio.Event()
            before = requests
            busy = await ix.step(None, stop)  # type: ignore[arg-type]
            assert busy is False  # so service.run waits poll_interval (or an announcement) before the next
            assert ix.cursor.number == HEAD - 1  # nothing could be done: block HEAD is not served yet
            assert requests - before <= 3  # one head read, one block read (and finality's header)

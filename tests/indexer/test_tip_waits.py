"""Review h9 (medium-high): at the tip, a head read that says block n exists while the read of block n by number
answers null (a load balancer's head from one backend, the block read from another one behind it; a
second provider one block behind) made `step` return "busy" without having done anything, so `run`
called it again at once (4,332 steps in 2 s): a hot loop of head and block reads for as long as the
lagging backend lags (a block time, or for good when one provider is stuck behind), two requests a
spin: rate limits and compute units burnt, a core busy. Now the step says it is idle."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from tests.indexer.mocknode import block, handler, indexer_on, reply

HEAD = 1000


async def test_the_tip_waits_while_the_node_lacks_the_block_its_head_announced(tmp_path: Path) -> None:
    requests = 0

    def answer(call: dict) -> dict:
        tag = call["params"][0]
        if tag == "latest":  # the head: from the backend that has block HEAD
            result: object = block(HEAD)
        elif tag in ("safe", "finalized"):
            result = block(HEAD - 64)
        else:  # by number: from the backend one block behind
            n = int(tag, 16)
            result = block(n) if n < HEAD else None
        return reply(call, result)

    serve = handler(answer)

    async def handle(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        return await serve(request)  # type: ignore[no-any-return]

    async with indexer_on(handle, tmp_path, HEAD - 1) as ix:
        stop = asyncio.Event()
        before = requests
        busy = await ix.step(None, stop)  # type: ignore[arg-type]
        assert busy is False  # so service.run waits poll_interval (or an announcement) before the next
        assert ix.cursor.number == HEAD - 1  # nothing could be done: block HEAD is not served yet
        assert requests - before <= 3  # one head read, one block read (and finality's header)

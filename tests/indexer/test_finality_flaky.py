"""Review h10 (medium-high, a regression of review h9's fix): the safe/finalized elements are asked once
(TAGS_RETRY), and when the whole batch failed only `latest` was read again, without the tags. That read
fell back to head - finality_depth; on a chain whose finalized tag trails the head by more than the
depth (an L2: finalized ~ head - 500, depth 64), two such reads in a row declared final blocks the node
says are not (kept for good: no undo data, a reorg there is ReorgTooDeep). Now a head read whose request
failed as a whole is read again whole, tags included, with the client's policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.indexer.mocknode import handler, head_answer, indexer_on

HEAD = 10_000
TAG_LAG = 500  # the node's finalized tag: head - 500 (finality_depth is 64)


@pytest.mark.parametrize("fault", ["element", "batch502"])  # element: the control (passes, _Progressed re-asks)
async def test_a_transient_tag_failure_does_not_finalize_above_the_nodes_finalized_tag(
    fault: str, tmp_path: Path
) -> None:
    head = HEAD
    batches = 0

    def answer(call: dict, first_try: bool) -> dict:
        if fault == "element" and first_try and call["params"][0] == "finalized":
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "header not found"}}
        return head_answer(call, head, TAG_LAG)

    async def handle(request: web.Request) -> web.Response:
        nonlocal batches
        body = orjson.loads(await request.read())
        if isinstance(body, list):
            tags = any(c["params"][0] == "finalized" for c in body)
            first_try = tags and len(body) == 3  # the head read's batch (a re-ask sends the failed element alone)
            if first_try:
                batches += 1
                if fault == "batch502" and batches in (2, 3):  # two 502s in a row (9 % of read pairs at a 30 % rate)
                    return web.Response(status=502, text="Bad Gateway")
            out = [answer(c, first_try) for c in body]
        else:
            out = answer(body, False)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async with indexer_on(handle, tmp_path, HEAD - 1) as ix:
        for _ in range(4):  # four head reads, one block apart
            await ix.refresh_heads()
            head += 1
        node_final = head - 1 - TAG_LAG
        assert ix.heads.finalized <= node_final, (
            f"finality {ix.heads.finalized} is {ix.heads.finalized - node_final} blocks above the node's"
            f" finalized tag {node_final} ({fault}): a transient tag failure fell back to head - 64"
        )


async def test_a_finalized_tag_that_keeps_failing_for_two_reads_does_not_fall_back_to_depth(tmp_path: Path) -> None:
    """The same with the `finalized` element failing every time it is asked, in reads 2 and 3, on a node
    that answered it before: those reads leave finality where it is instead of head - finality_depth."""
    head = HEAD
    reads = 0

    def answer(call: dict[str, Any]) -> dict[str, Any]:
        if call["params"][0] == "finalized" and reads in (2, 3):
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "header not found"}}
        return head_answer(call, head, TAG_LAG)

    handle = handler(answer)

    async with indexer_on(handle, tmp_path, HEAD - 1) as ix:
        for n in range(1, 5):
            reads = n
            await ix.refresh_heads()
            head += 1
    assert ix.heads.finalized <= head - 1 - TAG_LAG

"""Review s19 h4 (adversarial): the finalized tag of a node that has answered it before.

015dc92 promises: on a node that has answered `finalized` before, a head read where it failed leaves
finality where it is (head - finality_depth may be far above an L2's tag: finalized ~ head - 500,
depth 64). Two ways around it:

- three head reads in a row whose two tags failed ("finalized block not found": an op-geth restarted and
  not yet given a forkchoice by op-node, a load balancer's backend still syncing)
  switch the tags off for TAGS_REPROBE_S;
  the reads then take head - finality_depth, as for a node that never had tags;
- a `finalized` element answered null (not an error) is read as "no tag": head - finality_depth at once.
Two such reads finalize blocks the node says are not final (kept for good: undo data pruned, a reorg
there is ReorgTooDeep, exit 3).

Now a null tag counts as a failed one, and while the tags are switched off a node that has answered them
leaves finality where it is (indexer/pipeline.py refresh_heads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from indexer.pipeline import TAGS_GIVE_UP
from tests.indexer.mocknode import handler, head_answer, indexer_on, reply

HEAD = 10_000
TAG_LAG = 500  # the node's finalized tag trails its head by 500; finality_depth is 64


@pytest.mark.parametrize("fault", ["error", "null"])
async def test_a_node_that_answered_the_finalized_tag_never_falls_back_to_depth(fault: str, tmp_path: Path) -> None:
    head = HEAD
    reads = 0
    bad = range(3, 3 + TAGS_GIVE_UP + 2)  # reads where the tags fail (after two good ones)

    def answer(call: dict[str, Any]) -> dict[str, Any]:
        tag = call["params"][0]
        if tag in ("safe", "finalized") and reads in bad:
            if fault == "null":
                return reply(call, None)
            return {
                "jsonrpc": "2.0",
                "id": call["id"],
                "error": {"code": -32000, "message": f"{tag} block not found"},
            }
        return head_answer(call, head, TAG_LAG)

    finalities = []
    async with indexer_on(handler(answer), tmp_path, HEAD - 1) as ix:
        for n in range(1, 3 + TAGS_GIVE_UP + 2):
            reads = n
            await ix.refresh_heads()
            finalities.append((n, ix.heads.finalized, head - TAG_LAG))
            head += 1
    above = [(n, f, tag) for n, f, tag in finalities if f > tag]
    assert not above, (
        f"({fault}) finality above the node's finalized tag after reads (read, finality, node's tag): {above}:"
        " head - finality_depth taken on a node that has answered the tag"
    )

"""Review hp (independent fault injection): the node's `safe` tag is taken as it comes, never checked
against the head read with it, and written into idx.chain_heads with every batch.

Pipeline._read_tags / refresh_heads clamp `finalized` to the head (chain.finalized_block) and confirm it
before keeping it (review h2), but `safe` goes straight into Heads(head, safe, finalized), which
write.write_batch and checkpoint.set_heads store in idx.chain_heads.safe_block (a bigint) and the API
serves as asOf.safeBlock.

- One head read whose `safe` block object carries number 0xffffffffffffffff (a malformed but
  well-typed answer, 2**64 - 1, the uint64 -1 some proxies use for "unknown"): the next batch's INSERT
  fails in asyncpg ("value out of int64 range", asyncpg.exceptions.DataError), which is not one of
  service.ITERATION_ERRORS: the run ends (`python -m indexer` logs indexer_crashed with a traceback and
  exits 1) instead of failing one iteration, as every other malformed answer does.
- A provider whose `safe` tag is ahead of its `latest` (the brief's "finalized/safe tag ahead of latest"):
  committed as is, safe_block above head_block and above any block indexed.

Expected: a `safe` above the head read with it is not taken (kept or clamped, like `finalized`); the run
reaches the head and idx.chain_heads never says safe > head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.indexer.faultproxy import FaultProxy, Faults
from tests.indexer.helpers import Node, fetch, make_settings, run_through, sim
from tests.indexer.test_faults import QUIET


class SafeTagProxy(FaultProxy):
    """`safe` answers rewritten: from the `first`-th read on (1-based), `times` of them, the block's
    number becomes `number(latest)`."""

    def __init__(self, *args: Any, first: int, times: int, number: Any, tag: str = "safe", **kw: Any) -> None:
        self.safe_reads = 0
        self.tag = tag
        self.first, self.times, self.number = first, times, number
        super().__init__(*args, **kw)

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        p = c.get("params") or []
        if c.get("method") == "eth_getBlockByNumber" and p and p[0] == self.tag and isinstance(a.get("result"), dict):
            self.safe_reads += 1
            if self.first <= self.safe_reads < self.first + self.times:
                latest = int((await self._upstream(session, "eth_blockNumber", [])), 16)
                self._count("safe_lie")
                return {**a, "result": {**a["result"], "number": hex(self.number(latest))}}
        return a


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize(
    ("tag", "first", "times", "number"),
    [
        pytest.param("safe", 3, 1, lambda latest: 2**64 - 1, id="one_safe_answer_of_uint64_max"),
        pytest.param("safe", 1, 10**9, lambda latest: latest + 1000, id="safe_ahead_of_latest"),
    ],
)
def test_a_safe_tag_above_the_head_is_not_taken(
    tag: str, first: int, times: int, number: Any, node: Node, db_dsn: str, tmp_path: Path
) -> None:
    sim(node.url, node.deployment, seed=73, max_events=15)
    node.anvil.mine(30)
    faults = Faults(**{**QUIET, "range_cap": 10**6})
    proxy = SafeTagProxy(node.url, 73, faults, first=first, times=times, number=number, tag=tag)
    code = run_through(proxy, make_settings(proxy.url, node.deployment, db_dsn, tmp_path, initial_span=8, max_span=8))
    assert proxy.counts.get("safe_lie", 0) > 0, "the scenario did not happen"
    assert code == 0, f"the run ended with {code!r} after a `safe` tag answer above the head"
    row = fetch(db_dsn, "SELECT head_block, safe_block, finalized_block FROM idx.chain_heads")[0]
    assert row["safe_block"] is None or row["safe_block"] <= row["head_block"], (
        f"idx.chain_heads says safe block {row['safe_block']} above head {row['head_block']}"
    )

"""Review h10 (medium-high, a regression of review h9's fix): after a restart (outbox_head = 0), with a
node whose by-number backend is one block behind its `latest` (the load-balancer case), header(head) was
null at every head read, outbox_head was never confirmed, and min(heads.head, outbox_head) - lag = -256
put every block of a long catch-up inside the feed window: per-event messages for the whole stretch and
no chain:gap. Now a block OUTBOX_HEAD_SLACK lower, which that backend serves, stands in for the head."""

from __future__ import annotations

from pathlib import Path

from indexer import fold as F
from indexer import outbox_gap
from indexer.chain import BlockRef
from tests.indexer.mocknode import block, block_hash, handler, indexer_on, reply

HEAD = 100_000
CURSOR = 1_000  # the indexer was down: 99,000 blocks to catch up


def _answer(call: dict) -> dict:
    tag = call["params"][0]
    if tag == "latest":
        result: object = block(HEAD)
    elif tag in ("safe", "finalized"):
        result = block(HEAD - 64)
    else:  # by number: a backend one block behind the one that answered `latest`
        n = int(tag, 16)
        result = block(n) if n < HEAD else None
    return reply(call, result)


async def test_restart_catch_up_with_a_lagging_by_number_backend_keeps_the_gap(tmp_path: Path) -> None:
    async with indexer_on(handler(_answer), tmp_path, CURSOR) as ix:  # a fresh process: outbox_head = 0
        await ix.refresh_heads()  # what start() does
        await ix.refresh_heads()
        assert ix.heads.head == HEAD
        # the first backfill batch, blocks 1001..2000, 98,000 blocks below the window (head - 256)
        last = BlockRef(2_000, bytes.fromhex(block_hash(2_000)[2:]), bytes.fromhex(block_hash(1_999)[2:]))
        ix._build(ix.cursor, CURSOR + 1, last, [], {}, None, F.Snapshot(), frozenset())
        assert ix.gap == outbox_gap.Gap(CURSOR + 1, 2_000, 0), (
            f"outbox_head={ix.outbox_head}: a batch {HEAD - 2_000} blocks below the head is treated as inside"
            f" the feed window (gap={ix.gap}): every event of the catch-up gets its own outbox message"
        )

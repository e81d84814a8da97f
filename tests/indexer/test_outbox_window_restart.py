"""Review h10 (medium-high, a regression of review h9's fix): after a restart (outbox_head = 0), with a
node whose by-number backend is one block behind its `latest` (the load-balancer case), header(head) was
null at every head read, outbox_head was never confirmed, and min(heads.head, outbox_head) - lag = -256
put every block of a long catch-up inside the feed window: per-event messages for the whole stretch and
no chain:gap. Now a block OUTBOX_HEAD_SLACK lower, which that backend serves, stands in for the head."""

from __future__ import annotations

from pathlib import Path

import orjson
from aiohttp import web

from indexer import fold as F
from indexer import outbox_gap
from indexer.chain import BlockRef, Cursor
from indexer.metrics import Metrics
from indexer.pipeline import Status
from indexer.rpc import Rpc
from indexer.service import Indexer
from tests.indexer.helpers import make_settings
from tests.indexer.test_tip_waits import DEPLOYMENT, _block, _hash
from tests.local_http import posting

HEAD = 100_000
CURSOR = 1_000  # the indexer was down: 99,000 blocks to catch up


def _answer(call: dict) -> dict:
    tag = call["params"][0]
    if tag == "latest":
        result: object = _block(HEAD)
    elif tag in ("safe", "finalized"):
        result = _block(HEAD - 64)
    else:  # by number: a backend one block behind the one that answered `latest`
        n = int(tag, 16)
        result = _block(n) if n < HEAD else None
    return {"jsonrpc": "2.0", "id": call["id"], "result": result}


async def _handle(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    out = [_answer(c) for c in body] if isinstance(body, list) else _answer(body)
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def test_restart_catch_up_with_a_lagging_by_number_backend_keeps_the_gap(tmp_path: Path) -> None:
    async with posting(_handle) as port:
        url = f"http://127.0.0.1:{port}"
        settings = make_settings(url, DEPLOYMENT, "postgresql://unused/x", tmp_path, fetch_process=False)
        async with Rpc([url], 5.0) as rpc:
            ix = Indexer(settings, rpc, Metrics(31337), Status())  # a fresh process: outbox_head = 0
            ix.cursor = Cursor(CURSOR, bytes.fromhex(_hash(CURSOR)[2:]))
            ix.status.indexed = CURSOR
            await ix.refresh_heads()  # what start() does
            await ix.refresh_heads()
            assert ix.heads.head == HEAD
            # the first backfill batch, blocks 1001..2000, 98,000 blocks below the window (head - 256)
            last = BlockRef(2_000, bytes.fromhex(_hash(2_000)[2:]), bytes.fromhex(_hash(1_999)[2:]))
            ix._build(ix.cursor, CURSOR + 1, last, [], {}, None, F.Snapshot(), frozenset())
            assert ix.gap == outbox_gap.Gap(CURSOR + 1, 2_000, 0), (
                f"outbox_head={ix.outbox_head}: a batch {HEAD - 2_000} blocks below the head is treated as inside"
                f" the feed window (gap={ix.gap}): every event of the catch-up gets its own outbox message"
            )

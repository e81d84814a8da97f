"""Review hf (of 78cc0cf, batch_unsupported): a refusal of a batch's *size* worded "... not allowed" is read as
"no batch at all", and a provider that takes small batches is then refused every eth_getLogs range.

core/rpc_errors._NO_BATCHES matches "batch" followed within 40 characters by "not allowed" (or "disabled",
"not supported"...). A provider that caps batches and says so in those words ("Batch of more than 3 requests
are not allowed on free tier": a size, not a refusal of batches) gets batch_cap = 1 at its first refused
batch (core.rpc.Rpc.batch_settled checks batch_unsupported before batch_refused). A batch_cap of 1 takes the
provider out of every eth_getLogs range (Rpc._pick: a range goes with its header check in one batch of 2),
and with no other provider _pick raises FatalRpcError(NO_BATCHES): the run ends (exit 1, a "configuration
error"), though this provider answers the 2-call batch of every range, and the 3-call head read.

Seen: provider_batch_cap batch_cap=1, then indexer_failed "FatalRpcError: no provider takes JSON-RPC batches",
exit 1. (Before 78cc0cf neither regex knew these words: the batch was retried unchanged, no better.) Expected:
a size refusal halves the cap as batch_refused does (250, 125, ..., 3: batches of 2 still go), and the run
reaches the head, equal to a fresh index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.indexer.faultproxy import FaultProxy, Faults
from tests.indexer.helpers import Node, assert_same_index, dump, index_to_head, make_settings, run_through, sim
from tests.indexer.test_faults import QUIET

CAP = 3
TOO_MANY = {"code": -32600, "message": f"Batch of more than {CAP} requests are not allowed on free tier"}


class SmallBatchProxy(FaultProxy):
    """Forwards single calls and batches of at most CAP calls; a larger batch is refused whole with TOO_MANY."""

    async def _handle(self, request: web.Request, session: aiohttp.ClientSession) -> web.StreamResponse:
        body = await request.read()
        if body.lstrip().startswith(b"[") and len(orjson.loads(body)) > CAP:
            self._count("batch_refused")
            return web.Response(
                body=orjson.dumps({"jsonrpc": "2.0", "id": None, "error": TOO_MANY}), content_type="application/json"
            )
        return await super()._handle(request, session)


@pytest.mark.anvil
@pytest.mark.pg
def test_a_provider_capping_batch_size_in_words_not_allowed_is_not_taken_for_one_without_batches(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    sim(node.url, node.deployment, seed=72, max_events=20)
    node.anvil.mine(40)
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    proxy = SmallBatchProxy(node.url, 72, Faults(**{**QUIET, "range_cap": 10**6}))
    code = run_through(proxy, make_settings(proxy.url, node.deployment, db_dsn, tmp_path, initial_span=8, max_span=8))
    assert proxy.counts.get("batch_refused", 0) > 0, "the scenario did not happen: no batch above the cap"
    assert code == 0, f"{code!r}: a provider taking batches of {CAP} was taken for one that takes none"
    assert_same_index(dump(db_dsn), dump(want_dsn))

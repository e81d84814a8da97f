"""Review hp (independent fault injection): one provider of several that takes no JSON-RPC batches, and
says so in words batch_refused() does not know, ends the whole run with exit 1.

docs/indexer.md, Batch caps: "a provider that takes no batch at all gets one call per request. It then
gets no eth_getLogs range (...); with no other provider that is a configuration error naming
[chain].rpc_urls". core/rpc_errors.classify() reads any message holding "not supported" (or "does not
exist") as FatalRpcError, and core.rpc.Rpc._retrying raises a FatalRpcError at once, whatever the other
providers could answer. A node that refuses batches with "Batch requests are not supported" (the words
of EVM RPC servers without batch support; tests/indexer/test_faults.py uses the same sentence with
"(max batch size 0)" after it, which batch_refused() does match) therefore turns the first head read
(three calls in one batch) or range drawn onto it into `indexer_failed` and exit 1, although the other
provider answers everything. A supervisor restarts it, and it fails again at the first batch drawn
onto that provider: the indexer never reaches the head while that URL is in rpc_urls.

Expected: the provider is treated as one that takes no batches (one call per request, no eth_getLogs
range; the other provider takes them), and the run reaches the head equal to a fresh index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.indexer.faultproxy import FaultProxy, Faults
from tests.indexer.helpers import Node, assert_same_index, dump, index_to_head, make_settings, sim
from tests.indexer.test_faults import QUIET

NO_BATCHES = {"code": -32600, "message": "Batch requests are not supported"}


class NoBatchProxy(FaultProxy):
    """Forwards single calls; a JSON array is refused whole with NO_BATCHES."""

    async def _handle(self, request: web.Request, session: aiohttp.ClientSession) -> web.StreamResponse:
        body = await request.read()
        if body.lstrip().startswith(b"["):
            self._count("batch_refused")
            return web.Response(
                body=orjson.dumps({"jsonrpc": "2.0", "id": None, "error": NO_BATCHES}), content_type="application/json"
            )
        return await super()._handle(request, session)


@pytest.mark.anvil
@pytest.mark.pg
def test_a_second_provider_that_takes_no_batches_does_not_end_the_run(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    sim(node.url, node.deployment, seed=71, max_events=20)
    node.anvil.mine(40)
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    proxy = NoBatchProxy(node.url, 71, Faults(**{**QUIET, "range_cap": 10**6}))
    try:
        s = make_settings([node.url, proxy.url], node.deployment, db_dsn, tmp_path, initial_span=8, max_span=8)
        code = index_to_head(s)
    finally:
        proxy.stop()
    assert proxy.counts.get("batch_refused", 0) > 0, "the scenario did not happen: no batch reached the proxy"
    assert code == 0, f"exit {code}: one provider refusing batches ended the run although the other answers"
    assert_same_index(dump(db_dsn), dump(want_dsn))
